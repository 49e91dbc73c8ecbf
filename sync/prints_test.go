package sync_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"iter"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	stdsync "sync"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/plugipay-sync/plugipay-sync/state"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

// printedSource is a source that prints its rows as a file export does:
// the print covers a row's fields, not its line; a position is its index.
type printedSource struct{ *partialSource }

func itemPrint(it any) sync.Print {
	var s string
	switch v := it.(type) {
	case sync.Record:
		v.Ref, v.Print = "", sync.Print{}
		s = fmt.Sprintf("%+v", v)
	case *sync.RecordError:
		s = "bad|" + v.ExternalID + "|" + v.Reason
	}
	sum := sha256.Sum256([]byte(s))
	return sync.Print(sum[:16])
}

func itemID(it any) uint64 {
	switch v := it.(type) {
	case sync.Record:
		return sync.IDHash(v.ExternalID)
	case *sync.RecordError:
		return sync.IDHash(v.ExternalID)
	}
	return 0
}

func itemLine(it any) int {
	ref := ""
	switch v := it.(type) {
	case sync.Record:
		ref = v.Ref
	case *sync.RecordError:
		ref = v.Ref
	}
	n, _ := strconv.Atoi(strings.TrimPrefix(ref, "line "))
	return n
}

// withPrint is the item as Records yields it: with its print.
func withPrint(it any) (sync.Record, error) {
	switch v := it.(type) {
	case sync.Record:
		v.Print = itemPrint(v)
		return v, nil
	case *sync.RecordError:
		e := *v
		e.Print = itemPrint(v)
		return sync.Record{}, &e
	}
	return sync.Record{}, it.(error)
}

func (p *printedSource) PrintSeed() string { return "test-v1" }

func (p *printedSource) Records(ctx context.Context) iter.Seq2[sync.Record, error] {
	return func(yield func(sync.Record, error) bool) {
		for _, it := range p.items {
			if !yield(withPrint(it)) || ctx.Err() != nil {
				return
			}
		}
	}
}

func (p *printedSource) Prints(ctx context.Context) iter.Seq2[sync.RowPrint, error] {
	return func(yield func(sync.RowPrint, error) bool) {
		for i, it := range p.items {
			if !yield(sync.RowPrint{Print: itemPrint(it), Pos: int64(i), Line: itemLine(it), ID: itemID(it)}, nil) {
				return
			}
		}
	}
}

func (p *printedSource) RecordsAt(ctx context.Context, rows []sync.RowPrint) iter.Seq2[sync.Record, error] {
	return func(yield func(sync.Record, error) bool) {
		for _, rp := range rows {
			if !yield(withPrint(p.items[rp.Pos])) {
				return
			}
		}
	}
}

// worldAfter runs r over the scenario's source and returns what each row
// ended as, and the customers and mappings left.
type worldState struct {
	outcomes  map[string]string
	customers map[string]sync.Customer
	mappings  map[string]string
	printPass bool
}

func runWorld(t *testing.T, sc scenario, h *harness, src sync.Source) worldState {
	t.Helper()
	ctx := context.Background()
	ws := worldState{outcomes: map[string]string{}, customers: map[string]sync.Customer{}, mappings: map[string]string{}}
	var mu stdsync.Mutex
	opts := sc.opts(h, 1)
	core, logs := observer.New(zapcore.InfoLevel)
	opts.Logger = zap.New(core)
	opts.OnOutcome = func(o sync.Outcome) {
		mu.Lock()
		defer mu.Unlock()
		ws.outcomes[o.ExternalID+"|"+o.Ref] = o.Action + "/" + string(o.Verdict)
	}
	if _, err := sync.New(src, h.dst, h.store, opts).Run(ctx); err != nil {
		t.Fatalf("%s: run: %v", sc, err)
	}
	ws.printPass = logs.FilterMessageSnippet("print pass").Len() > 0
	h.dst.mu.Lock()
	maps.Copy(ws.customers, h.dst.byID)
	h.dst.mu.Unlock()
	for m, err := range h.store.AllMappings(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		ws.mappings[m.ExternalID] = m.CustomerID + "|" + m.Hash
	}
	return ws
}

// planWorld is the dry run's plan of the scenario's source: every entry,
// with its action, reason and changes.
func planWorld(t *testing.T, sc scenario, h *harness, src sync.Source) map[string]string {
	t.Helper()
	plan := map[string]string{}
	counts, err := sync.New(src, h.dst, h.store, sc.opts(h, 1)).Plan(context.Background(), func(e sync.PlanEntry) {
		plan[e.ExternalID+"|"+e.Ref] = fmt.Sprintf("%s %s %s %v", e.Action, e.CustomerID, e.Reason, e.Changes)
	})
	if err != nil && !errors.Is(err, sync.ErrMassArchive) {
		t.Fatalf("%s: plan: %v", sc, err)
	}
	plan["counts"] = fmt.Sprint(counts)
	return plan
}

