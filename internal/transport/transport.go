// Package transport is the one HTTP transport of every API client in the
// module: the Plugipay SDK (plugipay/), the PayGate- and Pin-style
// destinations (destination/internal/rest) and the HubSpot source
// (crm/hubspot). Before it there were three hand-written retry loops that
// drifted on Retry-After caps and jitter within weeks (issue 16); now there
// is one:
//
//   - one retry policy (Classify), driven by status and error kind: 429
//     always, and for calls that may run twice 5xx, network errors and
//     attempt timeouts; an API may refine it with an Advice;
//   - Retry-After honoured, seconds or HTTP date, up to one cap
//     (MaxRetryAfter, the config's max_retry_after, default 1m); a longer
//     one fails the call at once rather than parking a worker for a day;
//   - exponential backoff with jitter from github.com/cenkalti/backoff/v5,
//     whose waits end at once when the caller's context does;
//   - one rate limiter type (Limiter, behind the RateLimiter interface);
//   - one metrics hook (Observer), which Metrics implements;
//   - its own error type (*Error), which each adapter maps to its kinds
//     with a table.
//
// It imports nothing of the module (checked by cmd/plugipay-sync's
// TestLayering), so it can never learn a caller's domain types.
package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"
)

// Defaults of Options.
const (
	DefaultTimeout       = 30 * time.Second
	DefaultMaxAttempts   = 4
	DefaultMinBackoff    = 500 * time.Millisecond
	DefaultMaxBackoff    = 20 * time.Second
	DefaultMaxRetryAfter = time.Minute
	DefaultJitter        = 0.5
	DefaultMaxBody       = 16 << 20
)

// Options configure a Client. Zero values take the defaults.
type Options struct {
	// API names the API in logs and metrics ("plugipay", "paygate",
	// "pin", "hubspot").
	API string
	// HTTPClient sends the requests; nil means a fresh http.Client.
	HTTPClient *http.Client
	// Timeout bounds each attempt (not the whole call).
	Timeout time.Duration
	// MaxAttempts bounds the attempts of one call, retries included.
	MaxAttempts int
	// MinBackoff and MaxBackoff bound the backoff schedule: the first wait
	// is about MinBackoff, each next one about twice the last, up to
	// about MaxBackoff, each drawn from [1-Jitter, 1+Jitter] times that.
	MinBackoff, MaxBackoff time.Duration
	// Jitter is the randomisation factor (0 means DefaultJitter; a
	// negative value draws no jitter, for tests).
	Jitter float64
	// MaxRetryAfter is the longest Retry-After waited; a longer one fails
	// the call at once, with the wait in Error.Note.
	MaxRetryAfter time.Duration
	// MaxBody bounds how much of an answer is read.
	MaxBody int64
	// ParseError reads an error answer's code, message and request id;
	// nil reads none.
	ParseError func(status int, header http.Header, body []byte) (code, message, requestID string)
	// Advise refines the policy for one failed attempt (n counts from 1);
	// nil gives none.
	Advise func(e *Error, n int) Advice
	// Code names a failed call for Call.Code (the metrics' code label);
	// nil means DefaultCode. It must return values from a closed set.
	Code func(*Error) string
	// Observer receives every attempt and call; nil observes nothing.
	Observer Observer
	// Logger receives one line per retry; nil logs nothing. Bodies,
	// headers and messages are never logged, only codes.
	Logger *zap.Logger
	// Sleep waits d or until ctx ends; nil uses a timer. Tests replace it
	// with a fake clock.
	Sleep func(ctx context.Context, d time.Duration) error
	// Now is the clock Retry-After dates are read against.
	Now func() time.Time
}

// Client sends requests with the policy. It is safe for concurrent use.
type Client struct {
	o  Options
	hc *http.Client
}

