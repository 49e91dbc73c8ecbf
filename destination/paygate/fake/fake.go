// Package fake is a strict, in-memory fake of the PayGate-style customer
// API described in the project's spec (other-destinations.md), mounted at
// /v1: the routes are /v1/customers and /v1/customers/{id}. A Server is an
// http.Handler; mount it in httptest.NewServer.
//
// It follows the spec and, where the spec is silent, a real API's
// strictness (Stripe's, which the PayGate-style API resembles):
//
//   - Auth: "Authorization: Bearer <key>" with one of Options.Keys (each
//     sk_test_... or sk_live_...). A missing, malformed or unknown key is a
//     401 authentication_error.
//   - Bodies (POST, PATCH) are JSON only: a non-empty body without
//     Content-Type application/json is a 400 invalid_content_type. An empty
//     body counts as {}. The body must be one JSON object, without
//     duplicate keys; unknown fields (also "id", "object", "created_at")
//     are rejected with parameter_unknown; wrong types with
//     parameter_invalid_type.
//   - email, name and phone are strings; null or "" clears the field (it
//     reads back as null). email must be a single address (net/mail) of at
//     most MaxEmailLen bytes; name and phone are limited to MaxNameLen and
//     MaxPhoneLen characters.
//   - metadata is an object of string values, at most MaxMetadataKeys keys
//     of 1-MaxMetadataKeyLen characters, values of at most
//     MaxMetadataValueLen characters. On PATCH it merges key by key, as
//     Stripe does: a key set to "" is removed; metadata null or "" clears
//     every key. On create, a key set to "" is not stored. The merged result must still hold at most
//     MaxMetadataKeys keys. metadata always reads back as an object ({}
//     when empty).
//   - There is no uniqueness rule (two creates make two customers) and no
//     idempotency: an Idempotency-Key header is ignored.
//   - DELETE removes the customer; it is unknown (404) afterwards.
//   - List: limit 1-100 (default 10), starting_after or ending_before (not
//     both; a customer id, which must exist, else 400), email (exact,
//     case-sensitive match), created[gte] and created[lte] (unix seconds
//     only; an ISO 8601 time is rejected, as Stripe does). Customers come
//     newest first, ordered by created_at then id, both descending. Any other
//     query parameter, or one given twice, is a 400.
//   - Unknown routes answer 404, wrong methods 405.
//
// Every error answers {"error": {"type", "code", "message"}}.
//
// Options.Faults injects 5xx answers, 429s, dropped connections and writes
// whose answer is lost (see Faults); Options.RequestsPerSecond enforces a
// real per-key rate limit. The inspect and seed methods (Customers, Put,
// RequestCount, ...) let tests look behind the API.
package fake

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"mime"
	"net/http"
	"strconv"
	"strings"
	gosync "sync"
	"time"

	"github.com/plugipay-sync/plugipay-sync/destination/internal/fakeapi"
)

// Routes as RequestCount names them.
const (
	RouteCustomers = "/v1/customers"
	RouteCustomer  = "/v1/customers/{id}"
	RouteOther     = "other"
)

// Error types of the error body.
const (
	TypeInvalidRequest = "invalid_request_error"
	TypeAuthentication = "authentication_error"
	TypeRateLimit      = "rate_limit_error"
	TypeAPI            = "api_error"
)

// Error codes of the error body.
const (
	CodeInvalidJSON          = "invalid_json"
	CodeInvalidContentType   = "invalid_content_type"
	CodeParameterUnknown     = "parameter_unknown"
	CodeParameterInvalidType = "parameter_invalid_type"
	CodeParameterInvalid     = "parameter_invalid"
	CodeEmailInvalid         = "email_invalid"
	CodeResourceMissing      = "resource_missing"
	CodeRouteNotFound        = "route_not_found"
	CodeMethodNotAllowed     = "method_not_allowed"
	CodeInvalidAPIKey        = "invalid_api_key"
	CodeRateLimited          = "rate_limited"
	CodeInternal             = "internal_error"
	CodeBadGateway           = "bad_gateway"
	CodeServiceUnavailable   = "service_unavailable"
)

// MaxBodyBytes is the largest request body the fake reads.
const MaxBodyBytes = 1 << 20

