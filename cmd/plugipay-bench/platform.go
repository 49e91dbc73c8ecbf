package main

import (
	"bufio"
	"cmp"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	stdsync "sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/plugipay-sync/plugipay-sync/crm"
	"github.com/plugipay-sync/plugipay-sync/crm/sqlsrc"
	"github.com/plugipay-sync/plugipay-sync/plugipay/emulator"
	"github.com/plugipay-sync/plugipay-sync/state"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

// Scenario 12 (issue 19): platform mode, many merchant workspaces from
// one deployment.
//
// The data: a members table in the real PostgreSQL (id bigint primary
// key, tenant_id, email, first_name, last_name, plan, updated_at) with an
// index on (tenant_id, id), and a merchants table (tenant_id,
// plugipay_account) that tenants.query reads; the emulator serves every
// merchant's workspace through one platform key (AutoConnect) at the real
// per-workspace limits. The daemon is the real plugipay-sync binary, each
// measurement in a process of its own, so its peak RSS is its own.
//
// (a) The no-op round: Tenants x UsersPer users, all synced already. The
// state (one SQLite file per tenant, then a PostgreSQL schema per tenant)
// and the emulator's workspaces are
// seeded directly, not through a first round (1,000,000 creates at 20/s
// per workspace would take 50 s per tenant): each tenant's rows are read
// through the SQL source bound to it, each mapped with the hash of its
// content in the tenant's state file, and the same customer written to
// the emulator's state log (Options.StatePath), which the emulator
// replays at start. A first round over that warm cache reads every row
// and keeps the prints, as every tenant's first real run does; the rounds
// after it are the no-op rounds measured.
//
// (b) Write throughput: WriteTenants tenants with WriteUsers new users
// each, so every tenant is held at its 20 writes/s ceiling for
// WriteUsers/20 s; creates/s is measured at the emulator, from its first
// executed write to its last, with the CPU time the processes used.

// Targets and constants of issue 19.
const (
	platformKeyID      = "key_bench_platform"
	platformSecret     = "sk_bench_platform_secret"
	targetPlatformRate = 0.9 // three replicas' creates/s over WriteTenants x 20
)

// platformSizes are scenario 12's sizes.
type platformSizes struct {
	Tenants, UsersPer int // (a)
	Concurrency       int // (a): tenants.concurrency of the no-op round
	Rounds            int // (a): no-op rounds measured (the median counts)
	WriteTenants      int // (b)
	WriteUsers        int // (b): new users per tenant
	Pairs             int // (b): interleaved rounds of the setups (the median counts)
	Replicas          int // (b): replicas of the many-replica setup
	// NoopRound and Writes choose the halves to run (-only 12a, 12b).
	NoopRound, Writes bool
	// PostgresState: (a) is measured with the state on PostgreSQL too.
	PostgresState bool
	// WideConcurrency: (a) runs one more no-op round with SQLite state at
	// this tenants.concurrency, to show what bounds the round.
	WideConcurrency int
}

func platformSizesFor(quick bool) platformSizes {
	if quick {
		return platformSizes{Tenants: 20, UsersPer: 50, Concurrency: 4, Rounds: 1, PostgresState: true, WideConcurrency: 8, WriteTenants: 6, WriteUsers: 30, Pairs: 1, Replicas: 3}
	}
	return platformSizes{Tenants: 1000, UsersPer: 1000, Concurrency: 4, Rounds: 3, PostgresState: true, WideConcurrency: 16, WriteTenants: 50, WriteUsers: 500, Pairs: 2, Replicas: 3}
}

// tenantID is tenant i's id; its Plugipay account is "acc_" + the id.
// createPlatformTables renders the same ids in SQL (lpad to 4 digits), so
// there are at most maxPlatformTenants.
func tenantID(i int) string { return fmt.Sprintf("t%04d", i) }

const maxPlatformTenants = 10_000

// createPlatformTables creates and fills a members table of tenants x
// usersPer rows (user g belongs to tenant (g-1)/usersPer) and the
// merchants table naming the tenants, each with a name of its own, and
// returns the two names.
func createPlatformTables(ctx context.Context, db *sql.DB, tenants, usersPer int) (members, merchants string, err error) {
	var buf [4]byte
	_, _ = rand.Read(buf[:])
	sfx := hex.EncodeToString(buf[:])
	members, merchants = "plugipay_bench_members_"+sfx, "plugipay_bench_merchants_"+sfx
	n := tenants * usersPer
	for _, q := range []string{
		"CREATE UNLOGGED TABLE " + members + ` (id bigint PRIMARY KEY, tenant_id text NOT NULL, email text NOT NULL,
			first_name text NOT NULL, last_name text NOT NULL, plan text NOT NULL, updated_at timestamptz NOT NULL)`,
		"INSERT INTO " + members + ` SELECT g, 't' || lpad(((g - 1) / ` + strconv.Itoa(usersPer) + `)::text, 4, '0'),
			'user' || g || '@example.com', 'First' || (g % 997), 'Last' || (g % 7919),
			(ARRAY['free', 'starter', 'pro', 'enterprise'])[1 + g % 4],
			timestamptz '2025-11-01 00:00:00+00' + ((g * 2654435761) % 31536000) * interval '1 second'
			FROM generate_series(1, ` + strconv.Itoa(n) + `) g`,
		"CREATE INDEX " + members + "_tenant ON " + members + " (tenant_id, id)",
		"CREATE UNLOGGED TABLE " + merchants + " (tenant_id text PRIMARY KEY, plugipay_account text NOT NULL)",
		"INSERT INTO " + merchants + ` SELECT 't' || lpad(g::text, 4, '0'), 'acc_t' || lpad(g::text, 4, '0')
			FROM generate_series(0, ` + strconv.Itoa(tenants-1) + `) g`,
		"VACUUM ANALYZE " + members,
		"VACUUM ANALYZE " + merchants,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return members, merchants, fmt.Errorf("create %s: %w", members, err)
		}
	}
	return members, merchants, nil
}

