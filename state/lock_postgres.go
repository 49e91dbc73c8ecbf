package state

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// lockTable is the table, in the locked schema, that names the holder of
// the schema's writer lock (the lock file's content on SQLite).
const lockTable = "writer_lock"

// AcquirePostgresLock takes the exclusive writer lock of the store in
// PostgreSQL schema schema, with AcquireLock's contract: wait > 0 retries
// until it passes or ctx ends, wait == 0 fails at once, and a failure
// wraps ErrLocked as a *LockedError naming the holder. The lock is a
// session-level advisory lock held on a connection of its own until
// Release: the server releases it when that session ends, however the
// holder exits (kill -9 included), so no timeout guesses that a holder is
// dead. The holder's pid, host and command are recorded in the schema's
// writer_lock table for the refusal to name; the schema and that table
// are created if missing, since the lock is taken before the store is
// opened.
//
// A holder whose connection to the server breaks loses the lock with it.
func AcquirePostgresLock(ctx context.Context, dsn, schema string, wait time.Duration, command string) (*Lock, error) {
	if err := ValidSchema(schema); err != nil {
		return nil, fmt.Errorf("state: lock: %w", err)
	}
	where := "postgres schema " + quoteIdent(schema)
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("state: lock %s: the DSN does not parse", where)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("state: lock %s: %w", where, err)
	}
	l, err := lockPostgres(ctx, conn, schema, wait, command)
	if err != nil {
		_ = conn.Close(context.WithoutCancel(ctx))
		var le *LockedError
		if errors.As(err, &le) {
			le.Path = where
			return nil, err
		}
		return nil, fmt.Errorf("state: lock %s: %w", where, err)
	}
	return l, nil
}

// lockPostgres takes the writer lock of schema on conn and records this
// process as its holder.
func lockPostgres(ctx context.Context, conn *pgx.Conn, schema string, wait time.Duration, command string) (*Lock, error) {
	table := quoteIdent(schema) + "." + lockTable
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		// Under the schema's transaction lock: two processes creating
		// the schema or the table at once would collide in the catalog.
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, advisoryKey(lockKindTx, schema)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+quoteIdent(schema)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+table+` (
	id          INTEGER PRIMARY KEY CHECK (id = 1),
	backend_pid INTEGER NOT NULL,
	pid         BIGINT  NOT NULL,
	host        TEXT    NOT NULL,
	command     TEXT    NOT NULL,
	since       BIGINT  NOT NULL
)`)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("create the lock table: %w", err)
	}

	key := advisoryKey(lockKindWriter, schema)
	try := func() (bool, error) {
		var ok bool
		err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok)
		return ok, err
	}
	ok, err := try()
	if err == nil && !ok && wait > 0 {
		deadline := time.NewTimer(wait)
		defer deadline.Stop()
		tick := time.NewTicker(lockRetryDelay)
		defer tick.Stop()
	retry:
		for !ok && err == nil {
			select {
			case <-ctx.Done():
				err = ctx.Err()
			case <-deadline.C:
				break retry // waited as long as we were told to
			case <-tick.C:
				ok, err = try()
			}
		}
	}
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, &LockedError{Holder: awaitRecord(ctx, func() (Holder, bool) { return postgresHolder(ctx, conn, table, key) })}
	}

	h := newHolder(command)
	if _, err := conn.Exec(ctx, `INSERT INTO `+table+` (id, backend_pid, pid, host, command, since)
VALUES (1, pg_backend_pid(), $1, $2, $3, $4)
ON CONFLICT (id) DO UPDATE SET backend_pid = excluded.backend_pid, pid = excluded.pid, host = excluded.host,
	command = excluded.command, since = excluded.since`, h.PID, h.Host, h.Command, encodeTime(h.Since)); err != nil {
		return nil, fmt.Errorf("record the holder: %w", err)
	}
	return &Lock{release: func() error {
		// Unlocked explicitly: closing alone ends the session, but the
		// server may release the lock a moment after Close returns.
		_, err := conn.Exec(context.Background(), `SELECT pg_advisory_unlock($1)`, key)
		return errors.Join(err, conn.Close(context.Background()))
	}}, nil
}

// postgresHolder reads the holder recorded in table; ok is true when the
// record is that of the session holding the lock now (a record left by an
// earlier holder, until the new one writes itself, is not).
func postgresHolder(ctx context.Context, conn *pgx.Conn, table string, key int64) (Holder, bool) {
	var holderPID int32
	err := conn.QueryRow(ctx, `SELECT pid FROM pg_locks
WHERE locktype = 'advisory' AND granted AND objsubid = 1
	AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
	AND ((classid::bigint << 32) | objid::bigint) = $1`, key).Scan(&holderPID)
	if err != nil {
		return Holder{}, false
	}
	var h Holder
	var backend int32
	var since int64
	err = conn.QueryRow(ctx, `SELECT backend_pid, pid, host, command, since FROM `+table+` WHERE id = 1`).
		Scan(&backend, &h.PID, &h.Host, &h.Command, &since)
	if err != nil || backend != holderPID {
		return Holder{}, false
	}
	h.Since = decodeTime(since)
	return h, true
}
