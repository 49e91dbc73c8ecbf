package sync

import (
	"context"
	"fmt"
	"iter"
	"time"
)

// Destination is the payments API customers are synced into. The
// reconciler knows a destination only through this interface and its
// Capabilities: it never asks which API it talks to.
type Destination interface {
	// Capabilities says what the API can do; the reconciler chooses how to
	// prevent and recover duplicates from it. It must not change while a
	// Reconciler uses the destination.
	Capabilities() Capabilities
	// CreateCustomer creates c. idempotencyKey is stable for one intended
	// write, so a repeat after a crash or timeout replays instead of
	// creating twice where the API honours idempotency keys (see
	// Capabilities.IdempotentCreate).
	CreateCustomer(ctx context.Context, c Customer, idempotencyKey string) (Customer, error)
	// UpdateCustomer applies p to customer id, leaving every field p does
	// not set alone.
	UpdateCustomer(ctx context.Context, id string, p Patch, idempotencyKey string) (Customer, error)
	// GetCustomer returns customer id, or an error wrapping ErrNotFound.
	GetCustomer(ctx context.Context, id string) (Customer, error)
	// FindByExternalID returns the customer whose external id is exactly
	// externalID, or an error wrapping ErrNotFound. When the destination
	// cannot filter by external id (Capabilities.FilterByExternalID is
	// false) it answers ErrNotFound rather than walking every customer.
	FindByExternalID(ctx context.Context, externalID string) (Customer, error)
	// FindByEmail yields the customers whose email is email (exactly, or
	// ignoring case where the API does not filter and the adapter
	// compares). The
	// reconciler never adopts one on its email alone: it matches the
	// external id (LinkByEmail, an explicit operator action, aside).
	FindByEmail(ctx context.Context, email string) iter.Seq2[Customer, error]
	// ListCustomers yields every customer, paging lazily. An error is
	// yielded once and ends the walk.
	ListCustomers(ctx context.Context) iter.Seq2[Customer, error]
}

// CreatedSinceLister is implemented by a destination that can list the
// customers created at or after a time. On a destination without a unique
// external id the reconciler uses it to look for the result of a create
// that may have executed without being confirmed (a crash, a timeout),
// instead of walking every customer.
type CreatedSinceLister interface {
	ListCreatedSince(ctx context.Context, since time.Time) iter.Seq2[Customer, error]
}

// ExternalIDStorage says where, if anywhere, a destination keeps the CRM
// user's id on the customer.
type ExternalIDStorage int

// Where a destination keeps the external id.
const (
	// ExternalIDNone: the API has no place for it (a Pin-style API). A
	// customer is linked to a CRM user only by the state DB, or by the
	// explicit LinkByEmail.
	ExternalIDNone ExternalIDStorage = iota
	// ExternalIDMetadata: in a reserved metadata key, which the
	// destination adapter reads back into Customer.ExternalID (a
	// PayGate-style API). Listing the customers rebuilds the cache.
	ExternalIDMetadata
	// ExternalIDField: in a field of its own (Plugipay's externalId).
	ExternalIDField
)

func (s ExternalIDStorage) String() string {
	switch s {
	case ExternalIDNone:
		return "none"
	case ExternalIDMetadata:
		return "metadata"
	case ExternalIDField:
		return "field"
	}
	return fmt.Sprintf("ExternalIDStorage(%d)", int(s))
}

// Capabilities are the differences between destinations that change how
// the reconciler works. Each is stated by the destination adapter, never
// guessed from its name.
type Capabilities struct {
	// ExternalID says where the customer carries the CRM user's id.
	ExternalID ExternalIDStorage
	// UniqueExternalID: the API refuses a second customer with an external
	// id already in use, answering an error wrapping ErrConflict. Without
	// it the reconciler prevents duplicates itself: before creating a
	// user whose earlier create was never confirmed it looks for the
	// customer that create may have made.
	UniqueExternalID bool
	// FilterByExternalID: FindByExternalID asks the API for the customer
	// with one external id in a single cheap call.
	FilterByExternalID bool
	// IdempotentCreate: the API replays a create sent again with the same
	// idempotency key instead of executing it twice.
	IdempotentCreate bool
	// Create: the sync may create customers. Without it the only mode is
	// ModeUpdateOnly (a Pin-style API creates customers at checkout, with
	// card data the sync never touches).
	Create bool
	// Metadata: customers hold a string-to-string metadata map.
	Metadata bool
	// Phone and TaxID: customers have these fields. Email and name every
	// destination has.
	Phone, TaxID bool
}

// Sync modes, as reverse-ETL tools name them.
const (
	// ModeUpsert creates missing customers and updates changed ones.
	ModeUpsert = "upsert"
	// ModeUpdateOnly never creates: users without a customer are skipped.
	ModeUpdateOnly = "update-only"
	// ModeCreateOnly never updates: a user whose customer exists is linked
	// and left as it is.
	ModeCreateOnly = "create-only"
)

// CheckMode returns an error when mode is unknown or the destination
// cannot run it.
func CheckMode(mode string, c Capabilities) error {
	switch mode {
	case ModeUpsert, ModeCreateOnly:
		if !c.Create {
			return fmt.Errorf("mode %q creates customers, which this destination does not allow; use %q", mode, ModeUpdateOnly)
		}
		return nil
	case ModeUpdateOnly:
		return nil
	}
	return fmt.Errorf("unknown mode %q: use %q, %q or %q", mode, ModeUpsert, ModeUpdateOnly, ModeCreateOnly)
}
