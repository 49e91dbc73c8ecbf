package plugipay

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/plugipay-sync/plugipay-sync/internal/apimetrics"
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

// metrics holds the client's share of the module's API metrics (see
// apimetrics), with destination "plugipay". A nil *metrics records
// nothing, so a Client without a Registerer pays no cost.
type metrics struct {
	m *apimetrics.Metrics
}

// metricsDestination is the destination label of the SDK's calls.
const metricsDestination = "plugipay"

// newMetrics registers the collectors with reg, sharing those another
// client registered there already.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m, err := apimetrics.New(reg, metricsDestination)
	if err != nil {
		return nil, err
	}
	// Every series exists from the start.
	m.Init([]string{opCreate, opGet, opUpdate, opList}, metricCodes,
		[]string{reasonNetwork, reasonTimeout, reasonRateLimited, reasonServer}, []string{"read", "write"})
	return &metrics{m: m}, nil
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
	m.m.Request(op, code, d)
}

// addRetry counts one retry.
func (m *metrics) addRetry(reason string) {
	if m != nil {
		m.m.Retry(reason)
	}
}

// addWait adds rate-limiter wait time to bucket's counter.
func (m *metrics) addWait(bucket string, d time.Duration) {
	if m != nil {
		m.m.Wait(bucket, d)
	}
}