// tenantSource is the SQL source of members bound to tenant id, as the
// daemon's tenantConfig binds it.
func tenantSource(dsn, members, id string) (*sqlsrc.Source, error) {
	return sqlsrc.New(sqlsrc.Options{Driver: sqlsrc.Postgres, DSN: dsn, Table: members, Columns: sqlColumns,
		Normalize: crm.DefaultNormalize(), TenantColumn: "tenant_id", Tenant: id})
}

// emuSeedLine is one line of the emulator's state log (Options.StatePath):
// an executed create of customer in account. The emulator replays the
// log at start; writing it is how the bench puts a million customers in
// a thousand workspaces in seconds instead of through the API.
type emuSeedLine struct {
	Account  string          `json:"account"`
	Customer emuSeedCustomer `json:"customer"`
}

type emuSeedCustomer struct {
	ID         string    `json:"id"`
	ARN        string    `json:"arn"`
	AccountID  string    `json:"accountId"`
	ExternalID string    `json:"externalId"`
	Email      string    `json:"email"`
	Name       string    `json:"name"`
	CreatedAt  time.Time `json:"createdAt"`
	UpdatedAt  time.Time `json:"updatedAt"`
}

// seedPlatform warms every tenant's state, opened with open (a mapping
// with the content hash of each of its rows), and, with emuLog set, writes
// the customer of each mapping, in the tenant's account, to the emulator
// state log at emuLog. It returns how many users it seeded.
func seedPlatform(ctx context.Context, dsn, members string, tenants int, open func(ctx context.Context, tenant string) (*state.DB, error), emuLog string) (int, error) {
	out := io.Discard
	if emuLog != "" {
		f, err := os.Create(emuLog)
		if err != nil {
			return 0, err
		}
		defer f.Close()
		out = f
	}
	bw := bufio.NewWriterSize(out, 1<<20)
	enc := json.NewEncoder(bw)
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	total := 0
	for i := range tenants {
		id := tenantID(i)
		acc := "acc_" + id
		src, err := tenantSource(dsn, members, id)
		if err != nil {
			return total, err
		}
		store, err := open(ctx, id)
		if err != nil {
			return total, err
		}
		var encErr error
		records := func(yield func(sync.Record, error) bool) {
			for rec, err := range src.Records(ctx) {
				if err == nil {
					created = created.Add(time.Millisecond) // the list's order is (createdAt, id)
					cid := "cus_bench" + rec.ExternalID
					encErr = enc.Encode(emuSeedLine{Account: acc, Customer: emuSeedCustomer{ID: cid,
						ARN: "arn:plugipay:customer:" + acc + ":" + cid, AccountID: acc, ExternalID: rec.ExternalID,
						Email: rec.Email, Name: rec.Name, CreatedAt: created, UpdatedAt: created}})
					if encErr != nil {
						return
					}
				}
				if !yield(rec, err) {
					return
				}
			}
		}
		n, err := warmFrom(ctx, store, records)
		if cerr := store.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = encErr
		}
		if err != nil {
			return total, fmt.Errorf("seed tenant %s: %w", id, err)
		}
		total += n
	}
	return total, bw.Flush()
}

// sqliteStores opens tenants' state files in dir, as the daemon's
// tenantStatePath names them.
func sqliteStores(dir string) func(ctx context.Context, tenant string) (*state.DB, error) {
	return func(ctx context.Context, tenant string) (*state.DB, error) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		return state.Open(ctx, filepath.Join(dir, tenant+".db"))
	}
}

// postgresStores opens tenants' state schemas <base>_<tenant>, as the
// daemon's tenantSchema names them.
func postgresStores(dsn, base string) func(ctx context.Context, tenant string) (*state.DB, error) {
	return func(ctx context.Context, tenant string) (*state.DB, error) {
		return state.OpenPostgres(ctx, dsn, base+"_"+tenant)
	}
}

// platformEmulator starts the emulator of scenario 12 on a loopback port:
// one platform key that auto-connects any merchant account, the real
// per-workspace limits, and the workspaces of the state log at statePath
// if it is set.
func platformEmulator(statePath string, requestLog int) (*emu, error) {
	opts := limitsReal
	opts.RequestLog = requestLog
	opts.PlatformKeys = map[string]emulator.PlatformKey{platformKeyID: {Secret: platformSecret, AutoConnect: true}}
	opts.StatePath = statePath
	s, err := emulator.Open(opts)
	if err != nil {
		return nil, err
	}
	return &emu{Server: s, srv: httptest.NewServer(s)}, nil
}

// platformConfig writes the daemon's config of scenario 12 to path and
// returns path: the first tenants merchants, concurrency of them at once,
// their state as stateYAML says (sqliteState, postgresState).
func platformConfig(path, emuURL, dsn, members, merchants, stateYAML string, tenants, concurrency int, extra string) (string, error) {
	cfg := fmt.Sprintf(`schedule: "@every 1h"
state:
%s
plugipay:
  base_url: %s
  key_id: %s
  secret: ${PLUGIPAY_SECRET}
  reads_per_second: 100
  writes_per_second: 20
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
      name_template: "{first_name} {last_name}"
      metadata: {plan: plan}
tenants:
  query: SELECT tenant_id, plugipay_account FROM %s ORDER BY tenant_id LIMIT %d
  concurrency: %d
log:
  level: warn
%s`, stateYAML, emuURL, platformKeyID, dsn, members, merchants, tenants, concurrency, extra)
	return path, os.WriteFile(path, []byte(cfg), 0o600)
}

