package state

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"time"

	"github.com/plugipay-sync/plugipay-sync/sync"
)

var (
	_ sync.Ledger      = (*DB)(nil)
	_ sync.AuditReader = (*DB)(nil)
)

// confirmedJSON is a confirmed record as confirmed_records keeps it.
type confirmedJSON struct {
	Email    string            `json:"email,omitempty"`
	Name     string            `json:"name,omitempty"`
	Phone    string            `json:"phone,omitempty"`
	TaxID    string            `json:"tax_id,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// Confirm stores c.Mapping as PutMapping does and, in the same
// transaction, the confirmed content and the audit entry: a crash keeps
// the mapping, its content and its ledger entry together or none of them.
func (db *DB) Confirm(ctx context.Context, c sync.Confirmation) error {
	m := c.Mapping
	if err := validMapping(m); err != nil {
		return fmt.Errorf("state: confirm: %w", err)
	}
	err := db.update(ctx, func(tx *Tx) error {
		if err := tx.confirmMapping(ctx, m); err != nil {
			return err
		}
		if c.Record == nil {
			if _, err := tx.ExecContext(ctx, `DELETE FROM confirmed_records WHERE external_id = ?`, m.ExternalID); err != nil {
				return err
			}
		} else if err := tx.putConfirmed(ctx, m.ExternalID, m.Hash, c.Record); err != nil {
			return err
		}
		if c.Audit != nil {
			return tx.appendAudit(ctx, *c.Audit)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("state: confirm %q: %w", m.ExternalID, err)
	}
	return nil
}

// PutConfirmedRecords stores recs (keyed by Record.ExternalID) in one
// transaction.
func (db *DB) PutConfirmedRecords(ctx context.Context, recs []sync.ConfirmedRecord) error {
	if len(recs) == 0 {
		return nil
	}
	err := db.update(ctx, func(tx *Tx) error {
		for _, cr := range recs {
			if err := tx.putConfirmed(ctx, cr.Record.ExternalID, cr.Hash, &cr.Record); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("state: put confirmed records: %w", err)
	}
	return nil
}

func (tx *Tx) putConfirmed(ctx context.Context, externalID, hash string, r *sync.Record) error {
	b, err := json.Marshal(confirmedJSON{Email: r.Email, Name: r.Name, Phone: r.Phone, TaxID: r.TaxID, Metadata: r.Metadata})
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO confirmed_records (external_id, hash, record) VALUES (?, ?, ?)
ON CONFLICT (external_id) DO UPDATE SET hash = excluded.hash, record = excluded.record`,
		externalID, hash, string(b))
	return err
}

func (tx *Tx) appendAudit(ctx context.Context, e sync.AuditEntry) error {
	changes := e.Changes
	if changes == nil {
		changes = []sync.FieldChange{}
	}
	b, err := json.Marshal(changes)
	if err != nil {
		return err
	}
	at := e.At
	if at.IsZero() {
		at = tx.now
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO audit_log (at, cause, cause_id, external_id, customer_id, op, idempotency_key, request_id, changes)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, encodeTime(at), string(e.Cause), e.CauseID, e.ExternalID, e.CustomerID,
		string(e.Op), e.IdempotencyKey, e.RequestID, string(b))
	return err
}

