package sync

import (
	"context"
	"errors"
	"fmt"

	"go.uber.org/zap"
)

// reconcile makes the destination hold j's record and confirms it in the
// store, returning the action taken. It is level-based: whatever an earlier
// run left half done (a pending write, a stale mapping, a customer created
// by another tool) it resolves from what the store and destination hold now.
func (ru *run) reconcile(ctx context.Context, j job) (string, error) {
	want := toCustomer(j.rec)
	if j.mapping != nil {
		c, err := ru.update(ctx, j, j.mapping.CustomerID, want)
		switch {
		case err == nil:
			return ActionUpdated, ru.confirm(ctx, j, c.ID)
		case errors.Is(err, ErrNotFound):
			// The cached id is stale (customer gone, or another workspace's
			// state): forget it and resolve the user afresh.
			ru.log.Info("cached customer not found; resolving again",
				zap.Int64("run_id", ru.id), zap.String("external_id", j.rec.ExternalID),
				zap.String("customer_id", j.mapping.CustomerID))
			if err := ru.store.DeleteMapping(ctx, j.rec.ExternalID); err != nil {
				return "", fmt.Errorf("forget stale mapping: %w", err)
			}
		default:
			return "", err
		}
	}

	c, err := ru.write(ctx, j, OpCreate, "", func(key string) (Customer, error) {
		return ru.dst.CreateCustomer(ctx, want, key)
	})
	switch {
	case err == nil:
		return ActionCreated, ru.confirm(ctx, j, c.ID)
	case errors.Is(err, ErrConflict):
		return ru.recoverConflict(ctx, j, want)
	default:
		return "", err
	}
}

// recoverConflict handles a create that found the external id taken: a
// cache miss, not a failure. It finds the existing customer, stores the
// mapping and updates the customer only if its fields differ.
func (ru *run) recoverConflict(ctx context.Context, j job, want Customer) (string, error) {
	found, err := ru.dst.FindByExternalID(ctx, j.rec.ExternalID)
	if errors.Is(err, ErrNotFound) {
		return "", &APIError{Code: "conflict_unresolved",
			Message: "create answered conflict, but no customer with this externalId could be found; retried next run"}
	}
	if err != nil {
		return "", fmt.Errorf("find existing customer after conflict: %w", err)
	}
	if found.ExternalID != j.rec.ExternalID {
		// Never adopt a customer on anything but an exact external id match.
		return "", &APIError{Code: "conflict_unresolved",
			Message: fmt.Sprintf("lookup by externalId returned a customer with externalId %q", found.ExternalID)}
	}
	if !sameContent(found, j.rec) {
		if _, err := ru.update(ctx, j, found.ID, want); err != nil {
			return "", fmt.Errorf("update recovered customer %s: %w", found.ID, err)
		}
	}
	return ActionRecovered, ru.confirm(ctx, j, found.ID)
}

// update sends the record's fields to customer id under a stable key.
func (ru *run) update(ctx context.Context, j job, id string, want Customer) (Customer, error) {
	return ru.write(ctx, j, OpUpdate, id, func(key string) (Customer, error) {
		return ru.dst.UpdateCustomer(ctx, id, want, key)
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
		// encoding, or a key older than its replay window reused by another
		// tool). Nothing was executed: drop the key so the next run mints a
		// new one, and report the failure.
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
