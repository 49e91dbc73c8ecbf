package crm

import (
	"context"
	"sync"
	"time"
)

// Watermark is how far an incremental source read: the newest change time
// of its last complete read, how many incremental reads followed the last
// full scan, and when that full scan ended.
type Watermark struct {
	At            time.Time
	RunsSinceFull int
	LastFullAt    time.Time
}

// WatermarkStore keeps the watermarks of incremental sources (the state
// DB; cmd adapts it). ok is false when a source has none yet.
type WatermarkStore interface {
	Watermark(ctx context.Context, source string) (w Watermark, ok bool, err error)
	SetWatermark(ctx context.Context, source string, w Watermark) error
}

// FullScanDue reports whether the next read after w must be a full scan:
// every everyRuns-th read (0: never by count), or when the last full scan
// is older than every (0: never by age).
func FullScanDue(w Watermark, everyRuns int, every time.Duration, now time.Time) bool {
	if everyRuns > 0 && w.RunsSinceFull+1 >= everyRuns {
		return true
	}
	return every > 0 && now.Sub(w.LastFullAt) >= every
}

// Next is the watermark after a read that reached the end, following w:
// its newest change time (never moving back), and the full-scan bookkeeping.
func (w Watermark) Next(maxAt time.Time, full bool, now time.Time) Watermark {
	n := Watermark{At: w.At, RunsSinceFull: w.RunsSinceFull + 1, LastFullAt: w.LastFullAt}
	if maxAt.After(n.At) {
		n.At = maxAt
	}
	if full {
		n.RunsSinceFull, n.LastFullAt = 0, now
	}
	return n
}

// PendingWatermark holds the watermark a finished read prepared until the
// reconciler confirms the run (sync.Committer), so a crash or a failed run
// never moves an incremental source past changes it did not sync. The zero
// value is ready; it is safe for concurrent use.
type PendingWatermark struct {
	mu sync.Mutex
	w  *Watermark
}

// Set replaces the prepared watermark.
func (p *PendingWatermark) Set(w Watermark) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.w = &w
}

// Clear forgets the prepared watermark (a new read has started).
func (p *PendingWatermark) Clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.w = nil
}

// Commit stores the prepared watermark under key, once; without one it
// does nothing.
func (p *PendingWatermark) Commit(ctx context.Context, store WatermarkStore, key string) error {
	p.mu.Lock()
	w := p.w
	p.w = nil
	p.mu.Unlock()
	if w == nil {
		return nil
	}
	return store.SetWatermark(ctx, key, *w)
}

// MemoryWatermarks is a WatermarkStore in memory, for tests and the bench.
// The zero value is ready; it is safe for concurrent use.
type MemoryWatermarks struct {
	mu sync.Mutex
	m  map[string]Watermark
}

// Watermark returns the watermark stored under source.
func (w *MemoryWatermarks) Watermark(_ context.Context, source string) (Watermark, bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	v, ok := w.m[source]
	return v, ok, nil
}

// SetWatermark stores v under source.
func (w *MemoryWatermarks) SetWatermark(_ context.Context, source string, v Watermark) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil {
		w.m = map[string]Watermark{}
	}
	w.m[source] = v
	return nil
}
