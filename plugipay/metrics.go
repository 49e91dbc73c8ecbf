package plugipay

import (
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/plugipay-sync/plugipay-sync/internal/transport"
)

// Label values of the op label, one per customer operation.
const (
	opCreate = "create"
	opGet    = "get"
	opUpdate = "update"
	opList   = "list"
	// opRaw (raw.go) labels Client.Raw calls.
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

// metricsDestination is the destination label of the SDK's calls.
const metricsDestination = "plugipay"

// newMetrics registers the collectors with reg, sharing those another
// client registered there already, and creates every series of the SDK
// at zero. The result is the transport's metrics hook.
func newMetrics(reg prometheus.Registerer) (*transport.Metrics, error) {
	m, err := transport.NewMetrics(reg, metricsDestination)
	if err != nil {
		return nil, err
	}
	m.Init([]string{opCreate, opGet, opUpdate, opList, opRaw}, metricCodes, transport.Reasons, []string{"read", "write"})
	return m, nil
}

// metricCode is the code label of a failed call: its code when it is in
// the closed set, "other" otherwise.
func metricCode(e *Error) string {
	if e == nil {
		return "ok"
	}
	if slices.Contains(metricCodes, e.Code) {
		return e.Code
	}
	return "other"
}
