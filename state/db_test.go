package state_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/mattn/go-sqlite3"

	"github.com/plugipay-sync/plugipay-sync/state"
)

func TestOpen(t *testing.T) {
	ctx := context.Background()

	t.Run("ModesAndMigrations", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "nested", "state")
		path := filepath.Join(dir, "state.db")
		db := MustOpenDBAt(t, path)
		if got := db.Path(); got != path {
			t.Errorf("Path() = %q, want %q", got, path)
		}
		for p, want := range map[string]os.FileMode{dir: 0o700, path: 0o600} {
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().Perm(); got != want {
				t.Errorf("mode of %s = %o, want %o", p, got, want)
			}
		}
		MustCloseDB(t, db)

		// Reopening applies nothing twice.
		db = MustOpenDBAt(t, path)
		MustCloseDB(t, db)
		if got := migrationNames(t, path); strings.Join(got, ",") != "001_initial.sql,002_seen_in_run.sql,003_source_watermarks.sql,004_run_counts_destination.sql,005_change_version.sql,006_ledger.sql" {
			t.Errorf("migrations = %v, want [001_initial.sql 002_seen_in_run.sql 003_source_watermarks.sql 004_run_counts_destination.sql 005_change_version.sql 006_ledger.sql]", got)
		}
		if got, want := state.SchemaVersion(), 6; got != want {
			t.Errorf("SchemaVersion() = %d, want %d", got, want)
		}
	})

	t.Run("WALFiles", func(t *testing.T) {
		db := MustOpenDB(t)
		if err := db.PutMapping(ctx, mapping("u1", "cus_1", "h1")); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(db.Path() + "-wal")
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != 0o600 {
			t.Errorf("mode of -wal = %o, want 600", got)
		}
	})

	t.Run("SpecialCharactersInPath", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "a?b#c%20d", "state.db")
		db := MustOpenDBAt(t, path)
		MustCloseDB(t, db)
		if _, err := os.Stat(path); err != nil {
			t.Fatalf("database not at the given path: %v", err)
		}
	})

	t.Run("ErrNewerSchema", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "state.db")
		MustCloseDB(t, MustOpenDBAt(t, path))
		raw := rawDB(t, path)
		if _, err := raw.Exec(`INSERT INTO migrations (name, applied_at) VALUES ('007_future.sql', 0)`); err != nil {
			t.Fatal(err)
		}
		raw.Close()

		_, err := state.Open(ctx, path)
		want := fmt.Sprintf("state: open %s: state DB schema version 7 is newer than this binary supports (6); upgrade plugipay-sync", path)
		if err == nil || err.Error() != want {
			t.Fatalf("Open() error = %v, want %q", err, want)
		}
	})

	t.Run("ErrNotADatabase", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "state.db")
		if err := os.WriteFile(path, []byte(strings.Repeat("this is not a sqlite file\n", 200)), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := state.Open(ctx, path)
		if err == nil {
			t.Fatal("Open() succeeded on a text file")
		}
		want := "state: open " + path + ": not a valid state database (corrupted, or not a SQLite file)"
		if !strings.HasPrefix(err.Error(), want) {
			t.Fatalf("Open() error = %q, want prefix %q", err, want)
		}
	})

	t.Run("ErrEmptyPath", func(t *testing.T) {
		if _, err := state.Open(ctx, ""); err == nil {
			t.Fatal("Open(\"\") succeeded")
		}
	})
}

func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func migrationNames(t *testing.T, path string) []string {
	t.Helper()
	db := rawDB(t, path)
	defer db.Close()
	rows, err := db.Query(`SELECT name FROM migrations ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	return names
}
