// Package pin is the sync.Destination for a Pin-style customers API (the
// project spec's other-destinations.md): HTTP basic auth with the secret
// key, answers wrapped in {"response": ...}, page-numbered lists, customers
// with first_name and last_name but no phone, tax id, metadata or external
// id.
//
// Such an API creates customers at checkout, together with card data the
// sync never handles, so the destination is update-only: CreateCustomer
// refuses without calling the API, and the reconciler links users to
// customers through its state DB (or the operator's LinkByEmail).
//
// Names: the API splits a name in two, sync.Customer has one. A name is
// split at its last space (see SplitName) and read back by JoinName, which
// undoes the split exactly for every string, so an unchanged user compares
// equal to what was written and is never updated again.
package pin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/plugipay-sync/plugipay-sync/destination/internal/apierr"
	"github.com/plugipay-sync/plugipay-sync/destination/internal/rest"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

// Defaults of Options.
const (
	// DefaultRequestsPerSecond is the config's default client-side cap on
	// calls.
	DefaultRequestsPerSecond = 10
	// DefaultMode is the mode label when Options.Mode is empty.
	DefaultMode = "test"
)

// Error codes of the errors this adapter makes up itself (the API's own
// codes come from its error bodies).
const (
	// CodeCreateNotSupported: CreateCustomer on an update-only destination.
	CodeCreateNotSupported = "create_not_supported"
	// CodeFieldNotSupported: a patch sets a field the API does not have.
	CodeFieldNotSupported = "field_not_supported"
	// CodeExternalIDNotSupported: FindByExternalID on an API without
	// external ids.
	CodeExternalIDNotSupported = "external_id_not_supported"
)

// Options configure a Pin destination.
type Options struct {
	// BaseURL is the API base including its version path, e.g.
	// "https://test-api.example.com/1". Required.
	BaseURL string
	// SecretKey is sent as the basic-auth user name with an empty
	// password. Required. The key picks the API's mode.
	SecretKey string
	// Mode is "test" or "live": a label for logs and the operator, since
	// the key alone picks the mode. Empty means DefaultMode.
	Mode string
	// Timeout bounds one attempt; 0 means rest.DefaultTimeout.
	Timeout time.Duration
	// MaxAttempts bounds the attempts of one call; 0 means
	// rest.DefaultMaxAttempts.
	MaxAttempts int
	// RequestsPerSecond caps the calls of all workers together; 0 means
	// no cap.
	RequestsPerSecond float64
	// MaxRetryAfter is the longest Retry-After honoured (see
	// rest.Options.MaxRetryAfter); 0 means rest.DefaultMaxRetryAfter.
	MaxRetryAfter time.Duration
	// HTTPClient sends the requests; nil means a client of its own.
	HTTPClient *http.Client
	// Registerer receives the transport's metrics; nil records none.
	Registerer prometheus.Registerer
	// Logger receives retries; nil logs nothing. It never sees the key.
	Logger *zap.Logger
}

// Pin is a sync.Destination backed by a Pin-style customers API.
type Pin struct {
	c    *rest.Client
	mode string
}

var (
	_ sync.Destination = (*Pin)(nil)
	_ sync.Prober      = (*Pin)(nil)
)

// New checks o and returns the destination.
func New(o Options) (*Pin, error) {
	if o.BaseURL == "" {
		return nil, errors.New("pin: BaseURL is required")
	}
	if u, err := url.Parse(o.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("pin: BaseURL %q must be an http(s) URL with a host", o.BaseURL)
	}
	if o.SecretKey == "" {
		return nil, errors.New("pin: SecretKey is required")
	}
	switch o.Mode {
	case "":
		o.Mode = DefaultMode
	case "test", "live":
	default:
		return nil, fmt.Errorf("pin: Mode must be %q or %q (got %q)", "test", "live", o.Mode)
	}
	if o.Timeout < 0 {
		return nil, fmt.Errorf("pin: Timeout must not be negative (got %s)", o.Timeout)
	}
	if o.MaxAttempts < 0 {
		return nil, fmt.Errorf("pin: MaxAttempts must not be negative (got %d)", o.MaxAttempts)
	}
	if o.RequestsPerSecond < 0 {
		return nil, fmt.Errorf("pin: RequestsPerSecond must not be negative (got %g)", o.RequestsPerSecond)
	}
	logger := o.Logger
	if logger != nil {
		logger = logger.With(zap.String("mode", o.Mode))
	}
	key := o.SecretKey
	c, err := rest.New(rest.Options{
		Destination:       "pin",
		BaseURL:           o.BaseURL,
		HTTPClient:        o.HTTPClient,
		Timeout:           o.Timeout,
		MaxAttempts:       o.MaxAttempts,
		RequestsPerSecond: o.RequestsPerSecond,
		MaxRetryAfter:     o.MaxRetryAfter,
		Registerer:        o.Registerer,
		Authorize:         func(r *http.Request) { r.SetBasicAuth(key, "") },
		ParseError:        parseError,
		Logger:            logger,
	})
	if err != nil {
		return nil, fmt.Errorf("pin: %w", err)
	}
	return &Pin{c: c, mode: o.Mode}, nil
}

