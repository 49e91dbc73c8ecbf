package crm

import (
	"strings"
	"testing"

	"github.com/plugipay-sync/plugipay-sync/sync"
)

func TestMapper_Normalize(t *testing.T) {
	m := ColumnMap{ExternalID: "id", Email: "email", NameTemplate: "{first} {last}", Phone: "phone",
		Metadata: map[string]string{"plan": "plan", "city": "city"}}
	mp, err := NewMapper(m, Normalize{TrimSpace: true, LowerEmailDomain: true, CollapseNameSpace: true, PhoneRegion: "ID", DropEmptyMetadata: true}, "crm.x.fields")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(mp.Fields(), ","), "id,email,first,last,phone,city,plan"; got != want {
		t.Fatalf("Fields() = %s, want %s", got, want)
	}
	get := func(vals map[string]string) []string {
		out := make([]string, len(mp.Fields()))
		for i, f := range mp.Fields() {
			out[i] = vals[f]
		}
		return out
	}
	rec, rerr := mp.Record(get(map[string]string{"id": " u1 ", "email": " Ada.L@Example.COM ", "first": "  Ada ", "last": "Love   lace",
		"phone": "0812-3456-7890", "plan": "pro", "city": "  "}), "row 1")
	if rerr != nil {
		t.Fatal(rerr)
	}
	want := sync.Record{ExternalID: "u1", Email: "Ada.L@example.com", Name: "Ada Love lace", Phone: "+6281234567890",
		Metadata: map[string]string{"plan": "pro"}, Ref: "row 1"}
	if rec.ExternalID != want.ExternalID || rec.Email != want.Email || rec.Name != want.Name || rec.Phone != want.Phone ||
		len(rec.Metadata) != 1 || rec.Metadata["plan"] != "pro" {
		t.Fatalf("Record = %+v\nwant %+v", rec, want)
	}

	t.Run("NoFirstName", func(t *testing.T) {
		rec, rerr := mp.Record(get(map[string]string{"id": "u2", "last": "Hopper"}), "row 2")
		if rerr != nil || rec.Name != "Hopper" {
			t.Fatalf("Record = %+v, %v; want name Hopper", rec, rerr)
		}
	})
	t.Run("Rejected", func(t *testing.T) {
		tests := []struct {
			name string
			vals map[string]string
			want string
		}{
			{"missing id", map[string]string{"email": "a@b.co"}, `missing externalId (field "id" is empty)`},
			{"id too long", map[string]string{"id": strings.Repeat("x", 256)}, `externalId (column "id") is 256 characters, Plugipay allows at most 255`},
			{"bad email", map[string]string{"id": "u3", "email": "Ada <a@b.co>"}, "invalid email"},
			{"bad phone", map[string]string{"id": "u4", "phone": "12"}, `phone (column "phone") is not a valid phone number for region ID`},
			{"control char", map[string]string{"id": "u5", "plan": "a\x00b"}, `metadata.plan (column "plan") contains control character U+0000`},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, rerr := mp.Record(get(tt.vals), "row 9")
				if rerr == nil || !strings.Contains(rerr.Reason, tt.want) || rerr.Ref != "row 9" {
					t.Fatalf("RecordError = %v; want a reason containing %q", rerr, tt.want)
				}
			})
		}
	})
	t.Run("SwitchedOff", func(t *testing.T) {
		mp, err := NewMapper(m, Normalize{}, "crm.x.fields")
		if err != nil {
			t.Fatal(err)
		}
		rec, rerr := mp.Record(get(map[string]string{"id": "u1", "email": "a@EXAMPLE.com", "phone": "0812 3456 7890", "city": ""}), "row 1")
		if rerr != nil {
			t.Fatal(rerr)
		}
		if rec.Email != "a@EXAMPLE.com" || rec.Phone != "0812 3456 7890" || len(rec.Metadata) != 2 {
			t.Fatalf("Record = %+v; want values untouched and empty metadata kept", rec)
		}
	})
}

