// Package plugipay is the sync.Destination for Plugipay: it builds the SDK
// client (package plugipay at the module's root, a standalone SDK),
// translates customers and maps the SDK's error kinds onto the
// reconciler's with a table. It is the only package that knows both, so
// sync/ never imports the SDK. Like destination/paygate and
// destination/pin it offers type Destination and New(Options).
package plugipay

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	sdk "github.com/plugipay-sync/plugipay-sync/plugipay"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

// Options configure a Destination: the SDK client's settings (see
// sdk.Options, where the zero values' defaults are).
type Options struct {
	// BaseURL is the API origin, e.g. https://plugipay.com.
	BaseURL string
	// KeyID and Secret are the API key pair. Required.
	KeyID, Secret string
	// OnBehalfOf is the merchant account a platform key acts for.
	OnBehalfOf string
	// Timeout bounds one attempt; MaxAttempts the attempts of a call.
	Timeout     time.Duration
	MaxAttempts int
	// ReadRate and WriteRate cap the client's requests per second; a
	// negative value removes the cap, zero is the SDK's default.
	ReadRate, WriteRate float64
	// MaxRetryAfter is the longest Retry-After honoured.
	MaxRetryAfter time.Duration
	// HTTPClient sends the requests; nil means a client of its own.
	HTTPClient *http.Client
	// Registerer receives the API metrics; nil records none.
	Registerer prometheus.Registerer
	// Logger receives retries; nil logs nothing. It never sees the secret.
	Logger *zap.Logger
	// UserAgent names the client to the server (default the SDK's); a
	// replica of platform mode names itself.
	UserAgent string
}

// Destination is a sync.Destination backed by a Plugipay client.
type Destination struct {
	customers *sdk.CustomerService
	identity  sync.Identity
}

var (
	_ sync.Destination = (*Destination)(nil)
	_ sync.Prober      = (*Destination)(nil)
)

// New checks o, builds the SDK client and returns the destination.
func New(o Options) (*Destination, error) {
	c, err := sdk.New(sdk.Options{
		BaseURL: o.BaseURL, KeyID: o.KeyID, Secret: o.Secret, OnBehalfOf: o.OnBehalfOf,
		Timeout: o.Timeout, MaxAttempts: o.MaxAttempts, ReadRate: o.ReadRate, WriteRate: o.WriteRate,
		MaxRetryAfter: o.MaxRetryAfter, HTTPClient: o.HTTPClient, Registerer: o.Registerer, Logger: o.Logger,
		UserAgent: o.UserAgent,
	})
	if err != nil {
		return nil, err
	}
	return FromClient(c), nil
}

// FromClient returns the destination for a client built elsewhere (tests,
// benchmarks, a program that shares one client).
func FromClient(client *sdk.Client) *Destination {
	return &Destination{customers: client.Customers, identity: sync.Identity{
		API: "plugipay", Host: client.Host(), Mode: client.Mode(), OnBehalfOf: client.OnBehalfOf(),
	}}
}

// Probe lists one customer: a signed read that proves the key, and whose
// answer names the workspace (accountId) when it holds any customer.
func (p *Destination) Probe(ctx context.Context) (sync.Identity, error) {
	page, err := p.customers.List(ctx, sdk.ListParams{Limit: 1})
	if err != nil {
		return sync.Identity{}, mapError(err)
	}
	id := p.identity
	for _, c := range page.Data {
		id.Account = c.AccountID
	}
	return id, nil
}

// Capabilities: Plugipay keeps the external id in a field of its own,
// refuses a second customer with the same one (409 conflict), filters the
// list by it, replays a create sent again with the same Idempotency-Key,
// and has every customer field and metadata.
func (p *Destination) Capabilities() sync.Capabilities {
	return sync.Capabilities{
		ExternalID:         sync.ExternalIDField,
		UniqueExternalID:   true,
		FilterByExternalID: true,
		IdempotentCreate:   true,
		Create:             true,
		Metadata:           true,
		Phone:              true,
		TaxID:              true,
	}
}

// CreateCustomer creates c, sending only the fields that have a value.
func (p *Destination) CreateCustomer(ctx context.Context, c sync.Customer, idempotencyKey string) (sync.Customer, error) {
	params := sdk.CustomerParams{
		ExternalID: nonEmpty(c.ExternalID),
		Email:      nonEmpty(c.Email),
		Name:       nonEmpty(c.Name),
		Phone:      nonEmpty(c.Phone),
		TaxID:      nonEmpty(c.TaxID),
	}
	if len(c.Metadata) > 0 {
		params.Metadata = c.Metadata
	}
	got, err := p.customers.Create(ctx, params, idempotencyKey)
	if err != nil {
		return sync.Customer{}, mapError(err)
	}
	return fromPlugipay(got), nil
}

