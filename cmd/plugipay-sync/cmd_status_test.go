package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plugipay-sync/plugipay-sync/state"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

// runCommand runs the program in-process with args and returns its exit
// code, stdout and stderr.
func runCommand(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

var (
	statusStart = time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)
	// farFuture is a next attempt time that has not passed when tests run.
	farFuture = time.Date(2099, 1, 1, 12, 0, 0, 0, time.UTC)
)

// seedState writes a state file with three runs (success, partial, one
// whose process died), two mappings and two failures (one terminal).
func seedState(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := state.Open(ctx, path, state.WithClock(func() time.Time { return statusStart }))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i, r := range []sync.RunRecord{
		{Outcome: sync.OutcomeSuccess, Counts: sync.RunCounts{Read: 1200, Created: 1195, Rejected: 5}},
		{Outcome: sync.OutcomePartial, Error: "", Counts: sync.RunCounts{Read: 1200, Unchanged: 1193, Updated: 1, Failed: 1, Rejected: 5}},
	} {
		start := statusStart.Add(time.Duration(i) * time.Hour)
		id, err := db.StartRun(ctx, start)
		if err != nil {
			t.Fatal(err)
		}
		r.ID, r.StartedAt, r.FinishedAt = id, start, start.Add(1500*time.Millisecond)
		if err := db.FinishRun(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.StartRun(ctx, statusStart.Add(2*time.Hour)); err != nil { // never finished
		t.Fatal(err)
	}
	if err := db.PutMappings(ctx, []sync.Mapping{
		{ExternalID: "u1", CustomerID: "cus_1", Hash: "h1"},
		{ExternalID: "u2", CustomerID: "cus_2", Hash: "h2"},
	}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []sync.Failure{
		{ExternalID: "u3", Hash: "h3", Terminal: true, Code: "validation_error", Message: "email: invalid", RequestID: "req_9"},
		{ExternalID: "u4", Hash: "h4", Code: "network_error", Message: "connection reset", NextAttempt: farFuture},
	} {
		if _, err := db.RecordFailure(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

func TestStatus_Table(t *testing.T) {
	path := seedState(t)
	code, out, errOut := runCommand(t, "status", "--state", path)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"Cache:         2 mappings\n",
		"Failure queue: 2 (1 terminal, 1 retrying)\n",
		"RUN  STARTED (UTC)        DURATION  OUTCOME  READ  CREATED",
		"2    2026-11-21 10:00:00  1.5s      partial  1200  0        1        1193",
		"1    2026-11-21 09:00:00  1.5s      success  1200  1195",
		"3    2026-11-21 11:00:00  -         running  0",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}
	if i3, i1 := strings.Index(out, "\n3 "), strings.Index(out, "\n1 "); i3 > i1 {
		t.Errorf("runs not newest first:\n%s", out)
	}

	t.Run("Runs", func(t *testing.T) {
		_, out, _ := runCommand(t, "status", "--state", path, "--runs", "1")
		if !strings.Contains(out, "\n3 ") || strings.Contains(out, "\n2 ") {
			t.Errorf("--runs 1 output:\n%s", out)
		}
	})
}

func TestStatus_JSON(t *testing.T) {
	path := seedState(t)
	code, out, errOut := runCommand(t, "status", "--state", path, "--output", "json")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var rep statusReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	if rep.Mappings != 2 || rep.Failures != (statusFailures{Total: 2, Terminal: 1, Retrying: 1}) || len(rep.Runs) != 3 {
		t.Fatalf("report = %+v", rep)
	}
	r := rep.Runs[1]
	if r.ID != 2 || r.Outcome != sync.OutcomePartial || r.Failed != 1 || r.DurationSeconds == nil || *r.DurationSeconds != 1.5 {
		t.Errorf("run 2 = %+v", r)
	}
	if r := rep.Runs[0]; r.Outcome != "running" || r.FinishedAt != nil || r.DurationSeconds != nil {
		t.Errorf("unfinished run = %+v", r)
	}
	if !strings.Contains(out, `"finished_at": null`) {
		t.Errorf("an unfinished run should have finished_at null:\n%s", out)
	}
}

// TestStatus_ConfigWithoutSecret reads state.path from a config whose
// Plugipay secret and key are unset: status needs neither.
func TestStatus_ConfigWithoutSecret(t *testing.T) {
	path := seedState(t)
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	body := "state:\n  path: " + path + "\nplugipay:\n  secret: ${PLUGIPAY_SYNC_TEST_UNSET_SECRET}\n"
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runCommand(t, "status", "--config", cfg)
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "Cache:         2 mappings") {
		t.Errorf("output:\n%s", out)
	}
}

func TestStatus_Errors(t *testing.T) {
	dir := t.TempDir()
	unsetPath := filepath.Join(dir, "unset.yaml")
	if err := os.WriteFile(unsetPath, []byte("state:\n  path: ${PLUGIPAY_SYNC__TEST_UNSET_DIR}/s.db\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	unknownKey := filepath.Join(dir, "typo.yaml")
	if err := os.WriteFile(unknownKey, []byte("stat:\n  path: x.db\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"MissingState", []string{"--state", filepath.Join(dir, "nope.db")}, "does not exist"},
		{"MissingConfig", []string{"--config", filepath.Join(dir, "nope.yaml")}, "or give the state DB with --state"},
		{"UnsetStateVar", []string{"--config", unsetPath}, "state.path: environment variable PLUGIPAY_SYNC__TEST_UNSET_DIR is not set"},
		{"UnknownKey", []string{"--config", unknownKey}, "field stat not found"},
		{"BadOutput", []string{"--state", "x", "--output", "xml"}, "--output: must be table or json"},
		{"BadRuns", []string{"--state", "x", "--runs", "0"}, "--runs: must be at least 1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := runCommand(t, append([]string{"status"}, tt.args...)...)
			if code != ExitFailed || !strings.Contains(errOut, tt.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, errOut, ExitFailed, tt.want)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "nope.db")); !os.IsNotExist(err) {
		t.Error("status created the missing state DB")
	}
}
