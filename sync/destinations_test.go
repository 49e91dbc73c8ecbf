package sync_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	stdsync "sync"
	"testing"
	"time"

	"github.com/plugipay-sync/plugipay-sync/sync"
)

// errLost is a transient failure after the write executed: its answer was
// lost (a timeout, a dropped connection).
var errLost = &sync.APIError{Code: "network_error", Message: "connection reset after the write executed"}

// On a destination that takes a second create for one external id and
// replays nothing, a create whose answer was lost is found, not repeated.
func TestRun_NonUniqueDestinationFindsUnconfirmedCreates(t *testing.T) {
	h := newHarness(t)
	h.dst.caps = &payGateCaps
	lost := map[string]bool{"usr_0001": true, "usr_0004": true, "usr_0009": true}
	h.dst.afterExec = func(op, id string) error {
		if op == "create" && lost[id] {
			return errLost
		}
		return nil
	}
	src := users(12)
	h.mustRun(src, sync.RunCounts{Read: 12, Created: 9, Failed: 3})
	h.dst.afterExec = nil
	h.clk.Add(time.Hour) // past the backoff
	h.dst.resetCalls()
	h.mustRun(src, sync.RunCounts{Read: 12, Unchanged: 9, Recovered: 3})
	if c, _, _ := h.dst.calls(); c != 0 {
		t.Errorf("%d creates after the lost answers; want 0", c)
	}
	if h.dst.lists != 3 {
		t.Errorf("%d customer walks, want 3 (one per unconfirmed create)", h.dst.lists)
	}
	for i := range 12 {
		if n := h.dst.count(fmt.Sprintf("usr_%04d", i)); n != 1 {
			t.Fatalf("usr_%04d exists %d times", i, n)
		}
	}
	h.dst.resetCalls()
	h.mustRun(src, sync.RunCounts{Read: 12, Unchanged: 12})
	if c, u, _ := h.dst.calls(); c+u+h.dst.lists != 0 {
		t.Errorf("a warm run made calls: %d creates, %d updates, %d walks", c, u, h.dst.lists)
	}
}

// A create that failed before executing is made once the failure passes,
// after a look that finds nothing.
func TestRun_NonUniqueDestinationCreatesAfterUnexecutedFailure(t *testing.T) {
	h := newHarness(t)
	h.dst.caps = &payGateCaps
	h.dst.beforeOp = func(op, id string) error {
		if op == "create" && id == "usr_0002" {
			return &sync.APIError{Status: 503, Code: "server_error"}
		}
		return nil
	}
	src := users(4)
	h.mustRun(src, sync.RunCounts{Read: 4, Created: 3, Failed: 1})
	h.dst.beforeOp = nil
	h.clk.Add(time.Hour)
	h.mustRun(src, sync.RunCounts{Read: 4, Unchanged: 3, Created: 1})
	if n := h.dst.count("usr_0002"); n != 1 {
		t.Fatalf("usr_0002 exists %d times", n)
	}
}

