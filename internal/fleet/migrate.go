package fleet

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

// migrateLockKey prefixes the advisory lock that serialises migrations of
// one schema: rivermigrate takes no lock of its own, and two replicas that
// start together would both create the schema and the same tables.
const migrateLockKey = "plugipay_sync.fleet.migrate."

// migrate creates schema and brings River's tables in it up to date. A
// session advisory lock on one pooled connection serialises replicas; the
// second one through finds nothing left to do. The lock goes with the
// connection if the process dies mid-way.
func migrate(ctx context.Context, pool *pgxpool.Pool, schema string, log *slog.Logger) (err error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("fleet: migrate: connect: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock(hashtext($1))", migrateLockKey+schema); err != nil {
		return fmt.Errorf("fleet: migrate: lock: %w", err)
	}
	defer func() {
		// A background context: the unlock must run even when ctx ended,
		// or the pooled connection would keep the lock.
		if _, uerr := conn.Exec(context.Background(), "SELECT pg_advisory_unlock(hashtext($1))", migrateLockKey+schema); uerr != nil && err == nil {
			err = fmt.Errorf("fleet: migrate: unlock: %w", uerr)
		}
	}()
	if _, err := conn.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{schema}.Sanitize()); err != nil {
		return fmt.Errorf("fleet: migrate: create schema %s: %w", schema, err)
	}
	m, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Schema: schema, Logger: log})
	if err != nil {
		return fmt.Errorf("fleet: migrate: %w", err)
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("fleet: migrate schema %s: %w", schema, err)
	}
	return nil
}
