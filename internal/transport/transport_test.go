package transport

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	stdsync "sync"
	"sync/atomic"
	"testing"
	"time"
)

// script serves the n-th request (from 0) with statuses[n], the last one
// repeating; 0 drops the connection without an answer. headers[n], when
// given, are set on the n-th answer.
func script(t *testing.T, calls *atomic.Int32, statuses []int, headers ...map[string]string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := int(calls.Add(1)) - 1
		st := statuses[min(n, len(statuses)-1)]
		if n < len(headers) {
			for k, v := range headers[n] {
				w.Header().Set(k, v)
			}
		}
		if st == 0 {
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				conn.Close()
			}
			return
		}
		w.WriteHeader(st)
		fmt.Fprintf(w, `{"code":"c%d"}`, st)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// sleeps records the waits of a Client instead of sleeping them.
type sleeps struct {
	mu stdsync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.d = append(s.d, d)
	return ctx.Err()
}

func (s *sleeps) all() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.d...)
}

func newTestClient(t *testing.T, mod func(*Options)) (*Client, *sleeps) {
	t.Helper()
	sl := &sleeps{}
	o := Options{API: "test", MaxAttempts: 4, MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second,
		Timeout: 2 * time.Second, Sleep: sl.sleep,
		HTTPClient: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}},
		ParseError: func(status int, _ http.Header, body []byte) (string, string, string) {
			return "c" + strconv.Itoa(status), "message", "req_1"
		}}
	if mod != nil {
		mod(&o)
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return c, sl
}

