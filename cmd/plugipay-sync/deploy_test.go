package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	corev1 "k8s.io/api/core/v1"
	psaapi "k8s.io/pod-security-admission/api"
	psapolicy "k8s.io/pod-security-admission/policy"

	"github.com/plugipay-sync/plugipay-sync/destination/paygate"
	paygatefake "github.com/plugipay-sync/plugipay-sync/destination/paygate/fake"
	"github.com/plugipay-sync/plugipay-sync/plugipay/emulator"
	"github.com/plugipay-sync/plugipay-sync/state"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

// The operational files shipped in the repository.
const (
	alertsFile    = "../../deploy/prometheus/alerts.yaml"
	alertTests    = "../../deploy/prometheus/alerts_test.yaml"
	dashboardFile = "../../deploy/grafana/plugipay-sync.json"
	k8sDir        = "../../deploy/kubernetes"
)

// needTool finds a tool that `make tools` installs; CI must have it.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is not installed; .ci/run installs it with `make tools`", name)
	}
	t.Skipf("%s is not installed; run `make tools` (Debian's prometheus package) to run this test", name)
	return ""
}

// scrapedNames waits for a finished run and returns the metric family
// names the daemon exports.
func scrapedNames(t *testing.T, base string) map[string]bool {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		body := get(t, base+"/metrics")
		if strings.Contains(body, "plugipay_sync_last_run_timestamp_seconds ") &&
			!strings.Contains(body, "plugipay_sync_last_run_timestamp_seconds 0\n") {
			names := map[string]bool{}
			for _, line := range strings.Split(body, "\n") {
				if name, ok := strings.CutPrefix(line, "# TYPE "); ok {
					names[strings.Fields(name)[0]] = true
				}
			}
			return names
		}
		if time.Now().After(deadline) {
			t.Fatalf("no run finished:\n%s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var metricName = regexp.MustCompile(`\b(plugipay_sync_[a-z0-9_]+)`)

// baseName strips the series suffixes of histograms.
func baseName(n string, known map[string]bool) string {
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if b, ok := strings.CutSuffix(n, suffix); ok && known[b] {
			return b
		}
	}
	return n
}

// alertExprs returns alert name -> expression of the rules file.
func alertExprs(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			out[r.Alert] = r.Expr
		}
	}
	return out
}

// dashboardExprs returns panel title -> its queries.
func dashboardExprs(t *testing.T) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	// The job and instance variables, set to "All" (their allValue).
	vars := strings.NewReplacer("$job", ".*", "$instance", ".*")
	out := map[string][]string{}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			out[p.Title] = append(out[p.Title], vars.Replace(tg.Expr))
		}
	}
	return out
}

// readmeMetrics returns the metric names of the README's metrics table.
func readmeMetrics(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "| `plugipay_sync_"); ok {
			names = append(names, "plugipay_sync_"+rest[:strings.Index(rest, "`")])
		}
	}
	return names
}

// TestMetricCatalogue checks, against a running daemon, that the README's
// metrics table is exactly what /metrics exports, and that the dashboard and
// the alert rules use only metrics that exist.
func TestMetricCatalogue(t *testing.T) {
	dir := t.TempDir()
	e := newE2E(t, writeUsers(t, filepath.Join(dir, "u.csv"), 20), emulator.Options{})
	appendFile(t, e.config, realtimeYAML) // the event path's metrics (issue 17)
	base, _ := startDaemon(t, e)
	names := scrapedNames(t, base)
	for n := range destinationMetricNames(t) {
		names[n] = true // exported only with a PayGate- or Pin-style destination
	}
	for n := range platformMetricNames(t) {
		names[n] = true // exported only in platform mode (tenants:)
	}

	documented := readmeMetrics(t)
	if len(documented) < 10 {
		t.Fatalf("found only %d metrics in the README table", len(documented))
	}
	for _, n := range documented {
		if !names[n] {
			t.Errorf("README documents %s, but /metrics does not export it", n)
		}
	}
	for n := range names {
		if strings.HasPrefix(n, "plugipay_sync_") && !slices.Contains(documented, n) {
			t.Errorf("/metrics exports %s, but the README's table does not document it", n)
		}
	}

	var used []string
	for _, expr := range alertExprs(t) {
		used = append(used, metricName.FindAllString(expr, -1)...)
	}
	for _, exprs := range dashboardExprs(t) {
		for _, expr := range exprs {
			used = append(used, metricName.FindAllString(expr, -1)...)
		}
	}
	for _, n := range used {
		if !names[baseName(n, names)] {
			t.Errorf("dashboard or alert rules query %s, which the binary does not export", n)
		}
	}
}

