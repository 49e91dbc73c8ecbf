package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/plugipay-sync/plugipay-sync/sync"
)

const failureCols = `external_id, hash, terminal, attempts, code, message, request_id, next_attempt_at, updated_at`

func scanFailure(r scanner) (sync.Failure, error) {
	var f sync.Failure
	var next, updated int64
	err := r.Scan(&f.ExternalID, &f.Hash, &f.Terminal, &f.Attempts, &f.Code, &f.Message, &f.RequestID, &next, &updated)
	f.NextAttempt = decodeTime(next)
	f.UpdatedAt = decodeTime(updated)
	return f, err
}

// RecordFailure inserts or updates the failure of f.ExternalID and returns
// the stored failure. Attempts is the stored count plus one (f.Attempts is
// ignored), also when the hash changed; UpdatedAt is now.
func (db *DB) RecordFailure(ctx context.Context, f sync.Failure) (sync.Failure, error) {
	if f.ExternalID == "" {
		return sync.Failure{}, errors.New("state: record failure: empty external id")
	}
	var out sync.Failure
	err := db.update(ctx, func(tx *Tx) error {
		row := tx.QueryRowContext(ctx, `INSERT INTO failures (`+failureCols+`)
VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?)
ON CONFLICT (external_id) DO UPDATE SET
	hash            = excluded.hash,
	terminal        = excluded.terminal,
	attempts        = failures.attempts + 1,
	code            = excluded.code,
	message         = excluded.message,
	request_id      = excluded.request_id,
	next_attempt_at = excluded.next_attempt_at,
	updated_at      = excluded.updated_at
RETURNING `+failureCols,
			f.ExternalID, f.Hash, f.Terminal, f.Code, f.Message, f.RequestID, encodeTime(f.NextAttempt), encodeTime(tx.now))
		var err error
		out, err = scanFailure(row)
		return err
	})
	if err != nil {
		return sync.Failure{}, fmt.Errorf("state: record failure %q: %w", f.ExternalID, err)
	}
	return out, nil
}

// Failures returns the failures of those externalIDs.
func (db *DB) Failures(ctx context.Context, externalIDs []string) (map[string]sync.Failure, error) {
	out := map[string]sync.Failure{}
	err := db.queryIn(ctx, `SELECT `+failureCols+` FROM failures WHERE external_id IN (%s)`, externalIDs, func(rows *sql.Rows) error {
		f, err := scanFailure(rows)
		out[f.ExternalID] = f
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("state: failures: %w", err)
	}
	return out, nil
}

// FailureCount returns the number of records kept as failed, and how many
// of them are terminal (rejected as invalid).
func (db *DB) FailureCount(ctx context.Context) (total, terminal int64, err error) {
	err = db.db.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(SUM(terminal), 0) FROM failures`).Scan(&total, &terminal)
	if err != nil {
		return 0, 0, fmt.Errorf("state: count failures: %w", err)
	}
	return total, terminal, nil
}
