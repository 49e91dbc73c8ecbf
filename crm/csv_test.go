package crm_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/plugipay-sync/plugipay-sync/crm"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

// testColumns maps the columns of testHeader.
var testColumns = crm.ColumnMap{
	ExternalID: "id", Email: "email", Name: "name", Phone: "phone", TaxID: "tax",
	Metadata: map[string]string{"plan": "plan"},
}

const testHeader = "id,email,name,phone,tax,plan\n"

// result is what a source yielded: records, record errors, and the fatal
// error that ended the stream, if any.
type result struct {
	records []sync.Record
	rejects []string // RecordError texts
	fatal   error
}

func writeFile(t testing.TB, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "users.csv")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func read(t testing.TB, opts crm.CSVOptions) result {
	t.Helper()
	src, err := crm.NewCSV(opts)
	if err != nil {
		t.Fatal(err)
	}
	var res result
	var prints []sync.Print
	var all []string // every row as Records yields it
	var ids []string // every valid row's external id; "" for a bad row
	for rec, err := range src.Records(context.Background()) {
		var rerr *sync.RecordError
		switch {
		case errors.As(err, &rerr):
			prints = append(prints, rerr.Print)
			all = append(all, rerr.Error())
			ids = append(ids, "")
			res.rejects = append(res.rejects, rerr.Error())
		case err != nil:
			if res.fatal != nil {
				t.Fatalf("yielded after the fatal error %v: %v", res.fatal, err)
			}
			res.fatal = err
		default:
			if res.fatal != nil {
				t.Fatalf("yielded a record after the fatal error %v", res.fatal)
			}
			prints = append(prints, rec.Print)
			all = append(all, fmt.Sprintf("%+v", rec))
			ids = append(ids, rec.ExternalID)
			rec.Print = sync.Print{}
			res.records = append(res.records, rec)
		}
	}
	if res.fatal == nil {
		checkPrints(t, src, prints, all, ids)
	}
	return res
}

func readString(t testing.TB, content string) result {
	t.Helper()
	return read(t, crm.CSVOptions{Path: writeFile(t, content), Columns: testColumns})
}

