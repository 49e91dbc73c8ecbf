package sync

import (
	"fmt"
	"time"
)

// Desire is what the source says of a user.
type Desire int

// What the source says of a user (Desired.Kind).
const (
	// WantRecord: a valid row; the customer should hold it.
	WantRecord Desire = iota
	// WantDeleted: the source reports the user deleted (a soft-deleted
	// row, an archived CRM contact). Never synced: it is treated as a
	// user gone from the source.
	WantDeleted
	// WantGone: a mapped user the read did not yield.
	WantGone
	// WantRejected: the source could not read the row (RecordError).
	WantRejected
	// WantConfirmed: a print pass matched the row with the content the
	// last run confirmed for the user, and the state DB has not changed
	// since for it (see prints.go): what decoding it would find unchanged.
	WantConfirmed
)

func (d Desire) String() string {
	switch d {
	case WantRecord:
		return "record"
	case WantDeleted:
		return "deleted"
	case WantGone:
		return "gone"
	case WantRejected:
		return "rejected"
	case WantConfirmed:
		return "confirmed"
	}
	return fmt.Sprintf("Desire(%d)", int(d))
}

// Desired is the desired state of one user, as the read found it.
type Desired struct {
	Kind   Desire
	Record Record // WantRecord: the row; otherwise ExternalID and Ref at least
	// Reason is the source's reason for a WantRejected row.
	Reason string
	// Rows is how many rows of the read carry the user's external id; more
	// than one makes it a duplicate. Zero counts as one.
	Rows int
	// Complete: the read was the whole source (see PartialSource). Only a
	// complete read shows a user is gone or a duplicate was fixed.
	Complete bool
}

// Known is what the state DB (and, when it was read, the destination)
// holds of a user.
type Known struct {
	Mapping *Mapping
	Failure *Failure
	// Current is the user's customer as the destination holds it, when the
	// caller has read it (a cached customer fetched before its update, a
	// customer found after a conflict, a dry run's listing). With it the
	// decision carries the patch; without it an update's patch is decided
	// once the customer is read.
	Current *Customer
}

// Verdict is what is to be done with a user.
type Verdict string

// Verdicts of Decide.
const (
	VerdictCreate    Verdict = "create"    // create a customer
	VerdictUpdate    Verdict = "update"    // bring the customer in line (Decision.Patch once Current is known)
	VerdictLink      Verdict = "link"      // update-only: find the customer by external id, then update it; skipped when there is none
	VerdictAdopt     Verdict = "adopt"     // create-only: a customer found for the user is linked as it is
	VerdictUnchanged Verdict = "unchanged" // the destination holds the record already
	VerdictArchive   Verdict = "archive"   // mark the customer archived
	VerdictSkip      Verdict = "skip"      // the sync mode leaves the user alone
	VerdictBackoff   Verdict = "backoff"   // failed before with this content; waits for its backoff
	VerdictReject    Verdict = "reject"    // cannot be synced (bad row, duplicate, refused content)
	VerdictLeave     Verdict = "leave"     // a deleted or gone user whose customer is left as it is
)

// Writes reports whether v may call the destination's write API.
func (v Verdict) Writes() bool {
	return v == VerdictCreate || v == VerdictUpdate || v == VerdictLink || v == VerdictArchive
}

// Decision is what Decide returns.
type Decision struct {
	Verdict Verdict
	// Hash is the content hash the write confirms (ArchivedHash for an
	// archive); empty when nothing is written.
	Hash string
	// Patch is the update of Known.Current (VerdictUpdate, VerdictArchive
	// with Current known).
	Patch Patch
	// ClearMark: the user's duplicate mark is to be removed (a complete
	// read found one row of it).
	ClearMark bool
	// Reason says why, for a verdict that is not a write or unchanged.
	Reason string
}

// Policy is what Decide needs of the reconciler's configuration.
type policy struct {
	caps     Capabilities
	mode     string
	deletion string
	fields   fields
}

func (r *Reconciler) policy() policy {
	return policy{caps: r.caps, mode: r.opts.Mode, deletion: r.opts.Deletion, fields: r.fields}
}

// Decision input beyond the user: the clock and whether the backoff of an
// earlier failure is waived (sync --external-id: the operator asked).
type when struct {
	now   time.Time
	force bool
	// compare: Known.Current is what the destination holds now and is
	// compared with the record even when the mapping's hash says the
	// record was confirmed (verify looks for drift behind the cache).
	compare bool
}

