package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	stdsync "sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"go.uber.org/zap"

	"github.com/plugipay-sync/plugipay-sync/crm/sqlsrc"
	"github.com/plugipay-sync/plugipay-sync/state"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

// LogKeyTenant is the key of the tenant id on every log line of a
// tenant's run.
const LogKeyTenant = "tenant"

// Tenant is one merchant workspace of platform mode: its users are the
// CRM rows whose crm.sql.tenant_column is ID, synced into the Plugipay
// account OnBehalfOf.
type Tenant struct {
	ID         string
	OnBehalfOf string
	// BaseURL, if set, replaces the Plugipay base URL for this tenant.
	BaseURL string
}

// Errors of RunTenant.
var (
	// ErrTenantBusy: the tenant's previous run is still going (or waiting
	// for a worker) in this process; the run asked for is skipped, not
	// doubled.
	ErrTenantBusy = errors.New("tenant: a run of this tenant is already in progress")
	// ErrUnknownTenant: no tenant of tenants.list or tenants.query has
	// this id.
	ErrUnknownTenant = errors.New("tenant: unknown tenant")
)

// Platform runs the tenants of platform mode (issue 19): every tenant with
// its own source bound to it, its own Plugipay client (on_behalf_of, its
// own rate limiter: Plugipay's limits are per workspace), its own state
// DB and its own user registry, opened for the run and closed after it,
// so thousands of tenants hold no thousands of files. At most
// tenants.concurrency runs go at once in the process; one tenant's
// failure is recorded in its own state DB and never stops another.
//
// RunTenant and Tenants are the entry points a job queue (internal/fleet's
// River worker) calls; Round is what the daemon's schedule and --once run.
type Platform struct {
	m       *Main
	sem     chan struct{}
	metrics *tenantMetrics

	mu      stdsync.Mutex
	running map[string]bool
	// owed are the running tenants that a trigger asked to run again
	// (SQLite state; see trigger); bg counts the runs started by triggers.
	owed  map[string]bool
	bg    stdsync.WaitGroup
	known map[string]Tenant
	// listed is whether the last tenants listing succeeded (/readyz).
	listed atomic.Bool
	// hook, if set (tests), is called as a tenant's run takes a worker;
	// the func it returns as the run gives the worker back.
	hook func(tenantID string) func()
}

// newPlatform builds the platform of m's config; m's registry must exist.
func newPlatform(m *Main) *Platform {
	t := m.cfg.Tenants
	return &Platform{m: m, sem: make(chan struct{}, t.Concurrency),
		metrics: newTenantMetrics(m.reg, t.MetricsTenants),
		running: map[string]bool{}, owed: map[string]bool{}, known: map[string]Tenant{}, hook: m.tenantHook}
}

// Tenants returns the tenants to sync, in the order of tenants.list or of
// tenants.query's rows. The query is run on the CRM database on every
// call, so a merchant added there is synced from the next round on. A row
// whose id or account is invalid, or whose id came already, is logged
// and left out: it must not stop the others. An error means the query
// could not run.
func (p *Platform) Tenants(ctx context.Context) ([]Tenant, error) {
	cfg := p.m.cfg
	var out []Tenant
	if q := cfg.Tenants.Query; q != "" {
		rows, err := sqlsrc.ReadTenants(ctx, cfg.CRM.SQL.Driver, cfg.CRM.SQL.DSN, q)
		if err != nil {
			p.listed.Store(false)
			p.metrics.listFailures.Inc()
			return nil, fmt.Errorf("tenants.query: %w", err)
		}
		seen := map[string]bool{}
		for i, r := range rows {
			bad := checkTenantID(r.ID)
			if bad == nil {
				bad = checkAccount(r.Account)
			}
			if bad == nil && seen[r.ID] {
				bad = errors.New("the tenant id came already in an earlier row")
			}
			if bad != nil {
				p.m.log.Error("tenants.query: row left out", zap.Int("row", i+1), zap.String(LogKeyTenant, oneLine(r.ID, 64)), zap.Error(bad))
				continue
			}
			seen[r.ID] = true
			out = append(out, Tenant{ID: r.ID, OnBehalfOf: r.Account})
		}
	} else {
		for _, t := range cfg.Tenants.List {
			out = append(out, Tenant(t))
		}
	}
	p.mu.Lock()
	p.known = make(map[string]Tenant, len(out))
	ids := make([]string, len(out))
	for i, t := range out {
		p.known[t.ID] = t
		ids[i] = t.ID
	}
	p.mu.Unlock()
	p.metrics.setTenants(ids)
	p.listed.Store(true)
	return out, nil
}

