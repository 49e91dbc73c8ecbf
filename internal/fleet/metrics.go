package fleet

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcome is how one run's job ended, the fleet's only metric label: a
// fixed list, never a tenant.
type Outcome string

// The outcomes of a run.
const (
	// OutcomeOK: the run returned nil.
	OutcomeOK Outcome = "ok"
	// OutcomeBusy: the tenant's lock was held elsewhere; the job snoozes.
	OutcomeBusy Outcome = "busy"
	// OutcomeError: the run failed and River retries it with backoff.
	OutcomeError Outcome = "error"
	// OutcomeDiscarded: the run failed on its last attempt; the next period
	// enqueues the tenant again.
	OutcomeDiscarded Outcome = "discarded"
	// OutcomeReleased: Stop cancelled the run; its job is free at once.
	OutcomeReleased Outcome = "released"
)

// Outcomes lists every Outcome, for the metric's series at zero.
var Outcomes = []Outcome{OutcomeOK, OutcomeBusy, OutcomeError, OutcomeDiscarded, OutcomeReleased}

// metrics are one replica's run counters. A nil Registerer gives working
// collectors that nobody scrapes.
type metrics struct {
	runs     map[Outcome]prometheus.Counter
	duration prometheus.Histogram
	running  prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	runs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "plugipay_sync_fleet_runs_total",
		Help: "Tenant runs worked by this replica, by outcome (ok, busy, error, discarded, released).",
	}, []string{"outcome"})
	m := &metrics{
		runs: make(map[Outcome]prometheus.Counter, len(Outcomes)),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "plugipay_sync_fleet_run_duration_seconds",
			Help:    "Duration of tenant runs worked by this replica, whatever their outcome.",
			Buckets: []float64{0.1, 0.5, 1, 5, 15, 60, 300, 900, 1800, 3600},
		}),
		running: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "plugipay_sync_fleet_running_runs",
			Help: "Tenant runs this replica is working now.",
		}),
	}
	for _, o := range Outcomes {
		m.runs[o] = runs.WithLabelValues(string(o))
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{runs, m.duration, m.running} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, errors.New("fleet metrics already registered: one Fleet per registry")
			}
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) observe(o Outcome, d time.Duration) {
	m.runs[o].Inc()
	m.duration.Observe(d.Seconds())
}
