package sync

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Identity names the destination account a state DB's customer ids belong
// to, as far as the API and the config can tell. A state DB that mirrors
// one workspace must never be used against another: every user would
// report "unchanged" while the other workspace holds none of them (issue
// 14).
type Identity struct {
	// API is the kind of destination (plugipay, paygate, pin).
	API string `json:"api"`
	// Host is the API's host name (without port, so a local emulator on a
	// new port is the same).
	Host string `json:"host"`
	// Mode is test or live where the key says which, else empty.
	Mode string `json:"mode,omitempty"`
	// Account is the workspace or account id the API reports on its
	// answers; empty while it has not reported one (an empty workspace).
	Account string `json:"account,omitempty"`
	// OnBehalfOf is the merchant account a platform key acts for.
	OnBehalfOf string `json:"on_behalf_of,omitempty"`
}

func (id Identity) String() string {
	parts := []string{id.API, "host=" + orUnknown(id.Host), "mode=" + orUnknown(id.Mode), "account=" + orUnknown(id.Account)}
	if id.OnBehalfOf != "" {
		parts = append(parts, "on_behalf_of="+id.OnBehalfOf)
	}
	return strings.Join(parts, " ")
}

func orUnknown(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s
}

// differs returns the fields in which seen contradicts bound. Every field
// but Account comes from the config and must match as it is; the account
// is compared only where both sides know it, since an empty workspace
// reports none.
func (bound Identity) differs(seen Identity) []string {
	var out []string
	for _, f := range []struct{ name, a, b string }{
		{"api", bound.API, seen.API},
		{"host", bound.Host, seen.Host},
		{"mode", bound.Mode, seen.Mode},
		{"on_behalf_of", bound.OnBehalfOf, seen.OnBehalfOf},
	} {
		if f.a != f.b {
			out = append(out, f.name)
		}
	}
	if bound.Account != "" && seen.Account != "" && bound.Account != seen.Account {
		out = append(out, "account")
	}
	return out
}

// Prober is implemented by a destination that can prove its credentials
// with one cheap authenticated read and say which account it reaches.
type Prober interface {
	// Probe makes one authenticated read and returns the identity the
	// API's answer and the client's settings show. A refused key is an
	// error wrapping ErrFatal.
	Probe(ctx context.Context) (Identity, error)
}

// IdentityStore is implemented by a Store that binds itself to one
// destination identity (state.DB does).
type IdentityStore interface {
	// Identity returns the bound identity; ok is false when none was
	// recorded yet.
	Identity(ctx context.Context) (id Identity, ok bool, err error)
	// SetIdentity records id as the bound identity.
	SetIdentity(ctx context.Context, id Identity) error
	// SampleMappings returns up to n mappings picked at random.
	SampleMappings(ctx context.Context, n int) ([]Mapping, error)
	// TouchMappings sets SyncedAt to at on the mappings of customerIDs.
	TouchMappings(ctx context.Context, customerIDs []string, at time.Time) error
	// DeleteMappingsSyncedBefore forgets the mappings last confirmed
	// before t, returning how many.
	DeleteMappingsSyncedBefore(ctx context.Context, t time.Time) (int64, error)
}

// Errors of VerifyDestination. Use errors.Is.
var (
	// ErrIdentity: the destination is not the account the state DB
	// mirrors (another key mode, workspace, host or on_behalf_of, or a
	// workspace that lost the mapped customers).
	ErrIdentity = errors.New("the destination is not the account the state DB mirrors")
	// ErrUnreachable: the destination could not be reached or kept failing
	// (network errors, timeouts, 5xx, rate limits beyond the wait cap),
	// so the run stopped early; the rest is left for the next run.
	ErrUnreachable = errors.New("the destination is unreachable or failing")
)

// IdentityError says which identity the state DB is bound to and which
// one the destination showed. It wraps ErrIdentity.
type IdentityError struct {
	Bound, Seen Identity
	// Reason says what differs.
	Reason string
}

func (e *IdentityError) Error() string {
	return fmt.Sprintf("%s: %s (state DB: %s; destination: %s)", ErrIdentity, e.Reason, e.Bound, e.Seen)
}

func (e *IdentityError) Unwrap() error { return ErrIdentity }

// identitySample is how many mapped customers each run reads back to check
// that the workspace still holds them.
const identitySample = 3

