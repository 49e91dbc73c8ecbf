package state

import (
	"context"
	"fmt"
)

// CountFailuresByCode returns how many failures carry code (for example
// conflict_unresolved, which makes the next run walk the customer list).
func (db *DB) CountFailuresByCode(ctx context.Context, code string) (int64, error) {
	var n int64
	if err := db.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM failures WHERE code = ?`, code).Scan(&n); err != nil {
		return 0, fmt.Errorf("state: count failures by code: %w", err)
	}
	return n, nil
}

// DeleteMappedFailures deletes the failures with code whose user has a
// mapping now (a cache rebuild found the customer), returning how many.
func (db *DB) DeleteMappedFailures(ctx context.Context, code string) (int64, error) {
	var n int64
	err := db.update(ctx, func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM failures WHERE code = ?
			AND external_id IN (SELECT external_id FROM mappings)`, code)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("state: delete mapped failures: %w", err)
	}
	return n, nil
}
