// Package apierr maps the REST transport's errors to the reconciler's
// kinds, with one table for every adapter built on destination/internal/rest,
// so the transport never imports sync and two adapters cannot drift apart.
package apierr

import (
	"errors"

	"github.com/plugipay-sync/plugipay-sync/destination/internal/rest"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

// kinds maps the transport's kinds to the reconciler's. A kind not listed
// (nil: 429, 5xx, network, timeout) is transient: the record is retried on
// a later run.
var kinds = []struct{ rest, sync error }{
	{rest.ErrInvalid, sync.ErrInvalid},
	{rest.ErrUnauthorized, sync.ErrFatal},
	{rest.ErrNotFound, sync.ErrNotFound},
	{rest.ErrConflict, sync.ErrConflict},
}

// FromREST turns a *rest.Error into a *sync.APIError of the mapped kind,
// keeping it as the cause; any other error (nil, a cancelled context's) is
// returned as it is.
func FromREST(err error) error {
	re, ok := err.(*rest.Error)
	if !ok {
		return err
	}
	ae := &sync.APIError{Status: re.Status, Code: re.Code, Message: re.Message, Err: re}
	for _, k := range kinds {
		if errors.Is(re.Kind, k.rest) {
			ae.Kind = k.sync
			break
		}
	}
	return ae
}
