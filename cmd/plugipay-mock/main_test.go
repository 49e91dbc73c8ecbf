package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/plugipay-sync/plugipay-sync/plugipay"
)

func sign(secret, method, target string, ts int64, body []byte, idem string) string {
	sum := sha256.Sum256(body)
	parts := []string{method, target, strconv.FormatInt(ts, 10), hex.EncodeToString(sum[:])}
	if idem != "" {
		parts = append(parts, idem)
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(strings.Join(parts, "\n")))
	return hex.EncodeToString(m.Sum(nil))
}

// call sends one signed request and returns the status and envelope.
func call(t *testing.T, base, keyID, secret, method, target, body, idem string) (int, map[string]any) {
	t.Helper()
	ts := time.Now().Unix()
	status, raw := send(t, method, base+target, body, func(r *http.Request) {
		r.Header.Set("Authorization", fmt.Sprintf("Plugipay-HMAC-SHA256 keyId=%s, scope=*, signature=%s", keyID, sign(secret, method, target, ts, []byte(body), idem)))
		r.Header.Set("X-Plugipay-Timestamp", strconv.FormatInt(ts, 10))
		if idem != "" {
			r.Header.Set("Idempotency-Key", idem)
		}
	})
	var env map[string]any
	if err := json.Unmarshal(raw, &env); err != nil {
		t.Fatalf("not JSON: %s", raw)
	}
	return status, env
}

// send sends one request, authenticated by auth, with body as JSON when
// not empty, and returns the status and the response body.
func send(t *testing.T, method, url, body string, auth func(*http.Request)) (int, []byte) {
	t.Helper()
	r, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	auth(r)
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw
}

// metricsText reads the mock's /metrics at origin.
func metricsText(t *testing.T, origin string) string {
	t.Helper()
	resp, err := http.Get(origin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %d %s", resp.StatusCode, b)
	}
	return string(b)
}

// readAddrFile reads the URL the program wrote to its --addr-file.
func readAddrFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// assertNotLogged fails the test if secret appears in any logged message
// or field.
func assertNotLogged(t *testing.T, logs *observer.ObservedLogs, secret string) {
	t.Helper()
	for _, e := range logs.All() {
		if line := fmt.Sprint(e.Message, e.ContextMap()); strings.Contains(line, secret) {
			t.Fatalf("secret logged: %s", line)
		}
	}
}

// terminate sends the program SIGTERM and checks it exits with status 0.
func terminate(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
}

