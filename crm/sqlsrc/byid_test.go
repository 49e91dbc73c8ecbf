package sqlsrc

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/plugipay-sync/plugipay-sync/crm"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

// RecordsByID reads exactly the rows of the ids named, on every engine,
// with an integer id column compared with the text ids: deleted rows as
// deleted, bad rows as RecordErrors, unknown ids as nothing.
func TestSource_RecordsByID(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name(), func(t *testing.T) {
			b.need(t)
			db, name := table(t, b)
			base := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
			for i := 1; i <= 6; i++ {
				insert(t, db, b, name, i, fmt.Sprintf("u%d@example.com", i), "Ada", fmt.Sprintf("N%d", i), base)
			}
			insert(t, db, b, name, 7, "not-an-email", "X", "Y", base)
			if _, err := db.Exec(fmt.Sprintf("UPDATE %s SET deleted_at = updated_at WHERE id = 3", name)); err != nil {
				t.Fatal(err)
			}
			src, err := New(Options{Driver: b.driver, DSN: b.dsn, Table: name, DeletedColumn: "deleted_at", Normalize: crm.DefaultNormalize(),
				Columns: crm.ColumnMap{ExternalID: "id", Email: "email", NameTemplate: "{first_name} {last_name}"}})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for rec, err := range src.RecordsByID(context.Background(), []string{"2", "3", "5", "7", "99"}) {
				var re *sync.RecordError
				switch {
				case errors.As(err, &re):
					got = append(got, re.ExternalID+"-rejected")
				case err != nil:
					t.Fatal(err)
				case rec.Deleted:
					got = append(got, rec.ExternalID+"-deleted")
				default:
					got = append(got, rec.ExternalID+":"+rec.Name)
				}
			}
			slices.Sort(got)
			want := []string{"2:Ada N2", "3-deleted", "5:Ada N5", "7-rejected"}
			if !slices.Equal(got, want) {
				t.Fatalf("got %v, want %v", got, want)
			}
		})
	}
}