// destinationMetricNames are the metric names a PayGate-style destination
// registers once it has made calls (a daemon on Plugipay exports none).
func destinationMetricNames(t *testing.T) map[string]bool {
	t.Helper()
	fake := paygatefake.New(paygatefake.Options{Keys: []string{"sk_test_catalogue"},
		Faults: paygatefake.Faults{RateLimitRate: 1}}) // a retried 429 first, for the retries metric
	srv := httptest.NewServer(fake)
	defer srv.Close()
	reg := prometheus.NewRegistry()
	dst, err := paygate.New(paygate.Options{BaseURL: srv.URL + "/v1", SecretKey: "sk_test_catalogue", MaxAttempts: 2, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	c := sync.Customer{ExternalID: "u1", Email: "u1@example.com"}
	if _, err := dst.CreateCustomer(context.Background(), c, ""); err == nil {
		t.Fatal("create answered 429 twice succeeded")
	}
	if err := fake.SetFaults(paygatefake.Faults{}); err != nil {
		t.Fatal(err)
	}
	if _, err := dst.CreateCustomer(context.Background(), c, ""); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	if len(names) < 3 {
		t.Fatalf("a PayGate destination registered only %v", names)
	}
	return names
}

// platformMetricNames are the metric names platform mode registers once a
// tenant's run has failed (the per-tenant series exist only then).
func platformMetricNames(t *testing.T) map[string]bool {
	t.Helper()
	reg := prometheus.NewRegistry()
	tm := newTenantMetrics(reg, nil)
	tm.setTenants([]string{"acme"})
	tm.observe("acme", sync.RunRecord{Outcome: sync.OutcomeFailed}, errors.New("401"), state.RunFreshness{})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	if len(names) < 6 {
		t.Fatalf("platform mode registered only %v", names)
	}
	return names
}

// TestAlertRules validates and unit-tests the alert rules with promtool.
func TestAlertRules(t *testing.T) {
	promtool := needTool(t, "promtool")
	for _, args := range [][]string{
		{"check", "rules", alertsFile},
		{"test", "rules", alertTests},
	} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestRealPrometheus starts a real Prometheus scraping a running daemon
// during syncs (with API faults, so error series exist), then runs every
// dashboard query and every alert expression through its HTTP API: each
// must parse, and each dashboard query and each metric an alert reads
// must return series.
func TestRealPrometheus(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Prometheus; skipped with -short")
	}
	prom := needTool(t, "prometheus")
	dir := t.TempDir()
	e := newE2E(t, writeUsers(t, filepath.Join(dir, "u.csv"), 60),
		emulator.Options{Faults: emulator.Faults{ErrorRate: 0.3}, Seed: 6})
	e.writeConfig(filepath.Join(dir, "u.csv"), "@every 1s")
	appendFile(t, e.config, realtimeYAML) // the event path's series, which its alerts read
	base, _ := startDaemon(t, e)
	target := strings.TrimPrefix(base, "http://")

	api, logs := startPrometheus(t, prom, dir, target, "")

	// Wait until Prometheus has several scrapes of a daemon that has run.
	deadline := time.Now().Add(60 * time.Second)
	for {
		res, err := promQuery(api, `count_over_time(plugipay_sync_runs_total{outcome="partial"}[1m]) >= 5`)
		if err == nil && len(res) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Prometheus did not collect 5 scrapes (last error %v):\n%s", err, logs.String())
		}
		time.Sleep(500 * time.Millisecond)
	}

	for title, exprs := range dashboardExprs(t) {
		for _, expr := range exprs {
			res, err := promQuery(api, expr)
			if err != nil {
				t.Errorf("dashboard panel %q: %v", title, err)
			} else if len(res) == 0 {
				t.Errorf("dashboard panel %q: %s returned no series", title, expr)
			}
		}
	}
	for alert, expr := range alertExprs(t) {
		if _, err := promQuery(api, expr); err != nil {
			t.Errorf("alert %s: %v", alert, err)
		}
		if strings.Contains(expr, "plugipay_sync_tenant") {
			continue // platform mode's series: TestRealPrometheus_Platform
		}
		selectors := metricName.FindAllString(expr, -1)
		if strings.Contains(expr, "up{") {
			selectors = append(selectors, `up{job="plugipay-sync"}`)
		}
		for _, sel := range selectors {
			if res, err := promQuery(api, sel); err != nil || len(res) == 0 {
				t.Errorf("alert %s reads %s, which has no series (%v)", alert, sel, err)
			}
		}
	}
}

// TestRealPrometheus_Platform scrapes a platform-mode daemon with a
// failing tenant with a real Prometheus evaluating the alert rules: every
// metric the platform alerts read has series, and PlugipaySyncTenantFailing
// is pending for the failing tenant alone.
func TestRealPrometheus_Platform(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Prometheus; skipped with -short")
	}
	prom := needTool(t, "prometheus")
	w := newPlatformWorldOn(t, 2, "127.0.0.1:0", "@every 1s")
	w.addTenant("t00", 5, testSecret, "{}")
	w.addTenant("t01", 5, testSecret, "{}")
	w.addTenant("t-revoked", 3, "sk_test_another_secret", "{}")
	base, _ := startDaemonConfig(t, w.config)
	rules, err := filepath.Abs(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	api, logs := startPrometheus(t, prom, t.TempDir(), strings.TrimPrefix(base, "http://"), rules)
	deadline := time.Now().Add(60 * time.Second)
	for {
		res, err := promQuery(api, `ALERTS{alertname="PlugipaySyncTenantFailing"}`)
		if err == nil && len(res) > 0 {
			if len(res) != 1 || !strings.Contains(string(res[0]), `"tenant":"t-revoked"`) {
				t.Errorf("PlugipaySyncTenantFailing: %s, want t-revoked alone", res)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("PlugipaySyncTenantFailing never became pending (last error %v):\n%s", err, logs.String())
		}
		time.Sleep(500 * time.Millisecond)
	}
	for alert, expr := range alertExprs(t) {
		if !strings.Contains(expr, "plugipay_sync_tenant") {
			continue
		}
		for _, sel := range metricName.FindAllString(expr, -1) {
			if res, err := promQuery(api, sel); err != nil || len(res) == 0 {
				t.Errorf("alert %s reads %s, which has no series (%v)", alert, sel, err)
			}
		}
	}
}

// startPrometheus runs a real Prometheus in dir scraping target every
// second, evaluating the rules file rules (if any) every second, and
// returns its API address and its log.
func startPrometheus(t *testing.T, prom, dir, target, rules string) (api string, logs *bytes.Buffer) {
	t.Helper()
	port := freePort(t)
	ruleFiles := ""
	if rules != "" {
		ruleFiles = fmt.Sprintf("rule_files: [%q]\n", rules)
	}
	cfg := fmt.Sprintf("global: {scrape_interval: 1s, evaluation_interval: 1s}\n%sscrape_configs:\n  - job_name: plugipay-sync\n    static_configs: [{targets: [%q]}]\n",
		ruleFiles, target)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logs = new(bytes.Buffer)
	cmd := exec.Command(prom, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address=127.0.0.1:"+port)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return "http://127.0.0.1:" + port, logs
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// promQuery runs an instant query and returns its result vector.
func promQuery(api, expr string) ([]json.RawMessage, error) {
	resp, err := http.Get(api + "/api/v1/query?query=" + url.QueryEscape(expr))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("query %s: %s", expr, b)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("query %s: %s", expr, r.Error)
	}
	var vec []json.RawMessage
	if err := json.Unmarshal(r.Data.Result, &vec); err != nil {
		// A scalar result is a single value, which counts as a series.
		return []json.RawMessage{r.Data.Result}, nil
	}
	return vec, nil
}

// k8sDocs parses every manifest in deploy/kubernetes.
func k8sDocs(t *testing.T) []map[string]any {
	t.Helper()
	return k8sDocsIn(t, k8sDir)
}

// k8sDocsIn is k8sDocs of the manifests in dir.
func k8sDocsIn(t *testing.T, dir string) []map[string]any {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s: %v", dir, err)
	}
	sort.Strings(files)
	var docs []map[string]any
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for {
			var doc map[string]any
			err := dec.Decode(&doc)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if doc != nil {
				docs = append(docs, doc)
			}
		}
	}
	return docs
}

// dig walks nested maps and lists: keys are map keys or list indexes.
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

// TestKubernetesManifests checks the examples against the real program:
// the kinds are there, probes hit the real health paths on the port the
// config listens on, the embedded config is valid, and pods run as the
// image's non-root user.
func TestKubernetesManifests(t *testing.T) {
	docs := k8sDocs(t)
	kinds := map[string]map[string]any{}
	for _, d := range docs {
		if d["kind"] == "ConfigMap" && dig(d, "data", "config.yaml") == nil {
			continue // the dashboard's ConfigMap (TestGeneratedManifests)
		}
		kinds[fmt.Sprint(d["kind"])] = d
	}
	for _, k := range []string{"Deployment", "Job", "Service", "ServiceMonitor", "PersistentVolumeClaim", "Secret", "ConfigMap", "PrometheusRule"} {
		if kinds[k] == nil {
			t.Errorf("no %s among the manifests", k)
		}
	}
	// The config in the ConfigMap is valid and says which port to probe.
	cfgText, _ := dig(kinds["ConfigMap"], "data", "config.yaml").(string)
	cfg, err := ParseConfig(strings.NewReader(cfgText))
	if err != nil {
		t.Fatalf("ConfigMap config: %v", err)
	}
	cfg.applyEnvFallbacks(env(map[string]string{"PLUGIPAY_KEY_ID": "k", "PLUGIPAY_SECRET": "s"}))
	if err := cfg.Validate(); err != nil {
		t.Fatalf("ConfigMap config: %v", err)
	}
	_, listenPort, _ := net.SplitHostPort(cfg.Listen)

	// The health paths the probes use are served by the real handler.
	m := NewMain(io.Discard, io.Discard)
	m.reg = prometheus.NewRegistry()
	if m.store, err = state.Open(context.Background(), filepath.Join(t.TempDir(), "state.db")); err != nil {
		t.Fatal(err)
	}
	defer m.store.Close()
	m.health = newHealth(m.reg, time.Now())
	h := m.handler()
	dockerfile, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(dockerfile), "EXPOSE "+listenPort) {
		t.Errorf("Dockerfile does not EXPOSE the config's port %s", listenPort)
	}
	user := regexp.MustCompile(`(?m)^USER (\d+)`).FindStringSubmatch(string(dockerfile))
	if user == nil || user[1] == "0" {
		t.Fatalf("Dockerfile USER = %v, want a non-root uid", user)
	}

	for _, kind := range []string{"Deployment", "Job"} {
		spec := dig(kinds[kind], "spec", "template", "spec")
		if dig(spec, "securityContext", "runAsNonRoot") != true || fmt.Sprint(dig(spec, "securityContext", "runAsUser")) != user[1] {
			t.Errorf("%s: pods must run as non-root uid %s, as the image does", kind, user[1])
		}
		c := dig(spec, "containers", 0)
		if mounts := fmt.Sprint(dig(c, "volumeMounts")); !strings.Contains(mounts, "/data") {
			t.Errorf("%s: the state volume is not mounted at /data", kind)
		}
		if env := fmt.Sprint(dig(c, "envFrom")); !strings.Contains(env, "plugipay-sync-credentials") {
			t.Errorf("%s: credentials do not come from the Secret", kind)
		}
	}
	dep := dig(kinds["Deployment"], "spec", "template", "spec", "containers", 0)
	ports := map[string]string{}
	for i := 0; dig(dep, "ports", i) != nil; i++ {
		ports[fmt.Sprint(dig(dep, "ports", i, "name"))] = fmt.Sprint(dig(dep, "ports", i, "containerPort"))
	}
	for _, probe := range []string{"livenessProbe", "readinessProbe"} {
		path := fmt.Sprint(dig(dep, probe, "httpGet", "path"))
		port := fmt.Sprint(dig(dep, probe, "httpGet", "port"))
		if p, ok := ports[port]; ok {
			port = p
		}
		if port != listenPort {
			t.Errorf("%s probes port %s; the config listens on %s", probe, port, listenPort)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != http.StatusOK {
			t.Errorf("%s path %s answers %d from the daemon's handler", probe, path, rec.Code)
		}
	}
	svcPort := fmt.Sprint(dig(kinds["Service"], "spec", "ports", 0, "port"))
	if svcPort != listenPort {
		t.Errorf("Service port %s; the config listens on %s", svcPort, listenPort)
	}
	if p := fmt.Sprint(dig(kinds["ServiceMonitor"], "spec", "endpoints", 0, "path")); p != "/metrics" {
		t.Errorf("ServiceMonitor scrapes %s", p)
	}
}

// TestKubernetesManifests_OneWriter checks that the shipped manifests can
// never run two writers on one state DB (issue 14): the state claim is
// ReadWriteOncePod and the only claim the Deployment (one replica,
// Recreate) and the Job mount, and the Job fails at once on the exit
// codes that retrying cannot fix.
func TestKubernetesManifests_OneWriter(t *testing.T) {
	kinds := map[string]map[string]any{}
	for _, d := range k8sDocs(t) {
		kinds[fmt.Sprint(d["kind"])] = d
	}
	pvc := kinds["PersistentVolumeClaim"]
	claim := fmt.Sprint(dig(pvc, "metadata", "name"))
	if modes := fmt.Sprint(dig(pvc, "spec", "accessModes")); modes != "[ReadWriteOncePod]" {
		t.Errorf("state PVC access modes %s, want [ReadWriteOncePod]", modes)
	}
	if r := fmt.Sprint(dig(kinds["Deployment"], "spec", "replicas")); r != "1" {
		t.Errorf("Deployment replicas %s, want 1", r)
	}
	if s := fmt.Sprint(dig(kinds["Deployment"], "spec", "strategy", "type")); s != "Recreate" {
		t.Errorf("Deployment strategy %s, want Recreate", s)
	}
	for _, kind := range []string{"Deployment", "Job"} {
		vols, _ := dig(kinds[kind], "spec", "template", "spec", "volumes").([]any)
		found := false
		for _, v := range vols {
			if c := dig(v, "persistentVolumeClaim", "claimName"); c != nil {
				if fmt.Sprint(c) != claim {
					t.Errorf("%s mounts claim %v, want only %s", kind, c, claim)
				}
				found = true
			}
		}
		if !found {
			t.Errorf("%s does not mount the state claim %s", kind, claim)
		}
	}
	rules, _ := dig(kinds["Job"], "spec", "podFailurePolicy", "rules").([]any)
	var failNow []string
	for _, r := range rules {
		if fmt.Sprint(dig(r, "action")) == "FailJob" {
			failNow = append(failNow, fmt.Sprint(dig(r, "onExitCodes", "values")))
		}
	}
	if want := fmt.Sprintf("[%d %d]", ExitPartial, ExitConfig); len(failNow) != 1 || failNow[0] != want {
		t.Errorf("Job FailJob exit codes %v, want %s (bad data, config); %d and %d are retried", failNow, want, ExitTransient, ExitLocked)
	}
}

// TestKubernetesManifests_PodSecurityRestricted runs the pods of the
// Deployment and the Job through Kubernetes' own Pod Security admission
// evaluator at the "restricted" level (the profile many clusters enforce).
func TestKubernetesManifests_PodSecurityRestricted(t *testing.T) {
	eval, err := psapolicy.NewEvaluator(psapolicy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	restricted := psaapi.LevelVersion{Level: psaapi.LevelRestricted, Version: psaapi.LatestVersion()}
	found := 0
	for _, d := range k8sDocs(t) {
		kind := fmt.Sprint(d["kind"])
		if kind != "Deployment" && kind != "Job" {
			continue
		}
		found++
		b, err := json.Marshal(dig(d, "spec", "template"))
		if err != nil {
			t.Fatal(err)
		}
		var pod corev1.PodTemplateSpec
		if err := json.Unmarshal(b, &pod); err != nil {
			t.Fatalf("%s pod template: %v", kind, err)
		}
		res := psapolicy.AggregateCheckResults(eval.EvaluatePod(restricted, &pod.ObjectMeta, &pod.Spec))
		if !res.Allowed {
			t.Errorf("%s fails the restricted Pod Security Standard: %s", kind, res.ForbiddenReason())
		}
	}
	if found != 2 {
		t.Fatalf("found %d of the Deployment and the Job", found)
	}
	job := map[string]any{}
	for _, d := range k8sDocs(t) {
		if d["kind"] == "Job" {
			job = d
		}
	}
	for _, key := range []string{"ttlSecondsAfterFinished", "activeDeadlineSeconds"} {
		if dig(job, "spec", key) == nil {
			t.Errorf("the Job has no spec.%s", key)
		}
	}
}

var updateGenerated = flag.Bool("update", false, "rewrite the generated Kubernetes manifests (make manifests)")

// generatedManifests are the Kubernetes objects made from the files in
// deploy/ that Prometheus and Grafana read, so there is one source of
// truth: a PrometheusRule holding alerts.yaml's groups, and a ConfigMap
// holding the dashboard, labelled for Grafana's sidecar.
func generatedManifests(t *testing.T) map[string][]byte {
	t.Helper()
	alerts, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	dashboard, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	indent := func(b []byte, by string) string {
		var out strings.Builder
		for _, line := range strings.SplitAfter(strings.TrimRight(string(b), "\n")+"\n", "\n") {
			if strings.TrimSpace(line) != "" {
				out.WriteString(by)
			}
			out.WriteString(line)
		}
		return out.String()
	}
	const header = "# Generated by `make manifests` from %s; do not edit here.\n"
	rule := fmt.Sprintf(header, "deploy/prometheus/alerts.yaml") + `# kube-prometheus-stack selects PrometheusRules labelled release: <its Helm
# release name> (ruleSelector); change the value to yours.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: plugipay-sync
  labels: {app.kubernetes.io/name: plugipay-sync, release: kube-prometheus-stack}
spec:
` + indent(alerts, "  ")
	cm := fmt.Sprintf(header, "deploy/grafana/plugipay-sync.json") + `# Grafana's dashboard sidecar (kube-prometheus-stack) loads ConfigMaps
# labelled grafana_dashboard: "1".
apiVersion: v1
kind: ConfigMap
metadata:
  name: plugipay-sync-dashboard
  labels: {app.kubernetes.io/name: plugipay-sync, grafana_dashboard: "1"}
data:
  plugipay-sync.json: |
` + indent(dashboard, "    ")
	return map[string][]byte{
		filepath.Join(k8sDir, "prometheus-rule.yaml"):   []byte(rule),
		filepath.Join(k8sDir, "grafana-dashboard.yaml"): []byte(cm),
	}
}

// TestGeneratedManifests keeps the PrometheusRule and the dashboard
// ConfigMap in step with alerts.yaml and the dashboard JSON, and checks
// that they carry them unchanged.
func TestGeneratedManifests(t *testing.T) {
	for path, want := range generatedManifests(t) {
		if *updateGenerated {
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s is not what deploy/ generates (%v); run `make manifests`", path, err)
		}
	}
	alerts := alertExprs(t)
	var rule, dash map[string]any
	for _, d := range k8sDocs(t) {
		switch {
		case d["kind"] == "PrometheusRule":
			rule = d
		case d["kind"] == "ConfigMap" && dig(d, "data", "plugipay-sync.json") != nil:
			dash = d
		}
	}
	n := 0
	groups, _ := dig(rule, "spec", "groups").([]any)
	for _, g := range groups {
		rules, _ := dig(g, "rules").([]any)
		for _, r := range rules {
			name, expr := fmt.Sprint(dig(r, "alert")), fmt.Sprint(dig(r, "expr"))
			if alerts[name] != expr {
				t.Errorf("PrometheusRule %s: expr differs from alerts.yaml", name)
			}
			n++
		}
	}
	if n != len(alerts) || n == 0 {
		t.Errorf("PrometheusRule holds %d alerts, alerts.yaml %d", n, len(alerts))
	}
	raw, _ := os.ReadFile(dashboardFile)
	if got, _ := dig(dash, "data", "plugipay-sync.json").(string); strings.TrimSpace(got) != strings.TrimSpace(string(raw)) || !json.Valid([]byte(got)) {
		t.Error("the dashboard ConfigMap does not hold deploy/grafana/plugipay-sync.json as it is")
	}
}

// TestImageConfig: the image's default config takes everything from the
// environment, so the image runs with variables alone and holds nothing of
// the demo (issue 16: it failed on the sample CSV path).
func TestImageConfig(t *testing.T) {
	const path = "../../deploy/image-config.yaml"
	dockerfile, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(dockerfile), "COPY deploy/image-config.yaml /etc/plugipay-sync/config.yaml") {
		t.Error("the Dockerfile does not install deploy/image-config.yaml as the default config")
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		want func(Config) string
	}{
		{"CredentialsOnly", map[string]string{"PLUGIPAY_KEY_ID": "k", "PLUGIPAY_SECRET": "s"}, func(c Config) string {
			return c.CRM.Type + " " + c.CRM.CSV.Path + " " + c.State.Path + " " + c.Listen + " " + c.Plugipay.BaseURL
		}},
		{"SQL", map[string]string{"PLUGIPAY_KEY_ID": "k", "PLUGIPAY_SECRET": "s", "PLUGIPAY_SYNC_CRM": "sql", "CRM_DATABASE_URL": "postgres://u@db/crm"}, func(c Config) string {
			return c.CRM.Type + " " + c.CRM.SQL.DSN + " " + c.CRM.SQL.Columns.ExternalID
		}},
		{"PayGate", map[string]string{"PLUGIPAY_SYNC_DESTINATION": "paygate", "PAYGATE_SECRET_KEY": "sk_live_x"}, func(c Config) string {
			return c.Destination.Type + " " + c.Destination.PayGate.BaseURL
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ReadConfigFile(path, env(tc.env))
			if err != nil {
				t.Fatalf("with %v only: %v", slices.Sorted(maps.Keys(tc.env)), err)
			}
			t.Log(tc.want(cfg))
		})
	}
	cfg, _ := ReadConfigFile(path, env(map[string]string{"PLUGIPAY_KEY_ID": "k", "PLUGIPAY_SECRET": "s"}))
	if got := cfg.CRM.CSV.Path + " " + cfg.State.Path + " " + cfg.Listen; got != "/crm/users.csv /data/plugipay-sync.db :9464" {
		t.Errorf("defaults %q; want the CSV on /crm, the state on the /data volume, metrics on the EXPOSEd port", got)
	}
}

// TestKubernetesManifests_Platform checks the platform-mode example
// (deploy/kubernetes/platform) against the real program: its config is
// valid platform mode with the state on PostgreSQL (so the daemon is a
// replica sharing the tenants through River), it runs several replicas
// with no volume to share, its probes hit the real health paths on the
// config's port, its credentials come from its Secret, and its pod passes
// the restricted Pod Security Standard.
func TestKubernetesManifests_Platform(t *testing.T) {
	kinds := map[string]map[string]any{}
	for _, d := range k8sDocsIn(t, filepath.Join(k8sDir, "platform")) {
		kinds[fmt.Sprint(d["kind"])] = d
	}
	cfgText, _ := dig(kinds["ConfigMap"], "data", "config.yaml").(string)
	cfg, err := ReadConfigFile(writeConfig(t, cfgText), env(map[string]string{
		"PLUGIPAY_KEY_ID": "k", "PLUGIPAY_SECRET": "s",
		"PLUGIPAY_STATE_DSN": "postgres://u@db/state", "CRM_DSN": "postgres://u@crm/crm"}))
	if err != nil {
		t.Fatalf("ConfigMap config: %v", err)
	}
	if !cfg.platform() || !cfg.State.Postgres() {
		t.Errorf("config: platform %v, state driver %q; want platform mode on postgres", cfg.platform(), cfg.State.Driver)
	}
	dep := kinds["Deployment"]
	if r, _ := strconv.Atoi(fmt.Sprint(dig(dep, "spec", "replicas"))); r < 2 {
		t.Errorf("Deployment replicas %d, want several", r)
	}
	pod := dig(dep, "spec", "template", "spec")
	vols, _ := dig(pod, "volumes").([]any)
	for _, v := range vols {
		if dig(v, "persistentVolumeClaim") != nil {
			t.Errorf("the platform Deployment mounts a claim %v: replicas share nothing but PostgreSQL", v)
		}
	}
	if kinds["PersistentVolumeClaim"] != nil {
		t.Error("the platform manifests define a PersistentVolumeClaim")
	}
	c := dig(pod, "containers", 0)
	secret := fmt.Sprint(dig(kinds["Secret"], "metadata", "name"))
	if env := fmt.Sprint(dig(c, "envFrom")); !strings.Contains(env, secret) {
		t.Errorf("credentials do not come from the Secret %s", secret)
	}
	for _, k := range []string{"PLUGIPAY_KEY_ID", "PLUGIPAY_SECRET", "PLUGIPAY_STATE_DSN", "CRM_DSN"} {
		if dig(kinds["Secret"], "stringData", k) == nil {
			t.Errorf("the Secret lacks %s", k)
		}
	}
	_, listenPort, _ := net.SplitHostPort(cfg.Listen)
	m := NewMain(io.Discard, io.Discard)
	m.reg = prometheus.NewRegistry()
	m.health = newHealth(m.reg, time.Now())
	h := m.handler()
	for _, probe := range []string{"livenessProbe", "readinessProbe"} {
		port := fmt.Sprint(dig(c, probe, "httpGet", "port"))
		for i := 0; dig(c, "ports", i) != nil; i++ {
			if fmt.Sprint(dig(c, "ports", i, "name")) == port {
				port = fmt.Sprint(dig(c, "ports", i, "containerPort"))
			}
		}
		if port != listenPort {
			t.Errorf("%s probes port %s; the config listens on %s", probe, port, listenPort)
		}
		path := fmt.Sprint(dig(c, probe, "httpGet", "path"))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code == http.StatusNotFound {
			t.Errorf("%s path %s is not served by the daemon's handler", probe, path)
		}
	}
	eval, err := psapolicy.NewEvaluator(psapolicy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(dig(dep, "spec", "template"))
	if err != nil {
		t.Fatal(err)
	}
	var tmpl corev1.PodTemplateSpec
	if err := json.Unmarshal(b, &tmpl); err != nil {
		t.Fatal(err)
	}
	restricted := psaapi.LevelVersion{Level: psaapi.LevelRestricted, Version: psaapi.LatestVersion()}
	if res := psapolicy.AggregateCheckResults(eval.EvaluatePod(restricted, &tmpl.ObjectMeta, &tmpl.Spec)); !res.Allowed {
		t.Errorf("the platform Deployment fails the restricted Pod Security Standard: %s", res.ForbiddenReason())
	}
}