// roundResult is what one `plugipay-sync --once` round printed and used.
type roundResult struct {
	Tenants, Failed          int
	Round, Wall              time.Duration // as the daemon printed it; the process's
	Read, Created, Unchanged int64
	// RecordsFailed are records whose write failed in the run (each is
	// retried by a later run): the round exits 2, not a tenant failure.
	RecordsFailed                 int64
	PeakRSS                       int64 // KiB (VmHWM, sampled)
	CPU                           time.Duration
	FirstError, Output, ErrOutput string
}

// runRound runs one platform round (--once) of the real binary in a
// child process.
func runRound(ctx context.Context, bin, cfg string) (roundResult, error) {
	cmd := exec.CommandContext(ctx, bin, "--config", cfg, "--once")
	cmd.Env = append(os.Environ(), "PLUGIPAY_SECRET="+platformSecret)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return roundResult{}, err
	}
	stopPeak, peak := samplePeakRSS(cmd.Process.Pid)
	runErr := cmd.Wait()
	stopPeak()
	res := roundResult{Wall: time.Since(start), Output: stdout.String(), ErrOutput: stderr.String(), PeakRSS: peak.Load()}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		res.CPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	if err := parseRound(res.Output, &res); err != nil {
		return res, fmt.Errorf("--once: %w (exit: %v)\n%s\n%s", err, runErr, res.Output, tail(res.ErrOutput, 2000))
	}
	if res.Failed > 0 || (runErr != nil && res.RecordsFailed == 0) {
		return res, fmt.Errorf("--once: %d of %d tenants failed (exit: %v), first: %s\n%s", res.Failed, res.Tenants, runErr, res.FirstError, tail(res.ErrOutput, 2000))
	}
	return res, nil
}

// samplePeakRSS reads VmHWM, the peak RSS, of process pid every 10 ms
// until stop is called, keeping the last value read (it only grows). The
// rusage of the exited child (ru_maxrss) cannot serve: on exec Linux
// carries the high-water mark of the memory the child shared with this
// process (Go forks with CLONE_VM), so it reports the bench's own peak,
// which holds the emulator's million customers.
func samplePeakRSS(pid int) (stop func(), peak *atomic.Int64) {
	peak = new(atomic.Int64)
	done := make(chan struct{})
	var wg stdsync.WaitGroup
	p := strconv.Itoa(pid)
	wg.Go(func() {
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			if v, err := procStatusOf(p, "VmHWM"); err == nil && v[0] > peak.Load() {
				peak.Store(v[0])
			}
			select {
			case <-t.C:
			case <-done:
				return
			}
		}
	})
	return func() { close(done); wg.Wait() }, peak
}

// pgTooManyClients is PostgreSQL's answer when max_connections are taken:
// on a machine shared with other PostgreSQL users, a round whose tenant
// met it says nothing about the sync, so it is run again.
const pgTooManyClients = "SQLSTATE 53300"

// platformAttempts is how many times a round or a write run that met
// pgTooManyClients is run in all.
const platformAttempts = 3

// againForConnections reports whether a run whose output is out should be
// run again (attempt of platformAttempts): it met pgTooManyClients. The
// retry is logged and noted.
func (b *bench) againForConnections(attempt int, out string) bool {
	if attempt >= platformAttempts || !strings.Contains(out, pgTooManyClients) {
		return false
	}
	b.logf("platform: a run met PostgreSQL's max_connections (other clients on the server); running it again")
	b.note("(12) a run was run again: PostgreSQL refused a connection (too many clients, from other users of the server)")
	return true
}

// round is runRound, again when a tenant's connection was refused for
// want of a PostgreSQL connection slot (againForConnections).
func (b *bench) round(ctx context.Context, cfg string) (roundResult, error) {
	for attempt := 1; ; attempt++ {
		r, err := runRound(ctx, b.daemon, cfg)
		if err == nil && r.RecordsFailed == 0 || !b.againForConnections(attempt, r.Output+r.ErrOutput) {
			return r, err
		}
	}
}

// parseRound reads printRound's output: the summary line and one row per
// tenant (TENANT RUN OUTCOME READ CREATED UPDATED UNCHANGED ... ERROR).
func parseRound(out string, res *roundResult) error {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 2 || !strings.HasPrefix(lines[0], "round: ") {
		return fmt.Errorf("no round summary in the output")
	}
	var skipped int
	var took string
	if _, err := fmt.Sscanf(lines[0], "round: %d tenants, %d failed, %d skipped in %s", &res.Tenants, &res.Failed, &skipped, &took); err != nil {
		return fmt.Errorf("round summary %q: %w", lines[0], err)
	}
	d, err := time.ParseDuration(took)
	if err != nil {
		return fmt.Errorf("round summary %q: %w", lines[0], err)
	}
	res.Round = d
	for _, l := range lines[2:] {
		f := strings.Fields(l)
		if len(f) < 9 {
			return fmt.Errorf("tenant row %q", l)
		}
		var n [4]int64
		for i, col := range []int{3, 4, 6, 8} {
			if n[i], err = strconv.ParseInt(f[col], 10, 64); err != nil {
				return fmt.Errorf("tenant row %q: %w", l, err)
			}
		}
		res.Read, res.Created, res.Unchanged, res.RecordsFailed = res.Read+n[0], res.Created+n[1], res.Unchanged+n[2], res.RecordsFailed+n[3]
		if len(f) > 9 && res.FirstError == "" {
			res.FirstError = f[0] + ": " + strings.Join(f[9:], " ")
		}
	}
	if got := len(lines) - 2; got != res.Tenants {
		return fmt.Errorf("%d tenant rows for %d tenants", got, res.Tenants)
	}
	return nil
}

