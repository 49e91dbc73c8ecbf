package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	pgfake "github.com/plugipay-sync/plugipay-sync/destination/paygate/fake"
	pinfake "github.com/plugipay-sync/plugipay-sync/destination/pin/fake"
	"github.com/plugipay-sync/plugipay-sync/plugipay/emulator"
)

// TestRealPrometheus_Outage runs the shipped alert rules in a real
// Prometheus scraping a real daemon (issue 14):
//   - the daemon is restarted and its first run is long (new users written
//     slowly): nothing fires, because the last success is restored from
//     the run history and the run keeps moving;
//   - the API is killed (every connection closed unanswered): the
//     failed-run alert fires, and /readyz turns not ready;
//   - the API comes back: it resolves.
//
// Alert `for:` durations are divided by timeScale (5m becomes 5s), and the
// schedule is 5 s, so the test takes about a minute; the rules' real
// durations are covered by `promtool test rules`. PLUGIPAY_LONG_TESTS=1
// runs it unscaled (an outage of 10 minutes, about 25 minutes in all).
func TestRealPrometheus_Outage(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Prometheus; skipped with -short")
	}
	prom := needTool(t, "prometheus")
	timeScale, schedule := 60, 5*time.Second
	outage := 10 * time.Minute / time.Duration(timeScale)
	if os.Getenv("PLUGIPAY_LONG_TESTS") == "1" {
		timeScale, schedule, outage = 1, time.Minute, 10*time.Minute
	}
	dir := t.TempDir()

	// The API, behind a switch that kills it.
	emu := emulator.New(emulator.Options{Keys: map[string]string{testKeyID: testSecret}})
	var down atomic.Bool
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			if hj, ok := w.(http.Hijacker); ok {
				if c, _, err := hj.Hijack(); err == nil {
					c.Close()
					return
				}
			}
		}
		emu.ServeHTTP(w, r)
	}))
	t.Cleanup(api.Close)

	csv := writeUsers(t, filepath.Join(dir, "u.csv"), 20)
	config := filepath.Join(dir, "config.yaml")
	statePath := filepath.Join(dir, "state.db")
	writeOutageConfig := func(csv string, concurrency int) {
		testConfig{Schedule: "@every " + schedule.String(), Listen: "127.0.0.1:0", State: statePath, BaseURL: api.URL, CSV: csv,
			Timeout: max(time.Second, schedule/5).String(), MaxAttempts: 2, Concurrency: concurrency, RetryMin: "1s", RetryMax: "2s", LogLevel: "error"}.write(t, config)
	}
	writeOutageConfig(csv, 4)
	e := &e2e{t: t, emu: emu, url: api.URL, dir: dir, config: config, state: statePath}
	base, stop := startDaemon(t, e)
	first := base

	// Prometheus scrapes a fixed port, so the restarted daemon is the same
	// target: a proxy in front of whichever daemon is running.
	var target atomic.Pointer[string]
	target.Store(&first)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, err := http.Get(*target.Load() + r.URL.Path)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
		w.WriteHeader(resp.StatusCode)
		var b bytes.Buffer
		b.ReadFrom(resp.Body)
		w.Write(b.Bytes())
	}))
	t.Cleanup(proxy.Close)

	rules := scaledRules(t, timeScale)
	rulesPath := filepath.Join(dir, "alerts.yaml")
	if err := os.WriteFile(rulesPath, rules, 0o600); err != nil {
		t.Fatal(err)
	}
	promAPI, logs := startPrometheus(t, prom, dir, strings.TrimPrefix(proxy.URL, "http://"), rulesPath)

	// firing lists the alerts firing now (or "" when Prometheus is not up yet).
	firing := func() string {
		res, err := promQuery(promAPI, `ALERTS{alertstate="firing",alertname=~"PlugipaySync.*",alertname!="PlugipaySyncDown"}`)
		if err != nil {
			return ""
		}
		var names []string
		for _, r := range res {
			if m := regexp.MustCompile(`"alertname":"(\w+)"`).FindStringSubmatch(string(r)); m != nil {
				names = append(names, m[1])
			}
		}
		return strings.Join(names, ",")
	}
	waitFor := func(what string, limit time.Duration, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(limit)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %s (firing: %q)\n%s", what, limit, firing(), logs.String())
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	waitFor("Prometheus scrapes a successful run", time.Minute, func() bool {
		res, err := promQuery(promAPI, `plugipay_sync_last_success_timestamp_seconds > 0`)
		return err == nil && len(res) > 0
	})
	if f := firing(); f != "" {
		t.Fatalf("alerts firing on a healthy daemon: %s", f)
	}

	// A restart whose first run is long: 200 new users written one at a
	// time, slowly, for more than three schedule intervals. Nothing fires:
	// the last success is restored from the run history, and the run keeps
	// moving.
	if code := stop(); code != ExitOK {
		t.Fatalf("daemon exit %d", code)
	}
	const users = 220
	mustSetFaults(t, emu, emulator.Faults{Latency: schedule / 25})
	writeOutageConfig(writeUsers(t, filepath.Join(dir, "more.csv"), users), 1)
	restartedAt := time.Now()
	base, _ = startDaemon(t, e)
	target.Store(&base)
	_, metrics := getStatus(t, base+"/metrics")
	m := regexp.MustCompile(`(?m)^plugipay_sync_last_success_timestamp_seconds (\S+)$`).FindStringSubmatch(metrics)
	if m == nil {
		t.Fatal("no plugipay_sync_last_success_timestamp_seconds after the restart")
	}
	if v, _ := strconv.ParseFloat(m[1], 64); time.Since(time.Unix(int64(v), 0)) > time.Minute {
		t.Fatalf("last success after the restart reads %s, not the run history's", m[1])
	}
	long := 5 * schedule
	for time.Since(restartedAt) < long {
		if f := firing(); f != "" {
			t.Fatalf("%s firing %s into a long first run after a restart", f, time.Since(restartedAt).Round(time.Second))
		}
		time.Sleep(500 * time.Millisecond)
	}
	if res, err := promQuery(promAPI, `plugipay_sync_run_in_progress == 1`); err != nil || len(res) == 0 || emu.CustomerCount() >= users {
		t.Fatalf("the first run after the restart ended within %s; the test wants a long one (%v)", long, err)
	}
	mustSetFaults(t, emu, emulator.Faults{})
	waitFor("the long run finishes", time.Minute, func() bool {
		res, err := promQuery(promAPI, `plugipay_sync_run_in_progress == 0 and plugipay_sync_failed_runs_in_a_row == 0`)
		return emu.CustomerCount() == users && err == nil && len(res) > 0
	})

	// The API is killed: every run fails, the failed-run alert fires and
	// /readyz says why.
	down.Store(true)
	killedAt := time.Now()
	waitFor("PlugipaySyncRunsFailing fires during the outage", outage, func() bool {
		return strings.Contains(firing(), "PlugipaySyncRunsFailing")
	})
	t.Logf("PlugipaySyncRunsFailing fired %s after the API was killed", time.Since(killedAt).Round(time.Second))
	if code, body := getStatus(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "unreachable") {
		t.Errorf("/readyz during the outage: %d %s", code, body)
	}
	time.Sleep(time.Until(killedAt.Add(outage)))
	down.Store(false)
	// PlugipaySyncAPIErrorRatio rightly goes on firing for a while: its
	// window still holds the outage.
	waitFor("the failed-run alert resolves once the API is back", 2*time.Minute/time.Duration(timeScale)+30*time.Second, func() bool {
		return !strings.Contains(firing(), "PlugipaySyncRunsFailing")
	})
	if code, body := getStatus(t, base+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz after the outage: %d %s", code, body)
	}
}

