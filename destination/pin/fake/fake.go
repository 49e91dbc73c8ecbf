// Package fake is a strict, in-memory fake of the Pin-style customers API
// described in the project's spec (other-destinations.md, "Pin-style
// customers API", Decision line included). A Server is an http.Handler:
// mount it in httptest.NewServer.
//
// Transport: base path /1; HTTP basic auth with the secret key as the user
// name and an empty password; every answer wrapped as
// {"response": <object or list>, "status": <HTTP status>}; errors not
// wrapped: {"error": "<code>", "error_description": "...",
// "messages": [{"param", "code", "message"}]}.
//
// Routes:
//
//	POST   /1/customers            create (201)
//	GET    /1/customers?page=N     list, 25 per page (200)
//	GET    /1/customers/{token}    retrieve (200)
//	PUT    /1/customers/{token}    partial update (200)
//	DELETE /1/customers/{token}    delete (204, no body)
//
// Decisions where the spec is silent:
//   - Modes: the key picks the mode. Options.TestKeys and Options.LiveKeys
//     list the accepted keys; each mode has its own customers, so a test key
//     never sees a live customer. A missing or unknown key, or a non-empty
//     password, is 401 "unauthenticated".
//   - Bodies are JSON only (Content-Type application/json). A body that is
//     not one JSON object, has duplicate keys or trailing data, or exceeds
//     MaxBodyBytes is 400 "bad_request". Unknown fields, wrong JSON types
//     (null included) and invalid values are 422 "invalid_resource" with one
//     message per offending param; every problem of a body is reported, not
//     just the first.
//   - Create: email is required; first_name and last_name are optional and
//     may be "" (checkout may know only an email, and a one-word name has
//     no last name). A card is optional (the spec's Decision); when given it
//     is validated minimally (see validate.go) and never echoed or stored.
//   - Update (PUT) takes email, first_name and last_name, partially: absent
//     fields stay. Email cannot be cleared; names can ("" is stored).
//   - Strings are stored verbatim: no trimming, no case folding.
//   - List order is created_at ascending, then token. created_at has
//     whole-second precision (the rendered ISO 8601 UTC form). A page
//     beyond the last answers 200 with an empty list, next null and
//     previous page-1; page must be a decimal integer 1..MaxPage and is the
//     only query parameter accepted (anything else is 400 "bad_request").
//   - Unknown routes are 404 "not_found"; known routes with a wrong method
//     are 405 "method_not_allowed" with an Allow header.
//   - CardDataSeen reports whether any request, whatever its route, method
//     or outcome, carried card data: a card field name (card, card_token,
//     number, cvc, expiry_month, expiry_year, card[...]) in the body or the
//     query, or a run of 12-19 digits that passes the Luhn check anywhere in
//     the body or the URL.
package fake

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/plugipay-sync/plugipay-sync/destination/internal/fakeapi"
)

// Route templates, as RequestCount names them.
const (
	RouteCustomers = "/1/customers"
	RouteCustomer  = "/1/customers/{token}"
	RouteOther     = "other"
)

// Protocol limits.
const (
	// PerPage is the fixed page size of the list.
	PerPage = 25
	// MaxPage is the largest accepted page number.
	MaxPage = 1_000_000
	// MaxBodyBytes is the largest request body the fake reads.
	MaxBodyBytes = 64 << 10
)

// Error codes of the error body's "error" field.
const (
	CodeBadRequest         = "bad_request"
	CodeUnauthenticated    = "unauthenticated"
	CodeNotFound           = "not_found"
	CodeMethodNotAllowed   = "method_not_allowed"
	CodeInvalidResource    = "invalid_resource"
	CodeTooManyRequests    = "too_many_requests"
	CodeInternalError      = "internal_error"
	CodeBadGateway         = "bad_gateway"
	CodeServiceUnavailable = "service_unavailable"
)

// Mode is the API mode a key belongs to.
type Mode string

// The two modes.
const (
	ModeTest Mode = "test"
	ModeLive Mode = "live"
)