func TestCSV_Rejects(t *testing.T) {
	long := func(c string, n int) string { return strings.Repeat(c, n) }
	for _, tc := range []struct {
		name string
		row  string // one data row, on line 2
		want string
	}{
		{"TooFewFields", "u1,a@b.com,Ada", `line 2 (externalId "u1"): has 3 fields, header has 6`},
		{"TooManyFields", "u1,a@b.com,Ada,,,free,extra", `line 2 (externalId "u1"): has 7 fields, header has 6`},
		{"MissingID", ",a@b.com,Ada,,,free", `line 2: missing externalId (column "id" is empty)`},
		{"BlankID", "   ,a@b.com,Ada,,,free", `line 2: missing externalId (column "id" is empty)`},
		{"EmailNoAt", "u1,a.b.com,Ada,,,free", `line 2 (externalId "u1"): invalid email: missing '@' or angle-addr`},
		{"EmailSpace", "u1,ada lovelace@b.com,Ada,,,free", `line 2 (externalId "u1"): invalid email: no angle-addr`},
		{"EmailDisplayName", "u1,Ada <ada@b.com>,Ada,,,free", `line 2 (externalId "u1"): invalid email: want a bare address like name@example.com`},
		{"NonUTF8", "u1,a@b.com,Zo\xeb,,,free", `line 2 (externalId "u1"): name (column "name") is not valid UTF-8`},
		{"NonUTF8ID", "u\xff1,a@b.com,Ada,,,free", `line 2: externalId (column "id") is not valid UTF-8`},
		{"IDTooLong", long("x", 256) + ",a@b.com,Ada,,,free", `line 2: externalId (column "id") is 256 characters, Plugipay allows at most 255`},
		{"EmailTooLong", "u1," + long("a", 315) + "@b.com,Ada,,,free", `line 2 (externalId "u1"): email (column "email") is 321 characters, Plugipay allows at most 320`},
		{"NameTooLong", "u1,a@b.com," + long("ë", 256) + ",,,free", `line 2 (externalId "u1"): name (column "name") is 256 characters, Plugipay allows at most 255`},
		{"PhoneTooLong", "u1,a@b.com,Ada," + long("1", 65) + ",,free", `line 2 (externalId "u1"): phone (column "phone") is 65 characters, Plugipay allows at most 64`},
		{"TaxIDTooLong", "u1,a@b.com,Ada,," + long("1", 65) + ",free", `line 2 (externalId "u1"): taxId (column "tax") is 65 characters, Plugipay allows at most 64`},
		{"ControlCharacter", "u1,a@b.com,Ada\x07,,,free", `line 2 (externalId "u1"): name (column "name") contains control character U+0007`},
		{"NewlineInName", "u1,a@b.com,\"Ada\nLovelace\",,,free", `line 2 (externalId "u1"): name (column "name") contains control character U+000A`},
		{"ControlInMetadata", "u1,a@b.com,Ada,,,\"fr\tee\"", `line 2 (externalId "u1"): metadata.plan (column "plan") contains control character U+0009`},
		{"SeveralProblems", "u1,nope,Ada," + long("1", 65) + ",,free", `line 2 (externalId "u1"): invalid email: missing '@' or angle-addr; phone (column "phone") is 65 characters, Plugipay allows at most 64`},
		{"BareQuote", "u1,a\"b@c.com,Ada,,,free", `line 2: CSV syntax error at line 2, column 5: bare " in non-quoted-field`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A good row after the bad one shows the stream goes on.
			res := readString(t, testHeader+tc.row+"\nu9,z@b.com,Zed,,,pro\n")
			if res.fatal != nil {
				t.Fatalf("fatal error: %v", res.fatal)
			}
			if want := []string{tc.want}; !reflect.DeepEqual(res.rejects, want) {
				t.Errorf("rejects =\n\t%q\nwant\n\t%q", res.rejects, want)
			}
			if len(res.records) != 1 || res.records[0].ExternalID != "u9" {
				t.Errorf("records = %+v, want only u9", res.records)
			}
		})
	}
}

func TestCSV_TooManyMetadataValues(t *testing.T) {
	cols := crm.ColumnMap{ExternalID: "id", Metadata: map[string]string{}}
	var header, full, fifty []string
	header = append(header, "id")
	full = append(full, "u1")
	fifty = append(fifty, "u2")
	for i := range 51 {
		key := fmt.Sprintf("m%02d", i)
		cols.Metadata[key] = key
		header = append(header, key)
		full = append(full, "v")
		if i < 50 {
			fifty = append(fifty, "v")
		} else {
			fifty = append(fifty, "") // empty values are dropped, so 50 pairs
		}
	}
	content := strings.Join(header, ",") + "\n" + strings.Join(full, ",") + "\n" + strings.Join(fifty, ",") + "\n"
	res := read(t, crm.CSVOptions{Path: writeFile(t, content), Columns: cols})
	if want := []string{`line 2 (externalId "u1"): has 51 metadata values, Plugipay allows at most 50`}; !reflect.DeepEqual(res.rejects, want) {
		t.Errorf("rejects = %q, want %q", res.rejects, want)
	}
	if len(res.records) != 1 || len(res.records[0].Metadata) != 50 {
		t.Errorf("records = %d, want u2 with 50 metadata values", len(res.records))
	}
}

