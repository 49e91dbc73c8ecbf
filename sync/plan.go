package sync

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
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
// the old values, a lookup by external id where update-only would link)
// and calls emit for every user whose action is not "unchanged". Every
// user is decided by decide, the decision Run and SyncOne make (issue 13).
// It returns the count per action. A plan that Run would refuse
// (ErrMassArchive) is returned whole, with that error.
func (r *Reconciler) Plan(ctx context.Context, emit func(PlanEntry)) (map[string]int64, error) {
	p := &planner{Reconciler: r, pol: r.policy(), counts: map[string]int64{}, emit: emit,
		seen: map[string]bool{}, now: r.opts.Now()}
	// Where Run would rebuild the cache, hold the listing in memory.
	mapped, err := r.store.MappingCount(ctx)
	if err != nil {
		return p.counts, fmt.Errorf("count mappings: %w", err)
	}
	unresolved, err := r.store.CountFailuresByCode(ctx, CodeConflictUnresolved)
	if err != nil {
		return p.counts, fmt.Errorf("count unresolved conflicts: %w", err)
	}
	if (mapped == 0 || unresolved > 0) && r.caps.ExternalID != ExternalIDNone {
		p.listed = map[string]Customer{}
		for c, err := range r.dst.ListCustomers(ctx) {
			if err != nil {
				return p.counts, fmt.Errorf("list customers: %w", err)
			}
			if _, dup := p.listed[c.ExternalID]; c.ExternalID != "" && !dup {
				p.listed[c.ExternalID] = c // the rebuild keeps the first listed
			}
		}
	}
	marked, err := r.store.FailureIDsByCode(ctx, CodeDuplicateExternalID)
	if err != nil {
		return p.counts, fmt.Errorf("load duplicate marks: %w", err)
	}
	p.held = map[string][]Record{}
	for _, id := range marked {
		p.held[id] = nil
	}
	batch := make([]Record, 0, r.opts.BatchSize)
	flush := func(complete bool) error {
		err := p.batch(ctx, batch, complete)
		batch = batch[:0]
		return err
	}
	for rec, err := range r.src.Records(ctx) {
		if err != nil {
			var re *RecordError
			if !errors.As(err, &re) {
				return p.counts, fmt.Errorf("read source: %w", err)
			}
			d := p.pol.decide(Desired{Kind: WantRejected, Record: Record{ExternalID: re.ExternalID, Ref: re.Ref}, Reason: re.Reason}, Known{}, when{})
			p.add(PlanEntry{ExternalID: re.ExternalID, Ref: re.Ref}, d)
			p.seen[re.ExternalID] = true
			continue
		}
		if rec.Deleted {
			// Not seen: a complete read archives its customer (decideGone).
			continue
		}
		if rows, ok := p.held[rec.ExternalID]; ok {
			// Marked as duplicated before: decided after the read, which
			// says whether it was complete.
			p.held[rec.ExternalID] = append(rows, rec)
			p.seen[rec.ExternalID] = true
			continue
		}
		if p.seen[rec.ExternalID] && !slices.ContainsFunc(batch, func(b Record) bool { return b.ExternalID == rec.ExternalID }) {
			// An earlier batch had this id (one in this batch is counted there).
			p.add(PlanEntry{ExternalID: rec.ExternalID, Ref: rec.Ref}, Decision{Verdict: VerdictReject, Reason: ReasonDuplicate})
			continue
		}
		p.seen[rec.ExternalID] = true
		batch = append(batch, rec)
		if len(batch) == cap(batch) {
			if err := flush(false); err != nil {
				return p.counts, err
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return p.counts, context.Cause(ctx)
	}
	complete := r.readComplete()
	for _, id := range slices.Sorted(maps.Keys(p.held)) {
		rows := p.held[id]
		if complete && len(rows) == 1 {
			batch = append(batch, rows[0])
			continue
		}
		for _, rec := range rows {
			p.add(PlanEntry{ExternalID: id, Ref: rec.Ref}, Decision{Verdict: VerdictReject, Reason: ReasonDuplicateMarked})
		}
	}
	if err := flush(complete); err != nil {
		return p.counts, err
	}
	if !r.archiving() || !complete {
		return p.counts, nil
	}
	return p.counts, p.archive(ctx)
}

// planner is the state of one Plan.
type planner struct {
	*Reconciler
	pol    policy
	now    time.Time
	counts map[string]int64
	emit   func(PlanEntry)
	// listed is the destination's customer list where Run would rebuild
	// the cache from it first.
	listed map[string]Customer
	// seen are the external ids read (the archive plan).
	seen map[string]bool
	// held are the rows of users marked as duplicated by an earlier run.
	held map[string][]Record
}

// planAction is the dry run's name of a verdict.
func planAction(v Verdict) string {
	switch v {
	case VerdictCreate:
		return PlanCreate
	case VerdictUpdate:
		return PlanUpdate
	case VerdictArchive:
		return PlanArchive
	case VerdictReject:
		return PlanReject
	case VerdictSkip, VerdictBackoff:
		return PlanSkip
	}
	return PlanUnchanged // unchanged, adopt (no write), leave
}

// add counts and emits e with d's action and reason.
func (p *planner) add(e PlanEntry, d Decision) {
	e.Action = planAction(d.Verdict)
	if e.Reason == "" {
		e.Reason = d.Reason
	}
	p.counts[e.Action]++
	if e.Action != PlanUnchanged {
		p.emit(e)
	}
}

// known returns what Run would know of id when it decides: the mapping
// the cache rebuild stores from the listing, or the cached one.
func (p *planner) known(id string, mappings map[string]Mapping, failures map[string]Failure) Known {
	var k Known
	if c, ok := p.listed[id]; ok {
		k.Mapping = &Mapping{ExternalID: id, CustomerID: c.ID, Hash: p.fields.hash(fromCustomer(c))}
		k.Current = &c
	} else if m, ok := mappings[id]; ok {
		k.Mapping = &m
	}
	if f, ok := failures[id]; ok {
		k.Failure = &f
	}
	return k
}

// batch plans one batch of source records; complete says whether the read
// was complete, as far as it is known (it is for the rows decided after
// the read).
func (p *planner) batch(ctx context.Context, batch []Record, complete bool) error {
	if len(batch) == 0 {
		return nil
	}
	ids := make([]string, len(batch))
	n := map[string]int{}
	for i, rec := range batch {
		ids[i] = rec.ExternalID
		n[rec.ExternalID]++
	}
	mappings, err := p.store.Mappings(ctx, ids)
	if err != nil {
		return fmt.Errorf("look up mappings: %w", err)
	}
	failures, err := p.store.Failures(ctx, ids)
	if err != nil {
		return fmt.Errorf("look up failures: %w", err)
	}
	for _, rec := range batch {
		e := PlanEntry{ExternalID: rec.ExternalID, Ref: rec.Ref}
		want := Desired{Kind: WantRecord, Record: rec, Rows: n[rec.ExternalID], Complete: complete}
		k := p.known(rec.ExternalID, mappings, failures)
		d := p.pol.decide(want, k, when{now: p.now})
		if d.Verdict == VerdictUnchanged || !d.Verdict.Writes() || k.Current != nil {
			if k.Current != nil {
				e.CustomerID = k.Current.ID
				e.Changes = changes(*k.Current, d.Patch)
			}
			p.add(e, d)
			continue
		}
		k.Failure = nil // decided already; what follows is the write's own decision
		switch d.Verdict {
		case VerdictUpdate:
			cur, err := p.dst.GetCustomer(ctx, k.Mapping.CustomerID)
			if err == nil && p.caps.ExternalID != ExternalIDNone && cur.ExternalID != rec.ExternalID {
				err = &APIError{Kind: ErrNotFound, Code: "not_found"}
			}
			if errors.Is(err, ErrNotFound) {
				// Run forgets the stale mapping and resolves the user afresh.
				d = p.pol.decide(want, Known{}, when{now: p.now})
				e.Reason = "cached customer " + k.Mapping.CustomerID + " no longer exists"
				break
			}
			if err != nil {
				return fmt.Errorf("get customer %s: %w", k.Mapping.CustomerID, err)
			}
			k.Current = &cur
			d = p.pol.decide(want, k, when{now: p.now})
			e.CustomerID = cur.ID
			e.Changes = changes(cur, d.Patch)
			p.add(e, d)
			continue
		}
		if d.Verdict == VerdictLink {
			// Update-only links a user the cache does not know by its
			// external id, and skips one without a customer.
			cur, err := p.dst.FindByExternalID(ctx, rec.ExternalID)
			if errors.Is(err, ErrNotFound) || (err == nil && cur.ExternalID != rec.ExternalID) {
				p.add(e, Decision{Verdict: VerdictSkip, Reason: ReasonUpdateOnly})
				continue
			}
			if err != nil {
				return fmt.Errorf("find customer %s: %w", rec.ExternalID, err)
			}
			k.Current = &cur
			d = p.pol.decide(want, k, when{now: p.now})
			e.CustomerID = cur.ID
			e.Changes = changes(cur, d.Patch)
			p.add(e, d)
			continue
		}
		if d.Verdict == VerdictCreate {
			e.Changes = changes(Customer{}, p.fields.diff(Customer{}, rec))
		}
		p.add(e, d)
	}
	return nil
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

// archive plans the archive policy after a complete read: the users the
// read did not yield (gone, or deleted at the source), decided as Run's
// archive decides them, and refused as Run would refuse them.
func (p *planner) archive(ctx context.Context) error {
	var gone []PlanEntry
	known := int64(0)
	consider := func(m Mapping, cur *Customer) {
		known++
		if p.seen[m.ExternalID] {
			return
		}
		d := p.pol.decide(Desired{Kind: WantGone, Record: Record{ExternalID: m.ExternalID}, Complete: true}, Known{Mapping: &m, Current: cur}, when{})
		if d.Verdict != VerdictArchive {
			return
		}
		e := PlanEntry{ExternalID: m.ExternalID, CustomerID: m.CustomerID, Action: PlanArchive}
		if cur != nil {
			e.Changes = changes(*cur, d.Patch)
		} else {
			e.Changes = []FieldChange{{Field: "metadata." + ArchivedKey, Old: "", New: "true"}}
		}
		gone = append(gone, e)
	}
	listedDone := map[string]bool{}
	for id, c := range p.listed {
		listedDone[id] = true
		consider(Mapping{ExternalID: id, CustomerID: c.ID, Hash: p.fields.hash(fromCustomer(c))}, &c)
	}
	for m, err := range p.store.AllMappings(ctx) {
		if err != nil {
			return fmt.Errorf("read mappings: %w", err)
		}
		if !listedDone[m.ExternalID] {
			consider(m, nil)
		}
	}
	slices.SortFunc(gone, func(a, b PlanEntry) int { return strings.Compare(a.ExternalID, b.ExternalID) })
	ratio := float64(len(gone)) / float64(max(known, 1))
	refused := len(gone) > 0 && ratio > p.opts.MaxArchiveRatio && !p.opts.AllowMassArchive
	for _, e := range gone {
		if refused {
			e.Reason = "refused: above sync.max_archive_ratio"
		}
		p.counts[e.Action]++
		p.emit(e)
	}
	if refused {
		return fmt.Errorf("%w: %d of %d known customers (%.1f%%) are gone from the source, more than sync.max_archive_ratio (%.1f%%); a run would archive nothing",
			ErrMassArchive, len(gone), known, 100*ratio, 100*p.opts.MaxArchiveRatio)
	}
	return nil
}
