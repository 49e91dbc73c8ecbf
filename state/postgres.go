package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// Pool limits of a store opened alone by OpenPostgres.
const (
	// PostgresMaxConns bounds one store's connections: a run's writes,
	// a read streaming the mappings, and a status read at once.
	PostgresMaxConns = 4
	// PostgresMaxIdleConns is how many of them stay open between runs.
	PostgresMaxIdleConns = 2
	// PostgresConnMaxIdleTime closes a connection idle this long.
	PostgresConnMaxIdleTime = time.Minute
)

// DefaultSchema is the PostgreSQL schema of a single-workspace store.
const DefaultSchema = "plugipay_sync"

// ErrBadSchema: a PostgreSQL schema name the store will not use.
var ErrBadSchema = errors.New("invalid schema name")

// ValidSchema checks that name can be a PostgreSQL schema of a store: 1
// to 63 bytes of UTF-8 without control characters (PostgreSQL truncates
// longer identifiers, which would make two names share one schema), and
// not in the pg_ namespace the server reserves. The name is always
// quoted, so it is case sensitive and may hold any other character.
func ValidSchema(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty", ErrBadSchema)
	case len(name) > 63:
		return fmt.Errorf("%w: %q is longer than 63 bytes", ErrBadSchema, name)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: %q is not UTF-8", ErrBadSchema, name)
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return fmt.Errorf("%w: %q holds a control character", ErrBadSchema, name)
	case strings.HasPrefix(strings.ToLower(name), "pg_"):
		return fmt.Errorf("%w: %q: names starting with pg_ are reserved by PostgreSQL", ErrBadSchema, name)
	}
	return nil
}

// quoteIdent quotes an identifier for PostgreSQL.
func quoteIdent(name string) string { return pgx.Identifier{name}.Sanitize() }

// PostgresPool is a pool of connections to one PostgreSQL database that
// the stores of many schemas share: platform mode runs tens of tenants at
// once in one process (issue 19), and a pool per tenant spent PostgreSQL's
// max_connections (100 by default) on idle connections long before the
// machine was busy. A store opened from the pool qualifies its tables with
// its schema (see qualify), so any connection serves any store.
//
// Every store method holds at most one connection at a time, bar the
// streaming reads (AllMappings, AuditSince), whose callers must not wait
// on the same pool for a write while they iterate when more of them than
// the pool's size may run at once.
type PostgresPool struct {
	db    *sql.DB
	cfg   *pgx.ConnConfig
	where string // server and database, for errors (never the DSN)
}

// OpenPostgresPool opens a pool of at most maxConns connections (>= 1) to
// the database dsn names, keeping maxIdle of them open between uses. It
// connects lazily: a bad server shows at the first store's Open.
func OpenPostgresPool(dsn string, maxConns, maxIdle int) (*PostgresPool, error) {
	if maxConns < 1 {
		return nil, fmt.Errorf("state: postgres pool: %d connections: want at least 1", maxConns)
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx's message may quote the DSN, password included.
		return nil, errors.New("state: open postgres: the DSN does not parse (expected postgres://user@host:port/db?... or key=value pairs)")
	}
	// No store is on the search path: a table reference qualify missed
	// fails ("relation does not exist") instead of reaching another
	// store, or a table of the same name in public.
	cfg.RuntimeParams["search_path"] = "pg_catalog"
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(min(maxIdle, maxConns))
	db.SetConnMaxIdleTime(PostgresConnMaxIdleTime)
	return &PostgresPool{db: db, cfg: cfg, where: fmt.Sprintf("%s:%d/%s", cfg.Host, cfg.Port, cfg.Database)}, nil
}

// Locker returns a PostgresLocker on the pool's database that creates the
// schemas' lock tables on the pool's connections, so that only taking and
// giving up the locks waits for its one session: platform mode starting
// tens of new tenants at once creates their tables side by side instead
// of one after another on the session. Close the locker before the pool.
func (p *PostgresPool) Locker() *PostgresLocker {
	l := newPostgresLocker(p.cfg.Copy())
	l.setup = p.db
	return l
}

// Open opens the store in schema, creating the schema if it is missing and
// bringing its tables up to date; closing the store leaves the pool open.
// Two processes may open one schema at once: the migrations run under a
// transaction-level advisory lock of the schema.
func (p *PostgresPool) Open(ctx context.Context, schema string, opts ...Option) (*DB, error) {
	return p.open(ctx, schema, true, opts)
}

