package fleet

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"go.uber.org/zap"
)

// Job kinds, as stored in River's river_job.kind.
const (
	kindRun      = "plugipay_sync_tenant_run"
	kindSchedule = "plugipay_sync_schedule"
)

// uniqueStates are the job states in which a tenant's job keeps out another
// one of the same key. River requires available, pending, running and
// scheduled; retryable is added so a failing tenant is not enqueued again
// behind its own retries. completed and discarded are left out, so the next
// period or event enqueues a tenant whose last job ended, failed or not.
var uniqueStates = []rivertype.JobState{
	rivertype.JobStateAvailable,
	rivertype.JobStatePending,
	rivertype.JobStateRunning,
	rivertype.JobStateRetryable,
	rivertype.JobStateScheduled,
}

// runArgs is one tenant's run. Its unique key is (tenant, rerun): Cause is
// not part of it, so a schedule and an event for one tenant make one job.
type runArgs struct {
	Tenant string `json:"tenant" river:"unique"`
	Cause  string `json:"cause"`
	// Rerun marks the one follow-up job that an Enqueue made while the
	// tenant's job was running: that run may have read the source before the
	// event's change, so one more run is owed, and only one.
	Rerun bool `json:"rerun" river:"unique"`
}

func (runArgs) Kind() string { return kindRun }

// scheduleArgs is the periodic job that enqueues each tenant's run.
type scheduleArgs struct{}

func (scheduleArgs) Kind() string { return kindSchedule }

// runOpts is every tenant run's insert options, whoever enqueues it: the
// one place the per-tenant uniqueness is decided.
func (f *Fleet) runOpts() *river.InsertOpts {
	return &river.InsertOpts{
		Queue:       f.o.Queue,
		MaxAttempts: f.o.MaxAttempts,
		UniqueOpts:  river.UniqueOpts{ByArgs: true, ByState: uniqueStates},
	}
}

// schedule is the periodic job, enqueued by River's leader only, on start
// and every period. A period's tenants are listed when its job is worked,
// not when it is enqueued, so the list is always fresh.
func (f *Fleet) schedule() *river.PeriodicJob {
	var when river.PeriodicSchedule = river.PeriodicInterval(f.o.Every)
	if f.o.Schedule != nil {
		when = f.o.Schedule
	}
	return river.NewPeriodicJob(when, func() (river.JobArgs, *river.InsertOpts) {
		// One attempt: if the tenants cannot be listed, the next period
		// tries again, rather than River's backoff holding the schedule.
		return scheduleArgs{}, &river.InsertOpts{
			Queue:       f.o.Queue,
			MaxAttempts: 1,
			UniqueOpts:  river.UniqueOpts{ByState: uniqueStates},
		}
	}, &river.PeriodicJobOpts{ID: kindSchedule, RunOnStart: true})
}

// Enqueue asks for a run of tenant now (an event trigger), under the same
// uniqueness as the schedule: if the tenant's job is waiting, it is left as
// is; if it is running, one follow-up job is added, at most. A tenant may be
// one the schedule does not list.
func (f *Fleet) Enqueue(ctx context.Context, tenant, cause string) error {
	if tenant == "" {
		return errors.New("fleet: enqueue: empty tenant")
	}
	res, err := f.client.Insert(ctx, runArgs{Tenant: tenant, Cause: cause}, f.runOpts())
	if err != nil {
		return fmt.Errorf("fleet: enqueue tenant %s: %w", tenant, err)
	}
	if !res.UniqueSkippedAsDuplicate || res.Job.State != rivertype.JobStateRunning {
		return nil
	}
	if _, err := f.client.Insert(ctx, runArgs{Tenant: tenant, Cause: cause, Rerun: true}, f.runOpts()); err != nil {
		return fmt.Errorf("fleet: enqueue tenant %s rerun: %w", tenant, err)
	}
	return nil
}