// Options configure a Server. The zero value has no keys, so every
// request is answered 401.
type Options struct {
	// Keys are the accepted secret keys; each must start with sk_test_ or
	// sk_live_ (New panics otherwise). Each key is its own rate-limit
	// bucket.
	Keys []string
	// Now is the server clock (created_at, updated_at, rate-limit windows).
	// Nil means time.Now.
	Now func() time.Time
	// Seed makes the customer ids and the fault sequence reproducible. 0
	// seeds from crypto/rand.
	Seed uint64
	// RequestsPerSecond is the per-key limit, counted in fixed one-second
	// windows of the server clock; a request over it is answered 429 with
	// Retry-After. 0 disables the limit.
	RequestsPerSecond int
	// Faults are injected into authenticated requests; SetFaults changes
	// them at runtime.
	Faults Faults
}

// Server is the fake API. It implements http.Handler and is safe for
// concurrent use.
type Server struct {
	keys map[string]bool
	now  func() time.Time

	limiter  *fakeapi.Limiter
	requests fakeapi.Counter

	mu      gosync.Mutex // guards everything below
	rng     *rand.Rand   // ids, request ids and faults, in request order
	byID    map[string]*Customer
	ordered []*Customer // ascending by (CreatedAt, ID)
	writes  int
	faults  Faults
}

// New returns a Server for opts. It panics on a key without the sk_test_
// or sk_live_ prefix or on invalid Faults: both are programming errors in
// a test.
func New(opts Options) *Server {
	if err := opts.Faults.Validate(); err != nil {
		panic("fake: " + err.Error())
	}
	s := &Server{
		keys:    map[string]bool{},
		now:     opts.Now,
		limiter: fakeapi.NewLimiter(opts.RequestsPerSecond),
		rng:     fakeapi.NewRand(opts.Seed),
		byID:    map[string]*Customer{},
		faults:  opts.Faults,
	}
	for _, k := range opts.Keys {
		if !validKey(k) {
			panic(fmt.Sprintf("fake: key %q must start with sk_test_ or sk_live_", redact(k)))
		}
		s.keys[k] = true
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

func validKey(k string) bool {
	for _, p := range []string{"sk_test_", "sk_live_"} {
		if strings.HasPrefix(k, p) && len(k) > len(p) {
			return true
		}
	}
	return false
}

func redact(k string) string {
	if len(k) <= 8 {
		return "***"
	}
	return k[:8] + "***"
}

// ServeHTTP routes, authenticates and answers one request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	route, id := routes.Match(r.URL.Path)
	s.requests.Add(countedMethod(r.Method), route)
	w.Header().Set("Request-Id", "req_"+s.randomAlnum(14))

	switch route {
	case RouteOther:
		s.fail(w, http.StatusNotFound, CodeRouteNotFound, "unrecognized request URL ("+r.Method+" "+r.URL.Path+")")
		return
	case RouteCustomers:
		if !fakeapi.Allowed(w, r.Method, http.MethodGet, http.MethodPost) {
			s.fail(w, http.StatusMethodNotAllowed, CodeMethodNotAllowed, r.Method+" is not allowed on "+RouteCustomers)
			return
		}
	case RouteCustomer:
		if !fakeapi.Allowed(w, r.Method, http.MethodGet, http.MethodPatch, http.MethodDelete) {
			s.fail(w, http.StatusMethodNotAllowed, CodeMethodNotAllowed, r.Method+" is not allowed on "+RouteCustomer)
			return
		}
	}

	key, ok := s.authenticate(w, r)
	if !ok {
		return
	}
	if !s.limiter.Allow(w, key, s.now(), func(limit, retryAfter int) {
		s.fail(w, http.StatusTooManyRequests, CodeRateLimited,
			"too many requests: the limit is "+strconv.Itoa(limit)+" per second; retry after "+strconv.Itoa(retryAfter)+" s")
	}) {
		return
	}
	d := s.draw(r.Method != http.MethodGet)
	if d.Inject(w, r, func(status int, msg string) { s.fail(w, status, faultCodes[status], msg) }) {
		return
	}

	var status int
	var out any
	switch {
	case r.Method == http.MethodGet && route == RouteCustomers:
		status, out = s.list(r.URL.RawQuery)
	case r.Method == http.MethodGet:
		status, out = s.get(id)
	case r.Method == http.MethodDelete:
		status, out = s.remove(id)
	default:
		body, errOut := readBody(r)
		if errOut != nil {
			status, out = http.StatusBadRequest, errOut
			break
		}
		if r.Method == http.MethodPost {
			status, out = s.create(body)
		} else {
			status, out = s.update(id, body)
		}
	}
	if d.DropAfterWrite && status < 300 {
		fakeapi.Drop(w)
		return
	}
	s.respond(w, status, out)
}

// faultCodes are the error codes of injected statuses.
var faultCodes = map[int]string{
	http.StatusInternalServerError: CodeInternal,
	http.StatusBadGateway:          CodeBadGateway,
	http.StatusServiceUnavailable:  CodeServiceUnavailable,
	http.StatusTooManyRequests:     CodeRateLimited,
}

// routes match a request path to its route template and customer id.
var routes = fakeapi.Routes{Collection: RouteCustomers, Item: RouteCustomer, Other: RouteOther}

// authenticate checks the Bearer key, answering 401 when it fails.
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) (string, bool) {
	authz := r.Header.Get("Authorization")
	if authz == "" {
		s.fail(w, http.StatusUnauthorized, CodeInvalidAPIKey, "no API key provided; send Authorization: Bearer sk_...")
		return "", false
	}
	key, ok := strings.CutPrefix(authz, "Bearer ")
	if !ok || key == "" || strings.ContainsAny(key, " \t") {
		s.fail(w, http.StatusUnauthorized, CodeInvalidAPIKey, "malformed Authorization header; send Authorization: Bearer sk_...")
		return "", false
	}
	if !s.keys[key] {
		s.fail(w, http.StatusUnauthorized, CodeInvalidAPIKey, "invalid API key provided: "+redact(key))
		return "", false
	}
	return key, true
}

