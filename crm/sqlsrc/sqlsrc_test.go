package sqlsrc

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/plugipay-sync/plugipay-sync/crm"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

// requireDB is the environment variable that turns "no database server"
// from a skip into a failure (.ci/run sets it).
const requireDB = "PLUGIPAY_SYNC_REQUIRE_DB"

// backend is one database the tests run against.
type backend struct {
	driver string
	dsn    string
	// timestamp is the column type of updated_at.
	timestamp string
	// down says why the server is not reachable; nil when it is.
	down error
}

// name names b's subtests.
func (b backend) name() string {
	return b.driver + "/" + strings.ToLower(strings.ReplaceAll(b.timestamp, "(6)", ""))
}

// need skips the test when b is down, or fails it when
// PLUGIPAY_SYNC_REQUIRE_DB=1.
func (b backend) need(t *testing.T) {
	t.Helper()
	if b.down == nil {
		return
	}
	if os.Getenv(requireDB) == "1" {
		t.Fatalf("%s is not reachable and %s=1 requires it: %v", b.driver, requireDB, b.down)
	}
	t.Skipf("%s is not reachable on 127.0.0.1 (%v); start it or set %s=1 to make this a failure", b.driver, b.down, requireDB)
}

// backends returns the databases to test against; each subtest calls
// need, which skips PostgreSQL or MariaDB when no server answers.
func backends(t *testing.T) []backend {
	t.Helper()
	var out []backend
	pg := []string{os.Getenv("PLUGIPAY_SYNC_TEST_POSTGRES_DSN")}
	if pg[0] == "" {
		pg = []string{"postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "postgres://root@127.0.0.1:5432/test?sslmode=disable"}
	}
	my := os.Getenv("PLUGIPAY_SYNC_TEST_MYSQL_DSN")
	if my == "" {
		my = "root@tcp(127.0.0.1:3306)/test"
	}
	// Both column types of each server: PostgreSQL's timestamp holds UTC
	// wall-clock values, MySQL's TIMESTAMP converts through the session
	// time zone (pinned to UTC by New).
	dsn, err := reachable("pgx", pg...)
	out = append(out, backend{Postgres, dsn, "TIMESTAMPTZ", err}, backend{Postgres, dsn, "TIMESTAMP", err})
	dsn, err = reachable("mysql", my)
	out = append(out, backend{MySQL, dsn, "DATETIME(6)", err}, backend{MySQL, dsn, "TIMESTAMP(6)", err})
	return append(out, backend{SQLite, "file:" + filepath.Join(t.TempDir(), "crm.db"), "TIMESTAMP", nil})
}

func reachable(driver string, dsns ...string) (string, error) {
	var errs []error
	for _, dsn := range dsns {
		db, err := sql.Open(driver, dsn)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err = db.PingContext(ctx)
		cancel()
		db.Close()
		if err == nil {
			return dsn, nil
		}
		errs = append(errs, err)
	}
	return "", errors.Join(errs...)
}

// table creates a table with a unique name in b and drops it after the test.
func table(t *testing.T, b backend) (*sql.DB, string) {
	t.Helper()
	db, err := sql.Open(dialects[b.driver].driverName, b.dsn)
	if err != nil {
		t.Fatal(err)
	}
	var buf [6]byte
	_, _ = rand.Read(buf[:])
	name := "plugipay_users_" + hex.EncodeToString(buf[:])
	id := "BIGINT PRIMARY KEY"
	if b.driver == SQLite {
		id = "INTEGER PRIMARY KEY"
	}
	ddl := fmt.Sprintf(`CREATE TABLE %s (
	id %s,
	email VARCHAR(320),
	first_name VARCHAR(100),
	last_name VARCHAR(100),
	plan VARCHAR(50),
	deleted_at %s NULL,
	updated_at %s NULL
)`, name, id, b.timestamp, b.timestamp)
	if _, err := db.Exec(ddl); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(fmt.Sprintf("CREATE INDEX %s_keyset ON %s (updated_at, id)", name, name)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := db.Exec("DROP TABLE " + name); err != nil {
			t.Errorf("drop %s: %v", name, err)
		}
		db.Close()
	})
	return db, name
}

// ts formats t for an INSERT into b.
func ts(b backend, t time.Time) any {
	if b.driver == SQLite {
		return t.UTC().Format("2006-01-02 15:04:05.000")
	}
	return t.UTC()
}