// A lost state DB is rebuilt from the external ids the destination keeps
// in metadata; two customers holding one id are reported, the first kept.
func TestRebuild_NonUniqueDestination(t *testing.T) {
	h := newHarness(t)
	h.dst.caps = &payGateCaps
	src := users(10)
	h.mustRun(src, sync.RunCounts{Read: 10, Created: 10})
	h.dst.addForeign(sync.Customer{ExternalID: "usr_0003", Email: "copy@example.com"}) // a copy another tool made

	h.store.Close()
	h.path = filepath.Join(t.TempDir(), "fresh.db")
	h.open()
	h.dst.resetCalls()
	n, err := h.reconciler(src).RebuildCache(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n.Listed != 11 || n.Mapped != 10 || n.Duplicates != 1 {
		t.Errorf("rebuild = %+v, want 11 listed, 10 mapped, 1 duplicate", n)
	}
	m, _ := h.store.Mappings(context.Background(), []string{"usr_0003"})
	if c := h.dst.byID[m["usr_0003"].CustomerID]; c.Email != "user3@example.com" {
		t.Errorf("usr_0003 -> %+v, want the first listed, the sync's own", c)
	}
	h.mustRun(src, sync.RunCounts{Read: 10, Unchanged: 10})
	if c, u, _ := h.dst.calls(); c+u != 0 {
		t.Errorf("after the rebuild: %d creates, %d updates; want none", c, u)
	}
}

func TestRun_Modes(t *testing.T) {
	ctx := context.Background()
	t.Run("update-only links by external id and never creates", func(t *testing.T) {
		h := newHarness(t)
		h.mode = sync.ModeUpdateOnly
		h.dst.addForeign(sync.Customer{ExternalID: "usr_0001", Email: "old@example.com", Name: "User 1"})
		h.dst.addForeign(sync.Customer{ExternalID: "usr_0002", Email: "user2@example.com", Name: "User 2", Metadata: map[string]string{"plan": "pro"}})
		src := users(5)
		// Users 0, 3, 4 have no customer; the cache rebuild links 1 and 2.
		h.mustRun(src, sync.RunCounts{Read: 5, Updated: 1, Unchanged: 1, Skipped: 3})
		if c, _, _ := h.dst.calls(); c != 0 {
			t.Errorf("%d creates in update-only mode", c)
		}
		// A customer made later is found by its external id.
		h.dst.addForeign(sync.Customer{ExternalID: "usr_0003", Email: "x@example.com"})
		h.mustRun(src, sync.RunCounts{Read: 5, Unchanged: 2, Recovered: 1, Skipped: 2})
		if c := h.dst.byID["cus_000003"]; c.Email != "user3@example.com" {
			t.Errorf("linked customer = %+v, want it brought in line", c)
		}
	})
	t.Run("create-only creates and never updates", func(t *testing.T) {
		h := newHarness(t)
		h.mode = sync.ModeCreateOnly
		src := users(3)
		h.mustRun(src, sync.RunCounts{Read: 3, Created: 3})
		r := src.items[1].(sync.Record)
		r.Name = "Changed"
		src.items[1] = r
		h.dst.addForeign(sync.Customer{ExternalID: "usr_0100", Email: "other@example.com", Name: "Other Tool"})
		src.items = append(src.items, sync.Record{ExternalID: "usr_0100", Email: "u100@example.com", Name: "Hundred"},
			sync.Record{ExternalID: "usr_0101", Email: "u101@example.com"})
		h.dst.resetCalls()
		h.mustRun(src, sync.RunCounts{Read: 5, Unchanged: 2, Skipped: 1, Created: 1, Recovered: 1})
		if _, u, _ := h.dst.calls(); u != 0 {
			t.Errorf("%d updates in create-only mode", u)
		}
		if c := h.dst.byID["cus_000004"]; c.Name != "Other Tool" {
			t.Errorf("conflicting customer changed in create-only mode: %+v", c)
		}
	})
	t.Run("update-only on a destination without external ids costs no call", func(t *testing.T) {
		h := newHarness(t)
		h.mode = sync.ModeUpdateOnly
		h.dst.caps = &pinCaps
		h.dst.addForeign(sync.Customer{Email: "user0@example.com", Name: "User 0"})
		h.mustRun(users(4), sync.RunCounts{Read: 4, Skipped: 4})
		if c, u, f := h.dst.calls(); c+u+f+h.dst.lists+h.dst.gets != 0 {
			t.Errorf("calls: %d creates, %d updates, %d finds, %d lists, %d gets", c, u, f, h.dst.lists, h.dst.gets)
		}
	})
	for _, tc := range []struct {
		name, mode, deletion string
		caps                 sync.Capabilities
		want                 string
	}{
		{"upsert on an update-only destination", "", "", pinCaps, `mode "upsert" creates customers`},
		{"create-only on an update-only destination", sync.ModeCreateOnly, "", pinCaps, `mode "create-only" creates customers`},
		{"unknown mode", "merge", "", plugipayCaps, `unknown mode "merge"`},
		{"archive without metadata", sync.ModeUpdateOnly, sync.DeletionArchive, pinCaps, `deletion policy "archive"`},
		{"creating without a way to recognise customers", "", "", sync.Capabilities{Create: true}, "crash could create a customer twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.dst.caps = &tc.caps
			r := sync.New(users(1), h.dst, h.store, sync.Options{Mode: tc.mode, Deletion: tc.deletion})
			if err := r.Check(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Check() = %v, want %q", err, tc.want)
			}
			if _, err := r.Run(ctx); err == nil {
				t.Fatal("Run accepted options Check refuses")
			}
			if h.dst.creates != 0 {
				t.Error("a refused run created customers")
			}
		})
	}
}