// firstLogError is the error of the first JSON log line in out that has
// one, "" if none has.
func firstLogError(out string) string {
	for line := range strings.Lines(out) {
		var l struct {
			Error string `json:"error"`
		}
		if json.Unmarshal([]byte(line), &l) == nil && l.Error != "" {
			return l.Error
		}
	}
	return ""
}

// oneLine is s on one line, at most n bytes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// tail is the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// platform is scenario (12).
func (b *bench) platform(ctx context.Context) error {
	const s = "12 platform (PostgreSQL CRM)"
	pz := b.plat
	db, err := sql.Open("pgx", b.sqlDSN)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.PingContext(ctx); err != nil {
		b.info(s, "skipped", "no PostgreSQL at -sql-dsn")
		b.note("(12) skipped: PostgreSQL not reachable (%v)", err)
		return nil
	}
	if pz.Tenants > maxPlatformTenants || pz.WriteTenants > maxPlatformTenants {
		return fmt.Errorf("-tenants: at most %s", count(maxPlatformTenants))
	}
	if _, err := b.daemonBinary(ctx); err != nil {
		return err
	}
	if pz.NoopRound {
		if err := b.platformNoop(ctx, db, pz); err != nil {
			return fmt.Errorf("no-op round: %w", err)
		}
	}
	if pz.Writes {
		if err := b.platformWrites(ctx, db, pz); err != nil {
			return fmt.Errorf("writes: %w", err)
		}
	}
	return nil
}

// platformNoop is scenario 12 (a): the no-op round of Tenants x UsersPer
// users in one process.
func (b *bench) platformNoop(ctx context.Context, db *sql.DB, pz platformSizes) error {
	s := fmt.Sprintf("12a platform no-op round (%s tenants x %s users)", count(int64(pz.Tenants)), count(int64(pz.UsersPer)))
	t := time.Now()
	members, merchants, err := createPlatformTables(ctx, db, pz.Tenants, pz.UsersPer)
	defer func() {
		_, _ = db.ExecContext(context.WithoutCancel(ctx), "DROP TABLE IF EXISTS "+members+", "+merchants)
	}()
	if err != nil {
		return err
	}
	b.logf("platform: created %s (%s rows) in %s", members, count(int64(pz.Tenants*pz.UsersPer)), time.Since(t).Round(time.Millisecond))
	t = time.Now()
	stateDir, emuLog := filepath.Join(b.dir, "platform-state"), filepath.Join(b.dir, "platform-emulator.jsonl")
	n, err := seedPlatform(ctx, b.sqlDSN, members, pz.Tenants, sqliteStores(stateDir), emuLog)
	if err != nil {
		return err
	}
	b.logf("platform: seeded %s users' mappings and customers in %s", count(int64(n)), time.Since(t).Round(time.Millisecond))
	t = time.Now()
	e, err := platformEmulator(emuLog, 0)
	if err != nil {
		return err
	}
	defer e.Server.Close() // its state log
	defer e.Close()
	total := 0
	for _, c := range e.CustomerCounts() {
		total += c
	}
	if total != n {
		return fmt.Errorf("the emulator holds %d customers after replaying its state log, want %d", total, n)
	}
	b.logf("platform: the emulator replayed %s customers in %d workspaces in %s", count(int64(total)), len(e.Accounts()), time.Since(t).Round(time.Millisecond))
	sqliteCfg, err := platformConfig(filepath.Join(b.dir, "platform.yaml"), e.srv.URL, b.sqlDSN, members, merchants, sqliteState(stateDir), pz.Tenants, pz.Concurrency, "")
	if err != nil {
		return err
	}
	b.info(s, "users (rows, all unchanged) / tenants", fmt.Sprintf("%s / %s", count(int64(n)), count(int64(pz.Tenants))))
	b.info(s, "set-up", fmt.Sprintf("tenants.concurrency %d; state and emulator seeded directly", pz.Concurrency))
	if err := b.noopRounds(ctx, s, "SQLite state (a file per tenant)", e, sqliteCfg, n, pz); err != nil {
		return err
	}
	if pz.WideConcurrency > 0 {
		wide, err := platformConfig(filepath.Join(b.dir, "platform-wide.yaml"), e.srv.URL, b.sqlDSN, members, merchants, sqliteState(stateDir), pz.Tenants, pz.WideConcurrency, "")
		if err != nil {
			return err
		}
		before := e.snapshot()
		r, err := b.round(ctx, wide)
		if err != nil {
			return fmt.Errorf("tenants.concurrency %d: %w", pz.WideConcurrency, err)
		}
		if d := e.snapshot().sub(before); d.writes != 0 || r.Unchanged != int64(n) {
			return fmt.Errorf("tenants.concurrency %d: %d writes, %d of %d unchanged", pz.WideConcurrency, d.writes, r.Unchanged, n)
		}
		b.logf("platform SQLite state, tenants.concurrency %d: no-op round %s, peak RSS %s, CPU %s", pz.WideConcurrency,
			r.Round.Round(time.Millisecond), mib(r.PeakRSS), r.CPU.Round(time.Millisecond))
		b.info(s, fmt.Sprintf("SQLite state: one no-op round at tenants.concurrency %d", pz.WideConcurrency),
			fmt.Sprintf("%s, %s; peak RSS %s; CPU %s", secs(r.Round.Seconds()), rate(float64(n)/r.Round.Seconds(), "users"), mib(r.PeakRSS), secs(r.CPU.Seconds())))
	}
	if !pz.PostgresState {
		return nil
	}
	// The same with the state on PostgreSQL, a schema per tenant, as the
	// replicas keep it (one process, --once, no River).
	var rb [3]byte
	_, _ = rand.Read(rb[:])
	base := "pbn" + hex.EncodeToString(rb[:])
	defer dropSchemas(context.WithoutCancel(ctx), db, base)
	t = time.Now()
	if _, err := seedPlatform(ctx, b.sqlDSN, members, pz.Tenants, postgresStores(b.sqlDSN, base), ""); err != nil {
		return err
	}
	b.logf("platform: seeded %s tenants' PostgreSQL state schemas in %s", count(int64(pz.Tenants)), time.Since(t).Round(time.Millisecond))
	pgCfg, err := platformConfig(filepath.Join(b.dir, "platform-pg.yaml"), e.srv.URL, b.sqlDSN, members, merchants, postgresState(b.sqlDSN, base), pz.Tenants, pz.Concurrency, "")
	if err != nil {
		return err
	}
	return b.noopRounds(ctx, s, "PostgreSQL state (a schema per tenant)", e, pgCfg, n, pz)
}

