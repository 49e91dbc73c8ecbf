package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// metaPrintsToken is the state_meta key of the token of the prints file
// the store last accepted.
const metaPrintsToken = "prints_token"

// ChangeVersion returns a number that moves whenever a mapping, a pending
// write or a failure changes (triggers of migration 005 keep it), so a
// file derived from them can tell it is stale.
func (db *DB) ChangeVersion(ctx context.Context) (int64, error) {
	var v int64
	if err := db.db.QueryRowContext(ctx, `SELECT version FROM change_version WHERE id = 1`).Scan(&v); err != nil {
		return 0, fmt.Errorf("state: change version: %w", err)
	}
	return v, nil
}

// PrintsPath is the file beside the state DB where a run keeps the prints
// of the rows it confirmed (sync.PrintStore). It is derived: deleting it
// only makes the next run decode every row. A DB on PostgreSQL has no
// file beside it (and replicas share it), so its PrintsPath is "" and
// every run reads every row.
func (db *DB) PrintsPath() string {
	if db.path == "" {
		return ""
	}
	return db.path + ".prints"
}

// PrintsToken returns the token of the prints file last accepted, or "".
// A state DB restored from a backup holds the token of its own time, so
// a newer prints file is not trusted with it.
func (db *DB) PrintsToken(ctx context.Context) (string, error) {
	var t string
	err := db.db.QueryRowContext(ctx, `SELECT value FROM state_meta WHERE key = ?`, metaPrintsToken).Scan(&t)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("state: prints token: %w", err)
	}
	return t, nil
}

// SetPrintsToken records the token of a new prints file.
func (db *DB) SetPrintsToken(ctx context.Context, token string) error {
	err := db.update(ctx, func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO state_meta (key, value) VALUES (?, ?)
ON CONFLICT (key) DO UPDATE SET value = excluded.value`, metaPrintsToken, token)
		return err
	})
	if err != nil {
		return fmt.Errorf("state: set prints token: %w", err)
	}
	return nil
}
