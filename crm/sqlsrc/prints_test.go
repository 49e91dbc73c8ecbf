package sqlsrc

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/plugipay-sync/plugipay-sync/crm"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

// describe is a record or a record error as a comparable string, with
// its key and ref apart: rows of one key (a JOIN) may come in another
// order from another query, and their refs number them in that order.
func describe(rec sync.Record, err error) (key, ref, desc string) {
	var re *sync.RecordError
	if errors.As(err, &re) {
		ref = re.Ref
	} else {
		ref = rec.Ref
	}
	key, _, _ = strings.Cut(strings.TrimPrefix(ref, "id="), " (row ")
	if re != nil {
		return key, ref, fmt.Sprintf("error %q %s %x", re.ExternalID, re.Reason, re.Print)
	}
	rec.Ref = ""
	return key, ref, fmt.Sprintf("%+v", rec)
}

// checkPrints holds the print pass to Records, as crm's checkPrints does
// for the CSV source: Prints yields one row for each row Records yields,
// with the same key and print, and RecordsAt decodes each as Records did.
// It returns the number of rows.
func checkPrints(t *testing.T, src *Source) int {
	t.Helper()
	ctx := context.Background()
	type rows struct {
		refs, descs []string
		prints      []sync.Print
	}
	collect := func(m map[string]*rows, rec sync.Record, err error) {
		var re *sync.RecordError
		if err != nil && !errors.As(err, &re) {
			t.Fatalf("read: %v", err)
		}
		key, ref, desc := describe(rec, err)
		p := rec.Print
		if re != nil {
			p = re.Print
		}
		if p == (sync.Print{}) {
			t.Fatalf("%s has no print", ref)
		}
		if m[key] == nil {
			m[key] = &rows{}
		}
		r := m[key]
		r.refs, r.descs, r.prints = append(r.refs, ref), append(r.descs, desc), append(r.prints, p)
	}
	byPrint := func(a, b sync.Print) int { return slices.Compare(a[:], b[:]) }
	same := func(a, b *rows) bool {
		if a == nil || b == nil {
			return a == b
		}
		for _, r := range []*rows{a, b} {
			slices.Sort(r.refs)
			slices.Sort(r.descs)
			slices.SortFunc(r.prints, byPrint)
		}
		return slices.Equal(a.refs, b.refs) && slices.Equal(a.descs, b.descs) && slices.Equal(a.prints, b.prints)
	}
	want := map[string]*rows{}
	wantIDs := map[string][]uint64{} // key: IDHash of each valid record's external id
	n := 0
	for rec, err := range src.Records(ctx) {
		collect(want, rec, err)
		if err == nil {
			key, _, _ := describe(rec, err)
			wantIDs[key] = append(wantIDs[key], sync.IDHash(rec.ExternalID))
		}
		n++
	}
	var all []sync.RowPrint
	printed := map[string]*rows{}
	printedIDs := map[string][]uint64{}
	for rp, err := range src.Prints(ctx) {
		if err != nil {
			t.Fatalf("Prints: %v", err)
		}
		if len(all) > 0 && rp.Pos <= all[len(all)-1].Pos {
			t.Fatalf("Pos not ascending: %d after %d", rp.Pos, all[len(all)-1].Pos)
		}
		all = append(all, rp)
		if printed[rp.Key] == nil {
			printed[rp.Key] = &rows{}
		}
		printed[rp.Key].prints = append(printed[rp.Key].prints, rp.Print)
		printedIDs[rp.Key] = append(printedIDs[rp.Key], rp.ID)
	}
	for key, ids := range wantIDs {
		for _, id := range ids {
			if !slices.Contains(printedIDs[key], id) {
				t.Fatalf("key %q: no printed row carries the id hash of its record", key)
			}
		}
	}
	if len(all) != n {
		t.Fatalf("Prints yields %d rows, Records %d", len(all), n)
	}
	for key, w := range want {
		if !same(&rows{prints: w.prints}, printed[key]) {
			t.Fatalf("key %q: Prints %x, Records %x", key, printed[key].prints, w.prints)
		}
	}
	got := map[string]*rows{}
	for rec, err := range src.RecordsAt(ctx, all) {
		collect(got, rec, err)
	}
	if !maps.EqualFunc(got, want, same) {
		for key, w := range want {
			if g := got[key]; !same(g, w) {
				t.Errorf("key %s: RecordsAt %+v, Records %+v", key, g, w)
			}
		}
		t.Fatalf("RecordsAt decodes %d keys, Records %d", len(got), len(want))
	}
	return n
}

