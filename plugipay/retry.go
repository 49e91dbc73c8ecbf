package plugipay

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Retry reasons, used in logs and as the reason label of
// plugipay_sync_api_retries_total. The set is closed so the label stays
// bounded.
const (
	reasonNetwork     = "network_error"
	reasonTimeout     = "timeout"
	reasonRateLimited = "rate_limited"
	reasonServer      = "server_error"
)

// retryLoop runs attempts until one succeeds, shouldRetry says stop, or
// MaxAttempts is reached. Each attempt first waits for a rate-limiter token,
// is re-signed with a fresh timestamp, and resends the same body bytes and
// the same Idempotency-Key (both fixed in r before the loop).
func (c *Client) retryLoop(ctx context.Context, r *request) (*Envelope, error) {
	lim := c.readLimiter
	if r.method != http.MethodGet {
		lim = c.writeLimiter
	}
	for attempt := 1; ; attempt++ {
		waited, err := lim.wait(ctx)
		c.metrics.addWait(lim.name, waited)
		if err != nil {
			// Not retried: either ctx ended, or its deadline is too close
			// for the next token, which another attempt cannot fix.
			if ctx.Err() != nil {
				return nil, ctxError(ctx, r.desc, "waiting for rate limiter")
			}
			return nil, &Error{Op: r.desc, Code: CodeTimeout, Err: ErrTimeout,
				Message: "rate limiter: " + err.Error(), Cause: err}
		}

		resp, apiErr := c.attempt(ctx, r)
		lim.observe(resp, apiErr)
		if apiErr == nil {
			return resp.env, nil
		}
		retry, reason := shouldRetry(ctx.Err(), apiErr)
		if !retry || attempt >= c.maxAttempts {
			return nil, apiErr
		}
		delay := c.backoff(attempt)
		if resp != nil && resp.retryAfter > 0 &&
			(resp.status == http.StatusTooManyRequests || resp.status == http.StatusServiceUnavailable) {
			if resp.retryAfter > c.maxRetryAfter {
				c.logger.Warn("Plugipay asks to wait longer than the cap; giving up on this call",
					zap.String("op", r.desc), zap.String("code", apiErr.Code),
					zap.String("request_id", apiErr.RequestID),
					zap.Duration("retry_after", resp.retryAfter), zap.Duration("cap", c.maxRetryAfter))
				apiErr.Message = fmt.Sprintf("%s (Retry-After %s is more than the %s this client waits)",
					apiErr.Message, resp.retryAfter, c.maxRetryAfter)
				return nil, apiErr
			}
			delay = resp.retryAfter
		}
		c.logger.Warn("retrying Plugipay request",
			zap.String("op", r.desc),
			zap.Int("attempt", attempt),
			zap.Int("max_attempts", c.maxAttempts),
			zap.String("reason", reason),
			zap.Int("status", apiErr.StatusCode),
			zap.String("code", apiErr.Code),
			zap.String("request_id", apiErr.RequestID),
			zap.Duration("delay", delay),
		)
		c.metrics.addRetry(reason)
		if err := sleepCtx(ctx, delay); err != nil {
			return nil, ctxError(ctx, r.desc, "waiting to retry after "+apiErr.Code)
		}
	}
}

// shouldRetry is the retry policy, a pure function of the caller's ctx error
// and the attempt's error. It retries network errors, timeouts, 429 and 5xx,
// and nothing else: never a 409 (a conflict is a cache miss to resolve, an
// idempotency mismatch a bug to surface), never another 4xx, never after ctx
// ended, and never a TLS or certificate failure (it will fail again). The
// decision keys on the status for HTTP responses, so a parsed error body
// cannot bypass it (the bug the style guide notes in stripe-go).
func shouldRetry(ctxErr error, e *Error) (retry bool, reason string) {
	if ctxErr != nil {
		return false, "context done"
	}
	if e == nil {
		return false, "success"
	}
	if e.StatusCode != 0 {
		switch {
		case e.StatusCode == http.StatusTooManyRequests:
			return true, reasonRateLimited
		case e.StatusCode >= 500:
			return true, reasonServer
		}
		return false, "status " + strconv.Itoa(e.StatusCode)
	}
	switch {
	case errors.Is(e, ErrCanceled):
		return false, "canceled"
	case isPermanentTransportError(e.Cause):
		return false, "tls or url error"
	case errors.Is(e, ErrTimeout):
		return true, reasonTimeout
	case errors.Is(e, ErrNetwork):
		return true, reasonNetwork
	}
	return false, e.Code
}

// isPermanentTransportError reports TLS/certificate and unsupported-scheme
// failures, which no retry can fix.
func isPermanentTransportError(err error) bool {
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

// backoff returns the wait before attempt+1: full jitter over an
// exponentially growing, capped ceiling.
func (c *Client) backoff(attempt int) time.Duration {
	ceil := c.minBackoff
	for i := 1; i < attempt && ceil < c.maxBackoff; i++ {
		ceil *= 2
	}
	if ceil > c.maxBackoff {
		ceil = c.maxBackoff
	}
	return c.jitter(ceil)
}

// fullJitter draws uniformly from [0, d].
func fullJitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d + 1)
}

// sleepCtx waits for d or until ctx ends, whichever is first. It uses a
// timer in a select, never time.Sleep, so cancellation is immediate.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// parseRetryAfter reads a Retry-After value: delay seconds or an HTTP date.
// It returns 0 when absent or unparsable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil {
		if n <= 0 {
			return 0
		}
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}
