package sync_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	stdsync "sync"
	"testing"
	"time"

	"github.com/plugipay-sync/plugipay-sync/sync"
)

// scenario is one randomised world: a destination, a mode, a policy and
// the history that led the state DB where it is, then the source the
// compared run reads. build makes it again from the seed, identically, so
// the dry run, the run and each SyncOne start from the same state.
type scenario struct {
	seed      uint64
	caps      sync.Capabilities
	capsName  string
	mode      string
	deletion  string
	batchSize int
	// printed: the source prints its rows (a file export), so the
	// compared run is a print pass over the history run's prints.
	printed bool
}

func newScenario(seed uint64, batchSizes []int) scenario {
	rng := rand.New(rand.NewPCG(seed, 13))
	sc := scenario{seed: seed}
	switch rng.IntN(3) {
	case 0:
		sc.caps, sc.capsName = plugipayCaps, "plugipay"
	case 1:
		sc.caps, sc.capsName = payGateCaps, "paygate"
	default:
		sc.caps, sc.capsName = pinCaps, "pin"
	}
	sc.mode = []string{sync.ModeUpsert, sync.ModeUpdateOnly, sync.ModeCreateOnly}[rng.IntN(3)]
	if !sc.caps.Create {
		sc.mode = sync.ModeUpdateOnly
	}
	sc.deletion = sync.DeletionIgnore
	if sc.caps.Metadata && rng.IntN(2) == 0 {
		sc.deletion = sync.DeletionArchive
	}
	sc.batchSize = batchSizes[rng.IntN(len(batchSizes))]
	return sc
}

func (sc scenario) String() string {
	return fmt.Sprintf("seed %d: %s, %s, deletion %s, batch %d", sc.seed, sc.capsName, sc.mode, sc.deletion, sc.batchSize)
}

func (sc scenario) opts(h *harness, concurrency int) sync.Options {
	return sync.Options{Concurrency: concurrency, BatchSize: sc.batchSize, Now: h.clk.Now, Mode: sc.mode,
		Deletion: sc.deletion, AllowMassArchive: true, RetryMin: time.Hour, RetryMax: 4 * time.Hour}
}

func diffUser(i int, variant string) sync.Record {
	return sync.Record{ExternalID: fmt.Sprintf("usr_%03d", i), Email: fmt.Sprintf("u%d%s@example.com", i, variant),
		Name: "User " + fmt.Sprint(i) + variant, Phone: "+6281" + fmt.Sprint(i), Metadata: map[string]string{"plan": "pro" + variant}}
}

