package sync

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"go.uber.org/zap"
)

// LinkReport is what LinkByEmail found and did.
type LinkReport struct {
	Listed        int64 // customers the destination listed
	Linked        int64 // users linked to a customer (or that would be, in a dry run)
	AlreadyLinked int64 // users the cache links already, left alone
	Unmatched     int64 // users with an email no unlinked customer has
	WithoutEmail  int64 // users without an email, which cannot be matched
	// Ambiguous are the emails that more than one user or more than one
	// customer share, none of which were linked.
	Ambiguous []Ambiguity
}

// Ambiguity is one email several users or customers share. It names ids
// only: the report goes to terminals and logs.
type Ambiguity struct {
	ExternalIDs []string // users with the email (not yet linked)
	CustomerIDs []string // customers with the email (not yet linked)
}

// LinkByEmail links CRM users to destination customers by email, for a
// destination that keeps no external id (the cache is then the only record
// of which customer is whose). It is an explicit operator action, never
// part of a run: an email is a weak key. It lists every customer, reads
// the whole source and links a user to a customer only when exactly one
// unlinked user and exactly one unlinked customer have the email
// (compared case-insensitively). Emails shared by several users or several
// customers are reported and none of their users are linked. A linked user
// is hashed over the customer's current content, so the next run updates
// only the customers whose CRM data differ. With apply false nothing is
// stored (a dry run).
func (r *Reconciler) LinkByEmail(ctx context.Context, apply bool) (LinkReport, error) {
	var rep LinkReport
	linkedUsers := map[string]bool{}
	linkedCustomers := map[string]bool{}
	for m, err := range r.store.AllMappings(ctx) {
		if err != nil {
			return rep, fmt.Errorf("read mappings: %w", err)
		}
		linkedUsers[m.ExternalID] = true
		linkedCustomers[m.CustomerID] = true
	}

	customers := map[string][]Customer{} // by lower-cased email, unlinked only
	for c, err := range r.dst.ListCustomers(ctx) {
		if err != nil {
			return rep, fmt.Errorf("list customers: %w", err)
		}
		rep.Listed++
		if c.Email == "" || linkedCustomers[c.ID] {
			continue
		}
		k := strings.ToLower(c.Email)
		customers[k] = append(customers[k], c)
	}

	users := map[string][]string{} // by lower-cased email; only emails some customer has
	for rec, err := range r.src.Records(ctx) {
		if err != nil {
			var re *RecordError
			if errors.As(err, &re) {
				continue // the run reports bad records
			}
			return rep, fmt.Errorf("read source: %w", err)
		}
		switch k := strings.ToLower(rec.Email); {
		case rec.Deleted:
		case linkedUsers[rec.ExternalID]:
			rep.AlreadyLinked++
		case k == "":
			rep.WithoutEmail++
		case customers[k] == nil:
			rep.Unmatched++
		case !slices.Contains(users[k], rec.ExternalID):
			users[k] = append(users[k], rec.ExternalID)
		}
	}
	if err := ctx.Err(); err != nil {
		return rep, context.Cause(ctx)
	}

	var links []Mapping
	now := r.opts.Now()
	for k, ids := range users {
		cs := customers[k]
		if len(ids) > 1 || len(cs) > 1 {
			a := Ambiguity{ExternalIDs: slices.Sorted(slices.Values(ids))}
			for _, c := range cs {
				a.CustomerIDs = append(a.CustomerIDs, c.ID)
			}
			slices.Sort(a.CustomerIDs)
			rep.Ambiguous = append(rep.Ambiguous, a)
			continue
		}
		c := cs[0]
		c.ExternalID = ids[0]
		links = append(links, Mapping{ExternalID: ids[0], CustomerID: c.ID, Hash: r.fields.hash(fromCustomer(c)), SyncedAt: now})
	}
	slices.SortFunc(rep.Ambiguous, func(a, b Ambiguity) int { return strings.Compare(a.ExternalIDs[0], b.ExternalIDs[0]) })
	rep.Linked = int64(len(links))
	if apply {
		for chunk := range slices.Chunk(links, rebuildBatch) {
			if err := r.store.PutMappings(ctx, chunk); err != nil {
				return rep, fmt.Errorf("store links: %w", err)
			}
		}
	}
	r.log.Info("linked users to customers by email",
		zap.Bool("applied", apply), zap.Int64("listed", rep.Listed), zap.Int64("linked", rep.Linked),
		zap.Int64("already_linked", rep.AlreadyLinked), zap.Int64("unmatched", rep.Unmatched),
		zap.Int64("without_email", rep.WithoutEmail), zap.Int("ambiguous", len(rep.Ambiguous)))
	return rep, nil
}
