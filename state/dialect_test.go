package state

import "testing"

func TestRebindDollar(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"None", `SELECT 1`, `SELECT 1`},
		{"Numbered", `SELECT a FROM t WHERE a = ? AND b IN (?,?)`, `SELECT a FROM t WHERE a = $1 AND b IN ($2,$3)`},
		{"StringLiteral", `SELECT '?', a FROM t WHERE a = ?`, `SELECT '?', a FROM t WHERE a = $1`},
		{"EscapedQuote", `SELECT 'it''s ?' WHERE a = ?`, `SELECT 'it''s ?' WHERE a = $1`},
		{"QuotedIdent", `SELECT "a?" FROM t WHERE b = ?`, `SELECT "a?" FROM t WHERE b = $1`},
		{"Comment", "-- why?\nSELECT ? -- and ?\n, ?", "-- why?\nSELECT $1 -- and ?\n, $2"},
		{"UnterminatedLiteral", `SELECT ? 'x?`, `SELECT $1 'x?`},
		{"TrailingComment", `SELECT ? -- ?`, `SELECT $1 -- ?`},
		{"Minus", `SELECT a - ? FROM t`, `SELECT a - $1 FROM t`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := rebindDollar(tc.in); got != tc.want {
				t.Errorf("rebindDollar(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
	if got := (&sqlDB{d: dialectSQLite}).bind(`SELECT a FROM mappings WHERE a = ?`); got != `SELECT a FROM mappings WHERE a = ?` {
		t.Errorf("SQLite bind changed the query: %q", got)
	}
	pg := &sqlDB{d: dialectPostgres, schema: `"s"`}
	if got, want := pg.bind(`SELECT a FROM mappings WHERE a = ?`), `SELECT a FROM "s".mappings WHERE a = $1`; got != want {
		t.Errorf("PostgreSQL bind = %q, want %q", got, want)
	}
}

// TestQualify: only table positions are rewritten, so columns, aliases,
// literals and comments that share a table's name are left alone.
func TestQualify(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"From", `SELECT a FROM mappings WHERE b = 1`, `SELECT a FROM "s".mappings WHERE b = 1`},
		{"Alias", `SELECT m.a FROM mappings m WHERE m.b = 1`, `SELECT m.a FROM "s".mappings m WHERE m.b = 1`},
		{"ColumnNamedLikeTable", `SELECT mappings FROM change_version WHERE id = 1`, `SELECT mappings FROM "s".change_version WHERE id = 1`},
		{"QualifiedColumn", `SELECT mappings.a FROM mappings`, `SELECT mappings.a FROM "s".mappings`},
		{"AlreadyQualified", `SELECT a FROM other.mappings`, `SELECT a FROM other.mappings`},
		{"Insert", `INSERT INTO runs (a) VALUES (1)`, `INSERT INTO "s".runs (a) VALUES (1)`},
		{"UpsertUpdateSet", `INSERT INTO mappings (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET a = excluded.a`, `INSERT INTO "s".mappings (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET a = excluded.a`},
		{"Update", `UPDATE failures SET a = 1`, `UPDATE "s".failures SET a = 1`},
		{"Delete", `DELETE FROM seen_in_run WHERE run_id <= 3`, `DELETE FROM "s".seen_in_run WHERE run_id <= 3`},
		{"Join", `SELECT 1 FROM runs r JOIN mappings m ON m.a = r.a`, `SELECT 1 FROM "s".runs r JOIN "s".mappings m ON m.a = r.a`},
		{"NotExistsSubquery", "SELECT 1 FROM mappings m\nWHERE NOT EXISTS (\n\tSELECT 1 FROM seen_in_run s)", "SELECT 1 FROM \"s\".mappings m\nWHERE NOT EXISTS (\n\tSELECT 1 FROM \"s\".seen_in_run s)"},
		{"CreateIfNotExists", `CREATE TABLE IF NOT EXISTS migrations (name TEXT)`, `CREATE TABLE IF NOT EXISTS "s".migrations (name TEXT)`},
		{"CaseInsensitive", `select a from Mappings`, `select a from "s".Mappings`},
		{"Literal", `SELECT 'FROM mappings' FROM runs`, `SELECT 'FROM mappings' FROM "s".runs`},
		{"QuotedIdent", `SELECT 1 FROM "mappings"`, `SELECT 1 FROM "mappings"`},
		{"Comment", "-- FROM mappings\nSELECT 1 FROM runs", "-- FROM mappings\nSELECT 1 FROM \"s\".runs"},
		{"OtherTable", `SELECT 1 FROM pg_locks`, `SELECT 1 FROM pg_locks`},
		{"Subselect", `SELECT 1 FROM (SELECT 1 FROM runs) x`, `SELECT 1 FROM (SELECT 1 FROM "s".runs) x`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := qualify(tc.in, `"s"`); got != tc.want {
				t.Errorf("qualify(%q)\n got %q\nwant %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestValidSchema(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"plugipay_sync", true},
		{"Tenant-42 acme", true},
		{`we"ird`, true},
		{"", false},
		{"pg_catalog", false},
		{"PG_x", false},
		{string(make([]byte, 64)), false},
		{"a\x00b", false},
		{"a\nb", false},
		{"\xff", false},
	} {
		if err := ValidSchema(tc.name); (err == nil) != tc.ok {
			t.Errorf("ValidSchema(%q) = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}
