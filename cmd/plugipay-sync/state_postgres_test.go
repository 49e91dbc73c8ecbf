package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/plugipay-sync/plugipay-sync/plugipay/emulator"
	"github.com/plugipay-sync/plugipay-sync/state"
)

// testStateDSN is the PostgreSQL the state tests use: the one on this
// machine unless PLUGIPAY_TEST_POSTGRES_DSN names another.
func testStateDSN() string {
	if dsn := os.Getenv("PLUGIPAY_TEST_POSTGRES_DSN"); dsn != "" {
		return dsn
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

// newStateSchema names a schema for one test and drops it at cleanup.
func newStateSchema(t *testing.T) string {
	t.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	schema := "e2e_state_" + hex.EncodeToString(b)
	t.Cleanup(func() {
		db, err := sql.Open("pgx", testStateDSN())
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer db.Close()
		if _, err := db.Exec(`DROP SCHEMA IF EXISTS "` + schema + `" CASCADE`); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return schema
}

// usePostgresState points the e2e config's state section at schema.
func (e *e2e) usePostgresState(schema string) {
	e.t.Helper()
	b, err := os.ReadFile(e.config)
	if err != nil {
		e.t.Fatal(err)
	}
	old := "state:\n  path: " + e.state + "\n"
	if !strings.Contains(string(b), old) {
		e.t.Fatalf("config has no state section %q:\n%s", old, b)
	}
	cfg := strings.Replace(string(b), old, "state:\n  driver: postgres\n  dsn: "+testStateDSN()+"\n  schema: "+schema+"\n", 1)
	if err := os.WriteFile(e.config, []byte(cfg), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// TestOnce_PostgresState runs --once with its state in PostgreSQL: the
// first run creates the users, the second writes nothing (the mappings
// came back from the schema), no SQLite file appears, and a process
// holding the schema's writer lock makes the run exit ExitLocked naming
// it; status reads the schema.
func TestOnce_PostgresState(t *testing.T) {
	e := newE2E(t, "../../crm/testdata/sample_users.csv", emulator.Options{})
	schema := newStateSchema(t)
	e.usePostgresState(schema)

	code, out := e.once()
	if code != ExitPartial {
		t.Fatalf("first run exit %d, want %d (5 bad rows):\n%s", code, ExitPartial, out)
	}
	wantSummary(t, out, "read 1200  created 1195  updated 0  unchanged 0  recovered 0  rejected 5  failed 0")
	if n := e.emu.CustomerCount(); n != 1195 {
		t.Fatalf("emulator holds %d customers, want 1195", n)
	}

	writes := e.writes()
	_, out = e.once()
	wantSummary(t, out, "created 0  updated 0  unchanged 1195  recovered 0  rejected 5  failed 0")
	if d := e.writes() - writes; d != 0 {
		t.Fatalf("second run made %d writes, want 0", d)
	}
	e.assertNoDuplicates()
	if _, err := os.Stat(e.state); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a SQLite state file appeared at %s (%v)", e.state, err)
	}

	ctx := context.Background()
	db, err := state.OpenPostgres(ctx, testStateDSN(), schema)
	if err != nil {
		t.Fatal(err)
	}
	n, err := db.MappingCount(ctx)
	db.Close()
	if err != nil || n != 1195 {
		t.Fatalf("schema %s holds %d mappings (%v), want 1195", schema, n, err)
	}

	code, out = e.command("status")
	if code != ExitOK || !strings.Contains(out, "1195") || !strings.Contains(out, `postgres schema "`+schema+`"`) {
		t.Fatalf("status on the schema: exit %d, want %d showing the schema and its 1195 mappings:\n%s", code, ExitOK, out)
	}

	l, err := state.AcquirePostgresLock(ctx, testStateDSN(), schema, 0, "plugipay-sync daemon (test holder)")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	code, out = e.once()
	if code != ExitLocked || !strings.Contains(out, "plugipay-sync daemon (test holder)") || !strings.Contains(out, "state.schema "+schema) {
		t.Fatalf("run with the lock held: exit %d, want %d naming the holder and the schema:\n%s", code, ExitLocked, out)
	}
}
