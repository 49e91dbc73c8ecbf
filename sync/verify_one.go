package sync

import (
	"context"
	"errors"
	"fmt"

	"go.uber.org/zap"
)

// CustomerEvent is what the destination said changed about one customer
// (a Plugipay webhook). It is a hint, not the truth: VerifyCustomer reads
// the customer again before writing anything.
type CustomerEvent struct {
	// ID names the event in the audit ledger (CauseWebhook).
	ID         string
	CustomerID string
	ExternalID string
	// Deleted: the customer was deleted.
	Deleted bool
	// Customer is the customer as the event carried it, if it did.
	Customer *Customer
}

// Outcomes of VerifyCustomer.
const (
	CheckInSync       = "in_sync"      // the customer holds the confirmed content (the sync's own write, or changed back)
	CheckUnknown      = "unknown"      // not a customer the sync maps
	CheckPending      = "pending"      // a write of the user is in flight; its confirmation settles it
	CheckUnverifiable = "unverifiable" // no confirmed content to compare with
	CheckDrifted      = "drifted"      // drift found and reported (policy report)
	CheckMissing      = "missing"      // the customer is gone; reported (verify.missing: report)
)

// VerifyCustomer checks the one customer an event names, as verify checks
// each listed customer, and with o.Repair repairs it through the same path
// (the repair outcomes RepairRepaired ...). A customer whose event shows
// the confirmed content costs no API call: that is how the sync's own
// writes, which cause events too, are recognised, so they never feed back.
// The caller serialises it with runs (the daemon holds its run lock).
func (r *Reconciler) VerifyCustomer(ctx context.Context, ev CustomerEvent, o VerifyOptions) (string, error) {
	ledger, ok := r.store.(Ledger)
	if !ok || ev.ExternalID == "" {
		return CheckUnknown, nil
	}
	id := ev.ExternalID
	ms, err := r.store.Mappings(ctx, []string{id})
	if err != nil {
		return "", fmt.Errorf("verify customer: %w", err)
	}
	m, ok := ms[id]
	if !ok || m.CustomerID != ev.CustomerID {
		return CheckUnknown, nil
	}
	if m.Hash == ArchivedHash {
		return CheckInSync, nil
	}
	pws, err := r.store.PendingWrites(ctx, []string{id})
	if err != nil {
		return "", fmt.Errorf("verify customer: %w", err)
	}
	if _, ok := pws[id]; ok {
		return CheckPending, nil
	}
	recs, err := ledger.ConfirmedRecords(ctx, []string{id})
	if err != nil {
		return "", fmt.Errorf("verify customer: %w", err)
	}
	cr, ok := recs[id]
	pol := r.policy()
	if !ok || cr.Hash != m.Hash || pol.fields.hash(cr.Record) != m.Hash {
		return CheckUnverifiable, nil
	}
	log := r.log.With(zap.String("event_id", ev.ID), zap.String("external_id", id), zap.String("customer_id", m.CustomerID))
	ru := &run{Reconciler: r, abort: func(error) {}, cause: CauseWebhook, causeID: ev.ID}
	if !ev.Deleted && ev.Customer != nil && pol.fields.diff(*ev.Customer, cr.Record).Empty() {
		return CheckInSync, nil
	}
	if !o.Repair {
		cur, err := r.dst.GetCustomer(ctx, m.CustomerID)
		switch {
		case errors.Is(err, ErrNotFound):
			log.Warn("a mapped customer is gone")
			return CheckMissing, nil
		case err != nil:
			return "", fmt.Errorf("verify customer: %w", err)
		case pol.fields.diff(cur, cr.Record).Empty():
			return CheckInSync, nil
		}
		log.Warn("customer changed behind the sync's back; verify.policy: report leaves it")
		return CheckDrifted, nil
	}
	if ev.Deleted {
		if o.Missing != MissingRecreate {
			log.Warn("a mapped customer was deleted; verify.missing: report leaves it")
			return CheckMissing, nil
		}
		return ru.recreate(ctx, ledger, m, log), nil
	}
	out := ru.repair(ctx, drifted{m: m, rec: cr.Record}, log)
	if out == RepairUnchanged {
		return CheckInSync, nil
	}
	return out, nil
}
