package crm_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/plugipay-sync/plugipay-sync/crm"
)

// Normalise, then validate (issue 13): with collapse_name_space (the
// default) a newline of a quoted multi-line field or a tab inside a name
// becomes a space before the name is checked; a control character that
// remains is still rejected. With collapsing off, the newline is rejected
// as before (TestCSV_MultilineRejectRef).
func TestCSV_NameWhiteSpaceCollapsedBeforeValidation(t *testing.T) {
	content := testHeader +
		"u1,,\"Anderson\nSecondLine\",,,\n" +
		"u2,,\"Tab\tName \r\n Three\",,,\n" +
		"u3,,\"Bell\x07Name\",,,\n"
	res := read(t, crm.CSVOptions{Path: writeFile(t, content), Columns: testColumns, Normalize: crm.DefaultNormalize()})
	var names []string
	for _, r := range res.records {
		names = append(names, r.ExternalID+"="+r.Name)
	}
	if want := []string{"u1=Anderson SecondLine", "u2=Tab Name Three"}; !reflect.DeepEqual(names, want) {
		t.Errorf("names = %q, want %q", names, want)
	}
	if want := []string{`line 6 (externalId "u3"): name (column "name") contains control character U+0007`}; !reflect.DeepEqual(res.rejects, want) {
		t.Errorf("rejects = %q, want %q", res.rejects, want)
	}
}

// The CSV source builds a name from several columns with name_template,
// like the other sources: white space collapsed (always, for a template),
// an empty part leaving no stray space, each part checked.
func TestCSV_NameTemplate(t *testing.T) {
	content := "ID,First Name,Last Name,email\n" +
		"u1,Ada,Lovelace,\n" +
		"u2,,Hopper,\n" +
		"u3,\"Grace\nMurray\",Hopper,\n" +
		"u4,Bad\x01,Name,\n" +
		"u5,,,\n"
	cols := crm.ColumnMap{ExternalID: "id", Email: "email", NameTemplate: "{first name} {Last Name}"}
	res := read(t, crm.CSVOptions{Path: writeFile(t, content), Columns: cols})
	var names []string
	for _, r := range res.records {
		names = append(names, r.ExternalID+"="+r.Name)
	}
	if want := []string{"u1=Ada Lovelace", "u2=Hopper", "u3=Grace Murray Hopper", "u5="}; !reflect.DeepEqual(names, want) {
		t.Errorf("names = %q, want %q", names, want)
	}
	if want := []string{`line 6 (externalId "u4"): name (column "First Name") contains control character U+0001`}; !reflect.DeepEqual(res.rejects, want) {
		t.Errorf("rejects = %q, want %q", res.rejects, want)
	}

	t.Run("LongName", func(t *testing.T) {
		long := strings.Repeat("a", 200)
		res := read(t, crm.CSVOptions{Path: writeFile(t, "id,f,l\nu1,"+long+","+long+"\n"),
			Columns: crm.ColumnMap{ExternalID: "id", NameTemplate: "{f} {l}"}})
		if want := []string{`line 2 (externalId "u1"): name (template) is 401 characters, Plugipay allows at most 255`}; !reflect.DeepEqual(res.rejects, want) {
			t.Errorf("rejects = %q, want %q", res.rejects, want)
		}
	})
	t.Run("MissingColumn", func(t *testing.T) {
		path := writeFile(t, "id,first\nu1,Ada\n")
		res := read(t, crm.CSVOptions{Path: path, Columns: crm.ColumnMap{ExternalID: "id", NameTemplate: "{first} {middle}"}})
		want := `crm.csv.columns.name_template: column "middle" not in header of ` + path + ` (have: id, first)`
		if res.fatal == nil || res.fatal.Error() != want {
			t.Errorf("fatal = %v, want %s", res.fatal, want)
		}
	})
	for _, tc := range []struct {
		name string
		cols crm.ColumnMap
		want string
	}{
		{"NameAndTemplate", crm.ColumnMap{ExternalID: "id", Name: "n", NameTemplate: "{a}"}, "crm.csv.columns: set name or name_template, not both"},
		{"Unclosed", crm.ColumnMap{ExternalID: "id", NameTemplate: "{a"}, `crm.csv.columns.name_template: unclosed { in "{a"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := crm.NewCSV(crm.CSVOptions{Path: "u.csv", Columns: tc.cols}); err == nil || err.Error() != tc.want {
				t.Errorf("NewCSV() = %v, want %q", err, tc.want)
			}
		})
	}
}
