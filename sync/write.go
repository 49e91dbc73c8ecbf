package sync

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"time"

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
	if j.verdict == VerdictUpdate {
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
		j.mapping = nil
		j.verdict = ru.policy().decide(Desired{Kind: WantRecord, Record: j.rec}, Known{}, when{force: true}).Verdict
	}
	switch j.verdict {
	case VerdictSkip:
		return ActionSkipped, nil
	case VerdictLink:
		return ru.link(ctx, j)
	case VerdictCreate:
	default:
		return "", fmt.Errorf("reconcile: unexpected verdict %q", j.verdict)
	}
	if !ru.caps.UniqueExternalID {
		// The API would take a second create: find what an unconfirmed
		// earlier one made before creating again.
		found, err := ru.findUnconfirmedCreate(ctx, j)
		if err == nil {
			return ru.adopt(ctx, j, found)
		}
		if !errors.Is(err, ErrNotFound) {
			return "", err
		}
	}

	want := ru.fields.toCreate(j.rec)
	c, err := ru.write(ctx, j, OpCreate, "", createChanges(want), func(key string) (Customer, error) {
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

// link, in update-only mode, finds the customer of a user the cache does
// not know by its external id and brings it in line; a user without one
// is skipped. A destination that cannot look customers up by external id
// answers not found at once (its users are linked by the cache rebuild or
// LinkByEmail).
func (ru *run) link(ctx context.Context, j job) (string, error) {
	found, err := ru.dst.FindByExternalID(ctx, j.rec.ExternalID)
	if errors.Is(err, ErrNotFound) || (err == nil && found.ExternalID != j.rec.ExternalID) {
		return ActionSkipped, nil
	}
	if err != nil {
		return "", fmt.Errorf("find the customer to update: %w", err)
	}
	return ru.converge(ctx, j, found, ActionRecovered)
}

// adopt makes found, a customer holding the user's external id, the
// user's customer: linked as it is in create-only mode, otherwise brought
// in line with the record.
func (ru *run) adopt(ctx context.Context, j job, found Customer) (string, error) {
	action, err := ru.converge(ctx, j, found, ActionRecovered)
	if err != nil {
		return "", fmt.Errorf("update recovered customer %s: %w", found.ID, err)
	}
	return action, nil
}

// CreateClockSlack widens the window in which the customer of an
// unconfirmed create is looked for, to allow for the difference between
// this machine's clock and the destination's.
const CreateClockSlack = 15 * time.Minute

// findUnconfirmedCreate returns the customer that an earlier, unconfirmed
// create of j's user made, on a destination that does not refuse a second
// create. A create is recorded as a pending write before it is sent and
// forgotten when its mapping is stored, so a pending create means one may
// have executed without an answer (a timeout, a crash). The customers
// created since it was recorded are listed and matched on the external id
// the create wrote. A pending update of an unmapped user names the
// customer such a search found before its update went unconfirmed. An
// error wrapping ErrNotFound means there is none.
func (ru *run) findUnconfirmedCreate(ctx context.Context, j job) (Customer, error) {
	id := j.rec.ExternalID
	pws, err := ru.store.PendingWrites(ctx, []string{id})
	if err != nil {
		return Customer{}, fmt.Errorf("look up pending write: %w", err)
	}
	pw, ok := pws[id]
	if ok && pw.Op == OpUpdate && pw.CustomerID != "" {
		// An unmapped user with a pending update: an earlier run found the
		// customer of its unconfirmed create and was updating it when it
		// lost the answer (or the process). That customer is the user's.
		c, err := ru.dst.GetCustomer(ctx, pw.CustomerID)
		switch {
		case err == nil && c.ExternalID == id:
			return c, nil
		case err != nil && !errors.Is(err, ErrNotFound):
			return Customer{}, fmt.Errorf("get the customer of an unconfirmed update: %w", err)
		}
		return Customer{}, &APIError{Kind: ErrNotFound, Code: "not_found", Message: "the customer of the unconfirmed update is gone"}
	}
	if !ok || pw.Op != OpCreate {
		return Customer{}, &APIError{Kind: ErrNotFound, Code: "not_found", Message: "no unconfirmed create"}
	}
	since := pw.CreatedAt.Add(-CreateClockSlack)
	customers := ru.dst.ListCustomers
	if l, ok := ru.dst.(CreatedSinceLister); ok {
		customers = func(ctx context.Context) iter.Seq2[Customer, error] { return l.ListCreatedSince(ctx, since) }
	}
	for c, err := range customers(ctx) {
		if err != nil {
			return Customer{}, fmt.Errorf("look for the customer of an unconfirmed create: %w", err)
		}
		if c.ExternalID == id {
			ru.log.Info("found the customer of an unconfirmed create",
				zap.Int64("run_id", ru.id), zap.String("external_id", id), zap.String("customer_id", c.ID))
			return c, nil
		}
	}
	return Customer{}, &APIError{Kind: ErrNotFound, Code: "not_found", Message: "the unconfirmed create made no customer"}
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
	if ru.caps.ExternalID != ExternalIDNone && cur.ExternalID != j.rec.ExternalID {
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
	d := ru.policy().decide(Desired{Kind: WantRecord, Record: j.rec}, Known{Mapping: j.mapping, Current: &cur}, when{force: true, compare: j.compare})
	switch d.Verdict {
	case VerdictAdopt:
		// Create-only links the customer as it is.
		return action, ru.confirmHash(ctx, j, cur.ID, ru.fields.hash(fromCustomer(cur)))
	case VerdictSkip:
		return ActionSkipped, nil
	case VerdictUnchanged:
		if action == ActionUpdated {
			action = ActionUnchanged
		}
		return action, ru.confirm(ctx, j, cur.ID)
	case VerdictUpdate:
	default:
		return "", fmt.Errorf("converge: unexpected verdict %q", d.Verdict)
	}
	if _, err := ru.update(ctx, j, cur, d.Patch); err != nil {
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
	return ru.adopt(ctx, j, found)
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

// update sends p to customer cur under a stable key. cur is the customer
// as read before the patch: the audit ledger records what p changed of it.
func (ru *run) update(ctx context.Context, j job, cur Customer, p Patch) (Customer, error) {
	return ru.write(ctx, j, OpUpdate, cur.ID, changes(cur, p), func(key string) (Customer, error) {
		return ru.dst.UpdateCustomer(ctx, cur.ID, p, key)
	})
}

// write records the intended write, then calls it with the write's
// idempotency key. A write recorded by an earlier attempt or a crashed
// process with the same content keeps its key, so the destination replays
// it instead of executing it twice. changes are the fields the write sets,
// noted for the audit entry of its confirmation.
func (ru *run) write(ctx context.Context, j job, op, customerID string, changes []FieldChange, call func(key string) (Customer, error)) (Customer, error) {
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
	if err == nil {
		ru.noteWrite(j, op, pw.IdempotencyKey, c.RequestID, changes)
	}
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
	return ru.confirmHash(ctx, j, customerID, j.hash)
}

// confirmHash stores the mapping of j's user to customerID, which holds
// the content that hashes to hash.
func (ru *run) confirmHash(ctx context.Context, j job, customerID, hash string) error {
	m := Mapping{
		ExternalID: j.rec.ExternalID,
		CustomerID: customerID,
		Hash:       hash,
		SyncedAt:   ru.opts.Now(),
	}
	var err error
	if l, ok := ru.store.(Ledger); ok {
		// The confirmed content and the write's audit entry go in the
		// mapping's own transaction: a crash keeps all three or none.
		err = l.Confirm(context.WithoutCancel(ctx), ru.confirmation(j, m))
	} else {
		err = ru.store.PutMapping(context.WithoutCancel(ctx), m)
	}
	if err != nil {
		return fmt.Errorf("store mapping: %w", err)
	}
	if hash == j.hash {
		ru.confirmed.add(j.rec.Print, printConfirmed, 0, j.rec.ExternalID, "")
	}
	return nil
}
