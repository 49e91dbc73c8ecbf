package plugipay_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/plugipay-sync/plugipay-sync/plugipay"
	"github.com/plugipay-sync/plugipay-sync/plugipay/emulator"
)

const (
	accKey    = "key_accept"
	accSecret = "sk_accept_secret"
)

// startEmulator serves an emulator with opts (the key is added) over real HTTP.
func startEmulator(t *testing.T, opts emulator.Options) (*emulator.Server, string) {
	t.Helper()
	opts.Keys = map[string]string{accKey: accSecret}
	emu := emulator.New(opts)
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	return emu, srv.URL
}

func newClient(t *testing.T, baseURL string, tune func(*plugipay.Options)) *plugipay.Client {
	t.Helper()
	o := plugipay.Options{
		BaseURL: baseURL, KeyID: accKey, Secret: accSecret,
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		ReadRate: -1, WriteRate: -1,
	}
	if tune != nil {
		tune(&o)
	}
	c, err := plugipay.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// createAll creates n customers from workers goroutines, each with its own
// intended-write key, and checks every call returned the customer it made.
func createAll(t *testing.T, c *plugipay.Client, emu *emulator.Server, n, workers int) {
	t.Helper()
	ctx := context.Background()
	var (
		next   atomic.Int64
		wg     sync.WaitGroup
		mu     sync.Mutex
		errs   []error
		gotIDs = map[string]string{}
	)
	for range workers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				ext := fmt.Sprintf("usr_%05d", i)
				cus, err := c.Customers.Create(ctx, plugipay.CustomerParams{
					ExternalID: plugipay.String(ext),
					Email:      plugipay.String(fmt.Sprintf("u%d@example.com", i)),
				}, fmt.Sprintf("idem_accept_%05d", i))
				mu.Lock()
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", ext, err))
				} else {
					gotIDs[ext] = cus.ID
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d creates failed, first: %v", len(errs), errs[0])
	}
	if got := emu.CustomerCount(); got != n {
		t.Fatalf("emulator holds %d customers, want %d", got, n)
	}
	for ext, id := range gotIDs {
		c, ok := emu.Customer(id)
		if !ok || c.ExternalID != ext {
			t.Fatalf("create of %s returned %s, which is %+v", ext, id, c)
		}
	}
	seen := map[string]bool{}
	for _, c := range emu.Customers() {
		if seen[c.ExternalID] {
			t.Fatalf("duplicate customer for %s", c.ExternalID)
		}
		seen[c.ExternalID] = true
	}
}

// TestEmulator_RetryableFaults drives every retryable fault the emulator
// can produce through the client's full request path: each create ends
// with exactly one customer and its own id.
func TestEmulator_RetryableFaults(t *testing.T) {
	tests := []struct {
		name   string
		opts   emulator.Options
		tune   func(*plugipay.Options)
		reason string
	}{
		{"5xx", emulator.Options{Faults: emulator.Faults{ErrorRate: 0.4}, Seed: 1},
			nil, "server_error"},
		{"dropped connections", emulator.Options{Faults: emulator.Faults{DropRate: 0.4}, Seed: 2},
			nil, "network_error"},
		{"executed then timed out", emulator.Options{Faults: emulator.Faults{TimeoutRate: 0.4, HangTimeout: 2 * time.Second}, Seed: 3},
			func(o *plugipay.Options) { o.Timeout = 150 * time.Millisecond }, "timeout"},
		{"429 with Retry-After", emulator.Options{WriteRate: 10},
			nil, "rate_limited"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			emu, url := startEmulator(t, tt.opts)
			reg := prometheus.NewRegistry()
			c := newClient(t, url, func(o *plugipay.Options) {
				o.MaxAttempts = 12
				o.Registerer = reg
				if tt.tune != nil {
					tt.tune(o)
				}
			})
			createAll(t, c, emu, 40, 8)
			mf, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			var n float64
			for _, f := range mf {
				if f.GetName() == "plugipay_sync_api_retries_total" {
					for _, m := range f.GetMetric() {
						for _, l := range m.GetLabel() {
							if l.GetName() == "reason" && l.GetValue() == tt.reason {
								n += m.GetCounter().GetValue()
							}
						}
					}
				}
			}
			if n == 0 {
				t.Fatalf("no retry with reason %q was made; the fault was not exercised", tt.reason)
			}
			t.Logf("%v retries for %s", n, tt.reason)
		})
	}
}

func TestEmulator_NonRetryableReturnAtOnce(t *testing.T) {
	emu, url := startEmulator(t, emulator.Options{})
	c := newClient(t, url, func(o *plugipay.Options) { o.MaxAttempts = 5 })
	ctx := context.Background()
	if _, err := c.Customers.Create(ctx, plugipay.CustomerParams{ExternalID: plugipay.String("u1")}, "idem_1"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		params plugipay.CustomerParams
		want   error
	}{
		{"validation", plugipay.CustomerParams{Email: plugipay.String("not-an-email")}, plugipay.ErrValidation},
		{"conflict", plugipay.CustomerParams{ExternalID: plugipay.String("u1")}, plugipay.ErrConflict},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := emu.RequestCount(http.MethodPost, emulator.RouteCustomers)
			_, err := c.Customers.Create(ctx, tt.params, fmt.Sprintf("idem_nr_%d", i))
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if got := emu.RequestCount(http.MethodPost, emulator.RouteCustomers) - before; got != 1 {
				t.Fatalf("%d attempts, want 1", got)
			}
		})
	}
}

