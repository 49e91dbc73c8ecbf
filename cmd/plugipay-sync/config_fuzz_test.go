package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzConfig feeds arbitrary bytes through ExpandEnv, ParseConfig and
// Validate, and through ReadConfigFile. None may panic, and no error may
// carry the secret, which the input can only reach through ${SECRET}. Its
// seeds found the secret quoted back by Validate and the YAML decoder when
// referenced from the wrong key (fixed by redactConfigSecrets).
func FuzzConfig(f *testing.F) {
	const secret = "sk_fuzz_0123456789"
	for _, s := range []string{
		"plugipay:\n  base_url: https://plugipay.com\n  key_id: k\n  secret: ${SECRET}\ncrm:\n  type: csv\n  csv:\n    path: u.csv\n    columns: {external_id: id}\n",
		"plugipay:\n  base_url: ${SECRET}\n  key_id: k\n  secret: ${SECRET}\n",
		"plugipay:\n  secret: ${SECRET}\n  timeout: ${SECRET}\n",
		"schedule: ${SECRET}\n",
		"schedule: \"not cron\"\n",
		"shedule: x\n",
		"plugipay: [${SECRET}]\n",
		"state: {path: ${MISSING}}\n",
		"state: {path: ${MISSING:-x.db}}\n",
		"listen: $${SECRET}\n",
		"# ${SECRET}\n",
		"a: &a [*a]\n",
		"crm: {type: csv, csv: {path: u.csv, columns: {external_id: id, metadata: {\"\": x}}}}\n",
		"\t\x00\xff",
		"",
	} {
		f.Add([]byte(s))
	}
	lookup := env(map[string]string{"SECRET": secret})
	f.Fuzz(func(t *testing.T, data []byte) {
		if bytes.Contains(data, []byte(secret)) {
			t.Skip("the input carries the secret itself")
		}
		// ExpandEnv, ParseConfig and Validate directly: none may panic.
		if b, err := ExpandEnv(data, lookup); err == nil {
			if cfg, err := ParseConfig(bytes.NewReader(b)); err == nil {
				_ = cfg.Validate()
			}
		}
		// ReadConfigFile, as the daemon loads it: no error may quote the
		// secret.
		path := filepath.Join(t.TempDir(), "config.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadConfigFile(path, lookup); err != nil && strings.Contains(err.Error(), secret) {
			t.Fatalf("config error carries the secret: %v\nconfig:\n%s", err, data)
		}
	})
}
