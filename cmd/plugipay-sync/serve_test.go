package main

import (
	stdsync "sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestRunGroup_StartsRacingShutdown starts jobs from many goroutines while
// the group closes: under -race a bare WaitGroup's Add racing its Wait is
// reported, and a job that got in must be waited for.
func TestRunGroup_StartsRacingShutdown(t *testing.T) {
	for range 50 {
		var (
			g       runGroup
			started atomic.Int64
			ended   atomic.Int64
			ready   stdsync.WaitGroup
		)
		for range 8 {
			ready.Go(func() {
				g.Go(func() {
					started.Add(1)
					time.Sleep(time.Millisecond)
					ended.Add(1)
				})
			})
		}
		g.closeAndWait()
		if s, e := started.Load(), ended.Load(); s != e {
			t.Fatalf("closeAndWait returned with %d of %d jobs unfinished", s-e, s)
		}
		ready.Wait()
		g.Go(func() { t.Error("a job started after closeAndWait") })
	}
}
