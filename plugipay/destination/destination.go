// Package destination adapts the Plugipay SDK to the reconciler's
// sync.Destination interface: it translates customers and maps the SDK's
// error kinds onto the reconciler's. It is the only package that knows
// both, so sync/ never imports plugipay/.
package destination

import (
	"context"
	"errors"
	"fmt"

	"github.com/plugipay-sync/plugipay-sync/plugipay"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

// Plugipay is a sync.Destination backed by a Plugipay client.
type Plugipay struct {
	customers *plugipay.CustomerService
}

var _ sync.Destination = (*Plugipay)(nil)

// New returns the destination for client.
func New(client *plugipay.Client) *Plugipay {
	return &Plugipay{customers: client.Customers}
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

// UpdateCustomer sets every managed field of customer id: an empty value
// clears the field and empty metadata clears the map (the API replaces the
// whole map, so the complete desired map is always sent).
func (p *Plugipay) UpdateCustomer(ctx context.Context, id string, c sync.Customer, idempotencyKey string) (sync.Customer, error) {
	params := plugipay.CustomerParams{
		Email: plugipay.String(c.Email),
		Name:  plugipay.String(c.Name),
		Phone: plugipay.String(c.Phone),
		TaxID: plugipay.String(c.TaxID),
	}
	if len(c.Metadata) > 0 {
		params.Metadata = c.Metadata
	} else {
		params.ClearMetadata = true
	}
	got, err := p.customers.Update(ctx, id, params, idempotencyKey)
	if err != nil {
		return sync.Customer{}, mapError(err)
	}
	return fromPlugipay(got), nil
}

// FindByExternalID looks the customer up with the list endpoint's
// externalId filter. The SDK drops every returned customer whose
// externalId differs (older servers ignore the filter), so a match is exact.
func (p *Plugipay) FindByExternalID(ctx context.Context, externalID string) (sync.Customer, error) {
	for c, err := range p.customers.ListAll(ctx, plugipay.ListParams{ExternalID: externalID, Limit: 100}) {
		if err != nil {
			return sync.Customer{}, fmt.Errorf("find customer by externalId: %w", mapError(err))
		}
		if c.ExternalID == externalID {
			return fromPlugipay(c), nil
		}
	}
	return sync.Customer{}, &sync.APIError{Kind: sync.ErrNotFound, Code: plugipay.CodeNotFound,
		Message: "no customer has this externalId"}
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
