package plugipay

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// CustomerService is the customer resource: thin methods over the Client's
// single transport, all taking ctx first.
type CustomerService struct {
	c *Client
}

// Create creates a customer (POST /api/v1/customers).
//
// idempotencyKey should be minted once per intended write and stored
// before the first attempt, so that a retry, even from a restarted
// process, replays instead of creating twice; the sync always supplies one.
// When it is empty, Create mints a random "idem_<hex>" key, which protects
// this call's own retries only.
func (s *CustomerService) Create(ctx context.Context, params CustomerParams, idempotencyKey string) (*Customer, error) {
	return s.write(ctx, opCreate, "create customer", http.MethodPost, "/customers", params, idempotencyKey)
}

// Update changes the given fields of customer id (PATCH
// /api/v1/customers/{id}). A non-nil Metadata replaces the whole map. See
// Create for idempotencyKey.
func (s *CustomerService) Update(ctx context.Context, id string, params CustomerParams, idempotencyKey string) (*Customer, error) {
	if id == "" {
		return nil, missingID("update customer")
	}
	return s.write(ctx, opUpdate, "update customer", http.MethodPatch, "/customers/"+url.PathEscape(id), params, idempotencyKey)
}

// Get fetches customer id (GET /api/v1/customers/{id}). A missing customer,
// or one of another workspace, is ErrNotFound.
func (s *CustomerService) Get(ctx context.Context, id string) (*Customer, error) {
	if id == "" {
		return nil, missingID("get customer")
	}
	env, err := s.c.do(ctx, &request{op: opGet, desc: "get customer", method: http.MethodGet,
		path: "/customers/" + url.PathEscape(id)})
	if err != nil {
		return nil, err
	}
	return decodeCustomer("get customer", env)
}

func (s *CustomerService) write(ctx context.Context, op, desc, method, path string, params CustomerParams, key string) (*Customer, error) {
	body, err := json.Marshal(params)
	if err != nil {
		return nil, &Error{Op: desc, Code: CodeValidation, Err: ErrValidation,
			Message: "encode body: " + err.Error(), Cause: err}
	}
	if key == "" {
		if key, err = NewIdempotencyKey(); err != nil {
			return nil, &Error{Op: desc, Code: CodeUnknown, Err: ErrAPI, Message: err.Error(), Cause: err}
		}
	}
	env, err := s.c.do(ctx, &request{op: op, desc: desc, method: method, path: path, body: body, idemKey: key})
	if err != nil {
		return nil, err
	}
	return decodeCustomer(desc, env)
}

// NewIdempotencyKey returns a random key "idem_" + 32 hex digits.
func NewIdempotencyKey() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("plugipay: mint idempotency key: %w", err)
	}
	return "idem_" + hex.EncodeToString(b[:]), nil
}

func missingID(op string) *Error {
	return &Error{Op: op, Code: CodeValidation, Err: ErrValidation, Message: "customer id is required"}
}

func invalidResponse(op string, env *Envelope, msg string, cause error) *Error {
	return &Error{Op: op, Code: CodeInvalidResponse, Err: ErrInvalidResponse,
		Message: msg, RequestID: env.Meta.RequestID, Cause: cause}
}

func decodeCustomer(op string, env *Envelope) (*Customer, error) {
	if len(env.Data) == 0 || string(env.Data) == "null" {
		return nil, invalidResponse(op, env, "response has no data", nil)
	}
	var cus Customer
	if err := json.Unmarshal(env.Data, &cus); err != nil {
		return nil, invalidResponse(op, env, "decode customer: "+err.Error(), err)
	}
	if cus.ID == "" {
		return nil, invalidResponse(op, env, "customer in response has no id", nil)
	}
	cus.RequestID = env.Meta.RequestID
	return &cus, nil
}

// ListParams filters and pages a customer list. Zero fields are not sent.
type ListParams struct {
	// Limit is the page size, 1-100 (the server clamps; its default is 25).
	Limit int
	// Cursor continues a previous page; it is bound to the filter set.
	Cursor string
	// Email matches exactly and case-sensitively.
	Email string
	// ExternalID matches exactly. Older servers ignore it, so List drops
	// any returned customer whose externalId differs.
	ExternalID string
	// CreatedAfter keeps customers created after this instant.
	CreatedAfter time.Time
	// Order is "asc" or "desc" (server default: desc, newest first).
	Order string
}

