package crm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plugipay-sync/plugipay-sync/sync"
)

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// collect reads a source to the end: the records, the per-record errors
// as "ref: reason", and the fatal error.
func collect(t *testing.T, src sync.Source) (recs []sync.Record, bad []string, fatal error) {
	t.Helper()
	for rec, err := range src.Records(context.Background()) {
		var re *sync.RecordError
		switch {
		case errors.As(err, &re):
			bad = append(bad, re.Ref+": "+re.Reason)
		case err != nil:
			return recs, bad, err
		default:
			rec.Print = sync.Print{} // held to the print pass by TestCSV_PrintsMatchRecords
			recs = append(recs, rec)
		}
	}
	return recs, bad, nil
}

func TestJSONL(t *testing.T) {
	long := strings.Repeat("x", 200<<10) // over bufio.Scanner's 64 KiB
	body := `{"id":"u1","email":"a@Example.com","first":"Ada","last":"Lovelace","plan":"pro","address":{"city":"Jakarta"}}
{"id":"u2","email":null,"first":"Grace","last":null,"plan":"` + long + `"}
{"id": "u3", broken
{"id":42,"first":"Num","active":true}` + "\r\n" + `
["not","an","object"]
{"id":"u5","first":{"nested":1}}
{"email":"no-id@example.com"}
{"id":"u6","first":"Last","last":"Line"}`
	src, err := NewJSONL(JSONLOptions{
		Path:      writeFile(t, "users.jsonl", body),
		Fields:    ColumnMap{ExternalID: "id", Email: "email", NameTemplate: "{first} {last}", Metadata: map[string]string{"plan": "plan", "city": "address.city"}},
		Normalize: DefaultNormalize(),
	})
	if err != nil {
		t.Fatal(err)
	}
	recs, bad, fatal := collect(t, src)
	if fatal != nil {
		t.Fatal(fatal)
	}
	var ids []string
	for _, r := range recs {
		ids = append(ids, r.ExternalID+"@"+r.Ref)
	}
	if got, want := strings.Join(ids, " "), "u1@line 1 u2@line 2 42@line 4 u6@line 9"; got != want {
		t.Errorf("records = %s, want %s", got, want)
	}
	if r := recs[0]; r.Email != "a@example.com" || r.Name != "Ada Lovelace" || r.Metadata["city"] != "Jakarta" || r.Metadata["plan"] != "pro" {
		t.Errorf("line 1 = %+v", r)
	}
	if r := recs[1]; r.Name != "Grace" || len(r.Metadata["plan"]) != len(long) {
		t.Errorf("line 2: name %q, plan of %d bytes", r.Name, len(r.Metadata["plan"]))
	}
	wantBad := []string{
		"line 3: invalid JSON",
		"line 5: blank line",
		"line 6: invalid JSON",
		`line 7: key "first" holds an object or array`,
		`line 8: missing externalId (field "id" is empty)`,
	}
	if len(bad) != len(wantBad) {
		t.Fatalf("rejected = %q, want %d", bad, len(wantBad))
	}
	for i, w := range wantBad {
		if !strings.HasPrefix(bad[i], w) {
			t.Errorf("rejected[%d] = %q, want prefix %q", i, bad[i], w)
		}
	}
	n, err := src.Count(context.Background())
	if err != nil || n != 9 {
		t.Errorf("Count = %d, %v; want 9", n, err)
	}
}

func TestJSONL_LineTooLong(t *testing.T) {
	src, err := NewJSONL(JSONLOptions{
		Path:         writeFile(t, "u.jsonl", `{"id":"a"}`+"\n"+`{"id":"`+strings.Repeat("y", 5000)+`"}`+"\n"+`{"id":"c"}`+"\n"),
		Fields:       ColumnMap{ExternalID: "id"},
		MaxLineBytes: 1000,
	})
	if err != nil {
		t.Fatal(err)
	}
	recs, bad, fatal := collect(t, src)
	if fatal != nil || len(recs) != 2 || len(bad) != 1 || bad[0] != "line 2: line longer than 1000 bytes" {
		t.Fatalf("records %d, rejected %q, fatal %v", len(recs), bad, fatal)
	}
}

func TestJSONL_MappedKeyMissing(t *testing.T) {
	src, err := NewJSONL(JSONLOptions{
		Path:   writeFile(t, "u.jsonl", `{"id":"a","mail":"a@b.co"}`+"\n"),
		Fields: ColumnMap{ExternalID: "id", Email: "email"},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, _, fatal := collect(t, src)
	if fatal == nil || !strings.Contains(fatal.Error(), `crm.jsonl.fields: field "email" is mapped but`) {
		t.Fatalf("fatal = %v; want the missing key named", fatal)
	}
}
