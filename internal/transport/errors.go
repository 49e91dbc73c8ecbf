package transport

import (
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Kind says what failed in a call.
type Kind int

// The kinds of failure. The retry policy (Classify) keys on them and on
// the status.
const (
	// KindStatus: the server answered with a status of 300 or more.
	KindStatus Kind = iota + 1
	// KindNetwork: the request could not be sent or the answer not read.
	KindNetwork
	// KindTimeout: an attempt ran past Options.Timeout, or the rate
	// limiter could not hand out a token before the caller's deadline.
	KindTimeout
	// KindCanceled: the caller's context ended. Err is context.Cause.
	KindCanceled
	// KindRequest: the request could not be built (a bad URL).
	KindRequest
	// KindResponse: a 2xx answer that Request.Check refused (a body that
	// does not decode, an error envelope on a 200). The call executed, so
	// it is never retried.
	KindResponse
)

var kindNames = map[Kind]string{
	KindStatus: "status", KindNetwork: "network_error", KindTimeout: "timeout",
	KindCanceled: "canceled", KindRequest: "invalid_request", KindResponse: "invalid_response",
}

func (k Kind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Error is the one error type Client.Do returns. It speaks of HTTP only:
// each adapter maps it to its own kinds with a table (plugipay.Error,
// destination/internal/rest and apierr, hubspot.Error), so the transport
// never imports a caller's domain.
type Error struct {
	Kind Kind
	// Op is the request's Op (the metrics label), Method its method.
	Op, Method string
	// Status is the HTTP status; 0 when no answer arrived.
	Status int
	// Code, Message and RequestID are what Options.ParseError read from
	// an error answer (KindStatus), or a short description for the other
	// kinds.
	Code, Message, RequestID string
	// Header and Body are the error answer's (KindStatus, KindResponse).
	Header http.Header
	Body   []byte
	// RetryAfter is the server's Retry-After, 0 when absent.
	RetryAfter time.Duration
	// Attempts is how many attempts were sent.
	Attempts int
	// Note says why the policy stopped early when it is not plain from
	// the rest, e.g. "Retry-After 24h0m0s is more than the 1m0s this
	// client waits".
	Note string
	// Err is the underlying error: a net error, context.Cause(ctx), the
	// error Request.Check returned.
	Err error
	// Last is, for KindCanceled, the failure of the attempt before the
	// context ended (nil if none).
	Last *Error
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Method != "" {
		b.WriteString(e.Method)
		b.WriteString(": ")
	}
	if e.Status != 0 {
		fmt.Fprintf(&b, "HTTP %d ", e.Status)
	}
	code := e.Code
	if code == "" {
		code = e.Kind.String()
	}
	b.WriteString(code)
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	} else if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	if e.Note != "" {
		b.WriteString(" (")
		b.WriteString(e.Note)
		b.WriteString(")")
	}
	return b.String()
}

// Unwrap returns the underlying error and, for KindCanceled, the last
// attempt's failure.
func (e *Error) Unwrap() []error {
	var errs []error
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	if e.Last != nil {
		errs = append(errs, e.Last)
	}
	return errs
}

// Temporary reports whether the policy retries this failure for a call
// that may run twice: 429, 5xx, network errors and attempt timeouts.
func (e *Error) Temporary() bool {
	retry, _ := Classify(e, true)
	return retry
}
