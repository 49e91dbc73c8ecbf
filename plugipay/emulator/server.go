// Package emulator is a strict, in-memory emulator of Plugipay's customer
// API as the project's wire-protocol spec (plugipay-api.md) describes it,
// in its strict form. It enforces the HMAC signing,
// idempotency, validation, uniqueness and pagination rules of the real API,
// so code that passes against it speaks the real protocol. A Server is an
// http.Handler: mount it in httptest.NewServer for Go tests, or run it with
// cmd/plugipay-mock.
package emulator

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/plugipay-sync/plugipay-sync/plugipay"
)

// Routes as they appear in the route label of the request metric and in
// RequestCount.
const (
	RouteCustomers = "/api/v1/customers"
	RouteCustomer  = "/api/v1/customers/{id}"
	RouteOther     = "other"
)

// Protocol defaults and limits.
const (
	// DefaultAccountID is the workspace id used when Options.AccountID is empty.
	DefaultAccountID = "acc_emulator"
	// MaxSkew is the largest accepted distance between X-Plugipay-Timestamp
	// and the server clock.
	MaxSkew = 300 * time.Second
	// DocURLBase prefixes error.docUrl; the error code is appended.
	DocURLBase = "https://plugipay.com/docs/errors#"
)

// Options configure a Server. The zero value is usable but has no keys, so
// every API request is rejected with invalid_key.
type Options struct {
	// Keys maps API key ids to their secrets. Each key id is a separate
	// idempotency namespace and rate-limit bucket (the real API scopes both
	// per workspace; one key per workspace is the usual setup). A plain key
	// acts for AccountID only: an X-Plugipay-On-Behalf-Of naming another
	// account answers 403 insufficient_scope.
	Keys map[string]string
	// PlatformKeys maps platform key ids to their secrets and connected
	// merchant workspaces (spec "Platform keys"). Each workspace has its
	// own customers, externalId uniqueness, idempotency keys and rate
	// limits (per key and workspace). Key ids must not repeat Keys'.
	PlatformKeys map[string]PlatformKey
	// AccountID is the workspace id reported in accountId and arn: the
	// plain keys' workspace and the platform's own. Empty means
	// DefaultAccountID.
	AccountID string
	// Now is the server clock, for tests. Nil means time.Now.
	Now func() time.Time
	// Registerer, when set, also receives the server's metrics. The server
	// always keeps its own registry, served at GET /metrics.
	Registerer prometheus.Registerer

	// ReadRate and WriteRate are the per-key limits in requests per second
	// for GET and for POST/PATCH, counted in fixed one-second windows of
	// the server clock. 0 disables a limit. The real API uses
	// DefaultReadRate and DefaultWriteRate.
	ReadRate, WriteRate int
	// Faults are injected into API requests; see Faults. SetFaults
	// changes them at runtime.
	Faults Faults
	// Seed makes the random fault sequence reproducible. 0 seeds from
	// crypto/rand.
	Seed uint64
	// Legacy emulates an older API version whose list endpoint ignores
	// the externalId filter.
	Legacy bool
	// StatePath, when set, is an append-only JSON-lines log of executed
	// writes and stored idempotent responses: replayed by Open, compacted
	// at start, appended to before each write is acknowledged.
	StatePath string
	// RequestLog, when > 0, keeps the last RequestLog write requests for
	// RequestLog and OverlappingWrites (see WriteRecord); 0 keeps none.
	RequestLog int
}

// Server is the emulator. It implements http.Handler and is safe for
// concurrent use.
type Server struct {
	keys      *keyring
	accountID string
	now       func() time.Time
	legacy    bool

	// ws holds every workspace's store; st is AccountID's.
	ws      *workspaces
	st      *store
	reqlog  *requestLog
	limiter *limiter
	faults  *faultInjector
	log     *stateLog

	registry *prometheus.Registry
	metrics  http.Handler
	requests *prometheus.CounterVec

	countMu sync.Mutex
	counts  map[string]int // "METHOD route" -> requests

	// hooks delivers customer events (webhooks.go).
	hooks webhooks
}

// New returns a Server for opts. It panics when opts.StatePath is set and
// cannot be loaded; use Open to get that error instead.
func New(opts Options) *Server {
	s, err := Open(opts)
	if err != nil {
		panic(err)
	}
	return s
}