func TestCSV_Records(t *testing.T) {
	for _, tc := range []struct {
		name    string
		content string
		opts    func(*crm.CSVOptions)
		want    []sync.Record
	}{
		{
			name:    "Plain",
			content: testHeader + "u1,ada@example.com,Ada Lovelace,+62 812-3456-7890,12.345.678.9-012.345,pro\n",
			want: []sync.Record{{ExternalID: "u1", Email: "ada@example.com", Name: "Ada Lovelace", Phone: "+62 812-3456-7890",
				TaxID: "12.345.678.9-012.345", Metadata: map[string]string{"plan": "pro"}, Ref: "line 2"}},
		},
		{
			name:    "TrimAndEmptyMetadataDropped",
			content: testHeader + "  u1 ,  Ada.Lovelace@Example.com , Ada ,,, \n",
			want:    []sync.Record{{ExternalID: "u1", Email: "Ada.Lovelace@Example.com", Name: "Ada", Ref: "line 2"}},
		},
		{
			name:    "BOM",
			content: "\ufeff" + testHeader + "u1,,Ada,,,\n",
			want:    []sync.Record{{ExternalID: "u1", Name: "Ada", Ref: "line 2"}},
		},
		{
			name:    "CRLF",
			content: strings.ReplaceAll(testHeader+"u1,,Ada,,,\nu2,,Bob,,,\n", "\n", "\r\n"),
			want:    []sync.Record{{ExternalID: "u1", Name: "Ada", Ref: "line 2"}, {ExternalID: "u2", Name: "Bob", Ref: "line 3"}},
		},
		{
			name:    "NoFinalNewline",
			content: testHeader + "u1,,Ada,,,",
			want:    []sync.Record{{ExternalID: "u1", Name: "Ada", Ref: "line 2"}},
		},
		{
			name: "QuotedCommasAndNewlines",
			content: testHeader +
				"u1,,\"Santoso, Budi\",,,\"pro, annual\"\n" +
				"u2,,Ada,,,\"multi\nline\nplan\"\n" + // starts on line 3, ends on line 5
				"u3,,\"Say \"\"hi\"\"\",,,\n",
			opts: func(o *crm.CSVOptions) { o.Columns.Metadata = map[string]string{"plan": "plan"} },
			want: []sync.Record{
				{ExternalID: "u1", Name: "Santoso, Budi", Metadata: map[string]string{"plan": "pro, annual"}, Ref: "line 2"},
				nil_, // u2 rejected: control characters in plan; checked in the rejects test
				{ExternalID: "u3", Name: `Say "hi"`, Ref: "line 6"},
			},
		},
		{
			name: "NonASCIINames",
			content: testHeader +
				"u1,siti@example.co.id,Siti Nurhaliza,,,\n" +
				"u2,huong@example.vn,Đặng Thị Hương,,,\n" +
				"u3,zoe@example.se,Zoë Ångström,,,\n" +
				"u4,,王小明,,,\n" +
				"u5,,\"" + strings.Repeat("ë", 255) + "\",,,\n",
			want: []sync.Record{
				{ExternalID: "u1", Email: "siti@example.co.id", Name: "Siti Nurhaliza", Ref: "line 2"},
				{ExternalID: "u2", Email: "huong@example.vn", Name: "Đặng Thị Hương", Ref: "line 3"},
				{ExternalID: "u3", Email: "zoe@example.se", Name: "Zoë Ångström", Ref: "line 4"},
				{ExternalID: "u4", Name: "王小明", Ref: "line 5"},
				{ExternalID: "u5", Name: strings.Repeat("ë", 255), Ref: "line 6"},
			},
		},
		{
			name:    "HeaderCaseAndSpaces",
			content: " ID , Email ,NAME,Phone,Tax,Plan\nu1,a@b.co,Ada,,,\n",
			want:    []sync.Record{{ExternalID: "u1", Email: "a@b.co", Name: "Ada", Ref: "line 2"}},
		},
		{
			name:    "UnmappedColumnsIgnored",
			content: "id,junk\nu1,\xff\x07whatever\n",
			opts:    func(o *crm.CSVOptions) { o.Columns = crm.ColumnMap{ExternalID: "id"} },
			want:    []sync.Record{{ExternalID: "u1", Ref: "line 2"}},
		},
		{
			name:    "Semicolon",
			content: "id;name\nu1;Budi, S.\n",
			opts:    func(o *crm.CSVOptions) { o.Delimiter = ';'; o.Columns = crm.ColumnMap{ExternalID: "id", Name: "name"} },
			want:    []sync.Record{{ExternalID: "u1", Name: "Budi, S.", Ref: "line 2"}},
		},
		{
			name:    "HeaderOnly",
			content: testHeader,
			want:    nil,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := crm.CSVOptions{Path: writeFile(t, tc.content), Columns: testColumns}
			if tc.opts != nil {
				tc.opts(&opts)
			}
			res := read(t, opts)
			if res.fatal != nil {
				t.Fatalf("fatal error: %v", res.fatal)
			}
			var want []sync.Record
			for _, r := range tc.want {
				if r.Ref != "" {
					want = append(want, r)
				}
			}
			if !reflect.DeepEqual(res.records, want) {
				t.Errorf("records =\n\t%+v\nwant\n\t%+v", res.records, want)
			}
		})
	}
}