// fixedNow is the clock of the print tests' sources.
func fixedNow() time.Time { return time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC) }

func TestPrints_MatchRecords(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name(), func(t *testing.T) {
			b.need(t)
			db, name := table(t, b)
			base := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
			for i := 1; i <= 7; i++ {
				insert(t, db, b, name, i, fmt.Sprintf("u%d@Example.com", i), " Ada ", fmt.Sprintf("N%d", i), base.Add(time.Duration(i/3)*time.Minute))
			}
			insert(t, db, b, name, 8, "", "", "", base)
			exec(t, db, "UPDATE %s SET updated_at = NULL, plan = NULL WHERE id = 8", name)
			insert(t, db, b, name, 9, "not-an-email", "X", "Y", base)
			insert(t, db, b, name, 10, "u10@example.com", "Del", "Eted", base.Add(time.Hour))
			exec(t, db, "UPDATE %s SET deleted_at = updated_at WHERE id = 10", name)
			insert(t, db, b, name, 11, "u11@example.com", "Tab\tand", "  spaces ", base)
			wm := &crm.MemoryWatermarks{}
			src, err := New(Options{Driver: b.driver, DSN: b.dsn, Table: name, PageSize: 3, Normalize: crm.DefaultNormalize(),
				DeletedColumn: "deleted_at", Incremental: true, Watermarks: wm, FullScanEvery: 10, Now: fixedNow,
				Columns: crm.ColumnMap{ExternalID: "id", Email: "email", NameTemplate: "{first_name} {last_name}", Metadata: map[string]string{"plan": "plan"}}})
			if err != nil {
				t.Fatal(err)
			}
			if n := checkPrints(t, src); n != 11 {
				t.Fatalf("%d rows, want 11", n)
			}

			// The watermark after a print pass is the one after Records.
			ctx := context.Background()
			for range src.Records(ctx) {
			}
			if err := src.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			afterRecords, _, _ := wm.Watermark(ctx, src.WatermarkKey())
			if !src.LastReadComplete() || afterRecords.At.IsZero() {
				t.Fatalf("after Records: complete %v, watermark %+v", src.LastReadComplete(), afterRecords)
			}
			wm2 := &crm.MemoryWatermarks{}
			src.opts.Watermarks = wm2
			for _, err := range src.Prints(ctx) {
				if err != nil {
					t.Fatal(err)
				}
			}
			if !src.LastReadComplete() {
				t.Fatal("LastReadComplete = false after a print pass")
			}
			if err := src.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			afterPrints, _, _ := wm2.Watermark(ctx, src.WatermarkKey())
			if !afterPrints.At.Equal(afterRecords.At) || afterPrints.RunsSinceFull != afterRecords.RunsSinceFull ||
				!afterPrints.LastFullAt.Equal(afterRecords.LastFullAt) {
				t.Fatalf("watermark after the print pass %+v, after Records %+v", afterPrints, afterRecords)
			}

			// Now incremental: Prints asks for Records at once, and leaves
			// nothing prepared.
			for _, err := range src.Prints(ctx) {
				if !errors.Is(err, sync.ErrNoPrints) {
					t.Fatalf("incremental Prints: %v; want ErrNoPrints", err)
				}
				break
			}
			if src.LastReadComplete() {
				t.Fatal("LastReadComplete = true after an incremental Prints")
			}
		})
	}
}

