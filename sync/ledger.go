package sync

import (
	"context"
	"iter"
	"strconv"
	stdsync "sync"
	"time"
)

// Cause says what made a write: the audit ledger's answer to "why".
type Cause string

// Causes of writes.
const (
	CauseRun     Cause = "run"     // a scheduled or --once run (CauseID: the run id)
	CauseSync    Cause = "sync"    // sync --external-id
	CauseEvent   Cause = "event"   // a targeted sync of the event path (trigger API, PostgreSQL NOTIFY, HubSpot webhook)
	CauseVerify  Cause = "verify"  // a verify repair or recreate (CauseID: the verify id)
	CauseWebhook Cause = "webhook" // a Plugipay webhook (CauseID: the event id)
)

// Valid reports whether c is a known cause.
func (c Cause) Valid() bool {
	switch c {
	case CauseRun, CauseSync, CauseEvent, CauseVerify, CauseWebhook:
		return true
	}
	return false
}

// AuditOp is what a confirmed write did.
type AuditOp string

// Operations of the audit ledger.
const (
	AuditCreate  AuditOp = "create"
	AuditUpdate  AuditOp = "update"
	AuditArchive AuditOp = "archive"
	// AuditRepair: a verify (or webhook) put back fields changed behind the
	// sync's back.
	AuditRepair AuditOp = "repair"
)

// AuditEntry is one confirmed write, as the ledger keeps it.
type AuditEntry struct {
	ID             int64 // assigned by the store
	At             time.Time
	Cause          Cause
	CauseID        string
	ExternalID     string
	CustomerID     string
	Op             AuditOp
	IdempotencyKey string
	RequestID      string
	Changes        []FieldChange
}

// Confirmation is what confirming a write stores in one transaction: the
// mapping (as PutMapping does), the managed content the customer now holds
// (nil when it is not known, as after adopting a customer as it is, or an
// archive), and the write's audit entry (nil when nothing was written).
type Confirmation struct {
	Mapping Mapping
	Record  *Record
	Audit   *AuditEntry
}

// ConfirmedRecord is the managed content last confirmed for a user, with
// the hash it was confirmed under.
type ConfirmedRecord struct {
	Hash   string
	Record Record
}

// Ledger is implemented by a store that keeps what each write confirmed:
// the managed content (which verify compares the destination with) and an
// audit entry per write. A store without it confirms through PutMapping,
// and verify has nothing to compare.
type Ledger interface {
	// Confirm does what PutMapping does and, in the same transaction,
	// stores c.Record (or forgets the user's record when it is nil) and
	// appends c.Audit when it is set.
	Confirm(ctx context.Context, c Confirmation) error
	// ConfirmedRecords returns the confirmed content of those externalIDs
	// that have one.
	ConfirmedRecords(ctx context.Context, externalIDs []string) (map[string]ConfirmedRecord, error)
	// PutConfirmedRecords stores the content of users whose mappings were
	// stored from the destination's list (the cache rebuild): what the
	// customer held when it was linked is what the sync believes it holds.
	PutConfirmedRecords(ctx context.Context, recs []ConfirmedRecord) error
}

// AuditReader reads the ledger back (history, export).
type AuditReader interface {
	AuditHistory(ctx context.Context, externalID string) ([]AuditEntry, error)
	AuditSince(ctx context.Context, since time.Time) iter.Seq2[AuditEntry, error]
}

// writeNote is what a write sent, kept from its answer until its mapping
// is confirmed.
type writeNote struct {
	op        string
	key       string
	requestID string
	changes   []FieldChange
}

// writeNotes holds the notes of the writes of a run's workers, by
// external id (a user is written by one worker at a time).
type writeNotes struct {
	mu stdsync.Mutex
	m  map[string]writeNote
}

// noteWrite records that j's write op was answered, for the audit entry
// of its confirmation.
func (ru *run) noteWrite(j job, op, key, requestID string, changes []FieldChange) {
	ru.writes.mu.Lock()
	defer ru.writes.mu.Unlock()
	if ru.writes.m == nil {
		ru.writes.m = map[string]writeNote{}
	}
	n := writeNote{op: op, key: key, requestID: requestID, changes: changes}
	if prev, ok := ru.writes.m[j.rec.ExternalID]; ok && prev.op == OpCreate {
		// A create followed by an update of the same user in one pass (a
		// recovered customer brought in line): one entry, the create's.
		n.op, n.changes = OpCreate, append(prev.changes, changes...)
	}
	ru.writes.m[j.rec.ExternalID] = n
}

func (ru *run) takeWrite(externalID string) (writeNote, bool) {
	ru.writes.mu.Lock()
	defer ru.writes.mu.Unlock()
	n, ok := ru.writes.m[externalID]
	delete(ru.writes.m, externalID)
	return n, ok
}

// confirmation builds what confirmHash stores for m: the managed content
// of j's record when m confirms it, and the audit entry of the write just
// answered, if one was.
func (ru *run) confirmation(j job, m Mapping) Confirmation {
	c := Confirmation{Mapping: m}
	if m.Hash == j.hash && m.Hash != ArchivedHash && j.rec.ExternalID != "" {
		p := ru.fields.project(j.rec)
		p.Ref, p.Print = "", Print{}
		c.Record = &p
	}
	n, ok := ru.takeWrite(j.rec.ExternalID)
	if !ok {
		return c
	}
	cause, causeID := ru.cause, ru.causeID
	if cause == "" {
		cause, causeID = CauseRun, strconv.FormatInt(ru.id, 10)
	}
	op := AuditOp(n.op)
	switch {
	case m.Hash == ArchivedHash:
		op = AuditArchive
	case n.op == OpUpdate && (cause == CauseVerify || cause == CauseWebhook):
		op = AuditRepair
	}
	changes := n.changes
	if !ru.opts.AuditValues {
		changes = redact(changes)
	}
	c.Audit = &AuditEntry{At: m.SyncedAt, Cause: cause, CauseID: causeID, ExternalID: m.ExternalID,
		CustomerID: m.CustomerID, Op: op, IdempotencyKey: n.key, RequestID: n.requestID, Changes: changes}
	return c
}

func redact(cs []FieldChange) []FieldChange {
	out := make([]FieldChange, len(cs))
	for i, c := range cs {
		out[i] = FieldChange{Field: c.Field, Redacted: true}
	}
	return out
}

// createChanges lists the fields a create set.
func createChanges(c Customer) []FieldChange {
	var out []FieldChange
	for _, fc := range changes(Customer{}, Patch{Email: &c.Email, Name: &c.Name, Phone: &c.Phone, TaxID: &c.TaxID,
		Metadata: c.Metadata, SetMetadata: len(c.Metadata) > 0}) {
		if fc.New != "" {
			out = append(out, fc)
		}
	}
	return out
}

// Field names of drift reports and the drift metric's field label: those
// of the dry run's changes (see changes).
const (
	FieldEmail    = "email"
	FieldName     = "name"
	FieldPhone    = "phone"
	FieldTaxID    = "taxId"
	FieldMetadata = "metadata"
)

// DriftFields are the values of the drift metric's field label.
var DriftFields = []string{FieldEmail, FieldName, FieldPhone, FieldTaxID, FieldMetadata}
