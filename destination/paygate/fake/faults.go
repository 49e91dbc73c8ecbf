package fake

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"
)

// Faults describe failures injected into authenticated requests (after
// authentication and the rate limit, before the handler runs). Rates are
// fractions in [0, 1]; one random draw per request picks at most one
// fault, so the rates add up and their sum must be at most 1.
type Faults struct {
	// Latency is added to every authenticated request.
	Latency time.Duration
	// ErrorRate is the fraction of requests answered, without executing,
	// with a 500 internal_error, 502 bad_gateway or 503
	// service_unavailable (chosen at random; 503 carries Retry-After).
	ErrorRate float64
	// Status, when set, is the status of every injected error instead of
	// a random one: 500, 502 or 503.
	Status int
	// RateLimitRate is the fraction of requests answered, without
	// executing, with a 429 rate_limited carrying Retry-After.
	RateLimitRate float64
	// DropRate is the fraction of requests whose connection is closed
	// with no answer and without executing.
	DropRate float64
	// DropAfterWriteRate is the fraction of writes (POST, PATCH, DELETE)
	// that execute and whose connection is then closed with no answer:
	// the client cannot tell whether the write happened. A write the
	// handler rejects (4xx) is answered normally. Reads are unaffected.
	DropAfterWriteRate float64
	// RetryAfter is the Retry-After, in seconds, of injected 429s and
	// 503s; 0 sends "Retry-After: 0" (retry at once), which keeps tests
	// fast.
	RetryAfter int
}

// Validate reports a rate outside [0, 1], rates adding up to more than 1,
// a negative duration or an unsupported Status, naming the field.
func (f Faults) Validate() error {
	for _, r := range []struct {
		name string
		v    float64
	}{{"ErrorRate", f.ErrorRate}, {"RateLimitRate", f.RateLimitRate}, {"DropRate", f.DropRate}, {"DropAfterWriteRate", f.DropAfterWriteRate}} {
		if r.v < 0 || r.v > 1 || math.IsNaN(r.v) {
			return fmt.Errorf("faults: %s must be in [0, 1] (got %g)", r.name, r.v)
		}
	}
	if sum := f.ErrorRate + f.RateLimitRate + f.DropRate + f.DropAfterWriteRate; sum > 1 {
		return fmt.Errorf("faults: ErrorRate + RateLimitRate + DropRate + DropAfterWriteRate must be at most 1 (got %g)", sum)
	}
	switch f.Status {
	case 0, http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable:
	default:
		return fmt.Errorf("faults: Status must be 0, 500, 502 or 503 (got %d)", f.Status)
	}
	if f.Latency < 0 {
		return fmt.Errorf("faults: Latency must be >= 0 (got %v)", f.Latency)
	}
	if f.RetryAfter < 0 {
		return fmt.Errorf("faults: RetryAfter must be >= 0 (got %d)", f.RetryAfter)
	}
	return nil
}

// decision is one request's fault draw.
type decision struct {
	delay          time.Duration
	status         int // injected error status, 0 for none
	retryAfter     int
	drop           bool
	dropAfterWrite bool
}

func (s *Server) draw(write bool) decision {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.faults
	d := decision{delay: f.Latency, retryAfter: f.RetryAfter}
	if f.ErrorRate <= 0 && f.RateLimitRate <= 0 && f.DropRate <= 0 && f.DropAfterWriteRate <= 0 {
		return d
	}
	x := s.rng.Float64()
	switch {
	case x < f.ErrorRate:
		d.status = f.Status
		if d.status == 0 {
			d.status = []int{http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable}[s.rng.IntN(3)]
		}
	case x < f.ErrorRate+f.RateLimitRate:
		d.status = http.StatusTooManyRequests
	case x < f.ErrorRate+f.RateLimitRate+f.DropRate:
		d.drop = true
	case write && x < f.ErrorRate+f.RateLimitRate+f.DropRate+f.DropAfterWriteRate:
		d.dropAfterWrite = true
	}
	return d
}

// window counts one key's requests in one second of the server clock.
type window struct {
	sec int64
	n   int
}

// allow counts one request against key's per-second limit and answers 429
// with Retry-After (whole seconds to the end of the window, at least 1)
// when the window is full.
func (s *Server) allow(w http.ResponseWriter, key string) bool {
	now := s.now()
	s.mu.Lock()
	limit := s.rps
	if limit <= 0 {
		s.mu.Unlock()
		return true
	}
	sec := now.Unix()
	win := s.windows[key]
	if win == nil {
		win = &window{}
		s.windows[key] = win
	}
	if win.sec != sec {
		win.sec, win.n = sec, 0
	}
	full := win.n >= limit
	if !full {
		win.n++
	}
	s.mu.Unlock()
	if !full {
		return true
	}
	wait := time.Unix(sec+1, 0).Sub(now)
	secs := max(int((wait+time.Second-1)/time.Second), 1)
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	s.fail(w, http.StatusTooManyRequests, CodeRateLimited,
		"too many requests: the limit is "+strconv.Itoa(limit)+" per second; retry after "+strconv.Itoa(secs)+" s")
	return false
}
