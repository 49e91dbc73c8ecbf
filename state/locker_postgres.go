package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrLockerClosed: the PostgresLocker was closed.
var ErrLockerClosed = errors.New("state: the PostgreSQL locker is closed")

// createTableRetryDelay is how often Acquire tries again to create a lock
// table while another session holds the schema's transaction lock (a
// writer's transaction, usually short).
const createTableRetryDelay = 20 * time.Millisecond

// PostgresLocker takes the writer locks of many schemas on one session.
//
// A writer lock is a session-level advisory lock (see AcquirePostgresLock),
// so a process that holds one connection per lock spends one of the
// server's connections per store it writes: platform mode, running some 50
// tenants at once each with its own schema, would exhaust
// max_connections (100 by default). A locker holds all of its process's
// locks on one session instead.
//
// The session is opened by the first Acquire, and every use of it is
// serialised (a pgx.Conn is not safe for concurrent use), one statement or
// transaction at a time: an Acquire waiting for a lock polls without
// holding the session in between, so the other schemas' Acquires and
// Releases go on meanwhile.
//
// Advisory locks are re-entrant within a session: the server would grant
// a second lock of a schema to its holder's session. The locker refuses
// it itself, as held by this process (or waits for its Release).
//
// If the session breaks (the server restarts, terminates it, or the
// network fails), the server releases every lock it held, and their
// holders are not told: they lose their locks silently, as a holder of
// AcquirePostgresLock's connection does (a known limitation; another
// process may then take a lock its old holder still believes held). The
// next Acquire opens a new session; the old locks' Releases then do
// nothing and return nil, and never unlock anything on the new session.
//
// Statements run on the session are not cancelled with the caller's
// context, since pgx closes a connection whose statement is cancelled and
// that would drop every other schema's lock: a cancelled context ends a
// wait between two tries.
type PostgresLocker struct {
	cfg *pgx.ConnConfig
	// setup, if set, is the pool the lock tables are created on (see
	// PostgresPool.Locker); else they are created on the session.
	setup *sql.DB

	mu     sync.Mutex // serialises the use of conn, and guards what follows
	conn   *pgx.Conn  // the session; nil until used, or after it broke
	held   map[string]*heldLock
	closed bool
}

// heldLock is a writer lock a locker holds.
type heldLock struct {
	conn   *pgx.Conn // the session it was taken on
	holder Holder
}

// NewPostgresLocker returns a locker on the database dsn names. It does
// not connect: the first Acquire does. The error does not quote the DSN,
// which may hold a password.
func NewPostgresLocker(dsn string) (*PostgresLocker, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, errors.New("state: locker: the DSN does not parse (expected postgres://user@host:port/db?... or key=value pairs)")
	}
	return newPostgresLocker(cfg), nil
}

func newPostgresLocker(cfg *pgx.ConnConfig) *PostgresLocker {
	return &PostgresLocker{cfg: cfg, held: make(map[string]*heldLock)}
}

// Acquire takes the exclusive writer lock of the store in schema, with
// AcquirePostgresLock's contract: wait > 0 retries until it passes, wait
// elapses or ctx ends; wait == 0 fails at once; a failure wraps ErrLocked
// as a *LockedError naming the holder, this process if this locker holds
// the lock already. The holder is recorded in the schema's writer_lock
// table, created (with the schema) if missing.
func (l *PostgresLocker) Acquire(ctx context.Context, schema string, wait time.Duration, command string) (*Lock, error) {
	if err := ValidSchema(schema); err != nil {
		return nil, fmt.Errorf("state: lock: %w", err)
	}
	where := lockWhere(schema)
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("state: lock %s: %w", where, err)
	}
	if err := l.createLockTable(ctx, schema); err != nil {
		return nil, fmt.Errorf("state: lock %s: %w", where, err)
	}

	h := newHolder(command)
	var taken *heldLock
	ok, err := pollLock(ctx, wait, func() (bool, error) {
		err := l.do(ctx, func(conn *pgx.Conn) error {
			if _, mine := l.held[schema]; mine {
				return nil // this process holds it: not the session's to grant again
			}
			ok, err := tryLockPostgres(context.WithoutCancel(ctx), conn, schema, h)
			if ok {
				taken = &heldLock{conn: conn, holder: h}
				l.held[schema] = taken
			}
			return err
		})
		return taken != nil, err
	})
	if err != nil {
		return nil, fmt.Errorf("state: lock %s: %w", where, err)
	}
	if !ok {
		return nil, &LockedError{Path: where, Holder: l.holder(ctx, schema)}
	}
	return &Lock{release: func() error { return l.release(schema, taken) }}, nil
}

