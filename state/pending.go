package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/plugipay-sync/plugipay-sync/sync"
)

const pendingCols = `external_id, op, customer_id, hash, idempotency_key, created_at`

type scanner interface{ Scan(dest ...any) error }

func scanPending(r scanner) (sync.PendingWrite, error) {
	var w sync.PendingWrite
	var created int64
	err := r.Scan(&w.ExternalID, &w.Op, &w.CustomerID, &w.Hash, &w.IdempotencyKey, &created)
	w.CreatedAt = decodeTime(created)
	return w, err
}

// PendingWrites returns the pending writes of those externalIDs.
func (db *DB) PendingWrites(ctx context.Context, externalIDs []string) (map[string]sync.PendingWrite, error) {
	out := map[string]sync.PendingWrite{}
	err := db.queryIn(ctx, `SELECT `+pendingCols+` FROM pending_writes WHERE external_id IN (%s)`, externalIDs, func(rows *sql.Rows) error {
		w, err := scanPending(rows)
		out[w.ExternalID] = w
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("state: pending writes: %w", err)
	}
	return out, nil
}

// PreparePendingWrite records w unless a pending write with the same
// external id, op, customer id and hash exists already, and returns the
// stored one, whose idempotency key the caller must use. A different
// pending write of the same user is replaced, with CreatedAt set to now:
// its key must not be reused for other content (A -> B -> A gets a new key
// for the second A, because B replaced the first).
func (db *DB) PreparePendingWrite(ctx context.Context, w sync.PendingWrite) (sync.PendingWrite, error) {
	if err := validPending(w); err != nil {
		return sync.PendingWrite{}, fmt.Errorf("state: prepare pending write: %w", err)
	}
	var out sync.PendingWrite
	err := db.update(ctx, func(tx *Tx) error {
		old, err := scanPending(tx.QueryRowContext(ctx, `SELECT `+pendingCols+` FROM pending_writes WHERE external_id = ?`, w.ExternalID))
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return err
		case old.Op == w.Op && old.CustomerID == w.CustomerID && old.Hash == w.Hash:
			out = old
			return nil
		}
		w.CreatedAt = tx.now
		_, err = tx.ExecContext(ctx, `INSERT INTO pending_writes (`+pendingCols+`) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (external_id) DO UPDATE SET op = excluded.op, customer_id = excluded.customer_id, hash = excluded.hash,
	idempotency_key = excluded.idempotency_key, created_at = excluded.created_at`,
			w.ExternalID, string(w.Op), w.CustomerID, w.Hash, w.IdempotencyKey, encodeTime(w.CreatedAt))
		out = w
		return err
	})
	if err != nil {
		return sync.PendingWrite{}, fmt.Errorf("state: prepare pending write %q: %w", w.ExternalID, err)
	}
	return out, nil
}

func validPending(w sync.PendingWrite) error {
	switch {
	case w.ExternalID == "":
		return errors.New("empty external id")
	case w.Op != sync.OpCreate && w.Op != sync.OpUpdate:
		return fmt.Errorf("%q: unknown op %q", w.ExternalID, w.Op)
	case w.Op == sync.OpUpdate && w.CustomerID == "":
		return fmt.Errorf("%q: update without a customer id", w.ExternalID)
	case w.IdempotencyKey == "":
		return fmt.Errorf("%q: empty idempotency key", w.ExternalID)
	}
	return nil
}

// DeletePendingWrite forgets the pending write of externalID, so the next
// attempt mints a new idempotency key. The reconciler does this only when
// the API said the stored key was already used with another body.
func (db *DB) DeletePendingWrite(ctx context.Context, externalID string) error {
	err := db.update(ctx, func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM pending_writes WHERE external_id = ?`, externalID)
		return err
	})
	if err != nil {
		return fmt.Errorf("state: delete pending write %q: %w", externalID, err)
	}
	return nil
}
