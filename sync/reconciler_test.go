package sync_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"maps"
	"path/filepath"
	"slices"
	stdsync "sync"
	"testing"
	"time"

	"github.com/plugipay-sync/plugipay-sync/state"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

// sliceSource yields fixed records and record errors.
type sliceSource struct {
	items []any // sync.Record or error
}

func (s *sliceSource) Records(ctx context.Context) iter.Seq2[sync.Record, error] {
	return func(yield func(sync.Record, error) bool) {
		for _, it := range s.items {
			var ok bool
			switch v := it.(type) {
			case sync.Record:
				ok = yield(v, nil)
			case error:
				ok = yield(sync.Record{}, v)
			}
			if !ok || ctx.Err() != nil {
				return
			}
		}
	}
}

func users(n int) *sliceSource {
	s := &sliceSource{}
	for i := range n {
		s.items = append(s.items, sync.Record{
			ExternalID: fmt.Sprintf("usr_%04d", i),
			Email:      fmt.Sprintf("user%d@example.com", i),
			Name:       fmt.Sprintf("User %d", i),
			Metadata:   map[string]string{"plan": "pro"},
			Ref:        fmt.Sprintf("line %d", i+2),
		})
	}
	return s
}

// fakeDest is an in-memory destination with the API's rules that matter to
// the reconciler: unique external ids, idempotent replays by key, 404 for
// unknown ids. Hooks inject failures per call.
type fakeDest struct {
	mu      stdsync.Mutex
	byID    map[string]sync.Customer
	replays map[string]sync.Customer
	next    int
	creates int
	updates int
	finds   int
	gets    int
	lists   int
	// ignoreExternalIDFilter makes FindByExternalID find nothing, like an
	// older API.
	ignoreExternalIDFilter bool
	beforeOp               func(op, externalID string) error // before executing
	afterExec              func(op, externalID string) error // after executing: the response is lost
	// caps, when set, replaces Plugipay's capabilities: without
	// UniqueExternalID a create never conflicts, without IdempotentCreate
	// it never replays, without FilterByExternalID FindByExternalID finds
	// nothing.
	caps *sync.Capabilities
}

func newFakeDest() *fakeDest {
	return &fakeDest{byID: map[string]sync.Customer{}, replays: map[string]sync.Customer{}}
}

// plugipayCaps are the capabilities fakeDest has by default.
var plugipayCaps = sync.Capabilities{ExternalID: sync.ExternalIDField, UniqueExternalID: true,
	FilterByExternalID: true, IdempotentCreate: true, Create: true, Metadata: true, Phone: true, TaxID: true}

// payGateCaps are a PayGate-style API's: the external id in metadata, no
// uniqueness, no filter, no idempotency keys, no tax id.
var payGateCaps = sync.Capabilities{ExternalID: sync.ExternalIDMetadata, Create: true, Metadata: true, Phone: true}

// pinCaps are a Pin-style API's: email and name only, update-only.
var pinCaps = sync.Capabilities{ExternalID: sync.ExternalIDNone}

func (d *fakeDest) Capabilities() sync.Capabilities {
	if d.caps != nil {
		return *d.caps
	}
	return plugipayCaps
}

func (d *fakeDest) hook(f func(string, string) error, op, id string) error {
	if f == nil {
		return nil
	}
	return f(op, id)
}

func (d *fakeDest) CreateCustomer(_ context.Context, c sync.Customer, key string) (sync.Customer, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.creates++
	caps := d.Capabilities()
	if !caps.Create {
		return sync.Customer{}, &sync.APIError{Kind: sync.ErrInvalid, Code: "create_not_supported"}
	}
	if r, ok := d.replays[key]; ok && caps.IdempotentCreate {
		return r, nil
	}
	if err := d.hook(d.beforeOp, "create", c.ExternalID); err != nil {
		return sync.Customer{}, err
	}
	for _, e := range d.byID {
		if e.ExternalID == c.ExternalID && caps.UniqueExternalID {
			return sync.Customer{}, &sync.APIError{Kind: sync.ErrConflict, Status: 409, Code: "conflict"}
		}
	}
	d.next++
	c.ID = fmt.Sprintf("cus_%06d", d.next)
	c.Metadata = maps.Clone(c.Metadata)
	d.byID[c.ID] = c
	d.replays[key] = c
	if err := d.hook(d.afterExec, "create", c.ExternalID); err != nil {
		return sync.Customer{}, err
	}
	return c, nil
}

