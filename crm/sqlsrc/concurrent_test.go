package sqlsrc

import (
	"context"
	"database/sql"
	"fmt"
	"iter"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/plugipay-sync/plugipay-sync/crm"
	plugipaydest "github.com/plugipay-sync/plugipay-sync/destination/plugipay"
	"github.com/plugipay-sync/plugipay-sync/plugipay"
	"github.com/plugipay-sync/plugipay-sync/plugipay/emulator"
	"github.com/plugipay-sync/plugipay-sync/state"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

// syncHarness runs the real reconciler over a SQL source into the
// Plugipay emulator, with a state DB in a temp dir.
type syncHarness struct {
	t     *testing.T
	emu   *emulator.Server
	store *state.DB
	dst   sync.Destination
}

func newSyncHarness(t *testing.T) *syncHarness {
	t.Helper()
	emu := emulator.New(emulator.Options{Keys: map[string]string{"key_test": "sk_test"}})
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	client, err := plugipay.New(plugipay.Options{BaseURL: srv.URL, KeyID: "key_test", Secret: "sk_test", ReadRate: -1, WriteRate: -1})
	if err != nil {
		t.Fatal(err)
	}
	store, err := state.Open(context.Background(), filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return &syncHarness{t: t, emu: emu, store: store, dst: plugipaydest.FromClient(client)}
}

// run syncs src once with the archive policy, so a row that looked gone
// from a full scan would be archived.
func (h *syncHarness) run(src sync.Source) sync.RunCounts {
	h.t.Helper()
	r := sync.New(src, h.dst, h.store, sync.Options{Concurrency: 4, BatchSize: 50,
		Deletion: sync.DeletionArchive, MaxArchiveRatio: 1})
	rec, err := r.Run(context.Background())
	if err != nil {
		h.t.Fatalf("run: %v", err)
	}
	return rec.Counts
}

// plan returns the plan metadata of the customer of id.
func (h *syncHarness) plan(id int) string {
	c, ok := h.emu.CustomerByExternalID(fmt.Sprint(id))
	if !ok {
		h.t.Fatalf("no customer %d", id)
	}
	return c.Metadata["plan"]
}

// hooked is a Source that calls during(n) after each of the first
// records it yields, n counting from 1: the writes a CRM makes while a
// run is paging.
type hooked struct {
	*Source
	during func(n int)
}

func (h *hooked) Records(ctx context.Context) iter.Seq2[sync.Record, error] {
	return func(yield func(sync.Record, error) bool) {
		n := 0
		for rec, err := range h.Source.Records(ctx) {
			n++
			if !yield(rec, err) {
				return
			}
			if h.during != nil {
				h.during(n)
			}
		}
	}
}

// sqlBackends are the servers with concurrent transactions; SQLite is
// tested in WAL mode where its snapshot matters.
func sqlBackends(t *testing.T) []backend {
	var out []backend
	for _, b := range backends(t) {
		if b.driver != SQLite {
			out = append(out, b)
		}
	}
	return out
}

// exec runs q on db with %s replaced by name.
func exec(t *testing.T, db *sql.DB, q, name string, args ...any) {
	t.Helper()
	if _, err := db.Exec(strings.ReplaceAll(q, "%s", name), args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// param is the i-th placeholder (from 1) of b.
func param(b backend, i int) string {
	if b.driver == Postgres {
		return fmt.Sprintf("$%d", i)
	}
	return "?"
}

// TestSync_UpdatesDuringRun updates rows a run has already read and rows
// it has not read yet while it pages, first during a full scan and then
// during an incremental read. Issue 15: the rows read twice were rejected
// as duplicate externalIds and stayed frozen. Now each run reads every row
// once, rejects nothing, archives nothing, and the next run brings the
// changes.
func TestSync_UpdatesDuringRun(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name(), func(t *testing.T) {
			b.need(t)
			db, name := table(t, b)
			if b.driver == SQLite {
				exec(t, db, "PRAGMA journal_mode=wal", name)
			}
			base := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Second)
			fill(t, db, b, name, 3000, base)
			exec(t, db, "UPDATE %s SET plan = 'pro'", name)
			wm := &crm.MemoryWatermarks{}
			inner, err := New(Options{Driver: b.driver, DSN: b.dsn, Table: name, PageSize: 100,
				Incremental: true, Overlap: time.Minute, FullScanEvery: 1000, Watermarks: wm,
				Columns: crm.ColumnMap{ExternalID: "id", Email: "email", Metadata: map[string]string{"plan": "plan"}}})
			if err != nil {
				t.Fatal(err)
			}
			src := &hooked{Source: inner}
			h := newSyncHarness(t)
			change := func(plan string, ids ...int) {
				for _, id := range ids {
					exec(t, db, "UPDATE %s SET plan = "+param(b, 1)+", updated_at = "+param(b, 2)+" WHERE id = "+param(b, 3), name,
						plan, ts(b, time.Now()), id)
				}
			}

			// during makes the next run change ids to plan after its at-th
			// record; settle runs the run after it, which must bring exactly
			// those changes and reject nothing.
			during := func(at int, plan string, ids ...int) {
				src.during = func(n int) {
					if n == at {
						change(plan, ids...)
					}
				}
			}
			settle := func(run, plan string, ids ...int) {
				t.Helper()
				src.during = nil
				if got := h.run(src); got.Updated != int64(len(ids)) || got.Rejected != 0 {
					t.Fatalf("%s = %+v; want the %d changes, none rejected", run, got, len(ids))
				}
				for _, id := range ids {
					if p := h.plan(id); p != plan {
						t.Errorf("after %s, customer %d plan = %q, want %s", run, id, p, plan)
					}
				}
			}

			// Run 1, a full scan: halfway, rows 10 and 100 (read) and 2900 and
			// 2950 (not read yet) change. Run 2 brings them.
			during(1500, "c1", 10, 100, 2900, 2950)
			if got := h.run(src); got.Read != 3000 || got.Created != 3000 || got.Rejected != 0 || got.Archived != 0 {
				t.Fatalf("run 1 (full, rows changing) = %+v; want 3000 read and created, none rejected or archived", got)
			}
			settle("run 2", "c1", 10, 100, 2900, 2950)

			// Run 3, incremental over 1000 touched rows (read in id order),
			// while rows already read and rows not read yet change again.
			exec(t, db, "UPDATE %s SET plan = 'team', updated_at = "+param(b, 1)+" WHERE id > 2000", name, ts(b, time.Now()))
			during(500, "c2", 2010, 2100, 2900, 2990)
			if got := h.run(src); got.Updated != 1000 || got.Rejected != 0 {
				t.Fatalf("run 3 (incremental, rows changing) = %+v; want 1000 updated, none rejected", got)
			}
			settle("run 4", "c2", 2010, 2100, 2900, 2990)
		})
	}
}

// TestSync_LongTransaction holds a transaction that updated a row open
// past the overlap while a later write commits and a run reads it. Issue
// 15: the watermark moved past the long transaction's updated_at and its
// row was missed until the next full scan. Now the first run after it
// commits reads it.
func TestSync_LongTransaction(t *testing.T) {
	for _, b := range sqlBackends(t) {
		t.Run(b.name(), func(t *testing.T) {
			b.need(t)
			db, name := table(t, b)
			base := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
			fill(t, db, b, name, 10, base)
			exec(t, db, "UPDATE %s SET plan = 'pro'", name)
			wm := &crm.MemoryWatermarks{}
			src, err := New(Options{Driver: b.driver, DSN: b.dsn, Table: name, PageSize: 4,
				Incremental: true, Overlap: 500 * time.Millisecond, FullScanEvery: 1000, Watermarks: wm,
				Columns: crm.ColumnMap{ExternalID: "id", Email: "email", Metadata: map[string]string{"plan": "plan"}}})
			if err != nil {
				t.Fatal(err)
			}
			h := newSyncHarness(t)
			if got := h.run(src); got.Created != 10 {
				t.Fatalf("run 1 = %+v", got)
			}

			tx, err := db.Begin()
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			upd := "UPDATE " + name + " SET plan = " + param(b, 1) + ", updated_at = " + param(b, 2) + " WHERE id = " + param(b, 3)
			if _, err := tx.Exec(upd, "late", ts(b, time.Now()), 5); err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Second)
			exec(t, db, upd, name, "early", ts(b, time.Now()), 6)
			time.Sleep(time.Second) // past the overlap
			if got := h.run(src); got.Updated != 1 || h.plan(6) != "early" {
				t.Fatalf("run 2 (transaction open) = %+v, plan 6 %q; want row 6 updated", got, h.plan(6))
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			if got := h.run(src); got.Updated != 1 || h.plan(5) != "late" {
				t.Fatalf("run 3 (after the commit) = %+v, plan 5 %q; want the long transaction's row 5 updated", got, h.plan(5))
			}
		})
	}
}

// TestSync_RepeatedKeys reads a query: whose JOIN gives user 7 two rows
// with one (updated_at, id), the first ending a page, incrementally and in
// a full scan. Issue 15: the
// second was skipped and user 7 synced with one email by sort order. Both
// rows are now read, with distinct refs, and the reconciler rejects them
// as a duplicated externalId.
func TestSync_RepeatedKeys(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name(), func(t *testing.T) {
			b.need(t)
			db, name := table(t, b)
			base := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
			for i := 1; i <= 10; i++ {
				insert(t, db, b, name, i, "", "U", fmt.Sprint(i), base.Add(time.Duration(i)*time.Second))
			}
			emails := name + "_emails"
			exec(t, db, "CREATE TABLE %s_emails (user_id INTEGER, email VARCHAR(100))", name)
			t.Cleanup(func() { exec(t, db, "DROP TABLE %s_emails", name) })
			for i := 1; i <= 10; i++ {
				exec(t, db, "INSERT INTO "+emails+" VALUES ("+param(b, 1)+", "+param(b, 2)+")", name, i, fmt.Sprintf("u%d@example.com", i))
			}
			exec(t, db, "INSERT INTO "+emails+" VALUES (7, 'second7@example.com')", name)
			query := "SELECT u.id, u.updated_at, e.email FROM " + name + " u JOIN " + emails + " e ON e.user_id = u.id"
			refs := func(src *Source) []string {
				var out []string
				for rec, err := range src.Records(context.Background()) {
					if err != nil {
						t.Fatal(err)
					}
					out = append(out, rec.Ref)
				}
				return out
			}
			// An incremental read (a watermark an hour before the rows)
			// pages on (updated_at, id).
			wm := &crm.MemoryWatermarks{}
			inc, err := New(Options{Driver: b.driver, DSN: b.dsn, PageSize: 7, Query: query, Incremental: true,
				Watermarks: wm, FullScanEvery: 1000, Columns: crm.ColumnMap{ExternalID: "id", Email: "email"}})
			if err != nil {
				t.Fatal(err)
			}
			if err := wm.SetWatermark(context.Background(), inc.WatermarkKey(), crm.Watermark{At: base.Add(-time.Hour), LastFullAt: base}); err != nil {
				t.Fatal(err)
			}
			if got := refs(inc); len(got) != 11 || inc.LastReadComplete() || !slices.Contains(got, "id=7") ||
				!slices.Contains(got, "id=7 (row 2 with this updated_at, id)") {
				t.Fatalf("incremental read refs = %q; want 11 rows, both of id 7", got)
			}
			// A full scan pages on id.
			src, err := New(Options{Driver: b.driver, DSN: b.dsn, PageSize: 7, Query: query,
				Columns: crm.ColumnMap{ExternalID: "id", Email: "email"}})
			if err != nil {
				t.Fatal(err)
			}
			if got := refs(src); len(got) != 11 || !slices.Contains(got, "id=7") || !slices.Contains(got, "id=7 (row 2 with this id)") {
				t.Fatalf("full scan refs = %q; want 11 rows, both of id 7", got)
			}
			// Each of user 7's rows once (MariaDB returned them in another
			// order on the next page, and one was read twice).
			var sevens []string
			for rec, err := range src.Records(context.Background()) {
				if err != nil {
					t.Fatal(err)
				}
				if rec.ExternalID == "7" {
					sevens = append(sevens, rec.Email)
				}
			}
			if slices.Sort(sevens); !slices.Equal(sevens, []string{"second7@example.com", "u7@example.com"}) {
				t.Fatalf("full scan read user 7's rows as %q", sevens)
			}
			h := newSyncHarness(t)
			if got := h.run(src); got.Read != 11 || got.Rejected != 2 || got.Created != 9 {
				t.Fatalf("run = %+v; want 11 read, both rows of id 7 rejected, 9 created", got)
			}
			ids, err := h.store.FailureIDsByCode(context.Background(), sync.CodeDuplicateExternalID)
			if err != nil || !slices.Equal(ids, []string{"7"}) {
				t.Fatalf("duplicate marks = %v, %v; want [7]", ids, err)
			}
		})
	}
}

