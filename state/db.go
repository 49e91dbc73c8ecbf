// Package state is the cache behind sync.Store: the mappings from CRM
// users to Plugipay customers, the pending writes that pin each intended
// write's idempotency key across crashes, the failures kept until a record
// syncs, and the history of runs. It lives in a local SQLite file (Open)
// or, for replicas that share the work, in a PostgreSQL schema
// (OpenPostgres): one DB type, each query written once (see dialect.go).
//
// The database is one file opened in WAL mode, so readers (a status command,
// the metrics endpoint) never block the reconciler. Every per-connection
// setting lives in the DSN rather than in a PRAGMA sent through db.Exec,
// which would reach one pooled connection only. Every transaction begins
// IMMEDIATE, so two writers queue on the busy timeout instead of failing
// with "database is locked" when a read lock is upgraded.
package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	stdsync "sync"
	"time"

	"github.com/mattn/go-sqlite3"

	"github.com/plugipay-sync/plugipay-sync/sync"
)

// Settings of every connection: the DSN carries the first two, the
// driver's ConnectHook the mmap size.
const (
	// DefaultBusyTimeout is how long a connection waits for another
	// writer's lock before giving up with "database is locked".
	DefaultBusyTimeout = 5 * time.Second
	// DefaultCacheSize is SQLite's page cache per connection, in KiB. It
	// bounds the memory the state DB costs however many users it maps.
	// Lookups by external id in a large cache are random: beyond the
	// B-tree's interior pages, which 2 MiB holds for millions of users, a
	// bigger cache mostly keeps leaf pages no other lookup reads (the OS
	// page cache serves those as well). At 16 MiB the lookups of a print
	// pass's few thousand changed rows filled it, and were a third of the
	// run's RSS (issue 13). The interior pages of a million mappings are
	// about 150 KiB.
	DefaultCacheSize = 2 << 10
	// DefaultMmapSize is how much of the file SQLite reads through mmap:
	// none. Mapped pages count in the process's RSS, so with mmap the RSS
	// of a scan grew with the state DB (issue 7: 48 MiB at 100,000 users,
	// 212 MiB at 1,000,000). Without it, a no-op scan of a million users
	// in id order ran as fast, and random lookups in a million mappings
	// take about 6 us an id instead of 3.5, far below what any source or
	// the API's rate limits allow.
	DefaultMmapSize = 0
)

// driverName is the mattn driver registered with a ConnectHook for the
// settings the DSN cannot carry (mmap_size), so that they too reach every
// pooled connection.
const driverName = "sqlite3_plugipay_state"

var registerDriver = stdsync.OnceFunc(func() {
	sql.Register(driverName, &sqlite3.SQLiteDriver{
		ConnectHook: func(c *sqlite3.SQLiteConn) error {
			_, err := c.Exec(fmt.Sprintf("PRAGMA mmap_size = %d", DefaultMmapSize), nil)
			return err
		},
	})
})

// OutcomeAborted is the outcome of a run whose process died before it
// finished; MarkStaleRuns sets it.
const OutcomeAborted = "aborted"

var _ sync.Store = (*DB)(nil)

// DB is the state database. It is safe for concurrent use.
type DB struct {
	db   *sqlDB
	path string // the SQLite file; "" on PostgreSQL
	// schema is the PostgreSQL schema holding the tables; "" on SQLite.
	schema string
	// where names the database in errors: the path, or the schema.
	where string
	now   func() time.Time

	stmts stmtCache

	mu     stdsync.Mutex
	active map[int64]bool // runs started by this DB and not yet finished
}

// Option configures Open.
type Option func(*DB)

// WithClock makes the DB take "now" from now instead of time.Now, so tests
// can fix the timestamps it records.
func WithClock(now func() time.Time) Option {
	return func(db *DB) { db.now = now }
}

// Open opens the state database at path, creating it and its directory if
// needed, and brings its schema up to date. A new directory is created with
// mode 0700 and a new file with mode 0600: the file holds customer ids and
// email-derived keys. An existing file's mode is left alone.
func Open(ctx context.Context, path string, opts ...Option) (*DB, error) {
	if path == "" {
		return nil, errors.New("state: open: empty path")
	}
	if err := createFile(path); err != nil {
		return nil, fmt.Errorf("state: open %s: %w", path, err)
	}
	registerDriver()
	pool, err := sql.Open(driverName, dsn(path))
	if err != nil {
		return nil, fmt.Errorf("state: open %s: %w", path, err)
	}
	db := newDB(&sqlDB{DB: pool, d: dialectSQLite}, opts)
	db.path, db.where = path, path
	if err := db.init(ctx); err != nil {
		_ = pool.Close()
		return nil, err
	}
	return db, nil
}