// Open returns a Server for opts, loading opts.StatePath when it is set.
// Close releases the state file.
func Open(opts Options) (*Server, error) {
	if err := opts.Faults.Validate(); err != nil {
		return nil, fmt.Errorf("emulator: %w", err)
	}
	if opts.RequestLog < 0 {
		return nil, fmt.Errorf("emulator: RequestLog must be >= 0 (got %d)", opts.RequestLog)
	}
	keys, err := newKeyring(opts.Keys, opts.PlatformKeys)
	if err != nil {
		return nil, fmt.Errorf("emulator: %w", err)
	}
	s := &Server{
		keys:      keys,
		accountID: opts.AccountID,
		now:       opts.Now,
		legacy:    opts.Legacy,
		ws:        newWorkspaces(),
		reqlog:    newRequestLog(opts.RequestLog),
		counts:    map[string]int{},
	}
	if s.accountID == "" {
		s.accountID = DefaultAccountID
	}
	s.st = s.ws.get(s.accountID)
	if s.now == nil {
		s.now = time.Now
	}
	s.limiter = newLimiter(opts.ReadRate, opts.WriteRate)
	s.faults = newFaultInjector(opts.Faults, opts.Seed)

	s.registry = prometheus.NewRegistry()
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "plugipay_mock_requests_total",
		Help: "API requests answered by the Plugipay emulator, by method, route template and HTTP status.",
	}, []string{"method", "route", "status"})
	if err := s.registry.Register(s.requests); err != nil {
		return nil, fmt.Errorf("emulator: register metrics: %w", err)
	}
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(s.requests); err != nil {
			return nil, fmt.Errorf("emulator: register metrics: %w", err)
		}
	}
	s.metrics = promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{})

	if opts.StatePath != "" {
		l, err := openStateLog(opts.StatePath, s.ws, s.accountID, s.now())
		if err != nil {
			return nil, fmt.Errorf("emulator: %w", err)
		}
		s.log = l
	}
	return s, nil
}

// Close releases the state file, if any. The Server must not serve
// requests afterwards.
func (s *Server) Close() error {
	if s.log == nil {
		return nil
	}
	if err := s.log.close(); err != nil {
		return fmt.Errorf("emulator: close state: %w", err)
	}
	return nil
}

// Registry returns the server's own metrics registry (the one /metrics
// serves).
func (s *Server) Registry() *prometheus.Registry { return s.registry }

// ServeHTTP routes, authenticates and answers one request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/metrics" {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		s.metrics.ServeHTTP(w, r)
		return
	}
	route, id := matchRoute(r.URL.Path)
	rw := &statusWriter{ResponseWriter: w}
	defer func() { s.count(r.Method, route, rw.label()) }()
	var rec *WriteRecord
	if s.reqlog != nil && route != RouteOther && isWrite(r.Method) {
		rec = &WriteRecord{Account: r.Header.Get(plugipay.HeaderOnBehalfOf), Method: r.Method, Path: r.URL.Path,
			ClientID: r.Header.Get("User-Agent"), Begin: time.Now()}
		s.reqlog.begin()
		defer func() {
			rec.End, rec.Status = time.Now(), rw.status
			if rw.dropped {
				rec.Status = 0
			}
			s.reqlog.add(*rec)
		}()
	}

	switch route {
	case RouteOther:
		s.fail(rw, http.StatusNotFound, plugipay.CodeNotFound, "no route for "+r.URL.Path)
		return
	case RouteCustomers:
		if r.Method != http.MethodGet && r.Method != http.MethodPost {
			rw.Header().Set("Allow", "GET, POST")
			s.fail(rw, http.StatusMethodNotAllowed, plugipay.CodeMethodNotAllowed, r.Method+" is not allowed on "+RouteCustomers)
			return
		}
	case RouteCustomer:
		if r.Method != http.MethodGet && r.Method != http.MethodPatch {
			rw.Header().Set("Allow", "GET, PATCH")
			s.fail(rw, http.StatusMethodNotAllowed, plugipay.CodeMethodNotAllowed, r.Method+" is not allowed on "+RouteCustomer)
			return
		}
	}

	body, keyID, res := s.authenticate(r)
	if res != nil {
		s.respond(rw, *res)
		return
	}
	account, res := s.account(keyID, r.Header.Get(plugipay.HeaderOnBehalfOf))
	if res != nil {
		s.respond(rw, *res)
		return
	}
	if rec != nil {
		rec.Account = account
	}
	if res := s.limiter.allow(rw.Header(), keyID+"\x00"+account, r.Method == http.MethodGet, s.now()); res != nil {
		s.respond(rw, *res)
		return
	}
	fault, proceed := s.injectFaults(rw, r)
	if !proceed {
		return
	}

	st := s.ws.get(account)
	switch {
	case r.Method == http.MethodGet && route == RouteCustomers:
		res, p := s.list(st, r.URL.RawQuery)
		s.respondPage(rw, res, p)
	case r.Method == http.MethodGet:
		s.respond(rw, s.get(st, id))
	default:
		s.write(rw, r, st, keyID, body, id, fault, rec)
	}
}

