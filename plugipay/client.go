// Package plugipay is a client for Plugipay's customer API. It speaks the wire
// protocol of shared/spec/plugipay-api.md: HMAC-SHA256 request signing, the
// {data, error, meta} envelope, cursor pagination and idempotent writes.
//
// The client sends through the module's one transport
// (internal/transport: one retry policy, one backoff schedule, one
// Retry-After cap, one rate limiter type, one metrics hook), signing every
// attempt afresh, with thin resource services on top (Client.Customers). Every failure is a *Error
// that unwraps to a kind sentinel (ErrNotFound, ErrConflict, ...).
package plugipay

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/plugipay-sync/plugipay-sync/internal/transport"
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
	// attempts (the shared transport's schedule, cenkalti/backoff): the
	// n-th wait is drawn from [0.5, 1.5] times min(MaxBackoff,
	// MinBackoff*2^(n-1)). A Retry-After from the server replaces the
	// drawn wait.
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
	// UserAgent is sent on every request (default "plugipay-sync"). A
	// replica names itself here, so a server's request log tells the
	// replicas apart.
	UserAgent string
}

// DefaultUserAgent is the User-Agent of a client whose Options name none.
const DefaultUserAgent = "plugipay-sync"

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
	userAgent  string
	timeout    time.Duration

	maxAttempts int
	// now returns the signing clock; replaced in tests.
	now func() time.Time

	// t is the shared transport: retries, backoff, Retry-After cap,
	// metrics.
	t            *transport.Client
	readLimiter  *transport.Limiter
	writeLimiter *transport.Limiter
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
		base:        base,
		keyID:       opts.KeyID,
		secret:      opts.Secret,
		onBehalfOf:  opts.OnBehalfOf,
		userAgent:   cmp.Or(opts.UserAgent, DefaultUserAgent),
		timeout:     orDefault(opts.Timeout, DefaultTimeout),
		maxAttempts: orDefault(opts.MaxAttempts, DefaultMaxAttempts),
		now:         time.Now,
	}
	hc := opts.HTTPClient
	if hc == nil {
		hc = &http.Client{CheckRedirect: noRedirect}
	}
	logger := opts.Logger
	if logger == nil {
		logger = zap.NewNop()
	}
	// The server's published limits are per one-second window and it
	// says when a window is used up: the limiters adapt (see
	// transport.LimiterOptions.Adaptive).
	c.readLimiter = transport.NewLimiter(transport.LimiterOptions{Adaptive: true,
		PerSecond: orDefault(opts.ReadRate, DefaultReadRate), Burst: orDefault(opts.ReadBurst, DefaultReadBurst)})
	c.writeLimiter = transport.NewLimiter(transport.LimiterOptions{Adaptive: true,
		PerSecond: orDefault(opts.WriteRate, DefaultWriteRate), Burst: orDefault(opts.WriteBurst, DefaultWriteBurst)})
	topts := transport.Options{
		API:           metricsDestination,
		HTTPClient:    hc,
		Timeout:       c.timeout,
		MaxAttempts:   c.maxAttempts,
		MinBackoff:    orDefault(opts.MinBackoff, DefaultMinBackoff),
		MaxBackoff:    orDefault(opts.MaxBackoff, DefaultMaxBackoff),
		MaxRetryAfter: orDefault(opts.MaxRetryAfter, DefaultMaxRetryAfter),
		MaxBody:       maxResponseBytes,
		Logger:        logger.With(zap.String("component", "plugipay")),
		Code:          func(e *transport.Error) string { return metricCode(c.fromTransport("", e, nil)) },
		// The code and request id of an error answer, for the retry log.
		ParseError: func(status int, h http.Header, body []byte) (code, msg, requestID string) {
			_, e := decodeEnvelope(status, body)
			if e == nil {
				return "", "", ""
			}
			e = c.finish(e, "", h, 0)
			return e.Code, e.Message, e.RequestID
		},
		// Retry-After dates are read against the signing clock.
		Now: func() time.Time { return c.now() },
	}
	if opts.Registerer != nil {
		m, err := newMetrics(opts.Registerer)
		if err != nil {
			return nil, fmt.Errorf("plugipay: register metrics: %w", err)
		}
		topts.Observer = m
	}
	t, err := transport.New(topts)
	if err != nil {
		return nil, fmt.Errorf("plugipay: %w", err)
	}
	c.t = t
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

