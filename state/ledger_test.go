package state_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/plugipay-sync/plugipay-sync/sync"
)

func TestLedger(t *testing.T) { forEachBackend(t, testLedger) }

func testLedger(t *testing.T, b backend) {
	ctx := context.Background()
	db := b.MustOpen(t)
	defer MustCloseDB(t, db)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

	// A pending write, then its confirmation with content and an entry.
	pw, err := db.PreparePendingWrite(ctx, sync.PendingWrite{ExternalID: "u1", Op: sync.OpCreate, Hash: "h1", IdempotencyKey: "idem_1"})
	if err != nil {
		t.Fatal(err)
	}
	rec := &sync.Record{ExternalID: "u1", Email: "a@example.com", Name: "A", Metadata: map[string]string{"plan": "pro"}}
	entry := &sync.AuditEntry{At: t0, Cause: sync.CauseRun, CauseID: "7", ExternalID: "u1", CustomerID: "cus_1", Op: sync.AuditCreate,
		IdempotencyKey: pw.IdempotencyKey, RequestID: "req_1", Changes: []sync.FieldChange{{Field: "email", Redacted: true}}}
	if err := db.Confirm(ctx, sync.Confirmation{Mapping: sync.Mapping{ExternalID: "u1", CustomerID: "cus_1", Hash: "h1", SyncedAt: t0}, Record: rec, Audit: entry}); err != nil {
		t.Fatal(err)
	}
	pws, err := db.PendingWrites(ctx, []string{"u1"})
	if err != nil || len(pws) != 0 {
		t.Fatalf("pending writes after confirm: %v %v", pws, err)
	}
	recs, err := db.ConfirmedRecords(ctx, []string{"u1", "u2"})
	if err != nil {
		t.Fatal(err)
	}
	got, ok := recs["u1"]
	if !ok || got.Hash != "h1" || got.Record.Email != "a@example.com" || got.Record.Metadata["plan"] != "pro" || len(recs) != 1 {
		t.Fatalf("confirmed records = %+v", recs)
	}

	// A confirmation without content forgets it; without an entry adds none.
	if err := db.Confirm(ctx, sync.Confirmation{Mapping: sync.Mapping{ExternalID: "u1", CustomerID: "cus_1", Hash: sync.ArchivedHash, SyncedAt: t0.Add(time.Hour)},
		Audit: &sync.AuditEntry{At: t0.Add(time.Hour), Cause: sync.CauseVerify, CauseID: "v", ExternalID: "u1", CustomerID: "cus_1", Op: sync.AuditArchive}}); err != nil {
		t.Fatal(err)
	}
	if err := db.Confirm(ctx, sync.Confirmation{Mapping: sync.Mapping{ExternalID: "u1", CustomerID: "cus_1", Hash: sync.ArchivedHash, SyncedAt: t0.Add(2 * time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	if recs, _ := db.ConfirmedRecords(ctx, []string{"u1"}); len(recs) != 0 {
		t.Errorf("content kept after a confirmation without it: %v", recs)
	}
	hist, err := db.AuditHistory(ctx, "u1")
	if err != nil {
		t.Fatal(err)
	}
	ops := []sync.AuditOp{}
	for _, e := range hist {
		ops = append(ops, e.Op)
	}
	if !slices.Equal(ops, []sync.AuditOp{sync.AuditCreate, sync.AuditArchive}) || hist[0].RequestID != "req_1" || hist[0].IdempotencyKey != "idem_1" ||
		!hist[0].At.Equal(t0) || len(hist[0].Changes) != 1 || !hist[0].Changes[0].Redacted {
		t.Fatalf("history = %+v", hist)
	}

	var exported int
	for e, err := range db.AuditSince(ctx, t0.Add(30*time.Minute)) {
		if err != nil {
			t.Fatal(err)
		}
		exported++
		if e.Op != sync.AuditArchive {
			t.Errorf("exported %+v, want only the archive", e)
		}
	}
	if exported != 1 {
		t.Errorf("exported %d entries since t0+30m, want 1", exported)
	}

	// Pruning moves no change version: the prints of a run stay trusted.
	v0, err := db.ChangeVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n, err := db.PruneAudit(ctx, t0.Add(30*time.Minute))
	if err != nil || n != 1 {
		t.Fatalf("pruned %d, %v; want 1", n, err)
	}
	if v1, _ := db.ChangeVersion(ctx); v1 != v0 {
		t.Errorf("pruning moved the change version %d -> %d", v0, v1)
	}
	st, err := db.AuditStats(ctx)
	if err != nil || st.Entries != 1 || !st.Oldest.Equal(t0.Add(time.Hour)) || st.Bytes <= 0 {
		t.Errorf("stats = %+v, %v", st, err)
	}
}
