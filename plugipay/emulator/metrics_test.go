package emulator

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, Options{Registerer: reg})
	id := e.create(`{}`)
	e.do(req{method: "GET", target: "/api/v1/customers/" + id})
	e.do(req{method: "GET", target: "/api/v1/customers/cus_missing"})
	e.do(req{method: "GET", target: "/api/v1/customers"})
	e.do(req{method: "GET", target: "/api/v1/customers", keyID: "key_unknown"})
	e.do(req{method: "GET", target: "/nope"})

	tests := []struct {
		method, route, status string
		want                  float64
	}{
		{"POST", RouteCustomers, "201", 1},
		{"GET", RouteCustomer, "200", 1},
		{"GET", RouteCustomer, "404", 1},
		{"GET", RouteCustomers, "200", 1},
		{"GET", RouteCustomers, "401", 1},
		{"GET", RouteOther, "404", 1},
	}
	for _, tt := range tests {
		if got := testutil.ToFloat64(e.srv.requests.WithLabelValues(tt.method, tt.route, tt.status)); got != tt.want {
			t.Errorf("%s %s %s = %v, want %v", tt.method, tt.route, tt.status, got, tt.want)
		}
	}
	if got := e.srv.RequestCount("GET", RouteCustomer); got != 2 {
		t.Errorf("RequestCount(GET, %s) = %d, want 2", RouteCustomer, got)
	}
	if got := e.srv.TotalRequests(); got != 6 {
		t.Errorf("TotalRequests = %d, want 6", got)
	}
	if n, err := testutil.GatherAndCount(reg, "plugipay_mock_requests_total"); err != nil || n != 6 {
		t.Errorf("injected registerer has %d series (%v), want 6", n, err)
	}

	resp, err := http.Get(e.http.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	want := `plugipay_mock_requests_total{method="POST",route="/api/v1/customers",status="201"} 1`
	if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
		t.Fatalf("GET /metrics: %d, missing %q in:\n%s", resp.StatusCode, want, body)
	}
}