// ConfirmedRecords returns the confirmed content of those externalIDs that
// have one.
func (db *DB) ConfirmedRecords(ctx context.Context, externalIDs []string) (map[string]sync.ConfirmedRecord, error) {
	out := make(map[string]sync.ConfirmedRecord, len(externalIDs))
	err := db.queryIn(ctx, `SELECT external_id, hash, record FROM confirmed_records WHERE external_id IN (%s)`, externalIDs, func(rows *sql.Rows) error {
		var id, hash, raw string
		if err := rows.Scan(&id, &hash, &raw); err != nil {
			return err
		}
		var c confirmedJSON
		if err := json.Unmarshal([]byte(raw), &c); err != nil {
			return fmt.Errorf("%q: %w", id, err)
		}
		out[id] = sync.ConfirmedRecord{Hash: hash, Record: sync.Record{ExternalID: id, Email: c.Email, Name: c.Name,
			Phone: c.Phone, TaxID: c.TaxID, Metadata: c.Metadata}}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("state: confirmed records: %w", err)
	}
	return out, nil
}

const auditCols = `id, at, cause, cause_id, external_id, customer_id, op, idempotency_key, request_id, changes`

func scanAudit(r scanner) (sync.AuditEntry, error) {
	var e sync.AuditEntry
	var at int64
	var cause, op, changes string
	if err := r.Scan(&e.ID, &at, &cause, &e.CauseID, &e.ExternalID, &e.CustomerID, &op, &e.IdempotencyKey, &e.RequestID, &changes); err != nil {
		return e, err
	}
	e.At, e.Cause, e.Op = decodeTime(at), sync.Cause(cause), sync.AuditOp(op)
	if err := json.Unmarshal([]byte(changes), &e.Changes); err != nil {
		return e, fmt.Errorf("audit entry %d: changes: %w", e.ID, err)
	}
	return e, nil
}

// AuditHistory returns the ledger entries of one user, oldest first.
func (db *DB) AuditHistory(ctx context.Context, externalID string) ([]sync.AuditEntry, error) {
	rows, err := db.db.QueryContext(ctx, `SELECT `+auditCols+` FROM audit_log WHERE external_id = ? ORDER BY id`, externalID)
	if err != nil {
		return nil, fmt.Errorf("state: audit history: %w", err)
	}
	defer rows.Close()
	var out []sync.AuditEntry
	for rows.Next() {
		e, err := scanAudit(rows)
		if err != nil {
			return nil, fmt.Errorf("state: audit history: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("state: audit history: %w", err)
	}
	return out, nil
}

// auditPage is how many entries AuditSince reads per query, so an export
// of millions of entries holds no read transaction open for its length.
const auditPage = 1000

// AuditSince yields the ledger entries written at or after since, oldest
// first, paging by id.
func (db *DB) AuditSince(ctx context.Context, since time.Time) iter.Seq2[sync.AuditEntry, error] {
	return func(yield func(sync.AuditEntry, error) bool) {
		var after int64
		for {
			page, err := db.auditPage(ctx, encodeTime(since), after)
			if err != nil {
				yield(sync.AuditEntry{}, fmt.Errorf("state: audit export: %w", err))
				return
			}
			for _, e := range page {
				if !yield(e, nil) {
					return
				}
				after = e.ID
			}
			if len(page) < auditPage {
				return
			}
		}
	}
}

func (db *DB) auditPage(ctx context.Context, since, after int64) ([]sync.AuditEntry, error) {
	rows, err := db.db.QueryContext(ctx, `SELECT `+auditCols+` FROM audit_log WHERE id > ? AND at >= ? ORDER BY id LIMIT ?`, after, since, auditPage)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []sync.AuditEntry
	for rows.Next() {
		e, err := scanAudit(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// PruneAudit deletes the ledger entries written before before, returning
// how many.
func (db *DB) PruneAudit(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := db.update(ctx, func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM audit_log WHERE at < ?`, encodeTime(before))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("state: prune audit ledger: %w", err)
	}
	return n, nil
}

// AuditStats is the size of the ledger, for status.
type AuditStats struct {
	Entries int64
	Oldest  time.Time // zero when empty
	// Bytes is roughly what the entries take in the file (their text).
	Bytes int64
}

// AuditStats returns the size of the ledger.
func (db *DB) AuditStats(ctx context.Context) (AuditStats, error) {
	var s AuditStats
	var oldest sql.NullInt64
	var bytes sql.NullInt64
	err := db.db.QueryRowContext(ctx, `SELECT COUNT(*), MIN(at), SUM(LENGTH(changes) + LENGTH(external_id) + LENGTH(customer_id) + LENGTH(idempotency_key) + LENGTH(request_id) + LENGTH(cause_id) + 40) FROM audit_log`).
		Scan(&s.Entries, &oldest, &bytes)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return s, fmt.Errorf("state: audit stats: %w", err)
	}
	s.Oldest, s.Bytes = decodeTime(oldest.Int64), bytes.Int64
	return s, nil
}