// newDB is the DB over pool with opts applied, for either dialect.
func newDB(pool *sqlDB, opts []Option) *DB {
	db := &DB{db: pool, now: time.Now, active: map[int64]bool{}}
	db.stmts.db = pool
	for _, o := range opts {
		o(db)
	}
	return db
}

// init checks the connection settings took effect and migrates the schema.
func (db *DB) init(ctx context.Context) error {
	if db.db.d == dialectPostgres {
		if err := db.createSchema(ctx); err != nil {
			return db.openError(err)
		}
		return db.openError(db.migrate(ctx))
	}
	var mode string
	if err := db.db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return db.openError(err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("state: open %s: journal_mode is %q, want wal (is the file on a filesystem without shared memory?)", db.where, mode)
	}
	if err := db.migrate(ctx); err != nil {
		return db.openError(err)
	}
	return nil
}

// openError names the path and explains the SQLite errors an operator can
// act on: a file that is not a database or is corrupted.
func (db *DB) openError(err error) error {
	if err == nil {
		return nil
	}
	var se sqlite3.Error
	if errors.As(err, &se) && (se.Code == sqlite3.ErrNotADB || se.Code == sqlite3.ErrCorrupt) {
		return fmt.Errorf("state: open %s: not a valid state database (corrupted, or not a SQLite file); move it aside to rebuild the cache: %w", db.where, err)
	}
	if strings.HasPrefix(err.Error(), "state:") {
		return err
	}
	return fmt.Errorf("state: open %s: %w", db.where, err)
}

// createFile creates the parent directory (0700) and the database file
// (0600) if they do not exist. SQLite gives the -wal and -shm files it
// creates later the database file's mode.
func createFile(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return f.Close()
}

// dsn builds the mattn DSN. The path is a file: URI, so the characters that
// URIs and mattn's parameter split treat specially are escaped.
func dsn(path string) string {
	esc := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	return fmt.Sprintf("file:%s?_journal_mode=WAL&_busy_timeout=%d&_foreign_keys=on&_synchronous=NORMAL&_txlock=immediate&_cache_size=-%d",
		esc, DefaultBusyTimeout.Milliseconds(), DefaultCacheSize)
}

// Path returns the database file's path as given to Open, or "" for a
// DB on PostgreSQL (OpenPostgres).
func (db *DB) Path() string { return db.path }

// Location names the store for people: the file's path, or the
// PostgreSQL schema with the server and database (never the DSN, which
// may hold a password).
func (db *DB) Location() string { return db.where }

// Close closes the prepared statements and the database.
func (db *DB) Close() error {
	if db == nil || db.db == nil {
		return nil
	}
	db.stmts.close()
	if err := db.db.Close(); err != nil {
		return fmt.Errorf("state: close %s: %w", db.where, err)
	}
	return nil
}

// Tx is a write transaction carrying one fixed "now", so every row it
// touches gets the same timestamp and tests can fix the clock. Its
// ExecContext, QueryContext and QueryRowContext bind "?" placeholders to
// the DB's dialect (dialect.go); the context-free methods of the embedded
// *sql.Tx do not, and are not used.
type Tx struct {
	*sql.Tx
	db  *DB
	now time.Time
}

// BeginTx starts a write transaction. On SQLite it begins IMMEDIATE (from
// the DSN), so it waits up to the busy timeout for another writer rather
// than failing later when it first writes. On PostgreSQL it takes the
// schema's transaction lock first (see lockWrites), to the same effect:
// write transactions on one store run one at a time, as the store's
// read-then-write methods (PreparePendingWrite, RecordFailure) assume.
func (db *DB) BeginTx(ctx context.Context) (*Tx, error) {
	tx, err := db.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	if db.db.d == dialectPostgres {
		if err := lockWrites(ctx, tx, db.schema); err != nil {
			_ = tx.Rollback()
			return nil, err
		}
	}
	return &Tx{Tx: tx, db: db, now: db.now().UTC()}, nil
}

// update runs fn in a write transaction and commits it.
func (db *DB) update(ctx context.Context, fn func(tx *Tx) error) error {
	tx, err := db.BeginTx(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// Timestamps are stored as unix nanoseconds in UTC; 0 is the zero time.
func encodeTime(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func decodeTime(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// Ping checks that the database file is still reachable, for readiness
// probes.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.db.PingContext(ctx); err != nil {
		return fmt.Errorf("state: ping %s: %w", db.where, err)
	}
	return nil
}
