package sync

import (
	"context"
	"errors"
	"fmt"
	stdsync "sync"

	"go.uber.org/zap"
)

// Deletion policies: what happens to the customer of a user who is gone
// from the source.
const (
	DeletionIgnore  = "ignore"  // leave the customer alone (default)
	DeletionArchive = "archive" // set metadata.archived = "true"; removed when the user returns
)

// DefaultMaxArchiveRatio is the largest share of known customers one run
// archives without Options.AllowMassArchive.
const DefaultMaxArchiveRatio = 0.05

// ArchivedKey is the metadata key the archive policy sets to "true".
const ArchivedKey = "archived"

// ArchivedHash is the hash stored in the mapping of an archived customer.
// No content hashes to it, so a user who comes back is compared with the
// destination again, which removes the archived key.
const ArchivedHash = "archived"

// ErrMassArchive: the run refused to archive more than the allowed share of
// known customers. Nothing was archived.
var ErrMassArchive = errors.New("refused to archive a mass of customers")

func (r *Reconciler) archiving() bool { return r.opts.Deletion == DeletionArchive }

// noteSeen remembers external ids the run read, for the archive policy.
func (ru *run) noteSeen(ids ...string) {
	if ru.archiving() {
		ru.seen = append(ru.seen, ids...)
	}
}

// flushSeen stores the external ids noted so far: one transaction per
// source batch, and none at all unless the archive policy is on.
func (ru *run) flushSeen(ctx context.Context) error {
	if len(ru.seen) == 0 {
		return nil
	}
	if err := ru.store.MarkSeen(ctx, ru.id, ru.seen); err != nil {
		return fmt.Errorf("record seen users: %w", err)
	}
	ru.seen = ru.seen[:0]
	return nil
}

// archiveGone archives the customers of mapped users the run did not read
// from the source. It must only be called after a complete run: a run that
// stopped early has not seen everyone. Unless AllowMassArchive is set, it
// refuses (archiving nothing) when more than MaxArchiveRatio of the known
// customers would be archived: an export cut short or a wrong file must not
// retire a customer base.
func (ru *run) archiveGone(ctx context.Context) error {
	gone, err := ru.store.UnseenMappings(ctx, ru.id, ArchivedHash)
	if err != nil {
		return fmt.Errorf("list users gone from the source: %w", err)
	}
	if len(gone) == 0 {
		return nil
	}
	known, err := ru.store.MappingCount(ctx)
	if err != nil {
		return fmt.Errorf("count mappings: %w", err)
	}
	ratio := float64(len(gone)) / float64(max(known, 1))
	if ratio > ru.opts.MaxArchiveRatio && !ru.opts.AllowMassArchive {
		err := fmt.Errorf("%w: %d of %d known customers (%.1f%%) are gone from the source, more than sync.max_archive_ratio (%.1f%%); nothing archived. Check the CRM export; if it is right, run once with --allow-mass-archive",
			ErrMassArchive, len(gone), known, 100*ratio, 100*ru.opts.MaxArchiveRatio)
		ru.log.Error("archive refused", zap.Int64("run_id", ru.id), zap.Int("gone", len(gone)),
			zap.Int64("known", known), zap.Float64("max_archive_ratio", ru.opts.MaxArchiveRatio), zap.Error(err))
		return err
	}
	pol := ru.policy()
	archive := gone[:0]
	for _, m := range gone {
		if pol.decide(Desired{Kind: WantGone, Record: Record{ExternalID: m.ExternalID}, Complete: true}, Known{Mapping: &m}, when{}).Verdict == VerdictArchive {
			archive = append(archive, m)
		}
	}
	gone = archive
	ru.log.Info("archiving customers of users gone from the source", zap.Int64("run_id", ru.id), zap.Int("gone", len(gone)))
	ch := make(chan Mapping)
	var wg stdsync.WaitGroup
	for range ru.opts.Concurrency {
		wg.Go(func() {
			for m := range ch {
				unlock, superseded, err := ru.lockUser(ctx, m.ExternalID)
				if err != nil {
					continue
				}
				if !superseded {
					ru.archiveOne(ctx, m)
				}
				unlock()
			}
		})
	}
	for _, m := range gone {
		if ctx.Err() != nil {
			break
		}
		ch <- m
	}
	close(ch)
	wg.Wait()
	return context.Cause(ctx)
}

// archiveOne sets metadata.archived = "true" on m's customer, merged into
// its current metadata, and stores ArchivedHash as its mapping's hash.
func (ru *run) archiveOne(ctx context.Context, m Mapping) {
	ctx, cancel := context.WithTimeoutCause(ctx, ru.opts.WriteTimeout,
		fmt.Errorf("archive took longer than %s", ru.opts.WriteTimeout))
	defer cancel()
	j := job{rec: Record{ExternalID: m.ExternalID}, hash: ArchivedHash, mapping: &m, verdict: VerdictArchive}
	err := func() error {
		cur, err := ru.dst.GetCustomer(ctx, m.CustomerID)
		if err == nil && cur.ExternalID != m.ExternalID {
			err = &APIError{Kind: ErrNotFound, Code: "not_found"}
		}
		if err == nil {
			d := ru.policy().decide(Desired{Kind: WantGone, Record: j.rec, Complete: true}, Known{Mapping: &m, Current: &cur}, when{})
			switch {
			case d.Verdict != VerdictArchive:
				return fmt.Errorf("archive: unexpected verdict %q", d.Verdict)
			case !d.Patch.Empty():
				_, err = ru.update(ctx, j, cur, d.Patch)
			}
		}
		if errors.Is(err, ErrNotFound) {
			// Nothing left to archive: forget the mapping.
			return ru.store.DeleteMapping(ctx, m.ExternalID)
		}
		if err != nil {
			return err
		}
		if err := ru.confirm(ctx, j, m.CustomerID); err != nil {
			return err
		}
		ru.counts.archived.Add(1)
		ru.outcome(j.rec, VerdictArchive, ActionArchived)
		return nil
	}()
	if err != nil {
		ru.fail(ctx, j, err)
	}
}
