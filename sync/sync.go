// Package sync is the reconciler: it streams users from a CRM Source,
// compares each with the Store's cache of what was last synced, and creates
// or updates customers through a Destination. It declares the three
// interfaces it consumes and imports none of their implementations, so the
// CRM adapters, the Plugipay SDK and the SQLite store can change or be
// replaced without touching it.
package sync

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"time"
)

// Record is one CRM user as the destination should hold it. Empty strings
// mean "no value"; Metadata may be nil.
type Record struct {
	ExternalID string
	Email      string
	Name       string
	Phone      string
	TaxID      string
	Metadata   map[string]string
	// Ref says where the record came from (for example "line 42"), for
	// messages that point the operator at the source row.
	Ref string
	// Deleted marks a user the source reports as deleted (a soft-delete
	// column, an archived CRM contact). The reconciler treats it as a user
	// gone from the source: it is not synced, and with the archive
	// deletion policy its customer is archived after the next complete
	// read.
	Deleted bool
	// Print is the row's print, from a PrintSource; zero otherwise.
	Print Print
}

// RecordError is a source record that cannot be synced. Sources yield it
// in place of a record and go on with the next one.
type RecordError struct {
	Ref        string // where in the source, e.g. "line 42"
	ExternalID string // may be empty when the id itself is missing
	Reason     string
	Print      Print // the row's print, from a PrintSource
}

func (e *RecordError) Error() string {
	switch {
	case e.Ref != "" && e.ExternalID != "":
		return fmt.Sprintf("%s (externalId %q): %s", e.Ref, e.ExternalID, e.Reason)
	case e.Ref != "":
		return e.Ref + ": " + e.Reason
	case e.ExternalID != "":
		return fmt.Sprintf("externalId %q: %s", e.ExternalID, e.Reason)
	}
	return e.Reason
}

// Source streams CRM users. A per-record problem is yielded as a
// *RecordError and the stream goes on; any other error is fatal to the
// run and ends the stream. Implementations must stream, never load the
// whole source into memory.
type Source interface {
	Records(ctx context.Context) iter.Seq2[Record, error]
}

// PartialSource is a Source that may read only part of the source on a
// run (an incremental read of what changed). Users missing from such a
// read are not gone, so the reconciler archives users gone from the
// source only after a read for which LastReadComplete reports true.
type PartialSource interface {
	Source
	// LastReadComplete reports whether the last finished Records stream
	// read the whole source.
	LastReadComplete() bool
}

// Committer is a Source that keeps a cursor (an incremental source's
// watermark). Records only prepares the new cursor; the reconciler calls
// Commit after a run that finished with no transient failure, so the
// cursor never moves past records whose writes did not happen (a fatal
// error, a crash, a failure to retry). A failing Commit fails the run.
type Committer interface {
	Commit(ctx context.Context) error
}

// Customer is a customer as the destination holds it.
type Customer struct {
	ID         string
	ExternalID string
	Email      string
	Name       string
	Phone      string
	TaxID      string
	Metadata   map[string]string
	// RequestID is the API's request id of the response that returned the
	// customer, where the destination reports one (the audit ledger keeps
	// it); empty otherwise. It is not part of the customer's content.
	RequestID string
}

// Errors a Destination wraps its failures in, so the reconciler can decide
// what to do without knowing which API it talks to. Use errors.Is.
var (
	// ErrConflict: a create hit an existing customer with the same external id.
	ErrConflict = errors.New("external id already exists")
	// ErrNotFound: the customer id is unknown to the destination.
	ErrNotFound = errors.New("customer not found")
	// ErrInvalid: the destination rejected the content; retrying the same
	// content cannot succeed.
	ErrInvalid = errors.New("rejected by destination")
	// ErrFatal: the run cannot go on (authentication, permissions).
	ErrFatal = errors.New("fatal destination error")
	// ErrIdempotency: an idempotency key was reused with a different body.
	ErrIdempotency = errors.New("idempotency key reused with a different body")
)

// APIError is how a Destination reports a failed call: Kind is one of the
// sentinel errors above (or nil for a transient failure), Code the API's
// error code, RequestID the API's request id for support tickets.
type APIError struct {
	Kind      error
	Status    int
	Code      string
	Message   string
	RequestID string
	Err       error
}

func (e *APIError) Error() string {
	msg := e.Code
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if e.Status != 0 {
		msg = fmt.Sprintf("%d %s", e.Status, msg)
	}
	if e.RequestID != "" {
		msg += " (request " + e.RequestID + ")"
	}
	return msg
}

// Unwrap lets errors.Is match both the kind and the underlying error.
func (e *APIError) Unwrap() []error {
	var errs []error
	if e.Kind != nil {
		errs = append(errs, e.Kind)
	}
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	return errs
}

// Patch is a partial update of a customer: only the fields that are set
// are sent, so fields the sync does not manage are never touched.
type Patch struct {
	Email, Name, Phone, TaxID *string
	// Metadata, when SetMetadata is true, replaces the customer's whole
	// metadata map (empty or nil clears it). The reconciler merges the keys
	// it owns into the customer's current map before sending it.
	Metadata    map[string]string
	SetMetadata bool
	// MetadataUnset, with SetMetadata, lists the keys the customer held
	// that Metadata leaves out: what an API that merges metadata keys
	// (rather than replacing the map) must be told to remove.
	MetadataUnset []string
}

// Empty reports whether p changes nothing.
func (p Patch) Empty() bool {
	return p.Email == nil && p.Name == nil && p.Phone == nil && p.TaxID == nil && !p.SetMetadata
}