// readBody reads a POST or PATCH body, enforcing JSON and the size limit.
// An empty body reads as {}.
func readBody(r *http.Request) ([]byte, *ErrorBody) {
	body, tooLarge, err := fakeapi.ReadBody(r, MaxBodyBytes)
	if tooLarge {
		return nil, errBody(CodeParameterInvalid, "request body larger than "+strconv.Itoa(MaxBodyBytes)+" bytes")
	}
	if err != nil {
		return nil, errBody(CodeInvalidJSON, "read body: "+err.Error())
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return []byte("{}"), nil
	}
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return nil, errBody(CodeInvalidContentType, fmt.Sprintf("Content-Type %q is not supported; send application/json", ct))
	}
	return body, nil
}

// ErrorBody is the error object of an error answer.
type ErrorBody struct {
	Type    string `json:"type"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// errorEnvelope is the body of every error answer.
type errorEnvelope struct {
	Error *ErrorBody `json:"error"`
}

// errBody returns a 400-class invalid_request_error body.
func errBody(code, msg string) *ErrorBody {
	return &ErrorBody{Type: TypeInvalidRequest, Code: code, Message: msg}
}

func errorType(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return TypeAuthentication
	case status == http.StatusTooManyRequests:
		return TypeRateLimit
	case status >= 500:
		return TypeAPI
	}
	return TypeInvalidRequest
}

func (s *Server) fail(w http.ResponseWriter, status int, code, msg string) {
	s.respond(w, status, &ErrorBody{Type: errorType(status), Code: code, Message: msg})
}

// respond writes out as JSON; an *ErrorBody is wrapped in {"error": ...}.
func (s *Server) respond(w http.ResponseWriter, status int, out any) {
	if e, ok := out.(*ErrorBody); ok {
		out = errorEnvelope{Error: e}
	}
	if err := fakeapi.WriteJSON(w, status, "application/json", out); err != nil { // only a bug gets here: every answer is plain data
		_ = fakeapi.WriteJSON(w, http.StatusInternalServerError, "application/json",
			errorEnvelope{&ErrorBody{Type: TypeAPI, Code: CodeInternal, Message: "encode response: " + err.Error()}})
	}
}

// countedMethod is method as the request counts name it: an unusual
// method counts as OTHER, so a client cannot grow the counts without
// bound.
func countedMethod(method string) string {
	switch method {
	case http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodPut, http.MethodDelete, http.MethodHead, http.MethodOptions:
		return method
	}
	return "OTHER"
}

const alnum = "abcdefghijklmnopqrstuvwxyz0123456789"

// randomAlnum returns n random lowercase letters and digits from the
// seeded source.
func (s *Server) randomAlnum(n int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.randomAlnumLocked(n)
}

func (s *Server) randomAlnumLocked(n int) string {
	return fakeapi.RandString(s.rng, alnum, n)
}

var _ http.Handler = (*Server)(nil)
