package sync_test

import (
	"context"
	"maps"
	"testing"

	"github.com/plugipay-sync/plugipay-sync/sync"
)

// byExternal returns the fake destination's customer of externalID.
func (d *fakeDest) byExternal(t *testing.T, externalID string) sync.Customer {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.byID {
		if c.ExternalID == externalID {
			return c
		}
	}
	t.Fatalf("no customer has externalId %s", externalID)
	return sync.Customer{}
}

// edit changes a customer behind the sync's back.
func (d *fakeDest) edit(id string, f func(*sync.Customer)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	c := d.byID[id]
	c.Metadata = maps.Clone(c.Metadata)
	f(&c)
	d.byID[id] = c
}

// TestVerify: drift per field, missing customers and orphans, on each kind
// of destination that keeps the external id; repair and recreate go
// through the run's path and leave a clean second verify. In create-only
// mode nothing is repaired.
func TestVerify(t *testing.T) {
	for _, tc := range []struct {
		name       string
		caps       sync.Capabilities
		mode       string
		wantRepair map[string]int64
	}{
		{"Plugipay", plugipayCaps, "", map[string]int64{sync.RepairRepaired: 2, sync.RepairRecreated: 1}},
		{"PayGate", payGateCaps, "", map[string]int64{sync.RepairRepaired: 2, sync.RepairRecreated: 1}},
		{"CreateOnly", plugipayCaps, sync.ModeCreateOnly, map[string]int64{sync.RepairSkipped: 2, sync.RepairRecreated: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.dst.caps = &tc.caps
			h.mode = tc.mode
			src := users(10)
			h.mustRun(src, sync.RunCounts{Read: 10, Created: 10})
			ctx := context.Background()

			a, b, gone := h.dst.byExternal(t, "usr_0001"), h.dst.byExternal(t, "usr_0002"), h.dst.byExternal(t, "usr_0003")
			h.dst.edit(a.ID, func(c *sync.Customer) { c.Email = "changed@example.com"; c.Name = "Changed" })
			h.dst.edit(b.ID, func(c *sync.Customer) { c.Metadata["plan"] = "free" })
			h.dst.mu.Lock()
			delete(h.dst.byID, gone.ID)
			h.dst.byID["cus_ghost"] = sync.Customer{ID: "cus_ghost", ExternalID: "ghost_1"}
			h.dst.mu.Unlock()

			rep, err := h.reconciler(src).Verify(ctx, sync.VerifyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]int64{sync.FieldEmail: 1, sync.FieldName: 1, sync.FieldMetadata: 1}
			if rep.Drifted != 2 || !maps.Equal(rep.DriftByField, want) || rep.Missing != 1 || rep.Orphans != 1 || rep.Compared != 9 {
				t.Fatalf("report %+v", rep)
			}
			if rep.MissingExamples[0].ExternalID != "usr_0003" || rep.OrphanExamples[0].ExternalID != "ghost_1" {
				t.Errorf("missing %v, orphans %v", rep.MissingExamples, rep.OrphanExamples)
			}
			h.dst.resetCalls()
			rep, err = h.reconciler(src).Verify(ctx, sync.VerifyOptions{Repair: true, Missing: sync.MissingRecreate})
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(rep.Repairs, tc.wantRepair) {
				t.Errorf("repairs %v, want %v", rep.Repairs, tc.wantRepair)
			}
			if _, ghost := h.dst.byID["cus_ghost"]; !ghost {
				t.Error("the orphan was touched")
			}
			rep, err = h.reconciler(src).Verify(ctx, sync.VerifyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			wantDrift := int64(0)
			if tc.mode == sync.ModeCreateOnly {
				wantDrift = 2 // create-only never updates
			}
			if rep.Drifted != wantDrift || rep.Missing != 0 || rep.Orphans != 1 {
				t.Errorf("second verify %+v", rep)
			}
			if tc.mode == "" {
				if c := h.dst.byExternal(t, "usr_0001"); c.Email != "user1@example.com" || c.Name != "User 1" {
					t.Errorf("not repaired: %+v", c)
				}
				// The next run finds everything as it confirmed it.
				h.mustRun(src, sync.RunCounts{Read: 10, Unchanged: 10})
			}
		})
	}
}

// TestVerify_AfterRebuild: a cache rebuilt from the customer list keeps
// the listed content, so verify compares those customers too.
func TestVerify_AfterRebuild(t *testing.T) {
	h := newHarness(t)
	src := users(10)
	h.mustRun(src, sync.RunCounts{Read: 10, Created: 10})
	fresh := newHarness(t) // an empty state DB over the same customers
	fresh.dst = h.dst
	ctx := context.Background()
	if _, err := fresh.reconciler(src).RebuildCache(ctx); err != nil {
		t.Fatal(err)
	}
	c := h.dst.byExternal(t, "usr_0004")
	h.dst.edit(c.ID, func(c *sync.Customer) { c.Name = "Edited" })
	rep, err := fresh.reconciler(src).Verify(ctx, sync.VerifyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Compared != 10 || rep.Unverifiable != 0 || rep.Drifted != 1 || rep.DriftByField[sync.FieldName] != 1 {
		t.Errorf("report %+v", rep)
	}
}
