package state

import (
	"context"
	"database/sql"
	"strconv"
	"strings"

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

// bind rewrites query's "?" placeholders to the dialect's: unchanged for
// SQLite (so its queries cost nothing more), $1, $2, ... for PostgreSQL.
func (d dialect) bind(query string) string {
	if d == dialectSQLite {
		return query
	}
	return rebindDollar(query)
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
		switch {
		case c == '\'' || c == '"':
			end := strings.IndexByte(query[i+1:], c)
			if end < 0 {
				b.WriteString(query[i:])
				return b.String()
			}
			b.WriteString(query[i : i+end+2])
			i += end + 1
		case c == '-' && i+1 < len(query) && query[i+1] == '-':
			end := strings.IndexByte(query[i:], '\n')
			if end < 0 {
				b.WriteString(query[i:])
				return b.String()
			}
			b.WriteString(query[i : i+end+1])
			i += end
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

// sqlDB is the pool with every query rebound to its dialect on the way in,
// so the store's methods never think about placeholders.
type sqlDB struct {
	*sql.DB
	d dialect
}

func (s *sqlDB) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return s.DB.ExecContext(ctx, s.d.bind(query), args...)
}

func (s *sqlDB) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return s.DB.QueryContext(ctx, s.d.bind(query), args...)
}

func (s *sqlDB) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return s.DB.QueryRowContext(ctx, s.d.bind(query), args...)
}

func (s *sqlDB) PrepareContext(ctx context.Context, query string) (*sql.Stmt, error) {
	return s.DB.PrepareContext(ctx, s.d.bind(query))
}

// ExecContext, QueryContext and QueryRowContext shadow *sql.Tx's, binding
// the query to the DB's dialect.
func (tx *Tx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return tx.Tx.ExecContext(ctx, tx.db.db.d.bind(query), args...)
}

func (tx *Tx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return tx.Tx.QueryContext(ctx, tx.db.db.d.bind(query), args...)
}

func (tx *Tx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return tx.Tx.QueryRowContext(ctx, tx.db.db.d.bind(query), args...)
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
