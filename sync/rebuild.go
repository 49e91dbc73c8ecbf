package sync

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// rebuildBatch is how many listed customers are stored per transaction.
const rebuildBatch = 500

// RebuildCounts are the counts of a cache rebuild.
type RebuildCounts struct {
	Listed            int64 // customers the destination listed
	Mapped            int64 // mappings stored (customers with an external id)
	WithoutExternalID int64 // customers without one, which the sync cannot own
	// Duplicates are customers holding an external id an earlier listed
	// customer holds too (possible where the API does not enforce unique
	// external ids): the first listed is kept, the others are reported.
	Duplicates int64
}

// ErrNoExternalID: the destination keeps no external id on its customers,
// so its customer list cannot say which CRM user each belongs to.
var ErrNoExternalID = errors.New("the destination keeps no external id; link customers with LinkByEmail (rebuild-cache --match-email)")

// RebuildCache walks the destination's whole customer list and stores a
// mapping for every customer with an external id, hashed over the listed
// content (managed fields only). A user whose CRM record matches what the
// destination holds then compares equal and costs no write; a changed one
// costs one update. Reads are much cheaper than writes in the rate limit,
// so a cold start spends a list walk (100 customers per request) instead
// of a conflicting create per user. It also clears the conflict_unresolved
// failures the walk resolved. It verifies the destination first (see
// VerifyDestination): a state DB is never rebuilt from another account's
// customers; Rebind is for that.
func (r *Reconciler) RebuildCache(ctx context.Context) (RebuildCounts, error) {
	if r.caps.ExternalID == ExternalIDNone {
		return RebuildCounts{}, ErrNoExternalID
	}
	if err := r.VerifyDestination(ctx); err != nil {
		return RebuildCounts{}, err
	}
	return r.rebuild(ctx, r.opts.Now())
}

// rebuild is RebuildCache's walk; every mapping it stores is stamped now.
func (r *Reconciler) rebuild(ctx context.Context, now time.Time) (RebuildCounts, error) {
	var n RebuildCounts
	if r.caps.ExternalID == ExternalIDNone {
		return n, ErrNoExternalID
	}
	batch := make([]Mapping, 0, rebuildBatch)
	listed := map[string]Record{} // the batch's customers' managed content, by customer id
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if !r.caps.UniqueExternalID {
			var err error
			if batch, err = r.dropDuplicates(ctx, batch, now, &n); err != nil {
				return err
			}
		}
		if err := r.store.PutMappings(ctx, batch); err != nil {
			return fmt.Errorf("store mappings: %w", err)
		}
		if err := r.putListedRecords(ctx, batch, listed); err != nil {
			return err
		}
		clear(listed)
		if err := r.settleListedCreates(ctx, batch); err != nil {
			return err
		}
		n.Mapped += int64(len(batch))
		batch = batch[:0]
		return nil
	}
	for c, err := range r.dst.ListCustomers(ctx) {
		if err != nil {
			return n, fmt.Errorf("list customers: %w", err)
		}
		n.Listed++
		if c.ExternalID == "" {
			n.WithoutExternalID++
			continue
		}
		batch = append(batch, Mapping{ExternalID: c.ExternalID, CustomerID: c.ID,
			Hash: r.fields.hash(fromCustomer(c)), SyncedAt: now})
		if _, ok := r.store.(Ledger); ok {
			listed[c.ID] = r.fields.project(fromCustomer(c))
		}
		if len(batch) == cap(batch) {
			if err := flush(); err != nil {
				return n, err
			}
		}
	}
	if err := flush(); err != nil {
		return n, err
	}
	if _, err := r.store.DeleteMappedFailures(ctx, CodeConflictUnresolved); err != nil {
		return n, fmt.Errorf("clear resolved conflicts: %w", err)
	}
	r.log.Info("cache rebuilt from the customer list",
		zap.Int64("listed", n.Listed), zap.Int64("mapped", n.Mapped),
		zap.Int64("without_external_id", n.WithoutExternalID), zap.Int64("duplicates", n.Duplicates))
	return n, nil
}

