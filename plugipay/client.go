// Package plugipay is a client for Plugipay's customer API. It speaks the wire
// protocol of shared/spec/plugipay-api.md: HMAC-SHA256 request signing, the
// {data, error, meta} envelope, cursor pagination and idempotent writes.
//
// The client has one transport (Client.do) with one retry loop, and thin
// resource services on top (Client.Customers). Every failure is a *Error
// that unwraps to a kind sentinel (ErrNotFound, ErrConflict, ...).
package plugipay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Defaults applied by New to zero-valued Options fields.
const (
	DefaultBaseURL     = "https://plugipay.com"
	DefaultTimeout     = 30 * time.Second
	DefaultMaxAttempts = 4
	DefaultMinBackoff  = 500 * time.Millisecond
	DefaultMaxBackoff  = 20 * time.Second
	// DefaultMaxRetryAfter is the longest Retry-After the client honours.
	DefaultMaxRetryAfter = time.Minute
	// DefaultReadRate and DefaultWriteRate are the server's published limits
	// per workspace (requests per second).
	DefaultReadRate  = 100.0
	DefaultWriteRate = 20.0
	// DefaultReadBurst and DefaultWriteBurst are kept small so that a burst
	// of queued requests does not trip the server's one-second window.
	DefaultReadBurst  = 10
	DefaultWriteBurst = 1
)

// Environment variables read by OptionsFromEnv.
const (
	EnvBaseURL    = "PLUGIPAY_BASE_URL"
	EnvKeyID      = "PLUGIPAY_KEY_ID"
	EnvSecret     = "PLUGIPAY_SECRET"
	EnvOnBehalfOf = "PLUGIPAY_ON_BEHALF_OF"
)

// apiPrefix starts every route.
const apiPrefix = "/api/v1"

// maxResponseBytes bounds how much of a response body is read.
const maxResponseBytes = 16 << 20

// Options configures a Client. Zero values take the Default constants.
type Options struct {
	// BaseURL is the API origin, e.g. https://plugipay.com; a trailing "/"
	// is trimmed and routes are appended under /api/v1.
	BaseURL string
	// KeyID and Secret are the API key pair. Both are required.
	KeyID  string
	Secret string
	// OnBehalfOf is the merchant account (acc_...) a platform key acts for;
	// empty for ordinary keys.
	OnBehalfOf string
	// Timeout bounds each attempt (not the whole call with its retries).
	Timeout time.Duration
	// HTTPClient sends the requests; nil means a fresh http.Client. Its own
	// Timeout, if any, applies on top of Timeout.
	HTTPClient *http.Client

	// MaxAttempts is the number of attempts per call, retries included
	// (default 4; 1 disables retries).
	MaxAttempts int
	// MinBackoff and MaxBackoff bound the exponential backoff between
	// attempts; each wait is drawn uniformly from [0, min(MaxBackoff,
	// MinBackoff*2^(n-1))] ("full jitter"). A Retry-After from the server
	// on 429 or 503 replaces the drawn wait.
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// MaxRetryAfter is the longest wait a Retry-After may ask for (zero:
	// DefaultMaxRetryAfter). A longer one fails the call at once with the
	// wait in its message, rather than parking the caller for hours.
	MaxRetryAfter time.Duration

	// ReadRate and WriteRate are the client-side request rates per second
	// for GET and for POST/PATCH, shared by every goroutine using the
	// client. Zero means the default; a negative value disables limiting.
	ReadRate  float64
	WriteRate float64
	// ReadBurst and WriteBurst are the token-bucket bursts (zero: default).
	ReadBurst  int
	WriteBurst int

	// Logger receives one line per retry; nil means zap.NewNop(). The
	// secret is never logged.
	Logger *zap.Logger
	// Registerer, when non-nil, receives the client's Prometheus metrics.
	Registerer prometheus.Registerer
}

// OptionsFromEnv returns Options with BaseURL, KeyID, Secret and OnBehalfOf
// read from PLUGIPAY_BASE_URL, PLUGIPAY_KEY_ID, PLUGIPAY_SECRET and
// PLUGIPAY_ON_BEHALF_OF. Unset variables leave the field empty (New then
// applies its defaults and validation).
func OptionsFromEnv() Options {
	return Options{
		BaseURL:    os.Getenv(EnvBaseURL),
		KeyID:      os.Getenv(EnvKeyID),
		Secret:     os.Getenv(EnvSecret),
		OnBehalfOf: os.Getenv(EnvOnBehalfOf),
	}
}

