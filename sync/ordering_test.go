package sync_test

import (
	"context"
	"fmt"
	"iter"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	stdsync "sync"
	"testing"
	"time"

	"github.com/plugipay-sync/plugipay-sync/sync"
)

// liveCRM is a CRM whose users change while it is read: each user's name
// carries its version, bumped by every change.
type liveCRM struct {
	mu       stdsync.Mutex
	versions map[string]int
}

func (c *liveCRM) record(id string) sync.Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	return sync.Record{ExternalID: id, Email: id + "@example.com", Name: fmt.Sprintf("v%06d", c.versions[id]), Ref: "id=" + id}
}

func (c *liveCRM) ids() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.versions))
	for id := range c.versions {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

func (c *liveCRM) bump(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.versions[id]++
}

func (c *liveCRM) Records(ctx context.Context) iter.Seq2[sync.Record, error] {
	return func(yield func(sync.Record, error) bool) {
		for _, id := range c.ids() {
			if !yield(c.record(id), nil) {
				return
			}
		}
	}
}

func (c *liveCRM) RecordsByID(ctx context.Context, ids []string) iter.Seq2[sync.Record, error] {
	return func(yield func(sync.Record, error) bool) {
		for _, id := range ids {
			if !yield(c.record(id), nil) {
				return
			}
		}
	}
}

// auditDest records every confirmed write's version per user, and fails
// the test when two writes of one user are in flight at once.
type auditDest struct {
	*fakeDest
	t        *testing.T
	mu       stdsync.Mutex
	inflight map[string]int
	written  map[string][]int
}

func (d *auditDest) enter(id string) func(name string, err error) {
	d.mu.Lock()
	d.inflight[id]++
	if n := d.inflight[id]; n > 1 {
		d.t.Errorf("%s: %d writes in flight at once", id, n)
	}
	d.mu.Unlock()
	time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond) // widen the window
	return func(name string, err error) {
		d.mu.Lock()
		defer d.mu.Unlock()
		d.inflight[id]--
		if err == nil {
			v, _ := strconv.Atoi(strings.TrimPrefix(name, "v"))
			d.written[id] = append(d.written[id], v)
		}
	}
}

func (d *auditDest) CreateCustomer(ctx context.Context, c sync.Customer, key string) (sync.Customer, error) {
	done := d.enter(c.ExternalID)
	got, err := d.fakeDest.CreateCustomer(ctx, c, key)
	done(got.Name, err)
	return got, err
}

func (d *auditDest) UpdateCustomer(ctx context.Context, id string, p sync.Patch, key string) (sync.Customer, error) {
	d.fakeDest.mu.Lock()
	ext := d.fakeDest.byID[id].ExternalID
	d.fakeDest.mu.Unlock()
	done := d.enter(ext)
	got, err := d.fakeDest.UpdateCustomer(ctx, id, p, key)
	done(got.Name, err)
	return got, err
}

// TestOrdering_Randomised is issue 17's ordering test: CRM changes,
// triggers and scheduled runs go on concurrently; a user is never written
// by two workers at once, every user's writes are in CRM order (an older
// value never follows a newer one), and at the end every customer holds
// the final CRM row. A few seconds under -short, a minute otherwise.
func TestOrdering_Randomised(t *testing.T) {
	duration := time.Minute
	if testing.Short() {
		duration = 3 * time.Second
	}
	h := newHarness(t)
	crm := &liveCRM{versions: map[string]int{}}
	for i := range 12 {
		crm.versions[fmt.Sprintf("u%02d", i)] = 1
	}
	dst := &auditDest{fakeDest: h.dst, t: t, inflight: map[string]int{}, written: map[string][]int{}}
	r := sync.New(crm, dst, h.store, sync.Options{Concurrency: 4, BatchSize: 5, RetryMin: time.Millisecond, RetryMax: time.Millisecond})
	ev := startEvents(t, r, nil)

	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	var wg stdsync.WaitGroup
	ids := crm.ids()
	for g := range 2 { // the CRM changing, each change announced or not
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 17))
			for ctx.Err() == nil {
				id := ids[rng.IntN(len(ids))]
				crm.bump(id)
				switch rng.IntN(3) {
				case 0:
					_, _ = ev.Submit(sync.EventSourcePostgres, []string{id}, false)
				case 1:
					_, _ = ev.Submit(sync.EventSourceAPI, []string{id, ids[rng.IntN(len(ids))]}, true)
				}
				time.Sleep(time.Duration(rng.IntN(2000)) * time.Microsecond)
			}
		})
	}
	runs := 0
	wg.Go(func() { // the schedule
		for ctx.Err() == nil {
			if _, err := r.Run(context.Background()); err != nil {
				t.Errorf("run: %v", err)
				return
			}
			runs++
			time.Sleep(5 * time.Millisecond)
		}
	})
	wg.Wait()

	// Quiet: one last trigger and one last run bring everything in line.
	tk, err := ev.Submit(sync.EventSourceAPI, ids, true)
	if err != nil {
		t.Fatal(err)
	}
	wait(t, tk)
	if _, err := r.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	writes := 0
	for _, id := range ids {
		want := crm.record(id).Name
		var got string
		for c := range h.dst.snapshot(func(c sync.Customer) bool { return c.ExternalID == id }) {
			got = c.Name
		}
		if got != want {
			t.Errorf("%s: customer holds %q, the CRM %q", id, got, want)
		}
		vs := dst.written[id]
		writes += len(vs)
		for i := 1; i < len(vs); i++ {
			if vs[i] < vs[i-1] {
				t.Errorf("%s: version %d written after %d: %v", id, vs[i], vs[i-1], vs)
				break
			}
		}
	}
	if runs < 3 || writes < 3*len(ids) {
		t.Errorf("too little happened to test anything: %d runs, %d writes", runs, writes)
	}
	t.Logf("%d runs, %d writes over %d users", runs, writes, len(ids))
}