func (d *fakeDest) UpdateCustomer(_ context.Context, id string, p sync.Patch, key string) (sync.Customer, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.updates++
	if r, ok := d.replays[key]; ok {
		return r, nil
	}
	old, ok := d.byID[id]
	if err := d.hook(d.beforeOp, "update", old.ExternalID); err != nil {
		return sync.Customer{}, err
	}
	if !ok {
		return sync.Customer{}, &sync.APIError{Kind: sync.ErrNotFound, Status: 404, Code: "not_found"}
	}
	c := old
	for _, f := range []struct {
		v   *string
		dst *string
	}{{p.Email, &c.Email}, {p.Name, &c.Name}, {p.Phone, &c.Phone}, {p.TaxID, &c.TaxID}} {
		if f.v != nil {
			*f.dst = *f.v
		}
	}
	if p.SetMetadata {
		c.Metadata = maps.Clone(p.Metadata)
	}
	d.byID[id] = c
	d.replays[key] = c
	if err := d.hook(d.afterExec, "update", c.ExternalID); err != nil {
		return sync.Customer{}, err
	}
	return c, nil
}

func (d *fakeDest) GetCustomer(_ context.Context, id string) (sync.Customer, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.gets++
	c, ok := d.byID[id]
	if !ok {
		return sync.Customer{}, &sync.APIError{Kind: sync.ErrNotFound, Status: 404, Code: "not_found"}
	}
	c.Metadata = maps.Clone(c.Metadata)
	return c, nil
}

func (d *fakeDest) FindByExternalID(_ context.Context, externalID string) (sync.Customer, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.finds++
	if !d.ignoreExternalIDFilter && d.Capabilities().FilterByExternalID {
		for _, c := range d.byID {
			if c.ExternalID == externalID {
				return c, nil
			}
		}
	}
	return sync.Customer{}, &sync.APIError{Kind: sync.ErrNotFound, Code: "not_found"}
}

func (d *fakeDest) FindByEmail(_ context.Context, email string) iter.Seq2[sync.Customer, error] {
	return d.snapshot(func(c sync.Customer) bool { return c.Email == email })
}

func (d *fakeDest) ListCustomers(context.Context) iter.Seq2[sync.Customer, error] {
	d.mu.Lock()
	d.lists++
	d.mu.Unlock()
	return d.snapshot(func(sync.Customer) bool { return true })
}

func (d *fakeDest) snapshot(keep func(sync.Customer) bool) iter.Seq2[sync.Customer, error] {
	d.mu.Lock()
	var cs []sync.Customer
	for _, id := range slices.Sorted(maps.Keys(d.byID)) {
		if c := d.byID[id]; keep(c) {
			cs = append(cs, c)
		}
	}
	d.mu.Unlock()
	return func(yield func(sync.Customer, error) bool) {
		for _, c := range cs {
			if !yield(c, nil) {
				return
			}
		}
	}
}

func (d *fakeDest) calls() (creates, updates, finds int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.creates, d.updates, d.finds
}

func (d *fakeDest) resetCalls() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.creates, d.updates, d.finds, d.gets, d.lists = 0, 0, 0, 0, 0
}

func (d *fakeDest) count(externalID string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, c := range d.byID {
		if c.ExternalID == externalID {
			n++
		}
	}
	return n
}

// clock is a settable test clock.
type clock struct {
	mu  stdsync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type harness struct {
	t     *testing.T
	path  string
	store *state.DB
	dst   *fakeDest
	clk   *clock
	mode  string // sync mode; empty is upsert
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{t: t, path: filepath.Join(t.TempDir(), "state.db"), dst: newFakeDest(),
		clk: &clock{now: time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)}}
	h.open()
	t.Cleanup(func() { h.store.Close() })
	return h
}

