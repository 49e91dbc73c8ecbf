// Package rest is the HTTP transport shared by the destinations other than
// Plugipay (whose SDK has its own signed transport): one JSON request
// path with a client-side rate cap, one retry loop whose policy knows
// which calls may run twice, and the metrics of every call. The adapters
// in destination/paygate and destination/pin build their calls on it.
package rest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/time/rate"
)

// Defaults of Options.
const (
	DefaultTimeout     = 30 * time.Second
	DefaultMaxAttempts = 4
	// maxBody bounds how much of an answer is read.
	maxBody = 8 << 20
	// DefaultMaxRetryAfter is the longest Retry-After honoured.
	DefaultMaxRetryAfter = time.Minute
)

// Options configure a Client.
type Options struct {
	// Destination names the API in metrics and logs ("paygate", "pin").
	Destination string
	// BaseURL is prefixed to every request path, e.g. "https://host/v1".
	BaseURL string
	// HTTPClient sends the requests; nil means a client of its own.
	HTTPClient *http.Client
	// Timeout bounds one attempt; 0 means DefaultTimeout.
	Timeout time.Duration
	// MaxAttempts bounds the attempts of one call, retries included; 0
	// means DefaultMaxAttempts.
	MaxAttempts int
	// RequestsPerSecond caps the calls of all workers together; 0 means
	// no cap.
	RequestsPerSecond float64
	// Registerer receives the metrics; nil records none.
	Registerer Registerer
	// Authorize sets the authentication header(s) of each attempt.
	Authorize func(*http.Request)
	// ParseError reads the API's error code and message from an error
	// answer's body.
	ParseError func(status int, body []byte) (code, message string)
	// Logger receives retries; nil logs nothing. Bodies and headers are
	// never logged.
	Logger *zap.Logger
	// MaxRetryAfter is the longest wait a server's Retry-After may ask
	// for; a longer one fails the call at once, with the wait in the
	// error, instead of parking a worker for hours (issue 14: a
	// Retry-After of a day). 0 means DefaultMaxRetryAfter.
	MaxRetryAfter time.Duration
}

// Host is the API's host name, without port (part of a destination's
// identity).
func (c *Client) Host() string { return c.base.Hostname() }

// Client sends JSON calls to one API.
type Client struct {
	o       Options
	base    *url.URL
	hc      *http.Client
	limiter *rate.Limiter
	m       *metrics
	log     *zap.Logger
}

// New checks o and returns its Client.
func New(o Options) (*Client, error) {
	if o.Destination == "" {
		return nil, errors.New("rest: Destination is required")
	}
	base, err := url.Parse(o.BaseURL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("rest: base URL %q must be an http(s) URL with a host", o.BaseURL)
	}
	if o.Authorize == nil || o.ParseError == nil {
		return nil, errors.New("rest: Authorize and ParseError are required")
	}
	if o.Timeout < 0 || o.MaxAttempts < 0 || o.RequestsPerSecond < 0 {
		return nil, errors.New("rest: Timeout, MaxAttempts and RequestsPerSecond must not be negative")
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.MaxRetryAfter <= 0 {
		o.MaxRetryAfter = DefaultMaxRetryAfter
	}
	c := &Client{o: o, base: base, hc: o.HTTPClient, log: o.Logger}
	if c.hc == nil {
		c.hc = &http.Client{}
	}
	if c.log == nil {
		c.log = zap.NewNop()
	}
	if o.RequestsPerSecond > 0 {
		c.limiter = rate.NewLimiter(rate.Limit(o.RequestsPerSecond), 1)
	}
	if c.m, err = newMetrics(o.Registerer, o.Destination); err != nil {
		return nil, err
	}
	return c, nil
}

// Do sends one call and retries it as its kind allows. retryable says the
// call may execute twice without harm (a read, a PUT or PATCH of fixed
// values): network errors, attempt timeouts, 5xx and 429 are retried. A
// call that is not retryable (a create on an API without idempotency
// keys) is retried only after a 429, which the server answers before
// executing: after anything else it may have executed, and the caller
// must find out. body, if non-nil, is sent as JSON; a 2xx answer is
// decoded into out, if non-nil. op labels the call in metrics ("create",
// "get", "update", "list").
//
// A failure is an *Error whose Kind is ErrInvalid (400, 422),
// ErrUnauthorized (401, 403), ErrNotFound (404), ErrConflict (409)
// or nil (transient: 429, 5xx, network, timeout). A cancelled ctx gives an
// error wrapping its cause.
func (c *Client) Do(ctx context.Context, op, method, path string, body, out any, retryable bool) error {
	start := time.Now()
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return fmt.Errorf("%s %s: encode body: %w", method, path, err)
		}
	}
	err := c.retryLoop(ctx, op, method, path, payload, out, retryable)
	c.m.Request(op, codeOf(err), time.Since(start))
	return err
}

// outcome is one attempt's result.
type outcome struct {
	status     int
	retryAfter time.Duration
	err        error
}