// Fields a destination lacks are neither sent nor compared: a user with a
// phone and metadata, linked to a customer holding only name and email,
// is unchanged.
func TestRun_FieldsTheDestinationLacks(t *testing.T) {
	h := newHarness(t)
	h.dst.caps = &pinCaps
	h.mode = sync.ModeUpdateOnly
	h.dst.addForeign(sync.Customer{Email: "ada@example.com", Name: "Ada Lovelace"})
	src := &sliceSource{items: []any{sync.Record{ExternalID: "u1", Email: "ada@example.com", Name: "Ada Lovelace",
		Phone: "+6281234567890", TaxID: "NPWP1", Metadata: map[string]string{"plan": "pro"}}}}
	if _, err := h.reconciler(src).LinkByEmail(context.Background(), true); err != nil {
		t.Fatal(err)
	}
	h.mustRun(src, sync.RunCounts{Read: 1, Unchanged: 1})
	if _, u, _ := h.dst.calls(); u != 0 {
		t.Errorf("%d updates for fields the destination lacks", u)
	}
}

func TestLinkByEmail(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	h.dst.caps = &pinCaps
	h.mode = sync.ModeUpdateOnly
	for _, c := range []sync.Customer{
		{Email: "a@example.com", Name: "A Old"},       // cus_000001 <- u1, name differs
		{Email: "B@Example.com", Name: "B"},           // cus_000002 <- u2, case differs
		{Email: "dup@example.com", Name: "D"},         // cus_000003 } two customers
		{Email: "dup@example.com", Name: "D"},         // cus_000004 } one email
		{Email: "shared@example.com", Name: "S"},      // cus_000005: two users
		{Email: "linked@example.com", Name: "Li"},     // cus_000006: linked already
		{Email: "nobody@example.com", Name: "Nobody"}, // cus_000007: no user
	} {
		h.dst.addForeign(c)
	}
	if err := h.store.PutMapping(ctx, sync.Mapping{ExternalID: "u9", CustomerID: "cus_000006", Hash: "h", SyncedAt: h.clk.Now()}); err != nil {
		t.Fatal(err)
	}
	src := &sliceSource{items: []any{
		sync.Record{ExternalID: "u1", Email: "a@example.com", Name: "A New"},
		sync.Record{ExternalID: "u2", Email: "b@example.com", Name: "B"},
		sync.Record{ExternalID: "u3", Email: "dup@example.com", Name: "D"},
		sync.Record{ExternalID: "u4", Email: "shared@example.com", Name: "S"},
		sync.Record{ExternalID: "u5", Email: "shared@example.com", Name: "S"},
		sync.Record{ExternalID: "u6", Email: "none@example.com", Name: "N"},
		sync.Record{ExternalID: "u7", Name: "No Email"},
		sync.Record{ExternalID: "u9", Email: "linked@example.com", Name: "Li"},
		&sync.RecordError{Ref: "line 9", Reason: "missing externalId"},
	}}
	r := h.reconciler(src)
	want := sync.LinkReport{Listed: 7, Linked: 2, AlreadyLinked: 1, Unmatched: 1, WithoutEmail: 1,
		Ambiguous: []sync.Ambiguity{
			{ExternalIDs: []string{"u3"}, CustomerIDs: []string{"cus_000003", "cus_000004"}},
			{ExternalIDs: []string{"u4", "u5"}, CustomerIDs: []string{"cus_000005"}},
		}}
	dry, err := r.LinkByEmail(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(dry, want) {
		t.Fatalf("dry run = %+v\nwant      %+v", dry, want)
	}
	if n, _ := h.store.MappingCount(ctx); n != 1 {
		t.Fatalf("a dry run stored mappings: %d", n)
	}
	got, err := r.LinkByEmail(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("report = %+v\nwant    %+v", got, want)
	}
	m, _ := h.store.Mappings(ctx, []string{"u1", "u2", "u3", "u4", "u5"})
	if len(m) != 2 || m["u1"].CustomerID != "cus_000001" || m["u2"].CustomerID != "cus_000002" {
		t.Fatalf("mappings = %+v, want u1 and u2 only", m)
	}
	// The next run patches only the linked customers whose CRM data
	// differ: u1's name, u2's email (the CRM's spelling wins).
	h.dst.resetCalls()
	h.mustRun(src, sync.RunCounts{Read: 9, Updated: 2, Unchanged: 1, Skipped: 5, Rejected: 1})
	if c := h.dst.byID["cus_000001"]; c.Name != "A New" {
		t.Errorf("cus_000001 = %+v, want renamed", c)
	}
	if c := h.dst.byID["cus_000002"]; c.Email != "b@example.com" {
		t.Errorf("cus_000002 = %+v, want the CRM's email", c)
	}
	if _, u, _ := h.dst.calls(); u != 2 {
		t.Errorf("%d updates, want 2", u)
	}
	// A second link finds nothing new and changes nothing.
	again, err := r.LinkByEmail(ctx, true)
	if err != nil || again.Linked != 0 || again.AlreadyLinked != 3 {
		t.Errorf("second link = %+v, %v; want 0 linked, 3 already", again, err)
	}
	if _, err := r.RebuildCache(ctx); !errors.Is(err, sync.ErrNoExternalID) {
		t.Errorf("RebuildCache on a destination without external ids: %v", err)
	}
}

// A duplicated external id is found however far apart its rows are, by a
// filter that never holds the ids themselves, and every row of it is
// rejected in every run, the first included (issue 13: the first run
// synced the first row when the rows were more than a batch apart). Once
// the source has one row again, it is synced in the same run.
func TestRun_DuplicateExternalIDAcrossBatches(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t) // batches of 7
	src := users(30)
	far := sync.Record{ExternalID: "usr_0002", Email: "far@example.com", Name: "Far Copy", Ref: "line 40"}
	near := sync.Record{ExternalID: "usr_0029", Email: "near@example.com", Name: "Near Copy", Ref: "line 41"}
	src.items = append(src.items, far, near)
	h.mustRun(src, sync.RunCounts{Read: 32, Created: 28, Rejected: 4})
	for _, id := range []string{"usr_0002", "usr_0029"} {
		if n := h.dst.count(id); n != 0 {
			t.Fatalf("%s exists %d times; no row of a duplicated id is synced", id, n)
		}
	}
	ids, _ := h.store.FailureIDsByCode(ctx, sync.CodeDuplicateExternalID)
	if strings.Join(ids, ",") != "usr_0002,usr_0029" {
		t.Fatalf("duplicate marks = %v", ids)
	}

	// Syncing one by hand refuses a marked user.
	if res, err := h.reconciler(src).SyncOne(ctx, "usr_0029"); err == nil || res.Action != sync.ActionRejected {
		t.Fatalf("SyncOne of a marked duplicate = %+v, %v; want rejected", res, err)
	}

	// Next run: every row of both is rejected, nothing written.
	h.dst.resetCalls()
	h.mustRun(src, sync.RunCounts{Read: 32, Unchanged: 28, Rejected: 4})
	if c, u, _ := h.dst.calls(); c+u != 0 {
		t.Errorf("a marked duplicate was written: %d creates, %d updates", c, u)
	}

	// The CRM is fixed: one row each is left. Both sync in that run.
	src.items = src.items[:30]
	h.mustRun(src, sync.RunCounts{Read: 30, Unchanged: 28, Created: 2})
	if n := h.dst.count("usr_0029"); n != 1 {
		t.Errorf("usr_0029 exists %d times after the fix", n)
	}
	if ids, _ := h.store.FailureIDsByCode(ctx, sync.CodeDuplicateExternalID); len(ids) != 0 {
		t.Errorf("marks left after the fix: %v", ids)
	}
	h.mustRun(src, sync.RunCounts{Read: 30, Unchanged: 30})
}

