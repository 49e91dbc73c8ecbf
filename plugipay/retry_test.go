package plugipay

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// fakeClock returns a now func that advances one second per call, so each
// attempt signs with a distinct timestamp.
func fakeClock() func() time.Time {
	var n atomic.Int64
	base := time.Now()
	return func() time.Time { return base.Add(time.Duration(n.Add(1)) * time.Second) }
}

func TestRetry(t *testing.T) {
	hang := func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }
	tests := []struct {
		name         string
		script       []http.HandlerFunc
		timeout      time.Duration
		wantErr      error
		wantAttempts int
	}{
		{"503Then200", []http.HandlerFunc{reply(503, errBody(CodeServiceUnavailable, "down", "req_a")), okCustomer("cus_1")}, 0, nil, 2},
		{"500NonJSONThen200", []http.HandlerFunc{reply(500, "<html>oops</html>"), okCustomer("cus_1")}, 0, nil, 2},
		{"429Then200", []http.HandlerFunc{reply(429, errBody(CodeRateLimited, "slow down", "req_r")), okCustomer("cus_1")}, 0, nil, 2},
		{"TimeoutThen200", []http.HandlerFunc{hang, okCustomer("cus_1")}, 100 * time.Millisecond, nil, 2},
		{"AlwaysFailing", []http.HandlerFunc{reply(502, errBody(CodeUpstream, "bad gateway", "req_u"))}, 0, ErrServer, DefaultMaxAttempts},
		{"400", []http.HandlerFunc{reply(400, errBody(CodeValidation, "bad email", "req_v")), okCustomer("cus_1")}, 0, ErrValidation, 1},
		{"401", []http.HandlerFunc{reply(401, errBody(CodeTimestampSkew, "skew", "req_s")), okCustomer("cus_1")}, 0, ErrAuth, 1},
		{"404", []http.HandlerFunc{reply(404, errBody(CodeNotFound, "no", "req_n")), okCustomer("cus_1")}, 0, ErrNotFound, 1},
		{"409Conflict", []http.HandlerFunc{reply(409, errBody(CodeConflict, "externalId taken", "req_c")), okCustomer("cus_1")}, 0, ErrConflict, 1},
		{"409Idempotency", []http.HandlerFunc{reply(409, errBody(CodeIdempotencyReused, "reused", "req_i")), okCustomer("cus_1")}, 0, ErrIdempotency, 1},
		{"2xxErrorEnvelope", []http.HandlerFunc{reply(200, errBody(CodeValidation, "no", "req_e")), okCustomer("cus_1")}, 0, ErrValidation, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newScriptServer(t, tc.script...)
			c := newTestClient(t, srv, func(o *Options) {
				if tc.timeout > 0 {
					o.Timeout = tc.timeout
				}
			})
			c.now = fakeClock()
			params := CustomerParams{ExternalID: String("user_1"), Email: String("ada@example.com")}
			cus, err := c.Customers.Create(context.Background(), params, "idem_fixed")
			if tc.wantErr == nil {
				if err != nil || cus.ID != "cus_1" {
					t.Fatalf("Create = %v, %v", cus, err)
				}
			} else if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			reqs := srv.requests()
			if len(reqs) != tc.wantAttempts {
				t.Fatalf("attempts = %d, want %d", len(reqs), tc.wantAttempts)
			}
			seen := map[string]bool{}
			for i, r := range reqs {
				if !r.SigOK {
					t.Errorf("attempt %d: signature does not verify", i+1)
				}
				if k := r.Header.Get(HeaderIdempotencyKey); k != "idem_fixed" {
					t.Errorf("attempt %d: Idempotency-Key = %q", i+1, k)
				}
				if string(r.Body) != string(reqs[0].Body) {
					t.Errorf("attempt %d: body %s differs from %s", i+1, r.Body, reqs[0].Body)
				}
				ts := r.Header.Get(HeaderTimestamp)
				if seen[ts] {
					t.Errorf("attempt %d: timestamp %s reused", i+1, ts)
				}
				seen[ts] = true
			}
		})
	}
}