func (p *PostgresPool) open(ctx context.Context, schema string, shared bool, opts []Option) (*DB, error) {
	if err := ValidSchema(schema); err != nil {
		return nil, fmt.Errorf("state: open postgres: %w", err)
	}
	db := newDB(&sqlDB{DB: p.db, d: dialectPostgres, schema: quoteIdent(schema), shared: shared}, opts)
	db.schema = schema
	db.where = fmt.Sprintf("postgres schema %s on %s", quoteIdent(schema), p.where)
	if err := db.init(ctx); err != nil {
		db.stmts.close()
		return nil, err
	}
	return db, nil
}

// Stats reports the pool's use, for tests and metrics.
func (p *PostgresPool) Stats() sql.DBStats { return p.db.Stats() }

// Close closes the pool's connections. Close the stores opened from it
// first.
func (p *PostgresPool) Close() error { return p.db.Close() }

// OpenPostgres opens the store in the PostgreSQL schema schema of the
// database dsn names, on a pool of its own (PostgresMaxConns) that closing
// the store closes: a single-workspace deployment, or one command on one
// tenant. See PostgresPool.Open.
func OpenPostgres(ctx context.Context, dsn, schema string, opts ...Option) (*DB, error) {
	if err := ValidSchema(schema); err != nil {
		return nil, fmt.Errorf("state: open postgres: %w", err)
	}
	p, err := OpenPostgresPool(dsn, PostgresMaxConns, PostgresMaxIdleConns)
	if err != nil {
		return nil, err
	}
	db, err := p.open(ctx, schema, false, opts)
	if err != nil {
		_ = p.Close()
		return nil, err
	}
	return db, nil
}

// Schema returns the PostgreSQL schema of a DB opened by OpenPostgres, or
// "" for a SQLite file.
func (db *DB) Schema() string { return db.schema }

// createSchema creates the DB's schema if it is missing, under the
// schema's transaction lock (CREATE SCHEMA IF NOT EXISTS alone races).
func (db *DB) createSchema(ctx context.Context) error {
	err := againOnDuplicate(func() error {
		return db.update(ctx, func(tx *Tx) error {
			_, err := tx.ExecContext(ctx, `CREATE SCHEMA IF NOT EXISTS `+quoteIdent(db.schema))
			return err
		})
	})
	if err != nil {
		return fmt.Errorf("state: open %s: create schema: %w", db.where, err)
	}
	return nil
}

// againOnDuplicate runs create, a transaction that creates objects IF
// NOT EXISTS under the schema's transaction lock, once more when it failed
// on a duplicate. The lock orders the creators, but PostgreSQL's check
// for an existing schema reads the session's catalog cache, which learns
// of a schema another session committed while this one waited for the
// lock only at its next transaction.
func againOnDuplicate(create func() error) error {
	err := create()
	if isDuplicate(err) {
		err = create()
	}
	return err
}

// isDuplicate: err is PostgreSQL's refusal of an object that exists
// already (a unique violation in the catalog, duplicate_schema,
// duplicate_table).
func isDuplicate(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "23505" || pe.Code == "42P06" || pe.Code == "42P07")
}

// Advisory lock keys are per schema, one per purpose, so a writer lock
// held on one connection never blocks the same process's transactions.
const (
	lockKindTx     = "tx"
	lockKindWriter = "writer"
)

// advisoryKey is the 64-bit advisory lock key of kind on schema.
func advisoryKey(kind, schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte("plugipay-sync state " + kind + "\x00" + schema))
	return int64(h.Sum64())
}

// lockWrites takes the schema's transaction lock in tx: PostgreSQL's
// equivalent of SQLite's BEGIN IMMEDIATE. It is released when tx ends.
func lockWrites(ctx context.Context, tx *sql.Tx, schema string) error {
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, advisoryKey(lockKindTx, schema)); err != nil {
		return fmt.Errorf("lock schema %s for writing: %w", quoteIdent(schema), err)
	}
	return nil
}

// PostgresSchemas returns the names of the schemas of the database dsn
// names that start with prefix, sorted: platform mode's `status` finds the
// tenants' stores by them without creating any.
func PostgresSchemas(ctx context.Context, dsn, prefix string) ([]string, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, errors.New("state: list schemas: the DSN does not parse (expected postgres://user@host:port/db?... or key=value pairs)")
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("state: list schemas: connect to %s:%d/%s: %w", cfg.Host, cfg.Port, cfg.Database, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, `SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1) ORDER BY nspname COLLATE "C"`, prefix)
	if err != nil {
		return nil, fmt.Errorf("state: list schemas: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("state: list schemas: %w", err)
	}
	return names, nil
}
