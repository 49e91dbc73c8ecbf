package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plugipay-sync/plugipay-sync/plugipay/emulator"
)

// testPostgres returns the DSN of the PostgreSQL on this machine, or skips
// (fails with PLUGIPAY_SYNC_REQUIRE_DB=1) when none answers.
func testPostgres(t *testing.T) string {
	t.Helper()
	dsns := []string{os.Getenv("PLUGIPAY_SYNC_TEST_POSTGRES_DSN")}
	if dsns[0] == "" {
		dsns = []string{"postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "postgres://root@127.0.0.1:5432/test?sslmode=disable"}
	}
	var errs []string
	for _, dsn := range dsns {
		db, err := sql.Open("pgx", dsn)
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			err = db.PingContext(ctx)
			cancel()
			db.Close()
		}
		if err == nil {
			return dsn
		}
		errs = append(errs, err.Error())
	}
	if os.Getenv("PLUGIPAY_SYNC_REQUIRE_DB") == "1" {
		t.Fatalf("PostgreSQL is not reachable: %s", strings.Join(errs, "; "))
	}
	t.Skipf("PostgreSQL is not reachable on 127.0.0.1:5432 (%s)", strings.Join(errs, "; "))
	return ""
}

// TestRealtime_PostgresNotify is issue 17's acceptance against the real
// PostgreSQL: with the schedule an hour away, an UPDATE of a user's email
// is PATCHed in the emulator without a run; the listener's connection
// killed with pg_terminate_backend loses no change made while it was down.
func TestRealtime_PostgresNotify(t *testing.T) {
	dsn := testPostgres(t)
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var b [6]byte
	_, _ = rand.Read(b[:])
	suffix := hex.EncodeToString(b[:])
	table, channel := "plugipay_rt_users_"+suffix, "plugipay_rt_"+suffix
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.Exec(strings.ReplaceAll(q, "{t}", table), args...); err != nil {
			t.Fatal(err)
		}
	}
	exec(`CREATE TABLE {t} (id TEXT PRIMARY KEY, email TEXT, name TEXT, updated_at TIMESTAMPTZ NOT NULL DEFAULT now())`)
	t.Cleanup(func() { db.Exec("DROP TABLE " + table) })
	for i := 1; i <= 5; i++ {
		exec(`INSERT INTO {t} (id, email, name) VALUES ($1, $2, $3)`, fmt.Sprintf("p%d", i), fmt.Sprintf("user%d@example.com", i), fmt.Sprintf("User %d", i))
	}

	e := newE2E(t, filepath.Join(t.TempDir(), "unused.csv"), emulator.Options{})
	e.writeSourceConfig(`  type: sql
  sql:
    driver: postgres
    dsn: "`+dsn+`"
    table: `+table+`
    columns:
      external_id: id
      email: email
      name: name`, "")
	appendFile(t, e.config, fmt.Sprintf("realtime:\n  postgres:\n    enabled: true\n    channel: %s\n", channel))

	// notify-sql prints the trigger, --install installs it.
	code, out, errOut := commandInProcess(t, e.config, "notify-sql")
	if code != ExitOK || !strings.Contains(out, "CREATE TRIGGER") || !strings.Contains(out, "'"+channel+"'") {
		t.Fatalf("notify-sql: exit %d\n%s\n%s", code, out, errOut)
	}
	if code, out, errOut := commandInProcess(t, e.config, "notify-sql", "--install"); code != ExitOK {
		t.Fatalf("notify-sql --install: exit %d\n%s\n%s", code, out, errOut)
	}

	metrics, stop := startDaemon(t, e)
	defer stop()
	eventually(t, "the first run", func() bool {
		return metricValue(t, metrics, `plugipay_sync_runs_total{outcome="success"}`) == 1
	})
	eventually(t, "the listener", func() bool { return metricValue(t, metrics, "plugipay_sync_listener_connected") == 1 })
	email := func(id string) string {
		c, _ := e.emu.CustomerByExternalID(id)
		return c.Email
	}
	if email("p2") != "user2@example.com" {
		t.Fatalf("p2 not synced by the first run: %q", email("p2"))
	}

	patches := e.emu.RequestCount(http.MethodPatch, "/api/v1/customers/{id}")
	start := time.Now()
	exec(`UPDATE {t} SET email = 'moved2@example.com', updated_at = now() WHERE id = 'p2'`)
	eventually(t, "the UPDATE reaching the emulator", func() bool { return email("p2") == "moved2@example.com" })
	t.Logf("UPDATE to PATCH: %s", time.Since(start))
	exec(`INSERT INTO {t} (id, email, name) VALUES ('p9', 'new9@example.com', 'New Nine')`)
	eventually(t, "the INSERT reaching the emulator", func() bool { return email("p9") == "new9@example.com" })
	if d := e.emu.RequestCount(http.MethodPatch, "/api/v1/customers/{id}") - patches; d != 1 {
		t.Errorf("%d PATCHes for one UPDATE", d)
	}
	if runs := metricValue(t, metrics, `plugipay_sync_runs_total{outcome="success"}`); runs != 1 {
		t.Errorf("%v runs: the change must not wait for the schedule", runs)
	}

	// Kill the listener; change users while it is down.
	var killed int
	if err := db.QueryRow(`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = 'plugipay-sync-listener' AND (query LIKE '%' || $1 || '%' OR query LIKE '%clock_timestamp%')`, table).Scan(&killed); err != nil {
		t.Fatal(err)
	}
	if killed == 0 {
		t.Fatal("no listener connection found to kill")
	}
	exec(`UPDATE {t} SET email = 'down3@example.com', updated_at = now() WHERE id = 'p3'`)
	exec(`UPDATE {t} SET name = 'Renamed While Down', updated_at = now() WHERE id = 'p4'`)
	eventually(t, "the changes made while the listener was down", func() bool {
		c, _ := e.emu.CustomerByExternalID("p4")
		return email("p3") == "down3@example.com" && c.Name == "Renamed While Down"
	})
	if v := metricValue(t, metrics, "plugipay_sync_listener_disconnects_total"); v < 1 {
		t.Errorf("listener disconnects = %v", v)
	}
	if runs := metricValue(t, metrics, `plugipay_sync_runs_total{outcome="success"}`); runs != 1 {
		t.Errorf("%v runs: the catch-up, not a run, must sync what changed while down", runs)
	}
	if v := metricValue(t, metrics, `plugipay_sync_event_latency_seconds_count{source="postgres"}`); v < 4 {
		t.Errorf("latency observations = %v, want one per write (4)", v)
	}
}