// Probe reads the first page of customers, proving the key. The API
// reports no account id, so the identity is the host and the mode.
func (p *Pin) Probe(ctx context.Context) (sync.Identity, error) {
	var out struct {
		Response []customer `json:"response"`
	}
	if err := p.do(ctx, "list", http.MethodGet, "/customers?page=1", nil, &out, true); err != nil {
		return sync.Identity{}, fmt.Errorf("pin: list customers: %w", err)
	}
	return sync.Identity{API: "pin", Host: p.c.Host(), Mode: p.mode}, nil
}

// Mode returns the mode label ("test" or "live").
func (p *Pin) Mode() string { return p.mode }

// Capabilities: no external id anywhere, so no uniqueness, no filter and
// no idempotent create; no creates at all (checkout creates customers);
// email and name only.
func (p *Pin) Capabilities() sync.Capabilities {
	return sync.Capabilities{
		ExternalID:         sync.ExternalIDNone,
		UniqueExternalID:   false,
		FilterByExternalID: false,
		IdempotentCreate:   false,
		Create:             false,
		Metadata:           false,
		Phone:              false,
		TaxID:              false,
	}
}

// CreateCustomer never calls the API: it returns a *sync.APIError of kind
// sync.ErrInvalid with code CodeCreateNotSupported. A Pin-style API creates
// customers at checkout with card data, which the sync never handles; run
// it in update-only mode.
func (p *Pin) CreateCustomer(ctx context.Context, c sync.Customer, idempotencyKey string) (sync.Customer, error) {
	return sync.Customer{}, &sync.APIError{
		Kind: sync.ErrInvalid,
		Code: CodeCreateNotSupported,
		Message: "pin: customers are created at checkout together with card data, which the sync never handles; " +
			"use mode " + sync.ModeUpdateOnly,
	}
}

// UpdateCustomer sends a PUT with only the fields patch sets: email, and
// name as first_name and last_name (SplitName). A PUT of fixed values may
// run twice without harm, so it is retried after network errors, timeouts
// and 5xx. The API has no idempotency keys; idempotencyKey is unused. A
// patch setting phone, tax id or metadata is refused (sync.ErrInvalid,
// CodeFieldNotSupported) without a call: the reconciler does not send them
// to a destination lacking them. An empty patch reads the customer.
func (p *Pin) UpdateCustomer(ctx context.Context, id string, patch sync.Patch, idempotencyKey string) (sync.Customer, error) {
	var unsupported []string
	if patch.Phone != nil {
		unsupported = append(unsupported, "phone")
	}
	if patch.TaxID != nil {
		unsupported = append(unsupported, "tax id")
	}
	if patch.SetMetadata {
		unsupported = append(unsupported, "metadata")
	}
	if len(unsupported) > 0 {
		return sync.Customer{}, &sync.APIError{Kind: sync.ErrInvalid, Code: CodeFieldNotSupported,
			Message: "pin: customers have no " + strings.Join(unsupported, ", ")}
	}
	if patch.Empty() {
		return p.GetCustomer(ctx, id)
	}
	body := map[string]string{}
	if patch.Email != nil {
		body["email"] = *patch.Email
	}
	if patch.Name != nil {
		body["first_name"], body["last_name"] = SplitName(*patch.Name)
	}
	var out struct {
		Response customer `json:"response"`
	}
	if err := p.do(ctx, "update", http.MethodPut, customerPath(id), body, &out, true); err != nil {
		return sync.Customer{}, fmt.Errorf("pin: update customer %s: %w", id, err)
	}
	return out.Response.toSync(), nil
}

// GetCustomer fetches customer id (its token); an unknown token is an
// error wrapping sync.ErrNotFound.
func (p *Pin) GetCustomer(ctx context.Context, id string) (sync.Customer, error) {
	var out struct {
		Response customer `json:"response"`
	}
	if err := p.do(ctx, "get", http.MethodGet, customerPath(id), nil, &out, true); err != nil {
		return sync.Customer{}, fmt.Errorf("pin: get customer %s: %w", id, err)
	}
	return out.Response.toSync(), nil
}

