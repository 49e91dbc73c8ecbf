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
	// Scenario 12 runs in TestQuickPlatform.
	rows, err := run(context.Background(), []string{"-quick", "-dir", t.TempDir(), "-only", "1,2,3,4,5,6,7,8,9,10,11"}, &out, &log)
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

// TestQuickPlatform runs scenario 12 at tiny sizes against the real
// PostgreSQL, the real plugipay-sync binary and the emulator in platform
// mode. As in TestQuick, only the count targets are checked: no write in
// the no-op round (and every user unchanged), and in the write runs every
// tenant's users exactly once in its own workspace with no 409.
func TestQuickPlatform(t *testing.T) {
	var out, log bytes.Buffer
	rows, err := run(context.Background(), []string{"-quick", "-dir", t.TempDir(), "-only", "12"}, &out, &log)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, log.String())
	}
	if strings.Contains(out.String(), "| skipped") {
		if os.Getenv("CI") == "true" {
			t.Fatalf("scenario 12 skipped under CI:\n%s", out.String())
		}
		t.Skipf("no PostgreSQL at %s:\n%s", DefaultBenchPostgresDSN, out.String())
	}
	exact := map[string]int{}
	for _, r := range rows {
		if r.Exact {
			exact[strings.Fields(r.Scenario)[0]]++
			if r.Status != statusOK {
				t.Errorf("%s: %s = %s, want %s", r.Scenario, r.Metric, r.Value, r.Target)
			}
		}
	}
	// 12a: the no-op round's writes, with each state store; 12b: the
	// placement of each setup's creates.
	for scenario, want := range map[string]int{"12a": strings.Count(out.String(), "API writes, no-op round"), "12b": strings.Count(out.String(), "creates/s (median")} {
		if exact[scenario] != want || want == 0 {
			t.Errorf("scenario %s: %d count targets checked, want %d (> 0)", scenario, exact[scenario], want)
		}
	}
	if t.Failed() {
		t.Log(out.String(), log.String())
	}
}

func TestCount(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1_000_000: "1,000,000", -12345: "-12,345"} {
		if got := count(n); got != want {
			t.Errorf("count(%d) = %q, want %q", n, got, want)
		}
	}
}