// nil_ marks a row a Records case expects to be rejected.
var nil_ = sync.Record{}

func TestCSV_MultilineRejectRef(t *testing.T) {
	res := readString(t, testHeader+"u1,,Ada,,,\nu2,,\"two\nlines\",,,\nu3,,\"ok\",,,\n")
	want := []string{`line 3 (externalId "u2"): name (column "name") contains control character U+000A`}
	if !reflect.DeepEqual(res.rejects, want) {
		t.Errorf("rejects = %q, want %q", res.rejects, want)
	}
	if len(res.records) != 2 || res.records[1].Ref != "line 5" {
		t.Errorf("records = %+v, want u1 and u3 on line 5", res.records)
	}
}

func TestCSV_UnterminatedQuote(t *testing.T) {
	res := readString(t, testHeader+"u1,,Ada,,,\nu2,,\"Bob,,,\nu3,,Cy,,,\nu4,,Di,,,\n")
	if len(res.records) != 1 || res.records[0].ExternalID != "u1" {
		t.Errorf("records = %+v, want u1 only", res.records)
	}
	if want := []string{`line 3: CSV syntax error at line 5, column 11: extraneous or missing " in quoted-field`}; !reflect.DeepEqual(res.rejects, want) {
		t.Errorf("rejects = %q, want %q", res.rejects, want)
	}
	if res.fatal == nil || !strings.HasSuffix(res.fatal.Error(), `users.csv: line 3: quoted field never closed; the rest of the file (to line 5) could not be read`) {
		t.Errorf("fatal = %v, want the unclosed quote's line", res.fatal)
	}
}

func TestCSV_Fatal(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.csv")
	for _, tc := range []struct {
		name    string
		content string
		path    string
		cols    crm.ColumnMap
		want    string // {path} is replaced by the file's path
	}{
		{"MissingFile", "", missing, testColumns, "crm: csv: open " + missing + ": no such file or directory"},
		{"EmptyFile", "", "", testColumns, "crm: csv {path}: empty file, want a header row"},
		{"MissingColumn", "id,email,full_name\n", "", crm.ColumnMap{ExternalID: "id", Email: "mail"},
			`crm.csv.columns.email: column "mail" not in header of {path} (have: id, email, full_name)`},
		{"MissingMetadataColumn", "id,email\n", "", crm.ColumnMap{ExternalID: "id", Metadata: map[string]string{"plan": "tier"}},
			`crm.csv.columns.metadata.plan: column "tier" not in header of {path} (have: id, email)`},
		{"MissingIDColumn", "user,email\nu1,a@b.c\n", "", crm.ColumnMap{ExternalID: "id"},
			`crm.csv.columns.external_id: column "id" not in header of {path} (have: user, email)`},
		{"BadHeader", "id,\"email\n", "", testColumns,
			`crm: csv {path}: header: parse error on line 1, column 11: extraneous or missing " in quoted-field`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.path
			if path == "" {
				path = writeFile(t, tc.content)
			}
			res := read(t, crm.CSVOptions{Path: path, Columns: tc.cols})
			want := strings.ReplaceAll(tc.want, "{path}", path)
			if res.fatal == nil || res.fatal.Error() != want {
				t.Errorf("fatal = %v\nwant %s", res.fatal, want)
			}
			if len(res.records)+len(res.rejects) != 0 {
				t.Errorf("yielded %d records and %d rejects before the fatal error", len(res.records), len(res.rejects))
			}
		})
	}
}

