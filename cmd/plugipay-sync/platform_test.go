package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	stdsync "sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/plugipay-sync/plugipay-sync/plugipay"
	"github.com/plugipay-sync/plugipay-sync/plugipay/emulator"
)

// platformWorld is a CRM with many merchants in one SQLite file and one
// emulator per merchant account, reached through one base URL: a small
// proxy routes each request by its X-Plugipay-On-Behalf-Of header, as the
// real API scopes a platform key's calls (an account it does not know
// answers 403 insufficient_scope). So every tenant's client really sends
// its own on_behalf_of over HTTP, and a customer written with the wrong
// one lands in the wrong emulator, where the test sees it.
type platformWorld struct {
	t      *testing.T
	crm    *sql.DB
	dir    string
	config string
	url    string

	mu   stdsync.Mutex
	emus map[string]*emulator.Server // by account
	// users are the external ids of each tenant's users.
	users map[string][]string
	next  int
	// unscoped counts requests that carried no on_behalf_of.
	unscoped atomic.Int64
}

func newPlatformWorld(t *testing.T, concurrency int) *platformWorld {
	return newPlatformWorldOn(t, concurrency, "", "@every 1h")
}

// newPlatformWorldOn is newPlatformWorld with the config's listen and
// schedule.
func newPlatformWorldOn(t *testing.T, concurrency int, listen, schedule string) *platformWorld {
	t.Helper()
	w := &platformWorld{t: t, dir: t.TempDir(), emus: map[string]*emulator.Server{}, users: map[string][]string{}}
	crmPath := filepath.Join(w.dir, "crm.db")
	db, err := sql.Open("sqlite3", "file:"+crmPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	w.crm = db
	for _, ddl := range []string{
		`CREATE TABLE merchants (tenant_id TEXT PRIMARY KEY, plugipay_account TEXT NOT NULL)`,
		`CREATE TABLE members (id INTEGER PRIMARY KEY, tenant_id TEXT NOT NULL, email TEXT, full_name TEXT,
			extra TEXT NOT NULL DEFAULT '{}', updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)`,
		`CREATE INDEX members_tenant ON members (tenant_id, id)`,
	} {
		if _, err := db.Exec(ddl); err != nil {
			t.Fatal(err)
		}
	}
	proxy := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		acc := r.Header.Get(plugipay.HeaderOnBehalfOf)
		if acc == "" {
			w.unscoped.Add(1)
		}
		w.mu.Lock()
		emu := w.emus[acc]
		w.mu.Unlock()
		if emu == nil {
			rw.Header().Set("Content-Type", "application/json")
			rw.WriteHeader(http.StatusForbidden)
			fmt.Fprintf(rw, `{"data":null,"error":{"code":%q,"message":"the key is not connected to %s"}}`+"\n", plugipay.CodeInsufficientScope, acc)
			return
		}
		emu.ServeHTTP(rw, r)
	}))
	t.Cleanup(proxy.Close)
	w.url = proxy.URL
	w.config = filepath.Join(w.dir, "config.yaml")
	cfg := fmt.Sprintf(`schedule: %q
listen: %q
state:
  path: %s
destination:
  plugipay:
    base_url: %s
    key_id: %s
    secret: ${TEST_SECRET}
    reads_per_second: 0
    writes_per_second: 0
    max_attempts: 2
crm:
  type: sql
  sql:
    driver: sqlite
    dsn: file:%s
    # json(extra) fails the query of a tenant whose rows hold bad JSON (it
    # is read: it is mapped): a CRM query error of that tenant alone.
    query: SELECT id, tenant_id, email, full_name, json(extra) AS extra, updated_at FROM members
    tenant_column: tenant_id
    # Each tenant's watermark lives in its own state file.
    incremental: true
    full_scan_every: 3
    columns:
      external_id: id
      email: email
      name: full_name
      metadata: {extra: extra}
tenants:
  query: SELECT tenant_id, plugipay_account FROM merchants ORDER BY tenant_id
  concurrency: %d
  metrics_tenants: [t00]
log:
  level: error
`, schedule, listen, filepath.Join(w.dir, "state"), w.url, testKeyID, crmPath, concurrency)
	if err := os.WriteFile(w.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return w
}

