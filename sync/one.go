package sync

import (
	"context"
	"errors"
	"fmt"
)

// ErrNotInSource: SyncOne read the whole source without finding the user.
var ErrNotInSource = errors.New("externalId not found in the source")

// OneResult is what SyncOne did.
type OneResult struct {
	// Action is ActionCreated, ActionUpdated, ActionUnchanged,
	// ActionRecovered, ActionArchived, ActionSkipped, ActionRejected or
	// ActionFailed.
	Action     string
	CustomerID string
	// Reason says why a user was skipped or left alone (a deleted user
	// whose customer the deletion policy keeps).
	Reason string
}

// oneRead is what a read of the whole source says of one user.
type oneRead struct {
	rec      Record // the first valid row
	rows     int    // valid rows
	deleted  *Record
	rejected *RecordError
}

// SyncOne reconciles one user now, doing what a run would do with it
// (decide is the one decision of both): it reads the whole source, so a
// duplicated external id or a user deleted at the source is recognised,
// and syncs that user, ignoring the backoff of an earlier failure (the
// operator asked). A soft-deleted row or an archived contact is never
// synced: its customer is archived under the archive policy after a
// complete read, and left as it is otherwise (issue 13: it was blanked).
// It does not record a run. An unchanged record costs no API call. The
// error says why a record was rejected or failed; the failure is stored as
// a run would store it.
func (r *Reconciler) SyncOne(ctx context.Context, externalID string) (OneResult, error) {
	if err := r.VerifyDestination(ctx); err != nil {
		return OneResult{}, err
	}
	// Locked before the read, as SyncIDs does, so nothing written before
	// is newer than what this read finds.
	unlock, err := r.users.lock(ctx, []string{externalID})
	if err != nil {
		return OneResult{}, err
	}
	defer unlock()
	var got oneRead
	for rec, err := range r.src.Records(ctx) {
		if err != nil {
			var re *RecordError
			if !errors.As(err, &re) {
				return OneResult{}, fmt.Errorf("read source: %w", err)
			}
			if re.ExternalID == externalID && got.rejected == nil {
				got.rejected = re
			}
			continue
		}
		if rec.ExternalID != externalID {
			continue
		}
		switch {
		case rec.Deleted:
			got.deleted = &rec
		case got.rows == 0:
			got.rec = rec
			got.rows++
		default:
			got.rows++
		}
	}
	if err := ctx.Err(); err != nil {
		return OneResult{}, context.Cause(ctx)
	}
	r.users.noteRead([]string{externalID}, r.opts.Now())
	d := Desired{Kind: WantRecord, Record: got.rec, Rows: got.rows, Complete: r.readComplete()}
	switch {
	case got.rows > 0:
	case got.rejected != nil:
		return OneResult{Action: ActionRejected}, got.rejected
	case got.deleted != nil:
		d.Kind, d.Record = WantDeleted, *got.deleted
	default:
		return OneResult{}, fmt.Errorf("%w: %q", ErrNotInSource, externalID)
	}

	return r.syncDesired(ctx, d, true, CauseSync)
}

// syncDesired does what the decision says for one user the read found as
// d, the caller holding the user's lock: SyncOne and SyncIDs share it, so
// a targeted sync does what a run does. force waives the backoff of an
// earlier failure.
func (r *Reconciler) syncDesired(ctx context.Context, d Desired, force bool, cause Cause) (OneResult, error) {
	externalID := d.Record.ExternalID
	ids := []string{externalID}
	mappings, err := r.store.Mappings(ctx, ids)
	if err != nil {
		return OneResult{}, fmt.Errorf("look up mapping: %w", err)
	}
	failures, err := r.store.Failures(ctx, ids)
	if err != nil {
		return OneResult{}, fmt.Errorf("look up failure: %w", err)
	}
	var k Known
	if m, ok := mappings[externalID]; ok {
		k.Mapping = &m
	}
	if f, ok := failures[externalID]; ok {
		k.Failure = &f
	}
	dec := r.policy().decide(d, k, when{now: r.opts.Now(), force: force})
	customerID := ""
	if k.Mapping != nil {
		customerID = k.Mapping.CustomerID
	}
	ru := &run{Reconciler: r, abort: func(error) {}, cause: cause}
	switch dec.Verdict {
	case VerdictUnchanged:
		return OneResult{Action: ActionUnchanged, CustomerID: customerID}, nil
	case VerdictReject:
		return OneResult{Action: ActionRejected}, &RecordError{Ref: d.Record.Ref, ExternalID: externalID, Reason: dec.Reason}
	case VerdictBackoff:
		// Only without force: an event for content that failed before
		// waits for its backoff, as the run does.
		return OneResult{Action: ActionFailed, CustomerID: customerID, Reason: dec.Reason}, nil
	case VerdictSkip, VerdictLeave:
		return OneResult{Action: ActionSkipped, CustomerID: customerID, Reason: dec.Reason}, nil
	case VerdictArchive:
		ru.archiveOne(ctx, *k.Mapping)
		if ru.counts.archived.Load() == 1 {
			return OneResult{Action: ActionArchived, CustomerID: customerID}, nil
		}
		fs, err := r.store.Failures(ctx, ids)
		if f, ok := fs[externalID]; ok && err == nil {
			return OneResult{Action: ActionFailed}, fmt.Errorf("archive: %s: %s", f.Code, f.Message)
		}
		return OneResult{Action: ActionSkipped, Reason: "its customer no longer exists; the mapping was forgotten"}, nil
	}
	if dec.ClearMark {
		if err := r.store.DeleteFailure(ctx, externalID); err != nil {
			return OneResult{}, fmt.Errorf("clear duplicate mark: %w", err)
		}
	}
	j := job{rec: d.Record, hash: dec.Hash, mapping: k.Mapping, verdict: dec.Verdict}
	if k.Failure != nil && !dec.ClearMark {
		j.failures = k.Failure.Attempts
	}
	ctx, cancel := context.WithTimeoutCause(ctx, r.opts.WriteTimeout,
		fmt.Errorf("record took longer than %s", r.opts.WriteTimeout))
	defer cancel()
	action, err := ru.safeReconcile(ctx, j)
	if err != nil {
		if errors.Is(err, ErrFatal) {
			return OneResult{Action: ActionFailed}, err // not the record's fault
		}
		ru.fail(ctx, j, err)
		if errors.Is(err, ErrInvalid) {
			return OneResult{Action: ActionRejected}, err
		}
		return OneResult{Action: ActionFailed}, err
	}
	if action == ActionSkipped {
		reason := ReasonCreateOnly
		if r.opts.Mode == ModeUpdateOnly {
			reason = ReasonUpdateOnly
		}
		return OneResult{Action: action, CustomerID: customerID, Reason: reason}, nil
	}
	mappings, err = r.store.Mappings(ctx, ids)
	if err != nil {
		return OneResult{Action: action}, fmt.Errorf("look up mapping: %w", err)
	}
	return OneResult{Action: action, CustomerID: mappings[externalID].CustomerID}, nil
}
