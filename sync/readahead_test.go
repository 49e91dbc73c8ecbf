package sync

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"testing"
)

// counting yields n records, with a RecordError every 100th, and records
// how far it got and whether its ctx ended.
type counting struct {
	n        int
	produced int
	finished bool
	panicAt  int
}

func (c *counting) Records(ctx context.Context) iter.Seq2[Record, error] {
	return func(yield func(Record, error) bool) {
		defer func() { c.finished = true }()
		for i := range c.n {
			if ctx.Err() != nil {
				yield(Record{}, ctx.Err())
				return
			}
			if c.panicAt > 0 && i == c.panicAt {
				panic("boom")
			}
			c.produced++
			var err error
			if i%100 == 99 {
				err = &RecordError{Ref: fmt.Sprint(i)}
			}
			if !yield(Record{ExternalID: fmt.Sprint(i)}, err) {
				return
			}
		}
	}
}

func TestReadAhead(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		src := &counting{n: 10*readAheadChunk + 7}
		i := 0
		for rec, err := range readAhead(context.Background(), src.Records) {
			if rec.ExternalID != fmt.Sprint(i) {
				t.Fatalf("record %d: got %q", i, rec.ExternalID)
			}
			if (i%100 == 99) != (err != nil) {
				t.Fatalf("record %d: err = %v", i, err)
			}
			i++
		}
		if i != src.n || !src.finished {
			t.Fatalf("got %d of %d records, finished %v", i, src.n, src.finished)
		}
	})
	t.Run("StopEarly", func(t *testing.T) {
		src := &counting{n: 1_000_000}
		i := 0
		for range readAhead(context.Background(), src.Records) {
			if i++; i == 300 {
				break
			}
		}
		// The source's stream has ended by the time the loop returns, and
		// it read only a few chunks ahead.
		if !src.finished {
			t.Fatal("source still running after the loop stopped")
		}
		if src.produced > 300+(readAheadChunks+1)*readAheadChunk {
			t.Fatalf("source read %d records ahead of 300", src.produced)
		}
	})
	t.Run("Canceled", func(t *testing.T) {
		// A cancelled ctx ends the stream (the caller checks its ctx, as
		// dispatch does): the loop returns and the source has stopped.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		src := &counting{n: 1_000_000}
		n := 0
		for _, err := range readAhead(ctx, src.Records) {
			if n++; n == 10 {
				cancel()
			}
			if err != nil && !errors.Is(err, context.Canceled) && !errors.As(err, new(*RecordError)) {
				t.Fatalf("unexpected error %v", err)
			}
		}
		if !src.finished || src.produced == src.n {
			t.Fatalf("source finished %v after %d records", src.finished, src.produced)
		}
	})
	t.Run("Panic", func(t *testing.T) {
		src := &counting{n: 1000, panicAt: 600}
		defer func() {
			if p := recover(); p != "boom" {
				t.Fatalf("recovered %v, want the source's panic", p)
			}
		}()
		for range readAhead(context.Background(), src.Records) {
		}
		t.Fatal("no panic")
	})
}
