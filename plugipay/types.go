package plugipay

import "encoding/json"

// Customer is Plugipay's customer object as the API returns it. Nullable
// string fields decode to "" when null.
type Customer struct {
	ID                    string            `json:"id"`
	ARN                   string            `json:"arn,omitempty"`
	AccountID             string            `json:"accountId,omitempty"`
	ExternalID            string            `json:"externalId,omitempty"`
	Email                 string            `json:"email,omitempty"`
	Name                  string            `json:"name,omitempty"`
	Phone                 string            `json:"phone,omitempty"`
	TaxID                 string            `json:"taxId,omitempty"`
	DefaultPaymentTokenID string            `json:"defaultPaymentTokenId,omitempty"`
	Metadata              map[string]string `json:"metadata,omitempty"`
	CreatedAt             string            `json:"createdAt,omitempty"`
	UpdatedAt             string            `json:"updatedAt,omitempty"`

	// RequestID is meta.requestId of the response that returned the
	// customer (Create, Update, Get; a list's is on its page).
	RequestID string `json:"-"`
	// Raw is the customer object exactly as the API sent it, for fields
	// this type does not know yet (set by decoding, in lists too).
	Raw json.RawMessage `json:"-"`
}

// UnmarshalJSON decodes a customer and keeps its raw JSON in Raw.
func (c *Customer) UnmarshalJSON(b []byte) error {
	type plain Customer
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*c = Customer(p)
	c.Raw = append(json.RawMessage(nil), b...)
	return nil
}

// CustomerParams is the body of a create or update. A nil field is not sent;
// a pointer to "" clears the field on update (the API stores "" as null).
// Metadata, when non-nil, replaces the customer's whole metadata map;
// ClearMetadata sends "metadata": null.
type CustomerParams struct {
	ExternalID            *string
	Email                 *string
	Name                  *string
	Phone                 *string
	TaxID                 *string
	DefaultPaymentTokenID *string
	Metadata              map[string]string
	ClearMetadata         bool
}

// String returns a pointer to s, for building CustomerParams.
func String(s string) *string { return &s }

// MarshalJSON encodes only the fields that are set, in a fixed key order so
// that the same params always produce the same body bytes (which the
// idempotency replay compares).
func (p CustomerParams) MarshalJSON() ([]byte, error) {
	m := map[string]any{}
	put := func(k string, v *string) {
		if v != nil {
			m[k] = *v
		}
	}
	put("externalId", p.ExternalID)
	put("email", p.Email)
	put("name", p.Name)
	put("phone", p.Phone)
	put("taxId", p.TaxID)
	put("defaultPaymentTokenId", p.DefaultPaymentTokenID)
	switch {
	case p.ClearMetadata:
		m["metadata"] = nil
	case p.Metadata != nil:
		m["metadata"] = p.Metadata
	}
	return json.Marshal(m) // encoding/json sorts map keys
}

// Envelope is the JSON body of every Plugipay response.
type Envelope struct {
	Data  json.RawMessage `json:"data"`
	Error *ErrorBody      `json:"error"`
	Meta  Meta            `json:"meta"`
}

// ErrorBody is the "error" member of an envelope.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	DocURL  string `json:"docUrl,omitempty"`
}

// Meta is the "meta" member of an envelope. List responses carry the cursor
// flat (Cursor, HasMore); some API versions nest it under Page instead.
type Meta struct {
	RequestID string    `json:"requestId"`
	Timestamp string    `json:"timestamp,omitempty"`
	Cursor    *string   `json:"cursor,omitempty"`
	HasMore   *bool     `json:"hasMore,omitempty"`
	Page      *PageMeta `json:"page,omitempty"`
}

// PageMeta is the nested pagination variant of Meta.
type PageMeta struct {
	Limit      int     `json:"limit,omitempty"`
	HasMore    bool    `json:"hasMore"`
	NextCursor *string `json:"nextCursor,omitempty"`
}

// Error codes of the spec's error table. Codes with status 0 are produced by
// the client itself.
const (
	CodeValidation          = "validation_error"
	CodeInvalidSignature    = "invalid_signature"
	CodeInvalidKey          = "invalid_key"
	CodeTimestampSkew       = "timestamp_skew"
	CodeInvalidTimestamp    = "invalid_timestamp"
	CodeInsufficientScope   = "insufficient_scope"
	CodeNotFound            = "not_found"
	CodeConflict            = "conflict"
	CodeIdempotencyReused   = "idempotency_key_reused"
	CodeIdempotencyMismatch = "idempotency_mismatch"
	CodeRateLimited         = "rate_limited"
	CodeInternal            = "internal_error"
	CodeUpstream            = "upstream_error"
	CodeServiceUnavailable  = "service_unavailable"
	CodeNetwork             = "network_error"
	CodeTimeout             = "timeout"
	CodeCanceled            = "canceled"
	CodeInvalidResponse     = "invalid_response"
	CodeUnknown             = "unknown"
	CodeMethodNotAllowed    = "method_not_allowed"
)
