package state

import (
	"context"
	"database/sql"
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
// It is a PostgresLocker of its own, closed with the lock: one
// implementation of the lock for one schema and for many. A process that
// holds the locks of many schemas at once uses one PostgresLocker for all
// of them instead, so as to spend one connection, not one per schema.
//
// A holder whose connection to the server breaks loses the lock with it.
func AcquirePostgresLock(ctx context.Context, dsn, schema string, wait time.Duration, command string) (*Lock, error) {
	if err := ValidSchema(schema); err != nil {
		return nil, fmt.Errorf("state: lock: %w", err)
	}
	lk, err := NewPostgresLocker(dsn)
	if err != nil {
		return nil, fmt.Errorf("state: lock %s: the DSN does not parse", lockWhere(schema))
	}
	l, err := lk.Acquire(ctx, schema, wait, command)
	if err != nil {
		_ = lk.Close()
		return nil, err
	}
	release := l.release
	l.release = func() error {
		// Unlocked explicitly before the session closes: closing alone
		// ends the session, but the server may release the lock a moment
		// after Close returns.
		return errors.Join(release(), lk.Close())
	}
	return l, nil
}

// lockWhere names the store in schema in lock errors, as LockedError.Path.
func lockWhere(schema string) string { return "postgres schema " + quoteIdent(schema) }

// lockTableName is the qualified name of schema's writer_lock table.
func lockTableName(schema string) string { return quoteIdent(schema) + "." + lockTable }

const lockTableExistsQuery = `SELECT to_regclass($1) IS NOT NULL`

// lockTableExists reports whether schema's writer_lock table exists, so
// that a lock taken again does not take the schema's transaction lock to
// create it.
func lockTableExists(ctx context.Context, conn *pgx.Conn, schema string) (bool, error) {
	var ok bool
	err := conn.QueryRow(ctx, lockTableExistsQuery, lockTableName(schema)).Scan(&ok)
	return ok, err
}

// tryCreateLockTable creates schema and its writer_lock table if missing,
// under the schema's transaction lock: two processes creating the schema
// or the table at once would collide in the catalog. done is false, and
// nothing is created, when another session holds the transaction lock
// now: the caller retries, instead of blocking a session other schemas'
// locks share behind a writer of this one.
func tryCreateLockTable(ctx context.Context, conn *pgx.Conn, schema string) (done bool, err error) {
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, advisoryKey(lockKindTx, schema)).Scan(&done); err != nil || !done {
			return err
		}
		for _, q := range lockTableDDL(schema) {
			if _, err := tx.Exec(ctx, q); err != nil {
				return err
			}
		}
		return nil
	})
	return done, err
}

// lockTableDDL creates schema and its writer_lock table if missing; run
// in one transaction holding the schema's transaction lock.
func lockTableDDL(schema string) []string {
	return []string{`CREATE SCHEMA IF NOT EXISTS ` + quoteIdent(schema),
		`CREATE TABLE IF NOT EXISTS ` + lockTableName(schema) + ` (
	id          INTEGER PRIMARY KEY CHECK (id = 1),
	backend_pid INTEGER NOT NULL,
	pid         BIGINT  NOT NULL,
	host        TEXT    NOT NULL,
	command     TEXT    NOT NULL,
	since       BIGINT  NOT NULL
)`}
}

// createLockTableOn creates schema and its writer_lock table if missing,
// on a connection of db. Unlike a locker's session, a pool connection may
// wait for the schema's transaction lock: it blocks nobody else.
func createLockTableOn(ctx context.Context, db *sql.DB, schema string) error {
	return againOnDuplicate(func() error { return createLockTableOnce(ctx, db, schema) })
}

func createLockTableOnce(ctx context.Context, db *sql.DB, schema string) error {
	var ok bool
	if err := db.QueryRowContext(ctx, lockTableExistsQuery, lockTableName(schema)).Scan(&ok); err != nil || ok {
		return err
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := lockWrites(ctx, tx, schema); err != nil {
		return err
	}
	for _, q := range lockTableDDL(schema) {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// tryLockPostgres tries once to take the writer lock of schema on conn
// and, when it is taken, records h as its holder. A lock whose holder
// cannot be recorded is given back.
func tryLockPostgres(ctx context.Context, conn *pgx.Conn, schema string, h Holder) (bool, error) {
	key := advisoryKey(lockKindWriter, schema)
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, key).Scan(&ok); err != nil || !ok {
		return false, err
	}
	if _, err := conn.Exec(ctx, `INSERT INTO `+lockTableName(schema)+` (id, backend_pid, pid, host, command, since)
VALUES (1, pg_backend_pid(), $1, $2, $3, $4)
ON CONFLICT (id) DO UPDATE SET backend_pid = excluded.backend_pid, pid = excluded.pid, host = excluded.host,
	command = excluded.command, since = excluded.since`, h.PID, h.Host, h.Command, encodeTime(h.Since)); err != nil {
		if !conn.IsClosed() {
			_, _ = conn.Exec(ctx, `SELECT pg_advisory_unlock($1)`, key)
		}
		return false, fmt.Errorf("record the holder: %w", err)
	}
	return true, nil
}

// unlockPostgres gives up the writer lock of schema held on conn.
func unlockPostgres(ctx context.Context, conn *pgx.Conn, schema string) error {
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_advisory_unlock($1)`, advisoryKey(lockKindWriter, schema)).Scan(&ok); err != nil {
		return err
	}
	if !ok {
		return errors.New("the session did not hold the lock")
	}
	return nil
}

// pollLock calls try until it takes the lock: once when wait is 0, else
// every lockRetryDelay until wait elapses (ok false, no error) or ctx
// ends (its error).
func pollLock(ctx context.Context, wait time.Duration, try func() (bool, error)) (bool, error) {
	ok, err := try()
	if err != nil || ok || wait <= 0 {
		return ok, err
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(lockRetryDelay)
	defer tick.Stop()
	for !ok && err == nil {
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-deadline.C:
			return false, nil // waited as long as we were told to
		case <-tick.C:
			ok, err = try()
		}
	}
	return ok, err
}

// postgresHolder reads the holder recorded in schema's writer_lock table;
// ok is true when the record is that of the session holding the lock now
// (a record left by an earlier holder, until the new one writes itself, is
// not).
func postgresHolder(ctx context.Context, conn *pgx.Conn, schema string) (Holder, bool) {
	var holderPID int32
	err := conn.QueryRow(ctx, `SELECT pid FROM pg_locks
WHERE locktype = 'advisory' AND granted AND objsubid = 1
	AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
	AND ((classid::bigint << 32) | objid::bigint) = $1`, advisoryKey(lockKindWriter, schema)).Scan(&holderPID)
	if err != nil {
		return Holder{}, false
	}
	var h Holder
	var backend int32
	var since int64
	err = conn.QueryRow(ctx, `SELECT backend_pid, pid, host, command, since FROM `+lockTableName(schema)+` WHERE id = 1`).
		Scan(&backend, &h.PID, &h.Host, &h.Command, &since)
	if err != nil || backend != holderPID {
		return Holder{}, false
	}
	h.Since = decodeTime(since)
	return h, true
}
