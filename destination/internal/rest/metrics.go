package rest

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/plugipay-sync/plugipay-sync/internal/transport"
)

// Registerer is where the metrics are registered (a
// prometheus.Registerer).
type Registerer = prometheus.Registerer

// metrics are one Client's share of the module's API metrics (see
// transport.Metrics); nil records nothing.
type metrics = transport.Metrics

// Label values: the operations the adapters name, and the codes codeOf
// gives.
var (
	metricOps   = []string{"create", "get", "update", "list"}
	metricCodes = []string{"ok", "invalid", "unauthorized", "not_found", "conflict", "rate_limited",
		"server_error", "network_error", "timeout", "canceled", "other"}
	metricReasons = transport.Reasons
)

func newMetrics(reg Registerer, dest string) (*metrics, error) {
	m, err := transport.NewMetrics(reg, dest)
	if err != nil {
		return nil, err
	}
	m.Init(metricOps, metricCodes, metricReasons, []string{"all"})
	return m, nil
}

// codeOf is the code label of a call's error.
func codeOf(err error) string {
	if err == nil {
		return "ok"
	}
	var ae *Error
	if !errors.As(err, &ae) {
		return "canceled"
	}
	switch {
	case errors.Is(err, ErrInvalid):
		return "invalid"
	case errors.Is(err, ErrUnauthorized):
		return "unauthorized"
	case errors.Is(err, ErrNotFound):
		return "not_found"
	case errors.Is(err, ErrConflict):
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