// Client talks to the Plugipay API. It is safe for concurrent use; its rate
// limiters are shared by all goroutines.
type Client struct {
	// Customers is the customer resource.
	Customers *CustomerService

	base       *url.URL
	keyID      string
	secret     string
	onBehalfOf string
	timeout    time.Duration
	httpClient *http.Client

	maxAttempts   int
	minBackoff    time.Duration
	maxRetryAfter time.Duration
	maxBackoff    time.Duration
	// jitter draws a wait in [0, d]; replaced in tests.
	jitter func(d time.Duration) time.Duration
	// now returns the signing clock; replaced in tests.
	now func() time.Time

	readLimiter  *adaptiveLimiter
	writeLimiter *adaptiveLimiter

	logger  *zap.Logger
	metrics *metrics
}

// New validates opts, applies defaults and returns a Client.
func New(opts Options) (*Client, error) {
	raw := strings.TrimRight(strings.TrimSpace(opts.BaseURL), "/")
	if raw == "" {
		raw = DefaultBaseURL
	}
	base, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("plugipay: invalid base URL %q: %w", raw, err)
	}
	if base.Scheme != "http" && base.Scheme != "https" {
		return nil, fmt.Errorf("plugipay: invalid base URL %q: scheme must be http or https", raw)
	}
	if base.Host == "" {
		return nil, fmt.Errorf("plugipay: invalid base URL %q: missing host", raw)
	}
	if base.RawQuery != "" || base.Fragment != "" || base.User != nil {
		return nil, fmt.Errorf("plugipay: invalid base URL %q: must not carry a query, fragment or user info", raw)
	}
	if opts.KeyID == "" {
		return nil, errors.New("plugipay: key id is required (" + EnvKeyID + ")")
	}
	if opts.Secret == "" {
		return nil, errors.New("plugipay: secret is required (" + EnvSecret + ")")
	}
	if opts.Timeout < 0 || opts.MaxAttempts < 0 || opts.MinBackoff < 0 || opts.MaxBackoff < 0 ||
		opts.ReadBurst < 0 || opts.WriteBurst < 0 {
		return nil, errors.New("plugipay: Timeout, MaxAttempts, MinBackoff, MaxBackoff and bursts must not be negative")
	}

	c := &Client{
		base:          base,
		keyID:         opts.KeyID,
		secret:        opts.Secret,
		onBehalfOf:    opts.OnBehalfOf,
		timeout:       orDefault(opts.Timeout, DefaultTimeout),
		httpClient:    opts.HTTPClient,
		maxAttempts:   orDefault(opts.MaxAttempts, DefaultMaxAttempts),
		minBackoff:    orDefault(opts.MinBackoff, DefaultMinBackoff),
		maxBackoff:    orDefault(opts.MaxBackoff, DefaultMaxBackoff),
		maxRetryAfter: orDefault(opts.MaxRetryAfter, DefaultMaxRetryAfter),
		jitter:        fullJitter,
		now:           time.Now,
		logger:        opts.Logger,
	}
	if c.maxBackoff < c.minBackoff {
		c.maxBackoff = c.minBackoff
	}
	if c.httpClient == nil {
		c.httpClient = &http.Client{CheckRedirect: noRedirect}
	}
	if c.logger == nil {
		c.logger = zap.NewNop()
	}
	c.logger = c.logger.With(zap.String("component", "plugipay"))
	c.readLimiter = newAdaptiveLimiter("read",
		orDefault(opts.ReadRate, DefaultReadRate), orDefault(opts.ReadBurst, DefaultReadBurst))
	c.writeLimiter = newAdaptiveLimiter("write",
		orDefault(opts.WriteRate, DefaultWriteRate), orDefault(opts.WriteBurst, DefaultWriteBurst))
	if opts.Registerer != nil {
		m, err := newMetrics(opts.Registerer)
		if err != nil {
			return nil, fmt.Errorf("plugipay: register metrics: %w", err)
		}
		c.metrics = m
	}
	c.Customers = &CustomerService{c: c}
	return c, nil
}

// noRedirect stops the default http.Client from following redirects: a
// redirected POST would turn into a GET, and a signature covers one exact
// target, so a 3xx is surfaced (as invalid_response) instead.
func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// request is one logical API call. The body bytes and the idempotency key
// are fixed before the retry loop so that every attempt sends exactly the
// same request (only the timestamp and signature change).
type request struct {
	op      string // metrics label: create, get, update, list
	desc    string // for errors: "create customer"
	method  string
	path    string // under /api/v1, already escaped, e.g. /customers/cus_1
	query   url.Values
	body    []byte // nil: no body
	idemKey string
}