func (h *harness) open() {
	h.t.Helper()
	db, err := state.Open(context.Background(), h.path)
	if err != nil {
		h.t.Fatal(err)
	}
	h.store = db
}

func (h *harness) run(src sync.Source) (sync.RunRecord, error) {
	h.t.Helper()
	return h.reconciler(src).Run(context.Background())
}

func (h *harness) reconciler(src sync.Source) *sync.Reconciler {
	return sync.New(src, h.dst, h.store, sync.Options{Concurrency: 4, BatchSize: 7, Now: h.clk.Now, Mode: h.mode})
}

func (h *harness) mustRun(src sync.Source, want sync.RunCounts) sync.RunRecord {
	h.t.Helper()
	rec, err := h.run(src)
	if err != nil {
		h.t.Fatalf("run: %v", err)
	}
	if rec.Counts != want {
		h.t.Fatalf("counts = %+v\nwant     %+v", rec.Counts, want)
	}
	return rec
}

// mustRunUnreachable runs src, expecting a run whose every write failed:
// outcome failed, an error wrapping ErrUnreachable, and counts want.
func (h *harness) mustRunUnreachable(src sync.Source, want sync.RunCounts) sync.RunRecord {
	h.t.Helper()
	rec, err := h.run(src)
	if !errors.Is(err, sync.ErrUnreachable) || rec.Outcome != sync.OutcomeFailed {
		h.t.Fatalf("run: outcome %s, err %v; want failed with ErrUnreachable", rec.Outcome, err)
	}
	if rec.Counts != want {
		h.t.Fatalf("counts = %+v\nwant     %+v", rec.Counts, want)
	}
	return rec
}

func TestRun_CreateThenNoop(t *testing.T) {
	h := newHarness(t)
	src := users(20)
	rec := h.mustRun(src, sync.RunCounts{Read: 20, Created: 20})
	if rec.Outcome != sync.OutcomeSuccess {
		t.Errorf("outcome = %s", rec.Outcome)
	}
	h.dst.resetCalls()
	h.mustRun(src, sync.RunCounts{Read: 20, Unchanged: 20})
	if c, u, f := h.dst.calls(); c+u+f != 0 {
		t.Errorf("unchanged run made API calls: %d creates, %d updates, %d finds", c, u, f)
	}
}

func TestRun_ChangedRecordIsOnePatch(t *testing.T) {
	h := newHarness(t)
	src := users(10)
	h.mustRun(src, sync.RunCounts{Read: 10, Created: 10})
	r := src.items[3].(sync.Record)
	r.Name = "Renamed Person"
	src.items[3] = r
	h.dst.resetCalls()
	h.mustRun(src, sync.RunCounts{Read: 10, Updated: 1, Unchanged: 9})
	if c, u, _ := h.dst.calls(); c != 0 || u != 1 {
		t.Errorf("calls: %d creates, %d updates; want 0, 1", c, u)
	}
}

// A fresh state DB is rebuilt from the customer list before anything is
// written: unchanged users cost nothing, a changed one one update.
func TestRun_LostStateRebuildsFromList(t *testing.T) {
	h := newHarness(t)
	src := users(15)
	h.mustRun(src, sync.RunCounts{Read: 15, Created: 15})

	h.store.Close()
	h.path = filepath.Join(t.TempDir(), "fresh.db")
	h.open()
	r := src.items[0].(sync.Record)
	r.Phone = "+6281234567890" // one also changed meanwhile
	src.items[0] = r
	h.dst.resetCalls()
	h.mustRun(src, sync.RunCounts{Read: 15, Updated: 1, Unchanged: 14})
	if c, u, f := h.dst.calls(); c != 0 || u != 1 || f != 0 || h.dst.lists != 1 {
		t.Errorf("calls: %d creates, %d updates, %d finds, %d list walks; want 0, 1, 0, 1", c, u, f, h.dst.lists)
	}
	for i := range 15 {
		if n := h.dst.count(fmt.Sprintf("usr_%04d", i)); n != 1 {
			t.Fatalf("usr_%04d exists %d times", i, n)
		}
	}
	h.dst.resetCalls()
	h.mustRun(src, sync.RunCounts{Read: 15, Unchanged: 15})
	if h.dst.lists != 0 {
		t.Errorf("a warm run walked the list")
	}
}

