package rest

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// script answers the n-th request (from 0) with statuses[n], the last one
// repeating; 0 closes the connection without an answer.
func script(t *testing.T, calls *atomic.Int32, statuses ...int) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer sk_test_x" {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"code":"bad_key","message":"no such key"}`))
			return
		}
		n := int(calls.Add(1)) - 1
		st := statuses[min(n, len(statuses)-1)]
		switch {
		case st == 0:
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		case st < 300:
			w.WriteHeader(st)
			_, _ = w.Write([]byte(`{"id":"cus_1"}`))
		default:
			if st == http.StatusTooManyRequests {
				w.Header().Set("Retry-After", "0")
			}
			w.WriteHeader(st)
			_, _ = w.Write([]byte(`{"code":"c` + http.StatusText(st)[:3] + `","message":"m"}`))
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func newClient(t *testing.T, base string, reg Registerer) *Client {
	t.Helper()
	c, err := New(Options{
		Destination: "test", BaseURL: base + "/v1", MaxAttempts: 3, Timeout: 2 * time.Second, Registerer: reg,
		Authorize: func(r *http.Request) { r.Header.Set("Authorization", "Bearer sk_test_x") },
		ParseError: func(_ int, body []byte) (string, string) {
			s := string(body)
			if i := strings.Index(s, `"code":"`); i >= 0 {
				s = s[i+8:]
				return s[:strings.IndexByte(s, '"')], "m"
			}
			return "", ""
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestDo_RetryPolicy(t *testing.T) {
	for _, tc := range []struct {
		name      string
		statuses  []int
		retryable bool
		calls     int32
		kind      error // nil with ok false: transient
		ok        bool
	}{
		{"ok", []int{200}, true, 1, nil, true},
		{"5xx retried when retryable", []int{500, 503, 200}, true, 3, nil, true},
		{"5xx not retried for a create", []int{500, 200}, false, 1, nil, false},
		{"429 retried for a create", []int{429, 429, 201}, false, 3, nil, true},
		{"dropped connection retried when retryable", []int{0, 200}, true, 2, nil, true},
		{"dropped connection not retried for a create", []int{0, 200}, false, 1, nil, false},
		{"400 never retried", []int{400, 200}, true, 1, ErrInvalid, false},
		{"422 never retried", []int{422, 200}, true, 1, ErrInvalid, false},
		{"404", []int{404}, true, 1, ErrNotFound, false},
		{"409", []int{409}, true, 1, ErrConflict, false},
		{"attempts run out", []int{502}, true, 3, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			srv := script(t, &calls, tc.statuses...)
			var out struct{ ID string }
			err := newClient(t, srv.URL, nil).Do(context.Background(), "create", http.MethodPost, "/customers", map[string]string{"a": "b"}, &out, tc.retryable)
			if got := calls.Load(); got != tc.calls {
				t.Errorf("calls = %d, want %d", got, tc.calls)
			}
			if tc.ok {
				if err != nil || out.ID != "cus_1" {
					t.Fatalf("err = %v, out = %+v", err, out)
				}
				return
			}
			var ae *Error
			if !errors.As(err, &ae) {
				t.Fatalf("err = %v (%T), want *Error", err, err)
			}
			if tc.kind != nil && !errors.Is(err, tc.kind) {
				t.Errorf("err = %v, want kind %v", err, tc.kind)
			}
			if tc.kind == nil && ae.Kind != nil {
				t.Errorf("kind = %v, want transient", ae.Kind)
			}
		})
	}
}

func TestDo_BadKeyIsFatalAndCounted(t *testing.T) {
	var calls atomic.Int32
	srv := script(t, &calls, 200)
	reg := prometheus.NewPedanticRegistry()
	c := newClient(t, srv.URL, reg)
	c.o.Authorize = func(r *http.Request) { r.Header.Set("Authorization", "Bearer sk_test_wrong") }
	err := c.Do(context.Background(), "get", http.MethodGet, "/customers/x", nil, nil, true)
	if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "bad_key") {
		t.Fatalf("err = %v, want fatal bad_key", err)
	}
	if got := apiRequests(t, reg, "test", "get", "unauthorized"); got != 1 {
		t.Errorf("plugipay_sync_api_requests_total{destination=test,op=get,code=unauthorized} = %v, want 1", got)
	}
	if got := apiRequests(t, reg, "test", "get", "ok"); got != 0 {
		t.Errorf("ok = %v, want 0", got)
	}
	// A second client on the same registry shares the collectors.
	if _, err := New(c.o); err != nil {
		t.Errorf("second client on one registry: %v", err)
	}
}

func TestDo_CancelDuringRetryAfter(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "30")
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer srv.Close()
	c := newClient(t, srv.URL, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := c.Do(ctx, "get", http.MethodGet, "/customers", nil, nil, true)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("returned after %s; the wait must end with ctx", d)
	}
}

func TestNew_Validates(t *testing.T) {
	ok := Options{Destination: "d", BaseURL: "https://h/v1", Authorize: func(*http.Request) {},
		ParseError: func(int, []byte) (string, string) { return "", "" }}
	for _, tc := range []struct {
		name string
		mod  func(*Options)
	}{
		{"no destination", func(o *Options) { o.Destination = "" }},
		{"bad url", func(o *Options) { o.BaseURL = "ftp://h" }},
		{"no host", func(o *Options) { o.BaseURL = "https://" }},
		{"no auth", func(o *Options) { o.Authorize = nil }},
		{"negative rate", func(o *Options) { o.RequestsPerSecond = -1 }},
	} {
		o := ok
		tc.mod(&o)
		if _, err := New(o); err == nil {
			t.Errorf("%s: New accepted %+v", tc.name, o)
		}
	}
	if _, err := New(ok); err != nil {
		t.Errorf("valid options refused: %v", err)
	}
}

// apiRequests is the value of plugipay_sync_api_requests_total for dest,
// op and code in reg; the series must exist.
func apiRequests(t *testing.T, reg prometheus.Gatherer, dest, op, code string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "plugipay_sync_api_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			if l["destination"] == dest && l["op"] == op && l["code"] == code {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no series destination=%s op=%s code=%s", dest, op, code)
	return 0
}
