package apierr_test

import (
	"context"
	"errors"
	"testing"

	"github.com/plugipay-sync/plugipay-sync/destination/internal/apierr"
	"github.com/plugipay-sync/plugipay-sync/destination/internal/rest"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

func TestFromREST(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   *rest.Error
		kind error // nil: transient
	}{
		{"Invalid", &rest.Error{Kind: rest.ErrInvalid, Status: 422, Code: "invalid"}, sync.ErrInvalid},
		{"Unauthorized", &rest.Error{Kind: rest.ErrUnauthorized, Status: 401, Code: "bad_key"}, sync.ErrFatal},
		{"NotFound", &rest.Error{Kind: rest.ErrNotFound, Status: 404}, sync.ErrNotFound},
		{"Conflict", &rest.Error{Kind: rest.ErrConflict, Status: 409}, sync.ErrConflict},
		{"Transient", &rest.Error{Status: 503, Code: "service_unavailable"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := apierr.FromREST(tc.in)
			var ae *sync.APIError
			if !errors.As(err, &ae) || ae.Kind != tc.kind || ae.Status != tc.in.Status || ae.Code != tc.in.Code {
				t.Fatalf("FromREST = %#v, want kind %v", err, tc.kind)
			}
			if !errors.Is(err, tc.in) {
				t.Error("the transport's error is not kept as the cause")
			}
		})
	}
	if err := apierr.FromREST(nil); err != nil {
		t.Errorf("nil became %v", err)
	}
	if err := apierr.FromREST(context.Canceled); err != context.Canceled {
		t.Errorf("a context error became %v", err)
	}
}
