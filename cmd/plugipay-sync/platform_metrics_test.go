package main

import (
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/plugipay-sync/plugipay-sync/state"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

// With replicas, a tenant's runs move between processes: a failure one
// replica saw and did not see again within expire leaves its metrics (the
// replica running the tenant now reports it), or a healed tenant would
// keep alerting from a replica that no longer runs it. Without expire (one
// process) a failure stays until the tenant heals.
func TestTenantMetrics_ExpireFailuresSeenElsewhere(t *testing.T) {
	failed := sync.RunRecord{Outcome: sync.OutcomeFailed}
	for _, tc := range []struct {
		name   string
		expire time.Duration
		after  time.Duration
		want   int // failing series left
	}{
		{"OneProcessKeeps", 0, 24 * time.Hour, 1},
		{"WithinExpireKeeps", time.Hour, 30 * time.Minute, 1},
		{"PastExpireForgets", time.Hour, 61 * time.Minute, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			m := newTenantMetrics(reg, nil)
			m.expire = tc.expire
			m.setTenants([]string{"acme", "globex"})
			m.observe("acme", failed, errors.New("401"), state.RunFreshness{})
			if n := testutil.CollectAndCount(m.failingVec); n != 1 {
				t.Fatalf("failing series after the failure = %d, want 1", n)
			}
			m.sweep(time.Now().Add(tc.after))
			if n := testutil.CollectAndCount(m.failingVec); n != tc.want {
				t.Errorf("failing series %s later = %d, want %d", tc.after, n, tc.want)
			}
			if got := testutil.ToFloat64(m.states.WithLabelValues(tenantFailing)); got != float64(tc.want) {
				t.Errorf("plugipay_sync_tenants{state=failing} = %v, want %d", got, tc.want)
			}
		})
	}
}
