package sync

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.uber.org/zap"
)

// MissingPolicy says what verify does with a mapped customer the
// destination no longer lists (deleted, or moved to another workspace).
type MissingPolicy string

// Missing policies.
const (
	// MissingReport reports it; the next change of the user at the source
	// recreates it, as a run does with a stale mapping.
	MissingReport MissingPolicy = "report"
	// MissingRecreate recreates it now, with the confirmed content, through
	// the run's path for a stale mapping.
	MissingRecreate MissingPolicy = "recreate"
)

// Valid reports whether p is a known policy.
func (p MissingPolicy) Valid() bool { return p == MissingReport || p == MissingRecreate }

// Defaults of VerifyOptions.
const (
	DefaultVerifyExamples = 10
	// VerifyPageSize is how many customers one list request reads.
	VerifyPageSize = 100
)

// VerifyOptions tune one verify.
type VerifyOptions struct {
	// Repair puts drifted managed fields back (and, with MissingRecreate,
	// recreates missing customers); without it verify only reports.
	Repair  bool
	Missing MissingPolicy
	// PagesPerSecond paces the list walk (each page is one read request),
	// so a verify takes a share of the read budget and leaves the rest to
	// runs; 0 does not pace.
	PagesPerSecond float64
	// Examples is how many examples are kept per field and per list of
	// the report; 0 means DefaultVerifyExamples.
	Examples int
	// ID names this verify in the audit ledger and the logs; empty means
	// one made of the start time.
	ID string
	// Metrics, if set, receive the result.
	Metrics *VerifyMetrics
}

// DriftExample is one drifted field of one customer. Want and Have are
// the values (the caller shows them only when asked: they are personal
// data).
type DriftExample struct {
	ExternalID string `json:"external_id"`
	CustomerID string `json:"customer_id"`
	Field      string `json:"field"`
	Want       string `json:"want,omitempty"`
	Have       string `json:"have,omitempty"`
}

// CustomerRef names a customer in a report.
type CustomerRef struct {
	ExternalID string `json:"external_id"`
	CustomerID string `json:"customer_id"`
}

// VerifyReport is what a verify found and did.
type VerifyReport struct {
	ID string `json:"id"`
	// Listed customers, in Pages list requests.
	Listed int64 `json:"listed"`
	Pages  int64 `json:"pages"`
	// Compared: mapped customers compared with their confirmed content.
	Compared int64 `json:"compared"`
	// Drifted customers, and per field how many customers drifted in it.
	Drifted      int64            `json:"drifted"`
	DriftByField map[string]int64 `json:"drift_by_field"`
	Examples     []DriftExample   `json:"examples,omitempty"`
	// Missing: mapped customers the list did not yield.
	Missing         int64         `json:"missing"`
	MissingExamples []CustomerRef `json:"missing_examples,omitempty"`
	// Orphans: customers whose externalId the sync does not know (no
	// mapping, no pending write, no failure). Never touched.
	Orphans        int64         `json:"orphans"`
	OrphanExamples []CustomerRef `json:"orphan_examples,omitempty"`
	// Unverifiable: mapped customers without confirmed content to compare
	// with (linked by a cache rebuild or before this version, or adopted
	// as they were); Archived: mapped customers the sync archived.
	Unverifiable int64 `json:"unverifiable"`
	Archived     int64 `json:"archived"`
	// Repairs by outcome (RepairRepaired ...), when repairing.
	Repairs  map[string]int64 `json:"repairs,omitempty"`
	Duration time.Duration    `json:"-"`
}

// Clean reports whether verify found nothing to report.
func (r VerifyReport) Clean() bool { return r.Drifted == 0 && r.Missing == 0 && r.Orphans == 0 }

// Repair outcomes, the values of the repairs metric's outcome label.
const (
	RepairRepaired  = "repaired"  // the managed fields were patched back
	RepairRecreated = "recreated" // a missing customer was created again
	RepairUnchanged = "unchanged" // read again, it held the confirmed content (changed back meanwhile)
	RepairSkipped   = "skipped"   // the sync mode never updates (create-only)
	RepairFailed    = "failed"
)

// drifted is one mapped customer whose listed content differs from its
// confirmed content.
type drifted struct {
	m   Mapping
	rec Record
}

