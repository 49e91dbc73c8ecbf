package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, body string
		code       int
		want       string
	}{
		{"plugipay", "plugipay:\n  key_id: k\n  secret: s\n", ExitOK, "valid (source csv, destination plugipay,"},
		{"paygate", "destination:\n  type: paygate\n  paygate:\n    base_url: https://api.example.com/v1\n    secret_key: sk_test_abc\n", ExitOK, "destination paygate"},
		{"pin defaults to update-only", "destination:\n  type: pin\n  pin:\n    base_url: https://api.example.com/1\n    secret_key: pk\n", ExitOK, "destination pin"},
		{"pin with upsert", "destination:\n  type: pin\n  pin:\n    base_url: https://api.example.com/1\n    secret_key: pk\nsync:\n  mode: upsert\n", ExitFailed,
			`sync.mode: mode "upsert" creates customers, which this destination does not allow; use "update-only" (destination pin)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := filepath.Join(dir, tc.name+".yaml")
			body := "crm:\n  csv:\n    path: users.csv\n    columns:\n      external_id: id\n" + tc.body
			if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			code, out, errOut := runCommand(t, "check-config", "--config", cfg)
			if code != tc.code || !strings.Contains(out+errOut, tc.want) {
				t.Fatalf("exit %d, want %d; output:\n%s%s\nwant %q", code, tc.code, out, errOut, tc.want)
			}
		})
	}
}
