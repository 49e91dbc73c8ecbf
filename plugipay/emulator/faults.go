package emulator

import (
	crand "crypto/rand"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/plugipay-sync/plugipay-sync/plugipay"
)

// DefaultHangTimeout bounds how long an "executed then timed out" write
// holds its connection when Faults.HangTimeout is 0.
const DefaultHangTimeout = time.Minute

// Faults describe failures injected into authenticated API requests (after
// authentication and rate limiting, before the handler runs). Rates are
// fractions in [0, 1]; one random draw per request picks at most one of
// the error, drop, rate-limit and timeout faults, so their rates add up.
type Faults struct {
	// Latency is added to every API request.
	Latency time.Duration
	// LatencyJitter adds a further uniformly random delay in [0, LatencyJitter).
	LatencyJitter time.Duration
	// ErrorRate is the fraction of requests answered, without executing,
	// with a 500 internal_error, 502 upstream_error or 503
	// service_unavailable (chosen uniformly; 503 carries Retry-After).
	ErrorRate float64
	// DropRate is the fraction of requests whose connection is closed
	// without an answer and without executing.
	DropRate float64
	// TimeoutRate is the fraction of writes (POST, PATCH) that execute, are
	// stored for idempotent replay, and are never answered: the handler
	// holds the connection until the client gives up or HangTimeout
	// passes, then drops it. Reads are unaffected.
	TimeoutRate float64
	// HangTimeout bounds the hang of a timed-out write; 0 means
	// DefaultHangTimeout.
	HangTimeout time.Duration
	// RateLimitRate is the fraction of requests answered, without
	// executing, with a 429 rate_limited carrying Retry-After, as the real
	// API answers a burst over its limit. Unlike ReadRate and WriteRate it
	// is random rather than a window, so a chaos test can set the share of
	// 429s directly.
	RateLimitRate float64
	// RetryAfter is the Retry-After of injected 503s and 429s, in seconds;
	// 0 means 1.
	RetryAfter int
	// WritesOnly limits the error, drop and rate-limit faults to writes
	// (POST, PATCH): an API that still answers reads but fails every
	// write, as a degraded backend does. Latency applies to every request.
	WritesOnly bool
}

// Validate reports a rate outside [0, 1], rates adding up to more than 1,
// or a negative duration, naming the field.
func (f Faults) Validate() error {
	for _, r := range []struct {
		name string
		v    float64
	}{{"ErrorRate", f.ErrorRate}, {"DropRate", f.DropRate}, {"RateLimitRate", f.RateLimitRate}, {"TimeoutRate", f.TimeoutRate}} {
		if r.v < 0 || r.v > 1 || math.IsNaN(r.v) {
			return fmt.Errorf("faults: %s must be in [0, 1] (got %g)", r.name, r.v)
		}
	}
	if sum := f.ErrorRate + f.DropRate + f.RateLimitRate + f.TimeoutRate; sum > 1 {
		return fmt.Errorf("faults: ErrorRate + DropRate + RateLimitRate + TimeoutRate must be at most 1 (got %g)", sum)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"Latency", f.Latency}, {"LatencyJitter", f.LatencyJitter}, {"HangTimeout", f.HangTimeout}} {
		if d.v < 0 {
			return fmt.Errorf("faults: %s must be >= 0 (got %v)", d.name, d.v)
		}
	}
	if f.RetryAfter < 0 {
		return fmt.Errorf("faults: RetryAfter must be >= 0 (got %d)", f.RetryAfter)
	}
	return nil
}

type faultKind int

const (
	faultNone faultKind = iota
	faultTimeout
)

// fault is what the injector decided for one request that proceeds.
type fault struct{ kind faultKind }

// faultInjector draws faults from one seeded source under a mutex, so a
// given seed and request order give the same fault sequence.
type faultInjector struct {
	mu  sync.Mutex
	f   Faults
	rng *rand.Rand
}

func newFaultInjector(f Faults, seed uint64) *faultInjector {
	if seed == 0 {
		var b [8]byte
		_, _ = crand.Read(b[:])
		seed = binary.LittleEndian.Uint64(b[:])
	}
	return &faultInjector{f: f, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
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
	delay  time.Duration
	status int // injected 5xx, 0 for none
	drop   bool
	f      fault
	faults Faults
}

func (fi *faultInjector) draw(write bool) decision {
	fi.mu.Lock()
	defer fi.mu.Unlock()
	f := fi.f
	d := decision{delay: f.Latency, faults: f}
	if f.LatencyJitter > 0 {
		d.delay += time.Duration(fi.rng.Int64N(int64(f.LatencyJitter)))
	}
	if f.ErrorRate <= 0 && f.DropRate <= 0 && f.RateLimitRate <= 0 && f.TimeoutRate <= 0 || f.WritesOnly && !write {
		return d
	}
	x := fi.rng.Float64()
	switch {
	case x < f.ErrorRate:
		d.status = []int{http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable}[fi.rng.IntN(3)]
	case x < f.ErrorRate+f.DropRate:
		d.drop = true
	case x < f.ErrorRate+f.DropRate+f.RateLimitRate:
		d.status = http.StatusTooManyRequests
	case write && x < f.ErrorRate+f.DropRate+f.RateLimitRate+f.TimeoutRate:
		d.f.kind = faultTimeout
	}
	return d
}

// injectFaults applies latency, injected errors and drops. proceed is false when
// the request has been answered or dropped.
func (s *Server) injectFaults(w *statusWriter, r *http.Request) (f fault, proceed bool) {
	d := s.faults.draw(r.Method != http.MethodGet)
	if d.delay > 0 {
		t := time.NewTimer(d.delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			w.dropped = true
			return fault{}, false
		}
	}
	switch {
	case d.status != 0:
		code := map[int]string{
			http.StatusInternalServerError: plugipay.CodeInternal,
			http.StatusBadGateway:          plugipay.CodeUpstream,
			http.StatusServiceUnavailable:  plugipay.CodeServiceUnavailable,
			http.StatusTooManyRequests:     plugipay.CodeRateLimited,
		}[d.status]
		if d.status == http.StatusServiceUnavailable || d.status == http.StatusTooManyRequests {
			ra := d.faults.RetryAfter
			if ra <= 0 {
				ra = 1
			}
			w.Header().Set(HeaderRetryAfter, strconv.Itoa(ra))
		}
		s.fail(w, d.status, code, "injected fault: "+http.StatusText(d.status))
		return fault{}, false
	case d.drop:
		drop(w)
		return fault{}, false
	}
	return d.f, true
}

// hang holds a timed-out write's connection until the client gives up or
// the hang timeout passes, then drops it.
func (s *Server) hang(w *statusWriter, r *http.Request) {
	limit := s.faults.get().HangTimeout
	if limit <= 0 {
		limit = DefaultHangTimeout
	}
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
	}
	drop(w)
}

// drop closes the connection without an answer: hijack and close on
// HTTP/1, abort the stream where hijacking is not supported.
func drop(w *statusWriter) {
	w.dropped = true
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}