// addForeign creates a customer behind the sync's back, as another tool would.
func (d *fakeDest) addForeign(c sync.Customer) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.next++
	c.ID = fmt.Sprintf("cus_%06d", d.next)
	d.byID[c.ID] = c
}

func TestRun_ConflictRecoveryChain(t *testing.T) {
	for _, legacy := range []bool{false, true} {
		t.Run(fmt.Sprintf("legacy=%t", legacy), func(t *testing.T) {
			h := newHarness(t)
			src := users(3)
			h.mustRun(src, sync.RunCounts{Read: 3, Created: 3})
			h.dst.ignoreExternalIDFilter = legacy
			// usr_0100 exists already; a decoy shares the email of usr_0101
			// but not its external id; usr_0101 exists with an old email.
			h.dst.addForeign(sync.Customer{ExternalID: "usr_0100", Email: "u100@example.com", Name: "Hundred"})
			h.dst.addForeign(sync.Customer{ExternalID: "decoy", Email: "u101@example.com"})
			h.dst.addForeign(sync.Customer{ExternalID: "usr_0101", Email: "old101@example.com", Name: "Hundred One"})
			src.items = append(src.items,
				sync.Record{ExternalID: "usr_0100", Email: "u100@example.com", Name: "Hundred"},
				sync.Record{ExternalID: "usr_0101", Email: "u101@example.com", Name: "Hundred One"})
			want := sync.RunCounts{Read: 5, Unchanged: 3, Recovered: 2}
			if legacy {
				// usr_0101 cannot be found by email (it changed): never
				// adopted by the decoy's email, left for the list walk.
				want = sync.RunCounts{Read: 5, Unchanged: 3, Recovered: 1, Failed: 1}
			}
			h.mustRun(src, want)
			if legacy {
				f, _ := h.store.Failures(context.Background(), []string{"usr_0101"})
				if f["usr_0101"].Code != sync.CodeConflictUnresolved {
					t.Fatalf("failure = %+v, want %s", f["usr_0101"], sync.CodeConflictUnresolved)
				}
				// The next run walks the list, finds it and updates its email.
				h.dst.resetCalls()
				h.mustRun(src, sync.RunCounts{Read: 5, Unchanged: 4, Updated: 1})
				if h.dst.lists != 1 {
					t.Errorf("%d list walks, want 1", h.dst.lists)
				}
				if n, _ := h.store.CountFailuresByCode(context.Background(), sync.CodeConflictUnresolved); n != 0 {
					t.Errorf("%d unresolved conflicts left", n)
				}
			}
			for _, id := range []string{"usr_0100", "usr_0101", "decoy"} {
				if n := h.dst.count(id); n != 1 {
					t.Errorf("%s exists %d times", id, n)
				}
			}
			h.dst.mu.Lock()
			for _, c := range h.dst.byID {
				if c.ExternalID == "decoy" && c.Name != "" {
					t.Errorf("the decoy was adopted: %+v", c)
				}
			}
			h.dst.mu.Unlock()
		})
	}
}

func TestRun_RejectedRecords(t *testing.T) {
	h := newHarness(t)
	src := users(5)
	src.items = append(src.items,
		&sync.RecordError{Ref: "line 9", Reason: "missing externalId"},
		sync.Record{ExternalID: "usr_0001", Name: "Again", Ref: "line 10"}, // duplicate in the batch
	)
	rec := h.mustRun(src, sync.RunCounts{Read: 7, Created: 4, Rejected: 3})
	if rec.Outcome != sync.OutcomePartial {
		t.Errorf("outcome = %s, want partial", rec.Outcome)
	}
	if n := h.dst.count("usr_0001"); n != 0 {
		t.Errorf("a duplicated externalId was synced (%d)", n)
	}
}

