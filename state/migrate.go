package state

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
)

// migrationFS holds the schema migrations, applied in lexical order. Name
// new files NNN_description.sql with the next number; never edit one that
// has shipped.
//
//go:embed migrations/*.sql migrations/postgres/*.sql
var migrationFS embed.FS

// migration is one embedded schema change.
type migration struct {
	name    string // file name, e.g. "001_initial.sql"
	version int    // its numeric prefix
	sql     string
}

// loadMigrations reads the embedded migrations of d in lexical order.
func loadMigrations(d dialect) ([]migration, error) {
	names, err := fs.Glob(migrationFS, d.migrationDir()+"/*.sql")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var ms []migration
	for _, p := range names {
		b, err := migrationFS.ReadFile(p)
		if err != nil {
			return nil, err
		}
		name := strings.TrimPrefix(p, d.migrationDir()+"/")
		v, err := migrationVersion(name)
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{name: name, version: v, sql: string(b)})
	}
	return ms, nil
}

// migrationVersion is the number before the first "_" of a migration name.
func migrationVersion(name string) (int, error) {
	num, _, _ := strings.Cut(name, "_")
	v, err := strconv.Atoi(num)
	if err != nil {
		return 0, fmt.Errorf("migration %q: name must start with a number", name)
	}
	return v, nil
}

// SchemaVersion is the highest migration version this binary knows.
func SchemaVersion() int {
	ms, err := loadMigrations(dialectSQLite)
	if err != nil || len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].version
}

// migrate applies the migrations not yet recorded in the migrations table,
// each in its own transaction. It refuses a database that records a
// migration this binary does not know: an older binary must not write to a
// schema it does not understand.
func (db *DB) migrate(ctx context.Context) error {
	// In a write transaction: on PostgreSQL two processes creating the
	// table at once would otherwise collide in the catalog.
	err := db.update(ctx, func(tx *Tx) error {
		_, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS migrations (
		name       TEXT    NOT NULL PRIMARY KEY,
		applied_at BIGINT  NOT NULL
	)`)
		return err
	})
	if err != nil {
		return fmt.Errorf("state: open %s: create migrations table: %w", db.where, err)
	}
	ms, err := loadMigrations(db.db.d)
	if err != nil {
		return fmt.Errorf("state: open %s: load migrations: %w", db.where, err)
	}
	known := map[string]bool{}
	for _, m := range ms {
		known[m.name] = true
	}
	applied, err := db.appliedMigrations(ctx)
	if err != nil {
		return err
	}
	maxApplied := 0
	unknown := false
	for _, name := range applied {
		if !known[name] {
			unknown = true
		}
		if v, err := migrationVersion(name); err == nil && v > maxApplied {
			maxApplied = v
		}
	}
	if unknown {
		return fmt.Errorf("state: open %s: state DB schema version %d is newer than this binary supports (%d); upgrade plugipay-sync",
			db.where, maxApplied, SchemaVersion())
	}
	for _, m := range ms {
		if err := db.applyMigration(ctx, m); err != nil {
			return err
		}
	}
	return nil
}

// appliedMigrations lists the names recorded in the migrations table.
func (db *DB) appliedMigrations(ctx context.Context) ([]string, error) {
	rows, err := db.db.QueryContext(ctx, `SELECT name FROM migrations ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("state: open %s: read migrations: %w", db.where, err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		names = append(names, n)
	}
	return names, rows.Err()
}

// applyMigration applies m unless it is recorded already. The check runs
// inside the write transaction (IMMEDIATE on SQLite, under the schema's
// transaction lock on PostgreSQL), so two processes opening a new store at
// once cannot both apply it.
func (db *DB) applyMigration(ctx context.Context, m migration) error {
	return db.update(ctx, func(tx *Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM migrations WHERE name = ?`, m.name).Scan(&n); err != nil {
			return fmt.Errorf("state: open %s: migration %s: %w", db.where, m.name, err)
		}
		if n > 0 {
			return nil
		}
		if db.schema != "" {
			// The migrations are written unqualified, as on SQLite;
			// search_path names the store for this transaction only.
			if _, err := tx.Tx.ExecContext(ctx, `SET LOCAL search_path TO `+quoteIdent(db.schema)); err != nil {
				return fmt.Errorf("state: open %s: migration %s: %w", db.where, m.name, err)
			}
		}
		if _, err := tx.Tx.ExecContext(ctx, m.sql); err != nil {
			return fmt.Errorf("state: open %s: migration %s: %w", db.where, m.name, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO migrations (name, applied_at) VALUES (?, ?)`, m.name, encodeTime(tx.now)); err != nil {
			return fmt.Errorf("state: open %s: record migration %s: %w", db.where, m.name, err)
		}
		return nil
	})
}