func insert(t *testing.T, db *sql.DB, b backend, name string, id int, email, first, last string, updated time.Time) {
	t.Helper()
	q := fmt.Sprintf("INSERT INTO %s (id, email, first_name, last_name, plan, updated_at) VALUES (%s)", name, placeholders(b, 6))
	if _, err := db.Exec(q, id, email, first, last, "pro", ts(b, updated)); err != nil {
		t.Fatal(err)
	}
}

func placeholders(b backend, n int) string {
	a := args{d: dialects[b.driver]}
	var ps []string
	for range n {
		ps = append(ps, a.add(nil))
	}
	return strings.Join(ps, ", ")
}

// readAll reads src to the end and returns "id:name" of each record (with
// "-deleted" for deleted ones) and the rejected refs.
func readAll(t *testing.T, src sync.Source) (got []string, bad []string) {
	t.Helper()
	for rec, err := range src.Records(context.Background()) {
		var re *sync.RecordError
		switch {
		case errors.As(err, &re):
			bad = append(bad, re.Ref+": "+re.Reason)
		case err != nil:
			t.Fatal(err)
		case rec.Deleted:
			got = append(got, rec.ExternalID+"-deleted")
		default:
			got = append(got, rec.ExternalID+":"+rec.Name)
		}
	}
	// The reconciler commits the watermark after a run's writes.
	if err := src.(sync.Committer).Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	return got, bad
}

func TestSource_FullScanKeyset(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name(), func(t *testing.T) {
			b.need(t)
			db, name := table(t, b)
			base := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
			// Seven rows, three sharing one updated_at, page size 2: the
			// keyset must cross pages inside equal timestamps.
			for i := 1; i <= 7; i++ {
				insert(t, db, b, name, i, fmt.Sprintf("u%d@Example.com", i), " Ada ", fmt.Sprintf("N%d", i), base.Add(time.Duration(i/3)*time.Minute))
			}
			insert(t, db, b, name, 8, "", "", "", base) // empty email: fine
			if _, err := db.Exec(fmt.Sprintf("UPDATE %s SET updated_at = NULL WHERE id = 8", name)); err != nil {
				t.Fatal(err)
			}
			insert(t, db, b, name, 9, "not-an-email", "X", "Y", base)
			src, err := New(Options{Driver: b.driver, DSN: b.dsn, Table: name, PageSize: 2, Normalize: crm.DefaultNormalize(),
				Columns: crm.ColumnMap{ExternalID: "id", Email: "email", NameTemplate: "{first_name} {last_name}", Metadata: map[string]string{"plan": "plan"}}})
			if err != nil {
				t.Fatal(err)
			}
			got, bad := readAll(t, src)
			want := []string{"1:Ada N1", "2:Ada N2", "3:Ada N3", "4:Ada N4", "5:Ada N5", "6:Ada N6", "7:Ada N7", "8:"}
			slices.Sort(got)
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("records = %v\nwant %v", got, want)
			}
			if len(bad) != 1 || !strings.HasPrefix(bad[0], "id=9: invalid email") {
				t.Errorf("rejected = %q", bad)
			}
			if !src.LastReadComplete() {
				t.Error("LastReadComplete = false after a full scan")
			}
		})
	}
}

func TestSource_MappedColumnMissing(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name(), func(t *testing.T) {
			b.need(t)
			_, name := table(t, b)
			src, err := New(Options{Driver: b.driver, DSN: b.dsn, Table: name, Columns: crm.ColumnMap{ExternalID: "id", Email: "mail"}})
			if err != nil {
				t.Fatal(err)
			}
			for _, err := range src.Records(context.Background()) {
				if err == nil || !strings.Contains(err.Error(), `crm.sql.columns: column "mail" not in table `+name) {
					t.Fatalf("err = %v; want the missing column named", err)
				}
				return
			}
			t.Fatal("no error")
		})
	}
}

