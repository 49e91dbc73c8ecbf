package sync

import (
	"context"
	"fmt"

	"go.uber.org/zap"
)

// rebuildBatch is how many listed customers are stored per transaction.
const rebuildBatch = 500

// RebuildCounts are the counts of a cache rebuild.
type RebuildCounts struct {
	Listed            int64 // customers the destination listed
	Mapped            int64 // mappings stored (customers with an external id)
	WithoutExternalID int64 // customers without one, which the sync cannot own
}

// RebuildCache walks the destination's whole customer list and stores a
// mapping for every customer with an external id, hashed over the listed
// content (managed fields only). A user whose CRM record matches what the
// destination holds then compares equal and costs no write; a changed one
// costs one update. Reads are much cheaper than writes in the rate limit,
// so a cold start spends a list walk (100 customers per request) instead
// of a conflicting create per user. It also clears the conflict_unresolved
// failures the walk resolved.
func (r *Reconciler) RebuildCache(ctx context.Context) (RebuildCounts, error) {
	var n RebuildCounts
	batch := make([]Mapping, 0, rebuildBatch)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := r.store.PutMappings(ctx, batch); err != nil {
			return fmt.Errorf("store mappings: %w", err)
		}
		n.Mapped += int64(len(batch))
		batch = batch[:0]
		return nil
	}
	now := r.opts.Now()
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
		zap.Int64("without_external_id", n.WithoutExternalID))
	return n, nil
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
	ru.log.Info("rebuilding the cache from the customer list before writing",
		zap.Int64("run_id", ru.id), zap.Int64("mappings", mapped), zap.Int64("unresolved_conflicts", unresolved))
	if _, err := ru.RebuildCache(ctx); err != nil {
		return fmt.Errorf("rebuild cache: %w", err)
	}
	return nil
}