// build makes the scenario's world in t's temp dir and returns it with the
// source the compared run reads. Everything is deterministic: writes run
// one at a time, so customer ids come out the same.
func (sc scenario) build(t *testing.T) (*harness, sync.Source) {
	t.Helper()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(sc.seed, 42))
	h := &harness{t: t, path: filepath.Join(t.TempDir(), "state.db"), dst: newFakeDest(),
		clk: &clock{now: time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)}}
	h.open()
	t.Cleanup(func() { h.store.Close() })
	caps := sc.caps
	h.dst.caps = &caps
	n := 8 + rng.IntN(10)

	// History: on Pin, half the users are linked by hand; elsewhere an
	// upsert-like first run in the scenario's mode, with failures.
	var base []any
	for i := range n {
		if rng.IntN(5) > 0 {
			base = append(base, diffUser(i, ""))
		}
	}
	if caps.ExternalID == sync.ExternalIDNone {
		var links []sync.Mapping
		for _, it := range base {
			rec := it.(sync.Record)
			if rng.IntN(2) == 0 {
				h.dst.addForeign(sync.Customer{Email: rec.Email, Name: "Old " + rec.Name})
				links = append(links, sync.Mapping{ExternalID: rec.ExternalID, CustomerID: fmt.Sprintf("cus_%06d", h.dst.next), Hash: "linked", SyncedAt: h.clk.Now()})
			}
		}
		if err := h.store.PutMappings(ctx, links); err != nil {
			t.Fatal(err)
		}
	} else {
		// Some customers exist already (another tool, an earlier install).
		for _, it := range base {
			if rng.IntN(4) == 0 {
				rec := it.(sync.Record)
				h.dst.addForeign(sync.Customer{ExternalID: rec.ExternalID, Email: rec.Email, Name: "Foreign " + rec.Name})
			}
		}
	}
	if len(base) > 2 && rng.IntN(2) == 0 {
		// A duplicated id: marked by the history's run.
		dup := base[rng.IntN(len(base))].(sync.Record)
		dup.Email, dup.Ref = "copy@example.com", "copy"
		base = append(base, dup)
	}
	transient := map[string]bool{}
	invalid := map[string]bool{}
	for _, it := range base {
		switch id := it.(sync.Record).ExternalID; rng.IntN(8) {
		case 0:
			transient[id] = true
		case 1:
			invalid[id] = true
		}
	}
	h.dst.beforeOp = func(op, id string) error {
		switch {
		case transient[id]:
			return &sync.APIError{Code: "network_error", Message: "connection reset"}
		case invalid[id]:
			return &sync.APIError{Kind: sync.ErrInvalid, Status: 400, Code: "validation_error"}
		}
		return nil
	}
	numbered(base)
	var hist sync.Source = &sliceSource{items: base}
	if sc.printed {
		hist = &printedSource{&partialSource{sliceSource: &sliceSource{items: base}, complete: true}}
	}
	r := sync.New(hist, h.dst, h.store, sc.opts(h, 1))
	if _, err := r.Run(ctx); err != nil && !errors.Is(err, sync.ErrUnreachable) {
		t.Fatalf("history run: %v", err) // every write failing is a history like any other
	}
	h.dst.beforeOp = nil
	h.clk.Add([]time.Duration{0, 30 * time.Minute, 2 * time.Hour}[rng.IntN(3)])

	// The compared read: changes, soft deletes, users gone, new users,
	// duplicates, bad rows; full or incremental.
	var items []any
	for _, it := range base {
		rec := it.(sync.Record)
		if rec.Ref == "copy" && rng.IntN(2) == 0 {
			continue // the CRM fixed the duplicate
		}
		switch rng.IntN(10) {
		case 0:
			continue // gone
		case 1:
			items = append(items, sync.Record{ExternalID: rec.ExternalID, Deleted: true})
		case 2, 3:
			items = append(items, diffUser(idNum(rec.ExternalID), " v2"))
		default:
			items = append(items, rec)
		}
	}
	for i := n; i < n+rng.IntN(4); i++ {
		rec := diffUser(i, "")
		items = append(items, rec)
		if caps.ExternalID != sync.ExternalIDNone && rng.IntN(3) == 0 {
			// Made meanwhile by another tool: a create conflicts.
			h.dst.addForeign(sync.Customer{ExternalID: rec.ExternalID, Email: rec.Email, Name: "Other " + rec.Name})
		}
	}
	if rng.IntN(3) == 0 && len(items) > 0 {
		if rec, ok := items[rng.IntN(len(items))].(sync.Record); ok && !rec.Deleted {
			rec.Name = "Duplicate"
			items = append(items, rec)
		}
	}
	if rng.IntN(2) == 0 {
		items = append(items, &sync.RecordError{ExternalID: fmt.Sprintf("bad_%d", rng.IntN(100)), Reason: "invalid email"})
	}
	rng.Shuffle(len(items), func(i, j int) { items[i], items[j] = items[j], items[i] })
	numbered(items)
	src := &partialSource{sliceSource: &sliceSource{items: items}, complete: rng.IntN(3) > 0}
	if !src.complete {
		src.items = src.items[:len(src.items)/2]
	}
	if sc.printed {
		return h, &printedSource{src}
	}
	return h, src
}

// numbered gives every row its line.
func numbered(items []any) {
	for i, it := range items {
		ref := fmt.Sprintf("line %d", i+2)
		switch v := it.(type) {
		case sync.Record:
			v.Ref = ref
			items[i] = v
		case *sync.RecordError:
			v.Ref = ref
		}
	}
}

func idNum(id string) int {
	var n int
	fmt.Sscanf(id, "usr_%d", &n)
	return n
}

// planFits reports whether the run's outcome is what the plan said. A
// planned create can meet a customer that exists already (recovered); a
// planned skip is also a failure waiting for its backoff.
func planFits(planned string, o sync.Outcome) bool {
	switch o.Action {
	case sync.ActionCreated:
		return planned == sync.PlanCreate
	case sync.ActionRecovered:
		return planned == sync.PlanCreate || planned == sync.PlanUpdate || planned == sync.PlanUnchanged
	case sync.ActionUpdated:
		return planned == sync.PlanUpdate
	case sync.ActionUnchanged:
		return planned == sync.PlanUnchanged
	case sync.ActionSkipped:
		return planned == sync.PlanSkip
	case sync.ActionFailed:
		return planned == sync.PlanSkip && o.Verdict == sync.VerdictBackoff
	case sync.ActionRejected:
		return planned == sync.PlanReject
	case sync.ActionArchived:
		return planned == sync.PlanArchive
	}
	return false
}

// TestDifferential_PlanRunSyncOne is issue 13's differential test: over
// randomised worlds, the dry run's plan is what the following run does,
// row by row, and SyncOne(X) and SyncIDs([X]) (issue 17) do what the run
// does with X. Nobody's
// customer is ever blanked.
func TestDifferential_PlanRunSyncOne(t *testing.T) {
	differential(t, 160, []int{1, 3, 10, 1000})
}

