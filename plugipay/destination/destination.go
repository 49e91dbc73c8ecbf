// Package destination adapts the Plugipay SDK to the reconciler's
// sync.Destination interface: it translates customers and maps the SDK's
// error kinds onto the reconciler's. It is the only package that knows
// both, so sync/ never imports plugipay/.
package destination

import (
	"context"
	"errors"
	"fmt"
	"iter"

	"github.com/plugipay-sync/plugipay-sync/plugipay"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

// Plugipay is a sync.Destination backed by a Plugipay client.
type Plugipay struct {
	customers *plugipay.CustomerService
	identity  sync.Identity
}

var (
	_ sync.Destination = (*Plugipay)(nil)
	_ sync.Prober      = (*Plugipay)(nil)
)

// New returns the destination for client.
func New(client *plugipay.Client) *Plugipay {
	return &Plugipay{customers: client.Customers, identity: sync.Identity{
		API: "plugipay", Host: client.Host(), Mode: client.Mode(), OnBehalfOf: client.OnBehalfOf(),
	}}
}

// Probe lists one customer: a signed read that proves the key, and whose
// answer names the workspace (accountId) when it holds any customer.
func (p *Plugipay) Probe(ctx context.Context) (sync.Identity, error) {
	page, err := p.customers.List(ctx, plugipay.ListParams{Limit: 1})
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
func (p *Plugipay) Capabilities() sync.Capabilities {
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
func (p *Plugipay) CreateCustomer(ctx context.Context, c sync.Customer, idempotencyKey string) (sync.Customer, error) {
	params := plugipay.CustomerParams{
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
func (p *Plugipay) UpdateCustomer(ctx context.Context, id string, patch sync.Patch, idempotencyKey string) (sync.Customer, error) {
	params := plugipay.CustomerParams{
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
func (p *Plugipay) GetCustomer(ctx context.Context, id string) (sync.Customer, error) {
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
func (p *Plugipay) FindByExternalID(ctx context.Context, externalID string) (sync.Customer, error) {
	page, err := p.customers.List(ctx, plugipay.ListParams{ExternalID: externalID, Limit: 100})
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
	return sync.Customer{}, &sync.APIError{Kind: sync.ErrNotFound, Code: plugipay.CodeNotFound,
		Message: msg, RequestID: page.RequestID}
}

// FindByEmail yields the customers whose email is exactly email, paging
// the list endpoint's email filter 100 at a time.
func (p *Plugipay) FindByEmail(ctx context.Context, email string) iter.Seq2[sync.Customer, error] {
	return p.list(ctx, plugipay.ListParams{Email: email, Limit: 100})
}

// ListCustomers yields every customer, 100 per request.
func (p *Plugipay) ListCustomers(ctx context.Context) iter.Seq2[sync.Customer, error] {
	return p.list(ctx, plugipay.ListParams{Limit: 100})
}

func (p *Plugipay) list(ctx context.Context, params plugipay.ListParams) iter.Seq2[sync.Customer, error] {
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

func fromPlugipay(c *plugipay.Customer) sync.Customer {
	return sync.Customer{
		ID:         c.ID,
		ExternalID: c.ExternalID,
		Email:      c.Email,
		Name:       c.Name,
		Phone:      c.Phone,
		TaxID:      c.TaxID,
		Metadata:   c.Metadata,
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
	{plugipay.ErrConflict, sync.ErrConflict},
	{plugipay.ErrNotFound, sync.ErrNotFound},
	{plugipay.ErrValidation, sync.ErrInvalid},
	{plugipay.ErrAuth, sync.ErrFatal},
	{plugipay.ErrScope, sync.ErrFatal},
	{plugipay.ErrIdempotency, sync.ErrIdempotency},
}

// mapError turns an SDK error into a *sync.APIError carrying the code and
// request id.
func mapError(err error) error {
	var pe *plugipay.Error
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
