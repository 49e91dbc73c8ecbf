package main

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	stdsync "sync"
	"testing"
	"time"

	"github.com/plugipay-sync/plugipay-sync/plugipay/emulator"
)

// runGate is a Platform hook for the trigger tests: it counts each
// tenant's runs (those that got past the claim and took a worker) and,
// while a tenant is held, keeps its runs waiting at their start.
type runGate struct {
	mu       stdsync.Mutex
	started  map[string]int
	finished map[string]int
	hold     map[string]chan struct{}
	entered  chan string
}

func newRunGate() *runGate {
	return &runGate{started: map[string]int{}, finished: map[string]int{}, hold: map[string]chan struct{}{},
		entered: make(chan string, 16)}
}

func (g *runGate) hook(id string) func() {
	g.mu.Lock()
	g.started[id]++
	h := g.hold[id]
	g.mu.Unlock()
	if h != nil {
		g.entered <- id
		<-h
	}
	return func() {
		g.mu.Lock()
		g.finished[id]++
		g.mu.Unlock()
	}
}

// holdTenant holds id's next runs until the returned release is called.
func (g *runGate) holdTenant(id string) (release func()) {
	h := make(chan struct{})
	g.mu.Lock()
	g.hold[id] = h
	g.mu.Unlock()
	return func() {
		g.mu.Lock()
		delete(g.hold, id)
		g.mu.Unlock()
		close(h)
	}
}

// runs returns how many runs of id started and finished.
func (g *runGate) runs(id string) (started, finished int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.started[id], g.finished[id]
}

// triggerStatus decodes a 202 answer of POST /v1/tenants/{id}/runs.
func triggerStatus(t *testing.T, r apiResponse) tenantRunResponse {
	t.Helper()
	var got tenantRunResponse
	if r.status != http.StatusAccepted {
		t.Fatalf("trigger: %d %s, want 202", r.status, r.body)
	}
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatalf("trigger answer %s: %v", r.body, err)
	}
	return got
}

// checkTriggerRefusals drives the trigger API's refusals: any token
// mistake is the same 401, an oversized body 413, a malformed tenant id
// 400, a tenant no listing has 404; each counted by outcome.
func checkTriggerRefusals(t *testing.T, metrics, rt, tenant string) {
	t.Helper()
	url := func(id string) string { return rt + "/v1/tenants/" + id + "/runs" }
	var unauthorized []string
	for _, c := range []struct {
		name, id, token string
		body            []byte
		status          int
		outcome         string
	}{
		{"no token", tenant, "", nil, http.StatusUnauthorized, outcomeUnauthorized},
		{"wrong token", tenant, "wrong-token-0123456789abcdef", nil, http.StatusUnauthorized, outcomeUnauthorized},
		{"token with a suffix", tenant, triggerToken + "x", nil, http.StatusUnauthorized, outcomeUnauthorized},
		{"token upper case", tenant, strings.ToUpper(triggerToken), nil, http.StatusUnauthorized, outcomeUnauthorized},
		{"oversized body", tenant, triggerToken, []byte(strings.Repeat("x", 5000)), http.StatusRequestEntityTooLarge, outcomeTooLarge},
		{"upper-case id", "T00", triggerToken, nil, http.StatusBadRequest, outcomeBadRequest},
		{"id with a dot", "t00.db", triggerToken, nil, http.StatusBadRequest, outcomeBadRequest},
		{"escaped slash", "..%2Ft00", triggerToken, nil, http.StatusBadRequest, outcomeBadRequest},
		{"unknown tenant", "nobody", triggerToken, nil, http.StatusNotFound, outcomeNotFound},
	} {
		before := metricValue(t, metrics, `plugipay_sync_trigger_requests_total{endpoint="tenant_runs",outcome="`+c.outcome+`"}`)
		r := call(t, "POST", url(c.id), c.token, c.body)
		if r.status != c.status {
			t.Errorf("%s: %d %s, want %d", c.name, r.status, r.body, c.status)
			continue
		}
		if c.status == http.StatusUnauthorized {
			unauthorized = append(unauthorized, string(r.body))
		}
		if c.status == http.StatusNotFound && !strings.Contains(string(r.body), `no tenant \"nobody\" in tenants.list or tenants.query`) {
			t.Errorf("%s: %s does not say which tenant is unknown", c.name, r.body)
		}
		after := metricValue(t, metrics, `plugipay_sync_trigger_requests_total{endpoint="tenant_runs",outcome="`+c.outcome+`"}`)
		if after != before+1 {
			t.Errorf("%s: outcome %s counted %v -> %v, want one more", c.name, c.outcome, before, after)
		}
	}
	for _, b := range unauthorized[1:] {
		if b != unauthorized[0] {
			t.Errorf("401 bodies differ (%q, %q): they must not say what was wrong", unauthorized[0], b)
		}
	}
}

