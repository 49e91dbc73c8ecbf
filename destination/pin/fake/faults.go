package fake

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"
)

// Faults describe failures injected into authenticated requests, after the
// rate limit and before the request executes. Rates are fractions in
// [0, 1]; one random draw per request picks at most one fault, so the rates
// add up and their sum may not exceed 1.
type Faults struct {
	// ErrorRate is the fraction of requests answered, without executing,
	// with a 500 internal_error, 502 bad_gateway or 503
	// service_unavailable (chosen uniformly; 503 carries Retry-After).
	ErrorRate float64
	// RateLimitRate is the fraction of requests answered, without
	// executing, with a 429 too_many_requests carrying Retry-After.
	RateLimitRate float64
	// DropAfterWriteRate is the fraction of writes (POST, PUT, DELETE)
	// that execute and then have their connection closed with no answer.
	// A write that fails validation is answered normally. Reads are
	// unaffected.
	DropAfterWriteRate float64
	// RetryAfter is the Retry-After, in seconds, of injected 429s and 503s.
	// 0 sends "0": retry at once, which keeps tests fast.
	RetryAfter int
}

// Validate reports a rate outside [0, 1], rates adding up to more than 1,
// or a negative RetryAfter, naming the field.
func (f Faults) Validate() error {
	for _, r := range []struct {
		name string
		v    float64
	}{{"ErrorRate", f.ErrorRate}, {"RateLimitRate", f.RateLimitRate}, {"DropAfterWriteRate", f.DropAfterWriteRate}} {
		if r.v < 0 || r.v > 1 || math.IsNaN(r.v) {
			return fmt.Errorf("faults: %s must be in [0, 1] (got %g)", r.name, r.v)
		}
	}
	if sum := f.ErrorRate + f.RateLimitRate + f.DropAfterWriteRate; sum > 1 {
		return fmt.Errorf("faults: ErrorRate + RateLimitRate + DropAfterWriteRate must be at most 1 (got %g)", sum)
	}
	if f.RetryAfter < 0 {
		return fmt.Errorf("faults: RetryAfter must be >= 0 (got %d)", f.RetryAfter)
	}
	return nil
}

// faultCodes are the error codes of injected statuses.
var faultCodes = map[int]string{
	http.StatusInternalServerError: CodeInternalError,
	http.StatusBadGateway:          CodeBadGateway,
	http.StatusServiceUnavailable:  CodeServiceUnavailable,
	http.StatusTooManyRequests:     CodeTooManyRequests,
}

// faultInjector draws faults from one seeded source under a mutex, so a
// given seed and request order give the same fault sequence.
type faultInjector struct {
	mu  sync.Mutex
	f   Faults
	rng *rand.Rand
}

func newFaultInjector(f Faults, seed uint64) *faultInjector {
	s := resolveSeed(seed)
	return &faultInjector{f: f, rng: rand.New(rand.NewPCG(s, s^0x9e3779b97f4a7c15))}
}

func (fi *faultInjector) set(f Faults) {
	fi.mu.Lock()
	fi.f = f
	fi.mu.Unlock()
}

func (fi *faultInjector) get() Faults {
	fi.mu.Lock()
	defer fi.mu.Unlock()
	return fi.f
}

// decision is one request's draw.
type decision struct {
	status         int // injected error status, 0 for none
	retryAfter     int
	dropAfterWrite bool
}

func (fi *faultInjector) draw(write bool) decision {
	fi.mu.Lock()
	defer fi.mu.Unlock()
	f := fi.f
	d := decision{retryAfter: f.RetryAfter}
	if f.ErrorRate <= 0 && f.RateLimitRate <= 0 && f.DropAfterWriteRate <= 0 {
		return d
	}
	x := fi.rng.Float64()
	switch {
	case x < f.ErrorRate:
		d.status = []int{http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable}[fi.rng.IntN(3)]
	case x < f.ErrorRate+f.RateLimitRate:
		d.status = http.StatusTooManyRequests
	case write && x < f.ErrorRate+f.RateLimitRate+f.DropAfterWriteRate:
		d.dropAfterWrite = true
	}
	return d
}

// drop closes the connection without an answer: hijack and close on
// HTTP/1, abort the stream where hijacking is not supported.
func drop(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}

// limiter counts requests per key in fixed one-second windows of the
// server clock.
type limiter struct {
	mu      sync.Mutex
	limit   int
	windows map[string]*window
}

type window struct {
	sec int64
	n   int
}

func newLimiter(limit int) *limiter {
	return &limiter{limit: limit, windows: map[string]*window{}}
}

func (l *limiter) set(limit int) {
	l.mu.Lock()
	l.limit = limit
	l.mu.Unlock()
}

func (l *limiter) get() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.limit
}

// allow counts one request of key. When the window is full it returns the
// whole seconds (at least 1) until the window ends, and limited true.
func (l *limiter) allow(key string, now time.Time) (retryAfter int, limited bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.limit <= 0 {
		return 0, false
	}
	sec := now.Unix()
	w := l.windows[key]
	if w == nil {
		w = &window{}
		l.windows[key] = w
	}
	if w.sec != sec {
		w.sec, w.n = sec, 0
	}
	if w.n >= l.limit {
		wait := time.Unix(sec+1, 0).Sub(now)
		return max(int((wait+time.Second-1)/time.Second), 1), true
	}
	w.n++
	return 0, false
}
