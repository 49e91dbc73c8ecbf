// Package paygate is the sync.Destination for a PayGate-style customer API
// (Bearer secret key, snake_case customers under /v1/customers, Stripe-like
// cursor lists). The API has no external-id field, no uniqueness rule and
// no idempotency keys, so the adapter keeps the CRM user id in a reserved
// metadata key, never retries a create that may have executed, and offers
// ListCreatedSince so the reconciler can find the result of an unconfirmed
// create without walking every customer.
package paygate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"maps"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/plugipay-sync/plugipay-sync/destination/internal/apierr"
	"github.com/plugipay-sync/plugipay-sync/destination/internal/rest"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

// Defaults of Options.
const (
	// DefaultExternalIDKey is the metadata key holding the CRM user id.
	DefaultExternalIDKey = "crm_user_id"
	// DefaultRequestsPerSecond caps the adapter's calls, all workers
	// together.
	DefaultRequestsPerSecond = 25
	// pageSize is the list limit the adapter asks for: the API's maximum.
	pageSize = 100
	// maxMetadataKeyLen is the API's metadata key length limit.
	maxMetadataKeyLen = 40
)

// Error codes of the refusals the adapter answers without a call.
const (
	CodeReservedMetadataKey = "reserved_metadata_key"
	CodeMissingExternalID   = "missing_external_id"
	CodeUnsupportedField    = "unsupported_field"
	CodeFilterUnsupported   = "filter_unsupported"
)

// Options configure a Destination.
type Options struct {
	// BaseURL is the API root including /v1, e.g.
	// "https://api.paygate.example/v1". Required: there is no default, so a
	// test setup can never reach a live API by accident.
	BaseURL string
	// SecretKey is the sk_test_... or sk_live_... key sent as a Bearer
	// token.
	SecretKey string
	// ExternalIDKey is the metadata key that holds the CRM user id; empty
	// means DefaultExternalIDKey.
	ExternalIDKey string
	// Timeout bounds one attempt; 0 means rest.DefaultTimeout.
	Timeout time.Duration
	// MaxAttempts bounds the attempts of one call; 0 means
	// rest.DefaultMaxAttempts.
	MaxAttempts int
	// RequestsPerSecond caps the calls of all workers together; 0 means
	// no cap (DefaultRequestsPerSecond is the config's default).
	RequestsPerSecond float64
	// MaxRetryAfter is the longest Retry-After honoured (see
	// rest.Options.MaxRetryAfter); 0 means rest.DefaultMaxRetryAfter.
	MaxRetryAfter time.Duration
	// HTTPClient sends the requests; nil means a client of its own.
	HTTPClient *http.Client
	// Registerer receives the transport's metrics; nil records none.
	Registerer prometheus.Registerer
	// Logger receives retries; nil logs nothing.
	Logger *zap.Logger
}

// Destination is a sync.Destination backed by a PayGate-style API.
type Destination struct {
	c      *rest.Client
	extKey string
	mode   string
}

var (
	_ sync.Destination        = (*Destination)(nil)
	_ sync.CreatedSinceLister = (*Destination)(nil)
	_ sync.Prober             = (*Destination)(nil)
)

