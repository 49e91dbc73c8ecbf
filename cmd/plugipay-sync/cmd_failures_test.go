package main

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plugipay-sync/plugipay-sync/plugipay/emulator"
	"github.com/plugipay-sync/plugipay-sync/state"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

func TestFailures_List(t *testing.T) {
	path := seedState(t)
	t.Run("Table", func(t *testing.T) {
		code, out, errOut := runCommand(t, "failures", "--state", path)
		if code != ExitOK {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		for _, want := range []string{
			"EXTERNAL ID  STATUS (UTC)                     ATTEMPTS  CODE              REQUEST ID  MESSAGE\n",
			"u3           terminal                         1         validation_error  req_9       email: invalid\n",
			"u4           retry after 2099-01-01 12:00:00  1         network_error     -           connection reset\n",
			"2 failures\n",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})
	t.Run("Terminal", func(t *testing.T) {
		_, out, _ := runCommand(t, "failures", "--state", path, "--terminal")
		if !strings.Contains(out, "u3 ") || strings.Contains(out, "u4 ") {
			t.Errorf("output:\n%s", out)
		}
	})
	t.Run("CodeJSON", func(t *testing.T) {
		_, out, _ := runCommand(t, "failures", "--state", path, "--code", "network_error", "--output", "json")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 1 {
			t.Fatalf("want one JSON line:\n%s", out)
		}
		var f failureJSON
		if err := json.Unmarshal([]byte(lines[0]), &f); err != nil {
			t.Fatal(err)
		}
		if f.ExternalID != "u4" || f.Terminal || f.NextAttempt == nil || !f.NextAttempt.Equal(farFuture) || f.Attempts != 1 {
			t.Errorf("failure = %+v", f)
		}
	})
}

func TestRetry(t *testing.T) {
	failuresOf := func(t *testing.T, path string) map[string]sync.Failure {
		t.Helper()
		db, err := state.Open(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		fs, err := db.Failures(context.Background(), []string{"u3", "u4"})
		if err != nil {
			t.Fatal(err)
		}
		return fs
	}
	t.Run("DryRun", func(t *testing.T) {
		path := seedState(t)
		code, out, errOut := runCommand(t, "retry", "--state", path, "--all", "--dry-run")
		if code != ExitOK {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		if !strings.Contains(out, "2 failures would be reset (dry run: nothing changed)") {
			t.Errorf("output:\n%s", out)
		}
		if fs := failuresOf(t, path); !fs["u3"].Terminal || fs["u4"].NextAttempt.IsZero() {
			t.Errorf("dry run changed the failures: %+v", fs)
		}
	})
	t.Run("ExternalIDs", func(t *testing.T) {
		path := seedState(t)
		code, out, errOut := runCommand(t, "retry", "--state", path, "--external-id", "u4,nobody", "--external-id", "u9")
		if code != ExitOK {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		if !strings.Contains(out, "1 failures reset; the next run retries them") {
			t.Errorf("output:\n%s", out)
		}
		fs := failuresOf(t, path)
		if !fs["u4"].NextAttempt.IsZero() || !fs["u3"].Terminal {
			t.Errorf("failures after retry: %+v", fs)
		}
	})
	t.Run("Code", func(t *testing.T) {
		path := seedState(t)
		if code, _, errOut := runCommand(t, "retry", "--state", path, "--code", "validation_error"); code != ExitOK {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		fs := failuresOf(t, path)
		if fs["u3"].Terminal || fs["u4"].NextAttempt.IsZero() {
			t.Errorf("failures after retry --code: %+v", fs)
		}
	})
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"NoSelector", nil, "say which failures to retry"},
		{"AllAndCode", []string{"--all", "--code", "x"}, "do not combine it"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := runCommand(t, append([]string{"retry", "--state", "x"}, tt.args...)...)
			if code != ExitFailed || !strings.Contains(errOut, tt.want) {
				t.Errorf("exit %d, stderr %q; want %q", code, errOut, tt.want)
			}
		})
	}
}

// TestRetry_E2E: records that failed for a transient reason wait out their
// backoff (a minute here) on the next run, but are sent at once by the run
// after `retry --all`.
func TestRetry_E2E(t *testing.T) {
	csvPath := filepath.Join(t.TempDir(), "u.csv")
	e := newE2E(t, writeUsers(t, csvPath, 1), emulator.Options{})
	// One synced user first, so the runs below are not cold starts (a cold
	// start lists the customers before writing, and that would fail too).
	if code, out := e.once(); code != ExitOK {
		t.Fatalf("seed run exit %d:\n%s", code, out)
	}
	writeUsers(t, csvPath, 4)
	mustSetFaults(t, e.emu, emulator.Faults{DropRate: 1, WritesOnly: true})
	code, out := e.once()
	if code != ExitTransient {
		t.Fatalf("run exit %d with every write dropped, want %d:\n%s", code, ExitTransient, out)
	}
	wantSummary(t, out, "failed 3")

	mustSetFaults(t, e.emu, emulator.Faults{})
	posts := e.emu.RequestCount(http.MethodPost, emulator.RouteCustomers)
	_, out = e.once()
	wantSummary(t, out, "created 0  updated 0  unchanged 1  recovered 0  rejected 0  failed 3")
	if got := e.emu.RequestCount(http.MethodPost, emulator.RouteCustomers) - posts; got != 0 {
		t.Fatalf("%d creates during the backoff, want 0", got)
	}

	code, rout, errOut := runCommand(t, "retry", "--config", e.config, "--all")
	if code != ExitOK {
		t.Fatalf("retry exit %d: %s", code, errOut)
	}
	wantSummary(t, rout, "3 failures reset")

	code, out = e.once()
	if code != ExitOK {
		t.Fatalf("run after retry exit %d:\n%s", code, out)
	}
	wantSummary(t, out, "created 3  updated 0  unchanged 1  recovered 0  rejected 0  failed 0")
	if got := e.emu.RequestCount(http.MethodPost, emulator.RouteCustomers) - posts; got != 3 {
		t.Errorf("%d creates after retry, want 3", got)
	}
	if n := e.emu.CustomerCount(); n != 4 {
		t.Errorf("emulator holds %d customers, want 4", n)
	}
	e.assertNoDuplicates()
}