// TestSource_MySQLTimeZoneChange changes the server's time_zone between
// runs over a TIMESTAMP column that the application writes with
// CURRENT_TIMESTAMP. Issue 15: the source's session followed the server
// zone, so after +07:00 became +00:00 the watermark was 7 hours ahead and
// an updated row was not read for 7 hours. The session is now pinned to
// UTC and the row is read by the next run.
func TestSource_MySQLTimeZoneChange(t *testing.T) {
	for _, b := range sqlBackends(t) {
		if b.driver != MySQL || b.timestamp != "TIMESTAMP(6)" {
			continue
		}
		t.Run(b.name(), func(t *testing.T) {
			b.need(t)
			db, name := table(t, b)
			var was string
			if err := db.QueryRow("SELECT @@GLOBAL.time_zone").Scan(&was); err != nil {
				t.Fatal(err)
			}
			setZone := func(z string) {
				t.Helper()
				if _, err := db.Exec("SET GLOBAL time_zone = '" + z + "'"); err != nil {
					t.Fatal(err)
				}
			}
			t.Cleanup(func() { setZone(was) })
			// app writes as an application does: a new session, in the
			// server's zone, with CURRENT_TIMESTAMP.
			app := func(q string) {
				t.Helper()
				conn, err := sql.Open("mysql", b.dsn)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				exec(t, conn, q, name)
			}
			setZone("+07:00")
			for i := 1; i <= 5; i++ {
				app(fmt.Sprintf("INSERT INTO %%s (id, email, plan, updated_at) VALUES (%d, 'u%d@example.com', 'pro', CURRENT_TIMESTAMP(6))", i, i))
			}
			src, err := New(Options{Driver: b.driver, DSN: b.dsn, Table: name, PageSize: 2,
				Incremental: true, Overlap: time.Minute, FullScanEvery: 1000, Watermarks: &crm.MemoryWatermarks{},
				Columns: crm.ColumnMap{ExternalID: "id", Metadata: map[string]string{"plan": "plan"}}})
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := readAll(t, src); len(got) != 5 {
				t.Fatalf("run 1 = %v; want 5 rows", got)
			}
			// Both ways: the zone moving back and moving ahead.
			for i, zone := range []string{"+00:00", "+07:00", "-05:00"} {
				setZone(zone)
				app(fmt.Sprintf("UPDATE %%s SET plan = 'c%d', updated_at = CURRENT_TIMESTAMP(6) WHERE id = %d", i, i+2))
				var plans []string
				for rec, err := range src.Records(context.Background()) {
					if err != nil {
						t.Fatal(err)
					}
					plans = append(plans, rec.ExternalID+":"+rec.Metadata["plan"])
				}
				if err := src.Commit(context.Background()); err != nil {
					t.Fatal(err)
				}
				if want := fmt.Sprintf("%d:c%d", i+2, i); !slices.Contains(plans, want) {
					t.Fatalf("run after the zone became %s = %v; want %s", zone, plans, want)
				}
			}
		})
	}
}