// addTenant adds a merchant with n users to the CRM and its account's
// emulator; secret is the key's secret there (another than the test's:
// the platform key was revoked for that workspace). extra is each user's
// extra column (bad JSON breaks the tenant's query).
func (w *platformWorld) addTenant(id string, n int, secret, extra string) {
	w.t.Helper()
	acc := "acc_" + strings.ReplaceAll(id, "-", "_")
	if _, err := w.crm.Exec(`INSERT INTO merchants VALUES (?, ?)`, id, acc); err != nil {
		w.t.Fatal(err)
	}
	w.mu.Lock()
	w.emus[acc] = emulator.New(emulator.Options{Keys: map[string]string{testKeyID: secret}, AccountID: acc})
	w.mu.Unlock()
	for range n {
		w.next++
		if _, err := w.crm.Exec(`INSERT INTO members (id, tenant_id, email, full_name, extra) VALUES (?, ?, ?, ?, ?)`,
			w.next, id, fmt.Sprintf("user%d@%s.example.com", w.next, id), fmt.Sprintf("User %d", w.next), extra); err != nil {
			w.t.Fatal(err)
		}
		w.users[id] = append(w.users[id], strconv.Itoa(w.next))
	}
}

// emu is tenant id's emulator.
func (w *platformWorld) emu(id string) *emulator.Server {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.emus["acc_"+strings.ReplaceAll(id, "-", "_")]
}

// writes is the number of writes every emulator executed.
func (w *platformWorld) writes() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, e := range w.emus {
		n += e.WritesExecuted()
	}
	return n
}

// round runs --once in-process with hook on the tenants' runs and returns
// the exit code, the output and the Main (for its metrics).
func (w *platformWorld) round(hook func(string) func()) (int, string, *Main) {
	w.t.Helper()
	var o, e bytes.Buffer
	m := NewMain(&o, &e)
	m.LookupEnv = env(map[string]string{"TEST_SECRET": testSecret})
	m.tenantHook = hook
	if err := m.ParseFlags([]string{"--config", w.config, "--once"}); err != nil {
		w.t.Fatal(err)
	}
	code, err := m.Run(context.Background())
	if err != nil {
		fmt.Fprintf(&o, "error: %v\n", err)
	}
	assertNoSecret(w.t, o.String(), e.String())
	return code, o.String(), m
}

// checkConverged fails unless each tenant's workspace holds exactly its
// own users, each once, and no other customer.
func (w *platformWorld) checkConverged(ids ...string) {
	w.t.Helper()
	for _, id := range ids {
		var got []string
		for _, c := range w.emu(id).Customers() {
			got = append(got, c.ExternalID)
		}
		slices.Sort(got)
		want := slices.Clone(w.users[id])
		slices.Sort(want)
		if !slices.Equal(got, want) {
			w.t.Errorf("tenant %s's workspace holds %d customers %v, want its %d users %v", id, len(got), got, len(want), want)
		}
	}
}