func TestEmulator_CancelStopsBackoff(t *testing.T) {
	// Every write answers 503 with Retry-After: 30, so the client would
	// wait 30 s before its second attempt.
	_, url := startEmulator(t, emulator.Options{Faults: emulator.Faults{ErrorRate: 1, RetryAfter: 30}, Seed: 7})
	// Plenty of attempts: whatever mix of 500/502/503 comes first, the
	// client is still retrying, and soon in a 30 s wait, when ctx ends.
	c := newClient(t, url, func(o *plugipay.Options) { o.MaxAttempts = 100 })
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	_, err := c.Customers.Create(ctx, plugipay.CustomerParams{}, "idem_cancel")
	if !errors.Is(err, plugipay.ErrCanceled) || !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want ErrCanceled wrapping context.Canceled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("cancel took %v to stop the backoff wait", d)
	}
}

// TestEmulator_ExecutedThenTimedOut is the acceptance case of the SDK
// issue: with 30% of writes executed but never answered, 1,000 creates
// give exactly 1,000 customers, each call returning its own id.
func TestEmulator_ExecutedThenTimedOut(t *testing.T) {
	emu, url := startEmulator(t, emulator.Options{
		Faults: emulator.Faults{TimeoutRate: 0.3, HangTimeout: 5 * time.Second},
		Seed:   30,
	})
	c := newClient(t, url, func(o *plugipay.Options) {
		o.Timeout = 200 * time.Millisecond
		o.MaxAttempts = 15
	})
	createAll(t, c, emu, 1000, 16)
	t.Logf("1000 creates: %d executed, %d idempotent replays", emu.WritesExecuted(), emu.Replays())
	if emu.WritesExecuted() != 1000 || emu.Replays() == 0 {
		t.Fatalf("executed %d writes with %d replays; want 1000 and some replays", emu.WritesExecuted(), emu.Replays())
	}
}

// longTests gates the tests that run at the API's real rate for minutes.
func longTests(t *testing.T) {
	t.Helper()
	if os.Getenv("PLUGIPAY_LONG_TESTS") != "1" {
		t.Skip("runs for minutes at the real rate limit; run with `make test-long` (PLUGIPAY_LONG_TESTS=1)")
	}
}

// TestLong_BurstAtCeiling: 2,000 creates from 16 goroutines against the
// emulator at its default limits get no 429 and reach at least 95% of the
// 20 writes/s ceiling.
func TestLong_BurstAtCeiling(t *testing.T) {
	longTests(t)
	emu, url := startEmulator(t, emulator.Options{ReadRate: emulator.DefaultReadRate, WriteRate: emulator.DefaultWriteRate})
	c := newClient(t, url, func(o *plugipay.Options) {
		o.ReadRate, o.WriteRate = 0, 0 // the defaults: Plugipay's limits
	})
	start := time.Now()
	createAll(t, c, emu, 2000, 16)
	elapsed := time.Since(start)
	rate := 2000 / elapsed.Seconds()
	limited := countStatus(t, emu, http.StatusTooManyRequests)
	t.Logf("2000 creates in %v: %.2f creates/s (%.1f%% of 20/s), %d answers 429", elapsed.Round(time.Millisecond), rate, rate/20*100, limited)
	if limited != 0 {
		t.Errorf("%d requests answered 429", limited)
	}
	if rate < 19 {
		t.Errorf("%.2f creates/s, want at least 19 (95%% of the ceiling)", rate)
	}
}

// TestLong_AdaptsToLowerServerLimit: with the server allowing fewer writes
// than the client is set for, the client slows down and completes all.
func TestLong_AdaptsToLowerServerLimit(t *testing.T) {
	longTests(t)
	emu, url := startEmulator(t, emulator.Options{WriteRate: 8})
	c := newClient(t, url, func(o *plugipay.Options) {
		o.WriteRate = 20
		o.MaxAttempts = 10
		o.MaxBackoff = 2 * time.Second
	})
	start := time.Now()
	createAll(t, c, emu, 400, 16)
	elapsed := time.Since(start)
	t.Logf("400 creates against an 8/s server: %v, %.2f creates/s, %d answers 429",
		elapsed.Round(time.Millisecond), 400/elapsed.Seconds(), countStatus(t, emu, http.StatusTooManyRequests))
}

// countStatus reads the emulator's own request counter for a status.
func countStatus(t *testing.T, emu *emulator.Server, status int) int {
	t.Helper()
	mfs, err := emu.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range mfs {
		if f.GetName() != "plugipay_mock_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "status" && l.GetValue() == fmt.Sprint(status) {
					n += int(m.GetCounter().GetValue())
				}
			}
		}
	}
	return n
}
