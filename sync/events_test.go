package sync_test

import (
	"context"
	"fmt"
	stdsync "sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/plugipay-sync/plugipay-sync/sync"
)

// startEvents runs an Events over r until the test ends.
func startEvents(t *testing.T, r *sync.Reconciler, reg prometheus.Registerer) *sync.Events {
	t.Helper()
	ev := sync.NewEvents(func() *sync.Reconciler { return r }, sync.EventsOptions{Registerer: reg, MaxPending: 50})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = ev.Start(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return ev
}

func wait(t *testing.T, tk *sync.Ticket) []sync.IDResult {
	t.Helper()
	select {
	case <-tk.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("ticket not settled in 30 s")
	}
	res, ok := tk.Results()
	if !ok {
		t.Fatal("results incomplete")
	}
	return res
}

// A burst of 1,000 triggers for 10 users, 4 of them changed, makes one
// write per changed user and reports every trigger's outcome (issue 17).
func TestEvents_BurstCoalesces(t *testing.T) {
	h := newHarness(t)
	src := users(10)
	h.mustRun(src, sync.RunCounts{Read: 10, Created: 10})
	for i := range 4 {
		r := src.items[i].(sync.Record)
		r.Email = fmt.Sprintf("changed%d@example.com", i)
		src.items[i] = r
	}
	h.dst.resetCalls()
	reg := prometheus.NewRegistry()
	ev := startEvents(t, h.reconciler(byID{src}), reg)

	var (
		wg      stdsync.WaitGroup
		mu      stdsync.Mutex
		tickets []*sync.Ticket
	)
	for g := range 10 {
		wg.Go(func() {
			for i := range 100 {
				tk, err := ev.Submit(sync.EventSourceAPI, []string{fmt.Sprintf("usr_%04d", (g+i)%10)}, false)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				tickets = append(tickets, tk)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for _, tk := range tickets {
		res := wait(t, tk)
		if len(res) != 1 {
			t.Fatalf("results %+v", res)
		}
		want := sync.ActionUnchanged
		var n int
		fmt.Sscanf(res[0].ExternalID, "usr_%d", &n)
		if n < 4 {
			want = sync.ActionUpdated // or unchanged, for a trigger after the write
		}
		if res[0].Action != want && res[0].Action != sync.ActionUnchanged {
			t.Fatalf("%s: %s (%s)", res[0].ExternalID, res[0].Action, res[0].Reason)
		}
	}
	if c, u, _ := h.dst.calls(); c != 0 || u != 4 {
		t.Errorf("calls: %d creates, %d updates; want 0 and one per changed user (4)", c, u)
	}
	if got := testutil.ToFloat64(ev.Metrics().Received(sync.EventSourceAPI)); got != 1000 {
		t.Errorf("received = %v, want 1000", got)
	}
	if got := testutil.ToFloat64(ev.Metrics().Coalesced(sync.EventSourceAPI)); got < 900 {
		t.Errorf("coalesced = %v, want most of 1000", got)
	}
	if got := testutil.CollectAndCount(reg, "plugipay_sync_event_latency_seconds"); got != 3 {
		t.Errorf("latency series = %d, want one per source (3)", got)
	}
}

func TestEvents_QueueFull(t *testing.T) {
	h := newHarness(t)
	reg := prometheus.NewRegistry()
	ev := sync.NewEvents(func() *sync.Reconciler { return h.reconciler(byID{users(1)}) }, sync.EventsOptions{Registerer: reg, MaxPending: 3})
	if _, err := ev.Submit(sync.EventSourcePostgres, []string{"a", "b", "c"}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := ev.Submit(sync.EventSourcePostgres, []string{"a", "b"}, false); err != nil {
		t.Fatalf("coalesced ids refused: %v", err)
	}
	if _, err := ev.Submit(sync.EventSourcePostgres, []string{"d"}, false); err != sync.ErrQueueFull {
		t.Fatalf("err = %v, want ErrQueueFull", err)
	}
	if got := testutil.ToFloat64(ev.Metrics().Dropped(sync.EventSourcePostgres, sync.DropQueueFull)); got != 1 {
		t.Errorf("dropped = %v, want 1", got)
	}
}
