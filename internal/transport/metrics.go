// Metrics is the one set of metrics every API client of the
// module reports through, whichever API it speaks: calls by destination,
// operation and outcome code, their latency, retries and rate-limiter
// waits. Before it, only Plugipay was observed (issue 16): with a
// PayGate-style API failing every call the API dashboard panels were empty
// and the API alerts could not fire. Labels are bounded: destination is
// one of the adapters' names, op and reason come from fixed lists, and the
// clients map codes they do not know to "other".
//
// *Metrics is the transport's metrics hook (Observer): every client built
// on the transport reports through it, whichever API it speaks. It lives
// with the transport so that a client (the Plugipay SDK) imports one
// package of the module, not two.

package transport

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var _ Observer = (*Metrics)(nil)

// Metrics are one client's view of the shared collectors, with its
// destination label bound. A nil *Metrics records nothing.
type Metrics struct {
	dest     string
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	retries  *prometheus.CounterVec
	wait     *prometheus.CounterVec
}

// New registers the collectors with reg, or shares those already there
// (several clients, one registry), for a client of destination. A nil reg
// gives a nil *Metrics.
func NewMetrics(reg prometheus.Registerer, destination string) (*Metrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &Metrics{dest: destination}
	var err error
	if m.requests, err = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "plugipay_sync_api_requests_total",
		Help: "Destination API calls by destination, operation and outcome code (ok or the error code); a call's retries count once.",
	}, []string{"destination", "op", "code"})); err != nil {
		return nil, err
	}
	if m.duration, err = register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "plugipay_sync_api_request_duration_seconds",
		Help:    "Duration of destination API calls, retries and rate-limit waits included.",
		Buckets: []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
	}, []string{"destination", "op"})); err != nil {
		return nil, err
	}
	if m.retries, err = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "plugipay_sync_api_retries_total",
		Help: "Destination API attempts retried, by destination and reason.",
	}, []string{"destination", "reason"})); err != nil {
		return nil, err
	}
	if m.wait, err = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "plugipay_sync_ratelimit_wait_seconds_total",
		Help: "Time spent waiting for a client-side rate limiter, by destination and bucket (read, write, or all for one shared limit).",
	}, []string{"destination", "bucket"})); err != nil {
		return nil, err
	}
	return m, nil
}

// Init creates the series of every op x code, reason and bucket at zero,
// so rate() and the alerts work from the first scrape.
func (m *Metrics) Init(ops, codes, reasons, buckets []string) {
	if m == nil {
		return
	}
	for _, op := range ops {
		m.duration.WithLabelValues(m.dest, op)
		for _, c := range codes {
			m.requests.WithLabelValues(m.dest, op, c)
		}
	}
	for _, r := range reasons {
		m.retries.WithLabelValues(m.dest, r)
	}
	for _, b := range buckets {
		m.wait.WithLabelValues(m.dest, b)
	}
}

// Request counts one finished call of op with outcome code, taking d.
func (m *Metrics) Request(op, code string, d time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(m.dest, op, code).Inc()
	m.duration.WithLabelValues(m.dest, op).Observe(d.Seconds())
}

// Retry counts one retried attempt.
func (m *Metrics) Retry(reason string) {
	if m != nil {
		m.retries.WithLabelValues(m.dest, reason).Inc()
	}
}

// Wait adds time spent waiting for the rate limiter of bucket.
func (m *Metrics) Wait(bucket string, d time.Duration) {
	if m != nil && d > 0 {
		m.wait.WithLabelValues(m.dest, bucket).Add(d.Seconds())
	}
}

// ObserveAttempt counts an attempt's rate-limiter wait and, when it is
// retried, the retry (Observer).
func (m *Metrics) ObserveAttempt(a Attempt) {
	if m == nil {
		return
	}
	if a.Bucket != "" {
		m.Wait(a.Bucket, a.Waited)
	}
	if a.Retry {
		m.Retry(a.Reason)
	}
}

// ObserveCall counts a finished call by its op and outcome code
// (Observer).
func (m *Metrics) ObserveCall(c Call) {
	m.Request(c.Op, c.Code, c.Duration)
}

// register registers c, or returns the identical collector already there.
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
