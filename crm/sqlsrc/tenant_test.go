package sqlsrc

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/plugipay-sync/plugipay-sync/crm"
)

// A tenant-bound source (issue 19) sees only its tenant's rows in every
// kind of read: full scans over several pages, incremental reads, keyed
// reads by id, and the print pass with its RecordsAt, on every engine and
// for both table: and query:. A tenant id that looks like SQL is a value,
// not SQL.
func TestSource_TenantBound(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name(), func(t *testing.T) {
			b.need(t)
			db, name := table(t, b)
			exec(t, db, "ALTER TABLE %s ADD COLUMN tenant VARCHAR(64)", name)
			base := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
			for i := 1; i <= 9; i++ {
				insert(t, db, b, name, i, fmt.Sprintf("u%d@example.com", i), "Ada", fmt.Sprintf("N%d", i), base.Add(time.Duration(i)*time.Minute))
				exec(t, db, "UPDATE %s SET tenant = "+param(b, 1)+" WHERE id = "+param(b, 2), name, []string{"acme", "globex", "initech"}[i%3], i)
			}
			cols := crm.ColumnMap{ExternalID: "id", Email: "email", NameTemplate: "{first_name} {last_name}"}
			for _, tc := range []struct {
				name, table, query, tenant string
				want                       []string
			}{
				{name: "table", table: name, tenant: "acme", want: []string{"3:Ada N3", "6:Ada N6", "9:Ada N9"}},
				{name: "query", query: "SELECT * FROM " + name + " WHERE plan = 'pro'", tenant: "globex", want: []string{"1:Ada N1", "4:Ada N4", "7:Ada N7"}},
				{name: "injection", table: name, tenant: "acme' OR '1'='1", want: nil},
				{name: "unknown tenant", table: name, tenant: "umbrella", want: nil},
			} {
				t.Run(tc.name, func(t *testing.T) {
					wm := &crm.MemoryWatermarks{}
					src, err := New(Options{Driver: b.driver, DSN: b.dsn, Table: tc.table, Query: tc.query,
						TenantColumn: "tenant", Tenant: tc.tenant, PageSize: 2, Columns: cols,
						Incremental: true, Watermarks: wm, FullScanEvery: 1000, Now: fixedNow})
					if err != nil {
						t.Fatal(err)
					}
					got, bad := readAll(t, src) // first read: a full scan
					slices.Sort(got)
					if !slices.Equal(got, tc.want) || len(bad) > 0 {
						t.Fatalf("full scan: got %v (rejected %v), want %v", got, bad, tc.want)
					}
					got, _ = readAll(t, src) // incremental from the watermark
					if len(tc.want) > 0 && len(got) == 0 {
						t.Fatal("incremental read: read nothing although the overlap covers the last rows")
					}
					for _, g := range got {
						if !slices.Contains(tc.want, g) {
							t.Fatalf("incremental read: %s is not tenant %s's", g, tc.tenant)
						}
					}
					var byID []string
					for rec, err := range src.RecordsByID(context.Background(), []string{"1", "2", "3", "4", "5", "6", "7", "8", "9"}) {
						if err != nil {
							t.Fatal(err)
						}
						byID = append(byID, rec.ExternalID+":"+rec.Name)
					}
					slices.Sort(byID)
					if !slices.Equal(byID, tc.want) {
						t.Fatalf("RecordsByID: got %v, want %v", byID, tc.want)
					}
					// The print pass runs on full reads only.
					full, err := New(Options{Driver: b.driver, DSN: b.dsn, Table: tc.table, Query: tc.query,
						TenantColumn: "tenant", Tenant: tc.tenant, PageSize: 2, Columns: cols})
					if err != nil {
						t.Fatal(err)
					}
					if n := checkPrints(t, full); n != len(tc.want) {
						t.Fatalf("print pass: %d rows, want %d", n, len(tc.want))
					}
				})
			}
		})
	}
}

// New refuses a tenant column that is not a plain column name, and half a
// binding.
func TestNew_TenantOptions(t *testing.T) {
	cols := crm.ColumnMap{ExternalID: "id"}
	for _, tc := range []struct {
		name           string
		column, tenant string
	}{
		{"column with SQL", "tenant; DROP TABLE x", "acme"},
		{"dotted column", "t.tenant", "acme"},
		{"column without tenant", "tenant", ""},
		{"tenant without column", "", "acme"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(Options{Driver: SQLite, DSN: "file:x.db", Table: "users", Columns: cols, TenantColumn: tc.column, Tenant: tc.tenant})
			if err == nil || !strings.HasPrefix(err.Error(), "crm.sql.tenant_column: ") {
				t.Fatalf("New: %v, want a crm.sql.tenant_column error", err)
			}
		})
	}
}

// ReadTenants returns the two columns of every row in the query's order,
// trimmed, on every engine, and refuses a query of another shape.
func TestReadTenants(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name(), func(t *testing.T) {
			b.need(t)
			db, name := table(t, b)
			for i := 1; i <= 3; i++ {
				insert(t, db, b, name, i, fmt.Sprintf(" acc_%d ", i), fmt.Sprintf("t%d", i), "", time.Now())
			}
			ctx := context.Background()
			got, err := ReadTenants(ctx, b.driver, b.dsn, "SELECT first_name, email FROM "+name+" ORDER BY id DESC")
			if err != nil {
				t.Fatal(err)
			}
			want := []TenantRow{{"t3", "acc_3"}, {"t2", "acc_2"}, {"t1", "acc_1"}}
			if !slices.Equal(got, want) {
				t.Fatalf("got %v, want %v", got, want)
			}
			if _, err := ReadTenants(ctx, b.driver, b.dsn, "SELECT id FROM "+name); err == nil || !strings.Contains(err.Error(), "returns 1 columns (id), want 2") {
				t.Fatalf("one column: %v", err)
			}
			if _, err := ReadTenants(ctx, b.driver, b.dsn, "SELECT a, b FROM no_such_table_x"); err == nil {
				t.Fatal("a failing query gave no error")
			}
		})
	}
}
