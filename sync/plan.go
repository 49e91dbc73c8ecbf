package sync

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"maps"
	"slices"
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

// FieldChange is one field a planned (or, in the audit ledger, confirmed)
// write changes. Metadata keys appear as "metadata.KEY". A ledger entry
// keeps Old and New only with Options.AuditValues; otherwise they are
// empty and Redacted is set, so the ledger does not become a second copy
// of the CRM's personal data.
type FieldChange struct {
	Field    string `json:"field"`
	Old      string `json:"old"`
	New      string `json:"new"`
	Redacted bool   `json:"redacted,omitempty"`
}

// PlanEntry is what a dry run would do with one user.
type PlanEntry struct {
	ExternalID string        `json:"external_id"`
	Action     string        `json:"action"`
	CustomerID string        `json:"customer_id,omitempty"`
	Ref        string        `json:"ref,omitempty"`
	Changes    []FieldChange `json:"changes,omitempty"`
	Reason     string        `json:"reason,omitempty"`
}

// Plan computes what Run would do without writing to the destination or the
// store: it reads the source, the store and the destination (a list walk
// where Run would rebuild the cache, a GET per changed cached user to show
// the old values, a lookup by external id where update-only would link)
// and calls emit for every user whose action is not "unchanged". It runs
// Run's plan phase (scan): every user is decided by decide, the decision
// Run and SyncOne make, duplicates are found exactly as Run finds them,
// and what was read is kept in temporary files, not in memory (issue 13).
// It returns the count per action. A plan that Run would refuse
// (ErrMassArchive) is returned whole, with that error.
func (r *Reconciler) Plan(ctx context.Context, emit func(PlanEntry)) (map[string]int64, error) {
	p := &planner{Reconciler: r, pol: r.policy(), counts: map[string]int64{}, emit: emit, now: r.opts.Now()}
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
	sc, err := r.newScan(ctx)
	if err != nil {
		return p.counts, err
	}
	defer sc.close()
	seen := newIDSorter(r.opts.SpillDir)
	defer seen.close()
	err = sc.read(ctx, scanHooks{
		known: p.known,
		bad: func(_ context.Context, re *RecordError) error {
			d := p.pol.decide(Desired{Kind: WantRejected, Record: Record{ExternalID: re.ExternalID, Ref: re.Ref}, Reason: re.Reason}, Known{}, when{})
			p.add(PlanEntry{ExternalID: re.ExternalID, Ref: re.Ref}, d)
			return nil
		},
		seen: func(_ context.Context, ids []string) error {
			if !r.archiving() {
				return nil // only the archive plan needs them
			}
			for _, id := range ids {
				if err := seen.add(id); err != nil {
					return err
				}
			}
			return nil
		},
		row:  func(context.Context, Record, Known, Decision) error { return nil },
		read: func(int64, time.Duration) {},
		printed: func(unchanged, _ int64) {
			if unchanged > 0 {
				p.counts[PlanUnchanged] += unchanged
			}
		},
		each: func(id []byte, ref string, v Verdict, reason []byte) {
			if v == VerdictReject { // a known reject, with the reason it was recorded with
				p.add(PlanEntry{ExternalID: string(id), Ref: ref}, Decision{Verdict: v, Reason: string(reason)})
			}
		},
	})
	if err != nil {
		return p.counts, err
	}
	noop := func(context.Context, string) error { return nil }
	err = sc.resolve(ctx, true, resolveHooks{
		final: func(row scanRow, d Decision, _ bool) {
			p.add(PlanEntry{ExternalID: row.id, Ref: row.ref}, d)
		},
		mark:  func(context.Context, string, []string) error { return nil },
		clear: noop,
	})
	if err != nil {
		return p.counts, err
	}
	for j, err := range sc.jobs() {
		if err != nil {
			return p.counts, err
		}
		if err := p.write(ctx, j); err != nil {
			return p.counts, err
		}
	}
	if !r.archiving() || !sc.complete {
		return p.counts, nil
	}
	return p.counts, p.archive(ctx, seen)
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

// known returns what Run would know of a batch's users when it decides:
// the mapping the cache rebuild stores from the listing, or the cached
// one.
func (p *planner) known(ctx context.Context, batch []Record) (func(id string) Known, error) {
	ids := make([]string, len(batch))
	for i, rec := range batch {
		ids[i] = rec.ExternalID
	}
	mappings, err := p.store.Mappings(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("look up mappings: %w", err)
	}
	failures, err := p.store.Failures(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("look up failures: %w", err)
	}
	return func(id string) Known {
		var k Known
		if m, ok := p.listedMapping(id); ok {
			k.Mapping = &m
		} else if m, ok := mappings[id]; ok {
			k.Mapping = &m
		}
		if f, ok := failures[id]; ok {
			k.Failure = &f
		}
		return k
	}, nil
}

// listedMapping is the mapping the cache rebuild would store for id.
func (p *planner) listedMapping(id string) (Mapping, bool) {
	c, ok := p.listed[id]
	if !ok {
		return Mapping{}, false
	}
	return Mapping{ExternalID: id, CustomerID: c.ID, Hash: p.fields.hash(fromCustomer(c))}, true
}

// write plans one write the scan asked for, reading the destination as
// Run would before writing: the cached customer for an update, the
// customer with the external id where update-only links.
func (p *planner) write(ctx context.Context, j job) error {
	rec := j.rec
	e := PlanEntry{ExternalID: rec.ExternalID, Ref: rec.Ref}
	want := Desired{Kind: WantRecord, Record: rec, Rows: 1, Complete: true}
	k := Known{Mapping: j.mapping}
	verdict := j.verdict
	var cur Customer
	switch {
	case k.Mapping != nil && p.listed[rec.ExternalID].ID == k.Mapping.CustomerID:
		cur = p.listed[rec.ExternalID]
	case verdict == VerdictUpdate:
		var err error
		cur, err = p.dst.GetCustomer(ctx, k.Mapping.CustomerID)
		if err == nil && p.caps.ExternalID != ExternalIDNone && cur.ExternalID != rec.ExternalID {
			err = &APIError{Kind: ErrNotFound, Code: "not_found"}
		}
		if err != nil && !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("get customer %s: %w", k.Mapping.CustomerID, err)
		}
		if err != nil {
			// Run forgets the stale mapping and resolves the user afresh.
			e.Reason = "cached customer " + k.Mapping.CustomerID + " no longer exists"
			k.Mapping = nil
			verdict = p.pol.decide(want, k, when{now: p.now}).Verdict
		}
	}
	if cur.ID == "" && verdict == VerdictLink {
		// Update-only links a user the cache does not know by its
		// external id, and skips one without a customer.
		found, err := p.dst.FindByExternalID(ctx, rec.ExternalID)
		if errors.Is(err, ErrNotFound) || (err == nil && found.ExternalID != rec.ExternalID) {
			p.add(e, Decision{Verdict: VerdictSkip, Reason: ReasonUpdateOnly})
			return nil
		}
		if err != nil {
			return fmt.Errorf("find customer %s: %w", rec.ExternalID, err)
		}
		cur = found
	}
	if cur.ID == "" {
		d := p.pol.decide(want, k, when{now: p.now})
		if d.Verdict == VerdictCreate {
			e.Changes = changes(Customer{}, p.fields.diff(Customer{}, rec))
		}
		p.add(e, d)
		return nil
	}
	k.Current = &cur
	d := p.pol.decide(want, k, when{now: p.now})
	e.CustomerID = cur.ID
	e.Changes = changes(cur, d.Patch)
	p.add(e, d)
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
// archive decides them, and refused as Run would refuse them. The ids
// read come sorted from seen and are merged with the mappings, which the
// store streams sorted too: no id set is held in memory.
func (p *planner) archive(ctx context.Context, seen *idSorter) error {
	var gone []PlanEntry
	known := int64(0)
	nextSeen, stop := iter.Pull2(seen.sorted())
	defer stop()
	cur, seenErr, more := nextSeen()
	read := func(id string) (bool, error) {
		for more && seenErr == nil && cur < id {
			cur, seenErr, more = nextSeen()
		}
		return more && seenErr == nil && cur == id, seenErr
	}
	consider := func(m Mapping, c *Customer) error {
		known++
		wasRead, err := read(m.ExternalID)
		if err != nil || wasRead {
			return err
		}
		d := p.pol.decide(Desired{Kind: WantGone, Record: Record{ExternalID: m.ExternalID}, Complete: true}, Known{Mapping: &m, Current: c}, when{})
		if d.Verdict != VerdictArchive {
			return nil
		}
		e := PlanEntry{ExternalID: m.ExternalID, CustomerID: m.CustomerID, Action: PlanArchive}
		if c != nil {
			e.Changes = changes(*c, d.Patch)
		} else {
			e.Changes = []FieldChange{{Field: "metadata." + ArchivedKey, Old: "", New: "true"}}
		}
		gone = append(gone, e)
		return nil
	}
	// The users Run would know after its cache rebuild: the listed ones
	// and the cached ones, in id order.
	listedIDs := slices.Sorted(maps.Keys(p.listed))
	next := func(m Mapping) error {
		for len(listedIDs) > 0 && listedIDs[0] <= m.ExternalID {
			id := listedIDs[0]
			listedIDs = listedIDs[1:]
			lm, _ := p.listedMapping(id)
			c := p.listed[id]
			if err := consider(lm, &c); err != nil {
				return err
			}
			if id == m.ExternalID {
				return nil // the rebuild replaced the cached mapping
			}
		}
		if m.ExternalID == "" {
			return nil
		}
		return consider(m, nil)
	}
	for m, err := range p.store.AllMappings(ctx) {
		if err != nil {
			return fmt.Errorf("read mappings: %w", err)
		}
		if err := next(m); err != nil {
			return err
		}
	}
	for len(listedIDs) > 0 {
		if err := next(Mapping{ExternalID: listedIDs[len(listedIDs)-1]}); err != nil {
			return err
		}
	}
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
