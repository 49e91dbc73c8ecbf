package main

import (
	"crypto/sha256"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plugipay-sync/plugipay-sync/plugipay/emulator"
)

// fileSums returns the sha256 of the state DB and its -wal, "" for a
// missing file.
func (e *e2e) fileSums() [2]string {
	e.t.Helper()
	var sums [2]string
	for i, suffix := range []string{"", "-wal"} {
		b, err := os.ReadFile(e.state + suffix)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			e.t.Fatal(err)
		}
		h := sha256.Sum256(b)
		sums[i] = string(h[:])
	}
	return sums
}

// TestOnce_DryRun: --dry-run on the sample data prints the plan with the
// field-level diff and leaves the emulator and the state DB byte-for-byte
// unchanged.
func TestOnce_DryRun(t *testing.T) {
	e := newE2E(t, "../../crm/testdata/sample_users.csv", emulator.Options{})

	// Before anything was synced: everything would be created.
	code, out := e.once("--dry-run")
	if code != ExitPartial {
		t.Fatalf("exit %d, want %d (5 bad rows):\n%s", code, ExitPartial, out)
	}
	wantSummary(t, out, "plan (dry run, nothing written):  create 1195  update 0  unchanged 0  archive 0  reject 5  skip 0")
	if e.emu.WritesExecuted() != 0 || e.emu.CustomerCount() != 0 {
		t.Fatalf("dry run wrote: %d writes executed", e.emu.WritesExecuted())
	}
	if _, err := os.Stat(e.state); !os.IsNotExist(err) {
		t.Fatalf("the dry run created the state DB (%v)", err)
	}

	if code, out := e.once(); code != ExitPartial {
		t.Fatalf("real run exit %d:\n%s", code, out)
	}
	renamed := renameFirst(t, "../../crm/testdata/sample_users.csv", filepath.Join(e.dir, "renamed.csv"))
	e.writeConfig(renamed, "@every 1h")

	sums := e.fileSums()
	executed := e.emu.WritesExecuted()
	before := e.requests()
	code, out = e.once("--dry-run")
	t.Logf("table plan:\n%s", tail(out, 12))
	if code != ExitPartial {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	wantSummary(t, out, "plan (dry run, nothing written):  create 0  update 1  unchanged 1194  archive 0  reject 5  skip 0")
	wantSummary(t, out, ` Renamed"`)
	if !strings.Contains(out, "ACTION") || !strings.Contains(out, "name: ") {
		t.Errorf("no table with the name change:\n%s", out)
	}
	d := e.requests().sub(before)
	if d.posts+d.patches != 0 || e.emu.WritesExecuted() != executed {
		t.Fatalf("dry run wrote to Plugipay (%d POSTs, %d PATCHes)", d.posts, d.patches)
	}
	if d.gets != 1 {
		t.Errorf("%d GETs, want 1 (the old values of the renamed user)", d.gets)
	}
	if got := e.fileSums(); got != sums {
		t.Fatal("the state DB changed during the dry run")
	}

	code, out = e.once("--dry-run", "--output", "json")
	if code != ExitPartial {
		t.Fatalf("json exit %d:\n%s", code, out)
	}
	var updates int
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var entry struct {
			Action  string
			Changes []struct{ Field, Old, New string }
		}
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Fatalf("not a JSON line: %q: %v", line, err)
		}
		// JSON keys are snake_case in every command's output, as in the
		// logs and in status and failures.
		var keys map[string]any
		_ = json.Unmarshal([]byte(line), &keys)
		for k := range keys {
			if strings.ToLower(k) != k {
				t.Errorf("JSON key %q is not snake_case: %s", k, line)
			}
		}
		if _, ok := keys["summary"]; !ok {
			if _, ok := keys["external_id"]; !ok {
				t.Errorf("a plan line without external_id: %s", line)
			}
		}
		if entry.Action == "update" {
			updates++
			if len(entry.Changes) != 1 || entry.Changes[0].Field != "name" || entry.Changes[0].New != entry.Changes[0].Old+" Renamed" {
				t.Errorf("update changes = %+v", entry.Changes)
			}
		}
	}
	if updates != 1 {
		t.Errorf("%d update lines, want 1:\n%s", updates, out)
	}
	if got := e.fileSums(); got != sums {
		t.Fatal("the state DB changed during the JSON dry run")
	}
	if e.emu.WritesExecuted() != executed {
		t.Fatal("the JSON dry run wrote to Plugipay")
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