// response is what one attempt learned, error or not.
type response struct {
	status     int
	env        *Envelope
	retryAfter time.Duration // from Retry-After, 0 if absent
	remaining  int           // X-RateLimit-Remaining, -1 if absent
	reset      time.Time     // X-RateLimit-Reset, zero if absent
}

// do runs r with retries and returns the decoded envelope of the first
// successful attempt. Every returned error is a *Error.
func (c *Client) do(ctx context.Context, r *request) (*Envelope, error) {
	start := time.Now()
	env, err := c.retryLoop(ctx, r)
	c.metrics.observeRequest(r.op, err, time.Since(start))
	return env, err
}

// target returns the request URL and the raw request target that is
// signed. The target is taken from the URL the http package will send
// (RequestURI), so signer and sender cannot disagree on escaping.
func (c *Client) target(r *request) (*url.URL, string, error) {
	raw := c.base.Scheme + "://" + c.base.Host + c.base.EscapedPath() + apiPrefix + r.path
	if len(r.query) > 0 {
		raw += "?" + r.query.Encode() // Encode sorts by key: deterministic
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, "", err
	}
	return u, u.RequestURI(), nil
}

// attempt sends r once: it signs with a fresh timestamp, sends the exact
// body bytes, reads and decodes the envelope. It never retries.
func (c *Client) attempt(ctx context.Context, r *request) (*response, *Error) {
	u, target, err := c.target(r)
	if err != nil {
		return nil, &Error{Op: r.desc, Code: CodeValidation, Err: ErrValidation,
			Message: "build request URL: " + err.Error(), Cause: err}
	}
	actx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	var body io.Reader = http.NoBody
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(actx, r.method, u.String(), body)
	if err != nil {
		return nil, &Error{Op: r.desc, Code: CodeValidation, Err: ErrValidation,
			Message: "build request: " + err.Error(), Cause: err}
	}
	ts := c.now().Unix()
	sig := Sign(c.secret, r.method, target, ts, r.body, r.idemKey)
	req.Header.Set(HeaderAuthorization, AuthorizationHeader(c.keyID, sig))
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "plugipay-sync")
	if r.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if r.idemKey != "" {
		req.Header.Set(HeaderIdempotencyKey, r.idemKey)
	}
	if c.onBehalfOf != "" {
		req.Header.Set(HeaderOnBehalfOf, c.onBehalfOf)
	}

	resp, err := c.httpClient.Do(req)
	if err != nil {
		return nil, c.transportError(ctx, actx, r, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return nil, c.transportError(ctx, actx, r, fmt.Errorf("read response: %w", err))
	}
	out := &response{
		status:     resp.StatusCode,
		retryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), c.now()),
		remaining:  -1,
	}
	if v := resp.Header.Get("X-RateLimit-Remaining"); v != "" {
		if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
			out.remaining = n
		}
	}
	if v := resp.Header.Get("X-RateLimit-Reset"); v != "" {
		if n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil && n > 0 {
			out.reset = time.Unix(n, 0)
		}
	}
	env, apiErr := decodeEnvelope(resp.StatusCode, data)
	out.env = env
	if apiErr != nil {
		apiErr.Op = r.desc
		apiErr.Message = redact(apiErr.Message, c.secret)
		if apiErr.RequestID == "" {
			apiErr.RequestID = resp.Header.Get("X-Request-Id")
		}
		if out.retryAfter > 0 {
			apiErr.RetryAfter = int((out.retryAfter + time.Second - 1) / time.Second)
		}
		return out, apiErr
	}
	return out, nil
}

// transportError turns a failure to send or read into a *Error with status
// 0: canceled when the caller's ctx was canceled, timeout when a deadline
// passed (the caller's or the attempt's), network_error otherwise.
func (c *Client) transportError(ctx, actx context.Context, r *request, err error) *Error {
	msg := redact(transportMessage(err), c.secret)
	switch {
	case ctx.Err() != nil:
		return ctxError(ctx, r.desc, msg)
	case actx.Err() != nil || errors.Is(err, context.DeadlineExceeded):
		return &Error{Op: r.desc, Code: CodeTimeout, Err: ErrTimeout,
			Message: fmt.Sprintf("attempt exceeded %s: %s", c.timeout, msg), Cause: err}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return &Error{Op: r.desc, Code: CodeTimeout, Err: ErrTimeout, Message: msg, Cause: err}
	}
	return &Error{Op: r.desc, Code: CodeNetwork, Err: ErrNetwork, Message: msg, Cause: err}
}