// Verify walks the destination's customer list, one request per 100
// customers, and compares each mapped customer's managed fields and owned
// metadata keys with the content last confirmed for its user (not with the
// CRM: a change at the source that no run has sent yet is not drift). It
// reports drift per field, mapped customers no longer listed and orphans.
// With o.Repair it puts the drifted fields back through the run's own
// path: the customer is read again, decide makes the patch, and the write
// goes through a pending write and its idempotency key, confirmed with an
// audit entry. The caller holds the writer lock when repairing.
func (r *Reconciler) Verify(ctx context.Context, o VerifyOptions) (VerifyReport, error) {
	start := r.opts.Now()
	if o.Examples <= 0 {
		o.Examples = DefaultVerifyExamples
	}
	if o.Missing == "" {
		o.Missing = MissingReport
	}
	if o.ID == "" {
		o.ID = start.UTC().Format("20060102T150405.000Z")
	}
	rep := VerifyReport{ID: o.ID, DriftByField: map[string]int64{}}
	ledger, ok := r.store.(Ledger)
	if !ok {
		return rep, errors.New("verify: the store keeps no confirmed content")
	}
	if err := r.VerifyDestination(ctx); err != nil {
		return rep, err
	}
	log := r.log.With(zap.String("verify_id", o.ID))

	// Every mapping, by customer id (a destination may keep no external
	// id on the customer): what the list does not yield is missing.
	mapped := map[string]Mapping{}
	mappedExt := map[string]bool{}
	for m, err := range r.store.AllMappings(ctx) {
		if err != nil {
			return rep, fmt.Errorf("verify: read mappings: %w", err)
		}
		mapped[m.CustomerID] = m
		mappedExt[m.ExternalID] = true
	}

	var lim *pacer
	if o.PagesPerSecond > 0 {
		lim = &pacer{every: time.Duration(float64(time.Second) / o.PagesPerSecond)}
	}
	var page []Customer
	var drift []drifted
	flush := func() error {
		d, err := r.verifyPage(ctx, ledger, page, mapped, mappedExt, &rep, o)
		drift = append(drift, d...)
		page = page[:0]
		return err
	}
	// Each page is one read request: wait for the budget before the first
	// customer of each.
	wait := func() error {
		return lim.wait(ctx)
	}
	if err := wait(); err != nil {
		return rep, err
	}
	for c, err := range r.dst.ListCustomers(ctx) {
		if err != nil {
			return rep, fmt.Errorf("verify: list customers: %w", err)
		}
		rep.Listed++
		page = append(page, c)
		if len(page) == VerifyPageSize {
			if err := flush(); err != nil {
				return rep, err
			}
			if err := wait(); err != nil {
				return rep, err
			}
		}
	}
	if err := flush(); err != nil {
		return rep, err
	}
	rep.Pages = max(1, (rep.Listed+VerifyPageSize-1)/VerifyPageSize)
	var missing []Mapping
	for _, m := range mapped {
		if m.Hash == ArchivedHash {
			continue
		}
		missing = append(missing, m)
	}
	slices.SortFunc(missing, func(a, b Mapping) int { return cmp.Compare(a.ExternalID, b.ExternalID) })
	rep.Missing = int64(len(missing))
	for _, m := range missing[:min(len(missing), o.Examples)] {
		rep.MissingExamples = append(rep.MissingExamples, CustomerRef{ExternalID: m.ExternalID, CustomerID: m.CustomerID})
	}

	if o.Repair {
		rep.Repairs = map[string]int64{}
		ru := &run{Reconciler: r, abort: func(error) {}, cause: CauseVerify, causeID: o.ID}
		for _, d := range drift {
			out := ru.repair(ctx, d, log)
			rep.Repairs[out]++
		}
		if o.Missing == MissingRecreate {
			for _, m := range missing {
				out := ru.recreate(ctx, ledger, m, log)
				rep.Repairs[out]++
			}
		}
		if err := ctx.Err(); err != nil {
			return rep, context.Cause(ctx)
		}
	}
	rep.Duration = r.opts.Now().Sub(start)
	log.Info("verify finished", zap.Int64("listed", rep.Listed), zap.Int64("pages", rep.Pages),
		zap.Int64("drifted", rep.Drifted), zap.Int64("missing", rep.Missing), zap.Int64("orphans", rep.Orphans),
		zap.Int64("unverifiable", rep.Unverifiable), zap.Any("repairs", rep.Repairs), zap.Duration("duration", rep.Duration))
	o.Metrics.observe(rep)
	return rep, nil
}

// pacer spaces events every apart, waiting deaf to nothing but ctx.
type pacer struct {
	every time.Duration
	next  time.Time
}

// wait returns when the next event may happen (at once for a nil p).
func (p *pacer) wait(ctx context.Context) error {
	if p == nil {
		return nil
	}
	now := time.Now()
	if d := p.next.Sub(now); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return context.Cause(ctx)
		case <-t.C:
		}
		now = p.next
	}
	p.next = now.Add(p.every)
	return nil
}

