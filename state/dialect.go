package state

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
	stdsync "sync"
	"sync/atomic"

	"github.com/plugipay-sync/plugipay-sync/sync"
)

// dialect is the SQL database a DB speaks to. Every query of the store is
// written once, in the SQL both databases accept, with "?" placeholders;
// the few differences live in this file and in the per-dialect migrations.
type dialect uint8

const (
	dialectSQLite dialect = iota
	dialectPostgres
)

func (d dialect) String() string {
	if d == dialectPostgres {
		return "postgres"
	}
	return "sqlite"
}

// migrationDir is the directory of migrationFS holding d's migrations.
// Both directories have the same file names and the same semantics.
func (d dialect) migrationDir() string {
	if d == dialectPostgres {
		return "migrations/postgres"
	}
	return "migrations"
}

// stateTables are the store's tables: the names qualify prefixes with the
// store's schema on PostgreSQL.
var stateTables = map[string]bool{
	"audit_log": true, "change_version": true, "confirmed_records": true, "failures": true,
	"mappings": true, "migrations": true, "pending_writes": true, "runs": true,
	"seen_in_run": true, "source_watermarks": true, "state_meta": true,
}

// tableKeywords are the keywords after which a name is a table: the only
// places qualify rewrites, so a column that shares a table's name
// ("SELECT mappings FROM change_version") is left alone.
var tableKeywords = map[string]bool{"FROM": true, "JOIN": true, "INTO": true, "UPDATE": true, "TABLE": true, "EXISTS": true}

// qualify prefixes each reference to one of stateTables in query with
// schema (quoted), outside string literals, quoted identifiers and
// comments. On PostgreSQL every store of one process shares one pool
// (issue 19: a connection per tenant exhausts max_connections), so a
// connection's search_path cannot name the store; the queries are written
// once, unqualified, and qualified here on the way in. The pool's
// search_path holds none of the stores, so a reference this misses fails
// loudly ("relation does not exist") instead of reaching another store.
func qualify(query, schema string) string {
	var b strings.Builder
	b.Grow(len(query) + 64)
	prev := "" // the last significant token, upper-cased
	for i := 0; i < len(query); {
		c := query[i]
		if j := opaqueEnd(query, i); j > i {
			// A literal or a quoted identifier is a significant token
			// (no keyword); a comment is not.
			if c != '-' {
				prev = string(c)
			}
			b.WriteString(query[i:j])
			i = j
			continue
		}
		switch {
		case isWordByte(c):
			j := i
			for j < len(query) && isWordByte(query[j]) {
				j++
			}
			w := query[i:j]
			dotted := (i > 0 && query[i-1] == '.') || (j < len(query) && query[j] == '.')
			if tableKeywords[prev] && !dotted && stateTables[strings.ToLower(w)] {
				b.WriteString(schema)
				b.WriteByte('.')
			}
			b.WriteString(w)
			prev = strings.ToUpper(w)
			i = j
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			b.WriteByte(c)
			i++
		default:
			b.WriteByte(c)
			prev = string(c)
			i++
		}
	}
	return b.String()
}

// opaqueEnd returns the end of the string literal, quoted identifier or
// line comment that starts at query[i] (the rest of query if it is not
// closed), or i when none starts there: the parts of a query qualify and
// rebindDollar copy untouched.
func opaqueEnd(query string, i int) int {
	switch c := query[i]; {
	case c == '\'' || c == '"':
		if end := strings.IndexByte(query[i+1:], c); end >= 0 {
			return i + end + 2
		}
		return len(query)
	case c == '-' && i+1 < len(query) && query[i+1] == '-':
		if end := strings.IndexByte(query[i:], '\n'); end >= 0 {
			return i + end + 1
		}
		return len(query)
	}
	return i
}

func isWordByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
}

// rebindDollar replaces each "?" outside string literals, quoted
// identifiers and comments by $n, numbering from 1.
func rebindDollar(query string) string {
	if !strings.Contains(query, "?") {
		return query
	}
	var b strings.Builder
	b.Grow(len(query) + 16)
	n := 0
	for i := 0; i < len(query); i++ {
		c := query[i]
		if j := opaqueEnd(query, i); j > i {
			b.WriteString(query[i:j])
			i = j - 1
			continue
		}
		switch {
		case c == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// sqlDB is the pool with every query bound to the store on the way in
// (placeholders, and on PostgreSQL the schema), so the store's methods
// never think about either.
type sqlDB struct {
	*sql.DB
	d dialect
	// schema is the quoted PostgreSQL schema of the store; "" on SQLite.
	schema string
	// shared: the pool belongs to a PostgresPool, not to this store, and
	// closing the store leaves it open.
	shared bool
	// bound caches bind's results (the store's queries are a fixed set,
	// bar the row counts of multi-row statements), up to bindCacheMax.
	bound  stdsync.Map
	nbound atomic.Int64
}

// bindCacheMax bounds one store's cache of bound queries.
const bindCacheMax = 1024

// bind rewrites query for the store: unchanged on SQLite (so its queries
// cost nothing more); on PostgreSQL "?" placeholders become $1, $2, ...
// and the store's tables are qualified with its schema.
func (s *sqlDB) bind(query string) string {
	if s.d == dialectSQLite {
		return query
	}
	if q, ok := s.bound.Load(query); ok {
		return q.(string)
	}
	q := rebindDollar(qualify(query, s.schema))
	if s.nbound.Add(1) <= bindCacheMax {
		s.bound.Store(query, q)
	}
	return q
}

func (s *sqlDB) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return s.DB.ExecContext(ctx, s.bind(query), args...)
}

func (s *sqlDB) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return s.DB.QueryContext(ctx, s.bind(query), args...)
}

func (s *sqlDB) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return s.DB.QueryRowContext(ctx, s.bind(query), args...)
}

func (s *sqlDB) PrepareContext(ctx context.Context, query string) (*sql.Stmt, error) {
	return s.DB.PrepareContext(ctx, s.bind(query))
}

// Close closes the pool unless it is shared.
func (s *sqlDB) Close() error {
	if s.shared {
		return nil
	}
	return s.DB.Close()
}

// ExecContext, QueryContext and QueryRowContext shadow *sql.Tx's, binding
// the query to the store.
func (tx *Tx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return tx.Tx.ExecContext(ctx, tx.db.db.bind(query), args...)
}

func (tx *Tx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return tx.Tx.QueryContext(ctx, tx.db.db.bind(query), args...)
}

func (tx *Tx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return tx.Tx.QueryRowContext(ctx, tx.db.db.bind(query), args...)
}

// upsertable returns the mappings one multi-row upsert may carry: ms
// itself on SQLite, which applies rows in order (the last of one external
// id wins), and on PostgreSQL, where an upsert may not touch one row twice
// ("cannot affect row a second time"), ms without the mappings a later
// one of the same external id replaces. A rebuild can meet one external
// id on two customers.
func (d dialect) upsertable(ms []sync.Mapping) []sync.Mapping {
	if d == dialectSQLite {
		return ms
	}
	last := make(map[string]int, len(ms))
	for i, m := range ms {
		last[m.ExternalID] = i
	}
	if len(last) == len(ms) {
		return ms
	}
	out := make([]sync.Mapping, 0, len(last))
	for i, m := range ms {
		if last[m.ExternalID] == i {
			out = append(out, m)
		}
	}
	return out
}

// boolInt stores a flag as 0 or 1: both schemas keep flags in integer
// columns (SQLite has no other), and PostgreSQL will not take a Go bool
// for one.
func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
