package transport

import (
	"context"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// RateLimiter paces a client's attempts: Wait blocks until one may leave
// or ctx ends. *Limiter is the one implementation; the interface is what
// the transport needs, so a wrapper (issue 17's priority lane, which lets
// event-driven writes pass a backfill's) can stand in front of a Limiter
// without any caller changing. A RateLimiter that also implements
// Feedback learns from every answer.
type RateLimiter interface {
	Wait(ctx context.Context) error
}

// Feedback is implemented by a RateLimiter that adapts to the server's
// answers; the transport calls Observe after every attempt that got one.
type Feedback interface {
	Observe(status int, header http.Header)
}

// Defaults of the adaptive Limiter.
const (
	// minAdaptiveRate is the floor the adaptive limiter never goes below.
	minAdaptiveRate = rate.Limit(1)
	// recoverySteps is how many consecutive successes bring a halved
	// bucket back to its configured rate: each adds max/recoverySteps.
	recoverySteps = 32
	// decreaseCooldown is the least time between two decreases. A server
	// counting in one-second windows answers every request in flight when
	// a window fills with a 429 (or Remaining: 0) at once; treating them as
	// one congestion event, as TCP does once per round trip, keeps a burst
	// of concurrent 429s from collapsing the rate to the floor (found with
	// 60 concurrent writers against the emulator: without it the write
	// rate sat at 1-2/s and the run took four times as long).
	decreaseCooldown = time.Second
	// maxPause bounds a pause taken from a reset header, so a skewed or
	// bogus reset time cannot stall the client.
	maxPause = 5 * time.Second
)

// LimiterOptions configure a Limiter.
type LimiterOptions struct {
	// PerSecond is the rate; 0, a negative or an infinite rate means no
	// limit.
	PerSecond float64
	// Burst is the token bucket's size (at least 1).
	Burst int
	// Adaptive halves the rate on a 429 (floor 1/s, at most once a
	// second), raises it by a fraction after each success (additive
	// increase, multiplicative decrease), and, when an answer says the
	// server's window is used up (RemainingHeader: 0), holds requests
	// until the window's reset (ResetHeader, epoch seconds; one second
	// without it). A client sharing a workspace with others then settles
	// just under the server's window instead of hammering it.
	Adaptive bool
	// RemainingHeader and ResetHeader name the server's headers
	// (defaults X-RateLimit-Remaining, X-RateLimit-Reset).
	RemainingHeader, ResetHeader string
}

// Limiter is the module's one client-side rate limiter: a token bucket
// (golang.org/x/time/rate) shared by every goroutine of a client,
// optionally adaptive. A nil or unlimited Limiter never waits.
type Limiter struct {
	o   LimiterOptions
	lim *rate.Limiter // nil: unlimited
	max rate.Limit
	now func() time.Time

	mu           sync.Mutex // serialises read-modify-write of the limit
	lastDecrease time.Time
	// background lets one background request at a time hold a token
	// reservation (a semaphore of one), so an event-lane request never
	// queues behind a backfill's many workers; events counts the
	// event-lane requests waiting, which background ones yield to.
	background chan struct{}
	events     atomic.Int64
	// pauseUntil is the server's window reset after it said the window is
	// used up: no request leaves before it.
	pauseUntil time.Time
}

// NewLimiter returns a Limiter for o.
func NewLimiter(o LimiterOptions) *Limiter {
	if o.RemainingHeader == "" {
		o.RemainingHeader = "X-RateLimit-Remaining"
	}
	if o.ResetHeader == "" {
		o.ResetHeader = "X-RateLimit-Reset"
	}
	l := &Limiter{o: o, now: time.Now, background: make(chan struct{}, 1)}
	if o.PerSecond <= 0 || math.IsInf(o.PerSecond, 1) || math.IsNaN(o.PerSecond) {
		return l
	}
	l.max = rate.Limit(o.PerSecond)
	l.lim = rate.NewLimiter(l.max, max(o.Burst, 1))
	return l
}

// Wait blocks until a request may leave or ctx ends. An error with
// ctx.Err() nil means ctx's deadline is too close for the next token.
//
// Requests of the event lane (see WithLane) go first: background requests
// take their tokens one at a time, each only when no event-lane request is
// waiting, so an event waits for at most the token a background request
// already reserved, not for every worker of a backfill at the ceiling.
func (l *Limiter) Wait(ctx context.Context) error {
	if l == nil || l.lim == nil {
		return ctx.Err()
	}
	if err := l.waitPause(ctx); err != nil {
		return err
	}
	if LaneFrom(ctx) == LaneEvent {
		l.events.Add(1)
		err := l.lim.Wait(ctx)
		l.events.Add(-1)
		if err != nil {
			return err
		}
	} else if err := l.waitBackground(ctx); err != nil {
		return err
	}
	// A token reserved before the server said the window was used up must
	// not go out inside that window: honour a pause set while we waited.
	return l.waitPause(ctx)
}

// waitBackground takes a background request's token: one background
// request at a time, and only while no event-lane request waits.
func (l *Limiter) waitBackground(ctx context.Context) error {
	select {
	case l.background <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-l.background }()
	for l.events.Load() > 0 {
		// Yield for about one token's time, then look again.
		t := time.NewTimer(max(time.Duration(float64(time.Second)/max(float64(l.lim.Limit()), 1)), time.Millisecond))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
	return l.lim.Wait(ctx)
}

// waitPause blocks until pauseUntil has passed (at most maxPause) or ctx
// ends.
func (l *Limiter) waitPause(ctx context.Context) error {
	l.mu.Lock()
	pause := l.pauseUntil.Sub(l.now())
	l.mu.Unlock()
	if pause <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(min(pause, maxPause))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Limit is the current rate (rate.Inf when unlimited).
func (l *Limiter) Limit() rate.Limit {
	if l == nil || l.lim == nil {
		return rate.Inf
	}
	return l.lim.Limit()
}

// Observe adapts an adaptive Limiter to one answer (see Feedback).
func (l *Limiter) Observe(status int, header http.Header) {
	if l == nil || l.lim == nil || !l.o.Adaptive || status == 0 {
		return
	}
	switch {
	case status == http.StatusTooManyRequests:
		l.throttle()
	case headerInt(header, l.o.RemainingHeader, -1) == 0:
		// The window is used up but we were not refused: we are at the
		// ceiling, not above it. Hold the next request until the window
		// resets instead of cutting the rate, so a backfill keeps the
		// full rate without ever seeing a 429.
		var reset time.Time
		if n := headerInt(header, l.o.ResetHeader, 0); n > 0 {
			reset = time.Unix(int64(n), 0)
		}
		l.pauseUntilReset(reset)
	}
	if status < 400 {
		l.recover()
	}
}

func headerInt(h http.Header, name string, def int) int {
	v := strings.TrimSpace(h.Get(name))
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return def
	}
	return n
}

// pauseUntilReset holds requests until reset; without one it waits one
// second, the window.
func (l *Limiter) pauseUntilReset(reset time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if reset.IsZero() || !reset.After(now) {
		reset = now.Add(time.Second)
	}
	if reset.Sub(now) > maxPause {
		reset = now.Add(maxPause)
	}
	if reset.After(l.pauseUntil) {
		l.pauseUntil = reset
	}
}

// throttle halves the rate, never below minAdaptiveRate, at most once per
// decreaseCooldown.
func (l *Limiter) throttle() {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if !l.lastDecrease.IsZero() && now.Sub(l.lastDecrease) < decreaseCooldown {
		return
	}
	l.lastDecrease = now
	next := l.lim.Limit() / 2
	next = max(next, minAdaptiveRate)
	next = min(next, l.max)
	l.lim.SetLimit(next)
}

// recover raises the rate by max/recoverySteps, up to the configured rate.
func (l *Limiter) recover() {
	l.mu.Lock()
	defer l.mu.Unlock()
	cur := l.lim.Limit()
	if cur >= l.max {
		return
	}
	l.lim.SetLimit(min(cur+l.max/recoverySteps, l.max))
}
