package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/csv"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	stdsync "sync"
	"syscall"
	"testing"
	"time"

	"github.com/plugipay-sync/plugipay-sync/plugipay/emulator"
	"github.com/plugipay-sync/plugipay-sync/state"
)

// TestMain lets the test binary act as plugipay-sync itself, so tests can
// run, signal and kill the real program as a child process.
func TestMain(m *testing.M) {
	if os.Getenv("PLUGIPAY_SYNC_AS_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

const (
	testKeyID  = "key_test"
	testSecret = "sk_test_e2e_secret"
)

type e2e struct {
	t      *testing.T
	emu    *emulator.Server
	url    string
	dir    string
	config string
	state  string
}

// newE2E starts the emulator over real HTTP and writes a config reading
// csvPath into a state file in a temp dir.
func newE2E(t *testing.T, csvPath string, opts emulator.Options) *e2e {
	t.Helper()
	opts.Keys = map[string]string{testKeyID: testSecret}
	emu := emulator.New(opts)
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	e := &e2e{t: t, emu: emu, url: srv.URL, dir: t.TempDir()}
	e.state = filepath.Join(e.dir, "state.db")
	e.config = filepath.Join(e.dir, "config.yaml")
	e.writeConfig(csvPath, "@every 1h")
	return e
}

func (e *e2e) writeConfig(csvPath, schedule string) {
	e.t.Helper()
	testConfig{Schedule: schedule, Listen: "127.0.0.1:0", State: e.state, BaseURL: e.url, CSV: csvPath,
		MaxAttempts: 2, Concurrency: 4, AllColumns: true, LogLevel: "warn"}.write(e.t, e.config)
}

// defaultTestMetadata is the metadata mapping of the test configs when
// they name none.
const defaultTestMetadata = "{plan: plan, city: city, signup_source: signup_source}"

// testConfig is the config the tests run the program with: the emulator's
// key, client rate caps off, and the CSV columns of writeUsers. Empty
// optional fields are left out of the file (the program's defaults).
type testConfig struct {
	Schedule, Listen, State, BaseURL, CSV string
	Timeout                               string // plugipay.timeout
	MaxAttempts, Concurrency              int
	RetryMin, RetryMax                    string // sync.retry_min, retry_max
	LogLevel                              string
	// AllColumns maps phone and tax_id too; Metadata replaces the default
	// metadata columns {plan, city, signup_source}.
	AllColumns bool
	Metadata   string
}

func (c testConfig) write(t *testing.T, path string) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "schedule: %q\nlisten: %q\nstate:\n  path: %s\n", c.Schedule, c.Listen, c.State)
	fmt.Fprintf(&b, "plugipay:\n  base_url: %s\n  key_id: %s\n  secret: ${TEST_SECRET}\n  reads_per_second: 0\n  writes_per_second: 0\n", c.BaseURL, testKeyID)
	if c.Timeout != "" {
		fmt.Fprintf(&b, "  timeout: %s\n", c.Timeout)
	}
	fmt.Fprintf(&b, "  max_attempts: %d\n", c.MaxAttempts)
	fmt.Fprintf(&b, "crm:\n  type: csv\n  csv:\n    path: %s\n    columns:\n      external_id: id\n      email: email\n      name: full_name\n", c.CSV)
	if c.AllColumns {
		b.WriteString("      phone: phone\n      tax_id: npwp\n")
	}
	fmt.Fprintf(&b, "      metadata: %s\nsync:\n  concurrency: %d\n", cmp.Or(c.Metadata, defaultTestMetadata), c.Concurrency)
	if c.RetryMin != "" {
		fmt.Fprintf(&b, "  retry_min: %s\n  retry_max: %s\n", c.RetryMin, c.RetryMax)
	}
	fmt.Fprintf(&b, "log:\n  level: %s\n", c.LogLevel)
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
}

// once runs plugipay-sync --once in-process and returns its exit code and
// summary.
func (e *e2e) once(extra ...string) (int, string) {
	e.t.Helper()
	return onceInProcess(e.t, e.config, extra...)
}

// onceInProcess runs plugipay-sync --once in-process on config, with
// TEST_SECRET set, and returns its exit code and summary (and the error,
// if any); it fails the test if the secret shows up in any output.
func onceInProcess(t *testing.T, config string, extra ...string) (int, string) {
	t.Helper()
	code, out, errOut := onceWithSecret(t, config, testSecret, extra...)
	assertNoSecret(t, out, errOut)
	return code, out
}

