package state

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/plugipay-sync/plugipay-sync/sync"
)

// metaIdentity is the state_meta key of the destination identity (see
// sync.Identity), kept as JSON.
const metaIdentity = "identity"

var _ sync.IdentityStore = (*DB)(nil)

// Identity returns the destination identity the state DB is bound to; ok
// is false when none was recorded (a new file, or one from before
// identities were recorded).
func (db *DB) Identity(ctx context.Context) (sync.Identity, bool, error) {
	var v string
	err := db.db.QueryRowContext(ctx, `SELECT value FROM state_meta WHERE key = ?`, metaIdentity).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return sync.Identity{}, false, nil
	}
	if err != nil {
		return sync.Identity{}, false, fmt.Errorf("state: identity: %w", err)
	}
	var id sync.Identity
	if err := json.Unmarshal([]byte(v), &id); err != nil {
		return sync.Identity{}, false, fmt.Errorf("state: identity: %w", err)
	}
	return id, true, nil
}

// SetIdentity binds the state DB to id.
func (db *DB) SetIdentity(ctx context.Context, id sync.Identity) error {
	b, err := json.Marshal(id)
	if err != nil {
		return fmt.Errorf("state: set identity: %w", err)
	}
	err = db.update(ctx, func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO state_meta (key, value) VALUES (?, ?)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value`, metaIdentity, string(b))
		return err
	})
	if err != nil {
		return fmt.Errorf("state: set identity: %w", err)
	}
	return nil
}

// SampleMappings returns up to n distinct mappings picked at random. Each
// pick is one index walk to a random offset, so a sample costs a few
// milliseconds even with a million mappings, and no full sort.
func (db *DB) SampleMappings(ctx context.Context, n int) ([]sync.Mapping, error) {
	count, err := db.MappingCount(ctx)
	if err != nil || count == 0 {
		return nil, err
	}
	offsets := map[int64]bool{}
	for int64(len(offsets)) < min(int64(n), count) {
		offsets[rand.Int64N(count)] = true
	}
	var out []sync.Mapping
	for off := range offsets {
		rows, err := db.db.QueryContext(ctx, `SELECT `+mappingCols+` FROM mappings LIMIT 1 OFFSET ?`, off)
		if err != nil {
			return nil, fmt.Errorf("state: sample mappings: %w", err)
		}
		for rows.Next() {
			m, err := scanMapping(rows)
			if err != nil {
				rows.Close()
				return nil, fmt.Errorf("state: sample mappings: %w", err)
			}
			out = append(out, m)
		}
		if err := rows.Close(); err != nil {
			return nil, fmt.Errorf("state: sample mappings: %w", err)
		}
	}
	return out, nil
}

// TouchMappings sets synced_at to at on the mappings of customerIDs.
func (db *DB) TouchMappings(ctx context.Context, customerIDs []string, at time.Time) error {
	if len(customerIDs) == 0 {
		return nil
	}
	err := db.update(ctx, func(tx *Tx) error {
		for start := 0; start < len(customerIDs); start += maxInParams {
			chunk := customerIDs[start:min(start+maxInParams, len(customerIDs))]
			args := make([]any, 0, len(chunk)+1)
			args = append(args, encodeTime(at))
			for _, id := range chunk {
				args = append(args, id)
			}
			q := `UPDATE mappings SET synced_at = ? WHERE customer_id IN (?` + strings.Repeat(",?", len(chunk)-1) + `)`
			if _, err := tx.ExecContext(ctx, q, args...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("state: touch mappings: %w", err)
	}
	return nil
}

// DeleteMappingsSyncedBefore forgets the mappings last confirmed before t
// and returns how many.
func (db *DB) DeleteMappingsSyncedBefore(ctx context.Context, t time.Time) (int64, error) {
	var n int64
	err := db.update(ctx, func(tx *Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM mappings WHERE synced_at < ?`, encodeTime(t))
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("state: forget mappings: %w", err)
	}
	return n, nil
}