// noopRounds runs the first round over the warm state of cfg, then
// pz.Rounds no-op rounds, and adds their rows, named by what.
func (b *bench) noopRounds(ctx context.Context, s, what string, e *emu, cfg string, n int, pz platformSizes) error {
	// The first round over the warm cache: every row read and its print
	// kept, nothing written.
	before := e.snapshot()
	first, err := b.round(ctx, cfg)
	if err != nil {
		return fmt.Errorf("%s: first round: %w", what, err)
	}
	if d := e.snapshot().sub(before); d.writes != 0 || first.Unchanged != int64(n) {
		return fmt.Errorf("%s: first round over the warm cache: %d writes, %d of %d unchanged: the seeded hashes differ from the daemon's", what, d.writes, first.Unchanged, n)
	}
	b.logf("platform %s: first round (every row read, prints kept) %s, peak RSS %s", what, first.Round.Round(time.Millisecond), mib(first.PeakRSS))

	var rounds, walls []float64
	var worst roundResult
	var worstReq requests
	for i := range pz.Rounds {
		before := e.snapshot()
		r, err := b.round(ctx, cfg)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		d := e.snapshot().sub(before)
		b.logf("platform %s: no-op round %d: %s (process %s), peak RSS %s, CPU %s, %d requests (%d writes)", what, i+1,
			r.Round.Round(time.Millisecond), r.Wall.Round(time.Millisecond), mib(r.PeakRSS), r.CPU.Round(time.Millisecond), d.total, d.writes)
		rounds, walls = append(rounds, r.Round.Seconds()), append(walls, r.Wall.Seconds())
		if i == 0 || d.writes > worstReq.writes || r.Unchanged < worst.Unchanged || r.PeakRSS > worst.PeakRSS {
			worst, worstReq = r, d // the worst counts and memory are the ones reported
		}
	}
	round := median(rounds)
	b.check(s, what+": API writes, no-op round", count(int64(worstReq.writes)), "0",
		worstReq.writes == 0 && worst.Unchanged == int64(n) && worst.Tenants == pz.Tenants, true)
	b.info(s, what+": API reads, no-op round (identity check: 1 list + 3 GETs a tenant)", fmt.Sprintf("%s (%s list, %s GET)",
		count(int64(worstReq.total)), count(int64(worstReq.list)), count(int64(worstReq.get))))
	b.info(s, what+": first round over the warm cache (every row read, prints kept)", fmt.Sprintf("%s, %s", secs(first.Round.Seconds()), rate(float64(n)/first.Round.Seconds(), "users")))
	b.info(s, fmt.Sprintf("%s: no-op round time (median of %d)", what, len(rounds)), fmt.Sprintf("%s (process %s)", secs(round), secs(median(walls))))
	b.info(s, what+": no-op round rate", fmt.Sprintf("%s, %s", rate(float64(pz.Tenants)/round, "tenants"), rate(float64(n)/round, "users")))
	b.info(s, what+": peak RSS of the process (worst round)", mib(worst.PeakRSS))
	b.info(s, what+": CPU time of the process / round time", fmt.Sprintf("%s / %s", secs(worst.CPU.Seconds()), secs(worst.Round.Seconds())))
	return nil
}

// writeResult is one write-throughput run of scenario 12 (b).
type writeResult struct {
	Creates int
	Rate    float64       // creates/s at the emulator, first executed write to last
	Window  time.Duration // first executed write to last
	// Middle is creates/s between the 10th and the 90th percent of the
	// creates: the rate once every tenant writes, without the ramp (the
	// tenants starting one after another) and the tail (the last ones
	// finishing).
	Middle float64
	// Ramp is the time from the first write to 10% of the creates, Tail
	// from 90% to the last.
	Ramp, Tail time.Duration
	// Starts is the time from the first tenant's first write to the last
	// tenant's first write; Ends the same of their last writes.
	Starts, Ends time.Duration
	// MachineCores is the CPU time every process of the machine used over
	// the run (from /proc/stat) per second of it: the daemons, the
	// emulator, and what those do not count, PostgreSQL's backends.
	MachineCores float64
	// SyncCPU is the CPU time of the daemon processes over their whole
	// lives; EmuCPU the bench process's (the emulator's) over the run.
	SyncCPU, EmuCPU time.Duration
	Wall            time.Duration // start of the first process to the last write
	N429, N409      int
	// RecordsFailed are the records whose write failed (retried by a
	// later run); FirstError is one of their errors.
	RecordsFailed int64
	FirstError    string
	// Wrong is how many workspaces do not hold exactly their tenant's
	// users (WriteUsers each, every other workspace none).
	Wrong int
}

