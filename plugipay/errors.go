package plugipay

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Kind sentinels. Every *Error unwraps to exactly one of them, so callers
// branch with errors.Is(err, plugipay.ErrNotFound) and never compare codes
// or statuses themselves. The mapping follows the error table of the wire
// spec (shared/spec/plugipay-api.md).
var (
	// ErrAuth: 401, the signature, key or timestamp was rejected. Stop the run.
	ErrAuth = errors.New("plugipay: authentication failed")
	// ErrScope: 403, the key lacks the needed scope. Stop the run.
	ErrScope = errors.New("plugipay: insufficient scope")
	// ErrValidation: 400, the request content was rejected. Retrying the
	// same content cannot succeed.
	ErrValidation = errors.New("plugipay: validation failed")
	// ErrNotFound: 404, the customer is missing or belongs to another
	// workspace.
	ErrNotFound = errors.New("plugipay: not found")
	// ErrConflict: 409 conflict, the externalId is already used.
	ErrConflict = errors.New("plugipay: conflict")
	// ErrIdempotency: 409 idempotency_key_reused or idempotency_mismatch,
	// the Idempotency-Key was reused with a different body.
	ErrIdempotency = errors.New("plugipay: idempotency key reused with a different request")
	// ErrRateLimited: 429, the server's rate limit was hit.
	ErrRateLimited = errors.New("plugipay: rate limited")
	// ErrServer: 5xx, the server failed.
	ErrServer = errors.New("plugipay: server error")
	// ErrNetwork: the request could not be sent or the response not read.
	ErrNetwork = errors.New("plugipay: network error")
	// ErrTimeout: an attempt ran past Options.Timeout or the caller's
	// deadline.
	ErrTimeout = errors.New("plugipay: timeout")
	// ErrCanceled: the caller's context was canceled. The *Error also wraps
	// the context's error, so errors.Is(err, context.Canceled) holds too.
	ErrCanceled = errors.New("plugipay: canceled")
	// ErrInvalidResponse: the response body was not a usable envelope.
	ErrInvalidResponse = errors.New("plugipay: invalid response")
	// ErrAPI: any other API error (an unexpected 4xx status, or an error
	// envelope with an unknown code on a 2xx).
	ErrAPI = errors.New("plugipay: api error")
)

// Error is the one error type the client returns. StatusCode is 0 for
// failures on the client side (network_error, timeout, canceled and some
// invalid_response). Err is the kind sentinel (ErrNotFound, ...); Cause, when
// set, is the underlying error (a net error, ctx.Err()). Both are reachable
// through errors.Is and errors.As.
type Error struct {
	// Op names the operation, e.g. "create customer".
	Op         string
	StatusCode int
	// Code is the API's error code (see the Code constants) or a client-side
	// code; "unknown" when an error response carried none.
	Code    string
	Message string
	// RequestID is meta.requestId of the response, for support tickets.
	RequestID string
	// Err is the kind sentinel.
	Err error
	// Cause is the underlying error, if any.
	Cause error
	// RetryAfter is the server's Retry-After hint in seconds (0 if none).
	RetryAfter int
}

// Error formats the error without any credential: the client redacts its
// secret from Message and Cause's text before building the Error.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("plugipay")
	if e.Op != "" {
		b.WriteString(" ")
		b.WriteString(e.Op)
	}
	b.WriteString(": ")
	b.WriteString(e.Code)
	if e.StatusCode != 0 || e.RequestID != "" {
		b.WriteString(" (")
		if e.StatusCode != 0 {
			fmt.Fprintf(&b, "HTTP %d", e.StatusCode)
		}
		if e.RequestID != "" {
			if e.StatusCode != 0 {
				b.WriteString(", ")
			}
			b.WriteString("request ")
			b.WriteString(e.RequestID)
		}
		b.WriteString(")")
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	return b.String()
}

// Unwrap returns the kind sentinel and, when set, the cause, so both
// errors.Is(err, ErrCanceled) and errors.Is(err, context.Canceled) work.
func (e *Error) Unwrap() []error {
	errs := make([]error, 0, 2)
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	if e.Cause != nil {
		errs = append(errs, e.Cause)
	}
	return errs
}

// kindForCode maps a code of the spec's error table to its kind.
func kindForCode(code string) error {
	switch code {
	case CodeInvalidSignature, CodeInvalidKey, CodeTimestampSkew, CodeInvalidTimestamp:
		return ErrAuth
	case CodeInsufficientScope:
		return ErrScope
	case CodeValidation:
		return ErrValidation
	case CodeNotFound:
		return ErrNotFound
	case CodeConflict:
		return ErrConflict
	case CodeIdempotencyReused, CodeIdempotencyMismatch:
		return ErrIdempotency
	case CodeRateLimited:
		return ErrRateLimited
	case CodeInternal, CodeUpstream, CodeServiceUnavailable:
		return ErrServer
	case CodeNetwork:
		return ErrNetwork
	case CodeTimeout:
		return ErrTimeout
	case CodeCanceled:
		return ErrCanceled
	case CodeInvalidResponse:
		return ErrInvalidResponse
	}
	return nil
}

// kindFor maps an API error to its kind. The status decides wherever it is
// specific, so that the retry policy (which keys on 429 and 5xx) and the
// kind can never disagree: a 409 is never ErrRateLimited whatever its code.
// The code refines a 409 and decides for 2xx error envelopes and unexpected
// statuses.
func kindFor(status int, code string) error {
	switch {
	case status >= 500:
		return ErrServer
	case status == http.StatusTooManyRequests:
		return ErrRateLimited
	case status == http.StatusConflict:
		if kindForCode(code) == ErrIdempotency {
			return ErrIdempotency
		}
		return ErrConflict
	case status == http.StatusUnauthorized:
		return ErrAuth
	case status == http.StatusForbidden:
		return ErrScope
	case status == http.StatusNotFound:
		return ErrNotFound
	case status == http.StatusBadRequest:
		return ErrValidation
	}
	if k := kindForCode(code); k != nil {
		return k
	}
	return ErrAPI
}

// redact removes secret from s. Error messages are built from server text
// and from net errors, neither of which should ever carry the secret, but a
// proxy or a misbehaving server could echo a header back.
func redact(s, secret string) string {
	if secret == "" {
		return s
	}
	return strings.ReplaceAll(s, secret, "[REDACTED]")
}
