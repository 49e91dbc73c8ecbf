package sync

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// VerifyMetrics are verify's Prometheus metrics. The field label is one of
// DriftFields; no label names a customer.
type VerifyMetrics struct {
	drift       map[string]prometheus.Gauge
	missing     prometheus.Gauge
	orphans     prometheus.Gauge
	repairs     map[string]prometheus.Counter
	duration    prometheus.Histogram
	lastSuccess prometheus.Gauge
}

// NewVerifyMetrics registers verify's metrics with reg (nil: unexported).
func NewVerifyMetrics(reg prometheus.Registerer) *VerifyMetrics {
	f := promauto.With(reg)
	drift := f.NewGaugeVec(prometheus.GaugeOpts{
		Name: "plugipay_sync_drift_customers",
		Help: "Customers whose field differed from the content the sync last confirmed, at the last verify (found, whether repaired or not).",
	}, []string{"field"})
	repairs := f.NewCounterVec(prometheus.CounterOpts{
		Name: "plugipay_sync_verify_repairs_total",
		Help: "Drift repairs and recreations by verify, by outcome (repaired, recreated, unchanged, skipped, failed).",
	}, []string{"outcome"})
	m := &VerifyMetrics{
		drift: map[string]prometheus.Gauge{},
		missing: f.NewGauge(prometheus.GaugeOpts{
			Name: "plugipay_sync_verify_missing_customers",
			Help: "Mapped customers the destination no longer listed at the last verify.",
		}),
		orphans: f.NewGauge(prometheus.GaugeOpts{
			Name: "plugipay_sync_verify_orphan_customers",
			Help: "Customers with an externalId the sync does not know, at the last verify (never touched).",
		}),
		repairs: map[string]prometheus.Counter{},
		duration: f.NewHistogram(prometheus.HistogramOpts{
			Name:    "plugipay_sync_verify_duration_seconds",
			Help:    "Wall time of a complete verify, repairs included.",
			Buckets: []float64{0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600},
		}),
		lastSuccess: f.NewGauge(prometheus.GaugeOpts{
			Name: "plugipay_sync_verify_last_success_timestamp_seconds",
			Help: "Unix time the last complete verify finished.",
		}),
	}
	for _, field := range DriftFields {
		m.drift[field] = drift.WithLabelValues(field)
	}
	for _, o := range []string{RepairRepaired, RepairRecreated, RepairUnchanged, RepairSkipped, RepairFailed} {
		m.repairs[o] = repairs.WithLabelValues(o)
	}
	return m
}

// observe records a complete verify. A nil m records nothing.
func (m *VerifyMetrics) observe(r VerifyReport) {
	if m == nil {
		return
	}
	for field, g := range m.drift {
		g.Set(float64(r.DriftByField[field]))
	}
	m.missing.Set(float64(r.Missing))
	m.orphans.Set(float64(r.Orphans))
	for o, n := range r.Repairs {
		if c, ok := m.repairs[o]; ok {
			c.Add(float64(n))
		}
	}
	m.duration.Observe(r.Duration.Seconds())
	m.lastSuccess.SetToCurrentTime()
}