// TestPrints_PostgresTypes maps columns of many PostgreSQL types, which
// the print pass reads as raw values and Records through database/sql:
// the prints and records must agree.
func TestPrints_PostgresTypes(t *testing.T) {
	for _, b := range backends(t) {
		if b.driver != Postgres || b.timestamp != "TIMESTAMPTZ" {
			continue
		}
		t.Run(b.name(), func(t *testing.T) {
			b.need(t)
			db, name := table(t, b)
			types := map[string]string{
				"c_int2": "smallint", "c_int4": "integer", "c_num": "numeric(10,2)", "c_bool": "boolean",
				"c_date": "date", "c_ts": "timestamp", "c_tstz": "timestamptz", "c_uuid": "uuid", "c_jsonb": "jsonb",
				"c_json": "json", "c_f4": "real", "c_f8": "double precision", "c_char": "char(6)", "c_arr": "text[]",
				"c_bytea": "bytea", "c_inet": "inet", "c_interval": "interval", "c_name": "name",
			}
			meta := map[string]string{}
			for col, typ := range types {
				exec(t, db, "ALTER TABLE %s ADD COLUMN "+col+" "+typ, name)
				meta[col] = col
			}
			exec(t, db, "ALTER TABLE %s ADD COLUMN gone boolean", name)
			exec(t, db, `INSERT INTO %s (id, email, updated_at, c_int2, c_int4, c_num, c_bool, c_date, c_ts, c_tstz, c_uuid,
				c_jsonb, c_json, c_f4, c_f8, c_char, c_arr, c_bytea, c_inet, c_interval, c_name, gone) VALUES
				(1, 'a@example.com', now(), -7, 2147483647, 12.5, true, '2026-02-03', '2026-02-03 04:05:06.789',
				 '2026-02-03 04:05:06.789+07', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '{"b": 1, "a": [1, 2]}', '{"b": 1,  "a": 2}',
				 1.25, 0.1, 'ab', '{x,"y z"}', '\x00ff', '10.0.0.1/8', '1 day 02:03:04', 'nm', false),
				(2, 'b@example.com', 'infinity', NULL, NULL, NULL, false, 'infinity', '-infinity', 'infinity', NULL,
				 'null', NULL, 'NaN', '-Infinity', NULL, '{}', NULL, NULL, NULL, NULL, true),
				(3, 'c@example.com', '2026-01-01', 0, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '', NULL, '', NULL, NULL, '', NULL)`, name)
			src, err := New(Options{Driver: b.driver, DSN: b.dsn, Table: name, DeletedColumn: "gone",
				Incremental: true, Watermarks: &crm.MemoryWatermarks{}, Now: fixedNow,
				Columns: crm.ColumnMap{ExternalID: "id", Email: "email", Metadata: meta}})
			if err != nil {
				t.Fatal(err)
			}
			if n := checkPrints(t, src); n != 3 {
				t.Fatalf("%d rows, want 3", n)
			}
			// The newest updated_at is a finite one (infinity is not a time
			// Records reads), as after Records.
			ctx := context.Background()
			for _, err := range src.Prints(ctx) {
				if err != nil {
					t.Fatal(err)
				}
			}
			if err := src.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			w, _, _ := src.opts.Watermarks.Watermark(ctx, src.WatermarkKey())
			var now time.Time
			if err := db.QueryRow("SELECT max(updated_at) FROM " + name + " WHERE updated_at < 'infinity'").Scan(&now); err != nil {
				t.Fatal(err)
			}
			if !w.At.Equal(now) {
				t.Fatalf("watermark %s, want %s", w.At, now)
			}
		})
	}
}

// TestPrints_RepeatedKeys: a query: whose JOIN gives user 7 two rows.
// The print pass prints both; RecordsAt reads them back with their refs.
func TestPrints_RepeatedKeys(t *testing.T) {
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
			src, err := New(Options{Driver: b.driver, DSN: b.dsn, PageSize: 7, Now: fixedNow,
				Query:   "SELECT u.id, u.updated_at, e.email FROM " + name + " u JOIN " + emails + " e ON e.user_id = u.id",
				Columns: crm.ColumnMap{ExternalID: "id", Email: "email"}})
			if err != nil {
				t.Fatal(err)
			}
			if n := checkPrints(t, src); n != 11 {
				t.Fatalf("%d rows, want 11", n)
			}
		})
	}
}

func TestKeyBatches(t *testing.T) {
	var rows []sync.RowPrint
	for i, k := range strings.Split("a b c a d e b f", " ") {
		rows = append(rows, sync.RowPrint{Pos: int64(i), Key: k})
	}
	var got []string
	for batch := range keyBatches(rows, 2) {
		var ks []string
		for _, rp := range batch {
			ks = append(ks, fmt.Sprintf("%s%d", rp.Key, rp.Pos))
		}
		got = append(got, strings.Join(ks, ","))
	}
	if want := "a0,a3,b1,b6|c2,d4|e5,f7"; strings.Join(got, "|") != want {
		t.Fatalf("batches %q, want %s", strings.Join(got, "|"), want)
	}
}