func start(t *testing.T, getenv func(string) string, args ...string) (*Main, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	m := NewMain()
	m.Getenv = getenv
	m.Stderr = io.Discard
	m.Logger = zap.New(core)
	if err := m.ParseFlags(context.Background(), args); err != nil {
		t.Fatalf("ParseFlags: %v", err)
	}
	if err := m.Run(context.Background()); err != nil {
		t.Fatalf("Run: %v", err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m, logs
}

func noEnv(string) string { return "" }

// TestMain lets a test re-run this binary as the real program: with
// PLUGIPAY_MOCK_BE_MAIN=1 it runs main's logic on PLUGIPAY_MOCK_ARGS.
func TestMain(m *testing.M) {
	if os.Getenv("PLUGIPAY_MOCK_BE_MAIN") == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		os.Exit(run(ctx, stop, strings.Fields(os.Getenv("PLUGIPAY_MOCK_ARGS"))))
	}
	os.Exit(m.Run())
}

// spawn starts the program as a child process and returns it with its URL.
func spawn(t *testing.T, args string) (*exec.Cmd, string) {
	t.Helper()
	addrFile := filepath.Join(t.TempDir(), "url")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "PLUGIPAY_MOCK_BE_MAIN=1", "PLUGIPAY_MOCK_ARGS=--addr 127.0.0.1:0 --addr-file "+addrFile+" "+args)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b, err := os.ReadFile(addrFile); err == nil {
			return cmd, strings.TrimSpace(string(b))
		}
		if time.Now().After(deadline) {
			t.Fatal("the program did not write its address file")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestProcess_SIGKILLKeepsAcknowledgedWrites kills the program without
// warning and checks every acknowledged write is in the state file.
func TestProcess_SIGKILLKeepsAcknowledgedWrites(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state.jsonl")
	cmd, base := spawn(t, "--write-rate 0 --state "+state)
	var ids []string
	for i := range 50 {
		status, env := call(t, base, DefaultKeyID, DefaultSecret, "POST", "/api/v1/customers", fmt.Sprintf(`{"externalId":"k%d"}`, i), fmt.Sprintf("idem_k%d", i))
		if status != 201 {
			t.Fatalf("create %d: %d", i, status)
		}
		ids = append(ids, env["data"].(map[string]any)["id"].(string))
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	m, _ := start(t, noEnv, "--addr", "127.0.0.1:0", "--state", state)
	if got := m.Emulator().CustomerCount(); got != 50 {
		t.Fatalf("CustomerCount after SIGKILL = %d, want 50", got)
	}
	for _, id := range ids {
		if _, ok := m.Emulator().Customer(id); !ok {
			t.Fatalf("%s lost", id)
		}
	}
}

// TestProcess_SIGTERM checks a graceful exit with status 0.
func TestProcess_SIGTERM(t *testing.T) {
	cmd, base := spawn(t, "")
	if status, _ := call(t, base, DefaultKeyID, DefaultSecret, "GET", "/api/v1/customers", "", ""); status != 200 {
		t.Fatalf("GET: %d", status)
	}
	terminate(t, cmd)
}

func TestMain_Run(t *testing.T) {
	dir := t.TempDir()
	addrFile := filepath.Join(dir, "mock.url")
	env := func(k string) string {
		if k == EnvSecret {
			return "sk_from_env_1234"
		}
		return ""
	}
	m, logs := start(t, env, "--addr", "127.0.0.1:0", "--addr-file", addrFile, "--key-id", "key_x")

	base := readAddrFile(t, addrFile)
	if base != m.URL || !strings.HasPrefix(base, "http://127.0.0.1:") || strings.HasSuffix(base, ":0") {
		t.Fatalf("addr file = %q, URL %q", base, m.URL)
	}

	status, env1 := call(t, base, "key_x", "sk_from_env_1234", "POST", "/api/v1/customers", `{"externalId":"e1"}`, "idem_1")
	if status != 201 {
		t.Fatalf("create: %d %v", status, env1)
	}
	if status, _ := call(t, base, "key_x", DefaultSecret, "GET", "/api/v1/customers", "", ""); status != 401 {
		t.Fatalf("default secret accepted although the env set another: %d", status)
	}
	metrics := metricsText(t, base)
	if !strings.Contains(metrics, `plugipay_mock_requests_total{method="POST",route="/api/v1/customers",status="201"} 1`) {
		t.Fatalf("metrics:\n%s", metrics)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	assertNotLogged(t, logs, "sk_from_env_1234")
	if logs.FilterMessage("plugipay emulator listening").Len() != 1 {
		t.Fatal("no startup log")
	}
}

func TestMain_BusyPort(t *testing.T) {
	m, _ := start(t, noEnv, "--addr", "127.0.0.1:0")
	other := NewMain()
	other.Getenv = noEnv
	if err := other.ParseFlags(context.Background(), []string{"--addr", strings.TrimPrefix(m.URL, "http://")}); err != nil {
		t.Fatal(err)
	}
	if err := other.Run(context.Background()); err == nil {
		_ = other.Close()
		t.Fatal("Run on a busy port succeeded")
	}
}

func TestMain_ParseFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"Defaults", nil, ""},
		{"SecretFlagWins", []string{"--secret", "sk_flag"}, ""},
		{"NegativeRate", []string{"--read-rate", "-1"}, "--read-rate"},
		{"ErrorRateRange", []string{"--error-rate", "1.5"}, "--error-rate"},
		{"RatesSum", []string{"--error-rate", "0.6", "--drop-rate", "0.6"}, "at most 1"},
		{"EmptySecret", []string{"--secret", ""}, "--secret"},
		{"Positional", []string{"extra"}, "unexpected"},
		{"UnknownFlag", []string{"--nope"}, "nope"},
		{"Platform", []string{"--platform-key-id", "key_p", "--platform-secret", "sk_p", "--accounts", "acc_a, acc_b", "--auto-connect", "--request-log", "10"}, ""},
		{"AccountsWithoutPlatformKey", []string{"--accounts", "acc_a"}, "need --platform-key-id"},
		{"AutoConnectWithoutPlatformKey", []string{"--auto-connect"}, "need --platform-key-id"},
		{"PlatformKeyWithoutSecret", []string{"--platform-key-id", "key_p"}, "--platform-secret"},
		{"PlatformKeyIsKeyID", []string{"--platform-key-id", DefaultKeyID, "--platform-secret", "sk_p"}, "must differ"},
		{"BadAccount", []string{"--platform-key-id", "key_p", "--platform-secret", "sk_p", "--accounts", "merchant_1"}, "--accounts"},
		{"MissingAccountsFile", []string{"--platform-key-id", "key_p", "--platform-secret", "sk_p", "--accounts-file", "/nonexistent/accs"}, "--accounts-file"},
		{"NegativeRequestLog", []string{"--request-log", "-1"}, "--request-log"},
		{"PlatformWithPayGate", []string{"--api", "paygate", "--platform-key-id", "key_p"}, "--platform-key-id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMain()
			m.Getenv = noEnv
			m.Stderr = io.Discard
			err := m.ParseFlags(context.Background(), tt.args)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
			}
		})
	}
	t.Run("DefaultValues", func(t *testing.T) {
		m := NewMain()
		m.Getenv = noEnv
		if err := m.ParseFlags(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
		if m.Addr != DefaultAddr || m.KeyID != DefaultKeyID || m.Secret != DefaultSecret ||
			m.Options.ReadRate != 100 || m.Options.WriteRate != 20 {
			t.Fatalf("defaults: %+v", m)
		}
	})
	t.Run("HelpHidesEnvSecret", func(t *testing.T) {
		var out strings.Builder
		m := NewMain()
		m.Getenv = func(string) string { return "sk_env_hidden" }
		m.Stderr = &out
		if err := m.ParseFlags(context.Background(), []string{"--help"}); !errors.Is(err, flag.ErrHelp) {
			t.Fatalf("err = %v", err)
		}
		if strings.Contains(out.String(), "sk_env_hidden") {
			t.Fatalf("--help printed the secret:\n%s", out.String())
		}
	})
	t.Run("FlagBeatsEnv", func(t *testing.T) {
		m := NewMain()
		m.Getenv = func(string) string { return "sk_env" }
		if err := m.ParseFlags(context.Background(), []string{"--secret", "sk_flag"}); err != nil {
			t.Fatal(err)
		}
		if m.Secret != "sk_flag" {
			t.Fatalf("Secret = %q", m.Secret)
		}
	})
}

