package sync

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
)

// Planned actions of a dry run (PlanEntry.Action).
const (
	PlanCreate    = "create"
	PlanUpdate    = "update"
	PlanUnchanged = "unchanged"
	PlanReject    = "reject"  // bad source record, or rejected before with this content
	PlanSkip      = "skip"    // failed before and its backoff has not passed, or left alone by the sync mode
	PlanArchive   = "archive" // gone from the source, with the archive policy
)

// FieldChange is one field a planned write changes. Metadata keys appear
// as "metadata.KEY".
type FieldChange struct {
	Field string `json:"field"`
	Old   string `json:"old"`
	New   string `json:"new"`
}

// PlanEntry is what a dry run would do with one user.
type PlanEntry struct {
	ExternalID string        `json:"externalId"`
	Action     string        `json:"action"`
	CustomerID string        `json:"customerId,omitempty"`
	Ref        string        `json:"ref,omitempty"`
	Changes    []FieldChange `json:"changes,omitempty"`
	Reason     string        `json:"reason,omitempty"`
}

// Plan computes what Run would do without writing to the destination or the
// store: it reads the source, the store and the destination (a list walk
// where Run would rebuild the cache, a GET per changed cached user to show
// the old values) and calls emit for every user whose action is not
// "unchanged". It returns the count per action. A plan that Run would
// refuse (ErrMassArchive) is returned whole, with that error.
func (r *Reconciler) Plan(ctx context.Context, emit func(PlanEntry)) (map[string]int64, error) {
	counts := map[string]int64{}
	add := func(e PlanEntry) {
		counts[e.Action]++
		if e.Action != PlanUnchanged {
			emit(e)
		}
	}
	// Where Run would rebuild the cache, hold the listing in memory.
	var listed map[string]Customer
	mapped, err := r.store.MappingCount(ctx)
	if err != nil {
		return counts, fmt.Errorf("count mappings: %w", err)
	}
	unresolved, err := r.store.CountFailuresByCode(ctx, CodeConflictUnresolved)
	if err != nil {
		return counts, fmt.Errorf("count unresolved conflicts: %w", err)
	}
	if (mapped == 0 || unresolved > 0) && r.caps.ExternalID != ExternalIDNone {
		listed = map[string]Customer{}
		for c, err := range r.dst.ListCustomers(ctx) {
			if err != nil {
				return counts, fmt.Errorf("list customers: %w", err)
			}
			if c.ExternalID != "" {
				listed[c.ExternalID] = c
			}
		}
	}
	seen := map[string]bool{}
	batch := make([]Record, 0, r.opts.BatchSize)
	flush := func() error {
		err := r.planBatch(ctx, batch, listed, add)
		batch = batch[:0]
		return err
	}
	for rec, err := range r.src.Records(ctx) {
		if err != nil {
			var re *RecordError
			if !errors.As(err, &re) {
				return counts, fmt.Errorf("read source: %w", err)
			}
			add(PlanEntry{ExternalID: re.ExternalID, Action: PlanReject, Ref: re.Ref, Reason: re.Reason})
			seen[re.ExternalID] = true
			continue
		}
		if seen[rec.ExternalID] && !slices.ContainsFunc(batch, func(b Record) bool { return b.ExternalID == rec.ExternalID }) {
			// An earlier batch had this id (one in this batch is counted there).
			add(PlanEntry{ExternalID: rec.ExternalID, Action: PlanReject, Ref: rec.Ref,
				Reason: "duplicate externalId in the source (an earlier row has it); from the next run no row of it is synced until one is left"})
			continue
		}
		seen[rec.ExternalID] = true
		batch = append(batch, rec)
		if len(batch) == cap(batch) {
			if err := flush(); err != nil {
				return counts, err
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return counts, context.Cause(ctx)
	}
	if err := flush(); err != nil {
		return counts, err
	}
	if !r.archiving() {
		return counts, nil
	}
	return counts, r.planArchive(ctx, seen, listed, add)
}

// planBatch plans one batch of source records.
func (r *Reconciler) planBatch(ctx context.Context, batch []Record, listed map[string]Customer, add func(PlanEntry)) error {
	if len(batch) == 0 {
		return nil
	}
	ids := make([]string, len(batch))
	n := map[string]int{}
	for i, rec := range batch {
		ids[i] = rec.ExternalID
		n[rec.ExternalID]++
	}
	mappings, err := r.store.Mappings(ctx, ids)
	if err != nil {
		return fmt.Errorf("look up mappings: %w", err)
	}
	failures, err := r.store.Failures(ctx, ids)
	if err != nil {
		return fmt.Errorf("look up failures: %w", err)
	}
	now := r.opts.Now()
	for _, rec := range batch {
		e := PlanEntry{ExternalID: rec.ExternalID, Ref: rec.Ref}
		if n[rec.ExternalID] > 1 {
			e.Action, e.Reason = PlanReject, "duplicate externalId in the source"
			add(e)
			continue
		}
		h := r.fields.hash(rec)
		if listed != nil {
			// Run would rebuild the cache from this listing first.
			c, ok := listed[rec.ExternalID]
			if !ok {
				add(r.planCreate(e, rec))
				continue
			}
			add(r.planDiff(e, c, rec))
			continue
		}
		m, known := mappings[rec.ExternalID]
		if known && m.Hash == h {
			e.Action = PlanUnchanged
			add(e)
			continue
		}
		if f, ok := failures[rec.ExternalID]; ok && f.Hash == h {
			switch {
			case f.Terminal:
				e.Action, e.Reason = PlanReject, "rejected before with this content: "+f.Code+": "+f.Message
				add(e)
				continue
			case now.Before(f.NextAttempt):
				e.Action, e.Reason = PlanSkip, fmt.Sprintf("failed before (%s); retried after %s", f.Code, f.NextAttempt.UTC().Format("2006-01-02T15:04:05Z"))
				add(e)
				continue
			}
		}
		if !known {
			add(r.planCreate(e, rec))
			continue
		}
		cur, err := r.dst.GetCustomer(ctx, m.CustomerID)
		if errors.Is(err, ErrNotFound) {
			e = r.planCreate(e, rec)
			e.Reason = "cached customer " + m.CustomerID + " no longer exists"
			add(e)
			continue
		}
		if err != nil {
			return fmt.Errorf("get customer %s: %w", m.CustomerID, err)
		}
		add(r.planDiff(e, cur, rec))
	}
	return nil
}

func (r *Reconciler) planCreate(e PlanEntry, rec Record) PlanEntry {
	if r.opts.Mode == ModeUpdateOnly {
		e.Action, e.Reason = PlanSkip, "no customer is linked to this user, and update-only mode never creates"
		return e
	}
	e.Action = PlanCreate
	e.Changes = changes(Customer{}, r.fields.diff(Customer{}, rec))
	return e
}

func (r *Reconciler) planDiff(e PlanEntry, cur Customer, rec Record) PlanEntry {
	e.CustomerID = cur.ID
	p := r.fields.diff(cur, rec)
	if p.Empty() {
		e.Action = PlanUnchanged
		return e
	}
	if r.opts.Mode == ModeCreateOnly {
		e.Action, e.Reason = PlanSkip, "the customer exists, and create-only mode never updates"
		return e
	}
	e.Action = PlanUpdate
	e.Changes = changes(cur, p)
	return e
}

// changes lists what p changes in cur, field by field.
func changes(cur Customer, p Patch) []FieldChange {
	var out []FieldChange
	for _, f := range []struct {
		name string
		old  string
		new  *string
	}{{"email", cur.Email, p.Email}, {"name", cur.Name, p.Name}, {"phone", cur.Phone, p.Phone}, {"taxId", cur.TaxID, p.TaxID}} {
		if f.new != nil {
			out = append(out, FieldChange{Field: f.name, Old: f.old, New: *f.new})
		}
	}
	if p.SetMetadata {
		keys := slices.Sorted(maps.Keys(cur.Metadata))
		for k := range p.Metadata {
			if _, ok := cur.Metadata[k]; !ok {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			if cur.Metadata[k] != p.Metadata[k] {
				out = append(out, FieldChange{Field: "metadata." + k, Old: cur.Metadata[k], New: p.Metadata[k]})
			}
		}
	}
	return out
}

// planArchive plans the archive policy: mapped users the source no longer
// holds, refused as Run would refuse them.
func (r *Reconciler) planArchive(ctx context.Context, seen map[string]bool, listed map[string]Customer, add func(PlanEntry)) error {
	var gone []PlanEntry
	known := int64(0)
	if listed != nil {
		for id, c := range listed {
			known++
			if !seen[id] && c.Metadata[ArchivedKey] != "true" {
				gone = append(gone, PlanEntry{ExternalID: id, CustomerID: c.ID})
			}
		}
	} else {
		for m, err := range r.store.AllMappings(ctx) {
			if err != nil {
				return fmt.Errorf("read mappings: %w", err)
			}
			known++
			if !seen[m.ExternalID] && m.Hash != ArchivedHash {
				gone = append(gone, PlanEntry{ExternalID: m.ExternalID, CustomerID: m.CustomerID})
			}
		}
	}
	slices.SortFunc(gone, func(a, b PlanEntry) int { return strings.Compare(a.ExternalID, b.ExternalID) })
	ratio := float64(len(gone)) / float64(max(known, 1))
	refused := len(gone) > 0 && ratio > r.opts.MaxArchiveRatio && !r.opts.AllowMassArchive
	for _, e := range gone {
		e.Action = PlanArchive
		e.Changes = []FieldChange{{Field: "metadata." + ArchivedKey, Old: "", New: "true"}}
		if refused {
			e.Reason = "refused: above sync.max_archive_ratio"
		}
		add(e)
	}
	if refused {
		return fmt.Errorf("%w: %d of %d known customers (%.1f%%) are gone from the source, more than sync.max_archive_ratio (%.1f%%); a run would archive nothing",
			ErrMassArchive, len(gone), known, 100*ratio, 100*r.opts.MaxArchiveRatio)
	}
	return nil
}