func TestClassify(t *testing.T) {
	status := func(s int) *Error { return &Error{Kind: KindStatus, Status: s} }
	for _, tc := range []struct {
		name       string
		err        *Error
		idempotent bool
		retry      bool
		reason     string
	}{
		{"Success", nil, true, false, "success"},
		{"429", status(429), true, true, ReasonRateLimited},
		{"429NotIdempotent", status(429), false, true, ReasonRateLimited},
		{"500", status(500), true, true, ReasonServer},
		{"503", status(503), true, true, ReasonServer},
		{"503NotIdempotent", status(503), false, false, "not idempotent"},
		{"400", status(400), true, false, "status 400"},
		{"401", status(401), true, false, "status 401"},
		{"404", status(404), true, false, "status 404"},
		{"409", status(409), true, false, "status 409"},
		{"422", status(422), true, false, "status 422"},
		{"Network", &Error{Kind: KindNetwork, Err: errors.New("connection reset")}, true, true, ReasonNetwork},
		{"NetworkNotIdempotent", &Error{Kind: KindNetwork}, false, false, "not idempotent"},
		{"Timeout", &Error{Kind: KindTimeout}, true, true, ReasonTimeout},
		{"TimeoutNotIdempotent", &Error{Kind: KindTimeout}, false, false, "not idempotent"},
		{"TLS", &Error{Kind: KindNetwork, Err: fmt.Errorf("get: %w", x509.UnknownAuthorityError{})}, true, false, "tls or url error"},
		{"BadScheme", &Error{Kind: KindNetwork, Err: errors.New(`unsupported protocol scheme "ftp"`)}, true, false, "tls or url error"},
		{"Canceled", &Error{Kind: KindCanceled, Err: context.Canceled}, true, false, "canceled"},
		{"Refused2xx", &Error{Kind: KindResponse, Status: 200}, true, false, "invalid_response"},
		{"BadRequest", &Error{Kind: KindRequest}, true, false, "invalid_request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			retry, reason := Classify(tc.err, tc.idempotent)
			if retry != tc.retry || reason != tc.reason {
				t.Errorf("Classify = %v, %q; want %v, %q", retry, reason, tc.retry, tc.reason)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"1", time.Second},
		{" 7 ", 7 * time.Second},
		{"0", 0},
		{"-3", 0},
		{"soon", 0},
		{"1.5", 0},
		{"86400", 24 * time.Hour},
		{"99999999999999999999", 0}, // overflows int64: unparsable
		{"9999999999999", 100 * 365 * 24 * time.Hour},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{now.Add(2 * time.Hour).Format(time.RFC850), 2 * time.Hour},
	} {
		if got := ParseRetryAfter(tc.in, now); got != tc.want {
			t.Errorf("ParseRetryAfter(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestDo_Policy(t *testing.T) {
	for _, tc := range []struct {
		name       string
		statuses   []int
		idempotent bool
		calls      int32
		ok         bool
		kind       Kind
	}{
		{"OK", []int{200}, true, 1, true, 0},
		{"5xxRetried", []int{500, 503, 200}, true, 3, true, 0},
		{"5xxNotRetriedWhenNotIdempotent", []int{500, 200}, false, 1, false, KindStatus},
		{"429RetriedWhenNotIdempotent", []int{429, 429, 201}, false, 3, true, 0},
		{"NetworkErrorRetried", []int{0, 200}, true, 2, true, 0},
		{"NetworkErrorNotRetriedWhenNotIdempotent", []int{0, 200}, false, 1, false, KindNetwork},
		{"400NeverRetried", []int{400, 200}, true, 1, false, KindStatus},
		{"404NeverRetried", []int{404, 200}, true, 1, false, KindStatus},
		{"409NeverRetried", []int{409, 200}, true, 1, false, KindStatus},
		{"MaxAttempts", []int{502}, true, 4, false, KindStatus},
		{"NetworkMaxAttempts", []int{0}, true, 4, false, KindNetwork},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			srv := script(t, &calls, tc.statuses)
			c, sl := newTestClient(t, nil)
			resp, err := c.Do(context.Background(), &Request{Op: "get", Method: http.MethodPost, URL: srv.URL + "/x",
				Body: []byte(`{}`), Idempotent: tc.idempotent})
			if got := calls.Load(); got != tc.calls {
				t.Errorf("calls = %d, want %d", got, tc.calls)
			}
			if n := len(sl.all()); n != int(tc.calls)-1 {
				t.Errorf("waits = %d, want %d", n, tc.calls-1)
			}
			if tc.ok {
				if err != nil || resp.Status/100 != 2 {
					t.Fatalf("Do = %v, %v", resp, err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || e.Kind != tc.kind || e.Attempts != int(tc.calls) {
				t.Fatalf("err = %#v, want kind %v after %d attempts", err, tc.kind, tc.calls)
			}
			if tc.kind == KindStatus && (e.Code != "c"+strconv.Itoa(e.Status) || e.RequestID != "req_1") {
				t.Errorf("ParseError not applied: %+v", e)
			}
		})
	}
}

func TestDo_RetryAfter(t *testing.T) {
	date := func(d time.Duration) string { return time.Now().Add(d).UTC().Format(http.TimeFormat) }
	for _, tc := range []struct {
		name     string
		status   int
		header   string
		calls    int32
		wantWait time.Duration // 0: the backoff schedule's
		slack    time.Duration
		capped   bool
	}{
		{"Seconds429", 429, "3", 2, 3 * time.Second, 0, false},
		{"Seconds503", 503, "2", 2, 2 * time.Second, 0, false},
		{"HTTPDate", 429, date(30 * time.Second), 2, 30 * time.Second, 2 * time.Second, false},
		{"AtTheCap", 429, "60", 2, time.Minute, 0, false},
		{"OverTheCap", 429, "61", 1, 0, 0, true},
		{"DateOverTheCap", 503, date(time.Hour), 1, 0, 0, true},
		{"DayOverTheCap", 429, "86400", 1, 0, 0, true},
		{"Unparsable", 429, "soon", 2, 0, 0, false},
		{"NotOn4xx", 400, "5", 1, 0, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			srv := script(t, &calls, []int{tc.status, 200}, map[string]string{"Retry-After": tc.header})
			c, sl := newTestClient(t, func(o *Options) { o.MaxRetryAfter = time.Minute })
			_, err := c.Do(context.Background(), &Request{Op: "get", Method: http.MethodGet, URL: srv.URL, Idempotent: true})
			if got := calls.Load(); got != tc.calls {
				t.Fatalf("calls = %d, want %d (err %v)", got, tc.calls, err)
			}
			waits := sl.all()
			switch {
			case tc.capped:
				var e *Error
				if !errors.As(err, &e) || e.Note == "" || len(waits) != 0 {
					t.Fatalf("err = %v, waits %v; want an error at once with a note", err, waits)
				}
				if want := fmt.Sprintf("Retry-After %s is more than the 1m0s this client waits", e.RetryAfter); e.Note != want {
					t.Errorf("note = %q, want %q", e.Note, want)
				}
			case tc.calls == 1:
				if err == nil || len(waits) != 0 {
					t.Fatalf("err = %v, waits %v", err, waits)
				}
			case tc.wantWait > 0:
				if err != nil || len(waits) != 1 || waits[0] > tc.wantWait || waits[0] < tc.wantWait-tc.slack {
					t.Fatalf("err = %v, waits %v; want one of %v", err, waits, tc.wantWait)
				}
			default:
				if err != nil || len(waits) != 1 || waits[0] < 50*time.Millisecond || waits[0] > 150*time.Millisecond {
					t.Fatalf("err = %v, waits %v; want one backoff wait of ~100ms", err, waits)
				}
			}
		})
	}
}

func TestDo_Schedule(t *testing.T) {
	t.Run("NoJitter", func(t *testing.T) {
		var calls atomic.Int32
		srv := script(t, &calls, []int{503})
		c, sl := newTestClient(t, func(o *Options) { o.Jitter, o.MaxAttempts = -1, 7 })
		if _, err := c.Do(context.Background(), &Request{Op: "get", Method: http.MethodGet, URL: srv.URL, Idempotent: true}); err == nil {
			t.Fatal("want an error")
		}
		want := fmt.Sprint([]time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond,
			800 * time.Millisecond, time.Second, time.Second})
		if got := fmt.Sprint(sl.all()); got != want {
			t.Errorf("waits = %v, want %v", got, want)
		}
	})
	t.Run("Jitter", func(t *testing.T) {
		var low, high bool
		for range 200 {
			s := newSchedule(time.Second, 10*time.Second, DefaultJitter)
			d := s.NextBackOff()
			if d < 500*time.Millisecond || d > 1500*time.Millisecond {
				t.Fatalf("first wait %v outside [0.5s, 1.5s]", d)
			}
			low, high = low || d < 750*time.Millisecond, high || d > 1250*time.Millisecond
		}
		if !low || !high {
			t.Error("the waits do not spread over the jitter range")
		}
	})
}

func TestDo_CancelIsPrompt(t *testing.T) {
	for _, tc := range []struct {
		name    string
		status  int
		header  map[string]string
		limiter bool
	}{
		{"DuringBackoff", 503, nil, false},
		{"DuringRetryAfter", 429, map[string]string{"Retry-After": "30"}, false},
		{"WaitingForTheLimiter", 200, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			srv := script(t, &calls, []int{tc.status}, tc.header)
			c, _ := newTestClient(t, func(o *Options) {
				o.Sleep = nil // the real timer
				o.MinBackoff, o.MaxBackoff = 20*time.Second, 20*time.Second
			})
			req := &Request{Op: "get", Method: http.MethodGet, URL: srv.URL, Idempotent: true}
			if tc.limiter {
				req.Limiter = NewLimiter(LimiterOptions{PerSecond: 0.01, Burst: 1})
				if _, err := c.Do(context.Background(), req); err != nil { // spends the token
					t.Fatal(err)
				}
			}
			ctx, cancel := context.WithCancelCause(context.Background())
			stop := errors.New("shutting down")
			time.AfterFunc(50*time.Millisecond, func() { cancel(stop) })
			start := time.Now()
			_, err := c.Do(ctx, req)
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("returned after %v; the wait ignored cancellation", d)
			}
			var e *Error
			if !errors.As(err, &e) || e.Kind != KindCanceled || !errors.Is(err, stop) {
				t.Fatalf("err = %v, want canceled with its cause", err)
			}
			if !tc.limiter && (e.Last == nil || e.Last.Status != tc.status) {
				t.Errorf("last = %v, want the attempt's %d", e.Last, tc.status)
			}
			if want := int32(1); calls.Load() != want {
				t.Errorf("calls = %d, want %d", calls.Load(), want)
			}
		})
	}
	t.Run("DeadlineTooCloseForTheLimiter", func(t *testing.T) {
		var calls atomic.Int32
		srv := script(t, &calls, []int{200})
		c, _ := newTestClient(t, nil)
		req := &Request{Op: "get", Method: http.MethodGet, URL: srv.URL, Limiter: NewLimiter(LimiterOptions{PerSecond: 0.1, Burst: 1})}
		if _, err := c.Do(context.Background(), req); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		_, err := c.Do(ctx, req)
		var e *Error
		if !errors.As(err, &e) || e.Kind != KindTimeout || e.Attempts != 0 || calls.Load() != 1 {
			t.Fatalf("err = %v, calls %d; want a timeout without an attempt", err, calls.Load())
		}
	})
}

func TestDo_AttemptTimeout(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			<-r.Context().Done()
			return
		}
		w.WriteHeader(200)
	}))
	defer srv.Close()
	c, _ := newTestClient(t, func(o *Options) { o.Timeout = 100 * time.Millisecond })
	for _, idempotent := range []bool{true, false} {
		calls.Store(0)
		_, err := c.Do(context.Background(), &Request{Op: "get", Method: http.MethodGet, URL: srv.URL, Idempotent: idempotent})
		var e *Error
		switch {
		case idempotent && (err != nil || calls.Load() != 2):
			t.Errorf("idempotent: err = %v, calls %d; want a retried timeout", err, calls.Load())
		case !idempotent && (!errors.As(err, &e) || e.Kind != KindTimeout || calls.Load() != 1):
			t.Errorf("not idempotent: err = %v, calls %d; want one timeout", err, calls.Load())
		}
	}
}

