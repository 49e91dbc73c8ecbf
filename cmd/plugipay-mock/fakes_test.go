package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	pinfake "github.com/plugipay-sync/plugipay-sync/destination/pin/fake"
)

// fakeCall sends one request to a PayGate (bearer) or Pin (basic auth)
// fake and returns the status and the body.
func fakeCall(t *testing.T, api, secret, method, url, body string) (int, string) {
	t.Helper()
	status, raw := send(t, method, url, body, func(r *http.Request) {
		if api == APIPin {
			r.SetBasicAuth(secret, "")
		} else {
			r.Header.Set("Authorization", "Bearer "+secret)
		}
	})
	return status, string(raw)
}

func TestMain_PayGate(t *testing.T) {
	addrFile := filepath.Join(t.TempDir(), "url")
	env := func(k string) string {
		if k == EnvPayGateSecret {
			return "sk_test_from_env_5678"
		}
		return ""
	}
	m, logs := start(t, env, "--api", "paygate", "--addr", "127.0.0.1:0", "--addr-file", addrFile)
	base := readAddrFile(t, addrFile)
	if base != m.URL || base != m.Origin+"/v1" || !strings.HasPrefix(base, "http://127.0.0.1:") {
		t.Fatalf("addr file = %q, URL %q, origin %q", base, m.URL, m.Origin)
	}
	if m.Emulator() != nil || m.Pin() != nil || m.PayGate() == nil {
		t.Fatal("wrong server started")
	}

	status, body := fakeCall(t, APIPayGate, "sk_test_from_env_5678", "POST", base+"/customers",
		`{"email":"ada@example.com","metadata":{"crm_user_id":"u1"}}`)
	if status != 200 || !strings.Contains(body, `"crm_user_id":"u1"`) {
		t.Fatalf("create: %d %s", status, body)
	}
	if status, _ := fakeCall(t, APIPayGate, DefaultTestSecret, "GET", base+"/customers", ""); status != 401 {
		t.Fatalf("default secret accepted although the env set another: %d", status)
	}
	if got := m.PayGate().CustomerCount(); got != 1 {
		t.Fatalf("CustomerCount = %d", got)
	}
	metrics := metricsText(t, m.Origin)
	for _, want := range []string{
		`plugipay_mock_requests_total{method="POST",route="/v1/customers"} 1`,
		`plugipay_mock_requests_total{method="GET",route="/v1/customers"} 1`,
		`plugipay_mock_customers 1`,
		`plugipay_mock_writes_executed_total 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q:\n%s", want, metrics)
		}
	}
	if strings.Contains(metrics, "card_data") {
		t.Errorf("PayGate metrics report card data:\n%s", metrics)
	}
	// /metrics is the mock's; every other path is the fake's, 404 included.
	if status, _ := fakeCall(t, APIPayGate, "sk_test_from_env_5678", "GET", m.Origin+"/api/v1/customers", ""); status != 404 {
		t.Fatalf("Plugipay route on the PayGate fake: %d", status)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	assertNotLogged(t, logs, "sk_test_from_env")
	if logs.FilterMessage("paygate fake listening").Len() != 1 {
		t.Fatal("no startup log")
	}
}

func TestMain_PinSeeded(t *testing.T) {
	dir := t.TempDir()
	seed := filepath.Join(dir, "checkout.csv")
	if err := os.WriteFile(seed, []byte("\uFEFFemail,first_name,last_name\n"+
		"ada@example.com,Ada,Lovelace\n"+
		"twice@example.com,One,\n"+
		"twice@example.com,Two,\n"+
		"\"grace@example.com\",\"Grace, Rear Admiral\",Hopper\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addrFile := filepath.Join(dir, "url")
	m, logs := start(t, noEnv, "--api", "pin", "--secret", "pin_test_key", "--seed-pin-csv", seed,
		"--addr", "127.0.0.1:0", "--addr-file", addrFile)
	base := readAddrFile(t, addrFile)
	if base != m.Origin+"/1" || base != m.URL {
		t.Fatalf("addr file = %q, origin %q", base, m.Origin)
	}
	if got := m.Pin().CustomerCount(pinfake.ModeTest); got != 4 {
		t.Fatalf("seeded %d customers, want 4", got)
	}

	status, body := fakeCall(t, APIPin, "pin_test_key", "GET", base+"/customers?page=1", "")
	if status != 200 {
		t.Fatalf("list: %d %s", status, body)
	}
	var list struct {
		Response []pinfake.Customer `json:"response"`
	}
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		t.Fatal(err)
	}
	byEmail := map[string][]pinfake.Customer{}
	for _, c := range list.Response {
		byEmail[c.Email] = append(byEmail[c.Email], c)
	}
	if len(list.Response) != 4 || len(byEmail["twice@example.com"]) != 2 ||
		byEmail["grace@example.com"][0].FirstName != "Grace, Rear Admiral" || byEmail["ada@example.com"][0].LastName != "Lovelace" {
		t.Fatalf("listed %+v", list.Response)
	}
	tok := byEmail["ada@example.com"][0].Token
	if status, body := fakeCall(t, APIPin, "pin_test_key", "PUT", base+"/customers/"+tok, `{"last_name":"King"}`); status != 200 {
		t.Fatalf("PUT: %d %s", status, body)
	}
	if status, _ := fakeCall(t, APIPin, DefaultTestSecret, "GET", base+"/customers", ""); status != 401 {
		t.Fatalf("default secret accepted although --secret set another: %d", status)
	}
	metrics := metricsText(t, m.Origin)
	for _, want := range []string{
		`plugipay_mock_requests_total{method="PUT",route="/1/customers/{token}"} 1`,
		`plugipay_mock_customers 4`,
		`plugipay_mock_writes_executed_total 1`,
		`plugipay_mock_card_data_seen 0`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %q:\n%s", want, metrics)
		}
	}
	// A card number in a request flips the gauge (the sync must never send one).
	fakeCall(t, APIPin, "pin_test_key", "POST", base+"/customers", `{"email":"c@example.com","card":{"number":"4200000000000000"}}`)
	if metrics := metricsText(t, m.Origin); !strings.Contains(metrics, "plugipay_mock_card_data_seen 1") {
		t.Errorf("card data not reported:\n%s", metrics)
	}
	if logs.FilterMessage("pin fake listening").Len() != 1 {
		t.Fatal("no startup log")
	}
	if e := logs.FilterMessage("pin fake listening").All()[0]; e.ContextMap()["seededCustomers"] != int64(4) {
		t.Fatalf("startup log: %v", e.ContextMap())
	}
}

func TestMain_APIFlags(t *testing.T) {
	dir := t.TempDir()
	bad := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		wantErr string // "" for success (checked at ParseFlags and Run)
		secret  string // wanted Secret when wantErr is ""
	}{
		{"PayGateDefaultSecret", nil, []string{"--api", "paygate"}, "", DefaultTestSecret},
		{"PinDefaultSecret", nil, []string{"--api", "pin"}, "", DefaultTestSecret},
		{"PinEnvSecret", map[string]string{EnvPinSecret: "pin_env", EnvSecret: "plugipay_env"}, []string{"--api", "pin"}, "", "pin_env"},
		{"PayGateIgnoresPlugipayEnv", map[string]string{EnvSecret: "plugipay_env"}, []string{"--api", "paygate"}, "", DefaultTestSecret},
		{"PlugipayIgnoresPinEnv", map[string]string{EnvPinSecret: "pin_env"}, nil, "", DefaultSecret},
		{"PayGateFlagBeatsEnv", map[string]string{EnvPayGateSecret: "sk_test_env"}, []string{"--api", "paygate", "--secret", "sk_test_flag"}, "", "sk_test_flag"},
		{"PayGateFaults", nil, []string{"--api", "paygate", "--error-rate", "0.1", "--drop-rate", "0.1", "--timeout-rate", "0.1", "--latency", "1ms", "--seed", "7", "--requests-per-second", "5"}, "", DefaultTestSecret},
		{"UnknownAPI", nil, []string{"--api", "stripe"}, "--api", ""},
		{"PayGateLiveKey", nil, []string{"--api", "paygate", "--secret", "sk_live_x"}, "sk_test_", ""},
		{"PayGateEnvNotTest", map[string]string{EnvPayGateSecret: "nope"}, []string{"--api", "paygate"}, "PAYGATE_SECRET_KEY", ""},
		{"PayGateLegacy", nil, []string{"--api", "paygate", "--legacy"}, "--legacy: not supported with --api paygate", ""},
		{"PinDropRate", nil, []string{"--api", "pin", "--drop-rate", "0.1"}, "--drop-rate: not supported", ""},
		{"PinKeyID", nil, []string{"--api", "pin", "--key-id", "k"}, "--key-id", ""},
		{"PayGateSeedCSV", nil, []string{"--api", "paygate", "--seed-pin-csv", "x.csv"}, "--seed-pin-csv", ""},
		{"PlugipaySeedCSV", nil, []string{"--seed-pin-csv", "x.csv"}, "--seed-pin-csv: not with --api plugipay", ""},
		{"PlugipayRPS", nil, []string{"--requests-per-second", "3"}, "--requests-per-second", ""},
		{"NegativeRPS", nil, []string{"--api", "pin", "--requests-per-second", "-1"}, "--requests-per-second", ""},
		{"EmptyPinSecret", nil, []string{"--api", "pin", "--secret", ""}, "--secret", ""},
		{"SeedMissingFile", nil, []string{"--api", "pin", "--seed-pin-csv", filepath.Join(dir, "absent.csv")}, "absent.csv", ""},
		{"SeedNoEmailColumn", nil, []string{"--api", "pin", "--seed-pin-csv", bad("noemail.csv", "first_name\nAda\n")}, "no email column", ""},
		{"SeedUnknownColumn", nil, []string{"--api", "pin", "--seed-pin-csv", bad("unknown.csv", "email,card_number\na@b.c,4242\n")}, `unknown column "card_number"`, ""},
		{"SeedEmptyEmail", nil, []string{"--api", "pin", "--seed-pin-csv", bad("empty.csv", "email,first_name\na@b.c,A\n,B\n")}, "empty.csv:3: empty email", ""},
		{"SeedDuplicateToken", nil, []string{"--api", "pin", "--seed-pin-csv", bad("tok.csv", "token,email\ncus_1,a@b.c\ncus_1,b@b.c\n")}, "appears twice", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMain()
			m.Getenv = func(k string) string { return tt.env[k] }
			m.Stderr = io.Discard
			err := m.ParseFlags(context.Background(), append([]string{"--addr", "127.0.0.1:0"}, tt.args...))
			if err == nil {
				err = m.Run(context.Background())
				t.Cleanup(func() { _ = m.Close() })
			}
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				if m.Secret != tt.secret {
					t.Fatalf("Secret = %q, want %q", m.Secret, tt.secret)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "sk_live_x") || strings.Contains(err.Error(), "nope") {
				t.Fatalf("error echoes the secret: %v", err)
			}
		})
	}
}

// TestProcess_PinFake runs the program with --api pin: the address file
// holds the base URL with /1, seeded customers are served, SIGTERM exits 0.
func TestProcess_PinFake(t *testing.T) {
	seed := filepath.Join(t.TempDir(), "checkout.csv")
	if err := os.WriteFile(seed, []byte("email,first_name,last_name\nada@example.com,Ada,Lovelace\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvPinSecret, "pin_proc_key")
	cmd, base := spawn(t, "--api pin --seed-pin-csv "+seed)
	if !strings.HasSuffix(base, "/1") {
		t.Fatalf("address file = %q, want the base URL with /1", base)
	}
	status, body := fakeCall(t, APIPin, "pin_proc_key", "GET", base+"/customers", "")
	if status != 200 || !strings.Contains(body, `"email":"ada@example.com"`) {
		t.Fatalf("list: %d %s", status, body)
	}
	terminate(t, cmd)
}
