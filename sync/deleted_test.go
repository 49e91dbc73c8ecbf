package sync_test

import (
	"context"
	"testing"

	"github.com/plugipay-sync/plugipay-sync/sync"
)

// deletedWorld syncs 10 users, then deletes usr_0003 at the source: a
// soft-deleted SQL row or an archived HubSpot contact, a record with only
// its external id and Deleted set.
func deletedWorld(t *testing.T, deletion string, complete bool) (*harness, sync.Source, sync.Options, sync.Customer) {
	t.Helper()
	h := newHarness(t)
	opts := sync.Options{Concurrency: 2, BatchSize: 4, Now: h.clk.Now, Deletion: deletion, MaxArchiveRatio: 1}
	if _, err := sync.New(users(10), h.dst, h.store, opts).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	src := users(10)
	src.items[3] = sync.Record{ExternalID: "usr_0003", Ref: "line 5", Deleted: true}
	var before sync.Customer
	for _, c := range h.dst.byID {
		if c.ExternalID == "usr_0003" {
			before = c
		}
	}
	if before.Email == "" {
		t.Fatalf("no customer of usr_0003: %+v", h.dst.byID)
	}
	return h, &partialSource{sliceSource: src, complete: complete}, opts, before
}

// assertKept fails unless usr_0003's customer holds what it held before,
// with metadata.archived = "true" added when archived is set.
func assertKept(t *testing.T, h *harness, before sync.Customer, archived bool) {
	t.Helper()
	c := h.dst.byID[before.ID]
	if c.Email != before.Email || c.Name != before.Name || c.Phone != before.Phone || c.Metadata["plan"] != before.Metadata["plan"] {
		t.Fatalf("customer of a deleted user changed: %+v, was %+v", c, before)
	}
	if got := c.Metadata[sync.ArchivedKey] == "true"; got != archived {
		t.Fatalf("archived = %v, want %v (%+v)", got, archived, c)
	}
}

// Regression (issue 13): sync --external-id of a soft-deleted row answered
// "updated" and blanked the customer. It does what the run does: archive
// under the archive policy after a complete read, otherwise leave alone.
func TestSyncOne_DeletedUserIsNeverBlanked(t *testing.T) {
	for _, tc := range []struct {
		name     string
		deletion string
		complete bool
		action   string
		archived bool
	}{
		{"ignore policy leaves it", sync.DeletionIgnore, true, sync.ActionSkipped, false},
		{"incremental read leaves it", sync.DeletionArchive, false, sync.ActionSkipped, false},
		{"archive policy archives it", sync.DeletionArchive, true, sync.ActionArchived, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, src, opts, before := deletedWorld(t, tc.deletion, tc.complete)
			h.dst.resetCalls()
			res, err := sync.New(src, h.dst, h.store, opts).SyncOne(context.Background(), "usr_0003")
			if err != nil || res.Action != tc.action {
				t.Fatalf("SyncOne = %+v, %v; want %s", res, err, tc.action)
			}
			assertKept(t, h, before, tc.archived)
			if _, u, _ := h.dst.calls(); !tc.archived && u != 0 {
				t.Errorf("%d updates for a user left alone", u)
			}
		})
	}
}

// Regression (issue 13): the dry run planned a soft-deleted row as an
// update that blanked it, and archives after an incremental read that the
// run never made. It plans what the run then does, and neither blanks.
func TestPlan_DeletedUserIsNeverBlanked(t *testing.T) {
	for _, tc := range []struct {
		name     string
		deletion string
		complete bool
		archived bool
	}{
		{"ignore policy", sync.DeletionIgnore, true, false},
		{"incremental read", sync.DeletionArchive, false, false},
		{"archive policy", sync.DeletionArchive, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, src, opts, before := deletedWorld(t, tc.deletion, tc.complete)
			var entries []sync.PlanEntry
			counts, err := sync.New(src, h.dst, h.store, opts).Plan(context.Background(), func(e sync.PlanEntry) { entries = append(entries, e) })
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]int64{sync.PlanUnchanged: 9}
			if tc.archived {
				want[sync.PlanArchive] = 1
			}
			if len(counts) != len(want) || counts[sync.PlanUnchanged] != 9 || counts[sync.PlanArchive] != want[sync.PlanArchive] {
				t.Fatalf("plan counts = %v, want %v (%+v)", counts, want, entries)
			}
			for _, e := range entries {
				for _, c := range e.Changes {
					if c.Field != "metadata."+sync.ArchivedKey {
						t.Errorf("planned change of %s: %+v", e.ExternalID, c)
					}
				}
			}
			rec, err := sync.New(src, h.dst, h.store, opts).Run(context.Background())
			if err != nil || rec.Counts.Archived != want[sync.PlanArchive] || rec.Counts.Updated != 0 {
				t.Fatalf("run = %+v, %v; want what the plan said", rec.Counts, err)
			}
			assertKept(t, h, before, tc.archived)
		})
	}
}

// An archived user stays archived and whole: a later run, its plan and
// SyncOne leave the customer alone while the source still reports it
// deleted.
func TestArchivedUserIsLeftAlone(t *testing.T) {
	h, src, opts, before := deletedWorld(t, sync.DeletionArchive, true)
	if _, err := sync.New(src, h.dst, h.store, opts).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.dst.resetCalls()
	r := sync.New(src, h.dst, h.store, opts)
	counts, err := r.Plan(context.Background(), func(e sync.PlanEntry) { t.Errorf("planned %+v", e) })
	if err != nil || counts[sync.PlanArchive] != 0 {
		t.Fatalf("plan = %v, %v", counts, err)
	}
	if res, err := r.SyncOne(context.Background(), "usr_0003"); err != nil || res.Action != sync.ActionSkipped {
		t.Fatalf("SyncOne = %+v, %v; want skipped", res, err)
	}
	if rec, err := r.Run(context.Background()); err != nil || rec.Counts.Archived != 0 {
		t.Fatalf("run = %+v, %v", rec.Counts, err)
	}
	if c, u, _ := h.dst.calls(); c+u != 0 {
		t.Errorf("%d creates, %d updates", c, u)
	}
	assertKept(t, h, before, true)
}
