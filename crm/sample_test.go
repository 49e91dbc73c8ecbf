package crm_test

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/plugipay-sync/plugipay-sync/crm"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

// sampleColumns maps testdata/sample_users.csv, as the demo config does.
var sampleColumns = crm.ColumnMap{
	ExternalID: "id", Email: "email", Name: "full_name", Phone: "phone", TaxID: "npwp",
	Metadata: map[string]string{"plan": "plan", "city": "city", "signupSource": "signup_source"},
}

// TestCSV_Sample reads the demo export (crm/internal/gensample): 1,195 good
// records and exactly the 5 bad rows its generator documents.
func TestCSV_Sample(t *testing.T) {
	src, err := crm.NewCSV(crm.CSVOptions{Path: "testdata/sample_users.csv", Columns: sampleColumns})
	if err != nil {
		t.Fatal(err)
	}
	var good int
	var rejects []string
	ids := map[string]bool{}
	for rec, err := range src.Records(context.Background()) {
		var rerr *sync.RecordError
		switch {
		case errors.As(err, &rerr):
			rejects = append(rejects, rerr.Error())
		case err != nil:
			t.Fatal(err)
		default:
			good++
			if ids[rec.ExternalID] {
				t.Errorf("duplicate id %s", rec.ExternalID)
			}
			ids[rec.ExternalID] = true
			if rec.Metadata["plan"] == "" || rec.Metadata["city"] == "" || rec.Metadata["signupSource"] == "" {
				t.Errorf("%s: metadata %v missing a value", rec.Ref, rec.Metadata)
			}
		}
	}
	if good != 1195 {
		t.Errorf("good records = %d, want 1195", good)
	}
	want := []string{
		`line 138 (externalId "usr_000137"): invalid email: missing '@' or angle-addr`,
		`line 403 (externalId "usr_000402"): invalid email: no angle-addr`,
		`line 656: missing externalId (column "id" is empty)`,
		`line 872: missing externalId (column "id" is empty)`,
		`line 1099 (externalId "usr_001098"): name (column "full_name") is 300 characters, Plugipay allows at most 255`,
	}
	if !reflect.DeepEqual(rejects, want) {
		t.Errorf("rejects =\n%q\nwant\n%q", rejects, want)
	}
}
