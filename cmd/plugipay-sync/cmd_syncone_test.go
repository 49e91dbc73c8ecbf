package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plugipay-sync/plugipay-sync/plugipay/emulator"
)

func TestSyncOne(t *testing.T) {
	dir := t.TempDir()
	csvPath := writeUsers(t, filepath.Join(dir, "u.csv"), 20)
	e := newE2E(t, csvPath, emulator.Options{})
	if code, out := e.once(); code != ExitOK {
		t.Fatalf("first run exit %d:\n%s", code, out)
	}
	b, _ := os.ReadFile(csvPath)
	s := strings.Replace(string(b), "Pengguna 3,", "Pengguna Tiga,", 1)
	s += "usr_00020,new20@example.co.id,Baru,,,pro,Bandung,web\n"
	s += "usr_00021,taken21@example.co.id,Diambil,,,pro,Bandung,web\n"
	if err := os.WriteFile(csvPath, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	foreign := createForeign(t, newTestClient(t, e), "usr_00021", "taken21@example.co.id")

	for _, tc := range []struct {
		id, want    string
		code        int
		maxRequests int
	}{
		{"usr_00003", "usr_00003: updated (customer cus_", ExitOK, 2},
		{"usr_00003", "usr_00003: unchanged (customer cus_", ExitOK, 0},
		{"usr_00020", "usr_00020: created (customer cus_", ExitOK, 1},
		{"usr_00021", "usr_00021: recovered (customer " + foreign.ID, ExitOK, 3},
		{"usr_99999", `externalId not found in the source: "usr_99999"`, ExitFailed, 0},
	} {
		before := e.requests()
		code, out := e.command("sync", "--external-id", tc.id)
		d := e.requests().sub(before)
		t.Logf("sync --external-id %s: exit %d, %d requests: %s", tc.id, code, d.total, strings.TrimSpace(out))
		if code != tc.code {
			t.Errorf("%s: exit %d, want %d:\n%s", tc.id, code, tc.code, out)
		}
		wantSummary(t, out, tc.want)
		// Beyond the preflight every command makes first.
		if d.total > tc.maxRequests+preflightLists+preflightGets {
			t.Errorf("%s: %d requests, want at most %d and the preflight's %d", tc.id, d.total, tc.maxRequests, preflightLists+preflightGets)
		}
	}
	if c, _ := e.emu.CustomerByExternalID("usr_00003"); c.Name != "Pengguna Tiga" {
		t.Errorf("usr_00003 name %q", c.Name)
	}
	e.assertNoDuplicates()
	// The next run finds those three in sync.
	code, out := e.once()
	if code != ExitOK {
		t.Fatalf("run exit %d:\n%s", code, out)
	}
	wantSummary(t, out, "created 0  updated 0  unchanged 22")
}
