package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/plugipay-sync/plugipay-sync/plugipay/emulator"
)

func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := vars[k]
		return v, ok
	}
}

// validBase is the smallest valid config; cases append or replace keys.
const validBase = `
plugipay:
  key_id: key_1
  secret: ${SECRET}
crm:
  type: csv
  csv:
    path: users.csv
    columns:
      external_id: id
`

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReadConfigFile_Valid(t *testing.T) {
	p := writeConfig(t, validBase+"schedule: \"*/10 * * * *\"\nsync:\n  concurrency: 4\n")
	cfg, err := ReadConfigFile(p, env(map[string]string{"SECRET": "sk_live_x"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Plugipay.Secret != "sk_live_x" {
		t.Errorf("secret not expanded: %q", cfg.Plugipay.Secret)
	}
	if cfg.Plugipay.BaseURL != DefaultBaseURL {
		t.Errorf("base_url = %q, want default %q", cfg.Plugipay.BaseURL, DefaultBaseURL)
	}
	if cfg.Sync.Concurrency != 4 || cfg.Sync.BatchSize != 500 {
		t.Errorf("sync = %+v; want concurrency 4 and default batch 500", cfg.Sync)
	}
	if cfg.Plugipay.Timeout != 30*time.Second {
		t.Errorf("timeout = %s", cfg.Plugipay.Timeout)
	}
}

func TestReadConfigFile_EnvFallback(t *testing.T) {
	p := writeConfig(t, `
crm:
  csv:
    path: u.csv
    columns: {external_id: id}
`)
	cfg, err := ReadConfigFile(p, env(map[string]string{
		"PLUGIPAY_KEY_ID": "key_env", "PLUGIPAY_SECRET": "sk_env", "PLUGIPAY_BASE_URL": "http://127.0.0.1:9999",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Plugipay.KeyID != "key_env" || cfg.Plugipay.Secret != "sk_env" || cfg.Plugipay.BaseURL != "http://127.0.0.1:9999" {
		t.Errorf("fallbacks not applied: %+v", cfg.Plugipay)
	}
}

func TestReadConfigFile_Invalid(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown key", validBase + "shedule: \"@hourly\"\n", "field shedule not found in type main.Config"},
		{"misspelt nested key", validBase + "state:\n  pth: x.db\n", "field pth not found in type main.StateConfig"},
		{"bad cron", validBase + "schedule: \"every five minutes\"\n", `schedule: not a cron expression`},
		{"cron never fires", validBase + "schedule: \"0 0 31 2 *\"\n", `schedule: never fires (no such date in the next five years); check the day-of-month and month fields (got "0 0 31 2 *")`},
		{"every millisecond", validBase + "schedule: \"@every 1ms\"\n", `schedule: fires more often than once a second; use at least "@every 1s" (minutes are usual) (got "@every 1ms")`},
		{"every zero", validBase + "schedule: \"@every 0s\"\n", `schedule: fires more often than once a second; use at least "@every 1s" (minutes are usual) (got "@every 0s")`},
		{"retry-after cap", strings.Replace(validBase, "plugipay:", "plugipay:\n  max_retry_after: 48h", 1), `plugipay.max_retry_after: must be between 1s and 1h, e.g. 1m`},
		{"break after zero", validBase + "sync:\n  break_after: 0\n", `sync.break_after: must be at least 1`},
		{"stale runs negative", validBase + "health:\n  stale_after_runs: -1\n", `health.stale_after_runs: must not be negative (0 turns the check off)`},
		{"bad listen", validBase + "listen: \"9464\"\n", `listen: must be host:port or :port, e.g. ":9464"; empty disables the metrics listener (got "9464")`},
		{"base url not a url", strings.Replace(validBase, "plugipay:", "plugipay:\n  base_url: plugipay.com", 1), `plugipay.base_url: must be an http(s) URL with a host, e.g. https://plugipay.com (got "plugipay.com")`},
		{"plain http remote", strings.Replace(validBase, "plugipay:", "plugipay:\n  base_url: http://api.example.com", 1), `plugipay.base_url: plain http is allowed only for loopback addresses; use https, or set plugipay.insecure_http: true (got "http://api.example.com")`},
		{"missing secret", strings.Replace(validBase, "${SECRET}", `""`, 1), "plugipay.secret: required; set PLUGIPAY_SECRET, or reference a variable as secret: ${PLUGIPAY_SECRET}"},
		{"unset env var", strings.Replace(validBase, "${SECRET}", "${NOPE}", 1), "environment variable NOPE is not set (referenced as ${NOPE}); export it (or NOPE_FILE naming a file that holds it) or give a default as ${NOPE:-value}"},
		{"no csv path", "plugipay: {key_id: k, secret: s}\ncrm:\n  type: csv\n", "crm.csv.path: required with crm.type csv: the CSV export to read"},
		{"unknown crm", strings.Replace(validBase, "type: csv", "type: salesforce", 1), `crm.type: unknown source; supported: csv, jsonl, sql, hubspot (got "salesforce")`},
		{"no external id column", "plugipay: {key_id: k, secret: s}\ncrm:\n  csv:\n    path: u.csv\n", "crm.csv.columns.external_id: required: the column holding the CRM's user id"},
		{"concurrency", validBase + "sync:\n  concurrency: 0\n", `sync.concurrency: must be between 1 and 64 (got "0")`},
		{"retry max below min", validBase + "sync:\n  retry_min: 1h\n  retry_max: 1m\n", `sync.retry_max: must be at least sync.retry_min (1h0m0s) (got "1m0s")`},
		{"bad duration", validBase + "sync:\n  retry_min: soon\n", "cannot unmarshal !!str `soon` into time.Duration"},
		{"log format", validBase + "log:\n  format: xml\n", `log.format: must be json or console (got "xml")`},
		{"empty state path", validBase + "state:\n  path: \"\"\n", "state.path: required"},
		{"unknown state driver", validBase + "state:\n  driver: mysql\n", `state.driver: must be sqlite (a file on one machine, the default) or postgres (a schema replicas share) (got "mysql")`},
		{"postgres without dsn", validBase + "state:\n  driver: postgres\n", "state.dsn: required with state.driver postgres: a connection string such as postgres://sync@db:5432/plugipay?sslmode=verify-full; set state.dsn, state.dsn_file, or PLUGIPAY_STATE_DSN"},
		{"postgres dsn does not parse", validBase + "state:\n  driver: postgres\n  dsn: \"postgres://u:pw@h:notaport/db\"\n", "state.dsn: not a PostgreSQL connection string; use postgres://user@host:5432/db?sslmode=... or key=value pairs"},
		{"postgres reserved schema", validBase + "state:\n  driver: postgres\n  dsn: postgres://h/db\n  schema: pg_temp\n", `state.schema: invalid schema name: "pg_temp": names starting with pg_ are reserved by PostgreSQL; use a name such as plugipay_sync (got "pg_temp")`},
		{"postgres dsn twice", validBase + "state:\n  driver: postgres\n  dsn: postgres://h/db\n  dsn_file: /run/secrets/dsn\n", `state.dsn_file: give the connection string once: state.dsn or state.dsn_file, not both (got "[redacted]")`},
		{"postgres dsn file missing", validBase + "state:\n  driver: postgres\n  dsn_file: /nonexistent/dsn\n", `state.dsn_file: cannot read it: no such file or directory (got "[redacted]")`},
		{"dsn with sqlite", validBase + "state:\n  dsn: postgres://h/db\n", "state.dsn: is for state.driver: postgres; remove it, or set state.driver: postgres to keep the state in PostgreSQL"},
		{"short trigger token", validBase + "realtime:\n  token: short\n", "realtime.token: must be at least 16 characters (e.g. openssl rand -hex 32)"},
		{"realtime listen", validBase + "realtime:\n  token: 0123456789abcdef\n  listen: \"9465\"\n", `realtime.listen: must be host:port, e.g. "127.0.0.1:9465" (loopback) (got "9465")`},
		{"too many ids", validBase + "realtime:\n  max_ids: 0\n", `realtime.max_ids: must be between 1 and 100000 (got "0")`},
		{"notify without postgres", validBase + "realtime:\n  postgres:\n    enabled: true\n", "realtime.postgres.enabled: needs crm.type: sql with crm.sql.driver: postgres (MariaDB/MySQL: a short schedule with crm.sql.incremental: true instead)"},
		{"webhooks without hubspot", validBase + "realtime:\n  hubspot:\n    client_secret: s3cr3t-s3cr3t\n", "realtime.hubspot.client_secret: needs crm.type: hubspot"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadConfigFile(writeConfig(t, tt.yaml), env(map[string]string{"SECRET": "sk"}))
			if err == nil {
				t.Fatalf("no error; want %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %q\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

// TestReadConfigFile_StateDSN: state.dsn of the postgres driver comes from
// the key, else the file dsn_file names, else PLUGIPAY_STATE_DSN or the
// file PLUGIPAY_STATE_DSN_FILE names.
func TestReadConfigFile_StateDSN(t *testing.T) {
	dir := t.TempDir()
	dsnFile := filepath.Join(dir, "dsn")
	if err := os.WriteFile(dsnFile, []byte("postgres://from-file/db\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, state string
		env         map[string]string
		want        string
	}{
		{"Key", "  dsn: postgres://from-key/db\n", map[string]string{"PLUGIPAY_STATE_DSN": "postgres://from-env/db"}, "postgres://from-key/db"},
		{"KeyFile", "  dsn_file: " + dsnFile + "\n", map[string]string{"PLUGIPAY_STATE_DSN": "postgres://from-env/db"}, "postgres://from-file/db"},
		{"Env", "", map[string]string{"PLUGIPAY_STATE_DSN": "postgres://from-env/db"}, "postgres://from-env/db"},
		{"EnvFile", "", map[string]string{"PLUGIPAY_STATE_DSN_FILE": dsnFile}, "postgres://from-file/db"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.env["SECRET"] = "sk"
			p := writeConfig(t, validBase+"state:\n  driver: postgres\n"+tc.state)
			cfg, err := ReadConfigFile(p, env(tc.env))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.State.DSN != tc.want || cfg.State.Schema != "plugipay_sync" {
				t.Errorf("state = %+v, want dsn %q in schema plugipay_sync", cfg.State, tc.want)
			}
		})
	}
}

func TestReadConfigFile_SecretNeverInErrors(t *testing.T) {
	const secret = "sk_live_TOPSECRET"
	p := writeConfig(t, strings.Replace(validBase, "${SECRET}", secret, 1)+"listen: bad\n")
	_, err := ReadConfigFile(p, env(nil))
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("err = %v; want an error without the secret", err)
	}
}

func TestExpandEnv(t *testing.T) {
	hostile := `sk_live_ab #cd: *x"y`
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte(hostile+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	lookup := env(map[string]string{"X": "x-value", "EMPTY": "", "N": "9464", "HOSTILE": hostile,
		"FROMFILE_FILE": secretFile, "MISSINGFILE_FILE": filepath.Join(t.TempDir(), "nope")})
	tests := []struct {
		name, in string
		want     any // the value of key a once parsed
	}{
		{"Plain", "a: ${X}", "x-value"},
		{"Default", "a: ${UNSET:-fallback}", "fallback"},
		{"SetBeatsDefault", "a: ${X:-fallback}", "x-value"},
		{"EmptyTakesDefault", "a: ${EMPTY:-d}", "d"},
		{"Escaped", "a: $${X}", "${X}"},
		{"NoBraces", "a: $X", "$X"},
		{"CommentUntouched", "# see ${UNSET}\na: ${X}", "x-value"},
		{"Inside", "a: pre-${X}-post", "pre-x-value-post"},
		{"PlainIsRetyped", "a: ${N}", 9464},
		{"QuotedStaysString", `a: "${N}"`, "9464"},
		{"HostileSecretByteForByte", "a: ${HOSTILE}", hostile},
		{"HostileSecretQuoted", `a: "${HOSTILE}"`, hostile},
		{"FromFile", "a: ${FROMFILE}", hostile},
		{"InSequence", "a:\n  - ${X}", []any{"x-value"}},
		{"QuotedInFlow", `a: ["${X}"]`, []any{"x-value"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ExpandEnv([]byte(tt.in), lookup)
			if err != nil {
				t.Fatalf("ExpandEnv(%q): %v", tt.in, err)
			}
			var v struct{ A any }
			if err := yaml.Unmarshal(got, &v); err != nil {
				t.Fatalf("ExpandEnv(%q) = %q, which does not parse: %v", tt.in, got, err)
			}
			if fmt.Sprintf("%#v", v.A) != fmt.Sprintf("%#v", tt.want) {
				t.Errorf("ExpandEnv(%q) = %q: a = %#v, want %#v", tt.in, got, v.A, tt.want)
			}
			if strings.Contains(tt.in, "#") && !strings.Contains(string(got), "# see ${UNSET}") {
				t.Errorf("the comment was changed: %q", got)
			}
		})
	}
	for _, bad := range []struct{ in, want string }{
		{"a: ${UNSET}", "environment variable UNSET is not set"},
		{"a: ${MISSINGFILE}", "MISSINGFILE_FILE: cannot read "},
	} {
		if _, err := ExpandEnv([]byte(bad.in), lookup); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("ExpandEnv(%q): %v, want %q", bad.in, err, bad.want)
		}
	}
}

// TestConfigExample keeps config.example.yaml valid and complete: it must
// parse strictly, validate, and mention every key the decoder knows.
func TestConfigExample(t *testing.T) {
	cfg, err := ReadConfigFile("../../config.example.yaml", env(map[string]string{
		"PLUGIPAY_KEY_ID": "key_demo", "PLUGIPAY_SECRET": "sk_demo",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.CRM.CSV == nil || cfg.CRM.CSV.Columns.ExternalID != "id" {
		t.Fatalf("example crm.csv = %+v", cfg.CRM.CSV)
	}
	b, err := os.ReadFile("../../config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range yamlKeys(Config{}) {
		if !strings.Contains(string(b), key+":") {
			t.Errorf("config.example.yaml does not document key %q", key)
		}
	}
}

// TestSecret_HostileByteForByte: a secret full of YAML's special characters,
// given through the environment and through a *_FILE, reaches the signer
// as it is: the emulator, holding the same secret, accepts the signatures.
func TestSecret_HostileByteForByte(t *testing.T) {
	const hostile = `sk_live_ab #cd: *x"y`
	dir := t.TempDir()
	csv := writeUsers(t, filepath.Join(dir, "u.csv"), 5)
	e := newE2E(t, csv, emulator.Options{})
	e.emu = emulator.New(emulator.Options{Keys: map[string]string{testKeyID: hostile}})
	srv := httptest.NewServer(e.emu)
	defer srv.Close()
	e.url = srv.URL
	e.writeConfig(csv, "@every 1h")
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte(hostile+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"Environment", map[string]string{"TEST_SECRET": hostile}, "created 5"},
		{"File", map[string]string{"TEST_SECRET_FILE": secretFile}, "unchanged 5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			m := NewMain(&out, &errOut)
			m.LookupEnv = env(tc.env)
			if err := m.ParseFlags([]string{"--config", e.config, "--once"}); err != nil {
				t.Fatal(err)
			}
			code, err := m.Run(context.Background())
			m.Close()
			if code != ExitOK || err != nil {
				t.Fatalf("exit %d, %v:\n%s%s", code, err, out.String(), errOut.String())
			}
			wantSummary(t, out.String(), tc.want)
			if strings.Contains(out.String()+errOut.String(), hostile) {
				t.Fatal("the secret appeared in the output")
			}
		})
	}
}

// TestPlugipaySection: the Plugipay settings live under destination like
// every destination's; the old top-level section still works for a
// release, with a deprecation warning; both at once is an error.
func TestPlugipaySection(t *testing.T) {
	const crm = "crm: {type: csv, csv: {path: u.csv, columns: {external_id: id}}}\n"
	for _, tc := range []struct {
		name, yaml string
		wantErr    string
		wantKey    string
		deprecated bool
	}{
		{"New", "destination:\n  type: plugipay\n  plugipay: {key_id: k, secret: s, timeout: 5s}\n" + crm, "", "destination.plugipay", false},
		{"Old", "plugipay: {key_id: k, secret: s, timeout: 5s}\n" + crm, "", "plugipay", true},
		{"Both", "plugipay: {key_id: k}\ndestination:\n  plugipay: {key_id: k}\n" + crm, "give the Plugipay settings once, under destination.plugipay", "", false},
		{"NewKeyInErrors", "destination:\n  plugipay: {key_id: k, secret: s, timeout: -1s}\n" + crm, "destination.plugipay.timeout: must be a positive duration", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ReadConfigFile(writeConfig(t, tc.yaml), env(nil))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Plugipay.KeyID != "k" || cfg.Plugipay.Timeout != 5*time.Second || cfg.Plugipay.MaxAttempts != 4 || cfg.plugipayKey != tc.wantKey {
				t.Errorf("plugipay settings %+v from %q", cfg.Plugipay, cfg.plugipayKey)
			}
			if got := len(cfg.Deprecations) > 0; got != tc.deprecated {
				t.Errorf("deprecations %v", cfg.Deprecations)
			}
		})
	}
}