// TestPlatform_Tenants runs platform mode end to end against the emulator
// over real HTTP with on_behalf_of: 20 merchants x 25 users converge, each
// in its own workspace; one merchant whose CRM query fails and one whose
// workspace answers 401 fail alone, and status and the metrics say so; a
// second round writes nothing; the pool never runs more than
// tenants.concurrency tenants at once, and does reach it; a merchant added
// to the CRM is synced by the next round.
func TestPlatform_Tenants(t *testing.T) {
	const concurrency = 4
	w := newPlatformWorld(t, concurrency)
	var good []string
	for i := range 20 {
		id := fmt.Sprintf("t%02d", i)
		w.addTenant(id, 25, testSecret, "{}")
		good = append(good, id)
	}
	w.addTenant("t-badjson", 5, testSecret, "not json")
	w.addTenant("t-revoked", 5, "sk_test_another_secret", "{}")

	// The pool, counted from the runs: the first runs wait for each
	// other until concurrency of them are going (a pool of fewer workers
	// never gets there), and no run ever sees more than concurrency.
	var (
		active, peak, started atomic.Int32
		barrier               = make(chan struct{})
	)
	hook := func(string) func() {
		n := active.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		if started.Add(1) == concurrency {
			close(barrier)
		}
		select {
		case <-barrier:
		case <-time.After(time.Minute):
			t.Errorf("only %d tenant runs went at once in a minute; want %d", active.Load(), concurrency)
		}
		return func() { active.Add(-1) }
	}
	code, out, m := w.round(hook)
	if code != ExitConfig {
		t.Errorf("exit code %d, want %d (ExitConfig, the 401 tenant's, the worst)\n%s", code, ExitConfig, out)
	}
	if got := peak.Load(); got != concurrency {
		t.Errorf("at most %d tenant runs went at once, want exactly %d", got, concurrency)
	}
	if got := started.Load(); got != 22 {
		t.Errorf("%d tenant runs, want 22 (one each)", got)
	}
	w.checkConverged(good...)
	for _, id := range []string{"t-badjson", "t-revoked"} {
		if n := w.emu(id).CustomerCount(); n != 0 {
			t.Errorf("failing tenant %s has %d customers", id, n)
		}
	}
	if n := w.unscoped.Load(); n != 0 {
		t.Errorf("%d requests without on_behalf_of", n)
	}
	for _, want := range []string{"round: 22 tenants, 2 failed, 0 skipped", "t-badjson", "t-revoked"} {
		if !strings.Contains(out, want) {
			t.Errorf("round output lacks %q:\n%s", want, out)
		}
	}

	// The metrics: totals, states, and series for the failing tenants
	// and the opted-in t00 only.
	tm := m.platform.metrics
	checkGauge := func(name string, got, want float64) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	checkGauge(`plugipay_sync_tenants{state="failing"}`, testutil.ToFloat64(tm.states.WithLabelValues(tenantFailing)), 2)
	checkGauge(`plugipay_sync_tenants{state="ok"}`, testutil.ToFloat64(tm.states.WithLabelValues(tenantOK)), 20)
	checkGauge(`plugipay_sync_tenant_runs_total{outcome="failed"}`, testutil.ToFloat64(tm.runs["failed"]), 2)
	checkGauge(`plugipay_sync_tenant_runs_total{outcome="success"}`, testutil.ToFloat64(tm.runs["success"]), 20)
	checkGauge(`plugipay_sync_tenant_failing{tenant="t-badjson"}`, testutil.ToFloat64(tm.failingVec.WithLabelValues("t-badjson")), 1)
	checkGauge(`plugipay_sync_tenant_failing{tenant="t-revoked"}`, testutil.ToFloat64(tm.failingVec.WithLabelValues("t-revoked")), 1)
	checkGauge(`plugipay_sync_tenant_failing{tenant="t00"}`, testutil.ToFloat64(tm.failingVec.WithLabelValues("t00")), 0)
	if n := testutil.CollectAndCount(tm.failingVec); n != 3 {
		t.Errorf("plugipay_sync_tenant_failing has %d series, want 3 (two failing, one opted in)", n)
	}

	// status: the table, its JSON, and one tenant's own status.
	_, table, _ := commandInProcess(t, w.config, "status")
	if !strings.Contains(table, "Tenants:         22 (2 failing)") {
		t.Errorf("status table:\n%s", table)
	}
	_, js, _ := commandInProcess(t, w.config, "status", "--output", "json")
	var rows []tenantStatus
	if err := json.Unmarshal([]byte(js), &rows); err != nil {
		t.Fatalf("status --output json: %v\n%s", err, js)
	}
	var failing []string
	for _, r := range rows {
		if r.failing() {
			failing = append(failing, r.Tenant)
			continue
		}
		if r.LastRun == nil || r.LastRun.Outcome != "success" || r.LastRun.Created != 25 || r.LagSeconds == nil {
			t.Errorf("status of %s: %+v", r.Tenant, r)
		}
	}
	if want := []string{"t-badjson", "t-revoked"}; len(rows) != 22 || !slices.Equal(failing, want) {
		t.Errorf("status lists %d tenants, failing %v; want 22, failing %v", len(rows), failing, want)
	}
	_, one, _ := commandInProcess(t, w.config, "status", "--tenant", "t03")
	if !strings.Contains(one, "Cache:         25 mappings") || !strings.Contains(one, "t03.db") {
		t.Errorf("status --tenant t03:\n%s", one)
	}

	// Each healthy tenant's watermark is in its own state file; the
	// tenant whose read failed has none.
	for id, want := range map[string]int{"t03": 1, "t17": 1, "t-badjson": 0} {
		sdb, err := sql.Open("sqlite3", "file:"+filepath.Join(w.dir, "state", id+".db")+"?mode=ro")
		if err != nil {
			t.Fatal(err)
		}
		var n int
		if err := sdb.QueryRow(`SELECT count(*) FROM source_watermarks`).Scan(&n); err != nil || n != want {
			t.Errorf("tenant %s: %d watermarks (%v), want %d", id, n, err, want)
		}
		sdb.Close()
	}

	// The per-workspace commands point at one tenant's file.
	if code, out, _ := commandInProcess(t, w.config, "failures"); code == ExitOK || !strings.Contains(out, "name one tenant's with --state") {
		t.Errorf("failures on the tenants' directory: exit %d\n%s", code, out)
	}
	if code, out, _ := commandInProcess(t, w.config, "failures", "--state", filepath.Join(w.dir, "state", "t03.db")); code != ExitOK {
		t.Errorf("failures --state <tenant file>: exit %d\n%s", code, out)
	}

	// A second round writes nothing.
	before := w.writes()
	if code, out, _ := w.round(nil); code != ExitConfig {
		t.Errorf("second round: exit code %d, want %d\n%s", code, ExitConfig, out)
	}
	if got := w.writes(); got != before {
		t.Errorf("the second round made %d writes, want 0", got-before)
	}

	// A merchant added to the CRM between rounds is synced by the next;
	// one healed drops its series.
	w.addTenant("t20", 25, testSecret, "{}")
	if _, err := w.crm.Exec(`UPDATE members SET extra = '{}' WHERE tenant_id = 't-badjson'`); err != nil {
		t.Fatal(err)
	}
	w.users["t-badjson"] = w.users["t-badjson"][:5]
	code, out, m = w.round(nil)
	if code != ExitConfig {
		t.Errorf("third round: exit code %d, want %d\n%s", code, ExitConfig, out)
	}
	w.checkConverged(append(good, "t20", "t-badjson")...)
	tm = m.platform.metrics
	checkGauge(`plugipay_sync_tenants{state="failing"}`, testutil.ToFloat64(tm.states.WithLabelValues(tenantFailing)), 1)
	if n := testutil.CollectAndCount(tm.failingVec); n != 2 {
		t.Errorf("after t-badjson healed plugipay_sync_tenant_failing has %d series, want 2 (t-revoked, t00)", n)
	}
}

