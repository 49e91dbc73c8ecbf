package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/plugipay-sync/plugipay-sync/plugipay"
	"github.com/plugipay-sync/plugipay-sync/plugipay/emulator"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

// decodeAudit decodes JSON Lines of ledger entries.
func decodeAudit(t *testing.T, out string) []auditJSON {
	t.Helper()
	var es []auditJSON
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var e auditJSON
		if err := dec.Decode(&e); err != nil {
			t.Fatalf("not JSON Lines of ledger entries: %v\n%s", err, out)
		}
		es = append(es, e)
	}
	return es
}

// TestHistory: after a create, a rename, a drift repair and an archive,
// history shows four entries with request ids, idempotency keys and the
// changed fields (names only: audit.values is off), and the ledger holds
// an entry for every write the sync made and no other.
func TestHistory(t *testing.T) {
	dir := t.TempDir()
	csvPath := writeUsers(t, filepath.Join(dir, "u.csv"), 3)
	e := newE2E(t, csvPath, emulator.Options{})
	b, _ := os.ReadFile(e.config)
	cfg := strings.Replace(string(b), "sync:\n", "sync:\n  deletion: archive\n  max_archive_ratio: 1\n", 1)
	if err := os.WriteFile(e.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	edit := func(from, to string) {
		t.Helper()
		b, _ := os.ReadFile(csvPath)
		if err := os.WriteFile(csvPath, []byte(strings.Replace(string(b), from, to, 1)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	once := func(want string) {
		t.Helper()
		if code, out := e.once(); code != ExitOK || !strings.Contains(out, want) {
			t.Fatalf("run exit %d, want %q:\n%s", code, want, out)
		}
	}
	once("created 3")
	edit("Pengguna 1,", "Pengguna Satu,")
	once("updated 1")
	cus, _ := e.emu.CustomerByExternalID("usr_00001")
	if _, err := newTestClient(t, e).Customers.Update(context.Background(), cus.ID,
		plugipay.CustomerParams{Email: plugipay.String("typo@dashboard.example")}, ""); err != nil {
		t.Fatal(err)
	}
	if code, out := e.command("verify", "--repair"); code != ExitOK || !strings.Contains(out, "repaired 1") {
		t.Fatalf("verify --repair exit %d:\n%s", code, out)
	}
	edit("usr_00001,user1@example.co.id,Pengguna Satu,,,pro,Bandung,web\n", "")
	once("archived 1")

	code, out := e.command("history", "--external-id", "usr_00001", "--output", "json")
	if code != ExitOK {
		t.Fatalf("history exit %d:\n%s", code, out)
	}
	es := decodeAudit(t, out)
	type row struct {
		op      sync.AuditOp
		cause   sync.Cause
		changes []string
	}
	want := []row{
		{sync.AuditCreate, sync.CauseRun, []string{"email", "name", "metadata.city", "metadata.plan", "metadata.signup_source"}},
		{sync.AuditUpdate, sync.CauseRun, []string{"name"}},
		{sync.AuditRepair, sync.CauseVerify, []string{"email"}},
		{sync.AuditArchive, sync.CauseRun, []string{"metadata.archived"}},
	}
	if len(es) != len(want) {
		t.Fatalf("history has %d entries, want %d:\n%s", len(es), len(want), out)
	}
	for i, w := range want {
		g := es[i]
		var fields []string
		for _, c := range g.Changes {
			fields = append(fields, c.Field)
			if !c.Redacted || c.Old != "" || c.New != "" {
				t.Errorf("entry %d change %+v: values kept without audit.values", i, c)
			}
		}
		if g.Op != w.op || g.Cause != w.cause || !slices.Equal(fields, w.changes) {
			t.Errorf("entry %d = %s by %s changing %v, want %s by %s changing %v", i, g.Op, g.Cause, fields, w.op, w.cause, w.changes)
		}
		if !strings.HasPrefix(g.RequestID, "req_") || !strings.HasPrefix(g.IdempotencyKey, "idem_") || g.CustomerID != cus.ID || g.CauseID == "" {
			t.Errorf("entry %d = %+v: want a request id, an idempotency key, the customer and the cause's id", i, g)
		}
	}
	if strings.Contains(out, "typo@dashboard.example") || strings.Contains(out, "Pengguna") {
		t.Errorf("history shows values without audit.values:\n%s", out)
	}
	if code, out := e.command("history", "--external-id", "usr_00001"); code != ExitOK || !strings.Contains(out, "4 entries") || !strings.Contains(out, "repair") {
		t.Errorf("history table exit %d:\n%s", code, out)
	}

	// Every write the sync made, and only those, is in the ledger: 3
	// creates, 1 rename, 1 repair, 1 archive (the test's own PATCH is not).
	code, out = e.command("audit", "export", "--since", "1h")
	if all := decodeAudit(t, out); code != ExitOK || len(all) != e.writes()-1 || len(all) != 6 {
		t.Errorf("audit export exit %d: %d entries, the sync made %d writes:\n%s", code, len(all), e.writes()-1, out)
	}
	if code, out := e.command("status"); code != ExitOK || !strings.Contains(out, "Audit ledger:  6 entries") {
		t.Errorf("status exit %d:\n%s", code, out)
	}

	// sync --external-id is its own cause.
	edit("Pengguna 2,", "Pengguna Dua,")
	if code, out := e.command("sync", "--external-id", "usr_00002"); code != ExitOK {
		t.Fatalf("sync --external-id exit %d:\n%s", code, out)
	}
	_, out = e.command("history", "--external-id", "usr_00002", "--output", "json")
	if es := decodeAudit(t, out); len(es) != 2 || es[1].Cause != sync.CauseSync || es[1].Op != sync.AuditUpdate {
		t.Errorf("history after sync --external-id:\n%s", out)
	}
}
