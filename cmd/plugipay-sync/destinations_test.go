package main

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	pgfake "github.com/plugipay-sync/plugipay-sync/destination/paygate/fake"
	pinfake "github.com/plugipay-sync/plugipay-sync/destination/pin/fake"
	"github.com/plugipay-sync/plugipay-sync/plugipay/emulator"
	"github.com/plugipay-sync/plugipay-sync/state"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

// Shared helpers of the end-to-end tests against the PayGate-style and
// Pin-style destinations (paygate_test.go, pin_test.go), and the tests of
// the destination section of the config.

// destConfig is a config for a destination other than Plugipay, reading
// the CSV columns of writeUsers. Empty optional fields are left out (the
// program's defaults).
type destConfig struct {
	Type             string // paygate or pin
	BaseURL, State   string
	CSV              string
	Timeout          string // destination.<type>.timeout
	MaxAttempts      int
	Concurrency      int
	RetryMin         string // sync.retry_min and retry_max
	Mode             string // sync.mode
	Deletion         string // sync.deletion
	ExternalIDKey    string // destination.paygate.external_id_key
	Environment      string // destination.pin.environment
	Metadata         string // crm.csv.columns.metadata; default {plan, city, signup_source}
	LogLevel         string
	SecretKeyLiteral string // secret_key as written; default ${TEST_SECRET}
}

func (c destConfig) yaml() string {
	var b strings.Builder
	fmt.Fprintf(&b, "schedule: \"@every 1h\"\nlisten: \"127.0.0.1:0\"\nstate:\n  path: %s\n", c.State)
	fmt.Fprintf(&b, "destination:\n  type: %s\n  %s:\n    base_url: %s\n", c.Type, c.Type, c.BaseURL)
	fmt.Fprintf(&b, "    secret_key: %s\n    requests_per_second: 0\n", cmp.Or(c.SecretKeyLiteral, "${TEST_SECRET}"))
	if c.Timeout != "" {
		fmt.Fprintf(&b, "    timeout: %s\n", c.Timeout)
	}
	if c.MaxAttempts > 0 {
		fmt.Fprintf(&b, "    max_attempts: %d\n", c.MaxAttempts)
	}
	if c.ExternalIDKey != "" {
		fmt.Fprintf(&b, "    external_id_key: %s\n", c.ExternalIDKey)
	}
	if c.Environment != "" {
		fmt.Fprintf(&b, "    environment: %s\n", c.Environment)
	}
	fmt.Fprintf(&b, "crm:\n  type: csv\n  csv:\n    path: %s\n    columns:\n      external_id: id\n      email: email\n      name: full_name\n      phone: phone\n      metadata: %s\n",
		c.CSV, cmp.Or(c.Metadata, defaultTestMetadata))
	fmt.Fprintf(&b, "sync:\n  concurrency: %d\n", cmp.Or(c.Concurrency, 4))
	if c.RetryMin != "" {
		fmt.Fprintf(&b, "  retry_min: %s\n  retry_max: %s\n", c.RetryMin, c.RetryMin)
	}
	if c.Mode != "" {
		fmt.Fprintf(&b, "  mode: %s\n", c.Mode)
	}
	if c.Deletion != "" {
		fmt.Fprintf(&b, "  deletion: %s\n", c.Deletion)
	}
	fmt.Fprintf(&b, "log:\n  level: %s\n", cmp.Or(c.LogLevel, "warn"))
	return b.String()
}

func (c destConfig) write(t *testing.T, path string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(c.yaml()), 0o600); err != nil {
		t.Fatal(err)
	}
}

// destRun runs the real program in-process against one config file.
type destRun struct {
	t      *testing.T
	dir    string
	config string
	state  string
}

func newDestRun(t *testing.T) *destRun {
	t.Helper()
	dir := t.TempDir()
	return &destRun{t: t, dir: dir, config: filepath.Join(dir, "config.yaml"), state: filepath.Join(dir, "state.db")}
}

// once runs plugipay-sync --once in-process and returns its exit code and
// summary; it fails the test if the secret shows up in any output.
func (d *destRun) once(extra ...string) (int, string) {
	d.t.Helper()
	return onceInProcess(d.t, d.config, extra...)
}

// command runs a subcommand (rebuild-cache, status...) in-process with
// the config; it fails the test if the secret shows up in any output.
func (d *destRun) command(name string, args ...string) (int, string) {
	d.t.Helper()
	code, out, errOut := commandInProcess(d.t, d.config, name, args...)
	assertNoSecret(d.t, out, errOut)
	return code, out
}

