package main

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	paygatefake "github.com/plugipay-sync/plugipay-sync/destination/paygate/fake"
	pinfake "github.com/plugipay-sync/plugipay-sync/destination/pin/fake"
)

// The values of --api.
const (
	APIPlugipay = "plugipay"
	APIPayGate  = "paygate"
	APIPin      = "pin"
)

// Base paths of the fakes: the URL written to --addr-file ends with them.
const (
	PayGateBasePath = "/v1"
	PinBasePath     = "/1"
)

const paygateTestPrefix = "sk_test_"

// apiFlags are the flags each fake understands besides --api, --addr,
// --addr-file and --secret; any other flag given with its --api is a usage
// error rather than silently ignored.
var apiFlags = map[string][]string{
	APIPayGate: {"latency", "error-rate", "drop-rate", "timeout-rate", "retry-after", "seed", "requests-per-second"},
	APIPin:     {"error-rate", "timeout-rate", "retry-after", "seed", "requests-per-second", "seed-pin-csv"},
}

func checkAPIFlags(api string, given map[string]bool) error {
	common := []string{"api", "addr", "addr-file", "secret"}
	var bad []string
	for name := range given {
		if !slices.Contains(common, name) && !slices.Contains(apiFlags[api], name) {
			bad = append(bad, "--"+name)
		}
	}
	if len(bad) > 0 {
		slices.Sort(bad)
		return fmt.Errorf("%s: not supported with --api %s (it takes --%s)",
			strings.Join(bad, ", "), api, strings.Join(apiFlags[api], ", --"))
	}
	return nil
}

// PayGate returns the running PayGate fake (nil before Run or with another
// --api), so tests can inspect it.
func (m *Main) PayGate() *paygatefake.Server { return m.paygate }

// Pin returns the running Pin fake (nil before Run or with another --api).
func (m *Main) Pin() *pinfake.Server { return m.pin }

// runFake is Run for --api paygate and --api pin.
func (m *Main) runFake(log *zap.Logger) error {
	o := m.Options
	var (
		api      http.Handler
		basePath string
		seeded   int
		c        collector
	)
	switch m.API {
	case APIPayGate:
		f := paygatefake.Faults{Latency: o.Faults.Latency, ErrorRate: o.Faults.ErrorRate, DropRate: o.Faults.DropRate,
			DropAfterWriteRate: o.Faults.TimeoutRate, RetryAfter: o.Faults.RetryAfter}
		if err := f.Validate(); err != nil {
			return fmt.Errorf("faults: %w", err)
		}
		s := paygatefake.New(paygatefake.Options{Keys: []string{m.Secret}, Seed: o.Seed, RequestsPerSecond: m.RequestsPerSecond, Faults: f})
		m.paygate, api, basePath = s, s, PayGateBasePath
		c = collector{
			routes:    []string{paygatefake.RouteCustomers, paygatefake.RouteCustomer, paygatefake.RouteOther},
			count:     s.RequestCount,
			customers: s.CustomerCount,
			writes:    s.WritesExecuted,
		}
	case APIPin:
		f := pinfake.Faults{ErrorRate: o.Faults.ErrorRate, DropAfterWriteRate: o.Faults.TimeoutRate, RetryAfter: o.Faults.RetryAfter}
		if err := f.Validate(); err != nil {
			return fmt.Errorf("faults: %w", err)
		}
		s := pinfake.New(pinfake.Options{TestKeys: []string{m.Secret}, Seed: o.Seed, RequestsPerSecond: m.RequestsPerSecond, Faults: f})
		if m.SeedPinCSV != "" {
			n, err := seedPin(s, m.SeedPinCSV)
			if err != nil {
				return fmt.Errorf("--seed-pin-csv: %w", err)
			}
			seeded = n
		}
		m.pin, api, basePath = s, s, PinBasePath
		c = collector{
			routes:    []string{pinfake.RouteCustomers, pinfake.RouteCustomer, pinfake.RouteOther},
			count:     s.RequestCount,
			customers: func() int { return s.CustomerCount(pinfake.ModeTest) },
			writes:    s.WritesExecuted,
			cardData:  s.CardDataSeen,
		}
	default:
		return fmt.Errorf("--api: unknown API %q", m.API)
	}
	reg := prometheus.NewRegistry()
	if err := reg.Register(c); err != nil {
		return fmt.Errorf("register metrics: %w", err)
	}
	metrics := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})

	// Not a ServeMux: it would clean and redirect paths the fake judges itself.
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			metrics.ServeHTTP(w, r)
			return
		}
		api.ServeHTTP(w, r)
	})
	if err := m.serve(log, basePath, handler); err != nil {
		return err
	}
	log.Info(m.API+" fake listening", append([]zap.Field{
		zap.String("url", m.URL), // never the secret
		zap.Int("requestsPerSecond", m.RequestsPerSecond),
		zap.Int("seededCustomers", seeded),
	}, faultFields(o)...)...)
	return nil
}

