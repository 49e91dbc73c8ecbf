package fakeapi_test

import (
	"context"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plugipay-sync/plugipay-sync/destination/internal/fakeapi"
	"github.com/plugipay-sync/plugipay-sync/destination/internal/fakeapi/fakeapitest"
)

func TestFaultsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    fakeapi.Faults
		want string // "" for valid
	}{
		{"Zero", fakeapi.Faults{}, ""},
		{"SumOne", fakeapi.Faults{ErrorRate: 0.25, RateLimitRate: 0.25, DropRate: 0.25, DropAfterWriteRate: 0.25}, ""},
		{"Status503", fakeapi.Faults{ErrorRate: 1, Status: 503, RetryAfter: 3, Latency: time.Millisecond}, ""},
		{"NegativeRate", fakeapi.Faults{ErrorRate: -0.1}, "faults: ErrorRate must be in [0, 1] (got -0.1)"},
		{"RateAboveOne", fakeapi.Faults{DropRate: 1.5}, "faults: DropRate must be in [0, 1] (got 1.5)"},
		{"NaN", fakeapi.Faults{RateLimitRate: math.NaN()}, "faults: RateLimitRate must be in [0, 1] (got NaN)"},
		{"SumAboveOne", fakeapi.Faults{ErrorRate: 0.6, DropAfterWriteRate: 0.6},
			"faults: ErrorRate + RateLimitRate + DropRate + DropAfterWriteRate must be at most 1 (got 1.2)"},
		{"Status404", fakeapi.Faults{Status: 404}, "faults: Status must be 0, 500, 502 or 503 (got 404)"},
		{"NegativeLatency", fakeapi.Faults{Latency: -time.Second}, "faults: Latency must be >= 0 (got -1s)"},
		{"NegativeRetryAfter", fakeapi.Faults{RetryAfter: -1}, "faults: RetryAfter must be >= 0 (got -1)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.f.Validate()
			if (err == nil) != (tc.want == "") || err != nil && err.Error() != tc.want {
				t.Errorf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestCheckRatesNamesTheGivenRates(t *testing.T) {
	err := fakeapi.CheckRates(fakeapi.Rate{Name: "A", Value: 0.5}, fakeapi.Rate{Name: "B", Value: 0.75})
	if want := "faults: A + B must be at most 1 (got 1.25)"; err == nil || err.Error() != want {
		t.Errorf("got %v, want %q", err, want)
	}
	if err := fakeapi.CheckRates(); err != nil {
		t.Errorf("no rates: %v", err)
	}
}

func TestDraw(t *testing.T) {
	for _, tc := range []struct {
		name  string
		f     fakeapi.Faults
		write bool
		want  fakeapi.Decision
	}{
		{"None", fakeapi.Faults{RetryAfter: 2, Latency: time.Second}, true, fakeapi.Decision{Delay: time.Second, RetryAfter: 2}},
		{"Status", fakeapi.Faults{ErrorRate: 1, Status: 502}, false, fakeapi.Decision{Status: 502}},
		{"RateLimit", fakeapi.Faults{RateLimitRate: 1, RetryAfter: 1}, false, fakeapi.Decision{Status: 429, RetryAfter: 1}},
		{"Drop", fakeapi.Faults{DropRate: 1}, false, fakeapi.Decision{Drop: true}},
		{"DropAfterWrite", fakeapi.Faults{DropAfterWriteRate: 1}, true, fakeapi.Decision{DropAfterWrite: true}},
		{"DropAfterWriteSparesReads", fakeapi.Faults{DropAfterWriteRate: 1}, false, fakeapi.Decision{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.f.Draw(fakeapi.NewRand(1), tc.write); got != tc.want {
				t.Errorf("Draw = %+v, want %+v", got, tc.want)
			}
		})
	}
	t.Run("RandomStatusAndSeed", func(t *testing.T) {
		f := fakeapi.Faults{ErrorRate: 1}
		a, b := fakeapi.NewRand(9), fakeapi.NewRand(9)
		seen := map[int]bool{}
		for range 200 {
			da, db := f.Draw(a, false), f.Draw(b, false)
			if da != db {
				t.Fatalf("same seed, different draws: %+v %+v", da, db)
			}
			seen[da.Status] = true
		}
		if len(seen) != 3 || !seen[500] || !seen[502] || !seen[503] {
			t.Errorf("statuses %v, want 500, 502 and 503", seen)
		}
	})
	t.Run("NoFaultsDrawsNothing", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(1, 2))
		fakeapi.Faults{}.Draw(rng, true)
		if got, want := rng.Uint64(), rand.New(rand.NewPCG(1, 2)).Uint64(); got != want {
			t.Error("Draw advanced the source with every rate 0")
		}
	})
}

// faultServer answers 200 "executed" unless d's injection answers first;
// its fail writes the status and message as plain text.
func faultServer(t *testing.T, d fakeapi.Decision, executed *atomic.Int32) *httptest.Server {
	t.Helper()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d.Inject(w, r, func(status int, msg string) {
			w.WriteHeader(status)
			_, _ = io.WriteString(w, msg)
		}) {
			return
		}
		executed.Add(1)
		if d.DropAfterWrite {
			fakeapi.Drop(w)
			return
		}
		_, _ = io.WriteString(w, "executed")
	}))
	t.Cleanup(hs.Close)
	return hs
}

