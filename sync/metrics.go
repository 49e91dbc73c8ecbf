package sync

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Record actions, the values of the records_total "action" label.
const (
	ActionCreated   = "created"
	ActionUpdated   = "updated"
	ActionUnchanged = "unchanged"
	ActionRecovered = "recovered"
	ActionRejected  = "rejected"
	ActionFailed    = "failed"
	ActionArchived  = "archived"
	// ActionSkipped: the sync mode left the user alone (update-only
	// without a linked customer, create-only with a change).
	ActionSkipped = "skipped"
)

// Metrics are the reconciler's Prometheus metrics. Labels are bounded sets
// (actions, outcomes); no label carries a user's id, email or name.
type Metrics struct {
	runs          *prometheus.CounterVec
	runDuration   prometheus.Histogram
	records       map[string]prometheus.Counter
	lastRun       prometheus.Gauge
	lastSuccess   prometheus.Gauge
	inProgress    prometheus.Gauge
	sourceRead    prometheus.Counter
	sourceSeconds prometheus.Counter
}

// NewMetrics registers the reconciler's metrics with reg. A nil reg gives
// metrics that are counted but exported nowhere.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	records := f.NewCounterVec(prometheus.CounterOpts{
		Name: "plugipay_sync_records_total",
		Help: "Source records processed, by the action the reconciler took.",
	}, []string{"action"})
	m := &Metrics{
		runs: f.NewCounterVec(prometheus.CounterOpts{
			Name: "plugipay_sync_runs_total",
			Help: "Reconcile runs, by outcome (success, partial, failed, canceled).",
		}, []string{"outcome"}),
		runDuration: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "plugipay_sync_run_duration_seconds",
			Help:    "Wall time of a reconcile run.",
			Buckets: []float64{0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600},
		}),
		records: map[string]prometheus.Counter{},
		lastRun: f.NewGauge(prometheus.GaugeOpts{
			Name: "plugipay_sync_last_run_timestamp_seconds",
			Help: "Unix time the last run finished, whatever its outcome.",
		}),
		lastSuccess: f.NewGauge(prometheus.GaugeOpts{
			Name: "plugipay_sync_last_success_timestamp_seconds",
			Help: "Unix time the last run finished with every record synced or rejected for its content (outcome success or partial).",
		}),
		inProgress: f.NewGauge(prometheus.GaugeOpts{
			Name: "plugipay_sync_run_in_progress",
			Help: "1 while a run is going, else 0.",
		}),
		sourceRead: f.NewCounter(prometheus.CounterOpts{
			Name: "plugipay_sync_source_records_read_total",
			Help: "Records read from the CRM source, good and bad.",
		}),
		sourceSeconds: f.NewCounter(prometheus.CounterOpts{
			Name: "plugipay_sync_source_read_seconds_total",
			Help: "Time spent waiting on the CRM source.",
		}),
	}
	for _, a := range []string{ActionCreated, ActionUpdated, ActionUnchanged, ActionRecovered, ActionRejected, ActionFailed, ActionArchived, ActionSkipped} {
		m.records[a] = records.WithLabelValues(a)
	}
	for _, o := range []string{OutcomeSuccess, OutcomePartial, OutcomeFailed, OutcomeCanceled} {
		m.runs.WithLabelValues(o) // export zeroes so rate() works from the start
	}
	return m
}

// Restore sets the freshness gauges from the run history, so a restarted
// daemon does not report its last success as the epoch (issue 14: the
// NoRecentSuccess alert fired on a healthy daemon whose first run was
// long). A zero time leaves its gauge alone.
func (m *Metrics) Restore(lastRun, lastSuccess time.Time) {
	if !lastRun.IsZero() {
		m.lastRun.Set(float64(lastRun.Unix()))
	}
	if !lastSuccess.IsZero() {
		m.lastSuccess.Set(float64(lastSuccess.Unix()))
	}
}

// liveInterval is how often a run's counts reach records_total.
const liveInterval = time.Second

// countLive adds a run's counts to records_total while it goes, every
// liveInterval, and what is left when stop is called (before the run is
// recorded), so a long backfill shows its throughput as it happens rather
// than in one jump at its end (issue 16: flat for the first 10 minutes of
// a backfill). snapshot must be safe to call from another goroutine.
func (m *Metrics) countLive(snapshot func() RunCounts) (stop func()) {
	var last RunCounts
	flush := func() {
		c := snapshot()
		for action, n := range map[string]int64{
			ActionCreated: c.Created - last.Created, ActionUpdated: c.Updated - last.Updated,
			ActionUnchanged: c.Unchanged - last.Unchanged, ActionRecovered: c.Recovered - last.Recovered,
			ActionRejected: c.Rejected - last.Rejected, ActionFailed: c.Failed - last.Failed,
			ActionArchived: c.Archived - last.Archived, ActionSkipped: c.Skipped - last.Skipped,
		} {
			if n > 0 {
				m.records[action].Add(float64(n))
			}
		}
		last = c
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(liveInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				flush()
				return
			case <-t.C:
				flush()
			}
		}
	}()
	return func() { close(done); <-finished }
}
