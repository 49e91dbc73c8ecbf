// Package rest is the JSON call layer of the destinations other than
// Plugipay (destination/paygate, destination/pin): one request path with a
// client-side rate cap, built on the module's one transport
// (internal/transport: retry policy, backoff, Retry-After cap, rate
// limiter, metrics hook). It maps the transport's errors to its own kinds
// (Error.Kind), which destination/internal/apierr maps to the
// reconciler's with one table.
package rest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/plugipay-sync/plugipay-sync/internal/transport"
)

// Defaults of Options.
const (
	DefaultTimeout     = transport.DefaultTimeout
	DefaultMaxAttempts = transport.DefaultMaxAttempts
	// maxBody bounds how much of an answer is read.
	maxBody = 8 << 20
	// DefaultMaxRetryAfter is the longest Retry-After honoured.
	DefaultMaxRetryAfter = transport.DefaultMaxRetryAfter
	// minBackoff and maxBackoff bound the backoff schedule: these APIs
	// answer fast and publish per-second limits.
	minBackoff = 200 * time.Millisecond
	maxBackoff = 10 * time.Second
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
	t       *transport.Client
	limiter *transport.Limiter
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
	m, err := newMetrics(o.Registerer, o.Destination)
	if err != nil {
		return nil, err
	}
	c := &Client{o: o, base: base}
	topts := transport.Options{
		API:           o.Destination,
		HTTPClient:    o.HTTPClient,
		Timeout:       o.Timeout,
		MaxAttempts:   o.MaxAttempts,
		MinBackoff:    minBackoff,
		MaxBackoff:    maxBackoff,
		MaxRetryAfter: max(o.MaxRetryAfter, 0),
		MaxBody:       maxBody,
		ParseError: func(status int, _ http.Header, body []byte) (string, string, string) {
			code, msg := c.o.ParseError(status, body)
			return code, msg, ""
		},
		Code:   func(e *transport.Error) string { return codeOf(fromTransport("", e)) },
		Logger: o.Logger,
	}
	if m != nil {
		topts.Observer = m
	}
	if c.t, err = transport.New(topts); err != nil {
		return nil, fmt.Errorf("rest: %w", err)
	}
	if o.RequestsPerSecond > 0 {
		c.limiter = transport.NewLimiter(transport.LimiterOptions{PerSecond: o.RequestsPerSecond, Burst: 1})
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
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return fmt.Errorf("%s %s: encode body: %w", method, path, err)
		}
	}
	h := http.Header{}
	h.Set("Accept", "application/json")
	if payload != nil {
		h.Set("Content-Type", "application/json")
	}
	req := &transport.Request{
		Op: op, Desc: op, Method: method, URL: c.url(path), Header: h, Body: payload,
		Idempotent: retryable,
		Prepare:    func(r *http.Request) error { c.o.Authorize(r); return nil },
		Check: func(resp *transport.Response) error {
			if out == nil || resp.Status == http.StatusNoContent {
				return nil
			}
			// Not retried: the call executed.
			return json.Unmarshal(resp.Body, out)
		},
	}
	if c.limiter != nil {
		req.Limiter, req.Bucket = c.limiter, "all"
	}
	_, err := c.t.Do(ctx, req)
	if err == nil {
		return nil
	}
	return withPath(method, path, fromTransport(method+" "+path, err))
}

// withPath prefixes a cancelled call's error with its method and path (an
// *Error carries them in its message already).
func withPath(method, path string, err error) error {
	var ae *Error
	if err == nil || errors.As(err, &ae) {
		return err
	}
	return fmt.Errorf("%s %s: %w", method, path, err)
}

// fromTransport maps the transport's error to an *Error: the status
// decides the kind (kindOf); network failures, timeouts and refused 2xx
// answers are transient or invalid_response. A call whose ctx ended is
// not an *Error: it wraps the context's cause and the last attempt's
// failure.
func fromTransport(call string, err error) error {
	var te *transport.Error
	if !errors.As(err, &te) {
		return err
	}
	switch te.Kind {
	case transport.KindCanceled:
		if te.Last != nil && te.Last.Kind != transport.KindCanceled {
			return errors.Join(te.Err, fromTransport(call, te.Last))
		}
		return te.Err
	case transport.KindStatus:
		code := te.Code
		if code == "" {
			code = "http_" + strconv.Itoa(te.Status)
		}
		msg := te.Message
		if te.Note != "" {
			msg = fmt.Sprintf("%s (%s)", msg, te.Note)
		}
		return &Error{Kind: kindOf(te.Status), Status: te.Status, Code: code, Message: msg}
	case transport.KindResponse:
		return &Error{Status: te.Status, Code: "invalid_response",
			Message: fmt.Sprintf("%s: decode answer: %v", call, te.Err), Err: te.Err}
	case transport.KindRequest:
		return &Error{Code: "invalid_request", Message: te.Message, Err: te.Err}
	}
	// Network errors and timeouts: transient.
	msg := te.Message
	if te.Err != nil {
		if msg != "" {
			msg += ": "
		}
		msg += te.Err.Error()
	}
	return &Error{Status: te.Status, Code: te.Code, Message: fmt.Sprintf("%s: %s", call, msg), Err: te.Err}
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