func TestDo_CheckRefusesA2xx(t *testing.T) {
	var calls atomic.Int32
	srv := script(t, &calls, []int{200})
	c, _ := newTestClient(t, nil)
	bad := errors.New("not an envelope")
	_, err := c.Do(context.Background(), &Request{Op: "get", Method: http.MethodGet, URL: srv.URL, Idempotent: true,
		Check: func(*Response) error { return bad }})
	var e *Error
	if !errors.As(err, &e) || e.Kind != KindResponse || !errors.Is(err, bad) || calls.Load() != 1 {
		t.Fatalf("err = %v, calls %d; want KindResponse, not retried", err, calls.Load())
	}
}

func TestDo_Advice(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		advice Advice
		calls  int32
		waits  []time.Duration
	}{
		{"Stop", 429, Advice{Stop: true, Reason: "daily"}, 1, nil},
		{"RetryA4xx", 423, Advice{Retry: true, Wait: 2 * time.Second, Reason: ReasonLocked}, 3, []time.Duration{2 * time.Second, 2 * time.Second}},
		{"Wait", 429, Advice{Wait: 10 * time.Second}, 3, []time.Duration{10 * time.Second, 10 * time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			srv := script(t, &calls, []int{tc.status, tc.status, 200})
			c, sl := newTestClient(t, func(o *Options) { o.Advise = func(*Error, int) Advice { return tc.advice } })
			c.Do(context.Background(), &Request{Op: "get", Method: http.MethodGet, URL: srv.URL, Idempotent: true})
			if calls.Load() != tc.calls || fmt.Sprint(sl.all()) != fmt.Sprint(tc.waits) {
				t.Errorf("calls %d, waits %v; want %d, %v", calls.Load(), sl.all(), tc.calls, tc.waits)
			}
		})
	}
	t.Run("RetryAfterWinsOverTheAdvice", func(t *testing.T) {
		var calls atomic.Int32
		srv := script(t, &calls, []int{429, 200}, map[string]string{"Retry-After": "3"})
		c, sl := newTestClient(t, func(o *Options) {
			o.Advise = func(*Error, int) Advice { return Advice{Wait: 10 * time.Second} }
		})
		if _, err := c.Do(context.Background(), &Request{Op: "get", Method: http.MethodGet, URL: srv.URL}); err != nil {
			t.Fatal(err)
		}
		if got := sl.all(); len(got) != 1 || got[0] != 3*time.Second {
			t.Errorf("waits = %v, want [3s]", got)
		}
	})
}