func TestSource_Incremental(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name(), func(t *testing.T) {
			b.need(t)
			db, name := table(t, b)
			base := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
			for i := 1; i <= 5; i++ {
				insert(t, db, b, name, i, "", "U", fmt.Sprint(i), base.Add(time.Duration(i)*time.Hour))
			}
			wm := &crm.MemoryWatermarks{}
			src, err := New(Options{Driver: b.driver, DSN: b.dsn, Query: "SELECT * FROM " + name, PageSize: 2,
				Incremental: true, Overlap: 10 * time.Minute, FullScanEvery: 2, Watermarks: wm, DeletedColumn: "deleted_at",
				Columns: crm.ColumnMap{ExternalID: "id", NameTemplate: "{first_name} {last_name}"}})
			if err != nil {
				t.Fatal(err)
			}
			// Run 1: no watermark, a full scan.
			if got, _ := readAll(t, src); len(got) != 5 || !src.LastReadComplete() {
				t.Fatalf("run 1 = %v, complete %v; want 5 rows, complete", got, src.LastReadComplete())
			}
			if w, _, _ := wm.Watermark(context.Background(), src.WatermarkKey()); !w.At.Equal(base.Add(5 * time.Hour)) {
				t.Fatalf("watermark = %s, want %s", w.At, base.Add(5*time.Hour))
			}

			// Between runs: row 2 updated, row 6 committed late with an
			// updated_at 5 minutes before the watermark (inside the overlap),
			// row 3 soft-deleted, row 4 hard-deleted.
			upd := func(q string, a ...any) {
				if _, err := db.Exec(fmt.Sprintf(q, name), a...); err != nil {
					t.Fatal(err)
				}
			}
			ps := strings.Split(placeholders(b, 3), ", ")
			upd("UPDATE %s SET first_name = 'Changed', updated_at = "+ps[0]+" WHERE id = "+ps[1], ts(b, base.Add(6*time.Hour)), 2)
			insert(t, db, b, name, 6, "", "Late", "Row", base.Add(5*time.Hour-5*time.Minute))
			upd("UPDATE %s SET deleted_at = "+ps[0]+", updated_at = "+ps[1]+" WHERE id = "+ps[2], ts(b, base.Add(6*time.Hour)), ts(b, base.Add(6*time.Hour)), 3)
			upd("DELETE FROM %s WHERE id = 4", nil...)

			// Run 2: incremental.
			got, _ := readAll(t, src)
			slices.Sort(got)
			if want := "2:Changed 2,3-deleted,5:U 5,6:Late Row"; strings.Join(got, ",") != want {
				t.Errorf("run 2 = %v\nwant %s (row 5 re-read inside the overlap)", got, want)
			}
			if src.LastReadComplete() {
				t.Error("LastReadComplete = true after an incremental read")
			}
			// Run 3: with full_scan_every 2, a full scan: row 4 is absent, which
			// the reconciler treats as gone because the read is complete.
			got, _ = readAll(t, src)
			slices.Sort(got)
			if want := "1:U 1,2:Changed 2,3-deleted,5:U 5,6:Late Row"; strings.Join(got, ",") != want {
				t.Errorf("run 3 (full) = %v\nwant %s", got, want)
			}
			if !src.LastReadComplete() {
				t.Error("LastReadComplete = false after the scheduled full scan")
			}
			if w, _, _ := wm.Watermark(context.Background(), src.WatermarkKey()); w.RunsSinceFull != 0 || !w.At.Equal(base.Add(6*time.Hour)) {
				t.Errorf("watermark after full scan = %+v", w)
			}
		})
	}
}

func TestNew_Errors(t *testing.T) {
	cols := crm.ColumnMap{ExternalID: "id"}
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"driver", Options{Driver: "oracle", DSN: "x", Table: "t", Columns: cols}, `crm.sql.driver: "oracle" is not one of postgres, mysql, sqlite`},
		{"both", Options{Driver: SQLite, DSN: "x", Table: "t", Query: "SELECT 1", Columns: cols}, "crm.sql: set table or query, not both"},
		{"table", Options{Driver: SQLite, DSN: "x", Table: "t; DROP", Columns: cols}, `crm.sql.table: "t; DROP" is not a plain table name`},
		{"query", Options{Driver: SQLite, DSN: "x", Query: "DELETE FROM t", Columns: cols}, "crm.sql.query: must be a SELECT"},
		{"incremental", Options{Driver: SQLite, DSN: "x", Table: "t", Columns: cols, Incremental: true}, "crm.sql.incremental: needs a watermark store"},
		{"mysql dsn", Options{Driver: MySQL, DSN: "not a dsn", Table: "t", Columns: cols}, "crm.sql.dsn: not a MySQL DSN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v; want %q", err, tt.want)
			}
		})
	}
}
