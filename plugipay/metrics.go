package plugipay

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Label values of the op label, one per customer operation.
const (
	opCreate = "create"
	opGet    = "get"
	opUpdate = "update"
	opList   = "list"
)

// metricCodes is the closed set of code label values; any other code a
// server sends is counted as "other", so the label stays bounded.
var metricCodes = []string{
	"ok", CodeValidation, CodeInvalidSignature, CodeInvalidKey, CodeTimestampSkew,
	CodeInvalidTimestamp, CodeInsufficientScope, CodeNotFound, CodeConflict,
	CodeIdempotencyReused, CodeIdempotencyMismatch, CodeRateLimited, CodeInternal,
	CodeUpstream, CodeServiceUnavailable, CodeNetwork, CodeTimeout, CodeCanceled,
	CodeInvalidResponse, CodeUnknown, CodeMethodNotAllowed, "other",
}

// metrics holds the client's Prometheus collectors. A nil *metrics records
// nothing, so a Client without a Registerer pays no cost.
type metrics struct {
	requests *prometheus.CounterVec
	duration map[string]prometheus.Observer
	retries  *prometheus.CounterVec
	wait     map[string]prometheus.Counter
}

// newMetrics registers the collectors with reg. When a second Client
// registers on the same registry, it shares the collectors already there.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "plugipay_sync_api_requests_total",
		Help: "Plugipay API calls by operation and outcome code (ok or the error code), retries included in one call.",
	}, []string{"op", "code"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "plugipay_sync_api_request_duration_seconds",
		Help:    "Duration of Plugipay API calls, retries and rate-limit waits included.",
		Buckets: []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
	}, []string{"op"})
	retries := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "plugipay_sync_api_retries_total",
		Help: "Plugipay API attempts retried, by reason.",
	}, []string{"reason"})
	wait := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "plugipay_sync_ratelimit_wait_seconds_total",
		Help: "Time spent waiting for the client-side rate limiter, by bucket (read or write).",
	}, []string{"bucket"})

	var err error
	if requests, err = register(reg, requests); err != nil {
		return nil, err
	}
	if duration, err = register(reg, duration); err != nil {
		return nil, err
	}
	if retries, err = register(reg, retries); err != nil {
		return nil, err
	}
	if wait, err = register(reg, wait); err != nil {
		return nil, err
	}

	m := &metrics{
		requests: requests,
		duration: map[string]prometheus.Observer{},
		retries:  retries,
		wait:     map[string]prometheus.Counter{},
	}
	// Bind children once, so every series exists from the start.
	for _, op := range []string{opCreate, opGet, opUpdate, opList} {
		m.duration[op] = duration.WithLabelValues(op)
		for _, code := range metricCodes {
			requests.WithLabelValues(op, code)
		}
	}
	for _, r := range []string{reasonNetwork, reasonTimeout, reasonRateLimited, reasonServer} {
		retries.WithLabelValues(r)
	}
	for _, b := range []string{"read", "write"} {
		m.wait[b] = wait.WithLabelValues(b)
	}
	return m, nil
}

// register registers c, or returns the identical collector already
// registered.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}

// observeRequest counts one finished call.
func (m *metrics) observeRequest(op string, err error, d time.Duration) {
	if m == nil {
		return
	}
	code := "ok"
	if err != nil {
		code = "other"
		var e *Error
		if errors.As(err, &e) {
			for _, known := range metricCodes {
				if e.Code == known {
					code = known
					break
				}
			}
		}
	}
	m.requests.WithLabelValues(op, code).Inc()
	if o, ok := m.duration[op]; ok {
		o.Observe(d.Seconds())
	}
}

// addRetry counts one retry.
func (m *metrics) addRetry(reason string) {
	if m == nil {
		return
	}
	m.retries.WithLabelValues(reason).Inc()
}

// addWait adds rate-limiter wait time to bucket's counter.
func (m *metrics) addWait(bucket string, d time.Duration) {
	if m == nil || d <= 0 {
		return
	}
	if c, ok := m.wait[bucket]; ok {
		c.Add(d.Seconds())
	}
}
