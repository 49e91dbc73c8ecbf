package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

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
// the stored failure. A duplicate externalId mark is never replaced by
// another failure. Attempts is the stored count plus one (f.Attempts is
// ignored), also when the hash changed; UpdatedAt is now.
func (db *DB) RecordFailure(ctx context.Context, f sync.Failure) (sync.Failure, error) {
	if f.ExternalID == "" {
		return sync.Failure{}, errors.New("state: record failure: empty external id")
	}
	var out sync.Failure
	err := db.update(ctx, func(tx *Tx) error {
		if f.Code != sync.CodeDuplicateExternalID {
			// A write of a user's first row that fails after its
			// duplicate was found keeps the mark, not its own failure.
			mark, err := scanFailure(tx.QueryRowContext(ctx, `SELECT `+failureCols+` FROM failures WHERE external_id = ? AND code = ?`,
				f.ExternalID, sync.CodeDuplicateExternalID))
			if err == nil {
				out = mark
				return nil
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return err
			}
		}
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
			f.ExternalID, f.Hash, boolInt(f.Terminal), f.Code, f.Message, f.RequestID, encodeTime(f.NextAttempt), encodeTime(tx.now))
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

// FailureFilter selects failures for ListFailures and ResetFailures. Its
// conditions combine with AND; the zero value selects every failure.
type FailureFilter struct {
	// ExternalIDs, when not empty, selects those users only.
	ExternalIDs []string
	// Code, when set, selects failures whose last error code is Code.
	Code string
	// TerminalOnly selects failures rejected as invalid only.
	TerminalOnly bool
}

// where renders f as a SQL condition and its arguments.
func (f FailureFilter) where() (string, []any) {
	conds := []string{"1 = 1"}
	var args []any
	if len(f.ExternalIDs) > 0 {
		conds = append(conds, `external_id IN (`+strings.TrimSuffix(strings.Repeat("?,", len(f.ExternalIDs)), ",")+`)`)
		for _, id := range f.ExternalIDs {
			args = append(args, id)
		}
	}
	if f.Code != "" {
		conds = append(conds, `code = ?`)
		args = append(args, f.Code)
	}
	if f.TerminalOnly {
		conds = append(conds, `terminal = 1`)
	}
	return strings.Join(conds, " AND "), args
}

// maxFilterIDs bounds FailureFilter.ExternalIDs, under SQLite's limit of
// 32,766 parameters per statement.
const maxFilterIDs = 10000

// ListFailures returns the failures f selects, in external id order, for
// the `failures` and `retry --dry-run` commands.
func (db *DB) ListFailures(ctx context.Context, f FailureFilter) ([]sync.Failure, error) {
	if len(f.ExternalIDs) > maxFilterIDs {
		return nil, fmt.Errorf("state: list failures: at most %d external ids at once (got %d)", maxFilterIDs, len(f.ExternalIDs))
	}
	where, args := f.where()
	rows, err := db.db.QueryContext(ctx, `SELECT `+failureCols+` FROM failures WHERE `+where+` ORDER BY external_id`, args...)
	if err != nil {
		return nil, fmt.Errorf("state: list failures: %w", err)
	}
	defer rows.Close()
	var out []sync.Failure
	for rows.Next() {
		fl, err := scanFailure(rows)
		if err != nil {
			return nil, fmt.Errorf("state: list failures: %w", err)
		}
		out = append(out, fl)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("state: list failures: %w", err)
	}
	return out, nil
}

// ResetFailures makes the failures f selects eligible again at once: it
// clears their terminal flag and their next attempt time, so the next run
// sends them again instead of waiting out their backoff (or, for terminal
// ones, a change of content). Attempts and the last error are kept for the
// record until the user syncs. It returns the failures as they were before
// the reset, in external id order.
func (db *DB) ResetFailures(ctx context.Context, f FailureFilter) ([]sync.Failure, error) {
	if len(f.ExternalIDs) > maxFilterIDs {
		return nil, fmt.Errorf("state: reset failures: at most %d external ids at once (got %d)", maxFilterIDs, len(f.ExternalIDs))
	}
	where, args := f.where()
	var out []sync.Failure
	err := db.update(ctx, func(tx *Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT `+failureCols+` FROM failures WHERE `+where+` ORDER BY external_id`, args...)
		if err != nil {
			return err
		}
		for rows.Next() {
			fl, err := scanFailure(rows)
			if err != nil {
				rows.Close()
				return err
			}
			out = append(out, fl)
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if err := rows.Err(); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE failures SET terminal = 0, next_attempt_at = 0, updated_at = ? WHERE `+where,
			append([]any{encodeTime(tx.now)}, args...)...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("state: reset failures: %w", err)
	}
	return out, nil
}

// FailureIDsByCode returns the external ids of the failures with code, in
// external id order.
func (db *DB) FailureIDsByCode(ctx context.Context, code string) ([]string, error) {
	rows, err := db.db.QueryContext(ctx, `SELECT external_id FROM failures WHERE code = ? ORDER BY external_id`, code)
	if err != nil {
		return nil, fmt.Errorf("state: failures with code %s: %w", code, err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("state: failures with code %s: %w", code, err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("state: failures with code %s: %w", code, err)
	}
	return ids, nil
}

// DeleteFailure forgets the failure of externalID, if any.
func (db *DB) DeleteFailure(ctx context.Context, externalID string) error {
	err := db.update(ctx, func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM failures WHERE external_id = ?`, externalID)
		return err
	})
	if err != nil {
		return fmt.Errorf("state: delete failure %q: %w", externalID, err)
	}
	return nil
}
