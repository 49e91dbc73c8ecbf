package main

import (
	"bytes"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/plugipay-sync/plugipay-sync/plugipay/emulator"
)

// TestDaemon_ReloadOnSIGHUP runs the real daemon, sends SIGHUP with a bad
// config (rejected, metric set, old config keeps running), then with a good
// one that changes the source and the schedule (taken into use).
func TestDaemon_ReloadOnSIGHUP(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a child process; skipped with -short")
	}
	dir := t.TempDir()
	small := writeUsers(t, filepath.Join(dir, "small.csv"), 10)
	large := writeUsers(t, filepath.Join(dir, "large.csv"), 15)
	e := newE2E(t, small, emulator.Options{})
	port := freePort(t)
	setListen := func() {
		b, err := os.ReadFile(e.config)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(e.config, []byte(strings.Replace(string(b), `listen: "127.0.0.1:0"`, `listen: "127.0.0.1:`+port+`"`, 1)), 0o600)
	}
	setListen()
	base := "http://127.0.0.1:" + port

	cmd := exec.Command(os.Args[0], "--config", e.config)
	cmd.Env = append(os.Environ(), "PLUGIPAY_SYNC_AS_MAIN=1", "TEST_SECRET="+testSecret)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s:\n%s", what, logs.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	metric := func(line string) func() bool {
		return func() bool { return strings.Contains(scrape(base+"/metrics"), line) }
	}
	waitFor("the first run", func() bool { return e.emu.CustomerCount() == 10 })

	if err := os.WriteFile(e.config, []byte("shedule: nope\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor("the bad config to be rejected", metric("plugipay_sync_config_last_reload_successful 0"))
	if !strings.Contains(scrape(base+"/healthz"), "ok") {
		t.Fatal("daemon unhealthy after a rejected reload")
	}

	e.writeConfig(large, "@every 1s")
	setListen()
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor("the good config to be loaded", metric("plugipay_sync_config_last_reload_successful 1"))
	waitFor("a run of the new schedule and source", func() bool { return e.emu.CustomerCount() == 15 })

	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, logs.String())
	}
	for _, want := range []string{"config reload failed; keeping the running config", "field shedule not found"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("logs lack %q", want)
		}
	}
}

// scrape GETs url, returning "" on any error (the daemon may be starting).
func scrape(url string) string {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return b.String()
}