// TenantIDs is Tenants' ids, for a caller outside this package (a job
// queue's scheduler), which cannot name Tenant.
func (p *Platform) TenantIDs(ctx context.Context) ([]string, error) {
	ts, err := p.Tenants(ctx)
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(ts))
	for i, t := range ts {
		ids[i] = t.ID
	}
	return ids, nil
}

// RunTenant runs one sync of the tenant tenantID and returns its error: nil
// when it finished (some records may have been rejected, see the state
// DB), ErrTenantBusy when a run of the tenant is already going in this
// process, ErrUnknownTenant when no tenant has the id. It waits for a
// worker of the pool first.
func (p *Platform) RunTenant(ctx context.Context, tenantID string) error {
	t, err := p.lookup(ctx, tenantID)
	if err != nil {
		return err
	}
	return p.run(ctx, t).Err
}

// lookup finds a tenant by id in the last listing, listing again if it is
// not there (it may be new).
func (p *Platform) lookup(ctx context.Context, id string) (Tenant, error) {
	p.mu.Lock()
	t, ok := p.known[id]
	p.mu.Unlock()
	if ok {
		return t, nil
	}
	ts, err := p.Tenants(ctx)
	if err != nil {
		return Tenant{}, err
	}
	for _, t := range ts {
		if t.ID == id {
			return t, nil
		}
	}
	return Tenant{}, fmt.Errorf("%w %q", ErrUnknownTenant, id)
}

// TenantResult is what one tenant's run in a round came to.
type TenantResult struct {
	Tenant Tenant
	// Run is the run's record; zero when the run never started (its
	// state DB could not be opened, or it was skipped).
	Run sync.RunRecord
	Err error
	// Skipped: the tenant was running already, or the round was stopped
	// before its turn.
	Skipped bool
}

// Round gives every tenant one run: a pool of at most tenants.concurrency
// workers takes the tenants in list order, so a slow tenant holds one
// worker, not the round. A tenant still running from an earlier round is
// skipped. It returns once every run it started has finished; the error
// is the listing's.
func (p *Platform) Round(ctx context.Context) ([]TenantResult, error) {
	ts, err := p.Tenants(ctx)
	if err != nil {
		return nil, err
	}
	results := make([]TenantResult, len(ts))
	next := make(chan int)
	var wg stdsync.WaitGroup
	for range min(cap(p.sem), len(ts)) {
		wg.Go(func() {
			for i := range next {
				results[i] = p.run(ctx, ts[i])
			}
		})
	}
	sent := 0
feed:
	for ; sent < len(ts); sent++ {
		select {
		case next <- sent:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	for i := sent; i < len(ts); i++ {
		results[i] = TenantResult{Tenant: ts[i], Skipped: true, Err: context.Cause(ctx)}
	}
	return results, nil
}

// run runs tenant t once: claimed so no second run of it starts, then on a
// worker of the pool.
func (p *Platform) run(ctx context.Context, t Tenant) TenantResult {
	p.mu.Lock()
	busy := p.running[t.ID]
	p.running[t.ID] = true
	p.mu.Unlock()
	if busy {
		p.metrics.skipped.Inc()
		p.m.log.Info("tenant skipped: its previous run is still going", zap.String(LogKeyTenant, t.ID))
		return TenantResult{Tenant: t, Skipped: true, Err: fmt.Errorf("%w (%s)", ErrTenantBusy, t.ID)}
	}
	defer p.release(ctx, t)
	return p.runClaimed(ctx, t)
}

// Statuses of a trigger (POST /v1/tenants/{id}/runs).
const (
	// triggerEnqueued: the run is a job in the replicas' queue (River),
	// coalesced with one of the tenant's already waiting.
	triggerEnqueued = "enqueued"
	// triggerStarted: no run of the tenant was going; one started.
	triggerStarted = "started"
	// triggerFollowUp: a run of the tenant is going; one more run follows
	// it (that run may have read the CRM before the change), and further
	// triggers until then ask for that same run.
	triggerFollowUp = "already running"
)

// trigger asks for a run of tenant t now, in this process (SQLite state;
// replicas enqueue through River instead): started in the background when
// none of t is going, else owed once after the one going, the same
// guarantee River's uniqueness gives replicas (a burst makes at most the
// running run and one follow-up). ctx is the daemon's, not a request's.
func (p *Platform) trigger(ctx context.Context, t Tenant) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.running[t.ID] {
		p.owed[t.ID] = true
		return triggerFollowUp
	}
	p.running[t.ID] = true
	p.bg.Go(func() {
		defer p.release(ctx, t)
		p.runClaimed(ctx, t)
	})
	return triggerStarted
}

// release ends tenant t's claim after a run, or, when a trigger owed it
// another run meanwhile, keeps the claim and starts that run.
func (p *Platform) release(ctx context.Context, t Tenant) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.owed[t.ID] && ctx.Err() == nil {
		delete(p.owed, t.ID)
		p.bg.Go(func() {
			defer p.release(ctx, t)
			p.runClaimed(ctx, t)
		})
		return
	}
	delete(p.owed, t.ID)
	delete(p.running, t.ID)
}