// dropDuplicates removes from batch the customers whose external id an
// earlier customer of the same rebuild holds (in batch, or stored by this
// rebuild: a mapping whose SyncedAt is the rebuild's start), reporting
// each. The sync never made them: it looks for an unconfirmed create
// before creating again. Another tool, or a copy of the data, did.
func (r *Reconciler) dropDuplicates(ctx context.Context, batch []Mapping, rebuildStart time.Time, n *RebuildCounts) ([]Mapping, error) {
	ids := make([]string, len(batch))
	for i, m := range batch {
		ids[i] = m.ExternalID
	}
	stored, err := r.store.Mappings(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("look up mappings: %w", err)
	}
	first := make(map[string]string, len(batch))
	for _, m := range stored {
		if m.SyncedAt.Equal(rebuildStart) {
			first[m.ExternalID] = m.CustomerID
		}
	}
	kept := batch[:0]
	for _, m := range batch {
		if id, dup := first[m.ExternalID]; dup && id != m.CustomerID {
			n.Duplicates++
			r.log.Warn("two customers hold one external id; keeping the first listed",
				zap.String("external_id", m.ExternalID), zap.String("kept", id), zap.String("duplicate", m.CustomerID))
			continue
		}
		first[m.ExternalID] = m.CustomerID
		kept = append(kept, m)
	}
	return kept, nil
}

// prepare rebuilds the cache before anything is written when the store
// holds no mapping (first install, lost volume) or when an earlier run left
// a conflict it could not resolve.
func (ru *run) prepare(ctx context.Context) error {
	mapped, err := ru.store.MappingCount(ctx)
	if err != nil {
		return fmt.Errorf("count mappings: %w", err)
	}
	unresolved, err := ru.store.CountFailuresByCode(ctx, CodeConflictUnresolved)
	if err != nil {
		return fmt.Errorf("count unresolved conflicts: %w", err)
	}
	if mapped > 0 && unresolved == 0 {
		return nil
	}
	if ru.caps.ExternalID == ExternalIDNone {
		// Nothing in the customer list says whose it is.
		if mapped == 0 {
			ru.log.Warn("no customer is linked to a CRM user; this destination keeps no external id, so link them with rebuild-cache --match-email",
				zap.Int64("run_id", ru.id))
		}
		return nil
	}
	ru.log.Info("rebuilding the cache from the customer list before writing",
		zap.Int64("run_id", ru.id), zap.Int64("mappings", mapped), zap.Int64("unresolved_conflicts", unresolved))
	if _, err := ru.rebuild(ctx, ru.opts.Now()); err != nil {
		return fmt.Errorf("rebuild cache: %w", err)
	}
	return nil
}

// settleListedCreates forgets the pending creates of users the walk just
// mapped: the list shows the customer exists, so the create executed. Left
// in place, the pending create of a user the rebuild found unchanged would
// never be touched again (a run skips unchanged users without reading
// their pending writes). Pending updates stay: their content may still
// differ from what the list showed, and the next run sends it with the
// same key.
func (r *Reconciler) settleListedCreates(ctx context.Context, batch []Mapping) error {
	ids := make([]string, len(batch))
	for i, m := range batch {
		ids[i] = m.ExternalID
	}
	pending, err := r.store.PendingWrites(ctx, ids)
	if err != nil {
		return fmt.Errorf("look up pending writes: %w", err)
	}
	for id, w := range pending {
		if w.Op != OpCreate {
			continue
		}
		if err := r.store.DeletePendingWrite(ctx, id); err != nil {
			return fmt.Errorf("settle the pending create of %q: %w", id, err)
		}
	}
	return nil
}

// putListedRecords stores, for verify, the managed content of the listed
// customers whose mappings the batch stored (a mapping dropped as a
// duplicate is not in the batch).
func (r *Reconciler) putListedRecords(ctx context.Context, batch []Mapping, listed map[string]Record) error {
	l, ok := r.store.(Ledger)
	if !ok {
		return nil
	}
	recs := make([]ConfirmedRecord, 0, len(batch))
	for _, m := range batch {
		if rec, ok := listed[m.CustomerID]; ok {
			recs = append(recs, ConfirmedRecord{Hash: m.Hash, Record: rec})
		}
	}
	if err := l.PutConfirmedRecords(ctx, recs); err != nil {
		return fmt.Errorf("store listed content: %w", err)
	}
	return nil
}
