package crm_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/plugipay-sync/plugipay-sync/crm"
)

func TestCSV_Count(t *testing.T) {
	for _, tt := range []struct {
		name, body string
		want       int64
	}{
		{"Empty", "", 0},
		{"HeaderOnly", "id,email\n", 0},
		{"Rows", "id,email\nu1,a@x.id\nu2,b@x.id\n", 2},
		{"NoFinalNewline", "id,email\nu1,a@x.id\nu2,b@x.id", 2},
		{"BOMAndQuotedNewline", "\uFEFFid,email\nu1,\"a\nb@x.id\"\nu2,b@x.id\n", 2},
		{"SyntaxError", "id,email\nu1,a\"b\nu2,b@x.id\n", 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "u.csv")
			if err := os.WriteFile(path, []byte(tt.body), 0o600); err != nil {
				t.Fatal(err)
			}
			src, err := crm.NewCSV(crm.CSVOptions{Path: path, Columns: crm.ColumnMap{ExternalID: "id"}})
			if err != nil {
				t.Fatal(err)
			}
			got, err := src.Count(context.Background())
			if err != nil || got != tt.want {
				t.Errorf("Count() = %d, %v; want %d", got, err, tt.want)
			}
		})
	}
	t.Run("SampleMatchesRecords", func(t *testing.T) {
		src, err := crm.NewCSV(crm.CSVOptions{Path: "testdata/sample_users.csv", Columns: crm.ColumnMap{ExternalID: "id"}})
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for range src.Records(context.Background()) {
			n++
		}
		got, err := src.Count(context.Background())
		if err != nil || got != n {
			t.Errorf("Count() = %d, %v; Records yields %d", got, err, n)
		}
	})
	t.Run("Missing", func(t *testing.T) {
		src, _ := crm.NewCSV(crm.CSVOptions{Path: filepath.Join(t.TempDir(), "nope.csv"), Columns: crm.ColumnMap{ExternalID: "id"}})
		if _, err := src.Count(context.Background()); err == nil {
			t.Error("Count of a missing file succeeded")
		}
	})
}
