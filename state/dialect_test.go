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
	if got := dialectSQLite.bind(`a = ?`); got != `a = ?` {
		t.Errorf("SQLite bind changed the query: %q", got)
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
