package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/plugipay-sync/plugipay-sync/plugipay/emulator"
)

// EnvSoak turns the soak test on and sets its duration, e.g.
// PLUGIPAY_SYNC_SOAK=10m (make soak). Without it the test skips.
const EnvSoak = "PLUGIPAY_SYNC_SOAK"

// soakSample is one scrape of the daemon's own process metrics.
type soakSample struct {
	at         time.Duration
	goroutines float64
	fds        float64
	rss        float64
}

// TestSoak is issue 8 item 6: the daemon, a real child process, on a
// one-second schedule against the emulator with random faults, while the
// CRM file is rewritten every few seconds. Its goroutines, open file
// descriptors and resident memory, scraped from its /metrics, must stay
// flat: after a warm-up, the median of the last quarter of the samples
// within a bound of the median of the first quarter. No run may start
// before the one before it finished (the runs table). Run it without the
// race detector (make soak), whose shadow memory grows on its own.
func TestSoak(t *testing.T) {
	dur := os.Getenv(EnvSoak)
	if dur == "" {
		t.Skipf("set %s to a duration (make soak) to run the soak test", EnvSoak)
	}
	total, err := time.ParseDuration(dur)
	if err != nil || total < 20*time.Second {
		t.Fatalf("%s=%q: want a duration of at least 20s", EnvSoak, dur)
	}
	seed := testSeed(t, "PLUGIPAY_SYNC_SOAK_SEED")
	rng := rand.New(rand.NewPCG(seed, seed))

	dir := t.TempDir()
	csvPath := filepath.Join(dir, "users.csv")
	const users = 400
	rewriteSoakCSV(t, csvPath, users, rng, 0)
	emu := emulator.New(emulator.Options{
		Keys: map[string]string{testKeyID: testSecret},
		Faults: emulator.Faults{
			Latency: time.Millisecond, LatencyJitter: 4 * time.Millisecond,
			ErrorRate: 0.05, RateLimitRate: 0.02, DropRate: 0.02, TimeoutRate: 0.02,
			HangTimeout: 2 * time.Second, RetryAfter: 1,
		},
		Seed: seed,
	})
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := ln.Addr().String()
	ln.Close()
	statePath := filepath.Join(dir, "state.db")
	config := filepath.Join(dir, "config.yaml")
	testConfig{Schedule: "@every 1s", Listen: listen, State: statePath, BaseURL: srv.URL, CSV: csvPath,
		Timeout: "500ms", MaxAttempts: 3, Concurrency: 8, RetryMin: "1s", RetryMax: "5s", LogLevel: "error",
		Metadata: "{plan: plan, city: city}"}.write(t, config)

	cmd := exec.Command(os.Args[0], "--config", config)
	cmd.Env = append(os.Environ(), "PLUGIPAY_SYNC_AS_MAIN=1", "TEST_SECRET="+testSecret)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	exited := false
	defer func() {
		if !exited {
			cmd.Process.Kill()
			<-done
		}
	}()

	start := time.Now()
	var samples []soakSample
	sample := time.NewTicker(2 * time.Second)
	defer sample.Stop()
	rewrite := time.NewTicker(3 * time.Second)
	defer rewrite.Stop()
	end := time.After(total)
	generation := 0
loop:
	for {
		select {
		case err := <-done:
			exited = true
			t.Fatalf("daemon exited early: %v\n%s", err, lastLines(logs.String(), 40))
		case <-end:
			break loop
		case <-rewrite.C:
			generation++
			rewriteSoakCSV(t, csvPath, users, rng, generation)
		case <-sample.C:
			m, err := scrapeSeries("http://" + listen + "/metrics")
			if err != nil {
				continue // not listening yet
			}
			samples = append(samples, soakSample{at: time.Since(start), goroutines: m["go_goroutines"], fds: m["process_open_fds"], rss: m["process_resident_memory_bytes"]})
		}
	}
	final, err := scrapeSeries("http://" + listen + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		exited = true
		if err != nil {
			t.Fatalf("daemon exited with %v after SIGTERM:\n%s", err, lastLines(logs.String(), 40))
		}
	case <-time.After(30 * time.Second):
		t.Fatal("daemon still running 30 s after SIGTERM")
	}

	// Flat resources: skip the first tenth as warm-up, then compare the
	// medians of the first and the last quarter of the rest.
	if len(samples) < 8 {
		t.Fatalf("only %d samples", len(samples))
	}
	rest := samples[len(samples)/10:]
	q := len(rest) / 4
	first, last := rest[:q], rest[len(rest)-q:]
	med := func(s []soakSample, f func(soakSample) float64) float64 {
		v := make([]float64, len(s))
		for i, x := range s {
			v[i] = f(x)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	for _, c := range []struct {
		name  string
		f     func(soakSample) float64
		bound func(first float64) float64
	}{
		{"go_goroutines", func(s soakSample) float64 { return s.goroutines }, func(f float64) float64 { return f + 10 }},
		{"process_open_fds", func(s soakSample) float64 { return s.fds }, func(f float64) float64 { return f + 10 }},
		{"process_resident_memory_bytes", func(s soakSample) float64 { return s.rss }, func(f float64) float64 { return f*1.25 + 16<<20 }},
	} {
		a, b := med(first, c.f), med(last, c.f)
		t.Logf("%s: first-quarter median %.0f, last-quarter median %.0f (bound %.0f), max %.0f", c.name, a, b, c.bound(a), maxOf(samples, c.f))
		if b > c.bound(a) {
			t.Errorf("%s grew: first-quarter median %.0f, last-quarter median %.0f, bound %.0f", c.name, a, b, c.bound(a))
		}
	}

	runs := soakRuns(t, statePath)
	for i := 1; i < len(runs); i++ {
		prev, cur := runs[i-1], runs[i]
		if prev.finished == 0 || cur.started < prev.finished {
			t.Errorf("run %d started at %d before run %d finished at %d", cur.id, cur.started, prev.id, prev.finished)
		}
	}
	outcomes := map[string]int{}
	for _, r := range runs {
		outcomes[r.outcome]++
	}
	t.Logf("%s: %d samples, %d CRM rewrites, %d runs %v, %d customers, %d requests to the emulator, runs_total %v",
		time.Since(start).Round(time.Second), len(samples), generation, len(runs), outcomes, emu.CustomerCount(), emu.TotalRequests(),
		final[`plugipay_sync_runs_total{outcome="success"}`])
	// A run under faults takes a few seconds; the ticks meanwhile are
	// skipped, not queued.
	if len(runs) < int(total/(10*time.Second)) {
		t.Errorf("only %d runs in %s on a 1-second schedule", len(runs), total)
	}
	if outcomes["success"] == 0 {
		t.Error("no run succeeded")
	}
}

func maxOf(s []soakSample, f func(soakSample) float64) float64 {
	m := 0.0
	for _, x := range s {
		m = max(m, f(x))
	}
	return m
}

// rewriteSoakCSV replaces the CRM file through a rename, as an export job
// would: the generation changes some names and plans, drops a few users
// and adds a few.
func rewriteSoakCSV(t *testing.T, path string, n int, rng *rand.Rand, generation int) {
	t.Helper()
	plans := []string{"free", "pro", "business"}
	var b strings.Builder
	b.WriteString("id,email,full_name,plan,city\n")
	for i := range n + generation%7 {
		if rng.IntN(50) == 0 {
			continue // gone from this export
		}
		name := fmt.Sprintf("Pengguna %d", i)
		if rng.IntN(10) == 0 {
			name += fmt.Sprintf(" v%d", generation)
		}
		fmt.Fprintf(&b, "usr_%05d,user%d@example.co.id,%s,%s,Bandung\n", i, i, name, plans[rng.IntN(len(plans))])
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// scrapeSeries reads the unlabelled and labelled samples of a Prometheus text
// page into a map keyed by the series as written.
func scrapeSeries(url string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}

type soakRun struct {
	id                int64
	started, finished int64
	outcome           string
}

func soakRuns(t *testing.T, statePath string) []soakRun {
	t.Helper()
	db := openRaw(t, statePath)
	defer db.Close()
	rows, err := db.Query(`SELECT id, started_at, COALESCE(finished_at, 0), outcome FROM runs ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var runs []soakRun
	for rows.Next() {
		var r soakRun
		if err := rows.Scan(&r.id, &r.started, &r.finished, &r.outcome); err != nil {
			t.Fatal(err)
		}
		runs = append(runs, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return runs
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
