package plugipay

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"
)

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
	if w, r := c.writeLimiter.Limit(), c.readLimiter.Limit(); w != 10 || r != 100 {
		t.Errorf("after a write 429: write, read = %v, %v; want 10, 100", w, r)
	}
	if _, err := c.Customers.Create(ctx, CustomerParams{}, "idem_2"); err != nil {
		t.Fatal(err)
	}
	if w := c.writeLimiter.Limit(); w <= 10 || w > 20 {
		t.Errorf("after a success: write = %v, want recovering above 10", w)
	}
	if _, err := c.Customers.Get(ctx, "cus_1"); err != nil {
		t.Fatal(err)
	}
	if r := c.readLimiter.Limit(); r != 100 {
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
