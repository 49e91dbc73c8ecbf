package sync_test

import (
	"context"
	"errors"
	"iter"
	"slices"
	stdsync "sync"
	"testing"
	"time"

	"github.com/plugipay-sync/plugipay-sync/internal/transport"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

// byID is a sliceSource that can read users by id (sync.IDReader), as the
// SQL and HubSpot sources can.
type byID struct{ *sliceSource }

func (s byID) RecordsByID(ctx context.Context, ids []string) iter.Seq2[sync.Record, error] {
	return func(yield func(sync.Record, error) bool) {
		for rec, err := range s.Records(ctx) {
			id := rec.ExternalID
			if re, ok := err.(*sync.RecordError); ok {
				id = re.ExternalID
			} else if err != nil {
				yield(rec, err)
				return
			}
			if slices.Contains(ids, id) && !yield(rec, err) {
				return
			}
		}
	}
}

func TestSyncIDs(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	src := users(5)
	h.mustRun(src, sync.RunCounts{Read: 5, Created: 5})

	r := src.items[1].(sync.Record)
	r.Email = "changed@example.com"
	src.items[1] = r
	src.items = append(src.items,
		sync.Record{ExternalID: "usr_new", Email: "new@example.com", Name: "New User", Ref: "line 90"},
		&sync.RecordError{Ref: "line 91", ExternalID: "usr_bad", Reason: "invalid email"},
		sync.Record{ExternalID: "usr_dup", Email: "d1@example.com", Name: "Dup One", Ref: "line 92"},
		sync.Record{ExternalID: "usr_dup", Email: "d2@example.com", Name: "Dup Two", Ref: "line 93"},
	)
	h.dst.resetCalls()
	rec := h.reconciler(byID{src})
	got, err := rec.SyncIDs(ctx, []string{"usr_0001", "usr_0002", "usr_new", "usr_bad", "usr_dup", "usr_nobody", "usr_0001"}, false)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"usr_0001":   sync.ActionUpdated,
		"usr_0002":   sync.ActionUnchanged,
		"usr_new":    sync.ActionCreated,
		"usr_bad":    sync.ActionRejected,
		"usr_dup":    sync.ActionRejected,
		"usr_nobody": sync.ActionNotFound,
	}
	if len(got) != len(want) {
		t.Fatalf("got %d results, want %d: %+v", len(got), len(want), got)
	}
	for _, g := range got {
		if g.Action != want[g.ExternalID] {
			t.Errorf("%s: action %q (%s), want %q", g.ExternalID, g.Action, g.Reason, want[g.ExternalID])
		}
		if wrote := g.Action == sync.ActionUpdated || g.Action == sync.ActionCreated; g.Wrote != wrote {
			t.Errorf("%s: wrote = %v", g.ExternalID, g.Wrote)
		}
	}
	if c, u, _ := h.dst.calls(); c != 1 || u != 1 {
		t.Errorf("calls: %d creates, %d updates; want 1, 1", c, u)
	}
	if got := h.dst.count("usr_0001"); got != 1 {
		t.Errorf("usr_0001 has %d customers", got)
	}

	t.Run("ErrNoTargetedRead", func(t *testing.T) {
		if _, err := h.reconciler(src).SyncIDs(ctx, []string{"usr_0001"}, false); !errors.Is(err, sync.ErrNoTargetedRead) {
			t.Fatalf("err = %v, want ErrNoTargetedRead", err)
		}
	})

	t.Run("BackoffKeptUnlessForced", func(t *testing.T) {
		r := src.items[2].(sync.Record)
		r.Name = "Failing Name"
		src.items[2] = r
		h.dst.beforeOp = func(op, id string) error {
			if id == "usr_0002" {
				return &sync.APIError{Status: 503, Code: "unavailable"}
			}
			return nil
		}
		for _, tc := range []struct {
			force bool
			want  string
		}{{false, sync.ActionFailed}, {false, sync.ActionFailed}, {true, sync.ActionFailed}} {
			got, err := rec.SyncIDs(ctx, []string{"usr_0002"}, tc.force)
			if err != nil || got[0].Action != tc.want {
				t.Fatalf("force %v: %+v, %v; want %s", tc.force, got, err, tc.want)
			}
		}
		// The first failure, then the forced attempt: the second waited.
		h.dst.mu.Lock()
		updates := h.dst.updates
		h.dst.mu.Unlock()
		if updates != 1+2 {
			t.Errorf("update calls = %d, want 3 (usr_0001's, the first attempt, the forced one)", updates)
		}
		h.dst.beforeOp = nil
		got, err := rec.SyncIDs(ctx, []string{"usr_0002"}, true)
		if err != nil || got[0].Action != sync.ActionUpdated {
			t.Fatalf("after the fault: %+v, %v", got, err)
		}
	})
}

// afterRead is a source that calls after once a read has yielded every
// record: the moment between a run's plan and its writes.
type afterRead struct {
	*sliceSource
	after func()
}

func (s afterRead) Records(ctx context.Context) iter.Seq2[sync.Record, error] {
	return func(yield func(sync.Record, error) bool) {
		for rec, err := range s.sliceSource.Records(ctx) {
			if !yield(rec, err) {
				return
			}
		}
		s.after()
	}
}

