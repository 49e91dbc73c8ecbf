package sqlsrc

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/plugipay-sync/plugipay-sync/crm"
)

// fill inserts n rows into name in batches of 1000, three rows per second
// of updated_at, and refreshes the planner's statistics.
func fill(t testing.TB, db *sql.DB, b backend, name string, n int, base time.Time) {
	t.Helper()
	for from := 1; from <= n; from += 1000 {
		var vals []string
		var params []any
		for i := from; i < from+1000 && i <= n; i++ {
			vals = append(vals, "("+placeholders(b, 3)+")")
			params = append(params, i, fmt.Sprintf("u%d@example.com", i), ts(b, base.Add(time.Duration(i/3)*time.Second)))
		}
		if b.driver == Postgres {
			// $n numbering runs across the whole statement.
			vals = vals[:0]
			for j := 0; j < len(params)/3; j++ {
				vals = append(vals, fmt.Sprintf("($%d, $%d, $%d)", 3*j+1, 3*j+2, 3*j+3))
			}
		}
		q := fmt.Sprintf("INSERT INTO %s (id, email, updated_at) VALUES %s", name, strings.Join(vals, ", "))
		if _, err := db.Exec(q, params...); err != nil {
			t.Fatal(err)
		}
	}
	analyze := map[string]string{Postgres: "ANALYZE ", MySQL: "ANALYZE TABLE ", SQLite: "ANALYZE "}[b.driver]
	if _, err := db.Exec(analyze + name); err != nil {
		t.Fatal(err)
	}
}

// planOf returns the plan the engine gives q, one line per step.
func planOf(t *testing.T, db *sql.DB, b backend, q string, params []any) []string {
	t.Helper()
	explain := map[string]string{Postgres: "EXPLAIN ", MySQL: "EXPLAIN ", SQLite: "EXPLAIN QUERY PLAN "}[b.driver]
	rows, err := db.Query(explain+q, params...)
	if err != nil {
		t.Fatalf("%s%s: %v", explain, q, err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out []string
	for rows.Next() {
		raw := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range raw {
			ptrs[i] = &raw[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		var parts []string
		for i, c := range cols {
			parts = append(parts, c+"="+str(raw[i]))
		}
		out = append(out, strings.Join(parts, " "))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// indexed reports whether plan reads index as a range rather than
// filtering the rows it walks: on PostgreSQL an index scan or bitmap
// index scan with an Index Cond on col and no Filter, on MySQL/MariaDB access type range on the index, on SQLite a
// SEARCH of the index.
func indexed(b backend, plan []string, index, col string) bool {
	all := strings.Join(plan, "\n")
	switch b.driver {
	case Postgres:
		return (strings.Contains(all, "Index Scan using "+index+" ") || strings.Contains(all, "Bitmap Index Scan on "+index+" ")) &&
			strings.Contains(all, "Index Cond: ") &&
			strings.Contains(all, col) && !strings.Contains(all, "Filter: ") && !strings.Contains(all, "Seq Scan")
	case MySQL:
		return len(plan) == 1 && strings.Contains(all, "type=range ") && strings.Contains(all, "key="+index+" ")
	default:
		return strings.Contains(all, "SEARCH ") && strings.Contains(all, index)
	}
}

// TestPageQuery_UsesIndex reads the plan of the next-page query on each
// engine, for a full scan (on the primary key) and an incremental read (on
// the (updated_at, id) index), and fails when the keyset is a filter over
// a walk of the index or of the table (issue 15: the expanded OR form on
// PostgreSQL made a 1M-row full scan quadratic).
func TestPageQuery_UsesIndex(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name(), func(t *testing.T) {
			b.need(t)
			db, name := table(t, b)
			base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			fill(t, db, b, name, 20_000, base)
			src, err := New(Options{Driver: b.driver, DSN: b.dsn, Table: name, PageSize: 1000,
				Columns: crm.ColumnMap{ExternalID: "id", Email: "email"}})
			if err != nil {
				t.Fatal(err)
			}
			r, err := src.newRead(context.Background(), db)
			if err != nil {
				t.Fatal(err)
			}
			// Where page 18 of 20 starts.
			r.lastAt, r.lastID, r.run = ts(b, base.Add(6000*time.Second)), 18000, 1
			pkey := map[string]string{Postgres: name + "_pkey", MySQL: "PRIMARY", SQLite: "INTEGER PRIMARY KEY"}[b.driver]
			for _, tt := range []struct {
				mode       string
				index, col string
			}{{"full", pkey, "id"}, {"incremental", name + "_keyset", "updated_at"}} {
				r.full = tt.mode == "full"
				r.lower = base.Add(time.Hour)
				r.hz.upper = ts(b, base.Add(24*time.Hour))
				q, params, _ := r.pageQuery(false)
				if plan := planOf(t, db, b, q, params); !indexed(b, plan, tt.index, tt.col) {
					t.Errorf("%s page query does not range over the index %s:\n%s\nplan:\n%s", tt.mode, tt.index, q, strings.Join(plan, "\n"))
				}
			}
			if b.driver == Postgres {
				// The check catches the form PostgreSQL filters.
				q := fmt.Sprintf("SELECT id FROM %s WHERE updated_at > $1 OR (updated_at = $1 AND id > $2) ORDER BY updated_at, id LIMIT 1000", name)
				if plan := planOf(t, db, b, q, []any{base, 7}); indexed(b, plan, name+"_keyset", "updated_at") {
					t.Errorf("the expanded form passes the check:\n%s", strings.Join(plan, "\n"))
				}
			}
		})
	}
}

// TestRead_Next checks the watermark a complete read prepares: the newest
// updated_at read, never past the database clock, and, when open
// transactions could be listed, never past the oldest one's start.
func TestRead_Next(t *testing.T) {
	at := func(h int) time.Time { return time.Date(2026, 12, 1, h, 0, 0, 0, time.UTC) }
	src, err := New(Options{Driver: SQLite, DSN: "x", Table: "t", Columns: crm.ColumnMap{ExternalID: "id"},
		Now: func() time.Time { return at(20) }})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		prev  time.Time
		maxAt time.Time
		hz    horizon
		want  time.Time
	}{
		{"newest read", at(1), at(5), horizon{now: at(10), known: true}, at(5)},
		{"nothing read", at(5), time.Time{}, horizon{now: at(10), known: true}, at(5)},
		{"dated ahead of the clock", at(1), at(15), horizon{now: at(10), known: true}, at(10)},
		{"open transaction", at(1), at(5), horizon{now: at(10), oldest: at(3), known: true}, at(3)},
		{"open transaction older than the last watermark", at(4), at(5), horizon{now: at(10), oldest: at(2), known: true}, at(2)},
		{"open transaction after the newest row", at(1), at(5), horizon{now: at(10), oldest: at(7), known: true}, at(5)},
		{"transactions not visible: the overlap only", at(1), at(5), horizon{now: at(10), oldest: at(3)}, at(5)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &read{s: src, prev: crm.Watermark{At: tt.prev}, maxAt: tt.maxAt, hz: tt.hz}
			if got := r.next().At; !got.Equal(tt.want) {
				t.Errorf("next().At = %s, want %s", got, tt.want)
			}
		})
	}
}