// probe is the SQL source with its print pass observed: which reads a run
// made, and a hook before RecordsAt reads rows again.
type probe struct {
	*Source
	records, printed, decoded int
	beforeAt                  func()
	afterPrint                func(n int)
}

func (p *probe) Records(ctx context.Context) iter.Seq2[sync.Record, error] {
	p.records++
	return p.Source.Records(ctx)
}

func (p *probe) Prints(ctx context.Context) iter.Seq2[sync.RowPrint, error] {
	return func(yield func(sync.RowPrint, error) bool) {
		for rp, err := range p.Source.Prints(ctx) {
			if err == nil {
				p.printed++
			}
			if !yield(rp, err) {
				return
			}
			if err == nil && p.afterPrint != nil {
				p.afterPrint(p.printed)
			}
		}
	}
}

func (p *probe) RecordsAt(ctx context.Context, rows []sync.RowPrint) iter.Seq2[sync.Record, error] {
	if p.beforeAt != nil {
		p.beforeAt()
		p.beforeAt = nil
	}
	p.decoded += len(rows)
	return p.Source.RecordsAt(ctx, rows)
}

func (p *probe) reset() { p.records, p.printed, p.decoded = 0, 0, 0 }

// recordsOnly is the SQL source without its print pass.
type recordsOnly struct{ s *Source }

func (r recordsOnly) Records(ctx context.Context) iter.Seq2[sync.Record, error] {
	return r.s.Records(ctx)
}
func (r recordsOnly) LastReadComplete() bool           { return r.s.LastReadComplete() }
func (r recordsOnly) Commit(ctx context.Context) error { return r.s.Commit(ctx) }

// runKeep syncs src once without the archive policy (which reads every
// row, so no print pass).
func (h *syncHarness) runKeep(src sync.Source) sync.RunCounts {
	h.t.Helper()
	r := sync.New(src, h.dst, h.store, sync.Options{Concurrency: 4, BatchSize: 50})
	rec, err := r.Run(context.Background())
	if err != nil {
		h.t.Fatalf("run: %v", err)
	}
	return rec.Counts
}

// customers describes every customer of h's emulator.
func (h *syncHarness) customers(ids int) []string {
	var out []string
	for id := 1; id <= ids; id++ {
		if c, ok := h.emu.CustomerByExternalID(fmt.Sprint(id)); ok {
			out = append(out, fmt.Sprintf("%d:%s:%s:%v", id, c.Email, c.Name, c.Metadata))
		}
	}
	return out
}