// TestDifferential_PrintPass holds the print pass to the full read: over
// randomised worlds (changes, duplicates, bad rows, failures in backoff,
// partial reads, each mode and destination), a run that decodes only the
// rows whose print changed does exactly what a run that decodes every row
// does, row by row, and leaves the same customers and mappings; and so
// does the run after it.
func TestDifferential_PrintPass(t *testing.T) {
	passes := 0
	for seed := range uint64(120) {
		plain := newScenario(seed, []int{1, 3, 1000})
		printed := plain
		printed.printed = true
		hA, srcA := plain.build(t)
		hB, srcB := printed.build(t)
		for round := range 2 {
			// The dry runs first: a print pass plans what a full read plans.
			planA, planB := planWorld(t, plain, hA, srcA), planWorld(t, printed, hB, srcB)
			if !maps.Equal(planA, planB) {
				for _, k := range slices.Sorted(maps.Keys(planA)) {
					if planA[k] != planB[k] {
						t.Errorf("%s round %d: plan %s: full read %q, print pass %q", plain, round, k, planA[k], planB[k])
					}
				}
				for k := range planB {
					if _, ok := planA[k]; !ok {
						t.Errorf("%s round %d: plan %s: only the print pass: %q", plain, round, k, planB[k])
					}
				}
			}
			a, b := runWorld(t, plain, hA, srcA), runWorld(t, printed, hB, srcB)
			if b.printPass {
				passes++
			}
			if !maps.Equal(a.outcomes, b.outcomes) {
				for _, k := range slices.Sorted(maps.Keys(a.outcomes)) {
					if a.outcomes[k] != b.outcomes[k] {
						t.Errorf("%s round %d: %s: full read %s, print pass %s", plain, round, k, a.outcomes[k], b.outcomes[k])
					}
				}
				for k := range b.outcomes {
					if _, ok := a.outcomes[k]; !ok {
						t.Errorf("%s round %d: %s: only the print pass: %s", plain, round, k, b.outcomes[k])
					}
				}
			}
			if !maps.EqualFunc(a.customers, b.customers, func(x, y sync.Customer) bool { return fmt.Sprint(x) == fmt.Sprint(y) }) {
				t.Errorf("%s round %d: customers differ:\n full  %v\n print %v", plain, round, a.customers, b.customers)
			}
			if !maps.Equal(a.mappings, b.mappings) {
				t.Errorf("%s round %d: mappings differ:\n full  %v\n print %v", plain, round, a.mappings, b.mappings)
			}
			hA.clk.Add(5 * 3600e9)
			hB.clk.Add(5 * 3600e9)
		}
	}
	if passes < 60 {
		t.Errorf("only %d of 240 runs were print passes: the test does not test them", passes)
	}
}

