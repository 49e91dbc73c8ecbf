package main

import (
	"database/sql"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plugipay-sync/plugipay-sync/crm/hubspot/fake"
	"github.com/plugipay-sync/plugipay-sync/plugipay/emulator"
)

// writeSourceConfig replaces the e2e config's crm section with crm (YAML
// indented under "crm:") and its sync section with syncYAML.
func (e *e2e) writeSourceConfig(crm, syncYAML string) {
	e.t.Helper()
	cfg := fmt.Sprintf(`schedule: "@every 1h"
listen: "127.0.0.1:0"
state:
  path: %s
plugipay:
  base_url: %s
  key_id: %s
  secret: ${TEST_SECRET}
  reads_per_second: 0
  writes_per_second: 0
  max_attempts: 2
crm:
%s
sync:
  concurrency: 4
%s
log:
  level: warn
`, e.state, e.url, testKeyID, crm, syncYAML)
	if err := os.WriteFile(e.config, []byte(cfg), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// TestOnce_SQLIncremental runs the daemon over a SQLite CRM table in
// incremental mode with the archive policy: an incremental run syncs only
// what changed and archives nothing; the scheduled full scan archives the
// customer of a hard-deleted row.
func TestOnce_SQLIncremental(t *testing.T) {
	e := newE2E(t, filepath.Join(t.TempDir(), "unused.csv"), emulator.Options{})
	crmPath := filepath.Join(e.dir, "crm.db")
	db, err := sql.Open("sqlite3", crmPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.Exec(q, args...); err != nil {
			t.Fatal(err)
		}
	}
	exec(`CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT, first TEXT, last TEXT, phone TEXT, deleted INTEGER NOT NULL DEFAULT 0, updated_at TIMESTAMP NOT NULL)`)
	base := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	for i := 1; i <= 20; i++ {
		exec(`INSERT INTO users VALUES (?, ?, ?, ?, ?, 0, ?)`, i, fmt.Sprintf("user%d@EXAMPLE.com", i), "First ", fmt.Sprintf(" Last%d", i),
			"0812 3456 78"+fmt.Sprintf("%02d", i), base.Add(time.Duration(i)*time.Minute).Format("2006-01-02 15:04:05"))
	}
	e.writeSourceConfig(`  type: sql
  normalize:
    phone_region: ID
  sql:
    driver: sqlite
    dsn: `+crmPath+`
    table: users
    deleted_column: deleted
    page_size: 7
    incremental: true
    overlap: 2m
    full_scan_every: 2
    columns:
      external_id: id
      email: email
      name_template: "{first} {last}"
      phone: phone`, "  deletion: archive\n  max_archive_ratio: 1")

	code, out := e.once()
	if code != ExitOK {
		t.Fatalf("run 1 exit %d:\n%s", code, out)
	}
	wantSummary(t, out, "read 20  created 20")
	c, ok := e.emu.CustomerByExternalID("7")
	if !ok || c.Email != "user7@example.com" || c.Name != "First Last7" || c.Phone != "+6281234567807" {
		t.Fatalf("customer 7 = %+v, %v; want normalised email, name and E.164 phone", c, ok)
	}

	exec(`UPDATE users SET first = 'Changed', updated_at = ? WHERE id = 3`, base.Add(time.Hour).Format("2006-01-02 15:04:05"))
	exec(`DELETE FROM users WHERE id = 5`)
	code, out = e.once()
	if code != ExitOK {
		t.Fatalf("run 2 exit %d:\n%s", code, out)
	}
	// Incremental: row 3 and the rows inside the 2-minute overlap below the
	// watermark (18, 19, 20: updated_at >= 10:20 - 2m); nothing archived,
	// the read was partial.
	wantSummary(t, out, "read 4  created 0  updated 1  unchanged 3")
	wantSummary(t, out, "archived 0")

	code, out = e.once()
	if code != ExitOK {
		t.Fatalf("run 3 exit %d:\n%s", code, out)
	}
	wantSummary(t, out, "read 19  created 0  updated 0  unchanged 19")
	wantSummary(t, out, "archived 1")
	if c, _ := e.emu.CustomerByExternalID("5"); c.Metadata["archived"] != "true" {
		t.Fatalf("customer 5 metadata = %v; want archived", c.Metadata)
	}
}

func TestOnce_JSONL(t *testing.T) {
	e := newE2E(t, filepath.Join(t.TempDir(), "unused.csv"), emulator.Options{})
	var b strings.Builder
	for i := 1; i <= 25; i++ {
		fmt.Fprintf(&b, `{"id":"j%d","contact":{"email":"j%d@example.com"},"name":"  Jay   %d "}`+"\n", i, i, i)
	}
	b.WriteString("{not json}\n")
	p := filepath.Join(e.dir, "users.jsonl")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	e.writeSourceConfig(`  type: jsonl
  jsonl:
    path: `+p+`
    fields: {external_id: id, email: contact.email, name: name}`, "")
	code, out := e.once()
	if code != ExitPartial {
		t.Fatalf("exit %d, want %d (one bad line):\n%s", code, ExitPartial, out)
	}
	wantSummary(t, out, "read 26  created 25  updated 0  unchanged 0  recovered 0  rejected 1")
	if c, _ := e.emu.CustomerByExternalID("j3"); c.Name != "Jay 3" || c.Email != "j3@example.com" {
		t.Fatalf("customer j3 = %+v", c)
	}
}

func TestReadConfigFile_Sources(t *testing.T) {
	base := "plugipay: {key_id: k, secret: s}\n"
	t.Run("SQLDefaults", func(t *testing.T) {
		cfg, err := ReadConfigFile(writeConfig(t, base+"crm:\n  type: sql\n  sql:\n    driver: postgres\n    dsn: postgres://x@h/db\n    table: users\n    columns: {external_id: id}\n"), env(nil))
		if err != nil {
			t.Fatal(err)
		}
		if s := cfg.CRM.SQL; s.PageSize != 1000 || s.Overlap != 5*time.Minute || s.FullScanEvery != 24 || s.IDColumn != "id" || s.UpdatedAtColumn != "updated_at" {
			t.Fatalf("sql defaults = %+v", s)
		}
	})
	tests := []struct{ name, yaml, want string }{
		{"sql unknown key", "crm:\n  type: sql\n  sql:\n    driver: postgres\n    tabel: x\n", "field tabel not found in type main.plain"},
		{"sql driver", "crm:\n  type: sql\n  sql: {driver: oracle}\n", `crm.sql.driver: must be postgres, mysql (also MariaDB) or sqlite (got "oracle")`},
		{"sql no dsn", "crm:\n  type: sql\n  sql: {driver: mysql}\n", "crm.sql.dsn: required"},
		{"sql table and query", "crm:\n  type: sql\n  sql: {driver: mysql, dsn: x, table: t, query: SELECT 1}\n", "crm.sql.table: set table (a table name) or query (a SELECT), exactly one of them"},
		{"sql never full", "crm:\n  type: sql\n  sql: {driver: mysql, dsn: x, table: t, incremental: true, full_scan_every: 0, columns: {external_id: id}}\n", "crm.sql.full_scan_every: with incremental: true set full_scan_every or full_scan_interval"},
		{"sql no id", "crm:\n  type: sql\n  sql: {driver: mysql, dsn: x, table: t}\n", "crm.sql.columns.external_id: required: the column holding the CRM's user id"},
		{"jsonl no path", "crm:\n  type: jsonl\n", "crm.jsonl.path: required with crm.type jsonl"},
		{"jsonl template", "crm:\n  type: jsonl\n  jsonl: {path: u.jsonl, fields: {external_id: id, name_template: \"{first\"}}\n", "crm.jsonl.fields.name_template: unclosed {"},
		{"name and template", "crm:\n  type: jsonl\n  jsonl: {path: u.jsonl, fields: {external_id: id, name: n, name_template: \"{a}\"}}\n", "crm.jsonl.fields.name_template: set name or name_template, not both"},
		{"csv template", "crm:\n  csv: {path: u.csv, columns: {external_id: id, name_template: \"{a} {b\"}}\n", "crm.csv.columns.name_template: unclosed {"},
		{"csv name and template", "crm:\n  csv: {path: u.csv, columns: {external_id: id, name: n, name_template: \"{a}\"}}\n", "crm.csv.columns.name_template: set name or name_template, not both"},
		{"hubspot no token", "crm:\n  type: hubspot\n  hubspot: {fields: {external_id: id}}\n", "crm.hubspot.token: required with crm.type hubspot"},
		{"hubspot http", "crm:\n  type: hubspot\n  hubspot: {token: t, base_url: \"http://api.hubapi.com\", fields: {external_id: id}}\n", "crm.hubspot.base_url: plain http would send the token in the clear"},
		{"hubspot prefix", "crm:\n  type: hubspot\n  hubspot: {token: t, path_prefix: /crm/v4/objects, fields: {external_id: id}}\n", "crm.hubspot.path_prefix: must be /crm/v3/objects or a dated prefix"},
		{"hubspot no id", "crm:\n  type: hubspot\n  hubspot: {token: t}\n", "crm.hubspot.fields.external_id: required: the property holding the CRM's user id"},
		{"phone region", "crm:\n  normalize: {phone_region: XX}\n  csv: {path: u.csv, columns: {external_id: id}}\n", `crm.normalize.phone_region: must be an ISO 3166 region code such as ID, US or GB, or empty to leave phones as they are (got "XX")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadConfigFile(writeConfig(t, base+tt.yaml), env(nil))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

// TestOnce_HubSpot runs the daemon against the fake HubSpot: a full read
// creates the customers, the archived contact is archived.
func TestOnce_HubSpot(t *testing.T) {
	e := newE2E(t, filepath.Join(t.TempDir(), "unused.csv"), emulator.Options{})
	hs := fake.New(fake.Options{Token: "pat-e2e"})
	srv := httptest.NewServer(hs)
	defer srv.Close()
	now := time.Now()
	for i := 1; i <= 120; i++ {
		hs.Put(fake.Contact{ID: i, Updated: now.Add(-3*time.Hour + time.Duration(i)*time.Minute), Props: map[string]string{
			"email": fmt.Sprintf("h%d@example.com", i), "firstname": "H", "lastname": fmt.Sprint(i), "company": "Acme"}})
	}
	e.writeSourceConfig(`  type: hubspot
  hubspot:
    base_url: `+srv.URL+`
    path_prefix: /crm/objects/2026-09
    token: pat-e2e
    incremental: true
    fields: {external_id: id, email: email, name_template: "{firstname} {lastname}", metadata: {company: company}}`,
		"  deletion: archive\n  max_archive_ratio: 1")
	code, out := e.once()
	if code != ExitOK {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	wantSummary(t, out, "read 120  created 120")
	hs.Archive(9, time.Now())
	hs.Put(fake.Contact{ID: 10, Updated: time.Now().Add(-10 * time.Minute), Props: map[string]string{"email": "new@example.com", "firstname": "H", "lastname": "10", "company": "Acme"}})
	code, out = e.once()
	if code != ExitOK {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	// Incremental: contact 10 and, inside the 5-minute lookback below the
	// newest change, 115-120 by search; 9 from the archived list. The
	// partial read archives nothing.
	wantSummary(t, out, "read 8  created 0  updated 1  unchanged 6")
	wantSummary(t, out, "archived 0")
	if c, _ := e.emu.CustomerByExternalID("10"); c.Email != "new@example.com" || c.Metadata["company"] != "Acme" {
		t.Fatalf("customer 10 = %+v", c)
	}
}