// TestSync_PrintPassDifferential runs the reconciler over one table twice
// over, with the print pass and with Records only, through the same
// changes: committed between runs, committed during the print pass (not
// seen until the next run), and committed between the print pass and the
// reading back of the changed rows (seen at the newer value; a row
// deleted then is absent, not an error). Every run must count the same
// and leave the same customers.
func TestSync_PrintPassDifferential(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name(), func(t *testing.T) {
			b.need(t)
			db, name := table(t, b)
			if b.driver == SQLite {
				exec(t, db, "PRAGMA journal_mode=wal", name)
			}
			base := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Second)
			const n = 600
			fill(t, db, b, name, n, base)
			exec(t, db, "UPDATE %s SET plan = 'pro', first_name = 'F', last_name = 'L'", name)
			opts := Options{Driver: b.driver, DSN: b.dsn, Table: name, PageSize: 100, DeletedColumn: "deleted_at",
				Normalize: crm.DefaultNormalize(),
				Columns:   crm.ColumnMap{ExternalID: "id", Email: "email", NameTemplate: "{first_name} {last_name}", Metadata: map[string]string{"plan": "plan"}}}
			inner, err := New(opts)
			if err != nil {
				t.Fatal(err)
			}
			plain, err := New(opts)
			if err != nil {
				t.Fatal(err)
			}
			src := &probe{Source: inner}
			hp, hr := newSyncHarness(t), newSyncHarness(t)
			set := func(q string, a ...any) {
				t.Helper()
				exec(t, db, q, name, a...)
			}
			now := func() any { return ts(b, time.Now()) }
			p := func(i int) string { return param(b, i) }
			// both runs the print-pass side, then the Records side, and
			// compares; wantPrint says whether the first used its print
			// pass.
			both := func(run string, wantPrint bool) sync.RunCounts {
				t.Helper()
				src.reset()
				gp := hp.runKeep(src)
				src.afterPrint, src.beforeAt = nil, nil
				gr := hr.runKeep(recordsOnly{plain})
				if gp != gr {
					t.Fatalf("%s: print pass %+v, Records %+v", run, gp, gr)
				}
				if used := src.records == 0 && src.printed > 0; used != wantPrint {
					t.Fatalf("%s: print pass used %v (Records %d, printed %d), want %v", run, used, src.records, src.printed, wantPrint)
				}
				if cp, cr := hp.customers(n+10), hr.customers(n+10); !slices.Equal(cp, cr) {
					t.Fatalf("%s: customers differ:\nprint pass %q\nRecords    %q", run, cp, cr)
				}
				return gp
			}

			// Run 1: no prints yet, Records reads and the prints are kept.
			if got := both("run 1", false); got.Created != n {
				t.Fatalf("run 1 = %+v", got)
			}
			// Run 2: the no-op, by print.
			if got := both("run 2", true); got.Unchanged != n || src.decoded != 0 {
				t.Fatalf("run 2 = %+v, %d decoded; want all unchanged, none decoded", got, src.decoded)
			}
			// Between runs: an update, an invalid email, a soft delete, a hard
			// delete, a new row, and a duplicate externalId-free change
			// (whitespace that normalises away is still a changed row).
			set("UPDATE %s SET plan = 'team', updated_at = "+p(1)+" WHERE id IN (3, 30, 300)", now())
			set("UPDATE %s SET email = 'broken', updated_at = "+p(1)+" WHERE id = 4", now())
			set("UPDATE %s SET deleted_at = "+p(1)+", updated_at = "+p(2)+" WHERE id = 5", now(), now())
			set("DELETE FROM %s WHERE id = 6")
			set("INSERT INTO %s (id, email, first_name, last_name, plan, updated_at) VALUES (601, 'new@example.com', 'N', 'W', 'pro', "+p(1)+")", now())
			set("UPDATE %s SET first_name = ' F ', updated_at = "+p(1)+" WHERE id = 7", now())
			got := both("run 3", true)
			if got.Updated != 3 || got.Created != 1 || got.Rejected != 1 || src.decoded != 7 {
				t.Fatalf("run 3 = %+v, %d decoded; want 3 updated, 1 created, 1 rejected, 7 rows decoded", got, src.decoded)
			}
			// The rejected row stays a known reject, counted by its print;
			// the soft-deleted row is printed but never confirmed, so it is
			// the one row decoded.
			if got := both("run 4", true); got.Rejected != 1 || got.Unchanged != n-2 || src.decoded != 1 {
				t.Fatalf("run 4 = %+v, %d decoded; want 1 rejected, %d unchanged, 1 decoded", got, src.decoded, n-2)
			}

			// During the print pass, rows already printed and rows not
			// printed yet change: the snapshot does not see them; the next
			// run does.
			src.reset()
			src.afterPrint = func(k int) {
				if k == n/2 {
					set("UPDATE %s SET plan = 'c1', updated_at = "+p(1)+" WHERE id IN (10, 100, 500, 590)", now())
				}
			}
			if got := hp.runKeep(src); got.Updated != 0 || got.Rejected != 1 || src.printed != n {
				t.Fatalf("run 5 = %+v; want nothing updated (changes after the snapshot)", got)
			}
			src.afterPrint = nil
			// The Records side skips run 5, and both bring the changes now.
			if got := both("run 6", true); got.Updated != 4 || hp.plan(590) != "c1" {
				t.Fatalf("run 6 = %+v, plan %q; want the 4 changes", got, hp.plan(590))
			}

			// Between the print pass and the reading back: row 20 (changed
			// before the run) changes again, row 21 (changed before the run)
			// is deleted. Row 20 is read at its newer value, row 21 is
			// absent.
			set("UPDATE %s SET plan = 'c2', updated_at = "+p(1)+" WHERE id IN (20, 21)", now())
			src.beforeAt = func() {
				set("UPDATE %s SET plan = 'c3', updated_at = "+p(1)+" WHERE id = 20", now())
				set("DELETE FROM %s WHERE id = 21")
			}
			got = hp.runKeep(src)
			if got.Updated != 1 || got.Rejected != 1 || got.Failed != 0 || hp.plan(20) != "c3" || hp.plan(21) != "pro" {
				t.Fatalf("run 7 = %+v, plans %q %q; want row 20 at its newer value, row 21 absent", got, hp.plan(20), hp.plan(21))
			}
			// The Records side reads the same source now: the same state.
			hr.runKeep(recordsOnly{plain})
			if got := both("run 8", true); got.Updated != 0 || got.Created != 0 {
				t.Fatalf("run 8 = %+v; want a no-op", got)
			}
		})
	}
}

