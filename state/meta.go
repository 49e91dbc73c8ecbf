package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// ErrOtherDestination: the state file holds the mappings of another
// destination than the one configured.
var ErrOtherDestination = errors.New("state file belongs to another destination")

// metaDestination is the state_meta key of the destination binding.
const metaDestination = "destination"

// BindDestination ties the state file to destination, a string naming the
// API and account its customer ids belong to (e.g. "paygate
// https://api.example/v1"). The first call on a file records it; a later
// call with another value returns an error wrapping ErrOtherDestination
// and changes nothing, so a config pointed at a new destination cannot
// reuse customer ids another API issued. A file that already holds
// mappings from before the binding existed is bound to the first
// destination used with it.
func (db *DB) BindDestination(ctx context.Context, destination string) error {
	var bound string
	err := db.update(ctx, func(tx *Tx) error {
		err := tx.QueryRowContext(ctx, `SELECT value FROM state_meta WHERE key = ?`, metaDestination).Scan(&bound)
		if errors.Is(err, sql.ErrNoRows) {
			bound = destination
			_, err = tx.ExecContext(ctx, `INSERT INTO state_meta (key, value) VALUES (?, ?)`, metaDestination, destination)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("state: bind destination: %w", err)
	}
	if bound != destination {
		return fmt.Errorf("%w: it was made for %q, the config names %q; point state.path at a new file for the new destination (or delete this one: the next run rebuilds what it can from the destination)",
			ErrOtherDestination, bound, destination)
	}
	return nil
}