// transportMessage is err's text with the query string dropped from any
// URL in it: a list query can carry an email address, which does not belong
// in error messages and logs.
func transportMessage(err error) string {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err.Error()
	}
	u := ue.URL
	if i := strings.IndexByte(u, '?'); i >= 0 {
		u = u[:i] + "?[query omitted]"
	}
	msg := fmt.Sprintf("%s %q: %v", ue.Op, u, ue.Err)
	if outer := err.Error(); outer != ue.Error() {
		// err wraps ue with context such as "read response: ...".
		if prefix, _, ok := strings.Cut(outer, ue.Error()); ok {
			msg = prefix + msg
		}
	}
	return msg
}

// ctxError reports that the caller's ctx ended: canceled, or timeout when its
// deadline passed. It wraps ctx's error (and its cause, if any).
func ctxError(ctx context.Context, op, msg string) *Error {
	cause := context.Cause(ctx)
	e := &Error{Op: op, Code: CodeCanceled, Err: ErrCanceled, Message: msg, Cause: ctx.Err()}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		e.Code, e.Err = CodeTimeout, ErrTimeout
	}
	if cause != nil && cause != ctx.Err() {
		e.Cause = errors.Join(ctx.Err(), cause)
	}
	if e.Message == "" {
		e.Message = ctx.Err().Error()
	}
	return e
}

// decodeEnvelope parses a response body. It returns a *Error when the status
// is >= 400, when the envelope has a non-null error (even on 2xx), or when
// the body is not a JSON envelope. The envelope is returned whenever it
// parsed, so callers can still read meta.
func decodeEnvelope(status int, body []byte) (*Envelope, *Error) {
	var env Envelope
	if err := json.Unmarshal(body, &env); err != nil {
		snippet := body
		if len(snippet) > 200 {
			snippet = snippet[:200]
		}
		return nil, &Error{StatusCode: status, Code: CodeInvalidResponse, Err: ErrInvalidResponse,
			Message: fmt.Sprintf("response body is not a JSON envelope (HTTP %d): %q", status, snippet),
			Cause:   err}
	}
	if status < 400 && env.Error == nil {
		return &env, nil
	}
	e := &Error{StatusCode: status, Code: CodeUnknown, RequestID: env.Meta.RequestID}
	if env.Error != nil {
		if env.Error.Code != "" {
			e.Code = env.Error.Code
		}
		e.Message = env.Error.Message
	}
	if e.Message == "" && status >= 400 {
		e.Message = http.StatusText(status)
	}
	if e.Message == "" {
		// A success or unknown status carrying an error without a
		// message: "OK" would mislead (found by FuzzDecodeEnvelope).
		e.Message = fmt.Sprintf("HTTP %d response carries an error without a message", status)
	}
	e.Err = kindFor(status, e.Code)
	return &env, e
}

// Key modes, as KeyMode reports them.
const (
	ModeTest = "test"
	ModeLive = "live"
)

// KeyMode tells a key's mode from its secret (sk_test_..., sk_live_...)
// or, failing that, its key id (..._test_..., ..._live_...); empty when
// neither says. Test and live keys of one workspace see separate
// customers, so a state DB made with one must not be used with the other.
func KeyMode(keyID, secret string) string {
	switch {
	case strings.HasPrefix(secret, "sk_live_"):
		return ModeLive
	case strings.HasPrefix(secret, "sk_test_"):
		return ModeTest
	case strings.Contains(keyID, "_live_") || strings.HasPrefix(keyID, "live_"):
		return ModeLive
	case strings.Contains(keyID, "_test_") || strings.HasPrefix(keyID, "test_"):
		return ModeTest
	}
	return ""
}

// Host is the API's host name, without port.
func (c *Client) Host() string { return c.base.Hostname() }

// Mode is the key's mode (see KeyMode).
func (c *Client) Mode() string { return KeyMode(c.keyID, c.secret) }

// OnBehalfOf is the merchant account a platform key acts for, or empty.
func (c *Client) OnBehalfOf() string { return c.onBehalfOf }