// decide is the one decision of what to do with a user: the run, the dry
// run's plan and SyncOne all call it, and nothing else decides (issue 13:
// three copies had drifted; the single-record sync blanked soft-deleted
// customers). It is pure: no I/O, no clock of its own.
func (p policy) decide(d Desired, k Known, w when) Decision {
	switch d.Kind {
	case WantRejected:
		return Decision{Verdict: VerdictReject, Reason: d.Reason}
	case WantConfirmed:
		return Decision{Verdict: VerdictUnchanged}
	case WantDeleted, WantGone:
		return p.decideGone(d, k)
	}
	rec := d.Record
	marked := k.Failure != nil && k.Failure.Code == CodeDuplicateExternalID
	dup, rejected := p.duplicate(max(d.Rows, 1), marked, d.Complete)
	if rejected {
		return dup
	}
	clear := dup.ClearMark
	h := p.fields.hash(rec)
	dec := func(v Verdict, reason string) Decision {
		return Decision{Verdict: v, Hash: h, ClearMark: clear, Reason: reason}
	}
	linked := k.Mapping != nil
	if linked && k.Mapping.Hash == h && !(w.compare && k.Current != nil) {
		return dec(VerdictUnchanged, "")
	}
	if p.skips(linked) {
		if linked {
			return dec(VerdictSkip, ReasonCreateOnly)
		}
		return dec(VerdictSkip, ReasonUpdateOnly)
	}
	if f := k.Failure; f != nil && f.Hash == h && !clear {
		if f.Terminal {
			// Rejected before with this very content: sending it again
			// cannot succeed. It is retried once the CRM changes it.
			return dec(VerdictReject, "rejected before with this content: "+f.Code+": "+f.Message)
		}
		if !w.force && w.now.Before(f.NextAttempt) {
			return dec(VerdictBackoff, fmt.Sprintf("failed before (%s); retried after %s", f.Code, f.NextAttempt.UTC().Format(time.RFC3339)))
		}
	}
	if k.Current == nil {
		switch {
		case linked:
			return dec(VerdictUpdate, "")
		case p.mode == ModeUpdateOnly:
			return dec(VerdictLink, "")
		}
		return dec(VerdictCreate, "")
	}
	if !linked && p.mode == ModeCreateOnly {
		return dec(VerdictAdopt, "")
	}
	out := dec(VerdictUpdate, "")
	out.Patch = p.fields.diff(*k.Current, rec)
	if out.Patch.Empty() {
		out.Verdict = VerdictUnchanged
	}
	return out
}

// duplicate decides for a user by how many rows of the read carry its
// external id and whether an earlier run marked it as duplicated:
// rejected when several rows do, or when it is marked and the read was
// partial (only a complete read shows the other rows are gone);
// otherwise the decision only says whether the mark is to be cleared.
func (p policy) duplicate(rows int, marked, complete bool) (d Decision, rejected bool) {
	switch {
	case rows > 1:
		return Decision{Verdict: VerdictReject, Reason: ReasonDuplicate}, true
	case marked && !complete:
		return Decision{Verdict: VerdictReject, Reason: ReasonDuplicateMarked}, true
	case marked:
		return Decision{ClearMark: true}, false
	}
	return Decision{}, false
}

// decideGone decides for a user deleted at the source or gone from it:
// its customer is archived under the archive policy after a complete read,
// and otherwise left as it is. It is never blanked.
func (p policy) decideGone(d Desired, k Known) Decision {
	leave := func(reason string) Decision { return Decision{Verdict: VerdictLeave, Reason: reason} }
	switch {
	case p.deletion != DeletionArchive:
		return leave("deleted at the source; the deletion policy leaves its customer alone")
	case !d.Complete:
		return leave("deleted at the source; archived after the next complete read")
	case k.Mapping == nil:
		return leave("deleted at the source; no customer is linked to it")
	case k.Mapping.Hash == ArchivedHash:
		return leave("deleted at the source; its customer is archived already")
	}
	out := Decision{Verdict: VerdictArchive, Hash: ArchivedHash}
	if c := k.Current; c != nil && c.Metadata[ArchivedKey] != "true" {
		merged := make(map[string]string, len(c.Metadata)+1)
		for key, v := range c.Metadata {
			merged[key] = v
		}
		merged[ArchivedKey] = "true"
		out.Patch = Patch{Metadata: merged, SetMetadata: true}
	}
	return out
}

// skips reports whether the mode leaves a new or changed user alone
// without an API call: create-only never updates a linked user, and
// update-only cannot link a user the cache does not know on a destination
// that cannot look customers up by external id.
func (p policy) skips(linked bool) bool {
	switch p.mode {
	case ModeCreateOnly:
		return linked
	case ModeUpdateOnly:
		return !linked && !p.caps.FilterByExternalID
	}
	return false
}

// Reasons of decisions, as SyncOne and the dry run report them.
const (
	ReasonCreateOnly = "left alone by sync.mode: the customer exists, and create-only never updates"
	ReasonUpdateOnly = "left alone by sync.mode: no customer is linked to this user, and update-only never creates"

	ReasonDuplicate       = "duplicate externalId: more than one source row has it; none of its rows is synced until the source has one"
	ReasonDuplicateMarked = "marked as a duplicate externalId: more than one source row had it; only a complete read clears the mark"
)