func TestRun_InvalidIsTerminalUntilContentChanges(t *testing.T) {
	h := newHarness(t)
	src := users(3)
	h.dst.beforeOp = func(op, id string) error {
		if id == "usr_0001" && op == "create" {
			if rec := src.items[1].(sync.Record); rec.Email == "user1@example.com" {
				return &sync.APIError{Kind: sync.ErrInvalid, Status: 400, Code: "validation_error", Message: "email: invalid", RequestID: "req_1"}
			}
		}
		return nil
	}
	h.mustRun(src, sync.RunCounts{Read: 3, Created: 2, Rejected: 1})
	f, err := h.store.Failures(context.Background(), []string{"usr_0001"})
	if err != nil {
		t.Fatal(err)
	}
	got := f["usr_0001"]
	if !got.Terminal || got.Code != "validation_error" || got.RequestID != "req_1" || got.Attempts != 1 {
		t.Errorf("failure = %+v", got)
	}
	// Same content: not sent again.
	h.dst.resetCalls()
	h.mustRun(src, sync.RunCounts{Read: 3, Unchanged: 2, Rejected: 1})
	if c, _, _ := h.dst.calls(); c != 0 {
		t.Errorf("terminal record was retried (%d creates)", c)
	}
	// Fixed in the CRM: synced at once.
	r := src.items[1].(sync.Record)
	r.Email = "fixed@example.com"
	src.items[1] = r
	h.mustRun(src, sync.RunCounts{Read: 3, Unchanged: 2, Created: 1})
	if f, _ := h.store.Failures(context.Background(), []string{"usr_0001"}); len(f) != 0 {
		t.Errorf("failure kept after success: %+v", f)
	}
}

func TestRun_TransientFailureBacksOff(t *testing.T) {
	h := newHarness(t)
	src := users(3)
	down := true
	h.dst.beforeOp = func(op, id string) error {
		if id == "usr_0002" && down {
			return &sync.APIError{Status: 503, Code: "service_unavailable", RequestID: "req_9"}
		}
		return nil
	}
	h.mustRun(src, sync.RunCounts{Read: 3, Created: 2, Failed: 1})
	// Still inside the backoff: not retried, still counted as failed.
	h.dst.resetCalls()
	h.mustRun(src, sync.RunCounts{Read: 3, Unchanged: 2, Failed: 1})
	if c, _, _ := h.dst.calls(); c != 0 {
		t.Errorf("retried inside the backoff window (%d creates)", c)
	}
	h.clk.Add(sync.DefaultRetryMin + time.Second)
	// The second failure is the run's only write: a failed run (issue 14).
	h.mustRunUnreachable(src, sync.RunCounts{Read: 3, Unchanged: 2, Failed: 1})
	f, _ := h.store.Failures(context.Background(), []string{"usr_0002"})
	if got := f["usr_0002"]; got.Attempts != 2 || got.NextAttempt.Sub(h.clk.Now()) != 2*sync.DefaultRetryMin {
		t.Errorf("after 2 failures: attempts %d, next attempt in %s; want 2 and %s",
			got.Attempts, got.NextAttempt.Sub(h.clk.Now()), 2*sync.DefaultRetryMin)
	}
	down = false
	h.clk.Add(2*sync.DefaultRetryMin + time.Second)
	h.mustRun(src, sync.RunCounts{Read: 3, Unchanged: 2, Created: 1})
}

// A create that executed but whose answer was lost is repeated with the
// same idempotency key, so it is replayed: no conflict, no duplicate.
func TestRun_LostResponseReplaysSameKey(t *testing.T) {
	h := newHarness(t)
	src := users(4)
	lose := true
	h.dst.afterExec = func(op, id string) error {
		if lose && id != "usr_0003" { // one confirmed: not a cold start
			return &sync.APIError{Code: "timeout", Message: "response lost"}
		}
		return nil
	}
	h.mustRun(src, sync.RunCounts{Read: 4, Created: 1, Failed: 3})
	pending, err := h.store.PendingWrites(context.Background(), []string{"usr_0000"})
	if err != nil || pending["usr_0000"].IdempotencyKey == "" {
		t.Fatalf("no pending write recorded: %v %+v", err, pending)
	}
	lose = false
	h.clk.Add(time.Hour)
	h.dst.resetCalls()
	h.mustRun(src, sync.RunCounts{Read: 4, Created: 3, Unchanged: 1})
	if _, _, f := h.dst.calls(); f != 0 {
		t.Errorf("replay went through conflict recovery (%d finds)", f)
	}
	for i := range 4 {
		if n := h.dst.count(fmt.Sprintf("usr_%04d", i)); n != 1 {
			t.Fatalf("usr_%04d exists %d times", i, n)
		}
	}
	if pending, _ := h.store.PendingWrites(context.Background(), []string{"usr_0000"}); len(pending) != 0 {
		t.Errorf("pending write kept after confirmation: %+v", pending)
	}
}

