package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plugipay-sync/plugipay-sync/plugipay"
	"github.com/plugipay-sync/plugipay-sync/plugipay/emulator"
)

// TestOnce_ConflictRecoveryChain checks the 409 chain against the emulator,
// with the externalId filter honoured and ignored (Options.Legacy). Two
// customers were created by another tool and are newer than 100 others, so
// a legacy server's first list page does not hold them:
//   - usr_00199 has the CRM's email: found by externalId, or by email and
//     an exact externalId match;
//   - usr_00198 has an old email, and a decoy customer holds its CRM email:
//     found by externalId; on a legacy server never adopted by email (the
//     decoy), left as conflict_unresolved, and found by the next run's
//     list walk.
func TestOnce_ConflictRecoveryChain(t *testing.T) {
	for _, legacy := range []bool{false, true} {
		t.Run(fmt.Sprintf("Legacy=%t", legacy), func(t *testing.T) {
			dir := t.TempDir()
			e := newE2E(t, writeUsers(t, filepath.Join(dir, "first.csv"), 50), emulator.Options{Legacy: legacy})
			if code, out := e.once(); code != ExitOK {
				t.Fatalf("first run exit %d:\n%s", code, out)
			}
			client := newTestClient(t, e)
			createForeign(t, client, "usr_00198", "old198@example.com")
			createForeign(t, client, "decoy", "user198@example.co.id")
			createForeign(t, client, "usr_00199", "user199@example.co.id")
			e.writeConfig(writeUsers(t, filepath.Join(dir, "all.csv"), 200), "@every 1h")

			before := e.requests()
			code, out := e.once()
			d := e.requests().sub(before)
			t.Logf("legacy=%t: %d list GETs, %d POSTs, %d PATCHes\n%s", legacy, d.lists, d.posts, d.patches, out)
			if legacy {
				if code != ExitPartial {
					t.Fatalf("exit %d, want %d:\n%s", code, ExitPartial, out)
				}
				wantSummary(t, out, "created 148  updated 0  unchanged 50  recovered 1  rejected 0  failed 1")
				if d.lists > 6 {
					t.Errorf("%d list requests; the lookups must not walk every customer", d.lists)
				}
				if got := failureCode(t, e, "usr_00198"); got != "conflict_unresolved" {
					t.Fatalf("usr_00198 failure code %q, want conflict_unresolved", got)
				}
				// The next run walks the list first, finds usr_00198 and
				// fixes its email.
				code, out = e.once()
				if code != ExitOK {
					t.Fatalf("next run exit %d:\n%s", code, out)
				}
				wantSummary(t, out, "created 0  updated 1  unchanged 199  recovered 0  rejected 0  failed 0")
			} else {
				if code != ExitOK {
					t.Fatalf("exit %d:\n%s", code, out)
				}
				wantSummary(t, out, "created 148  updated 0  unchanged 50  recovered 2  rejected 0  failed 0")
				// Both lack the CRM's name and metadata; usr_00198 its email.
				if d.patches != 2 {
					t.Errorf("%d PATCHes, want 2", d.patches)
				}
			}
			if c, _ := e.emu.CustomerByExternalID("usr_00198"); c.Email != "user198@example.co.id" {
				t.Errorf("usr_00198 = %+v", c)
			}
			if c, _ := e.emu.CustomerByExternalID("decoy"); c.Email != "user198@example.co.id" {
				t.Errorf("the decoy was touched: %+v", c)
			}
			if n := e.emu.CustomerCount(); n != 201 {
				t.Errorf("%d customers, want 201", n)
			}
			e.assertNoDuplicates()
		})
	}
}

// failureCode returns the stored failure code of externalID.
func failureCode(t *testing.T, e *e2e, externalID string) string {
	t.Helper()
	db := openState(t, e)
	defer db.Close()
	f, err := db.Failures(context.Background(), []string{externalID})
	if err != nil {
		t.Fatal(err)
	}
	return f[externalID].Code
}

// unmapColumn drops a column mapping from the e2e config.
func (e *e2e) unmapColumn(line string) {
	e.t.Helper()
	b, err := os.ReadFile(e.config)
	if err != nil {
		e.t.Fatal(err)
	}
	s := strings.Replace(string(b), "      "+line+"\n", "", 1)
	if s == string(b) {
		e.t.Fatalf("config has no line %q", line)
	}
	if err := os.WriteFile(e.config, []byte(s), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// TestOnce_FieldOwnership: an unmapped field set by another tool is never
// cleared, and metadata keys the sync does not own survive a metadata
// change.
func TestOnce_FieldOwnership(t *testing.T) {
	dir := t.TempDir()
	csvPath := writeUsers(t, filepath.Join(dir, "u.csv"), 20)
	e := newE2E(t, csvPath, emulator.Options{})
	e.unmapColumn("phone: phone")
	if code, out := e.once(); code != ExitOK {
		t.Fatalf("first run exit %d:\n%s", code, out)
	}
	// Another tool sets a phone on two customers and a metadata key of its
	// own on one.
	client := newTestClient(t, e)
	ctx := context.Background()
	for _, id := range []string{"usr_00003", "usr_00004"} {
		c, _ := e.emu.CustomerByExternalID(id)
		p := plugipay.CustomerParams{Phone: plugipay.String("+6281100000")}
		if id == "usr_00003" {
			p.Metadata = map[string]string{"plan": "pro", "city": "Bandung", "signup_source": "web", "crm_score": "9"}
		}
		if _, err := client.Customers.Update(ctx, c.ID, p, ""); err != nil {
			t.Fatal(err)
		}
	}
	// The CRM changes usr_00003's plan and name.
	b, _ := os.ReadFile(csvPath)
	s := strings.Replace(string(b), "usr_00003,user3@example.co.id,Pengguna 3,,,pro,", "usr_00003,user3@example.co.id,Pengguna Tiga,,,enterprise,", 1)
	if err := os.WriteFile(csvPath, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	before := e.requests()
	code, out := e.once()
	if code != ExitOK {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	wantSummary(t, out, "created 0  updated 1  unchanged 19")
	if d := e.requests().sub(before); d.patches != 1 || d.total != 2+preflightLists+preflightGets {
		t.Errorf("%d PATCHes, %d requests; want one GET and one PATCH besides the preflight", d.patches, d.total)
	}
	c, _ := e.emu.CustomerByExternalID("usr_00003")
	if c.Name != "Pengguna Tiga" || c.Metadata["plan"] != "enterprise" {
		t.Errorf("the CRM change was not synced: %+v", c)
	}
	if c.Metadata["crm_score"] != "9" {
		t.Errorf("foreign metadata key lost: %v", c.Metadata)
	}
	for _, id := range []string{"usr_00003", "usr_00004"} {
		if c, _ := e.emu.CustomerByExternalID(id); c.Phone != "+6281100000" {
			t.Errorf("%s: the unmapped phone was cleared: %q", id, c.Phone)
		}
	}

	// A cold start compares managed fields only: the foreign phone and
	// metadata key cost no write.
	e.removeState()
	before = e.requests()
	code, out = e.once()
	if code != ExitOK {
		t.Fatalf("cold run exit %d:\n%s", code, out)
	}
	wantSummary(t, out, "created 0  updated 0  unchanged 20")
	if d := e.requests().sub(before); d.posts+d.patches != 0 {
		t.Errorf("cold start wrote %d times", d.posts+d.patches)
	}
}