// New checks o and returns its Destination.
func New(o Options) (*Destination, error) {
	if o.BaseURL == "" {
		return nil, errors.New("paygate: BaseURL is required (e.g. https://api.paygate.example/v1)")
	}
	if u, err := url.Parse(o.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("paygate: BaseURL %q must be an http(s) URL with a host", o.BaseURL)
	}
	if !strings.HasPrefix(o.SecretKey, "sk_test_") && !strings.HasPrefix(o.SecretKey, "sk_live_") ||
		len(o.SecretKey) <= len("sk_test_") {
		return nil, errors.New("paygate: SecretKey must be an sk_test_... or sk_live_... key")
	}
	if strings.ContainsAny(o.SecretKey, " \t\r\n") {
		return nil, errors.New("paygate: SecretKey must not contain whitespace")
	}
	if o.ExternalIDKey == "" {
		o.ExternalIDKey = DefaultExternalIDKey
	}
	if n := utf8.RuneCountInString(o.ExternalIDKey); n > maxMetadataKeyLen {
		return nil, fmt.Errorf("paygate: ExternalIDKey %q must be at most %d characters (got %d)", o.ExternalIDKey, maxMetadataKeyLen, n)
	}
	if o.Timeout < 0 || o.MaxAttempts < 0 || o.RequestsPerSecond < 0 {
		return nil, errors.New("paygate: Timeout, MaxAttempts and RequestsPerSecond must not be negative")
	}
	auth := "Bearer " + o.SecretKey
	c, err := rest.New(rest.Options{
		Destination:       "paygate",
		BaseURL:           o.BaseURL,
		HTTPClient:        o.HTTPClient,
		Timeout:           o.Timeout,
		MaxAttempts:       o.MaxAttempts,
		RequestsPerSecond: o.RequestsPerSecond,
		MaxRetryAfter:     o.MaxRetryAfter,
		Registerer:        o.Registerer,
		Authorize:         func(r *http.Request) { r.Header.Set("Authorization", auth) },
		ParseError:        parseError,
		Logger:            o.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("paygate: %w", err)
	}
	mode := "test"
	if strings.HasPrefix(o.SecretKey, "sk_live_") {
		mode = "live"
	}
	return &Destination{c: c, extKey: o.ExternalIDKey, mode: mode}, nil
}

// Probe lists one customer, proving the key. The API reports no account
// id, so the identity is the host and the key's mode.
func (d *Destination) Probe(ctx context.Context) (sync.Identity, error) {
	var p listPage
	if err := d.do(ctx, "list", http.MethodGet, "/customers?limit=1", nil, &p, true); err != nil {
		return sync.Identity{}, fmt.Errorf("paygate: list customers: %w", err)
	}
	return sync.Identity{API: "paygate", Host: d.c.Host(), Mode: d.mode}, nil
}

// parseError reads {"error": {"type", "code", "message"}}.
func parseError(_ int, body []byte) (code, message string) {
	var e struct {
		Error struct {
			Type    string `json:"type"`
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil {
		return "", ""
	}
	code = e.Error.Code
	if code == "" {
		code = e.Error.Type
	}
	return code, e.Error.Message
}

// Capabilities: the external id lives in a metadata key the API neither
// keeps unique nor filters by; creates are not idempotent; customers have
// metadata and a phone but no tax id.
func (d *Destination) Capabilities() sync.Capabilities {
	return sync.Capabilities{
		ExternalID:         sync.ExternalIDMetadata,
		UniqueExternalID:   false,
		FilterByExternalID: false,
		IdempotentCreate:   false,
		Create:             true,
		Metadata:           true,
		Phone:              true,
		TaxID:              false,
	}
}

// customer is the API's customer object.
type customer struct {
	ID       string            `json:"id"`
	Object   string            `json:"object"`
	Email    *string           `json:"email"`
	Name     *string           `json:"name"`
	Phone    *string           `json:"phone"`
	Metadata map[string]string `json:"metadata"`
}

// toSync moves the reserved metadata key into ExternalID.
func (d *Destination) toSync(c *customer) sync.Customer {
	out := sync.Customer{ID: c.ID, Email: deref(c.Email), Name: deref(c.Name), Phone: deref(c.Phone)}
	if len(c.Metadata) > 0 {
		md := maps.Clone(c.Metadata)
		out.ExternalID = md[d.extKey]
		delete(md, d.extKey)
		if len(md) > 0 {
			out.Metadata = md
		}
	}
	return out
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func invalid(code, msg string) error {
	return &sync.APIError{Kind: sync.ErrInvalid, Code: code, Message: msg}
}

// createBody is a create's body: only the fields with a value.
type createBody struct {
	Email    string            `json:"email,omitempty"`
	Name     string            `json:"name,omitempty"`
	Phone    string            `json:"phone,omitempty"`
	Metadata map[string]string `json:"metadata"`
}

// CreateCustomer creates c, its ExternalID stored in the reserved metadata
// key. idempotencyKey is ignored: the API has no idempotency keys. So the
// create is never retried after an answer it may have executed behind (a
// 5xx, a timeout, a dropped connection; a 429 is retried, the API refuses
// those before executing): such a failure comes back transient, and the
// reconciler looks for the customer (ListCreatedSince) before creating
// again. A customer without ExternalID, with metadata already using the
// reserved key, or with a TaxID (the API has no such field) is refused
// with an ErrInvalid *sync.APIError, without a call.
func (d *Destination) CreateCustomer(ctx context.Context, c sync.Customer, _ string) (sync.Customer, error) {
	if c.ExternalID == "" {
		return sync.Customer{}, invalid(CodeMissingExternalID, "a customer needs an external id, stored in metadata key "+strconv.Quote(d.extKey))
	}
	if _, taken := c.Metadata[d.extKey]; taken {
		return sync.Customer{}, invalid(CodeReservedMetadataKey, "metadata key "+strconv.Quote(d.extKey)+" is reserved for the external id")
	}
	if c.TaxID != "" {
		return sync.Customer{}, invalid(CodeUnsupportedField, "the API has no tax id field")
	}
	md := make(map[string]string, len(c.Metadata)+1)
	maps.Copy(md, c.Metadata)
	md[d.extKey] = c.ExternalID
	var got customer
	body := createBody{Email: c.Email, Name: c.Name, Phone: c.Phone, Metadata: md}
	if err := d.do(ctx, "create", http.MethodPost, "/customers", body, &got, false); err != nil {
		return sync.Customer{}, fmt.Errorf("paygate: create customer: %w", err)
	}
	return d.toSync(&got), nil
}

// UpdateCustomer PATCHes the fields p sets and nothing else; setting
// fields to values is idempotent, so the call is retried. The API merges
// metadata key by key, so with p.SetMetadata every key of p.Metadata is
// sent, and each key of p.MetadataUnset is sent as "" (which removes it);
// the reserved external-id key is never sent, whichever of the two holds
// it. A metadata value "" therefore removes its key rather than storing
// "". A patch that leaves nothing to send reads the customer instead.
// A TaxID in p is refused with ErrInvalid, without a call.
// idempotencyKey is ignored.
func (d *Destination) UpdateCustomer(ctx context.Context, id string, p sync.Patch, _ string) (sync.Customer, error) {
	if p.TaxID != nil {
		return sync.Customer{}, invalid(CodeUnsupportedField, "the API has no tax id field")
	}
	body := map[string]any{}
	for name, v := range map[string]*string{"email": p.Email, "name": p.Name, "phone": p.Phone} {
		if v != nil {
			body[name] = *v
		}
	}
	if p.SetMetadata {
		md := map[string]string{}
		for _, k := range p.MetadataUnset {
			md[k] = ""
		}
		maps.Copy(md, p.Metadata)
		delete(md, d.extKey)
		if len(md) > 0 {
			body["metadata"] = md
		}
	}
	if len(body) == 0 {
		c, err := d.GetCustomer(ctx, id)
		if err != nil {
			return sync.Customer{}, fmt.Errorf("paygate: update customer (nothing to change): %w", err)
		}
		return c, nil
	}
	var got customer
	if err := d.do(ctx, "update", http.MethodPatch, "/customers/"+url.PathEscape(id), body, &got, true); err != nil {
		return sync.Customer{}, fmt.Errorf("paygate: update customer %s: %w", id, err)
	}
	return d.toSync(&got), nil
}

// GetCustomer fetches customer id; an unknown or deleted id is an error
// wrapping sync.ErrNotFound.
func (d *Destination) GetCustomer(ctx context.Context, id string) (sync.Customer, error) {
	var got customer
	if err := d.do(ctx, "get", http.MethodGet, "/customers/"+url.PathEscape(id), nil, &got, true); err != nil {
		return sync.Customer{}, fmt.Errorf("paygate: get customer %s: %w", id, err)
	}
	return d.toSync(&got), nil
}

// FindByExternalID answers ErrNotFound without a call: the API cannot
// filter by metadata (Capabilities.FilterByExternalID is false), and the
// reconciler finds customers by the list walk or ListCreatedSince instead.
func (d *Destination) FindByExternalID(_ context.Context, _ string) (sync.Customer, error) {
	return sync.Customer{}, &sync.APIError{Kind: sync.ErrNotFound, Code: CodeFilterUnsupported,
		Message: "the API cannot filter customers by metadata"}
}

// FindByEmail yields the customers whose email is exactly email, paging
// the list's email filter 100 at a time.
func (d *Destination) FindByEmail(ctx context.Context, email string) iter.Seq2[sync.Customer, error] {
	return d.list(ctx, url.Values{"email": {email}})
}

// ListCustomers yields every customer, newest first, 100 per request.
func (d *Destination) ListCustomers(ctx context.Context) iter.Seq2[sync.Customer, error] {
	return d.list(ctx, url.Values{})
}

// ListCreatedSince yields the customers created at or after since (to the
// second: the API filters on unix seconds, so since is rounded down).
func (d *Destination) ListCreatedSince(ctx context.Context, since time.Time) iter.Seq2[sync.Customer, error] {
	return d.list(ctx, url.Values{"created[gte]": {strconv.FormatInt(since.Unix(), 10)}})
}

// listPage is the API's list object.
type listPage struct {
	Object  string     `json:"object"`
	Data    []customer `json:"data"`
	HasMore bool       `json:"has_more"`
}

// list pages through the list endpoint with filter, 100 per request,
// passing the last id of each page as starting_after. It does no I/O until
// iteration starts; an error is yielded once and ends the walk.
func (d *Destination) list(ctx context.Context, filter url.Values) iter.Seq2[sync.Customer, error] {
	return func(yield func(sync.Customer, error) bool) {
		q := maps.Clone(filter)
		q.Set("limit", strconv.Itoa(pageSize))
		for {
			var p listPage
			if err := d.do(ctx, "list", http.MethodGet, "/customers?"+q.Encode(), nil, &p, true); err != nil {
				yield(sync.Customer{}, fmt.Errorf("paygate: list customers: %w", err))
				return
			}
			for i := range p.Data {
				if !yield(d.toSync(&p.Data[i]), nil) {
					return
				}
			}
			if !p.HasMore {
				return
			}
			if len(p.Data) == 0 {
				yield(sync.Customer{}, &sync.APIError{Code: "invalid_response", Message: "paygate: list customers: has_more with an empty page"})
				return
			}
			q.Set("starting_after", p.Data[len(p.Data)-1].ID)
		}
	}
}

// do sends one call through the transport and maps its error to the
// reconciler's kinds (apierr).
func (d *Destination) do(ctx context.Context, op, method, path string, body, out any, retryable bool) error {
	return apierr.FromREST(d.c.Do(ctx, op, method, path, body, out, retryable))
}