func (c *Client) retryLoop(ctx context.Context, op, method, path string, payload []byte, out any, retryable bool) error {
	for attempt := 1; ; attempt++ {
		if c.limiter != nil {
			waitStart := time.Now()
			err := c.limiter.Wait(ctx)
			c.m.Wait("all", time.Since(waitStart))
			if err != nil {
				if ctx.Err() != nil {
					return fmt.Errorf("%s %s: waiting for the rate limiter: %w", method, path, context.Cause(ctx))
				}
				return &Error{Code: "timeout", Message: "rate limiter: " + err.Error(), Err: err}
			}
		}
		o := c.attempt(ctx, method, path, payload, out)
		if o.err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s %s: %w", method, path, errors.Join(context.Cause(ctx), o.err))
		}
		retry, reason := shouldRetry(o, retryable)
		if !retry || attempt >= c.o.MaxAttempts {
			return o.err
		}
		delay := backoff(attempt)
		if o.retryAfter > c.o.MaxRetryAfter {
			c.log.Warn("the server asks to wait longer than the cap; giving up on this call",
				zap.String("destination", c.o.Destination), zap.String("op", op),
				zap.Duration("retry_after", o.retryAfter), zap.Duration("cap", c.o.MaxRetryAfter))
			var ae *Error
			if errors.As(o.err, &ae) {
				ae.Message = fmt.Sprintf("%s (Retry-After %s is more than the %s this client waits)",
					ae.Message, o.retryAfter, c.o.MaxRetryAfter)
			}
			return o.err
		}
		if o.retryAfter > 0 {
			delay = o.retryAfter
		}
		c.log.Warn("retrying request",
			zap.String("destination", c.o.Destination), zap.String("op", op),
			zap.Int("attempt", attempt), zap.String("reason", reason),
			zap.Int("status", o.status), zap.Duration("delay", delay))
		c.m.Retry(reason)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s %s: waiting to retry: %w", method, path, errors.Join(context.Cause(ctx), o.err))
		case <-t.C:
		}
	}
}

// Retry reasons: the reason label of the retries metric.
const (
	reasonNetwork     = "network_error"
	reasonTimeout     = "timeout"
	reasonRateLimited = "rate_limited"
	reasonServer      = "server_error"
)

// shouldRetry is the retry policy, a pure function of one attempt's
// outcome and whether the call may run twice.
func shouldRetry(o outcome, retryable bool) (bool, string) {
	switch {
	case o.status == http.StatusTooManyRequests:
		return true, reasonRateLimited // refused before executing
	case !retryable:
		return false, "not retryable"
	case o.status >= 500:
		return true, reasonServer
	case o.status != 0:
		return false, "status " + strconv.Itoa(o.status)
	case isPermanent(o.err):
		return false, "tls or url error"
	case errors.Is(o.err, errAttemptTimeout):
		return true, reasonTimeout
	}
	return true, reasonNetwork
}

// backoff is the wait before retry n: 200ms doubling, capped at 10s, with
// jitter of up to half of it.
func backoff(n int) time.Duration {
	d := 200 * time.Millisecond << min(n-1, 6)
	d = min(d, 10*time.Second)
	return d/2 + rand.N(d/2+1)
}

var errAttemptTimeout = errors.New("attempt timed out")

// attempt sends the call once.
func (c *Client) attempt(ctx context.Context, method, path string, payload []byte, out any) outcome {
	actx, cancel := context.WithTimeoutCause(ctx, c.o.Timeout, errAttemptTimeout)
	defer cancel()
	var rd io.Reader
	if payload != nil {
		rd = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(actx, method, c.url(path), rd)
	if err != nil {
		return outcome{err: &Error{Code: "invalid_request", Message: err.Error(), Err: err}}
	}
	req.Header.Set("Accept", "application/json")
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	c.o.Authorize(req)
	resp, err := c.hc.Do(req)
	if err != nil {
		code := "network_error"
		if context.Cause(actx) == errAttemptTimeout && ctx.Err() == nil {
			code, err = "timeout", fmt.Errorf("%w after %s: %w", errAttemptTimeout, c.o.Timeout, err)
		}
		return outcome{err: &Error{Code: code, Message: fmt.Sprintf("%s %s: %v", method, path, err), Err: err}}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return outcome{err: &Error{Status: resp.StatusCode, Code: "network_error",
			Message: fmt.Sprintf("%s %s: read answer: %v", method, path, err), Err: err}}
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if out != nil && resp.StatusCode != http.StatusNoContent {
			if err := json.Unmarshal(data, out); err != nil {
				// Not retried: the call executed.
				return outcome{status: resp.StatusCode, err: &Error{Status: resp.StatusCode,
					Code: "invalid_response", Message: fmt.Sprintf("%s %s: decode answer: %v", method, path, err), Err: err}}
			}
		}
		return outcome{status: resp.StatusCode}
	}
	code, msg := c.o.ParseError(resp.StatusCode, data)
	if code == "" {
		code = "http_" + strconv.Itoa(resp.StatusCode)
	}
	return outcome{
		status:     resp.StatusCode,
		retryAfter: retryAfter(resp.Header.Get("Retry-After")),
		err:        &Error{Kind: kindOf(resp.StatusCode), Status: resp.StatusCode, Code: code, Message: msg},
	}
}

func (c *Client) url(path string) string {
	return strings.TrimSuffix(c.base.String(), "/") + path
}

// kindOf maps an error status to its kind; nil is transient.
func kindOf(status int) error {
	switch status {
	case http.StatusBadRequest, http.StatusUnprocessableEntity:
		return ErrInvalid
	case http.StatusUnauthorized, http.StatusForbidden:
		return ErrUnauthorized
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusConflict:
		return ErrConflict
	}
	return nil
}

// retryAfter parses a Retry-After of seconds or an HTTP date.
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(min(s, 1<<31)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

// isPermanent reports TLS, certificate and URL failures, which a retry
// cannot fix.
func isPermanent(err error) bool {
	var (
		unknownAuthority x509.UnknownAuthorityError
		hostname         x509.HostnameError
		invalid          x509.CertificateInvalidError
		record           tls.RecordHeaderError
	)
	return errors.As(err, &unknownAuthority) || errors.As(err, &hostname) ||
		errors.As(err, &invalid) || errors.As(err, &record) ||
		strings.Contains(fmt.Sprint(err), "unsupported protocol scheme")
}