// cpuSelf is this process's CPU time so far.
func cpuSelf() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuMachine is the CPU time the whole machine has used since boot (user,
// nice, system, irq, softirq and steal of /proc/stat's cpu line, at
// USER_HZ = 100), or 0 where there is no /proc/stat.
func cpuMachine() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		n, _ := strconv.ParseInt(f[i], 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

// runStats is what the daemon processes of a write run used and failed.
type runStats struct {
	CPU           time.Duration
	RecordsFailed int64
	FirstError    string
}

// measureWrites runs run (which starts the daemon processes and returns
// once they are done and have exited) while sampling e's executed writes
// every 20 ms, and returns the creates/s from the first sample that saw a
// write to the first that saw want (or the last, if some records failed).
func measureWrites(ctx context.Context, e *emu, want int, run func(context.Context) (runStats, error)) (writeResult, error) {
	type sample struct {
		t time.Time
		n int
	}
	done := make(chan struct{})
	samples := make(chan []sample, 1)
	go func() {
		var out []sample
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			n := e.WritesExecuted()
			if n > 0 && (len(out) == 0 || out[len(out)-1].n != n) {
				out = append(out, sample{time.Now(), n})
			}
			select {
			case <-tick.C:
			case <-done:
				samples <- out
				return
			}
		}
	}()
	start, cpu0, machine0 := time.Now(), cpuSelf(), cpuMachine()
	st, err := run(ctx)
	machine, runWall := cpuMachine()-machine0, time.Since(start)
	close(done)
	ss := <-samples
	res := writeResult{Creates: e.WritesExecuted(), SyncCPU: st.CPU, EmuCPU: cpuSelf() - cpu0, MachineCores: machine.Seconds() / runWall.Seconds(),
		RecordsFailed: st.RecordsFailed, FirstError: st.FirstError}
	if err != nil {
		return res, err
	}
	if len(ss) < 2 || (res.Creates != want && st.RecordsFailed == 0) {
		return res, fmt.Errorf("%d writes executed, want %d creates", res.Creates, want)
	}
	first, last := ss[0], ss[len(ss)-1]
	for _, x := range ss {
		if x.n >= want {
			last = x
			break
		}
	}
	res.Window, res.Wall = last.t.Sub(first.t), last.t.Sub(start)
	res.Rate = float64(last.n-first.n) / res.Window.Seconds()
	lo, hi := first, last
	for _, x := range ss {
		if x.n >= want/10 {
			lo = x
			break
		}
	}
	for _, x := range ss {
		if x.n >= want*9/10 {
			hi = x
			break
		}
	}
	if d := hi.t.Sub(lo.t); d > 0 {
		res.Middle = float64(hi.n-lo.n) / d.Seconds()
	}
	res.Ramp, res.Tail = lo.t.Sub(first.t), last.t.Sub(hi.t)
	res.Starts, res.Ends = tenantSpread(e.RequestLog())
	if res.N429, err = e.status429(); err != nil {
		return res, err
	}
	res.N409, err = e.answered("409")
	return res, err
}

// tenantSpread returns how far apart the workspaces of log began writing
// (first write of the first to first write of the last) and finished.
func tenantSpread(log []emulator.WriteRecord) (starts, ends time.Duration) {
	first, last := map[string]time.Time{}, map[string]time.Time{}
	for _, r := range log {
		if f, ok := first[r.Account]; !ok || r.Begin.Before(f) {
			first[r.Account] = r.Begin
		}
		if l := last[r.Account]; r.End.After(l) {
			last[r.Account] = r.End
		}
	}
	spread := func(m map[string]time.Time) time.Duration {
		var lo, hi time.Time
		for _, t := range m {
			if lo.IsZero() || t.Before(lo) {
				lo = t
			}
			if t.After(hi) {
				hi = t
			}
		}
		return hi.Sub(lo)
	}
	return spread(first), spread(last)
}

// misplaced counts the workspaces of e that do not hold exactly their
// tenant's users: perTenant in each of the first tenants' accounts and no
// customer anywhere else.
func misplaced(e *emu, tenants, perTenant int) int {
	counts := e.CustomerCounts()
	wrong := 0
	for i := range tenants {
		if counts["acc_"+tenantID(i)] != perTenant {
			wrong++
		}
		delete(counts, "acc_"+tenantID(i))
	}
	for _, n := range counts {
		if n != 0 {
			wrong++
		}
	}
	return wrong
}

// writeRun is one run of scenario 12 (b): a new emulator (real limits,
// no customers), a new state, and the daemon processes of one setup.
type writeRun func(ctx context.Context, e *emu, stateDir string) (runStats, error)

// oneProcess is scenario 12 (b)'s single process: one --once round with
// every tenant running at once (tenants.concurrency = the tenants).
func (b *bench) oneProcess(dsn, members, merchants string, tenants int) writeRun {
	return func(ctx context.Context, e *emu, stateDir string) (runStats, error) {
		cfg, err := platformConfig(stateDir+".yaml", e.srv.URL, dsn, members, merchants, sqliteState(stateDir), tenants, tenants, "")
		if err != nil {
			return runStats{}, err
		}
		r, err := runRound(ctx, b.daemon, cfg)
		return runStats{CPU: r.CPU, RecordsFailed: r.RecordsFailed, FirstError: firstLogError(r.ErrOutput)}, err
	}
}

// replicas is scenario 12 (b)'s replica setup: n daemons with the state
// on PostgreSQL (a schema per tenant, of a base new to the run) sharing
// the runs of tenants tenants through River, each working up to per at
// once. They run until the emulator has executed want writes, or until
// no write was executed for 30 s (records failed, and River's retries of
// the tenants' jobs, after 1 s and 16 s, did not finish them), then get
// SIGTERM.
func (b *bench) replicas(dsn, members, merchants string, n, per, tenants, want int, db *sql.DB) writeRun {
	return func(ctx context.Context, e *emu, stateDir string) (runStats, error) {
		var rb [3]byte
		_, _ = rand.Read(rb[:])
		base := "pbw" + hex.EncodeToString(rb[:])
		defer dropSchemas(context.WithoutCancel(ctx), db, base)
		cfg, err := platformConfig(stateDir+".yaml", e.srv.URL, dsn, members, merchants, postgresState(dsn, base), tenants, per,
			"listen: \"\"\n")
		if err != nil {
			return runStats{}, err
		}
		type proc struct {
			cmd    *exec.Cmd
			out    *strings.Builder
			exited chan error
		}
		var procs []proc
		stopAll := func() {
			for _, p := range procs {
				_ = p.cmd.Process.Signal(syscall.SIGTERM)
			}
			for _, p := range procs {
				select {
				case <-p.exited:
				case <-time.After(30 * time.Second):
					_ = p.cmd.Process.Kill()
					<-p.exited
				}
			}
		}
		anyExited := make(chan error, n)
		for range n {
			cmd := exec.Command(b.daemon, "--config", cfg)
			cmd.Env = append(os.Environ(), "PLUGIPAY_SECRET="+platformSecret)
			out := &strings.Builder{}
			cmd.Stdout, cmd.Stderr = out, out
			if err := cmd.Start(); err != nil {
				stopAll()
				return runStats{}, err
			}
			p := proc{cmd: cmd, out: out, exited: make(chan error, 1)}
			go func() { err := cmd.Wait(); p.exited <- err; anyExited <- err }()
			procs = append(procs, p)
		}
		last, lastAt := -1, time.Now()
		werr := waitFor(ctx, anyExited, 10*time.Minute, func() bool {
			w := e.WritesExecuted()
			if w != last {
				last, lastAt = w, time.Now()
			}
			return w >= want || (w > 0 && time.Since(lastAt) > 30*time.Second)
		})
		stopAll()
		var st runStats
		for _, p := range procs {
			if ru, ok := p.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
				st.CPU += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
			}
			st.FirstError = cmp.Or(st.FirstError, firstLogError(p.out.String()))
		}
		if werr != nil {
			return st, fmt.Errorf("replicas: %w: %s", werr, oneLine(procs[0].out.String(), 2000))
		}
		if w := e.WritesExecuted(); w < want {
			st.RecordsFailed = int64(want - w)
		}
		return st, nil
	}
}