// FindByExternalID answers sync.ErrNotFound without a call: the API keeps
// no external id.
func (p *Pin) FindByExternalID(ctx context.Context, externalID string) (sync.Customer, error) {
	return sync.Customer{}, &sync.APIError{Kind: sync.ErrNotFound, Code: CodeExternalIDNotSupported,
		Message: "pin: customers carry no external id"}
}

// FindByEmail walks every customer (the list has no email filter) and
// yields those whose email equals email, ignoring case. An empty email
// yields nothing without a call.
func (p *Pin) FindByEmail(ctx context.Context, email string) iter.Seq2[sync.Customer, error] {
	return func(yield func(sync.Customer, error) bool) {
		if email == "" {
			return
		}
		for c, err := range p.ListCustomers(ctx) {
			if err != nil {
				yield(sync.Customer{}, fmt.Errorf("pin: find customers by email: %w", err))
				return
			}
			if strings.EqualFold(c.Email, email) && !yield(c, nil) {
				return
			}
		}
	}
}

// ListCustomers yields every customer, fetching pages 1, 2, ... as it
// goes, following pagination.next until it is null. It sends nothing until
// iteration starts and stops fetching when the consumer stops.
func (p *Pin) ListCustomers(ctx context.Context) iter.Seq2[sync.Customer, error] {
	return func(yield func(sync.Customer, error) bool) {
		page := 1
		for {
			var out struct {
				Response   []customer `json:"response"`
				Pagination struct {
					Current int  `json:"current"`
					Next    *int `json:"next"`
				} `json:"pagination"`
			}
			if err := p.do(ctx, "list", http.MethodGet, "/customers?page="+strconv.Itoa(page), nil, &out, true); err != nil {
				yield(sync.Customer{}, fmt.Errorf("pin: list customers page %d: %w", page, err))
				return
			}
			for _, c := range out.Response {
				if !yield(c.toSync(), nil) {
					return
				}
			}
			next := out.Pagination.Next
			if next == nil {
				return
			}
			if *next <= page {
				yield(sync.Customer{}, fmt.Errorf("pin: list customers page %d: pagination.next is %d, not after it", page, *next))
				return
			}
			page = *next
		}
	}
}

// SplitName splits a name into first_name and last_name at its last
// space: "Budi Santoso Putra" gives "Budi Santoso" and "Putra". A name
// without a space, or whose last space is its last character, is all
// first name ("Cher" gives "Cher" and ""). JoinName undoes it exactly.
func SplitName(name string) (first, last string) {
	i := strings.LastIndexByte(name, ' ')
	if i < 0 || i == len(name)-1 {
		return name, ""
	}
	return name[:i], name[i+1:]
}

// JoinName is the sync name of first_name and last_name: first alone when
// last is empty, else first, a space and last. JoinName(SplitName(n)) == n
// for every n, so an unchanged name reads back equal. A customer created at
// checkout with only a last name reads as " Smith"; the sync then rewrites
// it once to the CRM's name.
func JoinName(first, last string) string {
	if last == "" {
		return first
	}
	return first + " " + last
}

// customer is the API's customer object. Fields the adapter does not use
// (created_at, a card summary) are ignored.
type customer struct {
	Token     string `json:"token"`
	Email     string `json:"email"`
	FirstName string `json:"first_name"`
	LastName  string `json:"last_name"`
}

// toSync converts c; ExternalID is always empty.
func (c customer) toSync() sync.Customer {
	return sync.Customer{ID: c.Token, Email: c.Email, Name: JoinName(c.FirstName, c.LastName)}
}

func customerPath(token string) string { return "/customers/" + url.PathEscape(token) }

// errorBody is the API's error answer.
type errorBody struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
	Messages    []struct {
		Param   string `json:"param"`
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"messages"`
}

// parseError reads the error code and a message naming each invalid
// param. A body that is not an error object gives an empty code (the
// transport then uses the status).
func parseError(status int, body []byte) (code, message string) {
	var e errorBody
	if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
		return "", http.StatusText(status)
	}
	parts := []string{e.Description}
	for _, m := range e.Messages {
		parts = append(parts, m.Param+": "+m.Message+" ("+m.Code+")")
	}
	return e.Error, strings.Join(parts, "; ")
}

// do sends one call through the transport and maps its error to the
// reconciler's kinds (apierr).
func (p *Pin) do(ctx context.Context, op, method, path string, body, out any, retryable bool) error {
	return apierr.FromREST(p.c.Do(ctx, op, method, path, body, out, retryable))
}
