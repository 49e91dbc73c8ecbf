package rest

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/plugipay-sync/plugipay-sync/sync"
)

// Registerer is where the metrics are registered (a
// prometheus.Registerer).
type Registerer = prometheus.Registerer

// metrics are the collectors of one Client; nil records nothing.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	retries  *prometheus.CounterVec
	dest     string
}

func newMetrics(reg Registerer, dest string) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "plugipay_sync_destination_requests_total",
		Help: "Calls to a destination API other than Plugipay, by destination, operation and outcome code; retries are part of one call.",
	}, []string{"destination", "op", "code"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "plugipay_sync_destination_request_duration_seconds",
		Help:    "Duration of calls to a destination API other than Plugipay, retries and rate-limit waits included.",
		Buckets: []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
	}, []string{"destination", "op"})
	retries := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "plugipay_sync_destination_retries_total",
		Help: "Attempts of calls to a destination API other than Plugipay that were retried, by destination and reason.",
	}, []string{"destination", "reason"})
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
	return &metrics{requests: requests, duration: duration, retries: retries, dest: dest}, nil
}

// register registers c, or returns the equal collector already there so
// several clients share one.
func register[C prometheus.Collector](reg Registerer, c C) (C, error) {
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

func (m *metrics) observe(op, code string, d time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(m.dest, op, code).Inc()
	m.duration.WithLabelValues(m.dest, op).Observe(d.Seconds())
}

func (m *metrics) retry(reason string) {
	if m != nil {
		m.retries.WithLabelValues(m.dest, reason).Inc()
	}
}

// codeOf is the code label of a call's error.
func codeOf(err error) string {
	if err == nil {
		return "ok"
	}
	var ae *sync.APIError
	if !errors.As(err, &ae) {
		if errors.Is(err, errAttemptTimeout) {
			return "timeout"
		}
		return "canceled"
	}
	switch {
	case errors.Is(err, sync.ErrInvalid):
		return "invalid"
	case errors.Is(err, sync.ErrFatal):
		return "unauthorized"
	case errors.Is(err, sync.ErrNotFound):
		return "not_found"
	case errors.Is(err, sync.ErrConflict):
		return "conflict"
	case ae.Status == 429:
		return "rate_limited"
	case ae.Status >= 500:
		return "server_error"
	case ae.Code == "network_error" || ae.Code == "timeout":
		return ae.Code
	}
	return "other"
}