// sqliteState is the state: section of a platform config with a SQLite
// file per tenant in dir; postgresState with a schema per tenant named
// <base>_<tenant id> (River's jobs in <base>__jobs).
func sqliteState(dir string) string { return "  path: " + dir }

func postgresState(dsn, base string) string {
	return fmt.Sprintf("  driver: postgres\n  dsn: %q\n  schema: %s\n  max_conns: %d", dsn, base, pgStateConns)
}

// dropSchemas drops every schema whose name starts with base (the
// tenants' and the jobs').
func dropSchemas(ctx context.Context, db *sql.DB, base string) {
	rows, err := db.QueryContext(ctx, "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)", base)
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
		_, _ = db.ExecContext(ctx, "DROP SCHEMA IF EXISTS "+pgIdent(n)+" CASCADE")
	}
}

// pgIdent quotes a PostgreSQL identifier.
func pgIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// Connections to PostgreSQL of the replica setups: a running tenant holds
// its CRM read (a snapshot transaction for the whole read); a replica
// holds the pool every tenant's state shares (state.max_conns), the
// session holding its tenants' writer locks, River's pool (pgxpool's
// default, at least 4) and the tenants listing.
const (
	pgStateConns      = 4
	pgConnsPerTenant  = 1
	pgConnsPerReplica = pgStateConns + 1 + 4 + 1
	pgConnsSpare      = 10 // left for the bench and the rest of the server's users
)

// pgTenantSlots is how many tenants replicas replicas can run at once
// without taking PostgreSQL's last free connections: max_connections less
// the reserved ones, those in use now, and the replicas' own.
func pgTenantSlots(ctx context.Context, db *sql.DB, replicas int) (slots, maxConns, inUse int, err error) {
	var reserved int
	if err := db.QueryRowContext(ctx, `SELECT current_setting('max_connections')::int,
		current_setting('superuser_reserved_connections')::int, (SELECT count(*) FROM pg_stat_activity)`).Scan(&maxConns, &reserved, &inUse); err != nil {
		return 0, 0, 0, fmt.Errorf("read max_connections: %w", err)
	}
	free := maxConns - reserved - inUse - pgConnsSpare - replicas*pgConnsPerReplica
	return max(free/pgConnsPerTenant, replicas), maxConns, inUse, nil
}

