package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/plugipay-sync/plugipay-sync/plugipay/emulator"
)

// createdSoFar scrapes records_total{action="created"} from base/metrics;
// -1 when it cannot.
func createdSoFar(t *testing.T, base string) float64 {
	t.Helper()
	code, body := getStatus(t, base+"/metrics")
	if code != 200 {
		return -1
	}
	m := regexp.MustCompile(`(?m)^plugipay_sync_records_total\{action="created"\} (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}

// TestLiveCounts: during a 600-user backfill at about 20 writes/s (30 s),
// records_total{action="created"} is above zero 10 s after the run starts,
// for the daemon and for --once (which serves /metrics while it runs).
// Before, the counters moved only when a run ended.
func TestLiveCounts(t *testing.T) {
	if testing.Short() {
		t.Skip("a 10 s backfill each; skipped with -short")
	}
	const n = 600
	slow := emulator.Options{Faults: emulator.Faults{Latency: 200 * time.Millisecond}} // 4 workers: 20 writes/s

	t.Run("Daemon", func(t *testing.T) {
		dir := t.TempDir()
		e := newE2E(t, writeUsers(t, filepath.Join(dir, "u.csv"), n), slow)
		start := time.Now()
		base, stop := startDaemon(t, e)
		defer stop()
		time.Sleep(time.Until(start.Add(10 * time.Second)))
		if got := createdSoFar(t, base); got <= 0 || e.emu.CustomerCount() >= n {
			t.Fatalf("10 s into the backfill: records_total{action=\"created\"} = %v, %d of %d customers", got, e.emu.CustomerCount(), n)
		}
	})

	t.Run("Once", func(t *testing.T) {
		dir := t.TempDir()
		e := newE2E(t, writeUsers(t, filepath.Join(dir, "u.csv"), n), slow)
		port := freePort(t)
		testConfig{Schedule: "@every 1h", Listen: "127.0.0.1:" + port, State: e.state, BaseURL: e.url,
			CSV: filepath.Join(dir, "u.csv"), MaxAttempts: 2, Concurrency: 4, LogLevel: "warn"}.write(t, e.config)
		cmd := exec.Command(os.Args[0], "--config", e.config, "--once")
		cmd.Env = append(os.Environ(), "PLUGIPAY_SYNC_AS_MAIN=1", "TEST_SECRET="+testSecret)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		start := time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		time.Sleep(time.Until(start.Add(10 * time.Second)))
		if got := createdSoFar(t, "http://127.0.0.1:"+port); got <= 0 || e.emu.CustomerCount() >= n {
			t.Fatalf("10 s into a --once backfill: records_total{action=\"created\"} = %v, %d of %d customers:\n%s", got, e.emu.CustomerCount(), n, out.String())
		}
	})
}
