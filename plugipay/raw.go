package plugipay

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// opRaw is the op label of Client.Raw calls.
const opRaw = "raw"

// RawRequest is a call the typed services do not cover (a newer route, a
// field or filter this SDK does not know yet).
type RawRequest struct {
	// Method is GET, POST, PATCH or DELETE.
	Method string
	// Path is the route under /api/v1, escaped, e.g. "/customers/cus_1".
	Path  string
	Query url.Values
	// Body is the exact JSON to send; nil sends none.
	Body []byte
	// IdempotencyKey is sent with a write (POST, PATCH, DELETE); empty
	// mints a random one, which protects this call's own retries only.
	IdempotencyKey string
}

// Raw sends r through the same path as the typed methods: signed afresh
// on every attempt, rate limited, retried under one idempotency key, and
// decoded into the envelope (errors are *Error, as everywhere). The
// envelope's Data is the raw payload.
func (c *Client) Raw(ctx context.Context, r RawRequest) (*Envelope, error) {
	desc := "raw " + r.Method + " " + r.Path
	switch r.Method {
	case http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodDelete:
	default:
		return nil, &Error{Op: desc, Code: CodeValidation, Err: ErrValidation,
			Message: fmt.Sprintf("method must be GET, POST, PATCH or DELETE (got %q)", r.Method)}
	}
	if !strings.HasPrefix(r.Path, "/") {
		return nil, &Error{Op: desc, Code: CodeValidation, Err: ErrValidation,
			Message: "path must start with / (it is appended to /api/v1)"}
	}
	key := r.IdempotencyKey
	if r.Method != http.MethodGet && key == "" {
		var err error
		if key, err = NewIdempotencyKey(); err != nil {
			return nil, &Error{Op: desc, Code: CodeUnknown, Err: ErrAPI, Message: err.Error(), Cause: err}
		}
	}
	if r.Method == http.MethodGet {
		key = ""
	}
	return c.do(ctx, &request{op: opRaw, desc: desc, method: r.Method, path: r.Path, query: r.Query, body: r.Body, idemKey: key})
}

type onBehalfOfKey struct{}

// WithOnBehalfOf returns a ctx whose calls act for merchant account acc
// (X-Plugipay-On-Behalf-Of), overriding Options.OnBehalfOf for those calls
// only: one platform client can serve many merchants. An empty acc sends
// no header (the platform's own workspace).
func WithOnBehalfOf(ctx context.Context, acc string) context.Context {
	return context.WithValue(ctx, onBehalfOfKey{}, acc)
}

// onBehalfOf is the account the call on ctx acts for.
func (c *Client) onBehalfOfFor(ctx context.Context) string {
	if acc, ok := ctx.Value(onBehalfOfKey{}).(string); ok {
		return acc
	}
	return c.onBehalfOf
}
