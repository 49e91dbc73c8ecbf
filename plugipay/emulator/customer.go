package emulator

import (
	"maps"
	"time"

	"github.com/plugipay-sync/plugipay-sync/plugipay"
)

// timeLayout renders createdAt, updatedAt and meta.timestamp: RFC 3339 in
// UTC with millisecond precision, the precision the emulator keeps.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// record is a stored customer. A nil string pointer or a nil Metadata map is
// JSON null; the emulator never stores "" or an empty map (both mean null).
type record struct {
	ID                    string            `json:"id"`
	ARN                   string            `json:"arn"`
	AccountID             string            `json:"accountId"`
	ExternalID            *string           `json:"externalId"`
	Email                 *string           `json:"email"`
	Name                  *string           `json:"name"`
	Phone                 *string           `json:"phone"`
	TaxID                 *string           `json:"taxId"`
	DefaultPaymentTokenID *string           `json:"defaultPaymentTokenId"`
	Metadata              map[string]string `json:"metadata"`
	CreatedAt             time.Time         `json:"createdAt"`
	UpdatedAt             time.Time         `json:"updatedAt"`
}

// wireCustomer is the customer object exactly as the API renders it, with
// null for every empty nullable field.
type wireCustomer struct {
	ID                    string            `json:"id"`
	ARN                   string            `json:"arn"`
	AccountID             string            `json:"accountId"`
	ExternalID            *string           `json:"externalId"`
	Email                 *string           `json:"email"`
	Name                  *string           `json:"name"`
	Phone                 *string           `json:"phone"`
	TaxID                 *string           `json:"taxId"`
	DefaultPaymentTokenID *string           `json:"defaultPaymentTokenId"`
	Metadata              map[string]string `json:"metadata"`
	CreatedAt             string            `json:"createdAt"`
	UpdatedAt             string            `json:"updatedAt"`
}

func (c *record) wire() wireCustomer {
	return wireCustomer{
		ID:                    c.ID,
		ARN:                   c.ARN,
		AccountID:             c.AccountID,
		ExternalID:            c.ExternalID,
		Email:                 c.Email,
		Name:                  c.Name,
		Phone:                 c.Phone,
		TaxID:                 c.TaxID,
		DefaultPaymentTokenID: c.DefaultPaymentTokenID,
		Metadata:              maps.Clone(c.Metadata),
		CreatedAt:             c.CreatedAt.UTC().Format(timeLayout),
		UpdatedAt:             c.UpdatedAt.UTC().Format(timeLayout),
	}
}

func (c *record) clone() *record {
	cp := *c
	cp.Metadata = maps.Clone(c.Metadata)
	return &cp
}

func (c *record) public() plugipay.Customer {
	w := c.wire()
	return plugipay.Customer{
		ID:                    w.ID,
		ARN:                   w.ARN,
		AccountID:             w.AccountID,
		ExternalID:            deref(w.ExternalID),
		Email:                 deref(w.Email),
		Name:                  deref(w.Name),
		Phone:                 deref(w.Phone),
		TaxID:                 deref(w.TaxID),
		DefaultPaymentTokenID: deref(w.DefaultPaymentTokenID),
		Metadata:              w.Metadata,
		CreatedAt:             w.CreatedAt,
		UpdatedAt:             w.UpdatedAt,
	}
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// before reports whether a sorts before b in creation order: createdAt, then id.
func (c *record) before(b *record) bool {
	if !c.CreatedAt.Equal(b.CreatedAt) {
		return c.CreatedAt.Before(b.CreatedAt)
	}
	return c.ID < b.ID
}