// do runs r through the shared transport (internal/transport: its retry
// policy, backoff, Retry-After cap, rate limiters and metrics hook) and
// returns the decoded envelope of the first successful attempt. Every
// attempt is signed afresh (new timestamp) over the same body bytes and
// the same Idempotency-Key, so every Plugipay call, writes included, may
// be retried. Every returned error is a *Error.
func (c *Client) do(ctx context.Context, r *request) (*Envelope, error) {
	u, target, err := c.target(r)
	if err != nil {
		return nil, &Error{Op: r.desc, Code: CodeValidation, Err: ErrValidation,
			Message: "build request URL: " + err.Error(), Cause: err}
	}
	lim, bucket := c.readLimiter, "read"
	if r.method != http.MethodGet {
		lim, bucket = c.writeLimiter, "write"
	}
	h := http.Header{}
	h.Set("Accept", "application/json")
	h.Set("User-Agent", c.userAgent)
	if r.body != nil {
		h.Set("Content-Type", "application/json")
	}
	if r.idemKey != "" {
		h.Set(HeaderIdempotencyKey, r.idemKey)
	}
	if acc := c.onBehalfOfFor(ctx); acc != "" {
		h.Set(HeaderOnBehalfOf, acc)
	}
	var env *Envelope
	_, err = c.t.Do(ctx, &transport.Request{
		Op: r.op, Desc: r.desc, Method: r.method, URL: u.String(), Header: h, Body: r.body,
		// Reads are safe, and every write carries an Idempotency-Key the
		// server replays: all of them may run twice.
		Idempotent: true,
		Limiter:    lim, Bucket: bucket,
		Prepare: func(req *http.Request) error {
			ts := c.now().Unix()
			sig := Sign(c.secret, r.method, target, ts, r.body, r.idemKey)
			req.Header.Set(HeaderAuthorization, AuthorizationHeader(c.keyID, sig))
			req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
			return nil
		},
		Check: func(resp *transport.Response) error {
			e, apiErr := decodeEnvelope(resp.Status, resp.Body)
			if apiErr != nil {
				return c.finish(apiErr, r.desc, resp.Header, 0)
			}
			env = e
			return nil
		},
	})
	if err != nil {
		return nil, c.fromTransport(r.desc, err, func(msg string) *Error { return ctxError(ctx, r.desc, msg) })
	}
	return env, nil
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

// finish completes an API error decoded from an answer: its operation,
// its message without the secret, the request id from the header when the
// envelope had none, and the Retry-After hint.
func (c *Client) finish(e *Error, op string, h http.Header, retryAfter time.Duration) *Error {
	e.Op = op
	e.Message = redact(e.Message, c.secret)
	if e.RequestID == "" {
		e.RequestID = h.Get("X-Request-Id")
	}
	if retryAfter > 0 {
		e.RetryAfter = int((retryAfter + time.Second - 1) / time.Second)
	}
	return e
}

// fromTransport maps the transport's error to the SDK's *Error (the
// table: a status answer decodes to the API's code and kind; a failure to
// send is network_error or timeout; the caller's ctx ending is canceled,
// or timeout past its deadline, built by ctxErr). With ctxErr nil (for
// the metrics label) a canceled error is classified from its cause.
func (c *Client) fromTransport(op string, err error, ctxErr func(msg string) *Error) *Error {
	var te *transport.Error
	if !errors.As(err, &te) {
		return &Error{Op: op, Code: CodeUnknown, Err: ErrAPI, Message: err.Error(), Cause: err}
	}
	switch te.Kind {
	case transport.KindStatus:
		_, e := decodeEnvelope(te.Status, te.Body)
		if e == nil { // a 3xx carrying a clean envelope: redirects are not followed
			e = &Error{StatusCode: te.Status, Code: CodeInvalidResponse, Err: ErrInvalidResponse,
				Message: fmt.Sprintf("unexpected HTTP %d (redirects are not followed)", te.Status)}
		}
		e = c.finish(e, op, te.Header, te.RetryAfter)
		if te.Note != "" {
			e.Message = fmt.Sprintf("%s (%s)", e.Message, te.Note)
		}
		return e
	case transport.KindResponse:
		var e *Error
		if errors.As(te.Err, &e) {
			return e
		}
		return &Error{Op: op, StatusCode: te.Status, Code: CodeInvalidResponse, Err: ErrInvalidResponse,
			Message: redact(te.Message, c.secret), Cause: te.Err}
	case transport.KindCanceled:
		msg := te.Message
		if te.Last != nil && te.Last.Kind == transport.KindNetwork && msg == "" {
			msg = redact(transportMessage(te.Last.Err), c.secret)
		}
		if ctxErr == nil {
			e := &Error{Op: op, Code: CodeCanceled, Err: ErrCanceled, Message: msg, Cause: te.Err}
			if errors.Is(te.Err, context.DeadlineExceeded) {
				e.Code, e.Err = CodeTimeout, ErrTimeout
			}
			return e
		}
		return ctxErr(msg)
	case transport.KindTimeout:
		msg := te.Message
		if te.Err != nil && !strings.Contains(msg, te.Err.Error()) {
			if msg != "" {
				msg += ": "
			}
			msg += transportMessage(te.Err)
		}
		return &Error{Op: op, Code: CodeTimeout, Err: ErrTimeout, Message: redact(msg, c.secret), Cause: te.Err}
	case transport.KindNetwork:
		return &Error{Op: op, Code: CodeNetwork, Err: ErrNetwork,
			Message: redact(transportMessage(te.Err), c.secret), Cause: te.Err}
	}
	return &Error{Op: op, Code: CodeValidation, Err: ErrValidation, Message: redact(te.Message, c.secret), Cause: te.Err}
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
