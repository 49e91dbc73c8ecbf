package plugipay

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestMetrics(t *testing.T) {
	srv := newScriptServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPost:
			reply(409, errBody(CodeConflict, "externalId taken", "req_c"))(w, r)
		case r.URL.Path == "/api/v1/customers":
			reply(200, listBody(`{"requestId":"req_l","hasMore":false}`, "cus_1"))(w, r)
		case r.URL.Path == "/api/v1/customers/cus_weird":
			reply(418, errBody("teapot_"+r.URL.Path, "no", "req_t"))(w, r)
		default:
			okCustomer("cus_1")(w, r)
		}
	})
	reg := prometheus.NewRegistry()
	c := newTestClient(t, srv, func(o *Options) {
		o.Registerer = reg
		o.WriteRate, o.WriteBurst = 50, 1 // the second write waits ~20ms
	})
	ctx := context.Background()
	// A 503 first, to count one retry: script it through a second client on
	// the same registry, which must share the collectors.
	flaky := newScriptServer(t, reply(503, errBody(CodeServiceUnavailable, "down", "req_f")), okCustomer("cus_1"))
	c2 := newTestClient(t, flaky, func(o *Options) { o.Registerer = reg })

	if _, err := c.Customers.Get(ctx, "cus_1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Customers.Get(ctx, "cus_1"); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := c.Customers.Create(ctx, CustomerParams{}, "idem_1"); !errors.Is(err, ErrConflict) {
			t.Fatalf("err = %v", err)
		}
	}
	if _, err := c.Customers.List(ctx, ListParams{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Customers.Get(ctx, "cus_weird"); err == nil {
		t.Fatal("want an error")
	}

	req := func(op, code string) float64 {
		return counterValue(t, reg, "plugipay_sync_api_requests_total", map[string]string{"destination": "plugipay", "op": op, "code": code})
	}
	retries := func(reason string) float64 {
		return counterValue(t, reg, "plugipay_sync_api_retries_total", map[string]string{"destination": "plugipay", "reason": reason})
	}
	counts := []struct {
		name      string
		got, want float64
	}{
		{"get ok", req("get", "ok"), 2},
		{"create conflict", req("create", CodeConflict), 2},
		{"list ok", req("list", "ok"), 1},
		{"get other", req("get", "other"), 1},
		{"update ok", req("update", "ok"), 0},
		{"retries server_error", retries("server_error"), 1},
		{"retries rate_limited", retries("rate_limited"), 0},
	}
	for _, tc := range counts {
		if tc.got != tc.want {
			t.Errorf("%s = %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	if got := counterValue(t, reg, "plugipay_sync_ratelimit_wait_seconds_total", map[string]string{"destination": "plugipay", "bucket": "write"}); got < 0.005 {
		t.Errorf("write wait seconds = %v, want > 0", got)
	}

	// No series may carry a customer id or a server-invented code.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var histCount uint64
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if v := l.GetValue(); v == "cus_1" || v == "cus_weird" || len(v) > 40 {
					t.Errorf("%s has label %s=%q", mf.GetName(), l.GetName(), v)
				}
			}
			if mf.GetName() == "plugipay_sync_api_request_duration_seconds" {
				histCount += m.GetHistogram().GetSampleCount()
			}
		}
	}
	if histCount != 6 {
		t.Errorf("duration samples = %d, want 6 (one per call)", histCount)
	}
}

// counterValue returns the value of the counter series name{labels} in
// reg, or -1 when the series does not exist.
func counterValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range m.GetLabel() {
				if labels[l.GetName()] != l.GetValue() {
					continue metric
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return -1
}