// createLockTable creates schema and its writer_lock table if missing, on
// the setup pool if the locker has one, else on the session. On the
// session the schema's transaction lock it needs is tried, not waited for,
// which would block every other schema's Acquire and Release.
func (l *PostgresLocker) createLockTable(ctx context.Context, schema string) error {
	if l.setup != nil {
		if err := createLockTableOn(ctx, l.setup, schema); err != nil {
			return fmt.Errorf("create the lock table: %w", err)
		}
		return nil
	}
	for {
		var done bool
		err := l.do(ctx, func(conn *pgx.Conn) error {
			var err error
			sctx := context.WithoutCancel(ctx)
			if done, err = lockTableExists(sctx, conn, schema); err != nil {
				return fmt.Errorf("find the lock table: %w", err)
			}
			if done {
				return nil
			}
			done, err = tryCreateLockTable(sctx, conn, schema)
			if isDuplicate(err) {
				// Created by another session meanwhile (see
				// againOnDuplicate): found by the next try.
				done, err = false, nil
			}
			if err != nil {
				return fmt.Errorf("create the lock table: %w", err)
			}
			return nil
		})
		if err != nil || done {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(createTableRetryDelay):
		}
	}
}

// holder names the holder of schema's lock, which this locker failed to
// take: this process if the locker holds it, else the holder recorded in
// the schema (given a moment to record itself).
func (l *PostgresLocker) holder(ctx context.Context, schema string) Holder {
	return awaitRecord(ctx, func() (Holder, bool) {
		var h Holder
		var ok bool
		_ = l.do(ctx, func(conn *pgx.Conn) error {
			if mine, held := l.held[schema]; held {
				h, ok = mine.holder, true
				return nil
			}
			h, ok = postgresHolder(context.WithoutCancel(ctx), conn, schema)
			return nil
		})
		return h, ok
	})
}

// release gives up the lock h of schema, if this locker still holds it on
// the session it was taken on. A lock lost with its session (or with
// Close) is no longer held: its release does nothing.
func (l *PostgresLocker) release(schema string, h *heldLock) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held[schema] != h {
		return nil // released by Close, or lost with a broken session
	}
	delete(l.held, schema)
	if l.conn != h.conn || l.conn == nil {
		return nil
	}
	if err := unlockPostgres(context.Background(), l.conn, schema); err != nil {
		if l.conn.IsClosed() {
			// The session broke: the server released the lock with it.
			l.dropSession()
			return nil
		}
		return fmt.Errorf("state: unlock %s: %w", lockWhere(schema), err)
	}
	return nil
}

// Close gives up every lock the locker holds and closes its session. The
// Releases of its locks then do nothing, and Acquire fails with
// ErrLockerClosed.
func (l *PostgresLocker) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	conn := l.conn
	l.dropSession()
	if conn == nil || conn.IsClosed() {
		return nil
	}
	// Unlocked explicitly: closing alone ends the session, but the
	// server may release the locks a moment after Close returns.
	ctx := context.Background()
	_, err := conn.Exec(ctx, `SELECT pg_advisory_unlock_all()`)
	if err != nil && conn.IsClosed() {
		err = nil // the server released them with the session
	}
	if err != nil {
		err = fmt.Errorf("state: locker: unlock all: %w", err)
	}
	return errors.Join(err, conn.Close(ctx))
}

// do runs fn on the session, holding it (and the locker's state) for the
// duration, and opens the session first if there is none. A session fn
// finds broken is dropped, with the locks it held; fn is run once more on
// a new session if the broken one was opened before this call.
func (l *PostgresLocker) do(ctx context.Context, fn func(conn *pgx.Conn) error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for retried := false; ; retried = true {
		fresh, err := l.session(ctx)
		if err != nil {
			return err
		}
		err = fn(l.conn)
		if err == nil || !l.conn.IsClosed() {
			return err
		}
		l.dropSession()
		if fresh || retried {
			return fmt.Errorf("the session broke: %w", err)
		}
	}
}

// session opens the locker's session if there is none, or if the one it
// has was found closed; fresh reports a new session. l.mu is held.
func (l *PostgresLocker) session(ctx context.Context) (fresh bool, err error) {
	if l.closed {
		return false, ErrLockerClosed
	}
	if l.conn != nil && !l.conn.IsClosed() {
		return false, nil
	}
	l.dropSession()
	conn, err := pgx.ConnectConfig(ctx, l.cfg.Copy())
	if err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	l.conn = conn
	return true, nil
}

// dropSession forgets the session and the locks held on it: the server
// released them, or is about to. l.mu is held.
func (l *PostgresLocker) dropSession() {
	if l.conn != nil && l.conn.IsClosed() {
		_ = l.conn.Close(context.Background()) // frees what is left of it
	}
	l.conn = nil
	clear(l.held)
}