func TestInject(t *testing.T) {
	for _, tc := range []struct {
		name       string
		d          fakeapi.Decision
		status     int
		body       string
		retryAfter string
		dropped    bool
		executed   int32
	}{
		{"Nothing", fakeapi.Decision{}, 200, "executed", "", false, 1},
		{"Delay", fakeapi.Decision{Delay: 20 * time.Millisecond}, 200, "executed", "", false, 1},
		{"500", fakeapi.Decision{Status: 500, RetryAfter: 4}, 500, "injected fault: Internal Server Error", "", false, 0},
		{"503", fakeapi.Decision{Status: 503, RetryAfter: 4}, 503, "injected fault: Service Unavailable", "4", false, 0},
		{"429", fakeapi.Decision{Status: 429}, 429, "injected fault: Too Many Requests", "0", false, 0},
		{"Drop", fakeapi.Decision{Drop: true}, 0, "", "", true, 0},
		{"DropAfterWrite", fakeapi.Decision{DropAfterWrite: true}, 0, "", "", true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var executed atomic.Int32
			hs := faultServer(t, tc.d, &executed)
			start := time.Now()
			resp, err := http.Post(hs.URL, "application/json", strings.NewReader("{}"))
			if tc.dropped {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("got %d, want a dropped connection", resp.StatusCode)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tc.status || string(b) != tc.body || resp.Header.Get("Retry-After") != tc.retryAfter {
					t.Errorf("got %d %q Retry-After %q, want %d %q %q", resp.StatusCode, b, resp.Header.Get("Retry-After"),
						tc.status, tc.body, tc.retryAfter)
				}
			}
			if n := executed.Load(); n != tc.executed {
				t.Errorf("executed %d times, want %d", n, tc.executed)
			}
			if took := time.Since(start); took < tc.d.Delay {
				t.Errorf("answered after %s, want at least %s", took, tc.d.Delay)
			}
		})
	}
	t.Run("DelayEndsWithTheClient", func(t *testing.T) {
		var executed atomic.Int32
		hs := faultServer(t, fakeapi.Decision{Delay: time.Minute}, &executed)
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", hs.URL, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			t.Fatal("got an answer, want the client's timeout")
		} else if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want the deadline", err)
		}
		hs.Close() // waits for the handler: it must not sit out the minute
		if executed.Load() != 0 {
			t.Error("the request executed after its client left")
		}
	})
}

func TestLimiter(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	type step struct {
		advance    time.Duration // before the request
		key        string
		status     int
		retryAfter string
	}
	for _, tc := range []struct {
		name  string
		limit int
		steps []step
	}{
		{"Disabled", 0, []step{{0, "a", 200, ""}, {0, "a", 200, ""}, {0, "a", 200, ""}}},
		{"WindowFull", 2, []step{{0, "a", 200, ""}, {0, "a", 200, ""}, {0, "a", 429, "1"}, {0, "a", 429, "1"}}},
		{"KeysApart", 1, []step{{0, "a", 200, ""}, {0, "b", 200, ""}, {0, "a", 429, "1"}, {0, "b", 429, "1"}}},
		{"NextWindow", 1, []step{{0, "a", 200, ""}, {900 * time.Millisecond, "a", 429, "1"}, {100 * time.Millisecond, "a", 200, ""}}},
		{"RetryAfterRoundsUp", 1, []step{{200 * time.Millisecond, "a", 200, ""}, {0, "a", 429, "1"}}},
		{"FixedNotSliding", 1, []step{{999 * time.Millisecond, "a", 200, ""}, {time.Millisecond, "a", 200, ""}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := fakeapitest.NewClock(t0)
			l := fakeapi.NewLimiter(tc.limit)
			var gotLimit int
			hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if !l.Allow(w, r.Header.Get("X-Key"), clk.Now(), func(limit, retryAfter int) {
					gotLimit = limit
					w.WriteHeader(http.StatusTooManyRequests)
				}) {
					return
				}
				w.WriteHeader(http.StatusOK)
			}))
			defer hs.Close()
			for i, s := range tc.steps {
				clk.Advance(s.advance)
				req, _ := http.NewRequest("GET", hs.URL, nil)
				req.Header.Set("X-Key", s.key)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != s.status || resp.Header.Get("Retry-After") != s.retryAfter {
					t.Errorf("step %d: %d Retry-After %q, want %d %q", i, resp.StatusCode, resp.Header.Get("Retry-After"), s.status, s.retryAfter)
				}
				if s.status == 429 && gotLimit != tc.limit {
					t.Errorf("step %d: fail got limit %d, want %d", i, gotLimit, tc.limit)
				}
			}
		})
	}
	t.Run("SetLimit", func(t *testing.T) {
		l := fakeapi.NewLimiter(1)
		now := t0
		allow := func() bool {
			return l.Allow(httptest.NewRecorder(), "k", now, func(int, int) {})
		}
		if !allow() || allow() {
			t.Fatal("limit 1 not kept")
		}
		l.SetLimit(0)
		if l.Limit() != 0 || !allow() {
			t.Error("SetLimit(0) did not disable the limit")
		}
	})
}