// A run that read a user before a targeted sync read it leaves the user
// alone: its older value must not overwrite the newer one (issue 17).
func TestRun_LeavesUserToNewerTargetedSync(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	src := users(3)
	h.mustRun(src, sync.RunCounts{Read: 3, Created: 3})

	for i, name := range []string{"Old Name", "Other Change"} {
		r := src.items[i].(sync.Record)
		r.Name = name
		src.items[i] = r
	}
	opts := sync.Options{Concurrency: 1, BatchSize: 7, Now: h.clk.Now, Users: sync.NewUsers()}
	newer := src.items[0].(sync.Record)
	newer.Name = "New Name"
	after := func() {
		// The CRM changed after the run read it; the event path syncs it
		// before the run writes.
		got, err := sync.New(byID{&sliceSource{items: []any{newer}}}, h.dst, h.store, opts).SyncIDs(ctx, []string{newer.ExternalID}, false)
		if err != nil || got[0].Action != sync.ActionUpdated {
			t.Errorf("targeted sync: %+v, %v", got, err)
		}
	}
	rec, err := sync.New(afterRead{src, after}, h.dst, h.store, opts).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := (sync.RunCounts{Read: 3, Updated: 1, Unchanged: 2}); rec.Counts != want {
		t.Errorf("run counts = %+v, want %+v", rec.Counts, want)
	}
	for c := range h.dst.snapshot(func(c sync.Customer) bool { return c.ExternalID == newer.ExternalID }) {
		if c.Name != "New Name" {
			t.Errorf("customer name = %q after the run; the run's older read overwrote the targeted sync's", c.Name)
		}
	}
}

// laneDest records the priority lane of each write's context.
type laneDest struct {
	*fakeDest
	mu    stdsync.Mutex
	lanes []transport.Lane
}

func (d *laneDest) note(ctx context.Context) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.lanes = append(d.lanes, transport.LaneFrom(ctx))
}

func (d *laneDest) CreateCustomer(ctx context.Context, c sync.Customer, key string) (sync.Customer, error) {
	d.note(ctx)
	return d.fakeDest.CreateCustomer(ctx, c, key)
}

func (d *laneDest) UpdateCustomer(ctx context.Context, id string, p sync.Patch, key string) (sync.Customer, error) {
	d.note(ctx)
	return d.fakeDest.UpdateCustomer(ctx, id, p, key)
}

// The event path's writes carry the context mark of Options.MarkEvent (the
// seam of the priority lane); a run's do not.
func TestSyncIDs_MarksEventContext(t *testing.T) {
	h := newHarness(t)
	dst := &laneDest{fakeDest: h.dst}
	src := users(2)
	opts := sync.Options{Now: h.clk.Now, MarkEvent: func(ctx context.Context) context.Context { return transport.WithLane(ctx, transport.LaneEvent) }}
	if _, err := sync.New(src, dst, h.store, opts).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	r := src.items[0].(sync.Record)
	r.Name = "Changed"
	src.items[0] = r
	if _, err := sync.New(byID{src}, dst, h.store, opts).SyncIDs(context.Background(), []string{r.ExternalID}, false); err != nil {
		t.Fatal(err)
	}
	want := []transport.Lane{transport.LaneBackground, transport.LaneBackground, transport.LaneEvent}
	if !slices.Equal(dst.lanes, want) {
		t.Errorf("lanes = %v, want %v", dst.lanes, want)
	}
}

// heldByID is a by-id source whose read begins, tells the test, and takes
// its value only when released: the value is the CRM's at the end of the
// read, as a database snapshot taken late in a slow query would be.
type heldByID struct {
	entered chan struct{}
	release chan struct{}
	value   func() sync.Record
}

func (s heldByID) Records(ctx context.Context) iter.Seq2[sync.Record, error] {
	return func(func(sync.Record, error) bool) {}
}

func (s heldByID) RecordsByID(ctx context.Context, ids []string) iter.Seq2[sync.Record, error] {
	return func(yield func(sync.Record, error) bool) {
		close(s.entered)
		<-s.release
		yield(s.value(), nil)
	}
}

// A targeted read that began before a run started but ended after the run
// read the user may hold the newer value: the run must leave the user to
// it. Noting the read as of its start let the run write its older value
// over the event's newer one (the race TestRealtime_OrderingRandomised
// found under load, issue 17).
func TestRun_LeavesUserToTargetedReadEndingAfterItsStart(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	src := users(3)
	h.mustRun(src, sync.RunCounts{Read: 3, Created: 3})

	older := src.items[0].(sync.Record)
	older.Name = "Older Name"
	src.items[0] = older
	newer := older
	newer.Name = "Newer Name"

	opts := sync.Options{Concurrency: 1, BatchSize: 7, Now: h.clk.Now, Users: sync.NewUsers()}
	held := heldByID{entered: make(chan struct{}), release: make(chan struct{}), value: func() sync.Record { return newer }}
	event := make(chan []sync.IDResult, 1)
	go func() {
		got, err := sync.New(held, h.dst, h.store, opts).SyncIDs(ctx, []string{older.ExternalID}, false)
		if err != nil {
			t.Errorf("targeted sync: %v", err)
		}
		event <- got
	}()
	<-held.entered // the event's read has begun (and holds the user's lock)
	h.clk.Add(time.Minute)
	// The run starts after the event's read began; it reads the older
	// value, then the CRM changes and the event's read ends with it.
	rec, err := sync.New(afterRead{src, func() { close(held.release) }}, h.dst, h.store, opts).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := <-event; len(got) != 1 || got[0].Action != sync.ActionUpdated {
		t.Errorf("targeted sync = %+v, want one update", got)
	}
	if want := (sync.RunCounts{Read: 3, Unchanged: 3}); rec.Counts != want {
		t.Errorf("run counts = %+v, want %+v", rec.Counts, want)
	}
	for c := range h.dst.snapshot(func(c sync.Customer) bool { return c.ExternalID == older.ExternalID }) {
		if c.Name != newer.Name {
			t.Errorf("customer name = %q after the run, want %q: the run's older read overwrote the event's newer one", c.Name, newer.Name)
		}
	}
}