// TestPrints_StaleFileIsNotTrusted: a store changed by another writer, a
// prints file replaced by garbage and a state DB restored from a copy
// all make the next run decode every row, and it stays right.
func TestPrints_StaleFileIsNotTrusted(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	items := users(20).items
	src := &printedSource{&partialSource{sliceSource: &sliceSource{items: items}, complete: true}}
	run := func() (sync.RunRecord, bool) {
		core, logs := observer.New(zapcore.InfoLevel)
		r := sync.New(src, h.dst, h.store, sync.Options{Now: h.clk.Now, Logger: zap.New(core)})
		rec, err := r.Run(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return rec, logs.FilterMessageSnippet("print pass").Len() > 0
	}
	if rec, pass := run(); pass || rec.Counts.Created != 20 {
		t.Fatalf("first run: %+v, print pass %v", rec.Counts, pass)
	}
	if rec, pass := run(); !pass || rec.Counts.Unchanged != 20 {
		t.Fatalf("second run: %+v, print pass %v; want a print pass, 20 unchanged", rec.Counts, pass)
	}

	// Another writer changes a mapping's hash behind the run's back (as
	// sync --external-id would after a CRM edit that was then reverted).
	copyPath := h.path + ".copy"
	if err := h.store.Close(); err != nil {
		t.Fatal(err)
	}
	copyFile(t, h.path, copyPath)
	h.open()
	m, err := h.store.Mappings(ctx, []string{"usr_0003"})
	if err != nil {
		t.Fatal(err)
	}
	mm := m["usr_0003"]
	mm.Hash = "edited elsewhere"
	if err := h.store.PutMapping(ctx, mm); err != nil {
		t.Fatal(err)
	}
	if rec, pass := run(); pass || rec.Counts.Unchanged != 20 {
		t.Fatalf("after another writer: %+v, print pass %v; want every row decoded", rec.Counts, pass)
	}
	if m, _ := h.store.Mappings(ctx, []string{"usr_0003"}); m["usr_0003"].Hash == "edited elsewhere" {
		t.Fatal("the run trusted its prints over a mapping another writer changed")
	}
	if rec, pass := run(); !pass || rec.Counts.Unchanged != 20 {
		t.Fatalf("then: %+v, print pass %v", rec.Counts, pass)
	}

	// Garbage in the prints file.
	if err := os.WriteFile(h.store.PrintsPath(), []byte("PSYPRNT1 not really"), 0o600); err != nil {
		t.Fatal(err)
	}
	if rec, pass := run(); pass || rec.Counts.Unchanged != 20 {
		t.Fatalf("garbage prints: %+v, print pass %v", rec.Counts, pass)
	}

	// The state DB restored from the copy taken before: its change
	// version may equal the file's again, its token does not.
	if err := h.store.Close(); err != nil {
		t.Fatal(err)
	}
	copyFile(t, copyPath, h.path)
	os.Remove(h.path + "-wal")
	os.Remove(h.path + "-shm")
	h.open()
	if _, pass := run(); pass {
		t.Fatal("a restored state DB trusted a prints file written after its copy")
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestPrints_ExactCopyOfAConfirmedRow: a row copied verbatim has the
// print of the confirmed one; both rows are rejected as duplicates, as a
// full read rejects them, however the batches fall.
func TestPrints_ExactCopyOfAConfirmedRow(t *testing.T) {
	for _, batch := range []int{1, 10, 1000} {
		t.Run(fmt.Sprint(batch), func(t *testing.T) {
			ctx := context.Background()
			h := newHarness(t)
			items := users(5).items
			src := &printedSource{&partialSource{sliceSource: &sliceSource{items: items}, complete: true}}
			run := func() sync.RunRecord {
				rec, err := sync.New(src, h.dst, h.store, sync.Options{Now: h.clk.Now, BatchSize: batch}).Run(ctx)
				if err != nil {
					t.Fatal(err)
				}
				return rec
			}
			run()
			before := fmt.Sprint(h.dst.byID)
			copied := items[2].(sync.Record)
			copied.Ref = "line 99"
			src.items = append(slices.Clone(items), copied)
			for range 2 {
				if rec := run(); rec.Counts.Rejected != 2 || rec.Counts.Unchanged != 4 {
					t.Fatalf("counts %+v, want the two copies rejected, 4 unchanged", rec.Counts)
				}
			}
			if after := fmt.Sprint(h.dst.byID); after != before {
				t.Fatalf("customers changed:\n%s\n%s", before, after)
			}
		})
	}
}

// TestPrints_BadRowSharingAnID: a bad row that carries a valid user's id
// makes both rows decoded on every run (they share an id), and the store
// changes that decoding makes (the reject is recorded again) never cost
// the next run its print pass.
func TestPrints_BadRowSharingAnID(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	items := append(users(6).items, &sync.RecordError{Ref: "line 99", ExternalID: "usr_0002", Reason: "invalid email"})
	src := &printedSource{&partialSource{sliceSource: &sliceSource{items: items}, complete: true}}
	for run := range 4 {
		core, logs := observer.New(zapcore.InfoLevel)
		rec, err := sync.New(src, h.dst, h.store, sync.Options{Now: h.clk.Now, Logger: zap.New(core)}).Run(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pass := logs.FilterMessageSnippet("print pass").Len() > 0
		if run >= 1 && (!pass || rec.Counts.Unchanged != 6 || rec.Counts.Rejected != 1) {
			t.Fatalf("run %d: %+v, print pass %v; want a print pass, 6 unchanged, 1 rejected", run, rec.Counts, pass)
		}
	}
}

// noPrintsStore is a store with no file beside it (as a store in
// PostgreSQL): its PrintsPath is "".
type noPrintsStore struct{ *state.DB }

func (noPrintsStore) PrintsPath() string { return "" }

// TestPrints_StoreWithoutFile: a store whose PrintsPath is "" gets no
// print pass and no attempt to keep prints (which failed with a warning on
// every run); every run decodes every row.
func TestPrints_StoreWithoutFile(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	src := &printedSource{&partialSource{sliceSource: &sliceSource{items: users(20).items}, complete: true}}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadDir(wd)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []sync.RunCounts{{Read: 20, Created: 20}, {Read: 20, Unchanged: 20}} {
		core, logs := observer.New(zapcore.InfoLevel)
		rec, err := sync.New(src, h.dst, noPrintsStore{h.store}, sync.Options{Now: h.clk.Now, Logger: zap.New(core)}).Run(ctx)
		if err != nil {
			t.Fatalf("run %d: %v", i+1, err)
		}
		// "print pass" is logged by a print pass, "prints" also by a
		// failure to keep them (a file at "" cannot be written).
		if rec.Counts != want || logs.FilterMessageSnippet("print").Len() > 0 || rec.Outcome != sync.OutcomeSuccess {
			t.Fatalf("run %d: %s %+v, logged %v; want %+v and no print pass nor prints kept",
				i+1, rec.Outcome, rec.Counts, logs.FilterMessageSnippet("print").All(), want)
		}
	}
	if _, err := os.Stat(h.path + ".prints"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a prints file was written beside the state DB (%v)", err)
	}
	if after, _ := os.ReadDir(wd); len(after) != len(before) {
		t.Errorf("the runs left files in the working directory: %d entries, were %d", len(after), len(before))
	}
}
