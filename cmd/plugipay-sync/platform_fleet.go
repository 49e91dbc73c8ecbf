package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/plugipay-sync/plugipay-sync/internal/fleet"
	"github.com/plugipay-sync/plugipay-sync/state"
)

// serveFleet is the platform daemon with its state on PostgreSQL: the
// replicas of the deployment share the tenants' runs as River jobs in the
// same database (internal/fleet). Each tenant's run is one job, unique per
// tenant, so no tenant runs on two replicas at once (its schema's writer
// lock fences it too); the schedule enqueues every tenant each period; a
// replica killed mid-run has its tenant's job rescued by another after
// tenants.rescue_after, and the resumed run is safe (pending writes and
// idempotency keys). One replica alone is a fleet of one.
func (p *Platform) serveFleet(ctx context.Context) error {
	m := p.m
	sched, err := CronParser.Parse(m.cfg.Schedule)
	if err != nil {
		return withExit(ExitConfig, fmt.Errorf("schedule: %w", err))
	}
	stopListener, err := m.listen()
	if err != nil {
		return err
	}
	defer stopListener()
	t := m.cfg.Tenants
	runTimeout := cmp.Or(t.RunTimeout, DefaultTenantRunTimeout)
	f, err := fleet.New(ctx, fleet.Options{
		DSN:         m.cfg.State.DSN,
		Schema:      fleetSchema(m.cfg.State.Schema),
		ClientID:    m.replicaID,
		Tenants:     p.TenantIDs,
		Run:         func(ctx context.Context, tenant, _ string) error { return p.RunTenant(ctx, tenant) },
		Busy:        tenantBusy,
		Schedule:    sched,
		Workers:     t.Concurrency,
		RunTimeout:  runTimeout,
		RescueAfter: cmp.Or(t.RescueAfter, runTimeout+time.Minute),
		Log:         m.log.Named("fleet"),
		Registerer:  m.reg,
	})
	if err != nil {
		return withExit(ExitFailed, fmt.Errorf("replicas (River on state.dsn, schema %s): %w", fleetSchema(m.cfg.State.Schema), err))
	}
	// A first listing makes /readyz say whether the CRM database answers,
	// on every replica, not only on the one that works the schedule.
	if _, err := p.Tenants(ctx); err != nil {
		m.log.Error("list the tenants", zap.Error(err))
	}
	// A failure this replica saw goes from its metrics when no run here
	// repeated it for two periods and a run: the tenant runs every period
	// somewhere, and the replica that ran it last reports it.
	first := sched.Next(time.Now())
	period := sched.Next(first).Sub(first)
	p.metrics.mu.Lock()
	p.metrics.expire = 2*period + runTimeout
	p.metrics.mu.Unlock()
	if err := f.Start(ctx); err != nil {
		return withExit(ExitFailed, fmt.Errorf("start the replica's job worker: %w", err))
	}
	// A trigger enqueues its tenant's run for whichever replica River
	// gives it, under the schedule's uniqueness (a burst coalesces).
	stopEvents, err := p.startEvents(ctx, func(ctx context.Context, t Tenant) (string, error) {
		return triggerEnqueued, f.Enqueue(ctx, t.ID, fleet.CauseEvent)
	})
	if err != nil {
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
		defer cancel()
		_ = f.Stop(stopCtx)
		return err
	}
	sweep := time.NewTicker(min(period, time.Minute))
	defer sweep.Stop()
	m.log.Info("platform replica started", zap.String("replica", f.ID()), zap.String("schedule", m.cfg.Schedule),
		zap.Int("concurrency", t.Concurrency), zap.String("version", Version))
	p.waitStop(ctx, sweep.C)
	stopEvents()
	// Runs in progress get the fleet's grace to finish; the others are
	// handed back to River at once, for another replica.
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
	defer cancel()
	if err := f.Stop(stopCtx); err != nil {
		m.log.Error("stop the replica's job worker", zap.Error(err))
	}
	m.log.Info("stopped")
	return nil
}

// tenantBusy reports that a tenant's run could not start because another
// run of it holds its lock, here or on another replica: the job waits and
// tries again instead of spending an attempt.
func tenantBusy(err error) bool {
	return errors.Is(err, ErrTenantBusy) || errors.Is(err, state.ErrLocked)
}
