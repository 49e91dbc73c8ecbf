package fakeapi

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Faults describe failures injected into a fake's authenticated requests.
// Rates are fractions in [0, 1]; one random draw per request picks at most
// one fault, so the rates add up and their sum must be at most 1. A fake
// that offers fewer kinds keeps a Faults of its own and leaves the others
// zero here.
type Faults struct {
	// Latency is added to every request.
	Latency time.Duration
	// ErrorRate is the fraction of requests answered, without executing,
	// with a 500, 502 or 503 (chosen at random unless Status is set; 503
	// carries Retry-After).
	ErrorRate float64
	// Status, when set, is the status of every injected error instead of
	// a random one: 500, 502 or 503.
	Status int
	// RateLimitRate is the fraction of requests answered, without
	// executing, with a 429 carrying Retry-After.
	RateLimitRate float64
	// DropRate is the fraction of requests whose connection is closed
	// with no answer and without executing.
	DropRate float64
	// DropAfterWriteRate is the fraction of writes that execute and whose
	// connection is then closed with no answer: the client cannot tell
	// whether the write happened. Reads are unaffected.
	DropAfterWriteRate float64
	// RetryAfter is the Retry-After, in seconds, of injected 429s and
	// 503s; 0 sends "Retry-After: 0" (retry at once).
	RetryAfter int
}

// Rate is one named fault rate, for CheckRates.
type Rate struct {
	Name  string
	Value float64
}

// CheckRates reports a rate outside [0, 1] (NaN included) or rates adding
// up to more than 1, naming them as the caller's Faults spell them.
func CheckRates(rates ...Rate) error {
	sum := 0.0
	names := make([]string, len(rates))
	for i, r := range rates {
		if r.Value < 0 || r.Value > 1 || math.IsNaN(r.Value) {
			return fmt.Errorf("faults: %s must be in [0, 1] (got %g)", r.Name, r.Value)
		}
		sum += r.Value
		names[i] = r.Name
	}
	if sum > 1 {
		return fmt.Errorf("faults: %s must be at most 1 (got %g)", strings.Join(names, " + "), sum)
	}
	return nil
}

// CheckRetryAfter reports a negative RetryAfter.
func CheckRetryAfter(secs int) error {
	if secs < 0 {
		return fmt.Errorf("faults: RetryAfter must be >= 0 (got %d)", secs)
	}
	return nil
}

// Validate reports a rate outside [0, 1], rates adding up to more than 1,
// a negative Latency or RetryAfter, or a Status other than 0, 500, 502 and
// 503, naming the field.
func (f Faults) Validate() error {
	if err := CheckRates(Rate{"ErrorRate", f.ErrorRate}, Rate{"RateLimitRate", f.RateLimitRate},
		Rate{"DropRate", f.DropRate}, Rate{"DropAfterWriteRate", f.DropAfterWriteRate}); err != nil {
		return err
	}
	switch f.Status {
	case 0, http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable:
	default:
		return fmt.Errorf("faults: Status must be 0, 500, 502 or 503 (got %d)", f.Status)
	}
	if f.Latency < 0 {
		return fmt.Errorf("faults: Latency must be >= 0 (got %v)", f.Latency)
	}
	return CheckRetryAfter(f.RetryAfter)
}

// Decision is one request's fault draw. Inject carries out all but
// DropAfterWrite, which the fake carries out (with Drop) after a write
// executed.
type Decision struct {
	// Delay is waited out before anything else.
	Delay time.Duration
	// Status is the injected error status (500, 502, 503 or 429); 0 for
	// none.
	Status int
	// RetryAfter is the Retry-After, in seconds, of an injected 429 or 503.
	RetryAfter int
	// Drop closes the connection without an answer and without executing.
	Drop bool
	// DropAfterWrite closes the connection without an answer after the
	// write executed.
	DropAfterWrite bool
}

// Draw draws one request's faults from rng; write says the request is a
// write (only writes are dropped after executing). It draws nothing from
// rng when every rate is 0, so a seeded sequence only advances when faults
// are on. rng is not safe for concurrent use: the caller guards it.
func (f Faults) Draw(rng *rand.Rand, write bool) Decision {
	d := Decision{Delay: f.Latency, RetryAfter: f.RetryAfter}
	if f.ErrorRate <= 0 && f.RateLimitRate <= 0 && f.DropRate <= 0 && f.DropAfterWriteRate <= 0 {
		return d
	}
	x := rng.Float64()
	switch {
	case x < f.ErrorRate:
		d.Status = f.Status
		if d.Status == 0 {
			d.Status = []int{http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable}[rng.IntN(3)]
		}
	case x < f.ErrorRate+f.RateLimitRate:
		d.Status = http.StatusTooManyRequests
	case x < f.ErrorRate+f.RateLimitRate+f.DropRate:
		d.Drop = true
	case write && x < f.ErrorRate+f.RateLimitRate+f.DropRate+f.DropAfterWriteRate:
		d.DropAfterWrite = true
	}
	return d
}

// Inject carries out the part of d that comes before the request executes:
// it waits out Delay (dropping the connection if the client gives up
// first), answers an injected Status through fail (having set Retry-After
// on a 429 or 503) or drops the connection. fail writes the fake's own
// error answer; message is "injected fault: " and the status text. Inject
// reports whether the request is done; if not, the caller executes it.
func (d Decision) Inject(w http.ResponseWriter, r *http.Request, fail func(status int, message string)) (done bool) {
	if d.Delay > 0 {
		t := time.NewTimer(d.Delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			Drop(w)
			return true
		}
	}
	switch {
	case d.Status != 0:
		if d.Status == http.StatusTooManyRequests || d.Status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", strconv.Itoa(d.RetryAfter))
		}
		fail(d.Status, "injected fault: "+http.StatusText(d.Status))
		return true
	case d.Drop:
		Drop(w)
		return true
	}
	return false
}

// Drop closes the connection without an answer: hijack and close on
// HTTP/1, abort the stream where hijacking is not supported.
func Drop(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	_ = conn.Close()
}