// platformWrites is scenario 12 (b): WriteTenants tenants of WriteUsers
// new users each, one process against replicas, interleaved.
func (b *bench) platformWrites(ctx context.Context, db *sql.DB, pz platformSizes) error {
	s := fmt.Sprintf("12b platform writes (%d tenants x %s new users)", pz.WriteTenants, count(int64(pz.WriteUsers)))
	members, merchants, err := createPlatformTables(ctx, db, pz.WriteTenants, pz.WriteUsers)
	defer func() {
		_, _ = db.ExecContext(context.WithoutCancel(ctx), "DROP TABLE IF EXISTS "+members+", "+merchants)
	}()
	if err != nil {
		return err
	}
	target := targetPlatformRate * float64(pz.WriteTenants) * writeCeiling
	// The replicas run as many tenants as PostgreSQL's free connections
	// let them run at once, the same number in both replica setups.
	slots, maxConns, inUse, err := pgTenantSlots(ctx, db, pz.Replicas)
	if err != nil {
		return err
	}
	// Each replica may run its share rounded up (River hands the jobs to
	// whichever replica fetches first), and no more than pgTenants run
	// at once in all, so none waits for a connection.
	pgTenants := min(pz.WriteTenants, slots)
	per := (pgTenants + pz.Replicas - 1) / pz.Replicas
	if pgTenants < pz.WriteTenants {
		b.note("(12b) the replicas synced %d tenants (up to %d at once each), not %d: PostgreSQL's max_connections is %d, %d were in use, a running tenant holds %d (its CRM read) and a replica %d (state pool %d, lock session, River, tenants listing)",
			pgTenants, per, pz.WriteTenants, maxConns, inUse, pgConnsPerTenant, pgConnsPerReplica, pgStateConns)
	}
	setups := []struct {
		name    string
		tenants int
		run     writeRun
	}{
		{fmt.Sprintf("one process, SQLite state, %d tenants at once", pz.WriteTenants), pz.WriteTenants,
			b.oneProcess(b.sqlDSN, members, merchants, pz.WriteTenants)},
		{fmt.Sprintf("1 replica, PostgreSQL state, %d tenants at once", pgTenants), pgTenants,
			b.replicas(b.sqlDSN, members, merchants, 1, pgTenants, pgTenants, pgTenants*pz.WriteUsers, db)},
		{fmt.Sprintf("%d replicas, PostgreSQL state, up to %d tenants at once each", pz.Replicas, per), pgTenants,
			b.replicas(b.sqlDSN, members, merchants, pz.Replicas, per, pgTenants, pgTenants*pz.WriteUsers, db)},
	}
	results := make([][]writeResult, len(setups))
	runs := 0
	for p := range pz.Pairs {
		for i, st := range setups {
			want, ceiling := st.tenants*pz.WriteUsers, float64(st.tenants)*writeCeiling
			var res writeResult
			for attempt := 1; ; attempt++ {
				e, err := platformEmulator("", want)
				if err != nil {
					return err
				}
				runs++
				stateDir := filepath.Join(b.dir, fmt.Sprintf("platform-writes-%d", runs))
				res, err = measureWrites(ctx, e, want, func(ctx context.Context) (runStats, error) { return st.run(ctx, e, stateDir) })
				res.Wrong = misplaced(e, st.tenants, pz.WriteUsers)
				e.Close()
				if err != nil {
					return fmt.Errorf("%s, run %d: %w", st.name, p+1, err)
				}
				if res.RecordsFailed == 0 || !b.againForConnections(attempt, res.FirstError) {
					break
				}
			}
			b.logf("platform writes %s %d: %s creates in %s = %.1f/s (%.0f%% of %.0f; 10%%-90%% of them at %.1f/s, first 10%% in %s, last 10%% in %s; tenants' first writes %s apart, last %s), daemon CPU %s, emulator CPU %s, machine busy %.2f cores, %d answered 429, %d records failed %s",
				st.name, p+1, count(int64(res.Creates)), res.Window.Round(time.Millisecond), res.Rate, 100*res.Rate/ceiling, ceiling,
				res.Middle, res.Ramp.Round(time.Millisecond), res.Tail.Round(time.Millisecond), res.Starts.Round(time.Millisecond), res.Ends.Round(time.Millisecond),
				res.SyncCPU.Round(time.Millisecond), res.EmuCPU.Round(time.Millisecond), res.MachineCores, res.N429, res.RecordsFailed, res.FirstError)
			results[i] = append(results[i], res)
		}
	}
	for i, st := range setups {
		rs := results[i]
		rates, middles, starts := make([]float64, len(rs)), make([]float64, len(rs)), make([]float64, len(rs))
		n429, n409, wrong, failed, firstErr := 0, 0, 0, int64(0), ""
		var sync, emuCPU, wall float64
		machine := make([]float64, len(rs))
		for j, r := range rs {
			rates[j], middles[j], starts[j] = r.Rate, r.Middle, r.Starts.Seconds()
			sync, emuCPU, wall = sync+r.SyncCPU.Seconds(), emuCPU+r.EmuCPU.Seconds(), wall+r.Wall.Seconds()
			machine[j] = r.MachineCores
			n429, n409, wrong, failed = n429+r.N429, n409+r.N409, wrong+r.Wrong, failed+r.RecordsFailed
			firstErr = cmp.Or(firstErr, r.FirstError)
		}
		rt := median(rates)
		metric := st.name + ": creates/s (median of " + strconv.Itoa(len(rs)) + ")"
		value := fmt.Sprintf("%s (%.0f%% of its %d x 20)", rate(rt, "creates"), 100*rt/(float64(st.tenants)*writeCeiling), st.tenants)
		if i == len(setups)-1 {
			b.check(s, metric, value, fmt.Sprintf(">= %s (90%% of %d x 20) if the machine allows", rate(target, "creates"), pz.WriteTenants),
				rt >= target, false)
		} else {
			b.info(s, metric, value)
		}
		b.info(s, st.name+": creates/s from 10% to 90% of the creates / tenants' first writes apart (medians)",
			fmt.Sprintf("%s / %.1f s", rate(median(middles), "creates"), median(starts)))
		b.info(s, st.name+": CPU used / wall: daemons + emulator, all runs; whole machine (PostgreSQL included), median", fmt.Sprintf("%.2f of %d cores (daemons %.0f%%, emulator %.0f%%); %.2f",
			(sync+emuCPU)/wall, runtime.NumCPU(), 100*sync/(sync+emuCPU), 100*emuCPU/(sync+emuCPU), median(machine)))
		b.check(s, st.name+": workspaces not holding exactly their users / 409 answers, all runs", fmt.Sprintf("%d / %d", wrong, n409), "0 / 0",
			wrong == 0 && n409 == 0, true)
		b.info(s, st.name+": 429 answers, all runs", count(int64(n429)))
		if failed > 0 {
			b.info(s, st.name+": records failed (a later run retries them), all runs", fmt.Sprintf("%s, e.g. %s", count(failed), oneLine(firstErr, 90)))
		}
	}
	return nil
}