// Mapping is the cache entry that ties a CRM user to its customer.
type Mapping struct {
	ExternalID string
	CustomerID string
	// Hash is ContentHash of the record as last confirmed by the destination.
	Hash     string
	SyncedAt time.Time
}

// Write operations recorded as pending writes.
const (
	OpCreate = "create"
	OpUpdate = "update"
)

// PendingWrite is an intended write, recorded before its first attempt so
// that every retry, also from a new process after a crash, sends the same
// idempotency key. It is keyed by external id: at most one per user.
type PendingWrite struct {
	ExternalID     string
	Op             string // OpCreate or OpUpdate
	CustomerID     string // target of an update; empty for a create
	Hash           string // ContentHash of the content being written
	IdempotencyKey string
	CreatedAt      time.Time
}

// Failure is a record the last run could not sync, kept until it syncs.
type Failure struct {
	ExternalID  string
	Hash        string // content that failed; a changed record is retried at once
	Terminal    bool   // rejected as invalid: not retried until the content changes
	Attempts    int
	Code        string // error code, e.g. "validation_error", "network_error"
	Message     string
	RequestID   string
	NextAttempt time.Time
	UpdatedAt   time.Time
}

// RunCounts are the per-run record counts.
type RunCounts struct {
	Read      int64 // records the source yielded, including rejected ones
	Created   int64
	Updated   int64
	Unchanged int64
	Recovered int64 // creates that hit a conflict and were matched to the existing customer
	Rejected  int64 // bad source records and records the destination refused as invalid
	Failed    int64 // transient failures, retried next run
	Archived  int64 // customers archived because their user left the source
	Skipped   int64 // users the sync mode left alone: no customer in update-only, a change in create-only
}

// Run outcomes.
const (
	OutcomeSuccess = "success" // every record synced
	OutcomePartial = "partial" // the run finished, some records rejected or failed
	OutcomeFailed  = "failed"  // the run could not finish
	// OutcomeCanceled: the run was stopped (shutdown signal) before it read
	// the whole source; what it confirmed is kept, the next run goes on.
	OutcomeCanceled = "canceled"
)

// RunRecord is one run of the reconciler as the store keeps it.
type RunRecord struct {
	ID         int64
	StartedAt  time.Time
	FinishedAt time.Time // zero while running or when the process died
	Outcome    string
	Error      string
	Counts     RunCounts
}

// Store is the local cache of mappings, pending writes, failures and runs.
type Store interface {
	// Mappings returns the mappings of those externalIDs that have one.
	Mappings(ctx context.Context, externalIDs []string) (map[string]Mapping, error)
	// MappingCount returns the number of cached mappings; 0 means a cold
	// start, and the run rebuilds the cache from the destination first.
	MappingCount(ctx context.Context) (int64, error)
	// AllMappings streams every mapping (a dry run's archive plan).
	AllMappings(ctx context.Context) iter.Seq2[Mapping, error]
	// PutMappings inserts or replaces ms in one transaction, leaving
	// pending writes and failures alone (the cache rebuild).
	PutMappings(ctx context.Context, ms []Mapping) error
	// PutMapping inserts or replaces m and, in the same transaction,
	// deletes the user's pending write and failure (except a
	// CodeDuplicateExternalID mark): the write is confirmed.
	PutMapping(ctx context.Context, m Mapping) error
	// DeleteMapping forgets a mapping whose customer no longer exists.
	DeleteMapping(ctx context.Context, externalID string) error

	// PendingWrites returns the pending writes of those externalIDs.
	PendingWrites(ctx context.Context, externalIDs []string) (map[string]PendingWrite, error)
	// PreparePendingWrite records w unless a pending write with the same
	// external id, op, customer id and hash exists already; it returns the
	// stored one, whose idempotency key the caller must use.
	PreparePendingWrite(ctx context.Context, w PendingWrite) (PendingWrite, error)
	// DeletePendingWrite forgets the user's pending write, so the next
	// attempt mints a new key.
	DeletePendingWrite(ctx context.Context, externalID string) error

	// RecordFailure inserts or updates the failure of f.ExternalID,
	// incrementing Attempts. A CodeDuplicateExternalID mark is kept
	// (and returned) when f is another failure.
	RecordFailure(ctx context.Context, f Failure) (Failure, error)
	// Failures returns the failures of those externalIDs.
	Failures(ctx context.Context, externalIDs []string) (map[string]Failure, error)
	// CountFailuresByCode returns how many failures carry code.
	CountFailuresByCode(ctx context.Context, code string) (int64, error)
	// DeleteMappedFailures deletes the failures with code whose user has a
	// mapping now, returning how many.
	DeleteMappedFailures(ctx context.Context, code string) (int64, error)
	// FailureIDsByCode returns the external ids of the failures with code.
	FailureIDsByCode(ctx context.Context, code string) ([]string, error)
	// DeleteFailure forgets the failure of externalID, if any.
	DeleteFailure(ctx context.Context, externalID string) error

	// MarkSeen records that run runID read externalIDs from the source
	// (only with the archive deletion policy).
	MarkSeen(ctx context.Context, runID int64, externalIDs []string) error
	// UnseenMappings returns the mappings run runID did not see, except
	// those whose hash is exceptHash.
	UnseenMappings(ctx context.Context, runID int64, exceptHash string) ([]Mapping, error)
	// ForgetSeen deletes what runs up to runID saw.
	ForgetSeen(ctx context.Context, runID int64) error

	// StartRun records the start of a run and returns its id.
	StartRun(ctx context.Context, startedAt time.Time) (int64, error)
	// FinishRun records the end of run id.
	FinishRun(ctx context.Context, r RunRecord) error
}
