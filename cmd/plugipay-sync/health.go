package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	stdsync "sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/robfig/cron/v3"
	"go.uber.org/zap"

	"github.com/plugipay-sync/plugipay-sync/state"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

// health is what the daemon knows of its own freshness: /readyz answers
// from it, and it exports the gauges the alert rules read. Issue 14: with
// the API down every run was "partial" yet /readyz said ready, and after a
// restart the last-success gauge read 0 (the epoch), so the staleness
// alert fired on a healthy daemon.
type health struct {
	mu          stdsync.Mutex
	started     time.Time
	interval    time.Duration
	staleRuns   int
	lastSuccess time.Time
	// destErr is why the last run could not reach, authenticate to or
	// trust the destination; empty when it could.
	destErr string
	// inRun and progressAt: a run is going and when it last moved.
	inRun      bool
	progressAt time.Time

	intervalGauge prometheus.Gauge
	progressGauge prometheus.Gauge
	streakGauge   prometheus.Gauge
}

func newHealth(reg prometheus.Registerer, now time.Time) *health {
	f := promauto.With(reg)
	return &health{
		started: now,
		intervalGauge: f.NewGauge(prometheus.GaugeOpts{
			Name: "plugipay_sync_schedule_interval_seconds",
			Help: "Time between two runs of the schedule (the alert thresholds are multiples of it).",
		}),
		progressGauge: f.NewGauge(prometheus.GaugeOpts{
			Name: "plugipay_sync_run_last_progress_timestamp_seconds",
			Help: "Unix time the run in progress last decided or wrote a record (or started); a long run that keeps moving is not stalled.",
		}),
		streakGauge: f.NewGauge(prometheus.GaugeOpts{
			Name: "plugipay_sync_failed_runs_in_a_row",
			Help: "Runs that failed since the last successful one (restored from the run history at start).",
		}),
	}
}

// scheduleInterval is the time between the schedule's next two runs after
// now; zero if it never fires.
func scheduleInterval(spec string, now time.Time) (time.Duration, error) {
	s, err := CronParser.Parse(spec)
	if err != nil {
		return 0, err
	}
	first := s.Next(now)
	if first.IsZero() {
		return 0, nil
	}
	second := s.Next(first)
	if second.IsZero() {
		return 0, nil
	}
	return second.Sub(first), nil
}

// everyTooOften reports an "@every" schedule under a second: the cron
// library rounds it up to a second without a word.
func everyTooOften(spec string) bool {
	if rest, ok := strings.CutPrefix(strings.TrimSpace(spec), "@every "); ok {
		if d, err := time.ParseDuration(strings.TrimSpace(rest)); err == nil {
			return d < time.Second
		}
	}
	if s, err := CronParser.Parse(spec); err == nil {
		if c, ok := s.(cron.ConstantDelaySchedule); ok {
			return c.Delay < time.Second
		}
	}
	return false
}

// setSchedule records the schedule's interval and the readiness threshold.
func (h *health) setSchedule(spec string, staleRuns int, now time.Time) {
	iv, _ := scheduleInterval(spec, now)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.interval, h.staleRuns = iv, staleRuns
	h.intervalGauge.Set(iv.Seconds())
}

// restore reads the run history into the health state and the reconciler's
// freshness gauges.
func (h *health) restore(ctx context.Context, db *state.DB, m *sync.Metrics, log *zap.Logger) {
	f, err := db.Freshness(ctx)
	if err != nil {
		log.Warn("read the run history for the health checks", zap.Error(err))
		return
	}
	m.Restore(f.LastFinished, f.LastSuccess)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lastSuccess = f.LastSuccess
	h.streakGauge.Set(float64(f.FailedStreak))
}

// runStarted marks a run as going (and moving).
func (h *health) runStarted(now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.inRun, h.progressAt = true, now
	h.progressGauge.Set(float64(now.Unix()))
}

// progressed marks the run as having moved at now.
func (h *health) progressed(now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.progressAt = now
	h.progressGauge.Set(float64(now.Unix()))
}

// runFinished records a run's result: a run that could not reach,
// authenticate to or trust the destination makes the daemon not ready
// until a run can.
func (h *health) runFinished(rec sync.RunRecord, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.inRun = false
	switch {
	case errors.Is(err, sync.ErrFatal), errors.Is(err, sync.ErrIdentity), errors.Is(err, sync.ErrUnreachable):
		h.destErr = err.Error()
	case rec.Outcome == sync.OutcomeSuccess || rec.Outcome == sync.OutcomePartial:
		h.destErr = ""
	}
	if rec.Outcome == sync.OutcomeSuccess || rec.Outcome == sync.OutcomePartial {
		h.lastSuccess = rec.FinishedAt
	}
}

// setStreak exports the number of failed runs in a row.
func (h *health) setStreak(n int64) { h.streakGauge.Set(float64(n)) }

// ready says whether the daemon is doing its job: the last run reached the
// destination, and a run succeeded within staleRuns schedule intervals
// (counted from the start when none ever did), unless a run is going and
// still moving, as a long backfill does.
func (h *health) ready(now time.Time) (bool, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.destErr != "" {
		return false, "the last run could not use the destination: " + h.destErr
	}
	if h.interval <= 0 || h.staleRuns <= 0 {
		return true, ""
	}
	limit := time.Duration(h.staleRuns) * h.interval
	since := h.lastSuccess
	if since.Before(h.started) {
		since = h.started // a restart gives the first run its time
	}
	if now.Sub(since) <= limit {
		return true, ""
	}
	if h.inRun && now.Sub(h.progressAt) <= h.interval {
		return true, ""
	}
	return false, fmt.Sprintf("no run has succeeded for %s (health.stale_after_runs %d x the schedule's %s)",
		now.Sub(since).Round(time.Second), h.staleRuns, h.interval)
}
