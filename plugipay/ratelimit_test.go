package plugipay

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

func TestAdaptiveLimiter(t *testing.T) {
	a := newAdaptiveLimiter("write", 20, 2)
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a.now = func() time.Time { return clock }
	throttled := &response{status: 429, remaining: -1}
	for _, want := range []rate.Limit{10, 5, 2.5, 1.25, 1, 1} {
		a.observe(throttled, &Error{})
		if got := a.limit(); got != want {
			t.Fatalf("after 429: limit = %v, want %v", got, want)
		}
		// More 429s in the same window are the same congestion event.
		a.observe(throttled, &Error{})
		if got := a.limit(); got != want {
			t.Fatalf("after a second 429 within the cooldown: limit = %v, want %v", got, want)
		}
		clock = clock.Add(decreaseCooldown)
	}
	ok := &response{status: 200, remaining: 7}
	for range recoverySteps {
		a.observe(ok, nil)
	}
	if got := a.limit(); got != 20 {
		t.Errorf("after %d successes: limit = %v, want 20", recoverySteps, got)
	}
	a.observe(ok, nil)
	if got := a.limit(); got != 20 {
		t.Errorf("limit rose above the configured rate: %v", got)
	}
	clock = clock.Add(decreaseCooldown)
	// Remaining: 0 is the ceiling, not above it: the rate stays, and the
	// next request waits for the window's reset.
	a.observe(&response{status: 200, remaining: 0, reset: clock.Add(700 * time.Millisecond)}, nil)
	if got := a.limit(); got != 20 {
		t.Errorf("after Remaining: 0: limit = %v, want 20", got)
	}
	if got := a.pauseUntil.Sub(clock); got != 700*time.Millisecond {
		t.Errorf("after Remaining: 0: pause %v, want until the reset (700ms)", got)
	}
	a.observe(&response{status: 200, remaining: 0, reset: clock.Add(time.Hour)}, nil)
	if got := a.pauseUntil.Sub(clock); got != maxPause {
		t.Errorf("a far reset pauses %v, want the cap %v", got, maxPause)
	}
	a.throttle()
	a.observe(nil, &Error{Code: CodeNetwork}) // no response: no change
	if got := a.limit(); got != 10 {
		t.Errorf("after a network error: limit = %v, want 10", got)
	}
	if off := newAdaptiveLimiter("read", -1, 0); off.limit() != rate.Inf {
		t.Errorf("negative rate should disable limiting, got %v", off.limit())
	}
}

func TestRateLimit_AdaptsThroughTransport(t *testing.T) {
	srv := newScriptServer(t,
		reply(429, errBody(CodeRateLimited, "slow down", "req_1"), "Retry-After", "1"),
		okCustomer("cus_1"),
		func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-RateLimit-Remaining", "0")
			okCustomer("cus_1")(w, r)
		},
	)
	c := newTestClient(t, srv, func(o *Options) {
		o.MaxAttempts = 1
		o.ReadRate, o.WriteRate = 100, 20
	})
	ctx := context.Background()
	if _, err := c.Customers.Create(ctx, CustomerParams{}, "idem_1"); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("err = %v", err)
	}
	if w, r := c.writeLimiter.limit(), c.readLimiter.limit(); w != 10 || r != 100 {
		t.Errorf("after a write 429: write, read = %v, %v; want 10, 100", w, r)
	}
	if _, err := c.Customers.Create(ctx, CustomerParams{}, "idem_2"); err != nil {
		t.Fatal(err)
	}
	if w := c.writeLimiter.limit(); w <= 10 || w > 20 {
		t.Errorf("after a success: write = %v, want recovering above 10", w)
	}
	if _, err := c.Customers.Get(ctx, "cus_1"); err != nil {
		t.Fatal(err)
	}
	if r := c.readLimiter.limit(); r != 100 {
		t.Errorf("after X-RateLimit-Remaining: 0: read = %v, want 100 (paused, not cut)", r)
	}
	// The next read waits for the window to reset (no Reset header: 1 s).
	start := time.Now()
	if _, err := c.Customers.Get(ctx, "cus_1"); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited < 900*time.Millisecond {
		t.Errorf("read after Remaining: 0 left after %v; want it held until the reset", waited)
	}
}

func TestRateLimit_SharedAndSeparateBuckets(t *testing.T) {
	srv := newScriptServer(t, okCustomer("cus_1"))
	c := newTestClient(t, srv, func(o *Options) {
		o.WriteRate, o.WriteBurst = 20, 1
		o.ReadRate, o.ReadBurst = 1000, 5
	})
	ctx := context.Background()
	// Six writes from six goroutines share one bucket: at 20/s with a burst
	// of 1 they need at least 5 intervals of 50ms.
	start := time.Now()
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			if _, err := c.Customers.Create(ctx, CustomerParams{}, "idem_x"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if elapsed := time.Since(start); elapsed < 200*time.Millisecond {
		t.Errorf("6 writes took %v, want >= ~250ms at 20/s", elapsed)
	}
	// The write bucket is empty now; a read must not wait for it.
	start = time.Now()
	if _, err := c.Customers.Get(ctx, "cus_1"); err != nil {
		t.Fatal(err)
	}
	if elapsed := time.Since(start); elapsed > 40*time.Millisecond {
		t.Errorf("read waited %v behind the write bucket", elapsed)
	}
}

func TestRateLimit_WaitHonoursContext(t *testing.T) {
	srv := newScriptServer(t, okCustomer("cus_1"))
	c := newTestClient(t, srv, func(o *Options) { o.WriteRate, o.WriteBurst = 0.2, 1 })
	if _, err := c.Customers.Create(context.Background(), CustomerParams{}, "idem_1"); err != nil {
		t.Fatal(err)
	}
	t.Run("Canceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(30*time.Millisecond, cancel)
		start := time.Now()
		_, err := c.Customers.Create(ctx, CustomerParams{}, "idem_2")
		if !errors.Is(err, ErrCanceled) || !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
		if elapsed := time.Since(start); elapsed > time.Second {
			t.Errorf("took %v", elapsed)
		}
	})
	t.Run("DeadlineTooClose", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if _, err := c.Customers.Create(ctx, CustomerParams{}, "idem_3"); !errors.Is(err, ErrTimeout) {
			t.Fatalf("err = %v", err)
		}
	})
	if n := len(srv.requests()); n != 1 {
		t.Errorf("requests = %d, want 1 (none sent without a token)", n)
	}
}