func TestNewMapper_Errors(t *testing.T) {
	tests := []struct {
		name string
		m    ColumnMap
		n    Normalize
		want string
	}{
		{"no id", ColumnMap{Email: "e"}, Normalize{}, "crm.x.fields.external_id: required"},
		{"name and template", ColumnMap{ExternalID: "id", Name: "n", NameTemplate: "{a}"}, Normalize{}, "set name or name_template, not both"},
		{"template without field", ColumnMap{ExternalID: "id", NameTemplate: "Mr X"}, Normalize{}, "crm.x.fields.name_template: no {field}"},
		{"unclosed", ColumnMap{ExternalID: "id", NameTemplate: "{a"}, Normalize{}, "unclosed {"},
		{"region", ColumnMap{ExternalID: "id"}, Normalize{PhoneRegion: "XX"}, `phone region "XX" is not a supported`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewMapper(tt.m, tt.n, "crm.x.fields")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v; want %q", err, tt.want)
			}
		})
	}
}

func TestMapper_Check(t *testing.T) {
	mp, err := NewMapper(ColumnMap{ExternalID: "id", Email: "mail"}, DefaultNormalize(), "crm.sql.columns")
	if err != nil {
		t.Fatal(err)
	}
	err = mp.Check(func(f string) bool { return f == "id" }, "table users")
	if err == nil || err.Error() != `crm.sql.columns: field "mail" is mapped but table users has no such field` {
		t.Fatalf("Check = %v", err)
	}
}

func TestCSV_Normalize(t *testing.T) {
	p := writeFile(t, "u.csv", "id,email,name,tel\n1,Ada@Example.COM,Ada   Lovelace,0812-3456-7890\n2,b@b.co,B,12\n")
	src, err := NewCSV(CSVOptions{Path: p, Columns: ColumnMap{ExternalID: "id", Email: "email", Name: "name", Phone: "tel"},
		Normalize: Normalize{LowerEmailDomain: true, CollapseNameSpace: true, PhoneRegion: "ID"}})
	if err != nil {
		t.Fatal(err)
	}
	recs, bad, fatal := collect(t, src)
	if fatal != nil || len(recs) != 1 || len(bad) != 1 {
		t.Fatalf("records %v, rejected %q, fatal %v", recs, bad, fatal)
	}
	if r := recs[0]; r.Email != "Ada@example.com" || r.Name != "Ada Lovelace" || r.Phone != "+6281234567890" {
		t.Errorf("record = %+v", r)
	}
	if want := `line 3: phone (column "tel") is not a valid phone number for region ID`; bad[0] != want {
		t.Errorf("rejected = %q, want %q", bad[0], want)
	}
}

// Normalise, then validate: with CollapseNameSpace a newline or tab inside
// a name (or a template part) becomes a space before the control-character
// check; without it the newline is rejected; other controls always are.
func TestMapper_NameWhiteSpaceBeforeValidation(t *testing.T) {
	for _, tc := range []struct {
		name     string
		m        ColumnMap
		collapse bool
		vals     []string
		want     string // name, or the reject reason
	}{
		{"collapsed", ColumnMap{ExternalID: "id", Name: "n"}, true, []string{"u1", "Anderson\nSecond\tLine"}, "Anderson Second Line"},
		{"not collapsed", ColumnMap{ExternalID: "id", Name: "n"}, false, []string{"u1", "Anderson\nSecond"}, `name (column "n") contains control character U+000A`},
		{"template always collapses", ColumnMap{ExternalID: "id", NameTemplate: "{f} {l}"}, false, []string{"u1", "Ada\nMaria", "Lovelace"}, "Ada Maria Lovelace"},
		{"control remains", ColumnMap{ExternalID: "id", Name: "n"}, true, []string{"u1", "Bell\x07"}, `name (column "n") contains control character U+0007`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mp, err := NewMapper(tc.m, Normalize{TrimSpace: true, CollapseNameSpace: tc.collapse}, "crm.x.fields")
			if err != nil {
				t.Fatal(err)
			}
			rec, rerr := mp.Record(tc.vals, "row 1")
			got := rec.Name
			if rerr != nil {
				got = rerr.Reason
			}
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestCollapseSpace(t *testing.T) {
	for in, want := range map[string]string{
		"": "", "Ada": "Ada", "Ada Lovelace": "Ada Lovelace", " Ada": "Ada", "Ada ": "Ada", "  ": "",
		"Ada  Lovelace": "Ada Lovelace", "Ada\nLovelace": "Ada Lovelace", "Ada\t \r\nL": "Ada L",
		"Ada\u00a0Lovelace": "Ada Lovelace", "王 小明": "王 小明", "a b c": "a b c",
	} {
		if got := collapseSpace(in); got != want {
			t.Errorf("collapseSpace(%q) = %q, want %q", in, got, want)
		}
	}
}