// runClaimed runs tenant t, claimed by the caller, on a worker of the pool.
func (p *Platform) runClaimed(ctx context.Context, t Tenant) TenantResult {
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return TenantResult{Tenant: t, Skipped: true, Err: context.Cause(ctx)}
	}
	defer func() { <-p.sem }()
	if p.hook != nil {
		defer p.hook(t.ID)()
	}
	p.metrics.inProgress.Inc()
	defer p.metrics.inProgress.Dec()

	log := p.m.log.With(zap.String(LogKeyTenant, t.ID))
	rec, fresh, err := p.runTenant(ctx, t, log)
	p.metrics.observe(t.ID, rec, err, fresh)
	switch {
	case err != nil && rec.Outcome != sync.OutcomeCanceled:
		log.Error("tenant run failed", zap.Int64("run_id", rec.ID), zap.Error(explain(err)))
	default:
		log.Info("tenant run finished", zap.Int64("run_id", rec.ID), zap.String("outcome", rec.Outcome),
			zap.Int64("created", rec.Counts.Created), zap.Int64("updated", rec.Counts.Updated))
	}
	return TenantResult{Tenant: t, Run: rec, Err: err}
}

// runTenant opens t's state DB, builds its reconciler, runs it and closes
// the DB. It returns the run's record, the state DB's run freshness (for
// the tenant's series) and the run's error.
func (p *Platform) runTenant(ctx context.Context, t Tenant, log *zap.Logger) (sync.RunRecord, state.RunFreshness, error) {
	var fresh state.RunFreshness
	store, closeStore, err := p.m.openTenantStore(ctx, t)
	if err != nil {
		return sync.RunRecord{}, fresh, err
	}
	defer closeStore()
	r, err := p.m.buildReconcilerWith(tenantConfig(p.m.cfg, t), store, sync.NewUsers(), log)
	if err != nil {
		return sync.RunRecord{}, fresh, withExit(ExitConfig, err)
	}
	rec, err := r.Run(ctx)
	if f, ferr := store.Freshness(context.WithoutCancel(ctx)); ferr == nil {
		fresh = f
	}
	return rec, fresh, err
}

// tenantConfig is cfg bound to tenant t: its account, its base URL if it
// has its own, its rows of the CRM table, and its state file.
func tenantConfig(cfg Config, t Tenant) Config {
	cfg.Plugipay.OnBehalfOf = t.OnBehalfOf
	if t.BaseURL != "" {
		cfg.Plugipay.BaseURL = t.BaseURL
	}
	s := *cfg.CRM.SQL
	s.tenant = t.ID
	cfg.CRM.SQL = &s
	cfg.State.Path = tenantStatePath(cfg.State.Path, t.ID)
	return cfg
}

// tenantStatePath is the state file of tenant id in the state directory
// dir: <dir>/<id>.db. The id is safe as a file name (checkTenantID).
func tenantStatePath(dir, id string) string { return filepath.Join(dir, id+".db") }

