package main

import (
	"bytes"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	stdsync "sync"
	"syscall"
	"testing"
	"time"

	"github.com/plugipay-sync/plugipay-sync/plugipay/emulator"
)

// TestPlatform_ReplicasKillOne is issue 19's acceptance end to end: three
// replica processes share 200 merchants x 50 users on the real PostgreSQL
// (the CRM, every tenant's state schema and River's job queue), against
// the emulator's platform mode at Plugipay's real per-workspace limits.
// One replica is killed with SIGKILL while it is writing. Afterwards every
// tenant's users exist exactly once in their own workspace and nowhere
// else, no create was answered 409, and the emulator's request log shows
// no two replicas writing one workspace at once. A merchant whose account
// the platform key lost (403) and one whose CRM rows break the users
// query fail alone: the other 198 converge, and `status` and the replicas'
// metrics name the two. The takeover time after the kill is logged.
func TestPlatform_ReplicasKillOne(t *testing.T) {
	if testing.Short() {
		t.Skip("three replica processes and 10,000 users; skipped with -short")
	}
	const (
		tenants  = 200
		perUser  = 50
		revoked  = "m007"
		badQuery = "m013"
	)
	dsn := testPostgres(t)
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var b [4]byte
	_, _ = rand.Read(b[:])
	tag := hex.EncodeToString(b[:])
	base := "prt" + tag // the state schemas' prefix: <base>_<tenant>, <base>__jobs
	merchants, members := "plugipay_rep_merchants_"+tag, "plugipay_rep_members_"+tag
	run := func(q string, args ...any) {
		t.Helper()
		if _, err := db.Exec(q, args...); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		db.Exec("DROP TABLE IF EXISTS " + merchants + ", " + members)
		dropSchemasWithPrefix(db, base+"_")
	})
	run(`CREATE TABLE ` + merchants + ` (tenant_id TEXT PRIMARY KEY, plugipay_account TEXT NOT NULL)`)
	run(`CREATE TABLE ` + members + ` (id BIGINT PRIMARY KEY, tenant_id TEXT NOT NULL, email TEXT, full_name TEXT,
		extra TEXT NOT NULL DEFAULT '{}', updated_at TIMESTAMPTZ NOT NULL DEFAULT now())`)
	run(`CREATE INDEX ON ` + members + ` (tenant_id, id)`)
	account := func(id string) string { return "acc_" + id }
	users := map[string][]string{}
	var ids []string
	next := 0
	for i := range tenants {
		id := fmt.Sprintf("m%03d", i)
		ids = append(ids, id)
		run(`INSERT INTO `+merchants+` VALUES ($1, $2)`, id, account(id))
		extra := "{}"
		if id == badQuery {
			extra = "{not json" // extra::jsonb fails this tenant's query alone
		}
		var vals []string
		var args []any
		for range perUser {
			next++
			n := len(args)
			vals = append(vals, fmt.Sprintf("($%d, $%d, $%d, $%d, $%d)", n+1, n+2, n+3, n+4, n+5))
			// Non-Latin names and a quote: the hostile side of real CRMs.
			args = append(args, next, id, fmt.Sprintf("user%d@%s.example.com", next, id), fmt.Sprintf("Zoë Ångström-%d 名前 O'Brien", next), extra)
			users[id] = append(users[id], strconv.Itoa(next))
		}
		run(`INSERT INTO `+members+` (id, tenant_id, email, full_name, extra) VALUES `+strings.Join(vals, ", "), args...)
	}

	emu := emulator.New(emulator.Options{
		PlatformKeys: map[string]emulator.PlatformKey{testKeyID: {Secret: testSecret, AutoConnect: true}},
		RequestLog:   1 << 20,
	})
	emu.Disconnect(testKeyID, account(revoked)) // the merchant revoked the platform's access
	srv := httptest.NewServer(emu)
	defer srv.Close()

	dir := t.TempDir()
	config := filepath.Join(dir, "config.yaml")
	cfg := fmt.Sprintf(`schedule: "@every 30s"
listen: ${LISTEN}
state:
  driver: postgres
  dsn: %q
  schema: %s
destination:
  plugipay:
    base_url: %s
    key_id: %s
    secret: ${TEST_SECRET}
    writes_per_second: 20
crm:
  type: sql
  sql:
    driver: postgres
    dsn: %q
    query: SELECT id, tenant_id, email, full_name, extra::jsonb::text AS extra, updated_at FROM %s
    tenant_column: tenant_id
    columns:
      external_id: id
      email: email
      name: full_name
      metadata: {extra: extra}
tenants:
  query: SELECT tenant_id, plugipay_account FROM %s ORDER BY tenant_id
  concurrency: 8
  run_timeout: 20s
  rescue_after: 25s
log:
  level: warn
`, dsn, base, srv.URL, testKeyID, dsn, members, merchants)
	if err := os.WriteFile(config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	type replica struct {
		cmd     *exec.Cmd
		metrics string
		logs    *lockedBuffer
		done    chan error
	}
	start := func() *replica {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		r := &replica{metrics: "http://" + addr, logs: &lockedBuffer{}, done: make(chan error, 1)}
		r.cmd = exec.Command(os.Args[0], "--config", config)
		r.cmd.Env = append(os.Environ(), "PLUGIPAY_SYNC_AS_MAIN=1", "TEST_SECRET="+testSecret, "LISTEN="+addr)
		r.cmd.Stdout, r.cmd.Stderr = r.logs, r.logs
		if err := r.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { r.done <- r.cmd.Wait() }()
		t.Cleanup(func() { r.cmd.Process.Kill() })
		return r
	}
	reps := []*replica{start(), start(), start()}
	victim := reps[0]
	victimUA := fmt.Sprintf("-%d)", victim.cmd.Process.Pid)
	began := time.Now()

	count := func(id string) int { return len(emu.CustomersIn(account(id))) }
	// inFlight are the tenants the victim is writing now: incomplete, and
	// written by it.
	inFlight := func() []string {
		var out []string
		seen := map[string]bool{}
		for _, r := range emu.RequestLog() {
			if strings.HasSuffix(r.ClientID, victimUA) && r.Handled && !seen[r.Account] {
				seen[r.Account] = true
				id := strings.TrimPrefix(r.Account, "acc_")
				if count(id) < perUser {
					out = append(out, id)
				}
			}
		}
		return out
	}
	var cut []string
	waitUntil(t, 3*time.Minute, "the victim replica writing a tenant", func() bool {
		cut = inFlight()
		return len(cut) > 0
	})
	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	<-victim.done
	cut = inFlight()
	t.Logf("killed replica pid %d %.1fs after start, mid-run on %d tenants %v", victim.cmd.Process.Pid, killed.Sub(began).Seconds(), len(cut), cut)
	if len(cut) == 0 {
		t.Fatal("the kill cut no run short; nothing to take over")
	}

	// Every tenant but the two broken ones converges; the cut ones are
	// finished by a survivor.
	finished := map[string]time.Duration{}
	waitUntil(t, 5*time.Minute, "198 tenants converged", func() bool {
		done := true
		for _, id := range ids {
			if id == revoked || id == badQuery {
				continue
			}
			if count(id) < perUser {
				done = false
			} else if _, ok := finished[id]; !ok && slices.Contains(cut, id) {
				finished[id] = time.Since(killed)
			}
		}
		return done
	})
	var takeover time.Duration
	for _, d := range finished {
		takeover = max(takeover, d)
	}
	t.Logf("takeover: the %d runs cut by the kill finished on the survivors %.1fs after it (rescue_after 25s + River's rescuer period, up to 30s); all 198 converged %.1fs after start",
		len(cut), takeover.Seconds(), time.Since(began).Seconds())
	waitUntil(t, 30*time.Second, "no write in flight", func() bool { return emu.InFlightWrites() == 0 })

	// Each user once, in its own workspace only.
	owned := map[string]bool{}
	for _, id := range ids {
		owned[account(id)] = true
		var got []string
		for _, c := range emu.CustomersIn(account(id)) {
			got = append(got, c.ExternalID)
		}
		slices.Sort(got)
		want := slices.Clone(users[id])
		slices.Sort(want)
		if id == revoked || id == badQuery {
			want = nil
		}
		if !slices.Equal(got, want) {
			t.Errorf("tenant %s's workspace holds %d customers, want %d (each of its users once)", id, len(got), len(want))
		}
	}
	for acc, n := range emu.CustomerCounts() {
		if !owned[acc] && n > 0 {
			t.Errorf("workspace %s, no tenant's, holds %d customers", acc, n)
		}
	}
	conflicts, writers := 0, map[string]bool{}
	for _, r := range emu.RequestLog() {
		if r.Method == "POST" && r.Status == 409 {
			conflicts++
		}
		if r.Handled {
			writers[r.ClientID] = true
		}
	}
	if conflicts > 0 {
		t.Errorf("%d creates answered 409", conflicts)
	}
	if len(writers) < 2 {
		t.Errorf("writes came from %d replicas; the work was not shared", len(writers))
	}
	if ov := emu.OverlappingWrites(); len(ov) > 0 {
		t.Errorf("%d pairs of writes from two replicas overlapped in one workspace, e.g. %+v", len(ov), ov[0])
	}

	// status names the two failing tenants, from the shared state alone.
	code, out, _ := commandInProcess(t, config, "status", "--output", "json")
	if code != ExitOK {
		t.Fatalf("status: %d\n%s", code, out)
	}
	var rows []tenantStatus
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("status --output json: %v\n%s", err, out)
	}
	failing := map[string]bool{}
	for _, r := range rows {
		if r.LastRun != nil && r.LastRun.Outcome == "failed" {
			failing[r.Tenant] = true
		}
	}
	if len(rows) != tenants || !failing[revoked] || !failing[badQuery] || len(failing) != 2 {
		t.Errorf("status: %d tenants, failing %v; want %d tenants, failing %s and %s only", len(rows), failing, tenants, revoked, badQuery)
	}
	// The replicas' metrics (the PlugipaySyncTenantFailing alert's input)
	// name them too, once a survivor has run each.
	waitUntil(t, 2*time.Minute, "the survivors' metrics naming both failing tenants", func() bool {
		seen := map[string]bool{}
		for _, r := range reps[1:] {
			series, err := scrapeSeries(r.metrics + "/metrics")
			if err != nil {
				return false
			}
			for _, id := range []string{revoked, badQuery} {
				if series[`plugipay_sync_tenant_failing{tenant="`+id+`"}`] == 1 {
					seen[id] = true
				}
			}
		}
		return seen[revoked] && seen[badQuery]
	})
	for _, r := range reps[1:] {
		if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("replica exit after SIGTERM: %v\n%s", err, r.logs.String())
			}
		case <-time.After(40 * time.Second):
			t.Errorf("a replica did not stop within 40 s of SIGTERM")
		}
		assertNoSecret(t, r.logs.String(), "")
	}
}

// waitUntil polls ok every 200 ms until it holds, failing the test after d.
func waitUntil(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// lockedBuffer is a child process's output, written by its copier
// goroutine and read by the test.
type lockedBuffer struct {
	mu stdsync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
