package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"iter"
	"strings"

	"github.com/plugipay-sync/plugipay-sync/sync"
)

const mappingCols = `external_id, customer_id, hash, synced_at`

func scanMapping(rows *sql.Rows) (sync.Mapping, error) {
	var m sync.Mapping
	var syncedAt int64
	if err := rows.Scan(&m.ExternalID, &m.CustomerID, &m.Hash, &syncedAt); err != nil {
		return m, err
	}
	m.SyncedAt = decodeTime(syncedAt)
	return m, nil
}

// Mappings returns the mappings of those externalIDs that have one. It is
// called once per batch of source records, so it reads without a
// transaction through cached prepared statements.
func (db *DB) Mappings(ctx context.Context, externalIDs []string) (map[string]sync.Mapping, error) {
	out := make(map[string]sync.Mapping, len(externalIDs))
	err := db.queryIn(ctx, `SELECT `+mappingCols+` FROM mappings WHERE external_id IN (%s)`, externalIDs, func(rows *sql.Rows) error {
		m, err := scanMapping(rows)
		out[m.ExternalID] = m
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("state: mappings: %w", err)
	}
	return out, nil
}

// PutMapping inserts or replaces m and, in the same transaction, deletes
// the user's pending write and failure (but not a duplicate externalId
// mark): the write is confirmed. A zero SyncedAt is set to now.
func (db *DB) PutMapping(ctx context.Context, m sync.Mapping) error {
	if err := validMapping(m); err != nil {
		return fmt.Errorf("state: put mapping: %w", err)
	}
	err := db.update(ctx, func(tx *Tx) error { return tx.confirmMapping(ctx, m) })
	if err != nil {
		return fmt.Errorf("state: put mapping %q: %w", m.ExternalID, err)
	}
	return nil
}

// confirmMapping stores m and forgets the user's pending write and
// failure: PutMapping's (and Confirm's) transaction.
func (tx *Tx) confirmMapping(ctx context.Context, m sync.Mapping) error {
	if err := tx.putMapping(ctx, m); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM pending_writes WHERE external_id = ?`, m.ExternalID); err != nil {
		return err
	}
	// A duplicate mark outlives the write of the row read first: it
	// is the source's problem, cleared only by a read with one row.
	_, err := tx.ExecContext(ctx, `DELETE FROM failures WHERE external_id = ? AND code <> ?`,
		m.ExternalID, sync.CodeDuplicateExternalID)
	return err
}

// PutMappings inserts or replaces ms in one transaction. Unlike PutMapping
// it leaves pending writes and failures alone: it is for rebuilding the
// cache from the destination's customer list (and for benchmarks), where a
// mapping says who the customer is but confirms no pending write.
func (db *DB) PutMappings(ctx context.Context, ms []sync.Mapping) error {
	for _, m := range ms {
		if err := validMapping(m); err != nil {
			return fmt.Errorf("state: put mappings: %w", err)
		}
	}
	err := db.update(ctx, func(tx *Tx) error {
		// Many rows per INSERT: one statement execution per row costs more
		// in database/sql and cgo than SQLite's insert itself.
		args := make([]any, 0, putMappingsRows*6)
		for start := 0; start < len(ms); start += putMappingsRows {
			chunk := tx.db.db.d.upsertable(ms[start:min(start+putMappingsRows, len(ms))])
			args = args[:0]
			for _, m := range chunk {
				args = append(args, tx.mappingArgs(m)...)
			}
			if _, err := tx.ExecContext(ctx, upsertMappingsSQL(len(chunk)), args...); err != nil {
				return fmt.Errorf("rows %d-%d: %w", start, start+len(chunk)-1, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("state: put mappings: %w", err)
	}
	return nil
}

// DeleteMapping forgets a mapping whose customer no longer exists. Deleting
// a mapping that does not exist is not an error.
func (db *DB) DeleteMapping(ctx context.Context, externalID string) error {
	err := db.update(ctx, func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM mappings WHERE external_id = ?`, externalID)
		return err
	})
	if err != nil {
		return fmt.Errorf("state: delete mapping %q: %w", externalID, err)
	}
	return nil
}

// MappingCount returns the number of cached mappings.
func (db *DB) MappingCount(ctx context.Context) (int64, error) {
	var n int64
	// Kept by the triggers of migration 005 (upserts are ON CONFLICT DO
	// UPDATE, never REPLACE, so every insert and delete is counted).
	if err := db.db.QueryRowContext(ctx, `SELECT mappings FROM change_version WHERE id = 1`).Scan(&n); err != nil {
		return 0, fmt.Errorf("state: count mappings: %w", err)
	}
	return n, nil
}

// AllMappings streams every mapping in external id order. It holds one read
// transaction open while the caller iterates (WAL keeps writers unblocked);
// stopping the loop early releases it. An error ends the sequence.
func (db *DB) AllMappings(ctx context.Context) iter.Seq2[sync.Mapping, error] {
	return func(yield func(sync.Mapping, error) bool) {
		rows, err := db.db.QueryContext(ctx, `SELECT `+mappingCols+` FROM mappings ORDER BY external_id`)
		if err != nil {
			yield(sync.Mapping{}, fmt.Errorf("state: all mappings: %w", err))
			return
		}
		defer rows.Close()
		for rows.Next() {
			m, err := scanMapping(rows)
			if err != nil {
				yield(sync.Mapping{}, fmt.Errorf("state: all mappings: %w", err))
				return
			}
			if !yield(m, nil) {
				return
			}
		}
		if err := rows.Err(); err != nil {
			yield(sync.Mapping{}, fmt.Errorf("state: all mappings: %w", err))
		}
	}
}

// putMappingsRows is how many rows one PutMappings INSERT carries (6
// parameters each, well under SQLite's limit of 32,766).
const putMappingsRows = 200

const upsertMappingSQL = `INSERT INTO mappings (external_id, customer_id, hash, synced_at, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?)
` + upsertMappingConflict

// upsertMappingsSQL is upsertMappingSQL for n rows.
func upsertMappingsSQL(n int) string {
	return `INSERT INTO mappings (external_id, customer_id, hash, synced_at, created_at, updated_at) VALUES ` +
		strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?),", n), ",") + "\n" + upsertMappingConflict
}

const upsertMappingConflict = `ON CONFLICT (external_id) DO UPDATE SET
	customer_id = excluded.customer_id,
	hash        = excluded.hash,
	synced_at   = excluded.synced_at,
	updated_at  = excluded.updated_at`

func (tx *Tx) mappingArgs(m sync.Mapping) []any {
	synced := m.SyncedAt
	if synced.IsZero() {
		synced = tx.now
	}
	now := encodeTime(tx.now)
	return []any{m.ExternalID, m.CustomerID, m.Hash, encodeTime(synced), now, now}
}

func (tx *Tx) putMapping(ctx context.Context, m sync.Mapping) error {
	_, err := tx.ExecContext(ctx, upsertMappingSQL, tx.mappingArgs(m)...)
	return err
}

func validMapping(m sync.Mapping) error {
	switch {
	case m.ExternalID == "":
		return errors.New("empty external id")
	case m.CustomerID == "":
		return fmt.Errorf("%q: empty customer id", m.ExternalID)
	}
	return nil
}