// verifyPage compares one page of listed customers, removing those it
// finds from mapped (by customer id), and returns the drifted ones.
func (r *Reconciler) verifyPage(ctx context.Context, ledger Ledger, page []Customer, mapped map[string]Mapping, mappedExt map[string]bool, rep *VerifyReport, o VerifyOptions) ([]drifted, error) {
	if len(page) == 0 {
		return nil, nil
	}
	// mine reports whether c is the customer of its mapping: on a
	// destination that keeps the external id, it must still carry it
	// (another tool may have moved it).
	mine := func(c Customer) (Mapping, bool) {
		m, ok := mapped[c.ID]
		return m, ok && (r.caps.ExternalID == ExternalIDNone || c.ExternalID == m.ExternalID)
	}
	var ids, unknown []string
	for _, c := range page {
		if m, ok := mine(c); ok {
			ids = append(ids, m.ExternalID)
		} else if c.ExternalID != "" && !mappedExt[c.ExternalID] {
			unknown = append(unknown, c.ExternalID)
		}
	}
	recs, err := ledger.ConfirmedRecords(ctx, ids)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	// An externalId without a mapping may still be a user the sync knows:
	// one whose write is unconfirmed, or failed. Only the others are
	// orphans.
	known := map[string]bool{}
	if len(unknown) > 0 {
		pws, err := r.store.PendingWrites(ctx, unknown)
		if err != nil {
			return nil, fmt.Errorf("verify: %w", err)
		}
		fs, err := r.store.Failures(ctx, unknown)
		if err != nil {
			return nil, fmt.Errorf("verify: %w", err)
		}
		for _, id := range unknown {
			_, p := pws[id]
			_, f := fs[id]
			known[id] = p || f
		}
	}
	pol := r.policy()
	var out []drifted
	for _, c := range page {
		m, ok := mine(c)
		if !ok {
			if c.ExternalID != "" && !mappedExt[c.ExternalID] && !known[c.ExternalID] {
				rep.Orphans++
				if len(rep.OrphanExamples) < o.Examples {
					rep.OrphanExamples = append(rep.OrphanExamples, CustomerRef{ExternalID: c.ExternalID, CustomerID: c.ID})
				}
			}
			continue
		}
		delete(mapped, c.ID)
		if m.Hash == ArchivedHash {
			rep.Archived++
			continue
		}
		cr, ok := recs[m.ExternalID]
		if !ok || cr.Hash != m.Hash || pol.fields.hash(cr.Record) != m.Hash {
			rep.Unverifiable++
			continue
		}
		rep.Compared++
		// The comparison is the run's: the patch decide would make of
		// this customer to hold the confirmed content.
		p := pol.fields.diff(c, cr.Record)
		if p.Empty() {
			continue
		}
		rep.Drifted++
		counted := map[string]bool{} // customers per field: metadata once, however many keys
		for _, fc := range changes(c, p) {
			field := fc.Field
			if len(field) > len(FieldMetadata) && field[:len(FieldMetadata)+1] == FieldMetadata+"." {
				field = FieldMetadata
			}
			if !counted[field] {
				counted[field] = true
				rep.DriftByField[field]++
			}
			if n := countField(rep.Examples, fc.Field); n < o.Examples {
				rep.Examples = append(rep.Examples, DriftExample{ExternalID: m.ExternalID, CustomerID: c.ID,
					Field: fc.Field, Want: fc.New, Have: fc.Old})
			}
		}
		out = append(out, drifted{m: m, rec: cr.Record})
	}
	return out, nil
}

func countField(es []DriftExample, field string) int {
	n := 0
	for _, e := range es {
		if e.Field == field {
			n++
		}
	}
	return n
}

// repair puts d's confirmed content back: the run's path for a mapped
// user (read the customer again, let decide make the patch, write it
// under a pending write's key, confirm), with decide told to compare the
// customer even though the mapping's hash matches.
func (ru *run) repair(ctx context.Context, d drifted, log *zap.Logger) string {
	ctx, cancel := context.WithTimeoutCause(ctx, ru.opts.WriteTimeout,
		fmt.Errorf("repair took longer than %s", ru.opts.WriteTimeout))
	defer cancel()
	m := d.m
	j := job{rec: d.rec, hash: m.Hash, mapping: &m, verdict: VerdictUpdate, compare: true}
	action, err := ru.reconcileMapped(ctx, j)
	switch {
	case err != nil:
		log.Warn("repair failed", zap.String("external_id", m.ExternalID), zap.String("customer_id", m.CustomerID), zap.Error(err))
		return RepairFailed
	case action == ActionUpdated:
		return RepairRepaired
	case action == ActionSkipped:
		return RepairSkipped
	}
	return RepairUnchanged
}

// recreate creates a missing customer again with its confirmed content,
// through the run's path for a stale mapping (the customer is read, found
// gone, the mapping forgotten and the user created). A user without
// confirmed content is left to the next change at the source.
func (ru *run) recreate(ctx context.Context, ledger Ledger, m Mapping, log *zap.Logger) string {
	ctx, cancel := context.WithTimeoutCause(ctx, ru.opts.WriteTimeout,
		fmt.Errorf("recreate took longer than %s", ru.opts.WriteTimeout))
	defer cancel()
	recs, err := ledger.ConfirmedRecords(ctx, []string{m.ExternalID})
	cr, ok := recs[m.ExternalID]
	if err != nil || !ok || cr.Hash != m.Hash {
		return RepairSkipped
	}
	j := job{rec: cr.Record, hash: m.Hash, mapping: &m, verdict: VerdictUpdate}
	action, err := ru.reconcile(ctx, j)
	switch {
	case err != nil:
		log.Warn("recreate failed", zap.String("external_id", m.ExternalID), zap.Error(err))
		return RepairFailed
	case action == ActionCreated || action == ActionRecovered:
		return RepairRecreated
	case action == ActionSkipped:
		return RepairSkipped
	}
	return RepairUnchanged
}