func TestRetry_NetworkError(t *testing.T) {
	srv := newScriptServer(t,
		func(w http.ResponseWriter, r *http.Request) {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
		},
		okCustomer("cus_1"),
	)
	// A fresh transport per attempt-connection: disable keep-alives so the
	// http package does not replay the request itself.
	c := newTestClient(t, srv, func(o *Options) {
		o.HTTPClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	})
	if _, err := c.Customers.Get(context.Background(), "cus_1"); err != nil {
		t.Fatalf("Get: %v", err)
	}
	if n := len(srv.requests()); n != 2 {
		t.Errorf("attempts = %d, want 2", n)
	}
}

func TestRetry_RetryAfter(t *testing.T) {
	srv := newScriptServer(t,
		reply(429, errBody(CodeRateLimited, "too many", "req_429"), "Retry-After", "1"),
		okCustomer("cus_1"),
	)
	c := newTestClient(t, srv, nil) // backoff alone would wait at most 5ms
	start := time.Now()
	if _, err := c.Customers.Create(context.Background(), CustomerParams{}, "idem_1"); err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	if elapsed < 950*time.Millisecond || elapsed > 3*time.Second {
		t.Errorf("elapsed = %v, want about 1s (Retry-After)", elapsed)
	}
	if n := len(srv.requests()); n != 2 {
		t.Errorf("attempts = %d, want 2", n)
	}
}

func TestRetry_CancelStopsBackoff(t *testing.T) {
	tests := []struct {
		name string
		h    http.HandlerFunc
	}{
		{"Backoff", reply(503, errBody(CodeServiceUnavailable, "down", "req_1"))},
		{"RetryAfter", reply(429, errBody(CodeRateLimited, "slow", "req_2"), "Retry-After", "30")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			srv := newScriptServer(t, func(w http.ResponseWriter, r *http.Request) {
				tc.h(w, r)
				// Cancel shortly after the response, while the client waits.
				time.AfterFunc(50*time.Millisecond, cancel)
			})
			c := newTestClient(t, srv, func(o *Options) {
				o.MinBackoff, o.MaxBackoff = 10*time.Second, 10*time.Second
			})
			start := time.Now()
			_, err := c.Customers.Get(ctx, "cus_1")
			if elapsed := time.Since(start); elapsed > 2*time.Second {
				t.Errorf("returned after %v; the backoff wait ignored cancellation", elapsed)
			}
			var e *Error
			if !errors.Is(err, ErrCanceled) || !errors.Is(err, context.Canceled) || !errors.As(err, &e) || e.Code != CodeCanceled {
				t.Fatalf("err = %v, want canceled", err)
			}
			if n := len(srv.requests()); n != 1 {
				t.Errorf("attempts = %d, want 1", n)
			}
		})
	}
}

func TestRetry_Logs(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	srv := newScriptServer(t,
		reply(503, errBody(CodeServiceUnavailable, "down "+testSecret, "req_log")),
		okCustomer("cus_1"),
	)
	c := newTestClient(t, srv, func(o *Options) { o.Logger = zap.New(core) })
	if _, err := c.Customers.Update(context.Background(), "cus_1", CustomerParams{}, "idem_1"); err != nil {
		t.Fatal(err)
	}
	entries := logs.All()
	if len(entries) != 1 {
		t.Fatalf("log entries = %d, want 1", len(entries))
	}
	f := entries[0].ContextMap()
	if f["reason"] != "server_error" || f["attempt"] != int64(1) || f["request_id"] != "req_log" ||
		f["op"] != "update customer" || f["component"] != "plugipay" {
		t.Errorf("log fields = %v", f)
	}
	if strings.Contains(fmt.Sprint(f), testSecret) || strings.Contains(entries[0].Message, testSecret) {
		t.Errorf("log leaks the secret: %v", f)
	}
}