// Customer is a customer as the API renders it. CreatedAt is UTC with
// whole seconds, so it marshals as ISO 8601 ("2026-01-02T15:04:05Z").
type Customer struct {
	Token     string    `json:"token"`
	Email     string    `json:"email"`
	FirstName string    `json:"first_name"`
	LastName  string    `json:"last_name"`
	CreatedAt time.Time `json:"created_at"`
}

// Message is one param-level problem of an error body.
type Message struct {
	Param   string `json:"param"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// ErrorBody is the body of every error answer.
type ErrorBody struct {
	Error       string    `json:"error"`
	Description string    `json:"error_description"`
	Messages    []Message `json:"messages,omitempty"`
}

// Pagination is the list answer's pagination object; Next and Previous
// are nil at the ends.
type Pagination struct {
	Current  int  `json:"current"`
	PerPage  int  `json:"per_page"`
	Count    int  `json:"count"`
	Next     *int `json:"next"`
	Previous *int `json:"previous"`
	Pages    int  `json:"pages"`
}

// Options configure a Server. The zero value has no keys: every request is
// answered 401.
type Options struct {
	// TestKeys and LiveKeys are the accepted secret keys of each mode. A
	// key may not be empty or appear twice.
	TestKeys, LiveKeys []string
	// Now is the server clock; nil means time.Now.
	Now func() time.Time
	// Seed makes customer tokens and the fault sequence reproducible; 0
	// seeds from crypto/rand.
	Seed uint64
	// RequestsPerSecond is the per-key limit, counted in fixed one-second
	// windows of the server clock; beyond it requests are answered 429 with
	// Retry-After. 0 disables it.
	RequestsPerSecond int
	// Faults are injected into authenticated requests; SetFaults changes
	// them at runtime.
	Faults Faults
}

// Server is the fake API. It is safe for concurrent use.
type Server struct {
	keys     map[string]Mode
	now      func() time.Time
	limiter  *fakeapi.Limiter
	faults   *faultInjector
	requests fakeapi.Counter

	mu       sync.Mutex
	modes    map[Mode]*store
	ids      *idGen
	writes   int
	cardSeen bool
}

// New returns a Server for opts. It panics on invalid options (an empty or
// repeated key, invalid Faults, a negative rate): they are programming
// errors in a test.
func New(opts Options) *Server {
	if err := opts.Faults.Validate(); err != nil {
		panic("fake: " + err.Error())
	}
	if opts.RequestsPerSecond < 0 {
		panic(fmt.Sprintf("fake: RequestsPerSecond must be >= 0 (got %d)", opts.RequestsPerSecond))
	}
	s := &Server{
		keys:    map[string]Mode{},
		now:     opts.Now,
		limiter: fakeapi.NewLimiter(opts.RequestsPerSecond),
		faults:  newFaultInjector(opts.Faults, opts.Seed),
		modes:   map[Mode]*store{ModeTest: newStore(), ModeLive: newStore()},
		ids:     newIDGen(opts.Seed),
	}
	if s.now == nil {
		s.now = time.Now
	}
	for mode, keys := range map[Mode][]string{ModeTest: opts.TestKeys, ModeLive: opts.LiveKeys} {
		for _, k := range keys {
			if k == "" {
				panic("fake: empty " + string(mode) + " key")
			}
			if _, dup := s.keys[k]; dup {
				panic("fake: key listed twice")
			}
			s.keys[k] = mode
		}
	}
	return s
}

var _ http.Handler = (*Server)(nil)

// ServeHTTP answers one API request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	route, token := routes.Match(r.URL.Path)
	body, tooLarge, readErr := fakeapi.ReadBody(r, MaxBodyBytes)
	s.requests.Add(r.Method, route)
	s.mu.Lock()
	if !s.cardSeen && carriesCard(r.URL, body) {
		s.cardSeen = true
	}
	s.mu.Unlock()

	switch route {
	case RouteOther:
		fail(w, http.StatusNotFound, CodeNotFound, "no route for "+r.URL.Path)
		return
	case RouteCustomers:
		if !fakeapi.Allowed(w, r.Method, http.MethodGet, http.MethodPost) {
			fail(w, http.StatusMethodNotAllowed, CodeMethodNotAllowed, r.Method+" is not allowed on "+RouteCustomers)
			return
		}
	case RouteCustomer:
		if !fakeapi.Allowed(w, r.Method, http.MethodGet, http.MethodPut, http.MethodDelete) {
			fail(w, http.StatusMethodNotAllowed, CodeMethodNotAllowed, r.Method+" is not allowed on "+RouteCustomer)
			return
		}
	}

	key, mode, ok := s.authenticate(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Basic realm="Pin"`)
		fail(w, http.StatusUnauthorized, CodeUnauthenticated, "Not authorised. (Check API Key)")
		return
	}
	if !s.limiter.Allow(w, key, s.now(), func(limit, _ int) {
		fail(w, http.StatusTooManyRequests, CodeTooManyRequests,
			"rate limit of "+strconv.Itoa(limit)+" requests per second exceeded")
	}) {
		return
	}
	d := s.faults.draw(r.Method != http.MethodGet)
	if d.Inject(w, r, func(status int, msg string) { fail(w, status, faultCodes[status], msg) }) {
		return
	}
	if tooLarge {
		fail(w, http.StatusBadRequest, CodeBadRequest, fmt.Sprintf("body is larger than %d bytes", MaxBodyBytes))
		return
	}
	if readErr != nil {
		fail(w, http.StatusBadRequest, CodeBadRequest, "read body: "+readErr.Error())
		return
	}

	var res result
	switch {
	case route == RouteCustomers && r.Method == http.MethodGet:
		res = s.list(mode, r)
	case route == RouteCustomers:
		res = s.create(mode, r, body)
	case r.Method == http.MethodGet:
		res = s.get(mode, token)
	case r.Method == http.MethodPut:
		res = s.update(mode, token, r, body)
	default:
		res = s.delete(mode, token)
	}
	if d.DropAfterWrite && res.executed {
		fakeapi.Drop(w)
		return
	}
	res.send(w)
}

