package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plugipay-sync/plugipay-sync/plugipay"
	"github.com/plugipay-sync/plugipay-sync/plugipay/emulator"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

// verifyJSON runs verify with args and decodes its JSON report.
func (e *e2e) verifyJSON(args ...string) (int, sync.VerifyReport, string) {
	e.t.Helper()
	code, out := e.command("verify", append([]string{"--output", "json"}, args...)...)
	var rep sync.VerifyReport
	line, _, _ := strings.Cut(out, "\n")
	if err := json.Unmarshal([]byte(line), &rep); err != nil {
		e.t.Fatalf("verify output is not a JSON report: %v\n%s", err, out)
	}
	return code, rep, out
}

// TestVerify_Acceptance is issue 18's acceptance test: 1,000 users synced
// into the emulator; 25 customers' managed fields, 5 customers' unowned
// metadata keys changed and 3 customers with unknown externalIds created
// behind the sync's back. verify reports exactly the 25 (per field) and
// the 3 orphans, not the 5, at one list request per 100 customers;
// verify --repair makes exactly 25 PATCHes that leave the unowned keys as
// they were; a second verify finds no drift.
func TestVerify_Acceptance(t *testing.T) {
	if testing.Short() {
		t.Skip("syncs 1,000 users; runs in make test-e2e")
	}
	const users = 1000
	dir := t.TempDir()
	e := newE2E(t, writeUsers(t, filepath.Join(dir, "u.csv"), users), emulator.Options{})
	if code, out := e.once(); code != ExitOK {
		t.Fatalf("first run exit %d:\n%s", code, out)
	}
	ctx := context.Background()
	c := newTestClient(t, e)
	cus := func(i int) plugipay.Customer {
		t.Helper()
		got, ok := e.emu.CustomerByExternalID(fmt.Sprintf("usr_%05d", i))
		if !ok {
			t.Fatalf("usr_%05d has no customer", i)
		}
		return got
	}
	update := func(id string, p plugipay.CustomerParams) {
		t.Helper()
		if _, err := c.Customers.Update(ctx, id, p, ""); err != nil {
			t.Fatal(err)
		}
	}
	// 25 drifted customers: 10 emails, 10 names, 5 owned metadata keys.
	want := map[string]int64{sync.FieldEmail: 10, sync.FieldName: 10, sync.FieldMetadata: 5}
	for i := range 25 {
		x := cus(i * 7)
		switch {
		case i < 10:
			update(x.ID, plugipay.CustomerParams{Email: plugipay.String(fmt.Sprintf("changed%d@dashboard.example", i))})
		case i < 20:
			update(x.ID, plugipay.CustomerParams{Name: plugipay.String("Renamed In Dashboard")})
		default:
			meta := maps.Clone(x.Metadata)
			meta["plan"] = "free"
			update(x.ID, plugipay.CustomerParams{Metadata: meta})
		}
	}
	// 5 customers get a metadata key the sync does not own; 3 of them are
	// among the drifted ones, so the repair must keep it.
	unowned := map[string]bool{}
	for _, i := range []int{0, 70, 140, 500, 501} {
		x := cus(i)
		meta := maps.Clone(x.Metadata)
		meta["support_tier"] = "gold"
		update(x.ID, plugipay.CustomerParams{Metadata: meta})
		unowned[x.ID] = true
	}
	for i := range 3 {
		createForeign(t, c, fmt.Sprintf("legacy_%d", i), fmt.Sprintf("legacy%d@old-import.example", i))
	}

	before := e.requests()
	code, rep, out := e.verifyJSON()
	d := e.requests().sub(before)
	t.Logf("verify: exit %d, %d lists, %d gets: %s", code, d.lists, d.gets, out)
	if code != ExitPartial {
		t.Errorf("verify with drift: exit %d, want %d", code, ExitPartial)
	}
	if rep.Drifted != 25 || !maps.Equal(rep.DriftByField, want) {
		t.Errorf("drifted %d %v, want 25 %v", rep.Drifted, rep.DriftByField, want)
	}
	if rep.Orphans != 3 || rep.Missing != 0 {
		t.Errorf("orphans %d missing %d, want 3 and 0", rep.Orphans, rep.Missing)
	}
	for _, o := range rep.OrphanExamples {
		if !strings.HasPrefix(o.ExternalID, "legacy_") {
			t.Errorf("orphan %v is not one of the foreign customers", o)
		}
	}
	if rep.Compared != users || rep.Listed != users+3 {
		t.Errorf("compared %d listed %d, want %d and %d", rep.Compared, rep.Listed, users, users+3)
	}
	// One list request per 100 customers, beyond the preflight's.
	if wantLists := (users+3+99)/100 + preflightLists; d.lists != wantLists || d.patches != 0 || d.posts != 0 {
		t.Errorf("verify made %d lists (want %d), %d patches, %d posts", d.lists, wantLists, d.patches, d.posts)
	}
	for _, ex := range rep.Examples {
		if ex.Want != "" || ex.Have != "" {
			t.Errorf("example %v shows values without --show-values", ex)
		}
	}
	_, shown := e.command("verify", "--show-values")
	if !strings.Contains(shown, "changed0@dashboard.example") || !strings.Contains(shown, "user0@example.co.id") {
		t.Errorf("verify --show-values does not show the confirmed and current email:\n%s", shown)
	}

	before = e.requests()
	code, rep, out = e.verifyJSON("--repair")
	d = e.requests().sub(before)
	t.Logf("verify --repair: exit %d, %d patches: %s", code, d.patches, out)
	if code != ExitOK {
		t.Errorf("verify --repair: exit %d, want 0", code)
	}
	if d.patches != 25 || rep.Repairs[sync.RepairRepaired] != 25 {
		t.Errorf("repair made %d PATCHes, reported %v; want 25", d.patches, rep.Repairs)
	}
	for i := range 25 {
		x := cus(i * 7)
		if x.Email != fmt.Sprintf("user%d@example.co.id", i*7) || x.Name != fmt.Sprintf("Pengguna %d", i*7) || x.Metadata["plan"] != "pro" {
			t.Errorf("usr_%05d not repaired: %+v", i*7, x)
		}
	}
	for _, x := range e.emu.Customers() {
		if unowned[x.ID] && x.Metadata["support_tier"] != "gold" {
			t.Errorf("%s lost its unowned metadata key: %v", x.ExternalID, x.Metadata)
		}
	}

	code, rep, out = e.verifyJSON()
	if code != ExitOK || rep.Drifted != 0 || rep.Missing != 0 || rep.Orphans != 3 {
		t.Errorf("second verify: exit %d, drifted %d, missing %d, orphans %d, want 0 0 0 3:\n%s", code, rep.Drifted, rep.Missing, rep.Orphans, out)
	}
	// A run after the repair finds everything in sync: the repair
	// confirmed the same content.
	if code, out := e.once(); code != ExitOK || !strings.Contains(out, fmt.Sprintf("unchanged %d", users)) {
		t.Errorf("run after repair: exit %d:\n%s", code, out)
	}
}