// New returns a Client for o.
func New(o Options) (*Client, error) {
	if o.Timeout < 0 || o.MaxAttempts < 0 || o.MinBackoff < 0 || o.MaxBackoff < 0 || o.MaxRetryAfter < 0 {
		return nil, errors.New("transport: Timeout, MaxAttempts, backoffs and MaxRetryAfter must not be negative")
	}
	o.Timeout = orDefault(o.Timeout, DefaultTimeout)
	o.MaxAttempts = orDefault(o.MaxAttempts, DefaultMaxAttempts)
	o.MinBackoff = orDefault(o.MinBackoff, DefaultMinBackoff)
	o.MaxBackoff = max(orDefault(o.MaxBackoff, DefaultMaxBackoff), o.MinBackoff)
	o.MaxRetryAfter = orDefault(o.MaxRetryAfter, DefaultMaxRetryAfter)
	o.MaxBody = orDefault(o.MaxBody, DefaultMaxBody)
	switch {
	case o.Jitter == 0:
		o.Jitter = DefaultJitter
	case o.Jitter < 0:
		o.Jitter = 0
	case o.Jitter > 1:
		o.Jitter = 1
	}
	if o.Code == nil {
		o.Code = DefaultCode
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Sleep == nil {
		o.Sleep = sleep
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	c := &Client{o: o, hc: o.HTTPClient}
	if c.hc == nil {
		c.hc = &http.Client{}
	}
	return c, nil
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// MaxRetryAfter is the cap in force.
func (c *Client) MaxRetryAfter() time.Duration { return c.o.MaxRetryAfter }

// Request is one logical call. Its body bytes (and any idempotency key the
// caller put in Header) are fixed before the first attempt, so every
// attempt sends the same request; Prepare may change what must change per
// attempt (a signature over a fresh timestamp).
type Request struct {
	// Op labels the call in metrics ("create", "get", "update", "list");
	// Desc names it in logs ("create customer"), Op when empty.
	Op, Desc string
	Method   string
	// URL is the full request URL.
	URL    string
	Header http.Header
	// Body is sent on every attempt; nil sends none.
	Body []byte
	// Idempotent says the call may execute twice without harm: a read, a
	// write with an idempotency key, a PUT of fixed values. Only 429 is
	// retried for a call that is not.
	Idempotent bool
	// Limiter paces the attempts (nil: none); Bucket names it in metrics.
	Limiter RateLimiter
	Bucket  string
	// Prepare, if set, is called on each attempt's request before it is
	// sent.
	Prepare func(*http.Request) error
	// Check, if set, inspects a 2xx answer (decodes it); an error makes
	// the call fail with KindResponse, not retried.
	Check func(*Response) error
}

// Response is a 2xx answer.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Do sends r, retrying as the policy allows, and returns the first 2xx
// answer. Every error it returns is an *Error.
func (c *Client) Do(ctx context.Context, r *Request) (*Response, error) {
	start := time.Now()
	resp, n, err := c.do(ctx, r)
	if c.o.Observer != nil {
		code := "ok"
		if err != nil {
			code = c.o.Code(err)
		}
		c.o.Observer.ObserveCall(Call{API: c.o.API, Op: r.Op, Method: r.Method, Code: code, Err: err,
			Attempts: n, Duration: time.Since(start)})
	}
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (c *Client) do(ctx context.Context, r *Request) (*Response, int, *Error) {
	schedule := newSchedule(c.o.MinBackoff, c.o.MaxBackoff, c.o.Jitter)
	var last *Error
	for n := 1; ; n++ {
		ev := Attempt{API: c.o.API, Op: r.Op, Method: r.Method, N: n, Bucket: r.Bucket}
		if limits(r.Limiter) {
			waitStart := time.Now()
			err := r.Limiter.Wait(ctx)
			ev.Waited = time.Since(waitStart)
			if err != nil {
				// Not retried: either ctx ended, or its deadline is too
				// close for the next token, which another attempt cannot
				// fix.
				e := c.canceled(ctx, r, last, "waiting for the rate limiter")
				if e == nil {
					e = &Error{Kind: KindTimeout, Op: r.Op, Method: r.Method, Code: "timeout",
						Message: "rate limiter: " + err.Error(), Err: err}
				}
				e.Attempts = n - 1
				ev.Err = e
				c.observe(ev)
				return nil, n - 1, e
			}
		}
		attemptStart := time.Now()
		resp, e := c.attempt(ctx, r)
		ev.Duration = time.Since(attemptStart)
		status, header := 0, http.Header(nil)
		if resp != nil {
			status, header = resp.Status, resp.Header
		} else if e != nil {
			status, header = e.Status, e.Header
		}
		if fb, ok := r.Limiter.(Feedback); ok && status != 0 {
			fb.Observe(status, header)
		}
		ev.Status, ev.RateLimited = status, status == http.StatusTooManyRequests
		if e == nil {
			c.observe(ev)
			return resp, n, nil
		}
		e.Attempts = n
		ev.Err = e
		if e.Kind == KindCanceled {
			e.Last = last
			c.observe(ev)
			return nil, n, e
		}
		last = e
		delay, reason, ok := c.decide(r, e, n, schedule)
		if !ok {
			c.observe(ev)
			return nil, n, e
		}
		ev.Retry, ev.Reason, ev.Delay = true, reason, delay
		c.observe(ev)
		c.o.Logger.Warn("retrying request",
			zap.String("api", c.o.API),
			zap.String("op", desc(r)),
			zap.Int("attempt", n),
			zap.Int("max_attempts", c.o.MaxAttempts),
			zap.String("reason", reason),
			zap.Int("status", e.Status),
			zap.String("code", codeOrKind(e)),
			zap.String("request_id", e.RequestID),
			zap.Duration("delay", delay))
		if err := c.o.Sleep(ctx, delay); err != nil || ctx.Err() != nil {
			ce := c.canceled(ctx, r, e, "waiting to retry after "+codeOrKind(e))
			if ce == nil { // a Sleep that failed on its own
				ce = &Error{Kind: KindCanceled, Op: r.Op, Method: r.Method, Code: "canceled", Err: err, Last: e}
			}
			ce.Attempts = n
			return nil, n, ce
		}
	}
}

// limits reports whether l may make a request wait (a nil or unlimited
// *Limiter never does, and its wait is not measured).
func limits(l RateLimiter) bool {
	if l == nil {
		return false
	}
	if lim, ok := l.(*Limiter); ok {
		return lim != nil && lim.lim != nil
	}
	return true
}

func (c *Client) observe(a Attempt) {
	if c.o.Observer != nil {
		c.o.Observer.ObserveAttempt(a)
	}
}

// decide applies the policy, the API's advice, MaxAttempts and the
// Retry-After cap to attempt n's failure: the wait before the next
// attempt and why, or ok false to give up.
func (c *Client) decide(r *Request, e *Error, n int, schedule interface{ NextBackOff() time.Duration }) (delay time.Duration, reason string, ok bool) {
	retry, reason := Classify(e, r.Idempotent)
	var adv Advice
	if c.o.Advise != nil {
		adv = c.o.Advise(e, n)
	}
	switch {
	case adv.Stop:
		return 0, adv.Reason, false
	case adv.Retry && !retry:
		retry, reason = true, adv.Reason
	}
	if !retry || n >= c.o.MaxAttempts {
		return 0, reason, false
	}
	delay = schedule.NextBackOff()
	if adv.Wait > 0 {
		delay = adv.Wait
	}
	if e.RetryAfter > 0 {
		if e.RetryAfter > c.o.MaxRetryAfter {
			e.Note = fmt.Sprintf("Retry-After %s is more than the %s this client waits", e.RetryAfter, c.o.MaxRetryAfter)
			c.o.Logger.Warn("the server asks to wait longer than the cap; giving up on this call",
				zap.String("api", c.o.API), zap.String("op", desc(r)),
				zap.String("code", codeOrKind(e)), zap.String("request_id", e.RequestID),
				zap.Duration("retry_after", e.RetryAfter), zap.Duration("cap", c.o.MaxRetryAfter))
			return 0, "retry-after over the cap", false
		}
		delay = e.RetryAfter
	}
	return delay, reason, true
}

// canceled returns a KindCanceled error when ctx has ended, else nil.
func (c *Client) canceled(ctx context.Context, r *Request, last *Error, msg string) *Error {
	if ctx.Err() == nil {
		return nil
	}
	return &Error{Kind: KindCanceled, Op: r.Op, Method: r.Method, Code: "canceled", Message: msg,
		Err: context.Cause(ctx), Last: last}
}

// errAttemptTimeout is the cause of an attempt's context when Timeout
// passes.
var errAttemptTimeout = errors.New("attempt timed out")

// attempt sends r once and reads the answer. It never retries.
func (c *Client) attempt(ctx context.Context, r *Request) (*Response, *Error) {
	actx, cancel := context.WithTimeoutCause(ctx, c.o.Timeout, errAttemptTimeout)
	defer cancel()
	var body io.Reader = http.NoBody
	if r.Body != nil {
		body = bytes.NewReader(r.Body)
	}
	req, err := http.NewRequestWithContext(actx, r.Method, r.URL, body)
	if err != nil {
		return nil, &Error{Kind: KindRequest, Op: r.Op, Method: r.Method, Code: "invalid_request",
			Message: "build request: " + err.Error(), Err: err}
	}
	for k, vs := range r.Header {
		req.Header[k] = append([]string(nil), vs...)
	}
	if r.Prepare != nil {
		if err := r.Prepare(req); err != nil {
			return nil, &Error{Kind: KindRequest, Op: r.Op, Method: r.Method, Code: "invalid_request",
				Message: "prepare request: " + err.Error(), Err: err}
		}
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.sendError(ctx, actx, r, 0, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, c.o.MaxBody))
	if err != nil {
		e := c.sendError(ctx, actx, r, resp.StatusCode, fmt.Errorf("read answer: %w", err))
		return nil, e
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		out := &Response{Status: resp.StatusCode, Header: resp.Header, Body: data}
		if r.Check != nil {
			if err := r.Check(out); err != nil {
				return nil, &Error{Kind: KindResponse, Op: r.Op, Method: r.Method, Status: resp.StatusCode,
					Code: "invalid_response", Message: err.Error(), Header: resp.Header, Body: data, Err: err}
			}
		}
		return out, nil
	}
	e := &Error{Kind: KindStatus, Op: r.Op, Method: r.Method, Status: resp.StatusCode,
		Header: resp.Header, Body: data, RetryAfter: ParseRetryAfter(resp.Header.Get("Retry-After"), c.o.Now())}
	if c.o.ParseError != nil {
		e.Code, e.Message, e.RequestID = c.o.ParseError(resp.StatusCode, resp.Header, data)
	}
	if e.Message == "" {
		e.Message = http.StatusText(resp.StatusCode)
	}
	return nil, e
}

// sendError classifies a failure to send or read: canceled when the
// caller's ctx ended, timeout when the attempt's time ran out (or a net
// timeout), a network error otherwise.
func (c *Client) sendError(ctx, actx context.Context, r *Request, status int, err error) *Error {
	e := &Error{Kind: KindNetwork, Op: r.Op, Method: r.Method, Status: status, Code: "network_error", Err: err}
	var ne net.Error
	switch {
	case ctx.Err() != nil:
		e.Kind, e.Code, e.Err = KindCanceled, "canceled", context.Cause(ctx)
		e.Message = err.Error()
	case context.Cause(actx) == errAttemptTimeout:
		e.Kind, e.Code = KindTimeout, "timeout"
		e.Message = "attempt exceeded " + c.o.Timeout.String()
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		e.Kind, e.Code = KindTimeout, "timeout"
	}
	return e
}

// sleep waits d or until ctx ends, in a select on a timer, never with
// time.Sleep, so cancellation is immediate.
func sleep(ctx context.Context, d time.Duration) error {
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
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

// DefaultCode names a failed call by the transport's own terms:
// rate_limited, server_error, network_error, timeout, canceled,
// invalid_request, invalid_response, or http_4xx.
func DefaultCode(e *Error) string {
	switch {
	case e == nil:
		return "ok"
	case e.Kind == KindStatus && e.Status == http.StatusTooManyRequests:
		return "rate_limited"
	case e.Kind == KindStatus && e.Status >= 500:
		return "server_error"
	case e.Kind == KindStatus:
		return "http_" + strconv.Itoa(e.Status/100) + "xx"
	}
	return e.Kind.String()
}

func codeOrKind(e *Error) string {
	if e.Code != "" {
		return e.Code
	}
	return e.Kind.String()
}

func desc(r *Request) string {
	if r.Desc != "" {
		return r.Desc
	}
	return r.Op
}
