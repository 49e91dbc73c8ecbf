package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	pgfake "github.com/plugipay-sync/plugipay-sync/destination/paygate/fake"
	"github.com/plugipay-sync/plugipay-sync/plugipay/emulator"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

// Issue 14: one writer per state DB, bound to one destination account,
// honest about outages. These tests run the real program, as child
// processes where two must run at once.

// startChildren starts one --once child per config at the same moment and
// returns their exit codes and outputs.
func runChildrenAtOnce(t *testing.T, configs []string, extra ...string) ([]int, []string) {
	t.Helper()
	cmds := make([]*exec.Cmd, len(configs))
	outs := make([]*bytes.Buffer, len(configs))
	for i, c := range configs {
		cmds[i] = exec.Command(os.Args[0], append([]string{"--config", c, "--once"}, extra...)...)
		cmds[i].Env = append(os.Environ(), "PLUGIPAY_SYNC_AS_MAIN=1", "TEST_SECRET="+testSecret)
		outs[i] = new(bytes.Buffer)
		cmds[i].Stdout, cmds[i].Stderr = outs[i], outs[i]
	}
	for _, c := range cmds {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
	}
	codes := make([]int, len(cmds))
	texts := make([]string, len(cmds))
	for i, c := range cmds {
		_ = c.Wait()
		codes[i], texts[i] = c.ProcessState.ExitCode(), outs[i].String()
	}
	return codes, texts
}

// assertOneLocked checks that of two runs at once one synced and the
// other refused with ExitLocked, naming the holder.
func assertOneLocked(t *testing.T, codes []int, outs []string) {
	t.Helper()
	locked, ok := -1, -1
	for i, c := range codes {
		switch c {
		case ExitLocked:
			locked = i
		case ExitOK:
			ok = i
		}
	}
	if locked < 0 || ok < 0 {
		t.Fatalf("exit codes %v, want one %d and one %d:\n--- first\n%s\n--- second\n%s", codes, ExitOK, ExitLocked, outs[0], outs[1])
	}
	for _, want := range []string{"locked by another writer", "held by pid", "plugipay-sync --once", "--wait-lock"} {
		if !strings.Contains(outs[locked], want) {
			t.Errorf("the refused run's output lacks %q:\n%s", want, outs[locked])
		}
	}
}

func TestWriterLock_TwoOnceAgainstEmulator(t *testing.T) {
	const n = 200
	dir := t.TempDir()
	// Latency keeps the first run busy while the second starts.
	e := newE2E(t, writeUsers(t, filepath.Join(dir, "u.csv"), n), emulator.Options{Faults: emulator.Faults{Latency: 10 * time.Millisecond}})
	codes, outs := runChildrenAtOnce(t, []string{e.config, e.config})
	assertOneLocked(t, codes, outs)
	if got := e.emu.CustomerCount(); got != n {
		t.Errorf("%d customers, want %d", got, n)
	}
	e.assertNoDuplicates()
	if c := statusCount(t, e.emu, http.MethodPost, "409"); c != 0 {
		t.Errorf("%d creates answered 409, want 0", c)
	}

	// With --wait-lock the second waits its turn and then has nothing to do.
	mustSetFaults(t, e.emu, emulator.Faults{})
	before := e.writes()
	codes, outs = runChildrenAtOnce(t, []string{e.config, e.config}, "--wait-lock", "1m")
	if codes[0] != ExitOK || codes[1] != ExitOK {
		t.Fatalf("with --wait-lock: exit codes %v:\n%s\n%s", codes, outs[0], outs[1])
	}
	if w := e.writes() - before; w != 0 {
		t.Errorf("two unchanged runs made %d writes", w)
	}
}

func TestWriterLock_TwoOnceAgainstPayGate(t *testing.T) {
	const n = 200
	// PayGate has no unique external id: without the lock, two runs each
	// create the users the other has not confirmed yet.
	p := newPayGate(t, n, pgfake.Options{Faults: pgfake.Faults{Latency: 10 * time.Millisecond}})
	codes, outs := runChildrenAtOnce(t, []string{p.config, p.config})
	assertOneLocked(t, codes, outs)
	assertEachUserOnce(t, p.fake, n)
}