// A duplicated id is never written, in any run, whatever the batch size
// (issue 13): every row is rejected with all its line numbers, and a
// customer that exists for it already is left alone and listed in the
// failures.
func TestRun_DuplicateIndependentOfBatchSize(t *testing.T) {
	ctx := context.Background()
	for _, size := range []int{1, 10, 500, 10_000} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			h := newHarness(t)
			src := users(40)
			// usr_0005 has a customer already; usr_0010 is new. Their
			// copies are far apart, and near.
			h.mustRun(users(6), sync.RunCounts{Read: 6, Created: 6})
			src.items = append(src.items,
				sync.Record{ExternalID: "usr_0005", Email: "copy5@example.com", Name: "Copy", Ref: "line 90"},
				sync.Record{ExternalID: "usr_0010", Email: "copy10@example.com", Name: "Copy", Ref: "line 91"},
				sync.Record{ExternalID: "usr_0010", Email: "third10@example.com", Name: "Third", Ref: "line 92"})
			var mu stdsync.Mutex
			var reasons []string
			opts := sync.Options{Concurrency: 3, BatchSize: size, Now: h.clk.Now, OnOutcome: func(o sync.Outcome) {
				mu.Lock()
				defer mu.Unlock()
				if o.ExternalID == "usr_0005" || o.ExternalID == "usr_0010" {
					reasons = append(reasons, o.Ref+" "+o.Action)
				}
			}}
			for run := range 3 {
				reasons = nil
				h.dst.resetCalls()
				rec, err := sync.New(src, h.dst, h.store, opts).Run(ctx)
				if err != nil {
					t.Fatal(err)
				}
				want := sync.RunCounts{Read: 43, Created: 33, Unchanged: 5, Rejected: 5}
				if run > 0 {
					want = sync.RunCounts{Read: 43, Unchanged: 38, Rejected: 5}
				}
				if rec.Counts != want {
					t.Fatalf("run %d: counts = %+v, want %+v", run, rec.Counts, want)
				}
				slices.Sort(reasons)
				if got := strings.Join(reasons, ","); got != "line 12 rejected,line 7 rejected,line 90 rejected,line 91 rejected,line 92 rejected" {
					t.Fatalf("run %d: outcomes of the duplicated ids = %s", run, got)
				}
				if n := h.dst.count("usr_0010"); n != 0 {
					t.Fatalf("run %d: duplicated new id written %d times", run, n)
				}
				for _, c := range h.dst.byID {
					if c.ExternalID == "usr_0005" && (c.Email != "user5@example.com" || c.Name != "User 5") {
						t.Fatalf("run %d: customer of a duplicated id changed: %+v", run, c)
					}
				}
			}
			fs, err := h.store.Failures(ctx, []string{"usr_0005", "usr_0010"})
			if err != nil {
				t.Fatal(err)
			}
			if f := fs["usr_0005"]; f.Code != sync.CodeDuplicateExternalID || !strings.Contains(f.Message, "line 7, line 90") {
				t.Errorf("failure of usr_0005 = %+v", f)
			}
			if f := fs["usr_0010"]; f.Code != sync.CodeDuplicateExternalID || !strings.Contains(f.Message, "line 12, line 91, line 92") {
				t.Errorf("failure of usr_0010 = %+v", f)
			}
		})
	}
}

