package fake

import (
	"math/rand/v2"
	"net/http"
	"sync"

	"github.com/plugipay-sync/plugipay-sync/destination/internal/fakeapi"
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
	if err := fakeapi.CheckRates(fakeapi.Rate{Name: "ErrorRate", Value: f.ErrorRate},
		fakeapi.Rate{Name: "RateLimitRate", Value: f.RateLimitRate},
		fakeapi.Rate{Name: "DropAfterWriteRate", Value: f.DropAfterWriteRate}); err != nil {
		return err
	}
	return fakeapi.CheckRetryAfter(f.RetryAfter)
}

// shared returns f as the shared fault machinery draws it.
func (f Faults) shared() fakeapi.Faults {
	return fakeapi.Faults{ErrorRate: f.ErrorRate, RateLimitRate: f.RateLimitRate,
		DropAfterWriteRate: f.DropAfterWriteRate, RetryAfter: f.RetryAfter}
}

// faultCodes are the error codes of injected statuses.
var faultCodes = map[int]string{
	http.StatusInternalServerError: CodeInternalError,
	http.StatusBadGateway:          CodeBadGateway,
	http.StatusServiceUnavailable:  CodeServiceUnavailable,
	http.StatusTooManyRequests:     CodeTooManyRequests,
}

// faultInjector draws faults from one seeded source under a mutex of its
// own, so a given seed and request order give the same fault sequence.
type faultInjector struct {
	mu  sync.Mutex
	f   Faults
	rng *rand.Rand
}

func newFaultInjector(f Faults, seed uint64) *faultInjector {
	return &faultInjector{f: f, rng: fakeapi.NewRand(seed)}
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

func (fi *faultInjector) draw(write bool) fakeapi.Decision {
	fi.mu.Lock()
	defer fi.mu.Unlock()
	return fi.f.shared().Draw(fi.rng, write)
}
