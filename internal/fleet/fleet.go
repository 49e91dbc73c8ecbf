// Package fleet shares per-tenant sync runs among replica processes through
// River, a job queue on PostgreSQL (issue 19). Each tenant's run is a River
// job, unique per tenant while it waits, runs or retries, so no tenant runs
// on two replicas at once; the elected leader enqueues one job per tenant
// each period; a replica killed mid-run has its job rescued by River after
// RescueAfter and finished by another replica; a new replica takes its share
// by fetching. A home-made scheduler or lock table would have to solve all
// of that again: River is an existing, maintained engine that does.
//
// The package knows nothing of tenants beyond their ids: the run and the
// tenant list are functions (Options.Run, Options.Tenants), so cmd/ wires the
// real per-tenant run and store lock, and the tests wire a recording fake.
// River's uniqueness is the first guard; the run's own per-tenant writer lock
// (the state store's) is the second, for the moments River cannot see (a job
// rescued while its first replica is still alive but slow): the second holder
// reports Busy, and the job snoozes instead of failing.
package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"go.uber.org/zap"
)

// Defaults for the zero values of Options.
const (
	DefaultSchema      = "plugipay_sync_river"
	DefaultQueue       = "plugipay_sync"
	DefaultWorkers     = 4
	DefaultRunTimeout  = 30 * time.Minute
	DefaultMaxAttempts = 5
	DefaultBusyRetry   = 10 * time.Second
	DefaultStopTimeout = 20 * time.Second
	// defaultRescueMargin is added to RunTimeout when RescueAfter is not
	// set: River must not rescue a job whose run may still be working.
	defaultRescueMargin = 5 * time.Minute
)

// Causes say why a run was enqueued; they are the only values the package
// itself passes to Options.Run, and cmd/ adds its own for event triggers.
const (
	CauseSchedule = "schedule"
	CauseEvent    = "event"
)

// Options configure a Fleet. Tenants, Run and Every are required, and one of
// DSN or Pool.
type Options struct {
	// DSN of the PostgreSQL database that holds River's tables; ignored when
	// Pool is set. A Fleet built from a DSN owns its pool and closes it in Stop.
	DSN string
	// Pool, when set, is used as is and left open by Stop.
	Pool *pgxpool.Pool
	// Schema holds River's tables; created and migrated by New, safely by
	// several replicas starting at once.
	Schema string
	// Queue is the River queue of this deployment's jobs.
	Queue string
	// ClientID names this replica in logs and in River's attempted_by;
	// unique among live replicas. Default: hostname-pid.
	ClientID string
	// Tenants lists the tenants to schedule; called once a period, on the
	// replica that works the period's schedule job.
	Tenants func(ctx context.Context) ([]string, error)
	// Run is one tenant's run. cause is CauseSchedule, CauseEvent or what
	// Enqueue was given. ctx ends after RunTimeout or on a hard stop.
	Run func(ctx context.Context, tenant, cause string) error
	// Busy reports that err means another holder has the tenant's writer
	// lock: the job snoozes for BusyRetry instead of spending an attempt.
	// Nil means no error is Busy.
	Busy func(err error) bool
	// Every is the per-tenant schedule period, unless Schedule is set.
	Every time.Duration
	// Schedule, when set, says when periods start instead of Every: the
	// daemon's cron schedule (robfig/cron's Schedule has this method).
	Schedule interface{ Next(time.Time) time.Time }
	// Workers is the number of runs this replica works at once.
	Workers int
	// RunTimeout bounds one run (River's JobTimeout).
	RunTimeout time.Duration
	// RescueAfter is how long a job may stay running before River's leader
	// takes it for dead and makes it available to another replica; it must
	// exceed RunTimeout. Takeover after a kill is RescueAfter plus up to
	// River's rescuer interval (30 s) and a retry backoff of about a second.
	RescueAfter time.Duration
	// MaxAttempts per job: a tenant that keeps failing (a revoked key) is
	// discarded after that many attempts, with River's backoff between them,
	// and the next period enqueues it afresh, so it never blocks its schedule.
	MaxAttempts int
	// BusyRetry is the snooze of a job whose tenant lock is held elsewhere.
	BusyRetry time.Duration
	// StopTimeout is how long Stop lets running runs finish before it
	// cancels them; a cancelled run's job is released at once for another
	// replica (snoozed for zero), not counted as a failed attempt.
	StopTimeout time.Duration
	// Log receives the fleet's logs; River's own warnings and errors go to it too.
	Log *zap.Logger
	// Registerer receives the fleet's metrics; nil registers none.
	Registerer prometheus.Registerer
}