// A key the API says was used with another body is dropped, so the next
// run writes under a fresh key instead of failing forever.
func TestRun_IdempotencyMismatchMintsNewKey(t *testing.T) {
	h := newHarness(t)
	src := users(1)
	mismatch := true
	h.dst.beforeOp = func(string, string) error {
		if mismatch {
			return &sync.APIError{Kind: sync.ErrIdempotency, Status: 409, Code: "idempotency_key_reused"}
		}
		return nil
	}
	h.mustRun(src, sync.RunCounts{Read: 1, Failed: 1})
	p, _ := h.store.PendingWrites(context.Background(), []string{"usr_0000"})
	if len(p) != 0 {
		t.Fatalf("pending write kept after a key mismatch: %+v", p)
	}
	mismatch = false
	h.clk.Add(time.Hour)
	h.mustRun(src, sync.RunCounts{Read: 1, Created: 1})
}

func TestRun_StaleMappingIsResolvedAgain(t *testing.T) {
	h := newHarness(t)
	src := users(2)
	h.mustRun(src, sync.RunCounts{Read: 2, Created: 2})
	// The customer vanished (another workspace's state, or deleted).
	h.dst.mu.Lock()
	for id, c := range h.dst.byID {
		if c.ExternalID == "usr_0000" {
			delete(h.dst.byID, id)
		}
	}
	h.dst.mu.Unlock()
	r := src.items[0].(sync.Record)
	r.Name = "Changed"
	src.items[0] = r
	h.mustRun(src, sync.RunCounts{Read: 2, Unchanged: 1, Created: 1})
	if n := h.dst.count("usr_0000"); n != 1 {
		t.Errorf("usr_0000 exists %d times", n)
	}
}

func TestRun_FatalErrorStopsTheRun(t *testing.T) {
	h := newHarness(t)
	h.dst.beforeOp = func(string, string) error {
		return &sync.APIError{Kind: sync.ErrFatal, Status: 401, Code: "invalid_signature"}
	}
	rec, err := h.run(users(200))
	if !errors.Is(err, sync.ErrFatal) {
		t.Fatalf("err = %v, want ErrFatal", err)
	}
	if rec.Outcome != sync.OutcomeFailed {
		t.Errorf("outcome = %s", rec.Outcome)
	}
	if c, _, _ := h.dst.calls(); c > 20 {
		t.Errorf("kept writing after a 401: %d creates", c)
	}
	runs, err := h.store.RecentRuns(context.Background(), 1)
	if err != nil || len(runs) != 1 || runs[0].Outcome != sync.OutcomeFailed || runs[0].Error == "" {
		t.Errorf("stored run = %+v, %v", runs, err)
	}
}

func TestRun_SourceFailureFailsTheRun(t *testing.T) {
	h := newHarness(t)
	src := users(3)
	src.items = append(src.items, errors.New("disk on fire"))
	rec, err := h.run(src)
	if err == nil || rec.Outcome != sync.OutcomeFailed {
		t.Fatalf("err = %v, outcome %s; want a failed run", err, rec.Outcome)
	}
}

