package sync

import (
	"context"
	"iter"
	stdsync "sync"
)

// Read-ahead of the source in dispatch.
const (
	readAheadChunk  = 256 // records handed over at once
	readAheadChunks = 4   // chunks in flight: at most this many times readAheadChunk records read ahead
)

// item is one element of a source stream.
type item struct {
	rec Record
	err error
}

// readAhead yields what records(ctx) yields, in the same order, but
// iterates records in a goroutine of its own, a few chunks ahead of the
// caller. On a no-op run the source (parsing and validating the CRM's
// rows) and the reconciler's work on them (hashing, store lookups) are
// each about half of the time; read ahead, they overlap on two cores
// (issue 7: a no-op scan of a million users).
//
// Stopping the loop early cancels the source's ctx and waits for the
// goroutine to end, so the source's stream has finished when the loop
// statement returns, as with a direct range. A panic in the source is
// re-raised in the caller's goroutine.
func readAhead(ctx context.Context, records func(context.Context) iter.Seq2[Record, error]) iter.Seq2[Record, error] {
	return func(yield func(Record, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		full := make(chan []item, readAheadChunks)
		free := make(chan []item, readAheadChunks)
		for range readAheadChunks {
			free <- make([]item, 0, readAheadChunk)
		}
		var wg stdsync.WaitGroup
		var panicked any
		wg.Go(func() {
			defer close(full)
			defer func() {
				if p := recover(); p != nil {
					panicked = p
				}
			}()
			var cur []item
			select {
			case cur = <-free:
			case <-ctx.Done():
				return
			}
			for rec, err := range records(ctx) {
				cur = append(cur, item{rec, err})
				if len(cur) < cap(cur) {
					continue
				}
				select {
				case full <- cur:
				case <-ctx.Done():
					return
				}
				select {
				case cur = <-free:
				case <-ctx.Done():
					return
				}
			}
			if len(cur) > 0 {
				select {
				case full <- cur:
				case <-ctx.Done():
				}
			}
		})
		defer func() {
			cancel()
			for range full { // unblock and wait for the reader
			}
			wg.Wait()
		}()
		for chunk := range full {
			for i := range chunk {
				if !yield(chunk[i].rec, chunk[i].err) {
					return
				}
				chunk[i] = item{} // drop references early
			}
			free <- chunk[:0]
		}
		wg.Wait()
		if panicked != nil {
			panic(panicked)
		}
	}
}
