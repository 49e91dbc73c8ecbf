package transport

import (
	"context"
	stdsync "sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestLimiter_EventLaneGoesFirst: with a backfill's workers keeping the
// limiter at its ceiling, an event-lane request waits for at most the
// token a background request had already reserved, not for every worker
// (issue 17's priority lane); and the background still gets the rate.
func TestLimiter_EventLaneGoesFirst(t *testing.T) {
	for _, workers := range []int{1, 8, 32} {
		l := NewLimiter(LimiterOptions{PerSecond: 50, Burst: 1})
		ctx, cancel := context.WithCancel(context.Background())
		var granted atomic.Int64 // background tokens granted so far
		var wg stdsync.WaitGroup
		for range workers {
			wg.Go(func() {
				for l.Wait(ctx) == nil {
					granted.Add(1)
				}
			})
		}
		for granted.Load() < 10 { // the backfill is at its ceiling
			time.Sleep(10 * time.Millisecond)
		}
		for range 5 {
			before := granted.Load()
			if err := l.Wait(WithLane(ctx, LaneEvent)); err != nil {
				t.Fatal(err)
			}
			if passed := granted.Load() - before; passed > 2 {
				t.Errorf("%d workers: %d background requests left before a waiting event", workers, passed)
			}
		}
		cancel()
		wg.Wait()
		if granted.Load() < 10 {
			t.Errorf("%d workers: background starved: %d tokens", workers, granted.Load())
		}
	}
}

func TestLaneFrom(t *testing.T) {
	ctx := context.Background()
	if got := LaneFrom(ctx); got != LaneBackground {
		t.Errorf("unmarked: %v, want background", got)
	}
	if got := LaneFrom(WithLane(ctx, LaneEvent)); got != LaneEvent {
		t.Errorf("marked: %v, want event", got)
	}
	if got := LaneFrom(WithLane(WithLane(ctx, LaneEvent), LaneBackground)); got != LaneBackground {
		t.Errorf("re-marked: %v, want background", got)
	}
}
