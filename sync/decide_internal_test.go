package sync

import (
	"testing"
	"time"
)

// TestDecide is the decision table of decide: one row per rule, for each
// desire, mode, policy and capability that changes the verdict.
func TestDecide(t *testing.T) {
	plugipay := Capabilities{ExternalID: ExternalIDField, UniqueExternalID: true, FilterByExternalID: true,
		IdempotentCreate: true, Create: true, Metadata: true, Phone: true, TaxID: true}
	pin := Capabilities{ExternalID: ExternalIDNone}
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	rec := Record{ExternalID: "u1", Email: "a@example.com", Name: "A", Metadata: map[string]string{"plan": "pro"}, Ref: "line 2"}
	f := newFields(nil)
	h := f.hash(rec)
	mapped := &Mapping{ExternalID: "u1", CustomerID: "cus_1", Hash: "old"}
	same := &Mapping{ExternalID: "u1", CustomerID: "cus_1", Hash: h}
	archived := &Mapping{ExternalID: "u1", CustomerID: "cus_1", Hash: ArchivedHash}
	cur := &Customer{ID: "cus_1", ExternalID: "u1", Email: "a@example.com", Name: "Old", Metadata: map[string]string{"plan": "pro", "foreign": "x"}}
	held := &Customer{ID: "cus_1", ExternalID: "u1", Email: "a@example.com", Name: "A", Metadata: map[string]string{"plan": "pro"}}
	waiting := &Failure{ExternalID: "u1", Hash: h, Attempts: 2, Code: "network_error", NextAttempt: now.Add(time.Hour)}
	due := &Failure{ExternalID: "u1", Hash: h, Attempts: 2, Code: "network_error", NextAttempt: now.Add(-time.Hour)}
	refused := &Failure{ExternalID: "u1", Hash: h, Terminal: true, Code: "validation_error"}
	refusedOther := &Failure{ExternalID: "u1", Hash: "other", Terminal: true, Code: "validation_error"}
	dupMark := &Failure{ExternalID: "u1", Terminal: true, Code: CodeDuplicateExternalID}
	record := Desired{Kind: WantRecord, Record: rec, Rows: 1}
	complete := Desired{Kind: WantRecord, Record: rec, Rows: 1, Complete: true}
	deleted := Desired{Kind: WantDeleted, Record: Record{ExternalID: "u1", Ref: "line 2", Deleted: true}}
	deletedComplete := deleted
	deletedComplete.Complete = true
	gone := Desired{Kind: WantGone, Record: Record{ExternalID: "u1"}, Complete: true}

	for _, tc := range []struct {
		name     string
		caps     *Capabilities // nil: Plugipay's
		mode     string
		deletion string
		d        Desired
		k        Known
		force    bool
		want     Verdict
		clear    bool
	}{
		{name: "new user is created", d: record, want: VerdictCreate},
		{name: "changed linked user is updated", d: record, k: Known{Mapping: mapped}, want: VerdictUpdate},
		{name: "same content is unchanged", d: record, k: Known{Mapping: same}, want: VerdictUnchanged},
		{name: "same content unchanged in create-only", mode: ModeCreateOnly, d: record, k: Known{Mapping: same}, want: VerdictUnchanged},
		{name: "create-only skips a changed linked user", mode: ModeCreateOnly, d: record, k: Known{Mapping: mapped}, want: VerdictSkip},
		{name: "create-only creates a new user", mode: ModeCreateOnly, d: record, want: VerdictCreate},
		{name: "create-only adopts a found customer as it is", mode: ModeCreateOnly, d: record, k: Known{Current: cur}, want: VerdictAdopt},
		{name: "update-only links by external id", mode: ModeUpdateOnly, d: record, want: VerdictLink},
		{name: "update-only without the filter skips an unlinked user", caps: &pin, mode: ModeUpdateOnly, d: record, want: VerdictSkip},
		{name: "update-only updates a linked user on Pin", caps: &pin, mode: ModeUpdateOnly, d: record, k: Known{Mapping: mapped}, want: VerdictUpdate},
		{name: "update with the customer known carries the patch", d: record, k: Known{Mapping: mapped, Current: cur}, want: VerdictUpdate},
		{name: "customer holding the record already is unchanged", d: record, k: Known{Mapping: mapped, Current: held}, want: VerdictUnchanged},
		{name: "failure in backoff waits", d: record, k: Known{Mapping: mapped, Failure: waiting}, want: VerdictBackoff},
		{name: "forced sync ignores the backoff", d: record, k: Known{Mapping: mapped, Failure: waiting}, force: true, want: VerdictUpdate},
		{name: "failure past its backoff is retried", d: record, k: Known{Failure: due}, want: VerdictCreate},
		{name: "refused content is rejected", d: record, k: Known{Failure: refused}, want: VerdictReject},
		{name: "refused content is rejected even when forced", d: record, k: Known{Failure: refused}, force: true, want: VerdictReject},
		{name: "changed content after a refusal is retried", d: record, k: Known{Failure: refusedOther}, want: VerdictCreate},
		{name: "unchanged wins over an old failure", d: record, k: Known{Mapping: same, Failure: waiting}, want: VerdictUnchanged},
		{name: "mode skip wins over backoff", mode: ModeCreateOnly, d: record, k: Known{Mapping: mapped, Failure: waiting}, want: VerdictSkip},
		{name: "duplicate rows are rejected", d: Desired{Kind: WantRecord, Record: rec, Rows: 2, Complete: true}, k: Known{Mapping: mapped}, want: VerdictReject},
		{name: "duplicate mark kept by a partial read", d: record, k: Known{Failure: dupMark}, want: VerdictReject},
		{name: "duplicate mark cleared by a complete read", d: complete, k: Known{Failure: dupMark}, want: VerdictCreate, clear: true},
		{name: "rejected row", d: Desired{Kind: WantRejected, Record: Record{ExternalID: "u1"}, Reason: "bad email"}, k: Known{Mapping: mapped}, want: VerdictReject},
		{name: "deleted user left alone by the ignore policy", d: deletedComplete, k: Known{Mapping: mapped}, want: VerdictLeave},
		{name: "deleted user left alone after a partial read", deletion: DeletionArchive, d: deleted, k: Known{Mapping: mapped}, want: VerdictLeave},
		{name: "deleted user archived after a complete read", deletion: DeletionArchive, d: deletedComplete, k: Known{Mapping: mapped}, want: VerdictArchive},
		{name: "deleted user archived in update-only", mode: ModeUpdateOnly, deletion: DeletionArchive, d: deletedComplete, k: Known{Mapping: mapped}, want: VerdictArchive},
		{name: "deleted user without a customer is left alone", deletion: DeletionArchive, d: deletedComplete, want: VerdictLeave},
		{name: "deleted user archived already is left alone", deletion: DeletionArchive, d: deletedComplete, k: Known{Mapping: archived}, want: VerdictLeave},
		{name: "gone user archived", deletion: DeletionArchive, d: gone, k: Known{Mapping: mapped}, want: VerdictArchive},
		{name: "gone user left alone by the ignore policy", d: gone, k: Known{Mapping: mapped}, want: VerdictLeave},
	} {
		t.Run(tc.name, func(t *testing.T) {
			caps := plugipay
			if tc.caps != nil {
				caps = *tc.caps
			}
			p := policy{caps: caps, mode: tc.mode, deletion: tc.deletion, fields: newFields(nil).within(caps)}
			if p.mode == "" {
				p.mode = ModeUpsert
			}
			if p.deletion == "" {
				p.deletion = DeletionIgnore
			}
			got := p.decide(tc.d, tc.k, when{now: now, force: tc.force})
			if got.Verdict != tc.want || got.ClearMark != tc.clear {
				t.Fatalf("decide = %s (clear mark %v, reason %q), want %s (clear mark %v)", got.Verdict, got.ClearMark, got.Reason, tc.want, tc.clear)
			}
			if got.Verdict.Writes() && got.Verdict != VerdictArchive && got.Hash != p.fields.hash(tc.d.Record) {
				t.Errorf("hash = %q, want the record's", got.Hash)
			}
		})
	}
}

