package sync

import (
	"context"
	"errors"
	"fmt"

	"go.uber.org/zap"
)

// CodeConflictUnresolved is the failure code of a create that answered
// conflict when no customer with the user's external id could be found.
// The next run walks the destination's customer list before writing, which
// finds it.
const CodeConflictUnresolved = "conflict_unresolved"

// reconcile makes the destination hold j's record and confirms it in the
// store, returning the action taken. It is level-based: whatever an earlier
// run left half done (a pending write, a stale mapping, a customer created
// by another tool) it resolves from what the store and destination hold now.
func (ru *run) reconcile(ctx context.Context, j job) (string, error) {
	if j.mapping != nil {
		action, err := ru.reconcileMapped(ctx, j)
		if !errors.Is(err, ErrNotFound) {
			return action, err
		}
		// The cached id is stale (customer gone, or another workspace's
		// state): forget it and resolve the user afresh.
		ru.log.Info("cached customer not found; resolving again",
			zap.Int64("run_id", ru.id), zap.String("external_id", j.rec.ExternalID),
			zap.String("customer_id", j.mapping.CustomerID))
		if err := ru.store.DeleteMapping(ctx, j.rec.ExternalID); err != nil {
			return "", fmt.Errorf("forget stale mapping: %w", err)
		}
	}

	want := ru.fields.toCreate(j.rec)
	c, err := ru.write(ctx, j, OpCreate, "", func(key string) (Customer, error) {
		return ru.dst.CreateCustomer(ctx, want, key)
	})
	switch {
	case err == nil:
		return ActionCreated, ru.confirm(ctx, j, c.ID)
	case errors.Is(err, ErrConflict):
		return ru.recoverConflict(ctx, j)
	default:
		return "", err
	}
}

// reconcileMapped brings the cached customer in line with j's record. It
// reads the customer first: the metadata merge needs its current map, and a
// customer that already holds the record costs no write. An error wrapping
// ErrNotFound means the cached id is stale.
func (ru *run) reconcileMapped(ctx context.Context, j job) (string, error) {
	cur, err := ru.dst.GetCustomer(ctx, j.mapping.CustomerID)
	if err != nil {
		return "", err
	}
	if cur.ExternalID != j.rec.ExternalID {
		// Another tool moved the external id: the cached id is not this
		// user's customer any more.
		return "", &APIError{Kind: ErrNotFound, Code: "not_found",
			Message: fmt.Sprintf("customer %s now has externalId %q", cur.ID, cur.ExternalID)}
	}
	return ru.converge(ctx, j, cur, ActionUpdated)
}

// converge patches cur with whatever j's record changes in the managed
// fields and confirms the mapping. action is returned when a write was
// made; without one the record is unchanged (or, for a recovery, still
// recovered).
func (ru *run) converge(ctx context.Context, j job, cur Customer, action string) (string, error) {
	p := ru.fields.diff(cur, j.want())
	if p.Empty() {
		if action == ActionUpdated {
			action = ActionUnchanged
		}
		return action, ru.confirm(ctx, j, cur.ID)
	}
	if _, err := ru.update(ctx, j, cur.ID, p); err != nil {
		return "", err
	}
	return action, ru.confirm(ctx, j, cur.ID)
}

// recoverConflict handles a create that found the external id taken: a
// cache miss, not a failure. The chain: look the customer up by external
// id; if the destination cannot (an older API ignores that filter), page
// through the customers with the user's email and match the external id
// exactly; if still unknown, record a conflict_unresolved failure so the
// next run's list walk finds it. A customer is never adopted on its email
// alone.
func (ru *run) recoverConflict(ctx context.Context, j job) (string, error) {
	found, err := ru.dst.FindByExternalID(ctx, j.rec.ExternalID)
	if errors.Is(err, ErrNotFound) && j.rec.Email != "" {
		found, err = ru.findByEmail(ctx, j.rec)
	}
	if errors.Is(err, ErrNotFound) {
		return "", &APIError{Code: CodeConflictUnresolved,
			Message: "create answered conflict, but no customer with this externalId could be found; the next run walks the customer list"}
	}
	if err != nil {
		return "", fmt.Errorf("find existing customer after conflict: %w", err)
	}
	if found.ExternalID != j.rec.ExternalID {
		// Never adopt a customer on anything but an exact external id match.
		return "", &APIError{Code: CodeConflictUnresolved,
			Message: fmt.Sprintf("lookup by externalId returned a customer with externalId %q", found.ExternalID)}
	}
	action, err := ru.converge(ctx, j, found, ActionRecovered)
	if err != nil {
		return "", fmt.Errorf("update recovered customer %s: %w", found.ID, err)
	}
	return action, nil
}

// findByEmail returns the customer with rec's email whose external id is
// exactly rec's, or an error wrapping ErrNotFound.
func (ru *run) findByEmail(ctx context.Context, rec Record) (Customer, error) {
	for c, err := range ru.dst.FindByEmail(ctx, rec.Email) {
		if err != nil {
			return Customer{}, fmt.Errorf("find customers by email: %w", err)
		}
		if c.ExternalID == rec.ExternalID {
			return c, nil
		}
	}
	return Customer{}, &APIError{Kind: ErrNotFound, Code: "not_found", Message: "no customer with this email has this externalId"}
}

// update sends p to customer id under a stable key.
func (ru *run) update(ctx context.Context, j job, id string, p Patch) (Customer, error) {
	return ru.write(ctx, j, OpUpdate, id, func(key string) (Customer, error) {
		return ru.dst.UpdateCustomer(ctx, id, p, key)
	})
}

// write records the intended write, then calls it with the write's
// idempotency key. A write recorded by an earlier attempt or a crashed
// process with the same content keeps its key, so the destination replays
// it instead of executing it twice.
func (ru *run) write(ctx context.Context, j job, op, customerID string, call func(key string) (Customer, error)) (Customer, error) {
	pw, err := ru.store.PreparePendingWrite(ctx, PendingWrite{
		ExternalID:     j.rec.ExternalID,
		Op:             op,
		CustomerID:     customerID,
		Hash:           j.hash,
		IdempotencyKey: ru.opts.NewIdempotencyKey(),
		CreatedAt:      ru.opts.Now(),
	})
	if err != nil {
		return Customer{}, fmt.Errorf("record pending %s: %w", op, err)
	}
	c, err := call(pw.IdempotencyKey)
	if errors.Is(err, ErrIdempotency) {
		// The stored key was already used with another body (a changed
		// encoding, a merged metadata map that changed meanwhile, or a key
		// older than its replay window reused by another tool). Nothing
		// was executed: drop the key so the next run mints a new one, and
		// report the failure.
		if derr := ru.store.DeletePendingWrite(context.WithoutCancel(ctx), j.rec.ExternalID); derr != nil {
			err = errors.Join(err, fmt.Errorf("forget pending write: %w", derr))
		}
	}
	return c, err
}

// confirm stores the mapping of a write the destination confirmed.
func (ru *run) confirm(ctx context.Context, j job, customerID string) error {
	err := ru.store.PutMapping(context.WithoutCancel(ctx), Mapping{
		ExternalID: j.rec.ExternalID,
		CustomerID: customerID,
		Hash:       j.hash,
		SyncedAt:   ru.opts.Now(),
	})
	if err != nil {
		return fmt.Errorf("store mapping: %w", err)
	}
	return nil
}