// isWrite reports whether method is one the request log keeps.
func isWrite(method string) bool {
	return method == http.MethodPost || method == http.MethodPatch || method == http.MethodDelete
}

// matchRoute maps a path to its route template and customer id.
func matchRoute(path string) (route, id string) {
	if path == RouteCustomers {
		return RouteCustomers, ""
	}
	rest, ok := strings.CutPrefix(path, RouteCustomers+"/")
	if !ok || rest == "" || strings.Contains(rest, "/") {
		return RouteOther, ""
	}
	return RouteCustomer, rest
}

// envelope is the body of every API response.
type envelope struct {
	Data  json.RawMessage     `json:"data"`
	Error *plugipay.ErrorBody `json:"error"`
	Meta  any                 `json:"meta"`
}

type meta struct {
	RequestID string `json:"requestId"`
	Timestamp string `json:"timestamp"`
}

type listMeta struct {
	RequestID string  `json:"requestId"`
	Timestamp string  `json:"timestamp"`
	Cursor    *string `json:"cursor"`
	HasMore   bool    `json:"hasMore"`
}

// page carries list pagination from list to respond.
type page struct {
	cursor  *string
	hasMore bool
}

func (s *Server) newMeta() meta {
	return meta{RequestID: "req_" + rand.Text(), Timestamp: s.now().UTC().Format(time.RFC3339)}
}

// respond writes res as an envelope with a fresh meta.
func (s *Server) respond(w http.ResponseWriter, res result) {
	s.respondPage(w, res, nil)
}

func (s *Server) respondPage(w http.ResponseWriter, res result, p *page) {
	m := s.newMeta()
	env := envelope{Data: res.Data, Error: res.Error, Meta: m}
	if env.Data == nil {
		env.Data = json.RawMessage("null")
	}
	if p != nil {
		env.Meta = listMeta{RequestID: m.RequestID, Timestamp: m.Timestamp, Cursor: p.cursor, HasMore: p.hasMore}
	}
	b, err := json.Marshal(env)
	if err != nil { // only a bug can get here: every part is plain data
		res = errResult(http.StatusInternalServerError, plugipay.CodeInternal, "encode response: "+err.Error())
		b, _ = json.Marshal(envelope{Data: json.RawMessage("null"), Error: res.Error, Meta: m})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(res.Status)
	_, _ = w.Write(append(b, '\n'))
}

func (s *Server) fail(w http.ResponseWriter, status int, code, msg string) {
	s.respond(w, errResult(status, code, msg))
}

func errResult(status int, code, msg string) result {
	return result{Status: status, Error: &plugipay.ErrorBody{Code: code, Message: msg, DocURL: DocURLBase + code}}
}

func dataResult(status int, v any) result {
	b, err := json.Marshal(v)
	if err != nil {
		return errResult(http.StatusInternalServerError, plugipay.CodeInternal, "encode data: "+err.Error())
	}
	return result{Status: status, Data: b}
}

// statusWriter records the status for the request metric and lets
// http.ResponseController reach the connection for hijacking.
type statusWriter struct {
	http.ResponseWriter
	status  int
	dropped bool
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap exposes the underlying writer to http.ResponseController.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) label() string {
	switch {
	case w.dropped:
		return "dropped"
	case w.status == 0:
		return "none"
	}
	return strconv.Itoa(w.status)
}

func (s *Server) count(method, route, status string) {
	switch method {
	case http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodPut, http.MethodDelete, http.MethodHead, http.MethodOptions:
	default:
		method = "OTHER"
	}
	s.requests.WithLabelValues(method, route, status).Inc()
	s.countMu.Lock()
	s.counts[method+" "+route]++
	s.countMu.Unlock()
}