// UpdateCustomer sends the fields p sets and nothing else, so fields the
// sync does not manage keep whatever another tool put there. Metadata, when
// set, replaces the whole map (the caller merges); an empty map clears it.
func (p *Destination) UpdateCustomer(ctx context.Context, id string, patch sync.Patch, idempotencyKey string) (sync.Customer, error) {
	params := sdk.CustomerParams{
		Email: patch.Email,
		Name:  patch.Name,
		Phone: patch.Phone,
		TaxID: patch.TaxID,
	}
	if patch.SetMetadata {
		if len(patch.Metadata) > 0 {
			params.Metadata = patch.Metadata
		} else {
			params.ClearMetadata = true
		}
	}
	got, err := p.customers.Update(ctx, id, params, idempotencyKey)
	if err != nil {
		return sync.Customer{}, mapError(err)
	}
	return fromPlugipay(got), nil
}

// GetCustomer fetches customer id.
func (p *Destination) GetCustomer(ctx context.Context, id string) (sync.Customer, error) {
	got, err := p.customers.Get(ctx, id)
	if err != nil {
		return sync.Customer{}, mapError(err)
	}
	return fromPlugipay(got), nil
}

// FindByExternalID looks the customer up with the list endpoint's
// externalId filter, one page of 100. The SDK drops every returned customer
// whose externalId differs, so a match is exact. An external id is unique,
// so a filtered list never has a second page: one that does means the
// server ignores the filter (an older API). Rather than walk every customer
// this answers not found, and the reconciler goes on to FindByEmail.
func (p *Destination) FindByExternalID(ctx context.Context, externalID string) (sync.Customer, error) {
	page, err := p.customers.List(ctx, sdk.ListParams{ExternalID: externalID, Limit: 100})
	if err != nil {
		return sync.Customer{}, fmt.Errorf("find customer by externalId: %w", mapError(err))
	}
	for _, c := range page.Data {
		if c.ExternalID == externalID {
			return fromPlugipay(&c), nil
		}
	}
	msg := "no customer has this externalId"
	if page.HasMore {
		msg = "the server ignores the externalId filter; not found on its first page"
	}
	return sync.Customer{}, &sync.APIError{Kind: sync.ErrNotFound, Code: sdk.CodeNotFound,
		Message: msg, RequestID: page.RequestID}
}

// FindByEmail yields the customers whose email is exactly email, paging
// the list endpoint's email filter 100 at a time.
func (p *Destination) FindByEmail(ctx context.Context, email string) iter.Seq2[sync.Customer, error] {
	return p.list(ctx, sdk.ListParams{Email: email, Limit: 100})
}

// ListCustomers yields every customer, 100 per request.
func (p *Destination) ListCustomers(ctx context.Context) iter.Seq2[sync.Customer, error] {
	return p.list(ctx, sdk.ListParams{Limit: 100})
}

func (p *Destination) list(ctx context.Context, params sdk.ListParams) iter.Seq2[sync.Customer, error] {
	return func(yield func(sync.Customer, error) bool) {
		for c, err := range p.customers.ListAll(ctx, params) {
			if err != nil {
				yield(sync.Customer{}, mapError(err))
				return
			}
			if !yield(fromPlugipay(c), nil) {
				return
			}
		}
	}
}

func fromPlugipay(c *sdk.Customer) sync.Customer {
	return sync.Customer{
		ID:         c.ID,
		ExternalID: c.ExternalID,
		Email:      c.Email,
		Name:       c.Name,
		Phone:      c.Phone,
		TaxID:      c.TaxID,
		Metadata:   c.Metadata,
		RequestID:  c.RequestID,
	}
}

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// kinds maps the SDK's error kinds to the reconciler's. Kinds not listed
// (rate limits, server errors, network, timeouts) are transient: the
// record is retried on a later run.
var kinds = []struct{ sdk, sync error }{
	{sdk.ErrConflict, sync.ErrConflict},
	{sdk.ErrNotFound, sync.ErrNotFound},
	{sdk.ErrValidation, sync.ErrInvalid},
	{sdk.ErrAuth, sync.ErrFatal},
	{sdk.ErrScope, sync.ErrFatal},
	{sdk.ErrIdempotency, sync.ErrIdempotency},
}

// mapError turns an SDK error into a *sync.APIError carrying the code and
// request id.
func mapError(err error) error {
	var pe *sdk.Error
	if !errors.As(err, &pe) {
		return err
	}
	ae := &sync.APIError{Status: pe.StatusCode, Code: pe.Code, Message: pe.Message, RequestID: pe.RequestID, Err: err}
	for _, k := range kinds {
		if errors.Is(err, k.sdk) {
			ae.Kind = k.sync
			break
		}
	}
	return ae
}