// onceWithSecret runs plugipay-sync --once in-process on config with
// TEST_SECRET set to secret, and returns its exit code, its summary (and
// the error, if any) and its standard error.
func onceWithSecret(t *testing.T, config, secret string, extra ...string) (code int, out, errOut string) {
	t.Helper()
	var o, e bytes.Buffer
	m := NewMain(&o, &e)
	m.LookupEnv = env(map[string]string{"TEST_SECRET": secret})
	if err := m.ParseFlags(append([]string{"--config", config, "--once"}, extra...)); err != nil {
		t.Fatal(err)
	}
	code, err := m.Run(context.Background())
	if err != nil {
		fmt.Fprintf(&o, "error: %v\n", err)
	}
	return code, o.String(), e.String()
}

// commandInProcess runs a subcommand (rebuild-cache, status...) in-process
// with config and TEST_SECRET set, and returns its exit code, its standard
// output (and the error, if any) and its standard error.
func commandInProcess(t *testing.T, config, name string, args ...string) (code int, out, errOut string) {
	t.Helper()
	var o, e bytes.Buffer
	m := NewMain(&o, &e)
	defer m.Close()
	m.LookupEnv = env(map[string]string{"TEST_SECRET": testSecret})
	code, err := commandTable()[name].Run(context.Background(), m, append([]string{"--config", config}, args...))
	if err != nil {
		o.WriteString("error: " + err.Error() + "\n")
	}
	return code, o.String(), e.String()
}

// assertNoSecret fails the test if the test secret shows up in a run's
// standard output or error.
func assertNoSecret(t *testing.T, out, errOut string) {
	t.Helper()
	if strings.Contains(out+errOut, testSecret) {
		t.Fatalf("the secret appeared in the output:\n%s\n%s", out, errOut)
	}
}

// removeStateFiles removes a state DB with its -wal and -shm files.
func removeStateFiles(t *testing.T, path string) {
	t.Helper()
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Remove(path + suffix); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
}

func (e *e2e) writes() int {
	return e.emu.RequestCount(http.MethodPost, "/api/v1/customers") +
		e.emu.RequestCount(http.MethodPatch, "/api/v1/customers/{id}")
}

func (e *e2e) assertNoDuplicates() {
	e.t.Helper()
	seen := map[string]bool{}
	for _, c := range e.emu.Customers() {
		if seen[c.ExternalID] {
			e.t.Fatalf("duplicate customer for externalId %q", c.ExternalID)
		}
		seen[c.ExternalID] = true
	}
}

func wantSummary(t *testing.T, out, want string) {
	t.Helper()
	if !strings.Contains(out, want) {
		t.Fatalf("summary:\n%s\nwant it to contain %q", out, want)
	}
}

// TestOnce_SampleData runs the foundation's acceptance path on the sample
// CRM export: backfill, a no-op pass, a lost state DB, one rename.
func TestOnce_SampleData(t *testing.T) {
	e := newE2E(t, "../../crm/testdata/sample_users.csv", emulator.Options{})

	code, out := e.once()
	if code != ExitPartial {
		t.Fatalf("first pass exit %d, want %d (5 bad rows):\n%s", code, ExitPartial, out)
	}
	wantSummary(t, out, "read 1200  created 1195  updated 0  unchanged 0  recovered 0  rejected 5  failed 0")
	if n := e.emu.CustomerCount(); n != 1195 {
		t.Fatalf("emulator holds %d customers, want 1195", n)
	}

	reqs := e.requests()
	_, out = e.once()
	wantSummary(t, out, "created 0  updated 0  unchanged 1195  recovered 0  rejected 5  failed 0")
	if d := e.requests().sub(reqs); !d.preflightOnly() {
		t.Fatalf("unchanged pass made %+v, want only the preflight's reads", d)
	}

	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(e.state + suffix)
	}
	executed := e.emu.WritesExecuted()
	_, out = e.once()
	// The cache is rebuilt from the customer list before writing.
	wantSummary(t, out, "created 0  updated 0  unchanged 1195  recovered 0  rejected 5  failed 0")
	if e.emu.WritesExecuted() != executed {
		t.Fatalf("recovery executed %d writes; want none (nothing differs)", e.emu.WritesExecuted()-executed)
	}
	if n := e.emu.CustomerCount(); n != 1195 {
		t.Fatalf("emulator holds %d customers after recovery, want 1195", n)
	}
	e.assertNoDuplicates()

	renamed := renameFirst(t, "../../crm/testdata/sample_users.csv", filepath.Join(e.dir, "renamed.csv"))
	e.writeConfig(renamed, "@every 1h")
	patches := e.emu.RequestCount(http.MethodPatch, "/api/v1/customers/{id}")
	_, out = e.once()
	wantSummary(t, out, "created 0  updated 1  unchanged 1194  recovered 0  rejected 5  failed 0")
	if got := e.emu.RequestCount(http.MethodPatch, "/api/v1/customers/{id}") - patches; got != 1 {
		t.Fatalf("%d PATCH requests, want exactly 1", got)
	}
}

