package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plugipay-sync/plugipay-sync/plugipay/emulator"
)

// TestSecurity_SecretNowhere runs a sync with debug logging, a few
// rejected and failing records and injected faults, then looks for the
// secret in the metrics, in every byte of the state DB files, and in the
// output (e2e.once fails on it too). Issue 8 item 5; the logs are
// TestLogsCarryNoSecretOrPII.
func TestSecurity_SecretNowhere(t *testing.T) {
	dir := t.TempDir()
	csvPath := writeUsers(t, filepath.Join(dir, "u.csv"), 150)
	f, err := os.OpenFile(csvPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("bad_1,not-an-email,Bad,,,pro,Bandung,web\n")
	f.Close()
	e := newE2E(t, csvPath, emulator.Options{Seed: 1, Faults: emulator.Faults{ErrorRate: 0.2, DropRate: 0.05}})
	e.state = filepath.Join(dir, "nested", "private", "state.db")
	e.writeConfig(csvPath, "@every 1h")

	var out, errOut bytes.Buffer
	m := NewMain(&out, &errOut)
	m.LookupEnv = env(map[string]string{"TEST_SECRET": testSecret})
	if err := m.ParseFlags([]string{"--config", e.config, "--once", "--log-level", "debug"}); err != nil {
		t.Fatal(err)
	}
	code, err := m.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if code != ExitPartial {
		t.Fatalf("exit %d, want %d (one rejected record):\n%s", code, ExitPartial, out.String())
	}
	if strings.Contains(out.String()+errOut.String(), testSecret) {
		t.Error("the secret appears in the output or logs")
	}

	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var metrics strings.Builder
	for _, mf := range mfs {
		metrics.WriteString(mf.String())
	}
	if !strings.Contains(metrics.String(), "plugipay_sync_records_total") {
		t.Fatal("the metrics lack plugipay_sync_records_total; the check would prove nothing")
	}
	if strings.Contains(metrics.String(), testSecret) {
		t.Error("the secret appears in the metrics")
	}

	// The state DB, its WAL and shared memory, byte for byte; and their
	// modes: the directory 0700 and every file 0600.
	var files int
	for _, suffix := range []string{"", "-wal", "-shm"} {
		p := e.state + suffix
		b, err := os.ReadFile(p)
		if os.IsNotExist(err) && suffix != "" {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		files++
		if bytes.Contains(b, []byte(testSecret)) {
			t.Errorf("the secret appears in %s", filepath.Base(p))
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", filepath.Base(p), fi.Mode().Perm())
		}
	}
	for _, d := range []string{filepath.Dir(e.state), filepath.Dir(filepath.Dir(e.state))} {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o700 {
			t.Errorf("state directory %s has mode %v, want 0700", d, fi.Mode().Perm())
		}
	}
	if files == 0 {
		t.Fatal("no state DB file found")
	}
}

// TestSecurity_SecretNotInConfigErrors is the regression test for the bug
// FuzzConfig found: a secret referenced from the wrong key was quoted back
// in the error, which goes to the terminal and, on SIGHUP, to the logs.
func TestSecurity_SecretNotInConfigErrors(t *testing.T) {
	tests := []struct{ name, config, want string }{
		{"Schedule", validBase + "schedule: ${SECRET}\n", `schedule: not a cron expression`},
		{"BaseURL", strings.Replace(validBase, "plugipay:", "plugipay:\n  base_url: ${SECRET}", 1), `plugipay.base_url: must be an http(s) URL with a host`},
		{"Duration", strings.Replace(validBase, "plugipay:", "plugipay:\n  timeout: ${SECRET}", 1), "cannot unmarshal"},
		{"OtherName", strings.Replace(validBase, "secret: ${SECRET}", "secret: ${PP_VALUE}\n  timeout: ${PP_VALUE}", 1), "cannot unmarshal"},
		{"Listen", validBase + "listen: ${SECRET}\n", "listen: must be host:port"},
		{"OnTokenKey", "plugipay:\n  key_id: k\n  secret: ${SECRET}\ncrm:\n  type: hubspot\n  hubspot:\n    token: ${HS}\nschedule: ${HS}\n", "schedule: not a cron expression"},
		{"ShortSecret", strings.Replace(validBase, "plugipay:", "plugipay:\n  timeout: ${PP_TOKEN}", 1), "[redacted]"},
	}
	const secret, short = "sk_live_do_not_print_me", "s3cr3t_PW"
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadConfigFile(writeConfig(t, tt.config), env(map[string]string{"SECRET": secret, "PP_VALUE": secret, "PP_TOKEN": short, "HS": secret}))
			if err == nil {
				t.Fatal("no error")
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), short) {
				t.Fatalf("the error quotes the secret: %v", err)
			}
			// The YAML decoder shortens a long value to its first 7
			// characters ("sk_live..."); shorter secrets are replaced.
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "[redacted]") && !strings.Contains(err.Error(), "cannot unmarshal") {
				t.Fatalf("error %q; want it to contain %q and [redacted]", err, tt.want)
			}
		})
	}
	// Values that are not secrets are still quoted, to help the user.
	_, err := ReadConfigFile(writeConfig(t, validBase+"schedule: ${SCHED}\n"), env(map[string]string{"SECRET": secret, "SCHED": "every minute"}))
	if err == nil || !strings.Contains(err.Error(), `(got "every minute")`) {
		t.Fatalf("error %v; want the schedule quoted", err)
	}
}

// TestSecurity_PlainHTTP checks plugipay.base_url: plain http only to a
// loopback address, unless plugipay.insecure_http is set.
func TestSecurity_PlainHTTP(t *testing.T) {
	tests := []struct {
		url      string
		insecure bool
		ok       bool
	}{
		{"https://plugipay.com", false, true},
		{"http://127.0.0.1:8080", false, true},
		{"http://localhost:8080", false, true},
		{"http://[::1]:8080", false, true},
		{"http://api.example.com", false, false},
		{"http://10.0.0.5:8080", false, false},
		{"http://127.0.0.1.nip.io", false, false},
		{"http://localhost.example.com", false, false},
		{"http://api.example.com", true, true},
		{"ftp://plugipay.com", true, false},
	}
	for _, tt := range tests {
		cfg := strings.Replace(validBase, "plugipay:", "plugipay:\n  base_url: "+tt.url, 1)
		if tt.insecure {
			cfg = strings.Replace(cfg, "plugipay:", "plugipay:\n  insecure_http: true", 1)
		}
		_, err := ReadConfigFile(writeConfig(t, cfg), env(map[string]string{"SECRET": "sk_x"}))
		if (err == nil) != tt.ok {
			t.Errorf("base_url %s insecure_http %v: err %v, want ok %v", tt.url, tt.insecure, err, tt.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "plugipay.base_url") {
			t.Errorf("base_url %s: error %v does not name plugipay.base_url", tt.url, err)
		}
	}
}