// TestPlatform_Daemon runs the platform daemon on a one-second schedule:
// round after round, the healthy tenants converge and stay converged, the
// failing one is reported by /metrics with its own series while healthy
// tenants not opted in have none, and /readyz is ready.
func TestPlatform_Daemon(t *testing.T) {
	w := newPlatformWorldOn(t, 2, "127.0.0.1:0", "@every 1s")
	for _, id := range []string{"t00", "t01", "t02"} {
		w.addTenant(id, 10, testSecret, "{}")
	}
	w.addTenant("t-revoked", 3, "sk_test_another_secret", "{}")
	base, stop := startDaemonConfig(t, w.config)
	// Two rounds of the three healthy tenants at least.
	eventually(t, "a second round", func() bool {
		return metricValue(t, base, `plugipay_sync_tenant_runs_total{outcome="success"}`) >= 6
	})
	metrics := get(t, base+"/metrics")
	for _, want := range []string{
		`plugipay_sync_tenants{state="failing"} 1`,
		`plugipay_sync_tenants{state="ok"} 3`,
		`plugipay_sync_tenant_failing{tenant="t-revoked"} 1`,
		`plugipay_sync_tenant_failing{tenant="t00"} 0`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for _, absent := range []string{`tenant="t01"`, `tenant="t02"`} {
		if strings.Contains(metrics, absent) {
			t.Errorf("/metrics has a series with %s, a healthy tenant not opted in", absent)
		}
	}
	if body := get(t, base+"/readyz"); !strings.Contains(body, `"ready"`) {
		t.Errorf("/readyz: %s", body)
	}
	if code := stop(); code != ExitOK {
		t.Errorf("daemon exited %d", code)
	}
	w.checkConverged("t00", "t01", "t02")
}

// TestPlatform_RunTenant: the entry point of a job queue. A second run of
// a tenant while its first is going is refused with ErrTenantBusy (and a
// round skips it) instead of running twice; an unknown id is
// ErrUnknownTenant; the first run finishes and syncs.
func TestPlatform_RunTenant(t *testing.T) {
	w := newPlatformWorld(t, 2)
	w.addTenant("t00", 5, testSecret, "{}")
	w.addTenant("t01", 5, testSecret, "{}")
	entered, release := make(chan struct{}), make(chan struct{})
	var o, e bytes.Buffer
	m := NewMain(&o, &e)
	m.LookupEnv = env(map[string]string{"TEST_SECRET": testSecret})
	m.tenantHook = func(id string) func() {
		if id == "t00" {
			select {
			case entered <- struct{}{}:
				<-release
			default: // later runs of t00 pass
			}
		}
		return func() {}
	}
	if err := m.ParseFlags([]string{"--config", w.config, "--once"}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := m.open(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	p := m.platform
	if ids, err := p.TenantIDs(ctx); err != nil || !slices.Equal(ids, []string{"t00", "t01"}) {
		t.Fatalf("TenantIDs = %v, %v", ids, err)
	}
	first := make(chan error, 1)
	go func() { first <- p.RunTenant(ctx, "t00") }()
	<-entered
	if err := p.RunTenant(ctx, "t00"); !errors.Is(err, ErrTenantBusy) {
		t.Errorf("second RunTenant(t00) = %v, want ErrTenantBusy", err)
	}
	results, err := p.Round(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range results {
		switch r.Tenant.ID {
		case "t00":
			if !r.Skipped || !errors.Is(r.Err, ErrTenantBusy) {
				t.Errorf("round: t00 = %+v, want skipped as busy", r)
			}
		case "t01":
			if r.Skipped || r.Err != nil || r.Run.Counts.Created != 5 {
				t.Errorf("round: t01 = %+v, want 5 created", r)
			}
		}
	}
	if err := p.RunTenant(ctx, "t99"); !errors.Is(err, ErrUnknownTenant) {
		t.Errorf("RunTenant(t99) = %v, want ErrUnknownTenant", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Errorf("first RunTenant(t00) = %v", err)
	}
	w.checkConverged("t00", "t01")
}

// TestPlatform_Process runs the platform daemon as a real process: it
// survives a SIGHUP (which would end a process that does not handle it),
// picks up a merchant added to the CRM on a later round, and exits 0 on
// SIGTERM.
func TestPlatform_Process(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process; skipped with -short")
	}
	w := newPlatformWorldOn(t, 2, "", "@every 1s")
	w.addTenant("t00", 5, testSecret, "{}")
	w.addTenant("t01", 5, testSecret, "{}")
	cmd := exec.Command(os.Args[0], "--config", w.config)
	cmd.Env = append(os.Environ(), "PLUGIPAY_SYNC_AS_MAIN=1", "TEST_SECRET="+testSecret)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	synced := func(id string, n int) func() bool {
		return func() bool { return w.emu(id).CustomerCount() == n }
	}
	eventually(t, "t00 and t01 synced", func() bool { return synced("t00", 5)() && synced("t01", 5)() })
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	w.addTenant("t02", 7, testSecret, "{}")
	eventually(t, "t02, added after the SIGHUP, synced", synced("t02", 7))
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, logs.String())
	}
	w.checkConverged("t00", "t01", "t02")
}
