package crm

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"unicode/utf8"

	"github.com/plugipay-sync/plugipay-sync/sync"
)

// fuzzColumns maps the columns of the fuzz seeds' header.
var fuzzColumns = ColumnMap{
	ExternalID: "id", Email: "email", Name: "name", Phone: "phone", TaxID: "tax",
	Metadata: map[string]string{"plan": "plan"},
}

// checkStream drains a source's stream and checks the contract every
// consumer relies on: it ends; a record has its ExternalID and Ref; a bad
// record is a *sync.RecordError with a reason; any other error is the last
// thing yielded.
func checkStream(t *testing.T, stream func(context.Context, func(sync.Record, error) bool)) {
	t.Helper()
	fatal := false
	n := 0
	stream(context.Background(), func(rec sync.Record, err error) bool {
		n++
		if fatal {
			t.Fatalf("yield after the stream's final error")
		}
		var re *sync.RecordError
		switch {
		case err == nil:
			if rec.ExternalID == "" {
				t.Fatalf("record without an externalId: %+v", rec)
			}
			if rec.Ref == "" {
				t.Fatalf("record without a ref: %+v", rec)
			}
		case errors.As(err, &re):
			if re.Reason == "" || re.Ref == "" {
				t.Fatalf("record error without a ref or reason: %#v", re)
			}
			if !utf8.ValidString(re.Error()) {
				t.Fatalf("record error is not valid UTF-8: %q", re.Error())
			}
		default:
			fatal = true
		}
		return true
	})
	if n > 1<<20 {
		t.Fatalf("%d items from a small input", n)
	}
}

// FuzzCSV feeds arbitrary bytes to the CSV reader. The seeds, which run
// in make test, include the bad inputs of issue 8's matrix.
func FuzzCSV(f *testing.F) {
	const h = "id,email,name,phone,tax,plan\n"
	for _, s := range []string{
		h + "u1,a@b.co,Ada,,,pro\n",
		"\uFEFF" + h + "u1,a@b.co,Ada,,,pro\n",
		h + "u1,\"a@b.co,Ada,,,pro\nu2,b@b.co,Bo,,,free\n",
		h + "u1,a@b.co\nu2,b@b.co,Bo,,,free,extra\n",
		h + "u1,a@b.co,Ad\xff\xfea,,,pro\n",
		"",
		h,
		h + ",a@b.co,Ada,,,pro\nu1,a@b.co,Ada,,,pro\nu1,c@b.co,C,,,pro\n",
		h + "u1,not-an-email,A\x00\x07da,,,pro\n",
		h + "u1,a@b.co,Ada,+62 812-3456-7890,01.234.567.8-901.000,pro\r\n",
		"id;email\nu1;a@b.co\n",
		"\"id\",\"email\"\n\"u\"\"1\",\"a@b.co\"\n",
	} {
		f.Add([]byte(s))
	}
	src, err := NewCSV(CSVOptions{Path: "fuzz.csv", Columns: fuzzColumns})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkStream(t, func(ctx context.Context, yield func(sync.Record, error) bool) {
			src.stream(ctx, bytes.NewReader(data), yield)
		})
	})
}