// An incremental read that sees one row of a marked duplicate cannot tell
// the other row is gone: the row is rejected and the mark kept until a
// complete read.
func TestRun_DuplicateMarkKeptByPartialRead(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	src := users(3)
	src.items = append(src.items, sync.Record{ExternalID: "usr_0001", Email: "copy@example.com", Ref: "line 9"})
	h.mustRun(src, sync.RunCounts{Read: 4, Created: 2, Rejected: 2})
	inc := &partialSource{sliceSource: &sliceSource{items: []any{src.items[1]}}}
	h.mustRun(inc, sync.RunCounts{Read: 1, Rejected: 1})
	if ids, _ := h.store.FailureIDsByCode(ctx, sync.CodeDuplicateExternalID); len(ids) != 1 {
		t.Fatalf("marks after a partial read = %v, want usr_0001 kept", ids)
	}
	inc.complete = true
	h.mustRun(inc, sync.RunCounts{Read: 1, Created: 1})
}

// The customer of an unanswered create is found and updated to the CRM's
// new content, and that update's answer is lost too: the pending update
// still leads the next run to the customer, never to a second create.
func TestRun_NonUniqueDestinationUnansweredCreateThenUpdate(t *testing.T) {
	h := newHarness(t)
	h.dst.caps = &payGateCaps
	h.dst.afterExec = func(op, id string) error {
		if id == "usr_0001" {
			return errLost
		}
		return nil
	}
	src := users(3)
	h.mustRun(src, sync.RunCounts{Read: 3, Created: 2, Failed: 1}) // create executed, answer lost
	r := src.items[1].(sync.Record)
	r.Name = "Changed Meanwhile"
	src.items[1] = r
	h.clk.Add(time.Hour)
	h.mustRunUnreachable(src, sync.RunCounts{Read: 3, Unchanged: 2, Failed: 1}) // found; its PATCH executed, answer lost
	h.dst.afterExec = nil
	h.clk.Add(time.Hour)
	h.mustRun(src, sync.RunCounts{Read: 3, Unchanged: 2, Recovered: 1})
	if n := h.dst.count("usr_0001"); n != 1 {
		t.Fatalf("usr_0001 exists %d times", n)
	}
}

// A dry run reports every row of a duplicated id however far apart they
// are, as the run rejects them.
func TestPlan_DuplicateAcrossBatches(t *testing.T) {
	h := newHarness(t)
	src := users(20) // batches of 7
	src.items = append(src.items, sync.Record{ExternalID: "usr_0001", Email: "again@example.com", Ref: "line 30"})
	var rejected []string
	counts, err := h.reconciler(src).Plan(context.Background(), func(e sync.PlanEntry) {
		if e.Action == sync.PlanReject {
			rejected = append(rejected, e.Ref+": "+e.Reason)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"line 3: duplicate externalId (also at line 30); none of its rows is synced until the source has one",
		"line 30: duplicate externalId (also at line 3); none of its rows is synced until the source has one",
	}
	if !slices.Equal(rejected, want) {
		t.Fatalf("rejected = %q, want %q", rejected, want)
	}
	if counts[sync.PlanCreate] != 19 {
		t.Errorf("counts = %v, want 19 creates", counts)
	}
}