// openTenantStore opens tenant t's state store for one run and returns it
// with the function that closes it. It is the one place that knows where
// a tenant's state lives: today a SQLite file in the state directory,
// under its own writer lock (a second process syncing the same tenant
// fails with ErrLocked instead of writing beside it), bound to the
// destination like the single workspace's; or a PostgreSQL schema per
// tenant on the process's shared pool (statePool), its lock held on the
// process's one lock session (stateLocker).
func (m *Main) openTenantStore(ctx context.Context, t Tenant) (*state.DB, func(), error) {
	path := tenantStatePath(m.cfg.State.Path, t.ID)
	acquire := func() (*state.Lock, error) {
		return state.AcquireLock(ctx, path, m.WaitLock, m.command()+" tenant "+t.ID)
	}
	open := func() (*state.DB, error) { return state.Open(ctx, path) }
	if st := m.cfg.State; st.Postgres() {
		// A schema per tenant, under the schema's advisory lock: replicas
		// sharing the tenants can never write one of them together.
		path = "schema " + tenantSchema(st.Schema, t.ID)
		acquire = func() (*state.Lock, error) {
			return m.stateLocker.Acquire(ctx, tenantSchema(st.Schema, t.ID), m.WaitLock, m.command()+" tenant "+t.ID)
		}
		open = func() (*state.DB, error) { return m.statePool.Open(ctx, tenantSchema(st.Schema, t.ID)) }
	}
	lock, err := acquire()
	if err != nil {
		code := ExitFailed
		if errors.Is(err, state.ErrLocked) {
			code = ExitLocked
		}
		return nil, nil, withExit(code, fmt.Errorf("tenant %s: state %s: %w", t.ID, path, err))
	}
	db, err := open()
	if err != nil {
		_ = lock.Release()
		return nil, nil, withExit(ExitFailed, fmt.Errorf("tenant %s: state %s: %w", t.ID, path, err))
	}
	closeAll := func() {
		if err := db.Close(); err != nil {
			m.log.Error("close a tenant's state DB", zap.String(LogKeyTenant, t.ID), zap.Error(err))
		}
		if err := lock.Release(); err != nil {
			m.log.Error("release a tenant's writer lock", zap.String(LogKeyTenant, t.ID), zap.Error(err))
		}
	}
	if err := db.BindDestination(ctx, destinationIdentity(m.cfg)); err != nil {
		closeAll()
		return nil, nil, withExit(ExitConfig, fmt.Errorf("tenant %s: state %s: %w", t.ID, path, err))
	}
	return db, closeAll, nil
}

// ready reports whether the platform can work: the last tenants listing
// succeeded. One failing tenant does not make the process unready.
func (p *Platform) ready() (bool, string) {
	if !p.listed.Load() {
		return false, "the tenants were not listed yet, or the last listing failed (see the log)"
	}
	return true, ""
}

// roundExit is the exit code of a --once round: the worst of its tenants'
// (see exitRank), ExitOK for a round of no tenants.
func roundExit(results []TenantResult) int {
	code := ExitOK
	for _, r := range results {
		c := runExitCode(r.Run, r.Err)
		if exitRank[c] > exitRank[code] {
			code = c
		}
	}
	return code
}

// exitRank orders the exit codes from best to worst for a round of many
// tenants: a config or credential problem (needs a person, retrying
// cannot help) over an internal failure, over another process holding a
// tenant's lock, over an outage (retry later), over bad data.
var exitRank = map[int]int{ExitOK: 0, ExitPartial: 1, ExitTransient: 2, ExitLocked: 3, ExitFailed: 4, ExitConfig: 5}

// printRound writes a --once round's outcome, one row per tenant.
func printRound(w io.Writer, results []TenantResult, took time.Duration) {
	var failed, skipped int
	for _, r := range results {
		switch {
		case r.Skipped:
			skipped++
		case r.Err != nil:
			failed++
		}
	}
	fmt.Fprintf(w, "round: %d tenants, %d failed, %d skipped in %s\n", len(results), failed, skipped, took.Round(time.Millisecond))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TENANT\tRUN\tOUTCOME\tREAD\tCREATED\tUPDATED\tUNCHANGED\tREJECTED\tFAILED\tERROR")
	for _, r := range results {
		c, outcome := r.Run.Counts, r.Run.Outcome
		switch {
		case r.Skipped:
			outcome = "skipped"
		case outcome == "":
			outcome = sync.OutcomeFailed
		}
		errText := ""
		if r.Err != nil {
			errText = oneLine(strings.TrimSpace(r.Err.Error()), 100)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", r.Tenant.ID, r.Run.ID, outcome,
			c.Read, c.Created, c.Updated, c.Unchanged, c.Rejected, c.Failed, errText)
	}
	_ = tw.Flush()
}