// scaledRules returns the shipped alert rules with every `for:` duration
// divided by scale.
func scaledRules(t *testing.T, scale int) []byte {
	t.Helper()
	b, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	if scale == 1 {
		return b
	}
	re := regexp.MustCompile(`(?m)^(\s+for: )(\d+)([smh])$`)
	return re.ReplaceAllFunc(b, func(m []byte) []byte {
		g := re.FindSubmatch(m)
		n, _ := strconv.Atoi(string(g[2]))
		d, _ := time.ParseDuration(fmt.Sprintf("%d%s", n, g[3]))
		return fmt.Appendf(nil, "%s%ds", g[1], max(1, int(d.Seconds())/scale))
	})
}

func getStatus(t *testing.T, url string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

// TestRealPrometheus_DestinationErrors: with a PayGate-style or a Pin-style
// API failing every call, plugipay_sync_api_requests_total counts the
// errors under destination="paygate" (or "pin"), and the shipped API-error
// alert fires for that destination in a real Prometheus (issue 16: only
// Plugipay was observed before). `for:` durations are divided by 60.
func TestRealPrometheus_DestinationErrors(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Prometheus; skipped with -short")
	}
	prom := needTool(t, "prometheus")
	for _, tc := range []struct {
		dest    string
		handler func(t *testing.T) (http.Handler, string) // the fake and its base path
	}{
		{DestPayGate, func(t *testing.T) (http.Handler, string) {
			return pgfake.New(pgfake.Options{Keys: []string{testSecret}, Faults: pgfake.Faults{ErrorRate: 1, Status: 500}}), "/v1"
		}},
		{DestPin, func(t *testing.T) (http.Handler, string) {
			return pinfake.New(pinfake.Options{TestKeys: []string{testSecret}, Faults: pinfake.Faults{ErrorRate: 1}}), "/1"
		}},
	} {
		t.Run(tc.dest, func(t *testing.T) {
			fake, basePath := tc.handler(t)
			srv := httptest.NewServer(fake)
			t.Cleanup(srv.Close)
			d := newDestRun(t)
			cfg := destConfig{Type: tc.dest, BaseURL: srv.URL + basePath, State: d.state,
				CSV: writeUsers(t, filepath.Join(d.dir, "u.csv"), 5), MaxAttempts: 1}
			if tc.dest == DestPin {
				cfg.Environment = "test"
			}
			cfg.write(t, d.config)
			b, err := os.ReadFile(d.config)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(d.config, bytes.Replace(b, []byte(`schedule: "@every 1h"`), []byte(`schedule: "@every 1s"`), 1), 0o600); err != nil {
				t.Fatal(err)
			}
			base, _ := startDaemon(t, &e2e{t: t, config: d.config, state: d.state})
			rules := filepath.Join(d.dir, "alerts.yaml")
			if err := os.WriteFile(rules, scaledRules(t, 60), 0o600); err != nil {
				t.Fatal(err)
			}
			api, logs := startPrometheus(t, prom, d.dir, strings.TrimPrefix(base, "http://"), rules)
			series := fmt.Sprintf(`plugipay_sync_api_requests_total{destination=%q,code="server_error"} > 0`, tc.dest) // 500, 502 and 503 alike
			alert := fmt.Sprintf(`ALERTS{alertname="PlugipaySyncAPIErrorRatio",alertstate="firing",destination=%q}`, tc.dest)
			deadline := time.Now().Add(90 * time.Second)
			for {
				s, err1 := promQuery(api, series)
				a, err2 := promQuery(api, alert)
				if err1 == nil && err2 == nil && len(s) > 0 && len(a) > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("within 90 s: %s gave %d series (%v), %s %d (%v)\n%s", series, len(s), err1, alert, len(a), err2, logs.String())
				}
				time.Sleep(500 * time.Millisecond)
			}
		})
	}
}
