package main

import (
	stdsync "sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/plugipay-sync/plugipay-sync/state"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

// Tenant states of plugipay_sync_tenants.
const (
	tenantOK      = "ok"
	tenantFailing = "failing"
)

// outcomeSkipped counts a tenant run not started because the tenant was
// still running.
const outcomeSkipped = "skipped"

// tenantMetrics are platform mode's metrics. Their cardinality is bounded
// whatever the number of tenants: totals by outcome and counts by state,
// plus series labelled tenant only for the tenants failing now and those
// named in tenants.metrics_tenants. A tenant's series go when it heals
// (or leaves the list), so a long-gone failure leaves nothing behind.
type tenantMetrics struct {
	runs         map[string]prometheus.Counter
	skipped      prometheus.Counter
	listFailures prometheus.Counter
	inProgress   prometheus.Gauge
	states       *prometheus.GaugeVec
	failingVec   *prometheus.GaugeVec
	lastSuccess  *prometheus.GaugeVec

	optIn map[string]bool
	mu    stdsync.Mutex
	// listed are the tenants of the last listing; failing those whose
	// last run here failed, with when it did.
	listed  map[string]bool
	failing map[string]time.Time
	// expire, when set (replicas share the tenants), forgets a failure
	// this process has not seen again for that long: the tenant's later
	// runs may be on another replica, which reports them, and a stale 1
	// here would keep alerting after the tenant healed there. A tenant
	// still failing fails again within a period on some replica, which
	// reports it anew.
	expire time.Duration
}

func newTenantMetrics(reg prometheus.Registerer, optIn []string) *tenantMetrics {
	f := promauto.With(reg)
	runs := f.NewCounterVec(prometheus.CounterOpts{
		Name: "plugipay_sync_tenant_runs_total",
		Help: "Tenant runs of platform mode, by outcome (success, partial, failed, canceled, skipped: the tenant was still running).",
	}, []string{"outcome"})
	m := &tenantMetrics{
		runs: map[string]prometheus.Counter{},
		listFailures: f.NewCounter(prometheus.CounterOpts{
			Name: "plugipay_sync_tenant_list_failures_total",
			Help: "Rounds that could not list the tenants (tenants.query failed); no tenant ran in them.",
		}),
		inProgress: f.NewGauge(prometheus.GaugeOpts{
			Name: "plugipay_sync_tenant_runs_in_progress",
			Help: "Tenant runs going now (at most tenants.concurrency).",
		}),
		states: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "plugipay_sync_tenants",
			Help: "Tenants of the last listing, by state: failing (the last run failed) or ok.",
		}, []string{"state"}),
		failingVec: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "plugipay_sync_tenant_failing",
			Help: "1 while the tenant's last run failed, 0 for an opted-in tenant that is healthy; only failing and tenants.metrics_tenants have a series.",
		}, []string{"tenant"}),
		lastSuccess: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "plugipay_sync_tenant_last_success_timestamp_seconds",
			Help: "Unix time the tenant's last run with outcome success or partial finished (0: never); failing and opted-in tenants only.",
		}, []string{"tenant"}),
		optIn:   map[string]bool{},
		listed:  map[string]bool{},
		failing: map[string]time.Time{},
	}
	for _, o := range []string{sync.OutcomeSuccess, sync.OutcomePartial, sync.OutcomeFailed, sync.OutcomeCanceled, outcomeSkipped} {
		m.runs[o] = runs.WithLabelValues(o)
	}
	m.skipped = m.runs[outcomeSkipped]
	for _, id := range optIn {
		m.optIn[id] = true
	}
	m.states.WithLabelValues(tenantOK).Set(0)
	m.states.WithLabelValues(tenantFailing).Set(0)
	return m
}

// setTenants records a listing: tenants gone from it lose their state and
// series.
func (m *tenantMetrics) setTenants(ids []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := make(map[string]bool, len(ids))
	for _, id := range ids {
		now[id] = true
	}
	for id := range m.listed {
		if !now[id] {
			delete(m.failing, id)
			m.dropSeries(id)
		}
	}
	m.listed = now
	m.sweepLocked(time.Now())
	m.setStates()
}

// sweep forgets the failures older than expire (see expire).
func (m *tenantMetrics) sweep(now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweepLocked(now)
	m.setStates()
}

func (m *tenantMetrics) sweepLocked(now time.Time) {
	if m.expire <= 0 {
		return
	}
	for id, at := range m.failing {
		if now.Sub(at) > m.expire {
			delete(m.failing, id)
			m.dropSeries(id)
		}
	}
}

// observe records a tenant's run: its outcome, whether it now fails, and
// its series if it fails or is opted in.
func (m *tenantMetrics) observe(id string, rec sync.RunRecord, err error, f state.RunFreshness) {
	outcome := rec.Outcome
	if outcome == "" {
		outcome = sync.OutcomeFailed // it never started: its store or its config
	}
	if c, ok := m.runs[outcome]; ok {
		c.Inc()
	}
	if outcome == sync.OutcomeCanceled {
		return // says nothing about the tenant
	}
	failing := err != nil
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	if failing {
		m.failing[id] = now
	} else {
		delete(m.failing, id)
	}
	m.sweepLocked(now)
	if failing || m.optIn[id] {
		m.failingVec.WithLabelValues(id).Set(b2f(failing))
		ts := 0.0
		if !f.LastSuccess.IsZero() {
			ts = float64(f.LastSuccess.Unix())
		}
		m.lastSuccess.WithLabelValues(id).Set(ts)
	} else {
		m.dropSeries(id)
	}
	m.setStates()
}

func (m *tenantMetrics) dropSeries(id string) {
	m.failingVec.DeleteLabelValues(id)
	m.lastSuccess.DeleteLabelValues(id)
}

// setStates sets plugipay_sync_tenants from listed and failing; m.mu held.
func (m *tenantMetrics) setStates() {
	n := 0
	for id := range m.failing {
		if m.listed[id] {
			n++
		}
	}
	m.states.WithLabelValues(tenantFailing).Set(float64(n))
	m.states.WithLabelValues(tenantOK).Set(float64(len(m.listed) - n))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
