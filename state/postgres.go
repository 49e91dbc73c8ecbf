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
	"github.com/jackc/pgx/v5/stdlib"
)

// Pool limits of a DB on PostgreSQL. A process may open the stores of
// many tenants one after another (issue 19), so each keeps few
// connections, and idle ones go back to the server soon.
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

// OpenPostgres opens the store whose tables live in the PostgreSQL schema
// schema of the database dsn names, creating the schema if it is missing
// and bringing its tables up to date. Every connection has search_path set
// to the schema in its startup parameters, so the store's queries are the
// same text as on SQLite. Two processes may open one schema at once: the
// migrations run under a transaction-level advisory lock of the schema.
func OpenPostgres(ctx context.Context, dsn, schema string, opts ...Option) (*DB, error) {
	if err := ValidSchema(schema); err != nil {
		return nil, fmt.Errorf("state: open postgres: %w", err)
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx's message may quote the DSN, password included.
		return nil, errors.New("state: open postgres: the DSN does not parse (expected postgres://user@host:port/db?... or key=value pairs)")
	}
	cfg.RuntimeParams["search_path"] = quoteIdent(schema)
	pool := stdlib.OpenDB(*cfg)
	pool.SetMaxOpenConns(PostgresMaxConns)
	pool.SetMaxIdleConns(PostgresMaxIdleConns)
	pool.SetConnMaxIdleTime(PostgresConnMaxIdleTime)
	db := newDB(&sqlDB{DB: pool, d: dialectPostgres}, opts)
	db.schema = schema
	db.where = fmt.Sprintf("postgres schema %s on %s:%d/%s", quoteIdent(schema), cfg.Host, cfg.Port, cfg.Database)
	if err := db.init(ctx); err != nil {
		_ = pool.Close()
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
	err := db.update(ctx, func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `CREATE SCHEMA IF NOT EXISTS `+quoteIdent(db.schema))
		return err
	})
	if err != nil {
		return fmt.Errorf("state: open %s: create schema: %w", db.where, err)
	}
	return nil
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