// routes match a request path to its route template and customer token.
var routes = fakeapi.Routes{Collection: RouteCustomers, Item: RouteCustomer, Other: RouteOther}

// authenticate checks HTTP basic auth: a known key as the user name and an
// empty password.
func (s *Server) authenticate(r *http.Request) (key string, mode Mode, ok bool) {
	user, pass, ok := r.BasicAuth()
	if !ok || pass != "" {
		return "", "", false
	}
	mode, ok = s.keys[user]
	return user, mode, ok
}

// result is one answer: status plus the JSON body to send (nil for 204).
// executed marks a write that changed the store.
type result struct {
	status   int
	body     any
	executed bool
}

func (res result) send(w http.ResponseWriter) {
	if res.body == nil {
		w.WriteHeader(res.status)
		return
	}
	const ct = "application/json; charset=utf-8"
	if err := fakeapi.WriteJSON(w, res.status, ct, res.body); err != nil { // only a bug gets here: every body is plain data
		res = errResult(http.StatusInternalServerError, CodeInternalError, "encode response: "+err.Error())
		_ = fakeapi.WriteJSON(w, res.status, ct, res.body)
	}
}

// wrapped is the envelope of every successful answer with a body.
type wrapped struct {
	Response   any         `json:"response"`
	Status     int         `json:"status"`
	Count      *int        `json:"count,omitempty"`
	Pagination *Pagination `json:"pagination,omitempty"`
}

func okResult(status int, v any) result {
	return result{status: status, body: wrapped{Response: v, Status: status}}
}

func errResult(status int, code, desc string, msgs ...Message) result {
	return result{status: status, body: ErrorBody{Error: code, Description: desc, Messages: msgs}}
}

func fail(w http.ResponseWriter, status int, code, desc string) {
	errResult(status, code, desc).send(w)
}

func notFound(token string) result {
	return errResult(http.StatusNotFound, CodeNotFound, "The requested resource could not be found: customer "+strconv.Quote(token))
}

func invalidResource(msgs []Message) result {
	return errResult(http.StatusUnprocessableEntity, CodeInvalidResource, "One or more parameters were missing or invalid", msgs...)
}