// enqueueAll enqueues one scheduled run for each tenant in one insert.
func (f *Fleet) enqueueAll(ctx context.Context, tenants []string) (inserted int, err error) {
	if len(tenants) == 0 {
		return 0, nil
	}
	params := make([]river.InsertManyParams, len(tenants))
	for i, t := range tenants {
		params[i] = river.InsertManyParams{Args: runArgs{Tenant: t, Cause: CauseSchedule}, InsertOpts: f.runOpts()}
	}
	res, err := f.client.InsertMany(ctx, params)
	if err != nil {
		return 0, fmt.Errorf("fleet: enqueue %d tenants: %w", len(tenants), err)
	}
	for _, r := range res {
		if !r.UniqueSkippedAsDuplicate {
			inserted++
		}
	}
	return inserted, nil
}

// scheduleWorker works the periodic job: it lists the tenants and enqueues
// their runs.
type scheduleWorker struct {
	river.WorkerDefaults[scheduleArgs]
	f *Fleet
}

func (w *scheduleWorker) Work(ctx context.Context, _ *river.Job[scheduleArgs]) error {
	tenants, err := w.f.o.Tenants(ctx)
	if err != nil {
		w.f.log.Error("listing tenants failed", zap.Error(err))
		return fmt.Errorf("fleet: list tenants: %w", err)
	}
	n, err := w.f.enqueueAll(ctx, tenants)
	if err != nil {
		return err
	}
	w.f.log.Debug("schedule enqueued", zap.Int("tenants", len(tenants)), zap.Int("new_jobs", n))
	return nil
}

// runWorker works one tenant's run and maps its result to River's.
type runWorker struct {
	river.WorkerDefaults[runArgs]
	f *Fleet
}

func (w *runWorker) Work(ctx context.Context, job *river.Job[runArgs]) error {
	f := w.f
	log := f.log.With(zap.String("tenant", job.Args.Tenant), zap.String("cause", job.Args.Cause),
		zap.Int64("job_id", job.ID), zap.Int("attempt", job.Attempt))
	start := time.Now()
	err := f.run(ctx, job.Args.Tenant, job.Args.Cause)
	out := f.outcome(ctx, job.JobRow, err)
	f.metrics.observe(out, time.Since(start))
	switch out {
	case OutcomeOK:
		log.Debug("run done")
		return nil
	case OutcomeBusy:
		log.Info("tenant locked elsewhere, snoozing", zap.Duration("snooze", f.o.BusyRetry), zap.Error(err))
		return river.JobSnooze(f.o.BusyRetry)
	case OutcomeReleased:
		log.Info("run cancelled by stop, released", zap.Error(err))
		return river.JobSnooze(0)
	case OutcomeDiscarded:
		log.Error("run failed, last attempt: discarded until the next period", zap.Error(err))
	default:
		log.Warn("run failed, will retry", zap.Error(err))
	}
	return fmt.Errorf("tenant %s: %w", job.Args.Tenant, err)
}

// run calls Options.Run, counted as running, with a panic turned into an
// error so that it is classified, counted and retried like any failure.
func (f *Fleet) run(ctx context.Context, tenant, cause string) (err error) {
	f.metrics.running.Inc()
	defer f.metrics.running.Dec()
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("run panicked: %v", r)
		}
	}()
	return f.o.Run(ctx, tenant, cause)
}

// outcome classifies a run's result: the one decision behind both the
// metric and what River is told.
func (f *Fleet) outcome(ctx context.Context, job *rivertype.JobRow, err error) Outcome {
	switch {
	case err == nil:
		return OutcomeOK
	case f.o.Busy != nil && f.o.Busy(err):
		return OutcomeBusy
	case ctx.Err() != nil && f.stopping.Load():
		return OutcomeReleased
	case job.Attempt >= job.MaxAttempts:
		return OutcomeDiscarded
	default:
		return OutcomeError
	}
}
