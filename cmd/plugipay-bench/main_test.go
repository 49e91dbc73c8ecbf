package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestMain lets the test binary act as the bench's child process, which
// the no-op scans run in (see runInChild).
func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		if err := runChild(mode, os.Stdout); err != nil {
			fmt.Fprintf(os.Stderr, "plugipay-bench child: %v\n", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestQuick runs every scenario at tiny sizes: it keeps the command
// compiling and working under make test. Rates depend on the machine (and
// the race detector), so only the count targets are checked: zero API
// calls for a no-op scan, exactly one PATCH per changed user, no 429 at
// the real limits, a cold start that only lists, and for the hostile
// export no call on a no-op and exactly the changed rows' PATCHes.
func TestQuick(t *testing.T) {
	var out, log bytes.Buffer
	rows, err := run(context.Background(), []string{"-quick", "-dir", t.TempDir()}, &out, &log)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, log.String())
	}
	exact := 0
	for _, r := range rows {
		if r.Exact {
			exact++
			if r.Status != statusOK {
				t.Errorf("%s: %s = %s, want %s", r.Scenario, r.Metric, r.Value, r.Target)
			}
		}
	}
	// Scenario 8 adds one when PostgreSQL is there; scenario 9 adds two;
	// scenario 10 one.
	if want := 8 + strings.Count(out.String(), "| API calls, full no-op scan"); exact != want {
		t.Errorf("%d count targets checked, want %d", exact, want)
	}
	for _, scenario := range []string{"1 ", "2 ", "3 ", "4 ", "5 ", "6 ", "7 ", "9 ", "10 ", "11 "} {
		if !strings.Contains(out.String(), "| "+scenario) {
			t.Errorf("table has no row for scenario %s:\n%s", scenario, out.String())
		}
	}
	if t.Failed() {
		t.Log(out.String())
	}
}

func TestCount(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1_000_000: "1,000,000", -12345: "-12,345"} {
		if got := count(n); got != want {
			t.Errorf("count(%d) = %q, want %q", n, got, want)
		}
	}
}