func differential(t *testing.T, scenarios int, batchSizes []int) {
	for seed := range uint64(scenarios) {
		sc := newScenario(seed, batchSizes)
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			ctx := context.Background()
			h, src := sc.build(t)
			var mu stdsync.Mutex
			outcomes := map[string]sync.Outcome{}
			opts := sc.opts(h, 4)
			opts.OnOutcome = func(o sync.Outcome) {
				mu.Lock()
				defer mu.Unlock()
				key := o.ExternalID + "|" + o.Ref
				if prev, dup := outcomes[key]; dup {
					t.Errorf("%s: two outcomes for %s: %+v and %+v", sc, key, prev, o)
				}
				outcomes[key] = o
			}
			r := sync.New(src, h.dst, h.store, opts)
			planned := map[string]sync.PlanEntry{}
			if _, err := r.Plan(ctx, func(e sync.PlanEntry) { planned[e.ExternalID+"|"+e.Ref] = e }); err != nil {
				t.Fatalf("%s: plan: %v", sc, err)
			}
			if _, err := r.Run(ctx); err != nil {
				t.Fatalf("%s: run: %v", sc, err)
			}
			for key, o := range outcomes {
				p, ok := planned[key]
				action := sync.PlanUnchanged
				if ok {
					action = p.Action
				}
				if !planFits(action, o) {
					t.Errorf("%s: %s: planned %q (%s), run did %s (verdict %s)", sc, key, action, p.Reason, o.Action, o.Verdict)
				}
			}
			for key, p := range planned {
				if _, ok := outcomes[key]; !ok {
					t.Errorf("%s: %s: planned %s (%s), the run did nothing", sc, key, p.Action, p.Reason)
				}
			}
			assertNotBlanked(t, sc, h.dst)

			// SyncOne of a few users, each in a fresh copy of the world.
			var rows []sync.Record
			for rec, err := range src.Records(ctx) {
				if err == nil {
					rows = append(rows, rec)
				}
			}
			rng := rand.New(rand.NewPCG(sc.seed, 7))
			for range min(3, len(rows)) {
				id := rows[rng.IntN(len(rows))].ExternalID
				var valid []sync.Record
				for _, x := range rows {
					if x.ExternalID == id && !x.Deleted {
						valid = append(valid, x)
					}
				}
				h2, src2 := sc.build(t)
				res, err := sync.New(src2, h2.dst, h2.store, sc.opts(h2, 1)).SyncOne(ctx, id)
				if err != nil && res.Action == "" {
					t.Fatalf("%s: SyncOne(%s): %v", sc, id, err)
				}
				// What the run did with the user: its row's outcome, the
				// archive of a deleted one, nothing for one left alone.
				key := id + "|"
				if len(valid) > 0 {
					key += valid[0].Ref
				}
				o, ran := outcomes[key]
				want := sync.ActionSkipped
				switch {
				case ran && o.Verdict == sync.VerdictBackoff:
					continue // SyncOne waives the backoff: the operator asked
				case len(valid) > 1:
					want = sync.ActionRejected // every row of a duplicate
				case ran:
					want = o.Action
				}
				if res.Action != want {
					t.Errorf("%s: SyncOne(%s) = %s (%v, %s), the run did %q (verdict %s) with %s", sc, id, res.Action, err, res.Reason, o.Action, o.Verdict, key)
				}
				assertNotBlanked(t, sc, h2.dst)

				// SyncIDs, the event path's targeted sync, does the same
				// through a read by id, and keeps the backoff. Its read
				// is complete for the users it names: compared with a
				// run whose read was complete.
				h3, src3 := sc.build(t)
				if ps := src3.(*partialSource); !ps.complete {
					continue
				}
				got, err := sync.New(byID{src3.(*partialSource).sliceSource}, h3.dst, h3.store, sc.opts(h3, 1)).SyncIDs(ctx, []string{id}, false)
				if err != nil || len(got) != 1 {
					t.Fatalf("%s: SyncIDs(%s) = %+v, %v", sc, id, got, err)
				}
				if ran && o.Verdict == sync.VerdictBackoff {
					want = sync.ActionFailed
				}
				if got[0].Action != want {
					t.Errorf("%s: SyncIDs(%s) = %+v, the run did %q (verdict %s) with %s", sc, id, got[0], o.Action, o.Verdict, key)
				}
				assertNotBlanked(t, sc, h3.dst)
			}
		})
	}
}

// assertNotBlanked fails when a customer lost its email or name: no entry
// point may blank a customer (issue 13: SyncOne of a soft-deleted row did).
func assertNotBlanked(t *testing.T, sc scenario, d *fakeDest) {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	for id, c := range d.byID {
		if c.Email == "" || c.Name == "" {
			t.Errorf("%s: customer %s blanked: %+v", sc, id, c)
		}
	}
}
