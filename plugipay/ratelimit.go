package plugipay

import (
	"context"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// minAdaptiveRate is the floor the adaptive limiter never goes below.
const minAdaptiveRate = rate.Limit(1)

// recoverySteps is how many consecutive successes bring a halved bucket
// back to its configured rate: each success adds max/recoverySteps.
const recoverySteps = 32

// decreaseCooldown is the least time between two decreases. The server
// counts in one-second windows, and the requests in flight when a window
// fills all see a 429 (or Remaining: 0) at once; treating them as one
// congestion event, as TCP does once per round trip, keeps a burst of
// concurrent 429s from collapsing the rate to the floor. Found by running
// 60 concurrent writers against the emulator: without it the write rate
// sat at 1-2/s and the run took four times as long.
const decreaseCooldown = time.Second

// adaptiveLimiter is a token bucket shared by every goroutine of a Client.
// It starts at the configured rate; a 429 halves it (floor 1/s), a
// response saying X-RateLimit-Remaining: 0 holds further requests until
// the window's X-RateLimit-Reset, and each success raises
// it again by a fraction of the configured rate (additive increase,
// multiplicative decrease), so a sync that shares a workspace with other
// clients settles just under the server's window instead of hammering it.
type adaptiveLimiter struct {
	name string
	lim  *rate.Limiter // nil: unlimited
	max  rate.Limit
	now  func() time.Time

	mu           sync.Mutex // serialises read-modify-write of the limit
	lastDecrease time.Time
	// pauseUntil is the server's window reset after it said the window is
	// used up (X-RateLimit-Remaining: 0): no request leaves before it.
	pauseUntil time.Time
}

// maxPause bounds a pause taken from X-RateLimit-Reset, so a skewed or
// bogus reset time cannot stall the client.
const maxPause = 5 * time.Second

// newAdaptiveLimiter returns a limiter for perSecond requests per second
// with the given burst; a negative or infinite rate disables limiting.
func newAdaptiveLimiter(name string, perSecond float64, burst int) *adaptiveLimiter {
	a := &adaptiveLimiter{name: name, now: time.Now}
	if perSecond < 0 || math.IsInf(perSecond, 1) {
		return a
	}
	if burst < 1 {
		burst = 1
	}
	a.max = rate.Limit(perSecond)
	a.lim = rate.NewLimiter(a.max, burst)
	return a
}

// wait blocks until a token is available or ctx ends, and returns how long
// it waited.
func (a *adaptiveLimiter) wait(ctx context.Context) (time.Duration, error) {
	if a.lim == nil {
		return 0, ctx.Err()
	}
	start := time.Now()
	if err := a.waitPause(ctx); err != nil {
		return time.Since(start), err
	}
	if err := a.lim.Wait(ctx); err != nil {
		return time.Since(start), err
	}
	// A token reserved before the server said the window was used up must
	// not go out inside that window: honour a pause set while we waited.
	err := a.waitPause(ctx)
	return time.Since(start), err
}

// waitPause blocks until pauseUntil has passed (at most maxPause) or ctx ends.
func (a *adaptiveLimiter) waitPause(ctx context.Context) error {
	a.mu.Lock()
	pause := a.pauseUntil.Sub(a.now())
	a.mu.Unlock()
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

// limit returns the current rate (for tests and debugging).
func (a *adaptiveLimiter) limit() rate.Limit {
	if a.lim == nil {
		return rate.Inf
	}
	return a.lim.Limit()
}

// observe adapts the rate to one attempt's outcome.
func (a *adaptiveLimiter) observe(resp *response, err *Error) {
	if a.lim == nil || resp == nil {
		return // no response: says nothing about the server's window
	}
	switch {
	case resp.status == 429:
		a.throttle()
	case resp.remaining == 0:
		// The window is used up but we were not refused: we are at the
		// ceiling, not above it. Hold the next request until the window
		// resets instead of cutting the rate, so a backfill keeps the
		// full 20 writes/s without ever seeing a 429.
		a.pauseUntilReset(resp.reset)
	}
	if err == nil && resp.status != 429 {
		a.recover()
	}
}

// pauseUntilReset holds requests until reset (the server's
// X-RateLimit-Reset); without a reset it waits one second, the window.
func (a *adaptiveLimiter) pauseUntilReset(reset time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	if reset.IsZero() || !reset.After(now) {
		reset = now.Add(time.Second)
	}
	if reset.Sub(now) > maxPause {
		reset = now.Add(maxPause)
	}
	if reset.After(a.pauseUntil) {
		a.pauseUntil = reset
	}
}

// throttle halves the rate, never below minAdaptiveRate, at most once per
// decreaseCooldown.
func (a *adaptiveLimiter) throttle() {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	if !a.lastDecrease.IsZero() && now.Sub(a.lastDecrease) < decreaseCooldown {
		return
	}
	a.lastDecrease = now
	l := a.lim.Limit() / 2
	if l < minAdaptiveRate {
		l = minAdaptiveRate
	}
	if l > a.max {
		l = a.max
	}
	a.lim.SetLimit(l)
}

// recover raises the rate by max/recoverySteps, up to the configured rate.
func (a *adaptiveLimiter) recover() {
	a.mu.Lock()
	defer a.mu.Unlock()
	cur := a.lim.Limit()
	if cur >= a.max {
		return
	}
	l := cur + a.max/recoverySteps
	if l > a.max {
		l = a.max
	}
	a.lim.SetLimit(l)
}