func TestRun_CanceledKeepsConfirmedWork(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	h.dst.beforeOp = func(string, string) error {
		n++
		if n == 10 {
			cancel()
		}
		return nil
	}
	r := sync.New(users(100), h.dst, h.store, sync.Options{Concurrency: 2, BatchSize: 5, Now: h.clk.Now})
	rec, err := r.Run(ctx)
	if err == nil || rec.Outcome != sync.OutcomeCanceled {
		t.Fatalf("err = %v, outcome %s; want canceled", err, rec.Outcome)
	}
	if rec.Counts.Created < 10 || rec.Counts.Created >= 100 {
		t.Errorf("created %d; want the in-flight ones finished and the rest left", rec.Counts.Created)
	}
	m, err := h.store.MappingCount(context.Background())
	if err != nil || m != rec.Counts.Created {
		t.Errorf("mappings = %d (%v); want every confirmed create stored (%d)", m, err, rec.Counts.Created)
	}
	h.dst.beforeOp = nil
	h.mustRun(users(100), sync.RunCounts{Read: 100, Unchanged: rec.Counts.Created, Created: 100 - rec.Counts.Created})
}

func TestContentHash(t *testing.T) {
	base := sync.Record{ExternalID: "u1", Email: "a@b.c", Name: "A", Metadata: map[string]string{"x": "1", "y": "2"}}
	same := base
	same.Metadata = map[string]string{"y": "2", "x": "1"}
	same.Ref = "line 99"
	if sync.ContentHash(base) != sync.ContentHash(same) {
		t.Error("hash depends on metadata order or Ref")
	}
	tests := []func(r *sync.Record){
		func(r *sync.Record) { r.Email = "A@b.c" },
		func(r *sync.Record) { r.Name = "" },
		func(r *sync.Record) { r.Phone = "1" },
		func(r *sync.Record) { r.TaxID = "1" },
		func(r *sync.Record) { r.Metadata = map[string]string{"x": "1"} },
		func(r *sync.Record) { r.Metadata = map[string]string{"x": "1", "y": "3"} },
		func(r *sync.Record) { r.Email, r.Name = "a@b.cA", "" }, // shifted boundary
	}
	for i, mutate := range tests {
		r := base
		r.Metadata = maps.Clone(base.Metadata)
		mutate(&r)
		if sync.ContentHash(r) == sync.ContentHash(base) {
			t.Errorf("case %d: a changed record hashes the same", i)
		}
	}
	empty := base
	empty.Metadata = nil
	empty2 := base
	empty2.Metadata = map[string]string{}
	if sync.ContentHash(empty) != sync.ContentHash(empty2) {
		t.Error("nil and empty metadata hash differently")
	}
}

// Archiving needs a complete run: a run whose source failed part way has
// not seen everyone, and archives nothing.
func TestRun_ArchiveOnlyAfterCompleteRun(t *testing.T) {
	h := newHarness(t)
	opts := sync.Options{Concurrency: 2, BatchSize: 7, Now: h.clk.Now, Deletion: sync.DeletionArchive, MaxArchiveRatio: 1}
	if _, err := sync.New(users(20), h.dst, h.store, opts).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	broken := users(10)
	broken.items = append(broken.items, errors.New("export cut short"))
	rec, err := sync.New(broken, h.dst, h.store, opts).Run(context.Background())
	if err == nil || rec.Counts.Archived != 0 {
		t.Fatalf("failed run: err %v, archived %d; want an error and nothing archived", err, rec.Counts.Archived)
	}
	h.dst.resetCalls()
	rec, err = sync.New(users(10), h.dst, h.store, opts).Run(context.Background())
	if err != nil || rec.Counts.Archived != 10 {
		t.Fatalf("complete run: err %v, archived %d; want 10", err, rec.Counts.Archived)
	}
	if _, u, _ := h.dst.calls(); u != 10 {
		t.Errorf("%d updates, want 10", u)
	}
	h.dst.mu.Lock()
	defer h.dst.mu.Unlock()
	for _, c := range h.dst.byID {
		var n int
		fmt.Sscanf(c.ExternalID, "usr_%04d", &n)
		if archived := c.Metadata[sync.ArchivedKey] == "true"; archived != (n >= 10) || c.Metadata["plan"] != "pro" {
			t.Errorf("%s metadata %v", c.ExternalID, c.Metadata)
		}
	}
}
