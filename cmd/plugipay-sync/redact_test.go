package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"os"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/plugipay-sync/plugipay-sync/plugipay/emulator"
)

func TestRedactPII(t *testing.T) {
	tests := []struct{ in, want string }{
		{`invalid email "dewi lestari@yahoo.co.id"`, `invalid email "dewi l***@yahoo.co.id"`},
		{"budi.santoso@gmail.com", "b***@gmail.com"},
		{"phone +62 812-3456-7890 too long", "phone +***90 too long"},
		{"call 0812 3456 7890", "call 0***90"},
		{"request req_01HX9 took 1767225600 ns", "request req_01HX9 took 1767225600 ns"},
		{"usr_000123 at line 42", "usr_000123 at line 42"},
	}
	for _, tt := range tests {
		if got := redactPII(tt.in); got != tt.want {
			t.Errorf("redactPII(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestRedactCore logs personal data through the real logger: masked by
// default, as written with --log-pii.
func TestRedactCore(t *testing.T) {
	for _, pii := range []bool{false, true} {
		var buf bytes.Buffer
		log, err := newLogger(LogConfig{Format: "json", Level: "debug"}, &buf, pii)
		if err != nil {
			t.Fatal(err)
		}
		log.With(zap.String("who", "ada@example.com")).Warn("rejected +62 812-3456-7890",
			zap.Error(errors.New("email ada@example.com is taken")), zap.String("reason", "x"))
		got := buf.String()
		leaked := strings.Contains(got, "ada@example.com") || strings.Contains(got, "812-3456")
		if leaked != pii {
			t.Errorf("pii=%v: logged %s", pii, got)
		}
	}
}

// TestLogsCarryNoSecretOrPII runs a full sync of the sample data with debug
// logging and greps every line written for the secret and for the sample
// users' emails and phones.
func TestLogsCarryNoSecretOrPII(t *testing.T) {
	pii := samplePII(t)
	e := newE2E(t, "../../crm/testdata/sample_users.csv", emulator.Options{})
	var out, errOut bytes.Buffer
	m := NewMain(&out, &errOut)
	m.LookupEnv = env(map[string]string{"TEST_SECRET": testSecret})
	if err := m.ParseFlags([]string{"--config", e.config, "--once", "--log-level", "debug"}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	logs := out.String() + errOut.String()
	if n := strings.Count(logs, "\n"); n < 1000 {
		t.Fatalf("only %d log lines at debug level", n)
	}
	if strings.Contains(logs, testSecret) {
		t.Fatal("the API secret appears in the logs")
	}
	var leaked []string
	for _, v := range pii {
		if strings.Contains(logs, v) {
			leaked = append(leaked, v)
		}
	}
	if len(leaked) > 0 {
		t.Errorf("emails or phones of the sample users appear in the logs: %q", leaked)
	}
}

// samplePII lists the email and phone values of the sample CSV.
func samplePII(t *testing.T) []string {
	t.Helper()
	f, err := os.Open("../../crm/testdata/sample_users.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, row := range rows[1:] {
		for _, i := range []int{1, 3} { // email, phone
			if i < len(row) && len(strings.TrimSpace(row[i])) > 5 {
				out = append(out, strings.TrimSpace(row[i]))
			}
		}
	}
	return out
}
