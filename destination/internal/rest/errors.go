package rest

import (
	"errors"
	"fmt"
)

// Kinds of failure a call reports (Error.Kind), in the transport's own
// terms; an adapter maps them to its caller's kinds with a table (see
// destination/internal/apierr). A transport never imports the reconciler.
var (
	// ErrInvalid: the API refused the content (400, 422).
	ErrInvalid = errors.New("refused as invalid")
	// ErrUnauthorized: the API refused the key (401, 403).
	ErrUnauthorized = errors.New("key refused")
	// ErrNotFound: no such resource (404).
	ErrNotFound = errors.New("not found")
	// ErrConflict: the resource exists already (409).
	ErrConflict = errors.New("conflict")
)

// Error is a failed call: Kind is one of the kinds above, or nil for a
// transient failure (429, 5xx, network, timeout); Code and Message are the
// API's (or network_error, timeout, invalid_response...).
type Error struct {
	Kind    error
	Status  int
	Code    string
	Message string
	Err     error
}

func (e *Error) Error() string {
	msg := e.Code
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.Status != 0 {
		msg = fmt.Sprintf("%d %s", e.Status, msg)
	}
	return msg
}

// Unwrap lets errors.Is match both the kind and the underlying error.
func (e *Error) Unwrap() []error {
	var errs []error
	if e.Kind != nil {
		errs = append(errs, e.Kind)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}