// seedPin adds the customers of a CSV file to s's test mode, as checkout
// would have created them, and returns how many. The header names the
// columns: email (required), first_name, last_name and token (optional; an
// empty token gets a fresh one). Values are stored verbatim, so a file can
// hold names that differ from the CRM's, or one email twice.
func seedPin(s *pinfake.Server, path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = -1
	header, err := r.Read()
	if err != nil {
		return 0, fmt.Errorf("%s: read header: %w", path, err)
	}
	col := map[string]int{}
	for i, h := range header {
		h = strings.TrimSpace(strings.TrimPrefix(h, "\uFEFF"))
		switch h {
		case "email", "first_name", "last_name", "token":
			if _, dup := col[h]; dup {
				return 0, fmt.Errorf("%s: column %q appears twice", path, h)
			}
			col[h] = i
		default:
			return 0, fmt.Errorf("%s: unknown column %q (want email, first_name, last_name, token)", path, h)
		}
	}
	if _, ok := col["email"]; !ok {
		return 0, fmt.Errorf("%s: no email column", path)
	}
	get := func(rec []string, name string) string {
		if i, ok := col[name]; ok && i < len(rec) {
			return rec[i]
		}
		return ""
	}
	var customers []pinfake.Customer
	tokens := map[string]bool{}
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("%s: %w", path, err)
		}
		line, _ := r.FieldPos(0)
		c := pinfake.Customer{Token: get(rec, "token"), Email: get(rec, "email"), FirstName: get(rec, "first_name"), LastName: get(rec, "last_name")}
		if c.Email == "" {
			return 0, fmt.Errorf("%s:%d: empty email (checkout always records one)", path, line)
		}
		if c.Token != "" {
			if tokens[c.Token] {
				return 0, fmt.Errorf("%s:%d: token %q appears twice", path, line, c.Token)
			}
			tokens[c.Token] = true
		}
		customers = append(customers, c)
	}
	for _, c := range customers {
		s.Seed(pinfake.ModeTest, c)
	}
	return len(customers), nil
}

// collector exports a fake's counters at /metrics, named like the Plugipay
// emulator's where they mean the same (plugipay_mock_requests_total), so a
// script reads every API the same way.
type collector struct {
	routes    []string
	count     func(method, route string) int
	customers func() int
	writes    func() int
	cardData  func() bool // nil for APIs that take no card data
}

var (
	descRequests = prometheus.NewDesc("plugipay_mock_requests_total",
		"API requests received, by method and route template, whatever their answer.", []string{"method", "route"}, nil)
	descCustomers = prometheus.NewDesc("plugipay_mock_customers",
		"Customers stored (Pin: test mode).", nil, nil)
	descWrites = prometheus.NewDesc("plugipay_mock_writes_executed_total",
		"Creates, updates and deletes executed.", nil, nil)
	descCardData = prometheus.NewDesc("plugipay_mock_card_data_seen",
		"1 once any request carried card data (Pin), else 0.", nil, nil)
)

var fakeMethods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descRequests
	ch <- descCustomers
	ch <- descWrites
	if c.cardData != nil {
		ch <- descCardData
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	for _, route := range c.routes {
		for _, method := range fakeMethods {
			if n := c.count(method, route); n > 0 {
				ch <- prometheus.MustNewConstMetric(descRequests, prometheus.CounterValue, float64(n), method, route)
			}
		}
	}
	ch <- prometheus.MustNewConstMetric(descCustomers, prometheus.GaugeValue, float64(c.customers()))
	ch <- prometheus.MustNewConstMetric(descWrites, prometheus.CounterValue, float64(c.writes()))
	if c.cardData != nil {
		v := 0.0
		if c.cardData() {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(descCardData, prometheus.GaugeValue, v)
	}
}