// values encodes p as a query; url.Values.Encode sorts the keys, so the
// same params always produce the same signed target.
func (p ListParams) values() url.Values {
	v := url.Values{}
	if p.Limit > 0 {
		v.Set("limit", strconv.Itoa(p.Limit))
	}
	if p.Cursor != "" {
		v.Set("cursor", p.Cursor)
	}
	if p.Email != "" {
		v.Set("email", p.Email)
	}
	if p.ExternalID != "" {
		v.Set("externalId", p.ExternalID)
	}
	if !p.CreatedAfter.IsZero() {
		v.Set("createdAfter", p.CreatedAfter.UTC().Format(time.RFC3339Nano))
	}
	if p.Order != "" {
		v.Set("order", p.Order)
	}
	return v
}

// CustomerPage is one page of a customer list.
type CustomerPage struct {
	Data []Customer
	// Cursor fetches the next page; empty when HasMore is false.
	Cursor  string
	HasMore bool
	// RequestID is meta.requestId of the response.
	RequestID string
}

// List fetches one page (GET /api/v1/customers). It accepts both the flat
// meta.cursor/meta.hasMore form and the nested meta.page form.
func (s *CustomerService) List(ctx context.Context, params ListParams) (*CustomerPage, error) {
	const desc = "list customers"
	if params.Limit < 0 || params.Limit > 100 {
		return nil, &Error{Op: desc, Code: CodeValidation, Err: ErrValidation,
			Message: fmt.Sprintf("limit must be between 1 and 100 (got %d)", params.Limit)}
	}
	if params.Order != "" && params.Order != "asc" && params.Order != "desc" {
		return nil, &Error{Op: desc, Code: CodeValidation, Err: ErrValidation,
			Message: fmt.Sprintf("order must be asc or desc (got %q)", params.Order)}
	}
	env, err := s.c.do(ctx, &request{op: opList, desc: desc, method: http.MethodGet,
		path: "/customers", query: params.values()})
	if err != nil {
		return nil, err
	}
	page := &CustomerPage{RequestID: env.Meta.RequestID}
	if len(env.Data) == 0 || string(env.Data) == "null" {
		return nil, invalidResponse(desc, env, "list response has no data array", nil)
	}
	if err := json.Unmarshal(env.Data, &page.Data); err != nil {
		return nil, invalidResponse(desc, env, "decode customer list: "+err.Error(), err)
	}
	m := env.Meta
	if m.Cursor != nil {
		page.Cursor = *m.Cursor
	}
	if m.HasMore != nil {
		page.HasMore = *m.HasMore
	}
	if m.Page != nil {
		if m.HasMore == nil {
			page.HasMore = m.Page.HasMore
		}
		if page.Cursor == "" && m.Page.NextCursor != nil {
			page.Cursor = *m.Page.NextCursor
		}
	}
	if m.HasMore == nil && m.Page == nil {
		page.HasMore = page.Cursor != ""
	}
	if !page.HasMore {
		page.Cursor = ""
	} else if page.Cursor == "" {
		return nil, invalidResponse(desc, env, "list response has more pages but no cursor", nil)
	}
	if params.ExternalID != "" {
		kept := page.Data[:0]
		for _, c := range page.Data {
			if c.ExternalID == params.ExternalID {
				kept = append(kept, c)
			}
		}
		page.Data = kept
	}
	return page, nil
}

// ListAll walks every page of the list lazily: no request is made until
// iteration starts, and each page is fetched only when the previous one is
// consumed. An error is yielded once, with a nil customer, and ends the
// walk; breaking out of the loop stops it without further requests.
// params.Cursor, if set, is the starting point.
func (s *CustomerService) ListAll(ctx context.Context, params ListParams) iter.Seq2[*Customer, error] {
	return func(yield func(*Customer, error) bool) {
		p := params
		for {
			page, err := s.List(ctx, p)
			if err != nil {
				yield(nil, err)
				return
			}
			for i := range page.Data {
				if !yield(&page.Data[i], nil) {
					return
				}
			}
			if !page.HasMore {
				return
			}
			if page.Cursor == p.Cursor {
				yield(nil, &Error{Op: "list customers", Code: CodeInvalidResponse, Err: ErrInvalidResponse,
					RequestID: page.RequestID, Message: "server returned the same cursor twice"})
				return
			}
			p.Cursor = page.Cursor
		}
	}
}