// recorder is an Observer that keeps what it is told.
type recorder struct {
	mu       stdsync.Mutex
	attempts []Attempt
	calls    []Call
}

func (r *recorder) ObserveAttempt(a Attempt) {
	r.mu.Lock()
	r.attempts = append(r.attempts, a)
	r.mu.Unlock()
}
func (r *recorder) ObserveCall(c Call) { r.mu.Lock(); r.calls = append(r.calls, c); r.mu.Unlock() }

func TestDo_Observer(t *testing.T) {
	var calls atomic.Int32
	srv := script(t, &calls, []int{429, 503, 404})
	rec := &recorder{}
	c, _ := newTestClient(t, func(o *Options) { o.Observer = rec })
	lim := NewLimiter(LimiterOptions{PerSecond: 1000, Burst: 1})
	_, err := c.Do(context.Background(), &Request{Op: "get", Method: http.MethodGet, URL: srv.URL, Idempotent: true,
		Limiter: lim, Bucket: "read"})
	if err == nil {
		t.Fatal("want the 404")
	}
	if len(rec.calls) != 1 || rec.calls[0].Code != "http_4xx" || rec.calls[0].Attempts != 3 || rec.calls[0].API != "test" {
		t.Fatalf("calls = %+v", rec.calls)
	}
	type seen struct {
		status      int
		rateLimited bool
		retry       bool
		reason      string
	}
	var got []seen
	for _, a := range rec.attempts {
		if a.Bucket != "read" || a.Op != "get" || a.Method != http.MethodGet {
			t.Errorf("attempt %+v", a)
		}
		got = append(got, seen{a.Status, a.RateLimited, a.Retry, a.Reason})
	}
	want := []seen{{429, true, true, ReasonRateLimited}, {503, false, true, ReasonServer}, {404, false, false, ""}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("attempts = %v, want %v", got, want)
	}
}

