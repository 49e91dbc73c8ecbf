package fleet

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestMetrics: every outcome's series exists at zero from the start (so
// rate() and alerts work from the first scrape), a run counts once under its
// outcome, and a second Fleet on one registry is refused rather than
// silently reporting nothing.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	m.observe(OutcomeDiscarded, 2*time.Second)
	m.running.Set(3)
	want := `
# HELP plugipay_sync_fleet_runs_total Tenant runs worked by this replica, by outcome (ok, busy, error, discarded, released).
# TYPE plugipay_sync_fleet_runs_total counter
plugipay_sync_fleet_runs_total{outcome="busy"} 0
plugipay_sync_fleet_runs_total{outcome="discarded"} 1
plugipay_sync_fleet_runs_total{outcome="error"} 0
plugipay_sync_fleet_runs_total{outcome="ok"} 0
plugipay_sync_fleet_runs_total{outcome="released"} 0
# HELP plugipay_sync_fleet_running_runs Tenant runs this replica is working now.
# TYPE plugipay_sync_fleet_running_runs gauge
plugipay_sync_fleet_running_runs 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"plugipay_sync_fleet_runs_total", "plugipay_sync_fleet_running_runs"); err != nil {
		t.Error(err)
	}
	if got := testutil.CollectAndCount(m.duration); got != 1 {
		t.Errorf("duration histograms: got %d, want 1", got)
	}
	if _, err := newMetrics(reg); err == nil || err.Error() != "fleet metrics already registered: one Fleet per registry" {
		t.Errorf("second registration: got %v", err)
	}
}