func TestNewCSV_Invalid(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts crm.CSVOptions
		want string
	}{
		{"NoPath", crm.CSVOptions{Columns: testColumns}, "crm.csv.path: required"},
		{"NoExternalID", crm.CSVOptions{Path: "u.csv", Columns: crm.ColumnMap{Email: "email"}}, "crm.csv.columns.external_id: required"},
		{"BadDelimiter", crm.CSVOptions{Path: "u.csv", Columns: testColumns, Delimiter: '"'}, `crm.csv.delimiter: '"' cannot separate CSV fields`},
		{"EmptyMetadataColumn", crm.CSVOptions{Path: "u.csv", Columns: crm.ColumnMap{ExternalID: "id", Metadata: map[string]string{"plan": " "}}}, "crm.csv.columns.metadata.plan: empty column name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := crm.NewCSV(tc.opts)
			if err == nil || err.Error() != tc.want {
				t.Errorf("NewCSV() = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestCSV_Cancel(t *testing.T) {
	var b strings.Builder
	b.WriteString(testHeader)
	for i := range 100 {
		fmt.Fprintf(&b, "u%d,,Ada,,,\n", i)
	}
	src, err := crm.NewCSV(crm.CSVOptions{Path: writeFile(t, b.String()), Columns: testColumns})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var n int
	var last error
	for _, err := range src.Records(ctx) {
		if err != nil {
			last = err
			continue
		}
		n++
		if n == 3 {
			cancel()
		}
	}
	if n != 3 || !errors.Is(last, context.Canceled) {
		t.Errorf("read %d records, last error %v; want 3, context.Canceled", n, last)
	}
}

func TestCSV_StopEarly(t *testing.T) {
	src, err := crm.NewCSV(crm.CSVOptions{Path: writeFile(t, testHeader+"u1,,A,,,\nu2,,B,,,\n"), Columns: testColumns})
	if err != nil {
		t.Fatal(err)
	}
	for range src.Records(context.Background()) {
		break // must not panic by yielding again
	}
}

// checkPrints holds the print pass to Records on every input the CSV
// tests read (issue 13): unless the source declines to print the file, it
// prints the rows Records yields, in order, with the same prints, and
// RecordsAt decodes each row exactly as Records did.
func checkPrints(t testing.TB, src *crm.CSV, want []sync.Print, all []string, ids []string) {
	t.Helper()
	var rows []sync.RowPrint
	for rp, err := range src.Prints(context.Background()) {
		if errors.Is(err, sync.ErrNoPrints) {
			return
		}
		if err != nil {
			t.Fatalf("Prints: %v", err)
		}
		rows = append(rows, rp)
	}
	got := make([]sync.Print, len(rows))
	for i, rp := range rows {
		got[i] = rp.Print
	}
	if len(ids) == len(rows) {
		for i, rp := range rows {
			if ids[i] != "" && rp.ID != sync.IDHash(ids[i]) {
				t.Fatalf("row %d: the print pass's id hash is not IDHash(%q)", i, ids[i])
			}
		}
	}
	if !reflect.DeepEqual(got, want) && !(len(got) == 0 && len(want) == 0) {
		t.Fatalf("Prints yields %d prints, Records %d rows, or the prints differ:\n%x\n%x", len(got), len(want), got, want)
	}
	var again []string
	for rec, err := range src.RecordsAt(context.Background(), rows) {
		var rerr *sync.RecordError
		switch {
		case errors.As(err, &rerr):
			again = append(again, rerr.Error())
		case err != nil:
			t.Fatalf("RecordsAt: %v", err)
		default:
			again = append(again, fmt.Sprintf("%+v", rec))
		}
	}
	if !reflect.DeepEqual(again, all) && !(len(again) == 0 && len(all) == 0) {
		t.Fatalf("RecordsAt decodes\n%q\nRecords\n%q", again, all)
	}
}
