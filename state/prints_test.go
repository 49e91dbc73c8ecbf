package state_test

import (
	"context"
	"testing"
	"time"

	"github.com/plugipay-sync/plugipay-sync/sync"
)

// TestChangeVersion: every change to a mapping, a pending write or a
// failure moves the change version, whichever method makes it (a prints
// file is trusted only at the version it was written at); reads and run
// records do not; the mapping count kept beside it equals COUNT(*).
func TestChangeVersion(t *testing.T) { forEachBackend(t, testChangeVersion) }

func testChangeVersion(t *testing.T, b backend) {
	ctx := context.Background()
	db := b.MustOpen(t)
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	version := func() int64 {
		t.Helper()
		v, err := db.ChangeVersion(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, tc := range []struct {
		name  string
		do    func() error
		moves bool
	}{
		{"put mappings", func() error {
			return db.PutMappings(ctx, []sync.Mapping{{ExternalID: "a", CustomerID: "cus_a", Hash: "h", SyncedAt: now}, {ExternalID: "b", CustomerID: "cus_b", Hash: "h", SyncedAt: now}})
		}, true},
		{"upsert a mapping", func() error {
			return db.PutMapping(ctx, sync.Mapping{ExternalID: "a", CustomerID: "cus_a", Hash: "h2", SyncedAt: now})
		}, true},
		{"pending write", func() error {
			_, err := db.PreparePendingWrite(ctx, sync.PendingWrite{ExternalID: "c", Op: sync.OpCreate, Hash: "h", IdempotencyKey: "k", CreatedAt: now})
			return err
		}, true},
		{"delete pending write", func() error { return db.DeletePendingWrite(ctx, "c") }, true},
		{"failure", func() error {
			_, err := db.RecordFailure(ctx, sync.Failure{ExternalID: "d", Code: "x", UpdatedAt: now})
			return err
		}, true},
		{"delete failure", func() error { return db.DeleteFailure(ctx, "d") }, true},
		{"delete mapping", func() error { return db.DeleteMapping(ctx, "b") }, true},
		{"read mappings", func() error { _, err := db.Mappings(ctx, []string{"a"}); return err }, false},
		{"start a run", func() error { _, err := db.StartRun(ctx, now); return err }, false},
		{"prints token", func() error { return db.SetPrintsToken(ctx, "t") }, false},
	} {
		before := version()
		if err := tc.do(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if moved := version() != before; moved != tc.moves {
			t.Errorf("%s: version moved %v, want %v", tc.name, moved, tc.moves)
		}
		n, err := db.MappingCount(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var want int64
		for range db.AllMappings(ctx) {
			want++
		}
		if n != want {
			t.Errorf("%s: MappingCount = %d, %d mappings", tc.name, n, want)
		}
	}
}
