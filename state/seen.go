package state

import (
	"context"
	"fmt"
	"strings"

	"github.com/plugipay-sync/plugipay-sync/sync"
)

// seenRows is how many rows one MarkSeen INSERT carries.
const seenRows = 400

// MarkSeen records that run runID read externalIDs from the source. It is
// called once per source batch, in one transaction.
func (db *DB) MarkSeen(ctx context.Context, runID int64, externalIDs []string) error {
	if len(externalIDs) == 0 {
		return nil
	}
	err := db.update(ctx, func(tx *Tx) error {
		args := make([]any, 0, 2*seenRows)
		for start := 0; start < len(externalIDs); start += seenRows {
			chunk := externalIDs[start:min(start+seenRows, len(externalIDs))]
			args = args[:0]
			for _, id := range chunk {
				args = append(args, runID, id)
			}
			q := `INSERT INTO seen_in_run (run_id, external_id) VALUES ` +
				strings.TrimSuffix(strings.Repeat("(?, ?),", len(chunk)), ",") + ` ON CONFLICT DO NOTHING`
			if _, err := tx.ExecContext(ctx, q, args...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("state: mark seen: %w", err)
	}
	return nil
}

// UnseenMappings returns the mappings run runID did not see, leaving out
// those whose hash is exceptHash (already archived).
func (db *DB) UnseenMappings(ctx context.Context, runID int64, exceptHash string) ([]sync.Mapping, error) {
	rows, err := db.db.QueryContext(ctx, `SELECT `+mappingCols+` FROM mappings m
WHERE m.hash != ? AND NOT EXISTS (
	SELECT 1 FROM seen_in_run s WHERE s.run_id = ? AND s.external_id = m.external_id)
ORDER BY m.external_id`, exceptHash, runID)
	if err != nil {
		return nil, fmt.Errorf("state: unseen mappings: %w", err)
	}
	defer rows.Close()
	var out []sync.Mapping
	for rows.Next() {
		m, err := scanMapping(rows)
		if err != nil {
			return nil, fmt.Errorf("state: unseen mappings: %w", err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("state: unseen mappings: %w", err)
	}
	return out, nil
}

// ForgetSeen deletes what runs up to runID saw (also the rows of runs whose
// process died).
func (db *DB) ForgetSeen(ctx context.Context, runID int64) error {
	err := db.update(ctx, func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM seen_in_run WHERE run_id <= ?`, runID)
		return err
	})
	if err != nil {
		return fmt.Errorf("state: forget seen: %w", err)
	}
	return nil
}
