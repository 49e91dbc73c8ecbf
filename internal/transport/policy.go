package transport

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Retry reasons: the reason label of plugipay_sync_api_retries_total and
// the reason field of the retry log line. The set is closed so the label
// stays bounded; an Advice may add one reason of its own (ReasonLocked).
const (
	ReasonNetwork     = "network_error"
	ReasonTimeout     = "timeout"
	ReasonRateLimited = "rate_limited"
	ReasonServer      = "server_error"
	// ReasonLocked is HubSpot's 423 (see crm/hubspot).
	ReasonLocked = "locked"
)

// Reasons are the retry reasons the policy itself gives.
var Reasons = []string{ReasonNetwork, ReasonTimeout, ReasonRateLimited, ReasonServer}

// Classify is the retry policy, a pure function of one attempt's failure
// and whether the call may execute twice without harm (a read, a write
// carrying an idempotency key, a PUT of fixed values). It retries 429
// always (the server refuses before executing), and, for an idempotent
// call, 5xx, network errors and attempt timeouts; never another status
// (a 409 is a conflict to resolve, not a blip), never a 2xx the caller
// refused, never after the caller's context ended, and never a TLS,
// certificate or bad-scheme failure, which fails again. It decides on the
// status, never on a parsed body, so an error body cannot bypass it (the
// stripe-go bug the style notes record).
func Classify(e *Error, idempotent bool) (retry bool, reason string) {
	if e == nil {
		return false, "success"
	}
	switch e.Kind {
	case KindCanceled:
		return false, "canceled"
	case KindRequest, KindResponse:
		return false, e.Kind.String()
	case KindStatus:
		switch {
		case e.Status == http.StatusTooManyRequests:
			return true, ReasonRateLimited
		case !idempotent:
			return false, "not idempotent"
		case e.Status >= 500:
			return true, ReasonServer
		}
		return false, "status " + strconv.Itoa(e.Status)
	case KindTimeout, KindNetwork:
		switch {
		case isPermanent(e.Err):
			return false, "tls or url error"
		case !idempotent:
			return false, "not idempotent"
		case e.Kind == KindTimeout:
			return true, ReasonTimeout
		}
		return true, ReasonNetwork
	}
	return false, e.Kind.String()
}

// Advice lets an API refine the policy for one failed attempt with
// signals of its own (HubSpot's policyName, its 423). It never overrides
// the caller's context, MaxAttempts or the Retry-After cap.
type Advice struct {
	// Retry retries a failure the policy would not.
	Retry bool
	// Stop gives up on a failure the policy would retry.
	Stop bool
	// Wait replaces the backoff schedule's wait before the retry; a
	// Retry-After from the server still wins.
	Wait time.Duration
	// Reason names the retry (or the stop) in logs and metrics; one of
	// the Reason constants when Retry is set.
	Reason string
}

// isPermanent reports TLS, certificate and unsupported-scheme failures,
// which no retry can fix.
func isPermanent(err error) bool {
	if err == nil {
		return false
	}
	var (
		cve *tls.CertificateVerificationError
		rhe tls.RecordHeaderError
		uae x509.UnknownAuthorityError
		hne x509.HostnameError
		cie x509.CertificateInvalidError
	)
	if errors.As(err, &cve) || errors.As(err, &rhe) || errors.As(err, &uae) ||
		errors.As(err, &hne) || errors.As(err, &cie) {
		return true
	}
	return strings.Contains(err.Error(), "unsupported protocol scheme")
}

// ParseRetryAfter reads a Retry-After value, delay seconds or an HTTP
// date, relative to now. It returns 0 when absent, unparsable or past.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		// Bounded so a huge value cannot overflow into a negative wait;
		// anything this long is far over any cap anyway.
		return time.Duration(min(n, int64(100*365*24*time.Hour/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// newSchedule is the backoff schedule of one call: exponential from min,
// doubling, capped at max, each wait drawn from [0.5, 1.5] times the
// current interval (cenkalti/backoff's randomisation), so workers that
// failed together do not retry together.
func newSchedule(minWait, maxWait time.Duration, jitter float64) *backoff.ExponentialBackOff {
	b := &backoff.ExponentialBackOff{
		InitialInterval:     minWait,
		RandomizationFactor: jitter,
		Multiplier:          2,
		MaxInterval:         maxWait,
	}
	b.Reset()
	return b
}