func TestDo_SameBodyAndHeadersOnEveryAttempt(t *testing.T) {
	var (
		mu     stdsync.Mutex
		bodies []string
		keys   []string
		stamps []string
	)
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, 64)
		k, _ := r.Body.Read(b)
		mu.Lock()
		bodies, keys, stamps = append(bodies, string(b[:k])), append(keys, r.Header.Get("Idempotency-Key")), append(stamps, r.Header.Get("X-Attempt"))
		mu.Unlock()
		if n.Add(1) < 3 {
			w.WriteHeader(502)
			return
		}
		w.WriteHeader(201)
	}))
	defer srv.Close()
	c, _ := newTestClient(t, nil)
	var attempt atomic.Int32
	_, err := c.Do(context.Background(), &Request{Op: "create", Method: http.MethodPost, URL: srv.URL, Idempotent: true,
		Body: []byte(`{"a":1}`), Header: http.Header{"Idempotency-Key": {"idem_1"}},
		Prepare: func(r *http.Request) error { r.Header.Set("X-Attempt", strconv.Itoa(int(attempt.Add(1)))); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(bodies) != `[{"a":1} {"a":1} {"a":1}]` || fmt.Sprint(keys) != "[idem_1 idem_1 idem_1]" || fmt.Sprint(stamps) != "[1 2 3]" {
		t.Errorf("bodies %v, keys %v, prepared %v", bodies, keys, stamps)
	}
}

func TestLimiter_Adaptive(t *testing.T) {
	l := NewLimiter(LimiterOptions{PerSecond: 20, Burst: 2, Adaptive: true})
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l.now = func() time.Time { return clock }
	for _, want := range []float64{10, 5, 2.5, 1.25, 1, 1} {
		l.Observe(429, nil)
		if got := float64(l.Limit()); got != want {
			t.Fatalf("after 429: limit = %v, want %v", got, want)
		}
		// More 429s in the same window are the same congestion event.
		l.Observe(429, nil)
		if got := float64(l.Limit()); got != want {
			t.Fatalf("after a second 429 within the cooldown: limit = %v, want %v", got, want)
		}
		clock = clock.Add(decreaseCooldown)
	}
	ok := http.Header{"X-Ratelimit-Remaining": {"7"}}
	for range recoverySteps {
		l.Observe(200, ok)
	}
	if got := l.Limit(); got != 20 {
		t.Errorf("after %d successes: limit = %v, want 20", recoverySteps, got)
	}
	l.Observe(200, ok)
	if got := l.Limit(); got != 20 {
		t.Errorf("limit rose above the configured rate: %v", got)
	}
	clock = clock.Add(decreaseCooldown)
	// Remaining: 0 is the ceiling, not above it: the rate stays, and the
	// next request waits for the window's reset.
	reset := clock.Add(3 * time.Second).Truncate(time.Second)
	l.Observe(200, http.Header{"X-Ratelimit-Remaining": {"0"}, "X-Ratelimit-Reset": {strconv.FormatInt(reset.Unix(), 10)}})
	if got := l.Limit(); got != 20 {
		t.Errorf("after Remaining: 0: limit = %v, want 20", got)
	}
	if !l.pauseUntil.Equal(reset) {
		t.Errorf("after Remaining: 0: paused until %v, want the reset %v", l.pauseUntil, reset)
	}
	l.Observe(200, http.Header{"X-Ratelimit-Remaining": {"0"}, "X-Ratelimit-Reset": {strconv.FormatInt(clock.Add(time.Hour).Unix(), 10)}})
	if got := l.pauseUntil.Sub(clock); got != maxPause {
		t.Errorf("a far reset pauses %v, want the cap %v", got, maxPause)
	}
	l.throttle()
	l.Observe(0, nil) // no answer: no change
	if got := l.Limit(); got != 10 {
		t.Errorf("after a network error: limit = %v, want 10", got)
	}

	plain := NewLimiter(LimiterOptions{PerSecond: 20, Burst: 1})
	plain.Observe(429, nil)
	if got := plain.Limit(); got != 20 {
		t.Errorf("a non-adaptive limiter moved to %v", got)
	}
	for _, r := range []float64{0, -1} {
		if off := NewLimiter(LimiterOptions{PerSecond: r}); off.Wait(context.Background()) != nil || !isInf(off) {
			t.Errorf("rate %v should disable limiting, got %v", r, off.Limit())
		}
	}
}

func isInf(l *Limiter) bool { return l.Limit() > 1e300 }

// TestLimiter_IsARateLimiter checks that a wrapper can stand in for a
// Limiter (issue 17's priority lane) and still get the feedback.
func TestLimiter_IsARateLimiter(t *testing.T) {
	var _ RateLimiter = (*Limiter)(nil)
	var _ Feedback = (*Limiter)(nil)
	var calls atomic.Int32
	srv := script(t, &calls, []int{200})
	c, _ := newTestClient(t, nil)
	w := &countingLimiter{Limiter: NewLimiter(LimiterOptions{PerSecond: 100, Burst: 1})}
	if _, err := c.Do(context.Background(), &Request{Op: "get", Method: http.MethodGet, URL: srv.URL, Limiter: w}); err != nil {
		t.Fatal(err)
	}
	if w.waits.Load() != 1 {
		t.Errorf("wrapper waited %d times, want 1", w.waits.Load())
	}
}

type countingLimiter struct {
	*Limiter
	waits atomic.Int32
}

func (c *countingLimiter) Wait(ctx context.Context) error {
	c.waits.Add(1)
	return c.Limiter.Wait(ctx)
}