func (d *destRun) removeState() {
	d.t.Helper()
	removeStateFiles(d.t, d.state)
}

// lastRun returns the counts of the latest run in the state DB (the
// summary line leaves some out, e.g. skipped).
func (d *destRun) lastRun() sync.RunRecord {
	d.t.Helper()
	db, err := state.Open(context.Background(), d.state)
	if err != nil {
		d.t.Fatal(err)
	}
	defer db.Close()
	runs, err := db.RecentRuns(context.Background(), 1)
	if err != nil {
		d.t.Fatal(err)
	}
	if len(runs) == 0 {
		d.t.Fatal("no run recorded")
	}
	return runs[0]
}

// stateRows counts the rows of the state DB's tables.
func (d *destRun) stateRows(table string) int {
	d.t.Helper()
	if _, err := os.Stat(d.state); os.IsNotExist(err) {
		return 0
	}
	db := openRaw(d.t, d.state)
	defer db.Close()
	var exists int
	if err := db.QueryRow(`SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?`, table).Scan(&exists); err != nil {
		d.t.Fatal(err)
	}
	if exists == 0 {
		return 0 // killed before the schema was made
	}
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM ` + table).Scan(&n); err != nil {
		d.t.Fatal(err)
	}
	return n
}

// destBase is a config for the destination tests of the config: a CSV
// source mapping plan into metadata, and the given destination section
// and extra top-level sections.
func destBase(destination, extra string) string {
	return `
state:
  path: state.db
destination:
` + destination + `
crm:
  type: csv
  csv:
    path: users.csv
    columns:
      external_id: id
      email: email
      metadata: {plan: plan}
` + extra
}

// TestDestination_ConfigErrors checks each destination config mistake is
// refused at start, through ReadConfigFile and the real program, with a
// message naming the key and the fix, and that no secret key value ever
// appears in the message or the program's output (also when a secret is
// referenced by mistake in another key).
func TestDestination_ConfigErrors(t *testing.T) {
	const (
		pgSecret  = "sk_live_CONFIGSECRET_pg_0123456789abcdef0123456789abcdef"
		pinSecret = "pin_CONFIGSECRET_987654321"
		badPrefix = "pk_live_CONFIGSECRET_badprefix"
		literal   = "rk_live_CONFIGSECRET_literal"
	)
	secrets := []string{pgSecret, pinSecret, badPrefix, literal, "CONFIGSECRET"}
	pg := func(body string) string {
		return "  type: paygate\n  paygate:\n    base_url: https://api.paygate.example/v1\n" + body
	}
	pin := func(body string) string {
		return "  type: pin\n  pin:\n    base_url: https://test-api.pin.example/1\n    secret_key: ${PIN_SECRET_KEY}\n" + body
	}
	tests := []struct {
		name   string
		yaml   string
		env    map[string]string
		wanted []string
	}{
		{"PayGateWithoutSection", destBase("  type: paygate", ""), nil,
			[]string{"destination.paygate:", "required with destination.type: paygate", "base_url, secret_key"}},
		{"PayGateSecretMissing", destBase(pg(""), ""), nil,
			[]string{"destination.paygate.secret_key", "required", "PAYGATE_SECRET_KEY"}},
		{"PayGateSecretBadPrefixFromEnv", destBase(pg("    secret_key: ${PAYGATE_SECRET_KEY}\n"), ""), map[string]string{"PAYGATE_SECRET_KEY": badPrefix},
			[]string{"destination.paygate.secret_key", "sk_test_... or sk_live_..."}},
		{"PayGateSecretBadPrefixLiteral", destBase(pg("    secret_key: "+literal+"\n"), ""), nil,
			[]string{"destination.paygate.secret_key", "sk_test_... or sk_live_..."}},
		{"PayGateExternalIDKeyClash", destBase(pg("    secret_key: ${PG_KEY}\n    external_id_key: plan\n"), ""), map[string]string{"PG_KEY": pgSecret},
			[]string{"destination.paygate.external_id_key", `"plan"`, "metadata key the CRM mapping fills", "rename one of them"}},
		{"PayGateExternalIDKeyTooLong", destBase(pg("    secret_key: ${PG_KEY}\n    external_id_key: "+strings.Repeat("k", 41)+"\n"), ""), map[string]string{"PG_KEY": pgSecret},
			[]string{"destination.paygate.external_id_key", "1 to 40 characters", "crm_user_id"}},
		{"PayGateSecretPastedAsExternalIDKey", destBase(pg("    secret_key: ${PG_KEY}\n    external_id_key: ${PG_KEY}\n"), ""), map[string]string{"PG_KEY": pgSecret},
			[]string{"destination.paygate.external_id_key", "1 to 40 characters", `(got "[redacted]")`}},
		{"PayGatePlainHTTP", destBase("  type: paygate\n  paygate:\n    base_url: http://api.paygate.example/v1\n    secret_key: ${PAYGATE_SECRET_KEY}\n", ""), map[string]string{"PAYGATE_SECRET_KEY": pgSecret},
			[]string{"destination.paygate.base_url", "use https", "destination.paygate.insecure_http: true"}},
		{"PayGateSecretAsTimeout", destBase(pg("    secret_key: ${PAYGATE_SECRET_KEY}\n    timeout: ${PAYGATE_SECRET_KEY}\n"), ""), map[string]string{"PAYGATE_SECRET_KEY": pgSecret},
			[]string{"cannot unmarshal", "time.Duration"}},
		{"PinWithoutSection", destBase("  type: pin", ""), nil,
			[]string{"destination.pin:", "required with destination.type: pin"}},
		{"PinModeUpsert", destBase(pin(""), "sync:\n  mode: upsert\n"), map[string]string{"PIN_SECRET_KEY": pinSecret},
			[]string{"sync.mode", `"upsert"`, "creates customers", `use "update-only"`, "destination pin"}},
		{"PinModeCreateOnly", destBase(pin(""), "sync:\n  mode: create-only\n"), map[string]string{"PIN_SECRET_KEY": pinSecret},
			[]string{"sync.mode", `"create-only"`, `use "update-only"`}},
		{"PinDeletionArchive", destBase(pin(""), "sync:\n  deletion: archive\n"), map[string]string{"PIN_SECRET_KEY": pinSecret},
			[]string{"sync.deletion", `"archive"`, "no metadata", "use ignore"}},
		{"PinEnvironmentProd", destBase(pin("    environment: prod\n"), ""), map[string]string{"PIN_SECRET_KEY": pinSecret},
			[]string{"destination.pin.environment", `"prod"`, "must be test or live"}},
		{"PinSecretPastedAsEnvironment", destBase(pin("    environment: ${PIN_SECRET_KEY}\n"), ""), map[string]string{"PIN_SECRET_KEY": pinSecret},
			[]string{"destination.pin.environment", "must be test or live", `(got "[redacted]")`}},
		{"PinSecretMissing", destBase("  type: pin\n  pin:\n    base_url: https://test-api.pin.example/1\n", ""), nil,
			[]string{"destination.pin.secret_key", "PIN_SECRET_KEY"}},
		{"UnknownType", destBase("  type: stripe", ""), nil,
			[]string{"destination.type", `"stripe"`, "must be plugipay, paygate or pin"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := writeConfig(t, tc.yaml)
			noSecret := func(where, s string) {
				t.Helper()
				for _, sec := range secrets {
					if strings.Contains(s, sec) {
						t.Errorf("%s shows the secret %q:\n%s", where, sec, s)
					}
				}
			}
			_, err := ReadConfigFile(p, env(tc.env))
			if err == nil {
				t.Fatal("ReadConfigFile accepted the config")
			}
			for _, w := range tc.wanted {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("ReadConfigFile: %v\nwant it to contain %q", err, w)
				}
			}
			noSecret("the ReadConfigFile error", err.Error())

			// The real program refuses to start, saying the same.
			var out, errOut bytes.Buffer
			m := NewMain(&out, &errOut)
			m.LookupEnv = env(tc.env)
			if err := m.ParseFlags([]string{"--config", p, "--once"}); err != nil {
				t.Fatal(err)
			}
			code, err := m.Run(context.Background())
			if code != ExitConfig || err == nil {
				t.Fatalf("program exit %d, error %v; want %d and an error", code, err, ExitConfig)
			}
			for _, w := range tc.wanted {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("program: %v\nwant it to contain %q", err, w)
				}
			}
			noSecret("the program's error", err.Error())
			noSecret("the program's output", out.String()+errOut.String())
		})
	}
}

// TestDestination_LiteralSecretNotEchoed: a secret key written literally
// in the file (allowed: secret_key takes a value or a ${VAR}) and pasted by
// mistake into another key must not be quoted back by the error.
// (Found by this test: literal values of secret keys were not redacted.)
func TestDestination_LiteralSecretNotEchoed(t *testing.T) {
	for _, tc := range []struct{ name, dest string }{
		{"PinEnvironment", "  type: pin\n  pin:\n    base_url: https://test-api.pin.example/1\n    secret_key: pinLiteralSecret123\n    environment: pinLiteralSecret123\n"},
		{"PayGateExternalIDKey", "  type: paygate\n  paygate:\n    base_url: https://api.paygate.example/v1\n    secret_key: sk_live_literalSecret_0123456789abcdef0123456789\n    external_id_key: sk_live_literalSecret_0123456789abcdef0123456789\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeConfig(t, destBase(tc.dest, ""))
			_, err := ReadConfigFile(p, env(nil))
			if err == nil {
				t.Fatal("ReadConfigFile accepted the config")
			}
			if strings.Contains(err.Error(), "pinLiteralSecret123") || strings.Contains(err.Error(), "sk_live_literalSecret") {
				t.Errorf("the error quotes the literal secret key: %v", err)
			}
		})
	}
}

// TestDestination_StateBoundToFirstDestination: a state DB is bound to the
// destination it was first used with; pointed at another one (Plugipay
// then PayGate, Pin test then Pin live) the program fails at start with a
// message naming state.path, before any request to the new destination,
// and the state is left as it was.
func TestDestination_StateBoundToFirstDestination(t *testing.T) {
	t.Run("PlugipayThenPayGate", func(t *testing.T) {
		dir := t.TempDir()
		e := newE2E(t, writeUsers(t, filepath.Join(dir, "u.csv"), 5), emulator.Options{})
		if code, out := e.once(); code != ExitOK {
			t.Fatalf("plugipay run exit %d:\n%s", code, out)
		}
		f := pgfake.New(pgfake.Options{Keys: []string{testSecret}})
		srv := httptest.NewServer(f)
		t.Cleanup(srv.Close)
		d := newDestRun(t)
		d.state = e.state
		destConfig{Type: DestPayGate, BaseURL: srv.URL + "/v1", State: e.state, CSV: filepath.Join(dir, "u.csv")}.write(t, d.config)
		code, out := d.once()
		t.Logf("exit %d:\n%s", code, out)
		if code != ExitConfig {
			t.Fatalf("exit %d, want %d", code, ExitConfig)
		}
		for _, want := range []string{"state.path " + e.state, `made for "plugipay"`, `names "paygate"`, "point state.path at a new file"} {
			wantSummary(t, out, want)
		}
		if n := f.TotalRequests(); n != 0 {
			t.Errorf("%d requests reached PayGate", n)
		}
		if n := d.stateRows("mappings"); n != 5 {
			t.Errorf("the state maps %d users after the refused start, want the 5 Plugipay ones", n)
		}
		// Plugipay still runs on it.
		if code, out := e.once(); code != ExitOK {
			t.Fatalf("plugipay run after the refusal exit %d:\n%s", code, out)
		}
	})
	t.Run("PinTestThenLive", func(t *testing.T) {
		f := pinfake.New(pinfake.Options{TestKeys: []string{testSecret}})
		srv := httptest.NewServer(f)
		t.Cleanup(srv.Close)
		d := newDestRun(t)
		cfg := destConfig{Type: DestPin, BaseURL: srv.URL + "/1", State: d.state, Environment: "test",
			CSV: writeUsers(t, filepath.Join(d.dir, "u.csv"), 3)}
		cfg.write(t, d.config)
		if code, out := d.once(); code != ExitOK {
			t.Fatalf("pin test run exit %d:\n%s", code, out)
		}
		cfg.Environment = "live"
		cfg.write(t, d.config)
		before := f.TotalRequests()
		code, out := d.once()
		if code != ExitConfig {
			t.Fatalf("exit %d, want %d:\n%s", code, ExitConfig, out)
		}
		for _, want := range []string{"state.path " + d.state, `made for "pin test"`, `names "pin live"`} {
			wantSummary(t, out, want)
		}
		if n := f.TotalRequests() - before; n != 0 {
			t.Errorf("%d requests reached the API", n)
		}
	})
}