// burstTrigger holds tenant's next run, triggers it, and once the run has
// started fires n more triggers at once; it returns their statuses and
// the release of the held run.
func burstTrigger(t *testing.T, g *runGate, rt, tenant string, n int) (first string, rest map[string]int, release func()) {
	t.Helper()
	release = g.holdTenant(tenant)
	url := rt + "/v1/tenants/" + tenant + "/runs"
	first = triggerStatus(t, call(t, "POST", url, triggerToken, nil)).Status
	select {
	case got := <-g.entered:
		if got != tenant {
			t.Fatalf("held run of %s entered, want %s", got, tenant)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the triggered run of %s did not start within 30 s", tenant)
	}
	rest = map[string]int{}
	var mu stdsync.Mutex
	var wg stdsync.WaitGroup
	for range n {
		wg.Go(func() {
			r := call(t, "POST", url, triggerToken, []byte(`{}`))
			mu.Lock()
			defer mu.Unlock()
			if r.status != http.StatusAccepted {
				rest[fmt.Sprintf("HTTP %d", r.status)]++
				return
			}
			var got tenantRunResponse
			_ = json.Unmarshal(r.body, &got)
			rest[got.Status]++
		})
	}
	wg.Wait()
	return first, rest, release
}

// TestPlatform_TriggerSQLite: the platform daemon on SQLite state, the
// schedule an hour away. A user's email changed in the CRM is PATCHed
// after POST /v1/tenants/t00/runs; a burst of 50 triggers while that run
// is held makes one follow-up run, not 50, and one write; a tenant added
// to the CRM after start is found by the trigger; the refusals are as the
// single workspace's.
func TestPlatform_TriggerSQLite(t *testing.T) {
	w := newPlatformWorldOn(t, 2, "127.0.0.1:0", "@every 1h")
	w.addTenant("t00", 5, testSecret, "{}")
	w.addTenant("t01", 5, testSecret, "{}")
	appendFile(t, w.config, realtimeYAML)
	g := newRunGate()
	metrics, rt, stop := startRealtimeDaemonWith(t, w.config, func(m *Main) { m.tenantHook = g.hook })
	eventually(t, "the first round", func() bool {
		_, f0 := g.runs("t00")
		_, f1 := g.runs("t01")
		return f0 == 1 && f1 == 1
	})
	w.checkConverged("t00", "t01")

	checkTriggerRefusals(t, metrics, rt, "t00")

	changed := w.users["t00"][2]
	if _, err := w.crm.Exec(`UPDATE members SET email = 'changed@t00.example.com', updated_at = CURRENT_TIMESTAMP WHERE id = ?`, changed); err != nil {
		t.Fatal(err)
	}
	writes0, writes1 := w.emu("t00").WritesExecuted(), w.emu("t01").WritesExecuted()
	first, rest, release := burstTrigger(t, g, rt, "t00", 50)
	if first != triggerStarted || rest[triggerFollowUp] != 50 {
		t.Errorf("first trigger %q, the burst %v; want %q then 50 %q", first, rest, triggerStarted, triggerFollowUp)
	}
	release()
	eventually(t, "the held run and its one follow-up", func() bool {
		_, f := g.runs("t00")
		return f == 3
	})
	if s, f := g.runs("t00"); s != 3 || f != 3 {
		t.Errorf("t00: %d runs started, %d finished; want 3 (the first round's, the held one, one follow-up)", s, f)
	}
	if c, ok := w.emu("t00").CustomerByExternalID(changed); !ok || c.Email != "changed@t00.example.com" {
		t.Errorf("user %s: %+v, want its new email", changed, c)
	}
	if d := w.emu("t00").WritesExecuted() - writes0; d != 1 {
		t.Errorf("t00: %d writes after the trigger burst, want 1 (the changed user, once)", d)
	}
	if d := w.emu("t01").WritesExecuted() - writes1; d != 0 {
		t.Errorf("t01: %d writes, want none (not triggered)", d)
	}

	// A merchant added after start: not in the last listing, found by
	// listing again.
	w.addTenant("t02", 3, testSecret, "{}")
	if got := triggerStatus(t, call(t, "POST", rt+"/v1/tenants/t02/runs", triggerToken, nil)); got.Status != triggerStarted || got.Tenant != "t02" {
		t.Errorf("new tenant: %+v", got)
	}
	eventually(t, "the new tenant's run", func() bool {
		_, f := g.runs("t02")
		return f == 1
	})
	w.checkConverged("t00", "t01", "t02")
	if code := stop(); code != ExitOK {
		t.Errorf("daemon exited %d", code)
	}
}

// dropSchemasWithPrefix drops every PostgreSQL schema whose name starts
// with prefix (a test's tenant and job schemas).
func dropSchemasWithPrefix(db *sql.DB, prefix string) {
	rows, err := db.Query(`SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)`, prefix)
	if err != nil {
		return
	}
	var names []string
	for rows.Next() {
		var n string
		if rows.Scan(&n) == nil {
			names = append(names, n)
		}
	}
	rows.Close()
	for _, n := range names {
		db.Exec(`DROP SCHEMA "` + n + `" CASCADE`)
	}
}

// pgPlatform is platform mode on the real PostgreSQL: the CRM's tables
// (merchants m0, m1, m2 with 5 members each), the tenants' state schemas
// and River's jobs under a random prefix, dropped at the end, against the
// emulator's platform mode.
type pgPlatform struct {
	db      *sql.DB
	emu     *emulator.Server
	config  string
	members string
	tag     string
	// crmApp is the CRM connections' application_name (the listener's too).
	crmApp  string
	tenants []string
}

// extraYAML is appended to the config, with {tag} replaced by the
// test's random tag.
func newPGPlatform(t *testing.T, extraYAML string) *pgPlatform {
	t.Helper()
	dsn := testPostgres(t)
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	var b [4]byte
	_, _ = rand.Read(b[:])
	tag := hex.EncodeToString(b[:])
	base := "ptg" + tag
	w := &pgPlatform{db: db, tag: tag, members: "plugipay_trg_members_" + tag, crmApp: "plugipay-trg-" + tag,
		tenants: []string{"m0", "m1", "m2"}}
	merchants := "plugipay_trg_merchants_" + tag
	t.Cleanup(func() {
		db.Exec("DROP TABLE IF EXISTS " + merchants + ", " + w.members)
		dropSchemasWithPrefix(db, base+"_")
	})
	w.exec(t, `CREATE TABLE `+merchants+` (tenant_id TEXT PRIMARY KEY, plugipay_account TEXT NOT NULL)`)
	w.exec(t, `CREATE TABLE `+w.members+` (id BIGINT PRIMARY KEY, tenant_id TEXT NOT NULL, email TEXT, full_name TEXT,
		updated_at TIMESTAMPTZ NOT NULL DEFAULT now())`)
	next := 0
	for _, id := range w.tenants {
		w.exec(t, `INSERT INTO `+merchants+` VALUES ($1, $2)`, id, "acc_"+id)
		for range 5 {
			next++
			w.exec(t, `INSERT INTO `+w.members+` (id, tenant_id, email, full_name) VALUES ($1, $2, $3, $4)`,
				next, id, fmt.Sprintf("user%d@%s.example.com", next, id), fmt.Sprintf("User %d", next))
		}
	}
	w.emu = emulator.New(emulator.Options{PlatformKeys: map[string]emulator.PlatformKey{testKeyID: {Secret: testSecret, AutoConnect: true}}})
	srv := httptest.NewServer(w.emu)
	t.Cleanup(srv.Close)
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	crmDSN := dsn + sep + "application_name=" + w.crmApp
	w.config = filepath.Join(t.TempDir(), "config.yaml")
	cfg := fmt.Sprintf(`schedule: "@every 1h"
listen: 127.0.0.1:0
state:
  driver: postgres
  dsn: %q
  schema: %s
destination:
  plugipay:
    base_url: %s
    key_id: %s
    secret: ${TEST_SECRET}
crm:
  type: sql
  sql:
    driver: postgres
    dsn: %q
    table: %s
    tenant_column: tenant_id
    columns:
      external_id: id
      email: email
      name: full_name
tenants:
  query: SELECT tenant_id, plugipay_account FROM %s ORDER BY tenant_id
  concurrency: 4
  run_timeout: 20s
  rescue_after: 25s
log:
  level: error
`, dsn, base, srv.URL, testKeyID, crmDSN, w.members, merchants) + strings.ReplaceAll(extraYAML, "{tag}", tag)
	if err := os.WriteFile(w.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *pgPlatform) exec(t *testing.T, q string, args ...any) {
	t.Helper()
	if _, err := w.db.Exec(q, args...); err != nil {
		t.Fatal(err)
	}
}

// start runs the daemon in-process with g's hook, waits for River's
// schedule to run every tenant once at start, and returns the metrics and
// realtime base URLs ("" without the trigger API).
func (w *pgPlatform) start(t *testing.T, g *runGate, api bool) (metrics, rt string, stop func() int) {
	t.Helper()
	setup := func(m *Main) { m.tenantHook = g.hook }
	if api {
		metrics, rt, stop = startRealtimeDaemonWith(t, w.config, setup)
	} else {
		metrics, stop = startDaemonConfigWith(t, w.config, setup)
	}
	eventually(t, "the first runs", func() bool {
		for _, id := range w.tenants {
			if _, f := g.runs(id); f != 1 || len(w.emu.CustomersIn("acc_"+id)) != 5 {
				return false
			}
		}
		return true
	})
	return metrics, rt, stop
}

// writes is each tenant's writes in the emulator so far.
func (w *pgPlatform) writes() map[string]int {
	out := map[string]int{}
	for _, id := range w.tenants {
		out[id] = w.emu.WritesExecutedIn("acc_" + id)
	}
	return out
}

// TestPlatform_TriggerPostgres: the platform daemon with its state on the
// real PostgreSQL, so a replica of River's fleet, against the emulator's
// platform mode, the schedule an hour away. A user's email changed in the
// CRM is PATCHed within seconds of POST /v1/tenants/{id}/runs; a burst of
// 200 triggers while the tenant's job runs makes one follow-up job, so at
// most two runs, and one write; the refusals are as on SQLite.
func TestPlatform_TriggerPostgres(t *testing.T) {
	w := newPGPlatform(t, realtimeYAML)
	emu := w.emu
	g := newRunGate()
	metrics, rt, stop := w.start(t, g, true)

	checkTriggerRefusals(t, metrics, rt, "m1")

	const changed = "7" // m1's second user
	w.exec(t, `UPDATE `+w.members+` SET email = 'changed@m1.example.com', updated_at = now() WHERE id = $1`, changed)
	writes := w.writes()
	first, rest, release := burstTrigger(t, g, rt, "m1", 200)
	if first != triggerEnqueued || rest[triggerEnqueued] != 200 {
		t.Errorf("first trigger %q, the burst %v; want all %q", first, rest, triggerEnqueued)
	}
	release()
	eventually(t, "the triggered run", func() bool {
		c, ok := emu.CustomerByExternalIDIn("acc_m1", changed)
		return ok && c.Email == "changed@m1.example.com"
	})
	// The follow-up job River keeps for the burst runs once the held run
	// is done (it may first be snoozed while the held run holds the lock).
	eventually(t, "the follow-up run", func() bool {
		_, f := g.runs("m1")
		return f == 3
	})
	if s, f := g.runs("m1"); s != 3 || f != 3 {
		t.Errorf("m1: %d runs started, %d finished; want 3 (the schedule's, the triggered one, one follow-up for the burst)", s, f)
	}
	if d := emu.WritesExecutedIn("acc_m1") - writes["m1"]; d != 1 {
		t.Errorf("m1: %d writes after the trigger burst, want 1 (the changed user, once)", d)
	}
	for _, id := range []string{"m0", "m2"} {
		if d := emu.WritesExecutedIn("acc_"+id) - writes[id]; d != 0 {
			t.Errorf("%s: %d writes, want none (not triggered)", id, d)
		}
		if s, _ := g.runs(id); s != 1 {
			t.Errorf("%s: %d runs, want the schedule's only", id, s)
		}
	}
	if code := stop(); code != ExitOK {
		t.Errorf("daemon exited %d", code)
	}
}

// TestPlatform_ListenPostgres: platform mode with realtime.postgres on the
// real PostgreSQL (state, River and the CRM), the schedule an hour away.
// notify-sql --install puts the tenant trigger on the shared table; an
// UPDATE of one member is PATCHed by the run its notification asks for;
// one UPDATE of five members of a tenant is one batch, so one run (two at
// most, if the batch is split) and five writes; other tenants do not run.
// After the listener's connection is killed, every tenant is run (the
// catch-up), and nothing is written that did not change.
func TestPlatform_ListenPostgres(t *testing.T) {
	w := newPGPlatform(t, "realtime:\n  postgres:\n    enabled: true\n    channel: ptg_{tag}\n")
	channel := "ptg_" + w.tag
	code, out, errOut := commandInProcess(t, w.config, "notify-sql")
	if code != ExitOK || !strings.Contains(out, "plugipay_sync_notify_tenant('"+channel+"', 'id', 'tenant_id')") {
		t.Fatalf("notify-sql: %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := commandInProcess(t, w.config, "notify-sql", "--install"); code != ExitOK {
		t.Fatalf("notify-sql --install: %d\n%s%s", code, out, errOut)
	}
	g := newRunGate()
	metrics, stop := startDaemonConfigWith(t, w.config, func(m *Main) { m.tenantHook = g.hook })
	eventually(t, "the first runs and the listener", func() bool {
		for _, id := range w.tenants {
			if _, f := g.runs(id); f != 1 || len(w.emu.CustomersIn("acc_"+id)) != 5 {
				return false
			}
		}
		return metricValue(t, metrics, "plugipay_sync_listener_connected") == 1
	})

	// One member of m1.
	writes := w.writes()
	w.exec(t, `UPDATE `+w.members+` SET email = 'listened@m1.example.com', updated_at = now() WHERE id = 7`)
	eventually(t, "the notified run", func() bool {
		c, ok := w.emu.CustomerByExternalIDIn("acc_m1", "7")
		return ok && c.Email == "listened@m1.example.com"
	})
	eventually(t, "m1's run finished", func() bool { _, f := g.runs("m1"); return f >= 2 })

	// Five members of m0 in one statement.
	w.exec(t, `UPDATE `+w.members+` SET full_name = full_name || ' Jr', updated_at = now() WHERE tenant_id = 'm0'`)
	eventually(t, "m0's five changes", func() bool { return w.emu.WritesExecutedIn("acc_m0")-writes["m0"] == 5 })
	eventually(t, "m0's run finished", func() bool { _, f := g.runs("m0"); return f >= 2 })
	if s, _ := g.runs("m0"); s > 3 {
		t.Errorf("m0: %d runs for one statement's five notifications, want the first round's and one (two if the batch split)", s)
	}
	if s, _ := g.runs("m2"); s != 1 {
		t.Errorf("m2: %d runs, want the first round's only (no change notified)", s)
	}
	if d := w.emu.WritesExecutedIn("acc_m1") - writes["m1"]; d != 1 {
		t.Errorf("m1: %d writes, want 1", d)
	}

	// The listener's connection killed: on reconnect, every tenant runs.
	before := map[string]int{}
	for _, id := range w.tenants {
		_, before[id] = g.runs(id)
	}
	writes = w.writes()
	w.exec(t, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1`, w.crmApp)
	eventually(t, "the catch-up runs after the reconnect", func() bool {
		if metricValue(t, metrics, "plugipay_sync_listener_disconnects_total") < 1 {
			return false
		}
		for _, id := range w.tenants {
			if _, f := g.runs(id); f <= before[id] {
				return false
			}
		}
		return true
	})
	if got := w.writes(); fmt.Sprint(got) != fmt.Sprint(writes) {
		t.Errorf("writes %v after the catch-up, want %v: nothing changed", got, writes)
	}
	if code := stop(); code != ExitOK {
		t.Errorf("daemon exited %d", code)
	}
}