// TestSync_PrintPassIncremental is the default configuration: incremental
// reads between full scans. An incremental run reads with Records (its
// Prints answers ErrNoPrints) and leaves the last full read's prints as
// they are, so the next full scan is a print pass when the store did not
// change; a change made between the runs is read by the incremental run.
// The watermark the print pass prepares is committed as after Records.
func TestSync_PrintPassIncremental(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name(), func(t *testing.T) {
			b.need(t)
			db, name := table(t, b)
			base := time.Now().UTC().Add(-2 * time.Hour).Truncate(time.Second)
			const n = 300
			fill(t, db, b, name, n, base)
			exec(t, db, "UPDATE %s SET plan = 'pro'", name)
			wm := &crm.MemoryWatermarks{}
			inner, err := New(Options{Driver: b.driver, DSN: b.dsn, Table: name, PageSize: 100,
				Incremental: true, Overlap: time.Minute, FullScanEvery: 3, Watermarks: wm,
				Columns: crm.ColumnMap{ExternalID: "id", Email: "email", Metadata: map[string]string{"plan": "plan"}}})
			if err != nil {
				t.Fatal(err)
			}
			src := &probe{Source: inner}
			h := newSyncHarness(t)
			run := func(name string) sync.RunCounts {
				t.Helper()
				src.reset()
				got := h.runKeep(src)
				t.Logf("%s: %+v, Records %d, printed %d, decoded %d", name, got, src.records, src.printed, src.decoded)
				return got
			}
			// Run 1 (full, no prints yet): Records. Runs 2 and 3: incremental
			// no-ops. Run 4: full, by print, nothing decoded.
			if got := run("run 1"); got.Created != n || src.records != 1 {
				t.Fatalf("run 1 = %+v", got)
			}
			w1, _, _ := wm.Watermark(context.Background(), inner.WatermarkKey())
			for _, r := range []string{"run 2", "run 3"} {
				if got := run(r); got.Updated != 0 || src.records != 1 || src.printed != 0 || inner.LastReadComplete() {
					t.Fatalf("%s = %+v; want an incremental no-op read with Records", r, got)
				}
			}
			if got := run("run 4"); got.Unchanged != n || src.records != 0 || src.printed != n || src.decoded != 0 {
				t.Fatalf("run 4 = %+v; want a full print pass, nothing decoded", got)
			}
			w4, _, _ := wm.Watermark(context.Background(), inner.WatermarkKey())
			if !w4.At.Equal(w1.At) || w4.RunsSinceFull != 0 || !w4.LastFullAt.After(w1.LastFullAt) {
				t.Fatalf("watermark after the print pass %+v; after the first full read %+v", w4, w1)
			}
			// A change between runs: the incremental run 5 reads it.
			exec(t, db, "UPDATE %s SET plan = 'team', updated_at = "+param(b, 1)+" WHERE id = 42", name, ts(b, time.Now()))
			if got := run("run 5"); got.Updated != 1 || h.plan(42) != "team" || src.records != 1 {
				t.Fatalf("run 5 = %+v, plan %q", got, h.plan(42))
			}
			// Run 6 (incremental), run 7 full: the store changed in run 5, so
			// the prints of run 4 are stale and run 7 reads with Records,
			// which keeps the prints again.
			run("run 6")
			if got := run("run 7"); got.Unchanged != n || src.records != 1 {
				t.Fatalf("run 7 = %+v; want a full read with Records", got)
			}
		})
	}
}