// TestMain_StateSurvivesRestart runs the program twice on one state file.
func TestMain_StateSurvivesRestart(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state.jsonl")
	m, _ := start(t, noEnv, "--addr", "127.0.0.1:0", "--state", state)
	status, env := call(t, m.URL, DefaultKeyID, DefaultSecret, "POST", "/api/v1/customers", `{"externalId":"keep"}`, "idem_keep")
	if status != 201 {
		t.Fatalf("create: %d", status)
	}
	id := env["data"].(map[string]any)["id"].(string)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	m2, _ := start(t, noEnv, "--addr", "127.0.0.1:0", "--state", state)
	if status, _ := call(t, m2.URL, DefaultKeyID, DefaultSecret, "GET", "/api/v1/customers/"+id, "", ""); status != 200 {
		t.Fatalf("customer lost across restart: %d", status)
	}
	status, env = call(t, m2.URL, DefaultKeyID, DefaultSecret, "POST", "/api/v1/customers", `{"externalId":"keep"}`, "idem_keep")
	if status != 201 || env["data"].(map[string]any)["id"] != id {
		t.Fatalf("idempotent replay lost across restart: %d %v", status, env)
	}
	if m2.Emulator().WritesExecuted() != 0 || m2.Emulator().Replays() != 1 {
		t.Fatalf("writes %d replays %d", m2.Emulator().WritesExecuted(), m2.Emulator().Replays())
	}
}