func TestWriteJSON(t *testing.T) {
	rec := httptest.NewRecorder()
	if err := fakeapi.WriteJSON(rec, 201, "application/json; charset=utf-8", map[string]int{"a": 1}); err != nil {
		t.Fatal(err)
	}
	if rec.Code != 201 || rec.Body.String() != "{\"a\":1}\n" || rec.Header().Get("Content-Length") != "8" ||
		rec.Header().Get("Content-Type") != "application/json; charset=utf-8" {
		t.Errorf("got %d %q %v", rec.Code, rec.Body, rec.Header())
	}
	rec = httptest.NewRecorder()
	if err := fakeapi.WriteJSON(rec, 200, "application/json", func() {}); err == nil {
		t.Error("a func marshalled")
	}
	if rec.Body.Len() != 0 || len(rec.Header()) != 0 {
		t.Errorf("a failed encode wrote %v %q", rec.Header(), rec.Body)
	}
}

func TestReadBody(t *testing.T) {
	for _, tc := range []struct {
		name     string
		body     string
		tooLarge bool
	}{
		{"Empty", "", false},
		{"AtLimit", strings.Repeat("x", 8), false},
		{"OverLimit", strings.Repeat("x", 9), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/", strings.NewReader(tc.body))
			b, tooLarge, err := fakeapi.ReadBody(r, 8)
			want := tc.body[:min(len(tc.body), 8)] // what was read before the limit
			if tooLarge != tc.tooLarge || (err != nil) != tc.tooLarge || string(b) != want {
				t.Errorf("got %q %v %v", b, tooLarge, err)
			}
		})
	}
}

func TestAllowed(t *testing.T) {
	rec := httptest.NewRecorder()
	if !fakeapi.Allowed(rec, "GET", "GET", "POST") || rec.Header().Get("Allow") != "" {
		t.Error("GET refused")
	}
	if fakeapi.Allowed(rec, "PATCH", "GET", "POST") || rec.Header().Get("Allow") != "GET, POST" {
		t.Errorf("PATCH allowed, Allow %q", rec.Header().Get("Allow"))
	}
}

func TestCounter(t *testing.T) {
	var c fakeapi.Counter
	if c.Total() != 0 || c.Count("GET", "/x") != 0 {
		t.Fatal("zero Counter counts")
	}
	c.Add("GET", "/x")
	c.Add("GET", "/x")
	c.Add("POST", "/x")
	if c.Count("GET", "/x") != 2 || c.Count("POST", "/x") != 1 || c.Count("GET", "/y") != 0 || c.Total() != 3 {
		t.Errorf("counts %d %d %d, total %d", c.Count("GET", "/x"), c.Count("POST", "/x"), c.Count("GET", "/y"), c.Total())
	}
}

func TestRandString(t *testing.T) {
	a := fakeapi.RandString(fakeapi.NewRand(5), "ab", 32)
	if b := fakeapi.RandString(fakeapi.NewRand(5), "ab", 32); a != b {
		t.Errorf("same seed, %q and %q", a, b)
	}
	if len(a) != 32 || strings.Trim(a, "ab") != "" {
		t.Errorf("%q: want 32 of a and b", a)
	}
	if x, y := fakeapi.ResolveSeed(0), fakeapi.ResolveSeed(0); x == y {
		t.Errorf("ResolveSeed(0) gave %d twice", x)
	}
	if fakeapi.ResolveSeed(7) != 7 {
		t.Error("ResolveSeed changed a seed")
	}
}

func TestRoutesMatch(t *testing.T) {
	rt := fakeapi.Routes{Collection: "/v1/things", Item: "/v1/things/{id}", Other: "other"}
	for _, tc := range []struct{ path, route, id string }{
		{"/v1/things", "/v1/things", ""},
		{"/v1/things/th_1", "/v1/things/{id}", "th_1"},
		{"/v1/things/", "other", ""},
		{"/v1/things/a/b", "other", ""},
		{"/v1/thingsx", "other", ""},
		{"/", "other", ""},
	} {
		if route, id := rt.Match(tc.path); route != tc.route || id != tc.id {
			t.Errorf("Match(%q) = %q %q, want %q %q", tc.path, route, id, tc.route, tc.id)
		}
	}
}