func (o *Options) setDefaults() {
	if o.Schema == "" {
		o.Schema = DefaultSchema
	}
	if o.Queue == "" {
		o.Queue = DefaultQueue
	}
	if o.ClientID == "" {
		host, _ := os.Hostname()
		o.ClientID = host + "-" + strconv.Itoa(os.Getpid())
	}
	if o.Workers == 0 {
		o.Workers = DefaultWorkers
	}
	if o.RunTimeout == 0 {
		o.RunTimeout = DefaultRunTimeout
	}
	if o.RescueAfter == 0 {
		o.RescueAfter = o.RunTimeout + defaultRescueMargin
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.BusyRetry == 0 {
		o.BusyRetry = DefaultBusyRetry
	}
	if o.StopTimeout == 0 {
		o.StopTimeout = DefaultStopTimeout
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
}

func (o *Options) validate() error {
	switch {
	case o.DSN == "" && o.Pool == nil:
		return errors.New("fleet: DSN or Pool is required")
	case o.Tenants == nil:
		return errors.New("fleet: Tenants is required")
	case o.Run == nil:
		return errors.New("fleet: Run is required")
	case o.Schedule == nil && o.Every <= 0:
		return fmt.Errorf("fleet: Every must be greater than 0 (got %s)", o.Every)
	case o.Workers < 0:
		return fmt.Errorf("fleet: Workers must not be negative (got %d)", o.Workers)
	case o.RunTimeout < 0:
		return fmt.Errorf("fleet: RunTimeout must not be negative (got %s)", o.RunTimeout)
	case o.RescueAfter <= o.RunTimeout:
		return fmt.Errorf("fleet: RescueAfter (%s) must exceed RunTimeout (%s), or a working run is taken for dead", o.RescueAfter, o.RunTimeout)
	case o.MaxAttempts < 1:
		return fmt.Errorf("fleet: MaxAttempts must be at least 1 (got %d)", o.MaxAttempts)
	}
	return nil
}

// Fleet is one replica's share of the work: a River client that works
// tenant runs and, while it is River's leader, enqueues each period's.
type Fleet struct {
	o        Options
	log      *zap.Logger
	pool     *pgxpool.Pool
	ownsPool bool
	client   *river.Client[pgx.Tx]
	metrics  *metrics
	// stopping is set by Stop, so that a run cancelled by the stop is
	// released rather than counted as a failure.
	stopping atomic.Bool
}

// New connects, creates and migrates River's schema, and builds the
// replica's River client; Start starts working.
func New(ctx context.Context, o Options) (*Fleet, error) {
	o.setDefaults()
	if err := o.validate(); err != nil {
		return nil, err
	}
	f := &Fleet{o: o, log: o.Log.With(zap.String("replica", o.ClientID))}
	var err error
	if f.metrics, err = newMetrics(o.Registerer); err != nil {
		return nil, fmt.Errorf("fleet: metrics: %w", err)
	}
	f.pool = o.Pool
	if f.pool == nil {
		if f.pool, err = pgxpool.New(ctx, o.DSN); err != nil {
			return nil, fmt.Errorf("fleet: connect: %w", err)
		}
		f.ownsPool = true
	}
	if err := migrate(ctx, f.pool, o.Schema, f.riverLogger()); err != nil {
		f.closePool()
		return nil, err
	}
	workers := river.NewWorkers()
	river.AddWorker(workers, &runWorker{f: f})
	river.AddWorker(workers, &scheduleWorker{f: f})
	f.client, err = river.NewClient(riverpgxv5.New(f.pool), &river.Config{
		ID:                   o.ClientID,
		Schema:               o.Schema,
		Queues:               map[string]river.QueueConfig{o.Queue: {MaxWorkers: o.Workers}},
		Workers:              workers,
		PeriodicJobs:         []*river.PeriodicJob{f.schedule()},
		JobTimeout:           o.RunTimeout,
		RescueStuckJobsAfter: o.RescueAfter,
		MaxAttempts:          o.MaxAttempts,
		SoftStopTimeout:      o.StopTimeout,
		Logger:               f.riverLogger(),
	})
	if err != nil {
		f.closePool()
		return nil, fmt.Errorf("fleet: river client: %w", err)
	}
	return f, nil
}

// Start starts fetching and working runs, and the schedule while this
// replica leads; it returns once started. ctx bounds the client's life: its
// end is a hard stop, so prefer Stop.
func (f *Fleet) Start(ctx context.Context) error {
	if err := f.client.Start(ctx); err != nil {
		return fmt.Errorf("fleet: start: %w", err)
	}
	f.log.Info("fleet started", zap.String("schema", f.o.Schema), zap.Int("workers", f.o.Workers))
	return nil
}

// Stop stops fetching, lets running runs finish for up to StopTimeout, then
// cancels them (their jobs are released for another replica), and closes
// the pool the Fleet opened. If ctx ends first, the runs are cancelled at
// once; the pool is closed only once River has stopped using it.
func (f *Fleet) Stop(ctx context.Context) error {
	f.stopping.Store(true)
	err := f.client.Stop(ctx)
	if err != nil {
		hardCtx, cancel := context.WithTimeout(context.Background(), hardStopTimeout)
		defer cancel()
		if herr := f.client.StopAndCancel(hardCtx); herr != nil {
			f.log.Error("fleet did not stop; its pool stays open", zap.Error(herr))
			return fmt.Errorf("fleet: stop: %w (hard stop: %w)", err, herr)
		}
		err = fmt.Errorf("fleet: stop: %w; running runs were cancelled", err)
	}
	f.closePool()
	f.log.Info("fleet stopped", zap.Error(err))
	return err
}

// hardStopTimeout bounds the wait for cancelled runs to return when Stop's
// ctx ended before the graceful stop did.
const hardStopTimeout = 5 * time.Second

// ID is this replica's River client id.
func (f *Fleet) ID() string { return f.o.ClientID }

func (f *Fleet) closePool() {
	if f.ownsPool {
		f.pool.Close()
	}
}

// riverLogger hands River's warnings and errors to the fleet's zap logger,
// one entry per River record, so they land in the daemon's one log stream.
func (f *Fleet) riverLogger() *slog.Logger {
	std, err := zap.NewStdLogAt(f.log.With(zap.String("component", "river")), zap.WarnLevel)
	if err != nil { // only for an invalid level, which WarnLevel is not
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(std.Writer(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}