// A soft-deleted user is never blanked: whatever the state, mode and
// policy, no decision on a deleted or gone user carries a field change
// other than the archived key.
func TestDecide_DeletedIsNeverBlanked(t *testing.T) {
	cur := &Customer{ID: "cus_1", ExternalID: "u1", Email: "a@example.com", Name: "A", Phone: "+1", Metadata: map[string]string{"plan": "pro"}}
	for _, mode := range []string{ModeUpsert, ModeUpdateOnly, ModeCreateOnly} {
		for _, del := range []string{DeletionIgnore, DeletionArchive} {
			for _, kind := range []Desire{WantDeleted, WantGone} {
				for _, complete := range []bool{false, true} {
					for _, k := range []Known{{}, {Mapping: &Mapping{CustomerID: "cus_1", Hash: "h"}}, {Mapping: &Mapping{CustomerID: "cus_1", Hash: "h"}, Current: cur}} {
						p := policy{caps: Capabilities{ExternalID: ExternalIDField, Create: true, Metadata: true, Phone: true}, mode: mode, deletion: del, fields: newFields(nil)}
						d := p.decide(Desired{Kind: kind, Record: Record{ExternalID: "u1", Deleted: true}, Complete: complete}, k, when{})
						if d.Verdict != VerdictArchive && d.Verdict != VerdictLeave {
							t.Fatalf("%s %s %s complete=%v: verdict %s", mode, del, kind, complete, d.Verdict)
						}
						p2 := d.Patch
						if p2.Email != nil || p2.Name != nil || p2.Phone != nil || p2.TaxID != nil {
							t.Fatalf("%s %s %s: patch changes fields: %+v", mode, del, kind, p2)
						}
						if p2.SetMetadata && (p2.Metadata["plan"] != "pro" || p2.Metadata[ArchivedKey] != "true") {
							t.Fatalf("%s %s %s: metadata %v", mode, del, kind, p2.Metadata)
						}
					}
				}
			}
		}
	}
}
