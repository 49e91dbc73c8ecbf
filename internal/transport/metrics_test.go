package transport

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestObserver checks that the transport's hook lands in the shared
// metrics: a call counts once by its code, a retried attempt counts its
// reason, a limiter wait its bucket; a nil *Metrics records nothing.
func TestMetrics_Observer(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m, err := NewMetrics(reg, "paygate")
	if err != nil {
		t.Fatal(err)
	}
	var o Observer = m
	o.ObserveAttempt(Attempt{Op: "get", N: 1, Status: 429, RateLimited: true, Retry: true,
		Reason: ReasonRateLimited, Bucket: "all", Waited: 250 * time.Millisecond})
	o.ObserveAttempt(Attempt{Op: "get", N: 2, Status: 200, Bucket: "all"})
	o.ObserveCall(Call{Op: "get", Code: "ok", Attempts: 2, Duration: 300 * time.Millisecond})
	o.ObserveCall(Call{Op: "create", Code: "unauthorized", Attempts: 1})

	want := `
# HELP plugipay_sync_api_requests_total Destination API calls by destination, operation and outcome code (ok or the error code); a call's retries count once.
# TYPE plugipay_sync_api_requests_total counter
plugipay_sync_api_requests_total{code="ok",destination="paygate",op="get"} 1
plugipay_sync_api_requests_total{code="unauthorized",destination="paygate",op="create"} 1
# HELP plugipay_sync_api_retries_total Destination API attempts retried, by destination and reason.
# TYPE plugipay_sync_api_retries_total counter
plugipay_sync_api_retries_total{destination="paygate",reason="rate_limited"} 1
# HELP plugipay_sync_ratelimit_wait_seconds_total Time spent waiting for a client-side rate limiter, by destination and bucket (read, write, or all for one shared limit).
# TYPE plugipay_sync_ratelimit_wait_seconds_total counter
plugipay_sync_ratelimit_wait_seconds_total{bucket="all",destination="paygate"} 0.25
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "plugipay_sync_api_requests_total",
		"plugipay_sync_api_retries_total", "plugipay_sync_ratelimit_wait_seconds_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(m.duration); n != 2 {
		t.Errorf("duration series = %d, want 2 (get, create)", n)
	}

	var none *Metrics
	none.ObserveAttempt(Attempt{Retry: true, Reason: "x", Bucket: "all", Waited: time.Second})
	none.ObserveCall(Call{Op: "get", Code: "ok"})
}