// TestMain_Webhooks: --webhook-url and --webhook-secret make the emulator
// deliver signed customer events; the secret is never logged.
func TestMain_Webhooks(t *testing.T) {
	const secret = "whsec_mock_flag"
	got := make(chan string, 4)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ev, err := plugipay.ParseWebhook(body, r.Header.Get(plugipay.HeaderSignature), secret, time.Now(), 0)
		if err != nil {
			t.Errorf("delivery: %v", err)
			return
		}
		got <- ev.Type
	}))
	defer recv.Close()
	env := func(k string) string {
		if k == "PLUGIPAY_WEBHOOK_SECRET" {
			return secret
		}
		return ""
	}
	m, logs := start(t, env, "--addr", "127.0.0.1:0", "--webhook-url", recv.URL)
	if status, _ := call(t, m.URL, DefaultKeyID, DefaultSecret, "POST", "/api/v1/customers", `{"externalId":"e1"}`, "idem_1"); status != 201 {
		t.Fatalf("create: %d", status)
	}
	select {
	case typ := <-got:
		if typ != plugipay.EventCustomerCreated {
			t.Errorf("event %q", typ)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("no event delivered")
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	assertNotLogged(t, logs, secret)
}

// TestMain_Platform runs the program with a platform key connected through
// --accounts-file and --accounts, and acts for its workspaces with the SDK.
func TestMain_Platform(t *testing.T) {
	accFile := filepath.Join(t.TempDir(), "accounts")
	if err := os.WriteFile(accFile, []byte("# tenants\nacc_a\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const secret = "sk_platform_from_env"
	env := func(k string) string {
		if k == EnvPlatformSecret {
			return secret
		}
		return ""
	}
	m, logs := start(t, env, "--addr", "127.0.0.1:0", "--platform-key-id", "key_plat",
		"--accounts-file", accFile, "--accounts", "acc_b", "--request-log", "10")
	ctx := context.Background()
	for _, tc := range []struct {
		acc     string
		wantErr error
	}{{"acc_a", nil}, {"acc_b", nil}, {"acc_c", plugipay.ErrScope}} {
		t.Run(tc.acc, func(t *testing.T) {
			c, err := plugipay.New(plugipay.Options{BaseURL: m.URL, KeyID: "key_plat", Secret: secret, OnBehalfOf: tc.acc,
				MaxAttempts: 1, ReadRate: -1, WriteRate: -1})
			if err != nil {
				t.Fatal(err)
			}
			cus, err := c.Customers.Create(ctx, plugipay.CustomerParams{ExternalID: plugipay.String("u1")}, "idem_u1")
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("create: %v, want %v", err, tc.wantErr)
			}
			if err == nil && cus.AccountID != tc.acc {
				t.Fatalf("accountId %q, want %q", cus.AccountID, tc.acc)
			}
		})
	}
	emu := m.Emulator()
	if got := emu.CustomerCounts(); len(got) != 2 || got["acc_a"] != 1 || got["acc_b"] != 1 {
		t.Errorf("CustomerCounts = %v", got)
	}
	if n := len(emu.RequestLog()); n != 3 {
		t.Errorf("request log holds %d writes, want 3", n)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	assertNotLogged(t, logs, secret)
}