// renameFirst copies src to dst with the first data row's full_name changed.
func renameFirst(t *testing.T, src, dst string) string {
	t.Helper()
	f, err := os.Open(src)
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
	col := -1
	for i, h := range rows[0] {
		if strings.TrimPrefix(h, "\uFEFF") == "full_name" {
			col = i
		}
	}
	rows[1][col] += " Renamed"
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	if err := w.WriteAll(rows); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return dst
}

// writeUsers writes a CSV of n valid users.
func writeUsers(t *testing.T, path string, n int) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("id,email,full_name,phone,npwp,plan,city,signup_source\n")
	for i := range n {
		fmt.Fprintf(&b, "usr_%05d,user%d@example.co.id,Pengguna %d,,,pro,Bandung,web\n", i, i, i)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestOnce_ExitCodes(t *testing.T) {
	t.Run("OK", func(t *testing.T) {
		dir := t.TempDir()
		e := newE2E(t, writeUsers(t, filepath.Join(dir, "u.csv"), 30), emulator.Options{})
		code, out := e.once()
		if code != ExitOK {
			t.Fatalf("exit %d:\n%s", code, out)
		}
		wantSummary(t, out, "run 1: success")
	})
	t.Run("WrongSecret", func(t *testing.T) {
		dir := t.TempDir()
		e := newE2E(t, writeUsers(t, filepath.Join(dir, "u.csv"), 30), emulator.Options{})
		e.emu = emulator.New(emulator.Options{Keys: map[string]string{testKeyID: "another"}})
		srv := httptest.NewServer(e.emu)
		defer srv.Close()
		e.url = srv.URL
		e.writeConfig(filepath.Join(dir, "u.csv"), "@every 1h")
		code, out := e.once()
		if code != ExitConfig {
			t.Fatalf("exit %d, want %d:\n%s", code, ExitConfig, out)
		}
		wantSummary(t, out, "invalid_signature")
		if e.emu.CustomerCount() != 0 {
			t.Fatal("customers created with a wrong secret")
		}
	})
	t.Run("Unreachable", func(t *testing.T) {
		dir := t.TempDir()
		e := newE2E(t, writeUsers(t, filepath.Join(dir, "u.csv"), 3), emulator.Options{})
		e.url = "http://127.0.0.1:1" // nothing listens on port 1
		e.writeConfig(filepath.Join(dir, "u.csv"), "@every 1h")
		code, out := e.once()
		if code != ExitTransient {
			t.Fatalf("exit %d, want %d (an outage: run the Job again):\n%s", code, ExitTransient, out)
		}
		// Every run first proves its credentials, which fails: nothing
		// was written.
		wantSummary(t, out, "prove the credentials: the destination is unreachable or failing: network_error")
	})
	t.Run("BadConfig", func(t *testing.T) {
		e := newE2E(t, "missing.csv", emulator.Options{})
		if err := os.WriteFile(e.config, []byte("shedule: x\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		code, out := e.once()
		if code != ExitConfig {
			t.Fatalf("exit %d, want %d", code, ExitConfig)
		}
		wantSummary(t, out, "field shedule not found")
	})
}

// TestDaemon_SIGTERM runs the real program as a daemon, sends SIGTERM in
// the middle of its first run, and checks it exits 0 within 30 s with the
// state consistent, and that the next run completes the work without
// duplicates.
func TestDaemon_SIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process; skipped with -short")
	}
	const n = 600
	dir := t.TempDir()
	csvPath := writeUsers(t, filepath.Join(dir, "u.csv"), n)
	e := newE2E(t, csvPath, emulator.Options{Faults: emulator.Faults{Latency: 15 * time.Millisecond}})

	cmd := exec.Command(os.Args[0], "--config", e.config)
	cmd.Env = append(os.Environ(), "PLUGIPAY_SYNC_AS_MAIN=1", "TEST_SECRET="+testSecret)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for e.emu.WritesExecuted() < 50 {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("daemon made no progress:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	signaled := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("daemon exited with %v after SIGTERM:\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("daemon still running 30 s after SIGTERM:\n%s", stderr.String())
	}
	t.Logf("exited %s after SIGTERM with %d of %d customers created", time.Since(signaled).Round(time.Millisecond), e.emu.CustomerCount(), n)
	if e.emu.CustomerCount() >= n {
		t.Fatalf("the run finished before the signal (%d customers); the test proves nothing", e.emu.CustomerCount())
	}

	// Every customer the emulator created is mapped: the in-flight
	// requests finished and were committed.
	db, err := state.Open(context.Background(), e.state)
	if err != nil {
		t.Fatal(err)
	}
	mapped, err := db.MappingCount(context.Background())
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	if int(mapped) != e.emu.CustomerCount() {
		t.Errorf("state maps %d customers, emulator holds %d", mapped, e.emu.CustomerCount())
	}

	e.emu.SetFaults(emulator.Faults{})
	code, out := e.once()
	if code != ExitOK {
		t.Fatalf("next run exit %d:\n%s", code, out)
	}
	wantSummary(t, out, fmt.Sprintf("created %d", n-int(mapped)))
	if e.emu.CustomerCount() != n {
		t.Fatalf("after the next run: %d customers, want %d", e.emu.CustomerCount(), n)
	}
	e.assertNoDuplicates()
}

// TestDaemon_MetricsAndHealth runs the daemon in-process and scrapes it.
func TestDaemon_MetricsAndHealth(t *testing.T) {
	dir := t.TempDir()
	e := newE2E(t, writeUsers(t, filepath.Join(dir, "u.csv"), 25), emulator.Options{})
	base, stop := startDaemon(t, e)
	deadline := time.Now().Add(20 * time.Second)
	var body string
	for {
		body = get(t, base+"/metrics")
		if strings.Contains(body, `plugipay_sync_runs_total{outcome="success"} 1`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no successful run reported:\n%s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, want := range []string{
		`plugipay_sync_records_total{action="created"} 25`,
		`plugipay_sync_run_in_progress 0`,
		`plugipay_sync_build_info{`,
		`plugipay_sync_last_success_timestamp_seconds`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(body, "@example.co.id") || strings.Contains(body, "Pengguna") {
		t.Error("/metrics carries an email or a name")
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if b := get(t, base+path); !strings.Contains(b, `"status"`) {
			t.Errorf("%s = %q", path, b)
		}
	}
	if code := stop(); code != ExitOK {
		t.Fatalf("exit %d after shutdown", code)
	}
}

// startDaemon runs the daemon in-process against e and returns its
// metrics base URL and a stop function that shuts it down and returns the
// exit code; it is also stopped when the test ends.
func startDaemon(t *testing.T, e *e2e) (base string, stop func() int) {
	t.Helper()
	return startDaemonConfig(t, e.config)
}

// startDaemonConfig is startDaemon on the config file config.
func startDaemonConfig(t *testing.T, config string) (base string, stop func() int) {
	t.Helper()
	return startDaemonConfigWith(t, config, nil)
}

// startDaemonConfigWith is startDaemonConfig with setup, if set, called on
// the Main before it runs (a test's hooks).
func startDaemonConfigWith(t *testing.T, config string, setup func(*Main)) (base string, stop func() int) {
	t.Helper()
	var out, errOut bytes.Buffer
	m := NewMain(&out, &errOut)
	m.LookupEnv = env(map[string]string{"TEST_SECRET": testSecret})
	if setup != nil {
		setup(m)
	}
	addr := make(chan string, 1)
	m.Ready = func(a string) { addr <- a }
	if err := m.ParseFlags([]string{"--config", config}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		code, _ := m.Run(ctx)
		done <- code
	}()
	var once stdsync.Once
	code := -1
	stop = func() int {
		once.Do(func() {
			cancel()
			select {
			case code = <-done:
			case <-time.After(30 * time.Second):
				t.Error("daemon did not stop within 30 s")
			}
		})
		return code
	}
	t.Cleanup(func() { stop() })
	select {
	case a := <-addr:
		return "http://" + a, stop
	case c := <-done:
		done <- c // for stop
		t.Fatalf("daemon exited %d:\n%s", c, errOut.String())
	}
	return "", stop
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return b.String()
}