// VerifyDestination proves the credentials and the workspace before any
// write: one authenticated read (so a revoked key fails the run even when
// nothing changed), a comparison of the identity it shows with the one
// the state DB is bound to, and a read of a few mapped customers (a
// workspace that lost all of them was reset or swapped). Run, SyncOne and
// RebuildCache call it first; a destination or store that does not
// implement Prober or IdentityStore skips the parts it cannot do.
func (r *Reconciler) VerifyDestination(ctx context.Context) error {
	p, ok := r.dst.(Prober)
	if !ok {
		return nil
	}
	seen, err := p.Probe(ctx)
	if err != nil {
		return destinationError("prove the credentials", err)
	}
	is, ok := r.store.(IdentityStore)
	if !ok {
		return nil
	}
	bound, known, err := is.Identity(ctx)
	if err != nil {
		return fmt.Errorf("read the bound identity: %w", err)
	}
	if known {
		if d := bound.differs(seen); len(d) > 0 {
			return &IdentityError{Bound: bound, Seen: seen, Reason: strings.Join(d, ", ") + " differ"}
		}
	}
	if err := r.sampleMapped(ctx, is, bound, seen); err != nil {
		return err
	}
	if !known || (bound.Account == "" && seen.Account != "") {
		// First use (or a state DB from before identities), or the first
		// answer that named the account: remember it.
		if seen.Account == "" {
			seen.Account = bound.Account
		}
		if err := is.SetIdentity(ctx, seen); err != nil {
			return fmt.Errorf("bind the identity: %w", err)
		}
	}
	return nil
}

// sampleMapped reads a few mapped customers back. None found means the
// workspace is not the one the mappings came from.
func (r *Reconciler) sampleMapped(ctx context.Context, is IdentityStore, bound, seen Identity) error {
	sample, err := is.SampleMappings(ctx, identitySample)
	if err != nil {
		return fmt.Errorf("sample mappings: %w", err)
	}
	missing := 0
	for _, m := range sample {
		_, err := r.dst.GetCustomer(ctx, m.CustomerID)
		switch {
		case errors.Is(err, ErrNotFound):
			missing++
		case err != nil:
			return destinationError("read a mapped customer", err)
		}
	}
	switch {
	case len(sample) > 0 && missing == len(sample):
		return &IdentityError{Bound: bound, Seen: seen,
			Reason: fmt.Sprintf("none of %d mapped customers read back exists (a reset, emptied or other workspace)", len(sample))}
	case missing > 0:
		r.log.Warn("some mapped customers no longer exist in the destination; they are re-created when their CRM record changes",
			zap.Int("sampled", len(sample)), zap.Int("missing", missing))
	}
	return nil
}

// destinationError wraps a failed call of VerifyDestination: a refused key
// stays ErrFatal, anything else transient is ErrUnreachable.
func destinationError(what string, err error) error {
	if errors.Is(err, ErrFatal) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%s: %w: %w", what, ErrUnreachable, err)
}

// Rebind binds the state DB to the destination as it is now, after an
// operator said it is the right one (rebuild-cache --rebind): it walks the
// customer list, keeps the mappings whose customers it finds (refreshing
// them where the destination keeps external ids) and forgets the others,
// so the next run re-creates those users exactly once.
func (r *Reconciler) Rebind(ctx context.Context) (RebuildCounts, int64, error) {
	is, ok := r.store.(IdentityStore)
	if !ok {
		return RebuildCounts{}, 0, errors.New("the store cannot bind an identity")
	}
	var seen Identity
	if p, ok := r.dst.(Prober); ok {
		var err error
		if seen, err = p.Probe(ctx); err != nil {
			return RebuildCounts{}, 0, destinationError("prove the credentials", err)
		}
	}
	start := r.opts.Now()
	var n RebuildCounts
	if r.caps.ExternalID == ExternalIDNone {
		// Nothing on the customer says whose it is: keep the mappings
		// whose customer ids the list still has.
		batch := make([]string, 0, rebuildBatch)
		flush := func() error {
			err := is.TouchMappings(ctx, batch, start)
			batch = batch[:0]
			return err
		}
		for c, err := range r.dst.ListCustomers(ctx) {
			if err != nil {
				return n, 0, fmt.Errorf("list customers: %w", err)
			}
			n.Listed++
			if batch = append(batch, c.ID); len(batch) == cap(batch) {
				if err := flush(); err != nil {
					return n, 0, fmt.Errorf("keep listed mappings: %w", err)
				}
			}
		}
		if err := flush(); err != nil {
			return n, 0, fmt.Errorf("keep listed mappings: %w", err)
		}
	} else {
		var err error
		if n, err = r.rebuild(ctx, start); err != nil {
			return n, 0, err
		}
	}
	dropped, err := is.DeleteMappingsSyncedBefore(ctx, start)
	if err != nil {
		return n, 0, fmt.Errorf("forget mappings of customers not listed: %w", err)
	}
	if err := is.SetIdentity(ctx, seen); err != nil {
		return n, dropped, fmt.Errorf("bind the identity: %w", err)
	}
	r.log.Info("state DB bound to the destination", zap.Stringer("identity", seen),
		zap.Int64("listed", n.Listed), zap.Int64("forgotten", dropped))
	return n, dropped, nil
}
