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
	// ActionRecovered, ActionRejected or ActionFailed.
	Action     string
	CustomerID string
}

// SyncOne reconciles one user now: it reads the source until it finds
// externalID and syncs that record as a run would, ignoring the backoff of
// an earlier failure (the operator asked). It does not record a run. An
// unchanged record costs no API call. The error says why a record was
// rejected or failed; the failure is stored as a run would store it.
func (r *Reconciler) SyncOne(ctx context.Context, externalID string) (OneResult, error) {
	if err := r.VerifyDestination(ctx); err != nil {
		return OneResult{}, err
	}
	var rec Record
	found := false
	for got, err := range r.src.Records(ctx) {
		if err != nil {
			var re *RecordError
			if !errors.As(err, &re) {
				return OneResult{}, fmt.Errorf("read source: %w", err)
			}
			if re.ExternalID == externalID {
				return OneResult{Action: ActionRejected}, re
			}
			continue
		}
		if got.ExternalID == externalID {
			rec, found = got, true
			break
		}
	}
	if !found {
		if err := ctx.Err(); err != nil {
			return OneResult{}, context.Cause(ctx)
		}
		return OneResult{}, fmt.Errorf("%w: %q", ErrNotInSource, externalID)
	}
	ids := []string{externalID}
	mappings, err := r.store.Mappings(ctx, ids)
	if err != nil {
		return OneResult{}, fmt.Errorf("look up mapping: %w", err)
	}
	failures, err := r.store.Failures(ctx, ids)
	if err != nil {
		return OneResult{}, fmt.Errorf("look up failure: %w", err)
	}
	j := job{rec: rec, hash: r.fields.hash(rec)}
	if m, ok := mappings[externalID]; ok {
		if m.Hash == j.hash {
			return OneResult{Action: ActionUnchanged, CustomerID: m.CustomerID}, nil
		}
		j.mapping = &m
	}
	if f, ok := failures[externalID]; ok {
		if f.Code == CodeDuplicateExternalID {
			return OneResult{Action: ActionRejected}, &RecordError{Ref: rec.Ref, ExternalID: externalID,
				Reason: "marked as a duplicate externalId: more than one source row has it; a run that reads one row clears the mark"}
		}
		j.failures = f.Attempts
	}
	ru := &run{Reconciler: r, abort: func(error) {}}
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
	mappings, err = r.store.Mappings(ctx, ids)
	if err != nil {
		return OneResult{Action: action}, fmt.Errorf("look up mapping: %w", err)
	}
	return OneResult{Action: action, CustomerID: mappings[externalID].CustomerID}, nil
}