// A daemon holds the lock for its whole life: a --once started beside it
// refuses, naming the daemon; once the daemon is killed with SIGKILL the
// kernel frees the lock and the next --once runs (no timeout guesses).
func TestWriterLock_DaemonThenOnceThenKill(t *testing.T) {
	dir := t.TempDir()
	e := newE2E(t, writeUsers(t, filepath.Join(dir, "u.csv"), 30), emulator.Options{})
	daemon := exec.Command(os.Args[0], "--config", e.config)
	daemon.Env = append(os.Environ(), "PLUGIPAY_SYNC_AS_MAIN=1", "TEST_SECRET="+testSecret)
	var dout bytes.Buffer
	daemon.Stdout, daemon.Stderr = &dout, &dout
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { daemon.Process.Kill(); daemon.Wait() })
	deadline := time.Now().Add(20 * time.Second)
	for e.emu.CustomerCount() < 30 {
		if time.Now().After(deadline) {
			t.Fatalf("the daemon's first run did not finish:\n%s", dout.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	code, out := runChild(t, e.config)
	if code != ExitLocked {
		t.Fatalf("--once beside a daemon: exit %d, want %d:\n%s", code, ExitLocked, out)
	}
	if want := fmt.Sprintf("held by pid %d", daemon.Process.Pid); !strings.Contains(out, want) || !strings.Contains(out, "plugipay-sync daemon") {
		t.Errorf("the refusal does not name the daemon (%q):\n%s", want, out)
	}

	if err := daemon.Process.Signal(os.Kill); err != nil {
		t.Fatal(err)
	}
	daemon.Wait()
	code, out = runChild(t, e.config)
	if code != ExitOK {
		t.Fatalf("--once after the daemon was killed: exit %d:\n%s", code, out)
	}
	e.assertNoDuplicates()
	if c := statusCount(t, e.emu, http.MethodPost, "409"); c != 0 {
		t.Errorf("%d creates answered 409, want 0", c)
	}
}

// moveEmulator points e at a new, empty emulator accepting keyID/secret,
// as a restarted emulator, a reset workspace or another key would be.
func moveEmulator(t *testing.T, e *e2e, csv, secret string) {
	t.Helper()
	e.emu = emulator.New(emulator.Options{Keys: map[string]string{testKeyID: secret}})
	srv := httptest.NewServer(e.emu)
	t.Cleanup(srv.Close)
	e.url = srv.URL
	e.writeConfig(csv, "@every 1h")
}

func TestIdentity_EmulatorRestartedEmpty(t *testing.T) {
	const n = 25
	dir := t.TempDir()
	csv := writeUsers(t, filepath.Join(dir, "u.csv"), n)
	e := newE2E(t, csv, emulator.Options{})
	if code, out := e.once(); code != ExitOK {
		t.Fatalf("first sync: exit %d:\n%s", code, out)
	}

	moveEmulator(t, e, csv, testSecret)
	code, out := e.once()
	if code != ExitConfig {
		t.Fatalf("against an emptied workspace: exit %d, want %d:\n%s", code, ExitConfig, out)
	}
	for _, want := range []string{"not the account the state DB mirrors", "none of 3 mapped customers"} {
		if !strings.Contains(out, want) {
			t.Errorf("the refusal lacks %q:\n%s", want, out)
		}
	}
	hint := explain(&sync.IdentityError{Reason: "x"}).Error()
	for _, want := range []string{"rebuild-cache --rebind", "point state.path at a new file"} {
		if !strings.Contains(hint, want) {
			t.Errorf("the identity hint lacks %q:\n%s", want, hint)
		}
	}
	if w := e.writes(); w != 0 {
		t.Fatalf("%d writes before the refusal", w)
	}

	code, out, _ = commandInProcess(t, e.config, "rebuild-cache", "--rebind")
	if code != ExitOK {
		t.Fatalf("rebuild-cache --rebind: exit %d:\n%s", code, out)
	}
	wantSummary(t, out, fmt.Sprintf("forgotten %d", n))
	code, out = e.once()
	if code != ExitOK {
		t.Fatalf("after --rebind: exit %d:\n%s", code, out)
	}
	wantSummary(t, out, fmt.Sprintf("created %d", n))
	if got := e.emu.CustomerCount(); got != n {
		t.Errorf("%d customers after the rebind, want %d", got, n)
	}
	e.assertNoDuplicates()
	if c := statusCount(t, e.emu, http.MethodPost, "409"); c != 0 {
		t.Errorf("%d creates answered 409", c)
	}
	if code, out = e.once(); code != ExitOK || !strings.Contains(out, fmt.Sprintf("unchanged %d", n)) {
		t.Fatalf("the run after: exit %d:\n%s", code, out)
	}
}

func TestIdentity_KeyOfTheOtherMode(t *testing.T) {
	dir := t.TempDir()
	csv := writeUsers(t, filepath.Join(dir, "u.csv"), 5)
	e := newE2E(t, csv, emulator.Options{})
	if code, out := e.once(); code != ExitOK {
		t.Fatalf("first sync: exit %d:\n%s", code, out)
	}
	const live = "sk_live_e2e_secret"
	moveEmulator(t, e, csv, live)
	code, out, errOut := onceWithSecret(t, e.config, live)
	out += errOut
	if code != ExitConfig || !strings.Contains(out, "mode differ") || !strings.Contains(out, "mode=test") || !strings.Contains(out, "mode=live") {
		t.Fatalf("a live key on a test state DB: exit %d, want %d naming both modes:\n%s", code, ExitConfig, out)
	}
	if strings.Contains(out, live) {
		t.Fatal("the secret appeared in the output")
	}
	if w := e.writes(); w != 0 {
		t.Fatalf("%d writes with the other mode's key", w)
	}
}

// A revoked or rotated secret is found even when nothing changed: the run
// proves its credentials with a read, fails with the config exit code, and
// a daemon turns not ready.
func TestWrongSecret_NothingChanged(t *testing.T) {
	dir := t.TempDir()
	csv := writeUsers(t, filepath.Join(dir, "u.csv"), 10)
	e := newE2E(t, csv, emulator.Options{})
	if code, out := e.once(); code != ExitOK {
		t.Fatalf("first sync: exit %d:\n%s", code, out)
	}
	code, out, _ := onceWithSecret(t, e.config, "sk_test_rotated_away")
	if code != ExitConfig || !strings.Contains(out, "invalid_signature") {
		t.Fatalf("unchanged run with a wrong secret: exit %d, want %d and invalid_signature:\n%s", code, ExitConfig, out)
	}

	e.writeConfig(csv, "@every 1s")
	var dout, derr bytes.Buffer
	m := NewMain(&dout, &derr)
	m.LookupEnv = env(map[string]string{"TEST_SECRET": "sk_test_rotated_away"})
	addr := make(chan string, 1)
	m.Ready = func(a string) { addr <- a }
	if err := m.ParseFlags([]string{"--config", e.config}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	base := "http://" + <-addr
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			var b bytes.Buffer
			b.ReadFrom(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(b.String(), "invalid_signature") {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon stayed ready with a wrong secret:\n%s", derr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A server asking to wait a day is not obeyed: each write fails at once
// with the wait in its message, the circuit breaker stops the run after
// sync.break_after of them, and --once exits with the transient code well
// within the cap. Reads pass, so the run gets as far as its writes.
func TestRetryAfterADay(t *testing.T) {
	dir := t.TempDir()
	csv := writeUsers(t, filepath.Join(dir, "u.csv"), 40)
	e := newE2E(t, csv, emulator.Options{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			w.Header().Set("Retry-After", "86400")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprint(w, `{"data":null,"error":{"code":"rate_limited","message":"slow down"},"meta":{"requestId":"req_day"}}`)
			return
		}
		e.emu.ServeHTTP(w, r)
	}))
	defer srv.Close()
	e.url = srv.URL
	e.writeConfig(csv, "@every 1h")
	start := time.Now()
	code, out := e.once()
	took := time.Since(start)
	if code != ExitTransient {
		t.Fatalf("exit %d, want %d:\n%s", code, ExitTransient, out)
	}
	if !strings.Contains(out, "Retry-After 24h0m0s is more than the 1m0s this client waits") {
		t.Errorf("the error does not say why:\n%s", out)
	}
	if took > 30*time.Second {
		t.Errorf("--once took %s against a Retry-After of a day", took)
	}
	var failed int
	if m := regexp.MustCompile(`failed (\d+)`).FindStringSubmatch(out); m != nil {
		failed, _ = strconv.Atoi(m[1])
	}
	// 10 in a row open the breaker; the writes already in flight (4
	// workers) still finish; the rest are not tried.
	if !strings.Contains(out, "10 writes in a row failed") || failed < 10 || failed > 14 {
		t.Errorf("the circuit breaker did not stop the run after 10 failed writes (failed %d of 40):\n%s", failed, out)
	}
}

// A hanging API (every write executes and is never answered) no longer
// holds each changed record for its whole timeout: the circuit breaker
// stops the run after sync.break_after writes in a row time out, the run
// is failed (exit 3), and the next run finishes the work without a
// duplicate.
func TestCircuitBreaker_HangingAPI(t *testing.T) {
	const n = 400
	dir := t.TempDir()
	csv := writeUsers(t, filepath.Join(dir, "u.csv"), n)
	e := newE2E(t, csv, emulator.Options{})
	testConfig{Schedule: "@every 1h", Listen: "127.0.0.1:0", State: e.state, BaseURL: e.url, CSV: csv, Timeout: "100ms",
		MaxAttempts: 2, Concurrency: 4, RetryMin: "1ms", RetryMax: "1ms", LogLevel: "error"}.write(t, e.config)
	mustSetFaults(t, e.emu, emulator.Faults{TimeoutRate: 1, HangTimeout: 2 * time.Second})
	start := time.Now()
	code, out := e.once()
	took := time.Since(start)
	if code != ExitTransient || !strings.Contains(out, "10 writes in a row failed") {
		t.Fatalf("exit %d, want %d and the breaker's reason:\n%s", code, ExitTransient, out)
	}
	// 400 hanging writes at 4 workers and 2 attempts of 100 ms would take
	// 20 s; the breaker stops after about 10.
	if took > 10*time.Second {
		t.Errorf("a run against a hanging API took %s", took)
	}
	t.Logf("stopped after %s:\n%s", took.Round(time.Millisecond), out)

	mustSetFaults(t, e.emu, emulator.Faults{})
	if code, out := e.once(); code != ExitOK {
		t.Fatalf("the run after: exit %d:\n%s", code, out)
	}
	if got := e.emu.CustomerCount(); got != n {
		t.Errorf("%d customers, want %d", got, n)
	}
	e.assertNoDuplicates()
}
