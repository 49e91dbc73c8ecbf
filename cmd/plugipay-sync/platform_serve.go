package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	stdsync "sync"
	"syscall"
	"time"

	"github.com/robfig/cron/v3"
	"go.uber.org/zap"

	"github.com/plugipay-sync/plugipay-sync/state"
)

// openPlatform builds platform mode: the state directory, the metrics and
// the Platform. No tenant's state is opened here; each run opens its own.
func (m *Main) openPlatform() error {
	if m.DryRun {
		return withExit(ExitConfig, errors.New("--dry-run: not available in platform mode (tenants:) yet"))
	}
	if m.AllowMassArchive {
		return withExit(ExitConfig, errors.New("--allow-mass-archive: not available in platform mode (tenants:); it would lift the safety valve for every tenant"))
	}
	if m.cfg.State.Postgres() {
		// Each tenant's schema is made when its store is first opened.
		host, _ := os.Hostname()
		m.replicaID = fmt.Sprintf("%s-%d", cmp.Or(host, "replica"), os.Getpid())
		m.userAgent = "plugipay-sync/" + Version + " (" + m.replicaID + ")"
		// One pool for every tenant's schema: a pool per tenant would
		// spend max_connections on idle connections (issue 19).
		pool, err := state.OpenPostgresPool(m.cfg.State.DSN, m.cfg.State.MaxConns, m.cfg.State.MaxConns)
		if err != nil {
			return withExit(ExitConfig, fmt.Errorf("state.dsn: %w", err))
		}
		m.statePool = pool
		m.stateLocker = pool.Locker()
		m.openMetrics()
		m.platform = newPlatform(m)
		return nil
	}
	if err := os.MkdirAll(m.cfg.State.Path, 0o700); err != nil {
		return withExit(ExitFailed, fmt.Errorf("state.path %s (the directory of the tenants' state files): %w", m.cfg.State.Path, err))
	}
	if fi, err := os.Stat(m.cfg.State.Path); err != nil || !fi.IsDir() {
		return withExit(ExitConfig, fmt.Errorf("state.path %s: must be a directory in platform mode (it holds <tenant-id>.db per tenant)", m.cfg.State.Path))
	}
	m.openMetrics()
	m.platform = newPlatform(m)
	return nil
}

// runPlatform runs one round (--once) or the platform daemon.
func (m *Main) runPlatform(ctx context.Context) (int, error) {
	if !m.Once {
		serve := m.platform.serve
		if m.cfg.State.Postgres() {
			serve = m.platform.serveFleet
		}
		if err := serve(ctx); err != nil {
			return exitCode(err), err
		}
		return ExitOK, nil
	}
	stopListener, lerr := m.listen()
	if lerr != nil {
		m.log.Warn("serving no metrics during this round", zap.Error(lerr))
		stopListener = func() {}
	}
	defer stopListener()
	start := time.Now()
	results, err := m.platform.Round(ctx)
	if err != nil {
		return exitCode(err), err
	}
	printRound(m.stdout, results, time.Since(start))
	code := roundExit(results)
	if code != ExitOK {
		return code, fmt.Errorf("%d of %d tenants did not sync cleanly (exit code of the worst: %d); see the table above", countUnclean(results), len(results), code)
	}
	return code, nil
}

// countUnclean counts the tenants whose run did not end ExitOK.
func countUnclean(results []TenantResult) int {
	n := 0
	for _, r := range results {
		if runExitCode(r.Run, r.Err) != ExitOK {
			n++
		}
	}
	return n
}

// serve runs the platform daemon until ctx is cancelled: the metrics and
// health listener and a round on every tick of the schedule, the first at
// once. Rounds may overlap (robfig/cron starts each tick in its own
// goroutine): a tenant still running is skipped by the next round, and
// the pool bounds the runs of all rounds together.
func (p *Platform) serve(ctx context.Context) error {
	m := p.m
	stopListener, err := m.listen()
	if err != nil {
		return err
	}
	round := func() {
		if ctx.Err() != nil {
			return
		}
		start := time.Now()
		results, err := p.Round(ctx)
		if err != nil {
			m.log.Error("round failed: no tenant ran", zap.Error(err))
			return
		}
		m.log.Info("round finished", zap.Int("tenants", len(results)), zap.Int("unclean", countUnclean(results)),
			zap.Duration("took", time.Since(start)))
	}
	cl := cronLogger{m.log.Named("cron").Sugar()}
	c := cron.New(cron.WithParser(CronParser), cron.WithLogger(cl), cron.WithChain(cron.Recover(cl)))
	id, err := c.AddFunc(m.cfg.Schedule, round)
	if err != nil {
		stopListener()
		return fmt.Errorf("schedule: %w", err)
	}
	// A trigger runs its tenant here, beside the rounds and under the
	// same claim, so a tenant never runs twice at once.
	stopEvents, err := p.startEvents(ctx, func(_ context.Context, t Tenant) (string, error) {
		if ctx.Err() != nil {
			return "", fmt.Errorf("stopping: %w", context.Cause(ctx))
		}
		return p.trigger(ctx, t), nil
	})
	if err != nil {
		stopListener()
		return err
	}
	var first stdsync.WaitGroup
	c.Start()
	m.log.Info("platform daemon started", zap.String("schedule", m.cfg.Schedule), zap.Int("concurrency", cap(p.sem)), zap.String("version", Version))
	first.Go(c.Entry(id).WrappedJob.Run)
	p.waitStop(ctx, nil)
	stopEvents()
	stopped := c.Stop()
	done := make(chan struct{})
	go func() {
		<-stopped.Done()
		first.Wait()
		p.bg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(ShutdownTimeout):
		m.log.Error("a tenant run did not stop in time; exiting anyway", zap.Duration("timeout", ShutdownTimeout))
	}
	stopListener()
	m.log.Info("stopped")
	return nil
}

// waitStop returns once ctx is done, the daemon's stop, logging it. A
// SIGHUP, which would end the process by default, is logged instead:
// platform mode does not reload its config (tenants.query is re-read on
// every listing anyway). Each tick of sweep, if not nil, forgets the
// stale tenant failures of the metrics (see tenantMetrics.expire).
func (p *Platform) waitStop(ctx context.Context, sweep <-chan time.Time) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-hup:
			p.m.log.Warn("SIGHUP: platform mode does not reload its config; restart to apply a change (tenants.query is re-read at every listing)")
		case now := <-sweep:
			p.metrics.sweep(now)
		}
	}
	p.m.log.Info("stopping", zap.String("cause", context.Cause(ctx).Error()))
}
