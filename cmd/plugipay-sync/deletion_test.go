package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plugipay-sync/plugipay-sync/plugipay/emulator"
)

// setSync adds a line under sync: in the e2e config.
func (e *e2e) setSync(line string) {
	e.t.Helper()
	b, err := os.ReadFile(e.config)
	if err != nil {
		e.t.Fatal(err)
	}
	s := strings.Replace(string(b), "sync:\n", "sync:\n  "+line+"\n", 1)
	if err := os.WriteFile(e.config, []byte(s), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

func (e *e2e) archivedIDs() []string {
	var ids []string
	for _, c := range e.emu.Customers() {
		if c.Metadata["archived"] == "true" {
			ids = append(ids, c.ExternalID)
		}
	}
	return ids
}

// TestOnce_DeletionArchive: deleting 50% of the CRM file with archive on
// is refused (exit 2, nothing archived); with --allow-mass-archive exactly
// those are archived; a user who comes back is un-archived.
func TestOnce_DeletionArchive(t *testing.T) {
	dir := t.TempDir()
	e := newE2E(t, writeUsers(t, filepath.Join(dir, "all.csv"), 200), emulator.Options{})
	e.setSync("deletion: archive")
	if code, out := e.once(); code != ExitOK {
		t.Fatalf("first run exit %d:\n%s", code, out)
	}

	half := writeUsers(t, filepath.Join(dir, "half.csv"), 100)
	e.writeConfig(half, "@every 1h")
	e.setSync("deletion: archive")
	before := e.requests()
	code, out := e.once()
	t.Logf("refused run:\n%s", out)
	if code != ExitPartial {
		t.Fatalf("exit %d, want %d:\n%s", code, ExitPartial, out)
	}
	wantSummary(t, out, "100 of 200 known customers (50.0%) are gone from the source, more than sync.max_archive_ratio (5.0%); nothing archived")
	wantSummary(t, out, "--allow-mass-archive")
	wantSummary(t, out, "archived 0")
	if d := e.requests().sub(before); !d.preflightOnly() {
		t.Errorf("the refused run made %+v, want only the preflight", d)
	}
	if got := e.archivedIDs(); len(got) != 0 {
		t.Fatalf("archived despite the refusal: %v", got)
	}

	code, out = e.once("--allow-mass-archive")
	if code != ExitOK {
		t.Fatalf("override exit %d:\n%s", code, out)
	}
	wantSummary(t, out, "archived 100")
	got := e.archivedIDs()
	if len(got) != 100 {
		t.Fatalf("%d customers archived, want 100", len(got))
	}
	for _, id := range got {
		var n int
		if _, err := fmt.Sscanf(id, "usr_%05d", &n); err != nil || n < 100 {
			t.Errorf("%s archived; want only usr_00100..usr_00199", id)
		}
	}
	if c, _ := e.emu.CustomerByExternalID("usr_00150"); c.Metadata["plan"] != "pro" {
		t.Errorf("archiving dropped the other metadata: %v", c.Metadata)
	}

	// Already archived: the next run has nothing to do.
	before = e.requests()
	code, out = e.once()
	if code != ExitOK {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	wantSummary(t, out, "archived 0")
	if d := e.requests().sub(before); !d.preflightOnly() {
		t.Errorf("a run with nothing to archive made %+v, want only the preflight", d)
	}

	// usr_00100 comes back: un-archived.
	e.writeConfig(writeUsers(t, filepath.Join(dir, "back.csv"), 101), "@every 1h")
	e.setSync("deletion: archive")
	code, out = e.once()
	if code != ExitOK {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	wantSummary(t, out, "created 0  updated 1  unchanged 100")
	if c, _ := e.emu.CustomerByExternalID("usr_00100"); c.Metadata["archived"] != "" || c.Metadata["plan"] != "pro" {
		t.Errorf("usr_00100 metadata %v, want un-archived", c.Metadata)
	}
	if n := len(e.archivedIDs()); n != 99 {
		t.Errorf("%d archived, want 99", n)
	}
}
