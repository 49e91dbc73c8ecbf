package sync

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	stdsync "sync"
)

// IDReader is a Source that can read given users by external id, the
// targeted read of the event path (issue 17): SQL with one keyed query for
// the batch, HubSpot with a batch read. A file source is not one.
type IDReader interface {
	// RecordsByID yields every row of the source whose external id is
	// one of ids, in any order: all of them, so a duplicated id and a
	// deleted row are seen as a full read sees them. An id without a row
	// yields nothing (the user is gone from the source). A row that cannot
	// be read is yielded as a *RecordError carrying its ExternalID; any
	// other error ends the stream.
	RecordsByID(ctx context.Context, ids []string) iter.Seq2[Record, error]
}

// ErrNoTargetedRead: the source cannot read users by id (a CSV or JSON
// Lines file); a full run is the way to sync it.
var ErrNoTargetedRead = errors.New("the source cannot read users by id; ask for a full run")

// ActionNotFound is a targeted sync's action for an id the source has no
// row of (and whose customer, if any, is not archived).
const ActionNotFound = "not_found"

// IDResult is what SyncIDs did with one user.
type IDResult struct {
	ExternalID string
	// Action is one of the Action constants or ActionNotFound.
	Action     string
	CustomerID string
	// Reason says why a user was rejected, failed, skipped or not found.
	Reason string
	// Wrote: the destination confirmed a write (created, updated,
	// recovered, archived).
	Wrote bool
}

// SyncIDs reconciles the users ids now, each as a run would (decide is the
// one decision of both), reading them from the source at once with one
// targeted read. The users are locked (see Users) before the read and
// until their writes are confirmed, so the value written is never older
// than one written before, and a run in progress leaves them to this sync.
// force waives the backoff of an earlier failure (an operator or caller
// asked). The error is for the whole batch: the source unreadable, the
// destination refusing the credentials, ctx done; a user's own problem is
// in its result. It does not record a run.
func (r *Reconciler) SyncIDs(ctx context.Context, ids []string, force bool) ([]IDResult, error) {
	idr, ok := r.src.(IDReader)
	if !ok {
		return nil, ErrNoTargetedRead
	}
	ids = slices.Clone(ids)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	if len(ids) == 0 {
		return nil, nil
	}
	ctx = r.opts.MarkEvent(ctx)
	if !r.verified.Load() {
		// The run proves the credentials on every run; the event path
		// proves them once, and again after they were refused.
		if err := r.VerifyDestination(ctx); err != nil {
			return nil, err
		}
		r.verified.Store(true)
	}
	unlock, err := r.users.lock(ctx, ids)
	if err != nil {
		return nil, err
	}
	defer unlock()
	got := make(map[string]*oneRead, len(ids))
	for _, id := range ids {
		got[id] = &oneRead{}
	}
	for rec, err := range idr.RecordsByID(ctx, ids) {
		if err != nil {
			var re *RecordError
			if !errors.As(err, &re) {
				return nil, fmt.Errorf("read source: %w", err)
			}
			if g := got[re.ExternalID]; g != nil && g.rejected == nil {
				g.rejected = re
			}
			continue
		}
		g := got[rec.ExternalID]
		switch {
		case g == nil: // not asked for (a source matching loosely)
		case rec.Deleted:
			g.deleted = &rec
		case g.rows == 0:
			g.rec = rec
			g.rows++
		default:
			g.rows++
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, context.Cause(ctx)
	}
	// The read is noted as of when it ended, not when it began: the
	// source's snapshot may be taken at any instant in between, so only
	// the end bounds it from above. A run whose own read of a user began
	// before this instant may hold an older value than this sync is about
	// to write; taking the instant before the read let such a run write
	// its older value after this sync's newer one (issue 17).
	r.users.noteRead(ids, r.opts.Now())

	out := make([]IDResult, len(ids))
	var (
		wg    stdsync.WaitGroup
		sem   = make(chan struct{}, r.opts.Concurrency)
		fatal error
		mu    stdsync.Mutex
	)
	for i, id := range ids {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			res, err := r.syncRead(ctx, id, got[id], force)
			if errors.Is(err, ErrFatal) {
				mu.Lock()
				fatal = cmpErr(fatal, err)
				mu.Unlock()
				r.verified.Store(false)
			}
			out[i] = res
		})
	}
	wg.Wait()
	if fatal != nil {
		return out, fatal
	}
	return out, nil
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// syncRead decides and syncs one user of a targeted read. Unlike a run's
// read, a targeted read is complete for the users it names: it returns
// every row of each, so a user without one is gone and a duplicate
// fixed.
func (r *Reconciler) syncRead(ctx context.Context, id string, g *oneRead, force bool) (IDResult, error) {
	d := Desired{Kind: WantRecord, Record: g.rec, Rows: g.rows, Complete: true}
	switch {
	case g.rows > 0:
	case g.rejected != nil:
		d = Desired{Kind: WantRejected, Record: Record{ExternalID: id, Ref: g.rejected.Ref}, Reason: g.rejected.Reason, Complete: true}
	case g.deleted != nil:
		d.Kind, d.Record = WantDeleted, *g.deleted
	default:
		d.Kind, d.Record = WantGone, Record{ExternalID: id}
	}
	one, err := r.syncDesired(ctx, d, force, CauseEvent)
	res := IDResult{ExternalID: id, Action: one.Action, CustomerID: one.CustomerID, Reason: one.Reason}
	if err != nil && res.Action == "" {
		res.Action = ActionFailed
	}
	if err != nil {
		res.Reason = err.Error()
		var re *RecordError
		if errors.As(err, &re) {
			res.Reason = re.Reason
		}
	}
	if d.Kind == WantGone && res.Action == ActionSkipped {
		res.Action = ActionNotFound
	}
	switch res.Action {
	case ActionCreated, ActionUpdated, ActionRecovered, ActionArchived:
		res.Wrote = true
	}
	return res, err
}
