package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Watermark is how far an incremental source read: the newest change time
// of its last complete read, how many incremental reads followed the last
// full scan, and when that full scan ended.
type Watermark struct {
	At            time.Time
	RunsSinceFull int
	LastFullAt    time.Time
}

// Watermark returns the stored watermark of source; ok is false when there
// is none (the first run reads everything).
func (db *DB) Watermark(ctx context.Context, source string) (w Watermark, ok bool, err error) {
	var at, full int64
	err = db.db.QueryRowContext(ctx,
		`SELECT watermark, runs_since_full, last_full_at FROM source_watermarks WHERE source = ?`, source).
		Scan(&at, &w.RunsSinceFull, &full)
	if errors.Is(err, sql.ErrNoRows) {
		return Watermark{}, false, nil
	}
	if err != nil {
		return Watermark{}, false, fmt.Errorf("state: watermark %s: %w", source, err)
	}
	w.At, w.LastFullAt = decodeTime(at), decodeTime(full)
	return w, true, nil
}

// SetWatermark stores w as the watermark of source, replacing any.
func (db *DB) SetWatermark(ctx context.Context, source string, w Watermark) error {
	err := db.update(ctx, func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO source_watermarks (source, watermark, runs_since_full, last_full_at, updated_at)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (source) DO UPDATE SET watermark = excluded.watermark, runs_since_full = excluded.runs_since_full,
	last_full_at = excluded.last_full_at, updated_at = excluded.updated_at`,
			source, encodeTime(w.At), w.RunsSinceFull, encodeTime(w.LastFullAt), encodeTime(tx.now))
		return err
	})
	if err != nil {
		return fmt.Errorf("state: set watermark %s: %w", source, err)
	}
	return nil
}

// DeleteWatermark forgets the watermark of source, so its next read is a
// full one.
func (db *DB) DeleteWatermark(ctx context.Context, source string) error {
	err := db.update(ctx, func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM source_watermarks WHERE source = ?`, source)
		return err
	})
	if err != nil {
		return fmt.Errorf("state: delete watermark %s: %w", source, err)
	}
	return nil
}
