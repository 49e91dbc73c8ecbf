package main

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/plugipay-sync/plugipay-sync/plugipay/emulator"
)

// crashUsers is how many users the crash test backfills.
const crashUsers = 1500

// killPoint is one SIGKILL of a --once child: after delay when target is
// 0, otherwise once the emulator holds target customers.
type killPoint struct {
	delay    time.Duration
	target   int
	timeouts bool // "executed then timed out" writes injected meanwhile
}

func (k killPoint) String() string {
	s := fmt.Sprintf("after %s", k.delay)
	if k.target > 0 {
		s = fmt.Sprintf("at %d customers", k.target)
	}
	if k.timeouts {
		s += " with timeouts"
	}
	return s
}

// crashSchedule draws the kill points: two early ones (before any write,
// the first while the state DB is being created), eight spread over the
// backfill, two near its end, with "executed then timed out" writes on
// for four of the spread ones.
func crashSchedule(rng *rand.Rand) []killPoint {
	var ks []killPoint
	for range 2 {
		ks = append(ks, killPoint{delay: time.Duration(rng.IntN(40)) * time.Millisecond})
	}
	const spread, lo, hi = 8, 30, 1440
	faulted := rng.Perm(spread)[:4]
	for i := range spread {
		seg := (hi - lo) / spread
		k := killPoint{target: lo + i*seg + rng.IntN(seg)}
		for _, f := range faulted {
			k.timeouts = k.timeouts || f == i
		}
		ks = append(ks, k)
	}
	ks = append(ks, killPoint{target: 1460 + rng.IntN(15)}, killPoint{target: 1485 + rng.IntN(12)})
	return ks
}

// TestCrash_KillNine runs the real program as a child process doing --once
// backfills, kills it with SIGKILL at random moments (seeded; set
// PLUGIPAY_SYNC_CRASH_SEED to replay a run), restarts it each time, then
// lets a last run finish. Issue 4 item 10: a crash never duplicates a
// customer, never loses a confirmed mapping, and the next run finishes the
// work. Because every create's idempotency key is stored before the call,
// a write executed by a killed process is replayed by the next one, never
// re-sent under a new key: so not one create may answer 409 conflict.
func TestCrash_KillNine(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes; skipped with -short")
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("PLUGIPAY_SYNC_CRASH_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("PLUGIPAY_SYNC_CRASH_SEED: %v", err)
		}
	}
	t.Logf("seed %d (replay with PLUGIPAY_SYNC_CRASH_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed))

	dir := t.TempDir()
	csvPath := writeUsers(t, filepath.Join(dir, "u.csv"), crashUsers)
	latency := emulator.Faults{Latency: 3 * time.Millisecond}
	emu := emulator.New(emulator.Options{Keys: map[string]string{testKeyID: testSecret}, Faults: latency, Seed: seed})
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	statePath := filepath.Join(dir, "state.db")
	config := filepath.Join(dir, "config.yaml")
	writeCrashConfig(t, config, statePath, srv.URL, csvPath)

	start := time.Now()
	kills, prevMapped := 0, 0
	for i, k := range crashSchedule(rng) {
		cur := emu.CustomerCount()
		if k.target > 0 && k.target <= cur {
			k.target = cur + 1 + rng.IntN(5)
		}
		if k.target >= crashUsers {
			k = killPoint{delay: time.Duration(rng.IntN(100)) * time.Millisecond, timeouts: k.timeouts}
		}
		if k.timeouts {
			mustSetFaults(t, emu, emulator.Faults{Latency: latency.Latency, TimeoutRate: 0.2, HangTimeout: 200 * time.Millisecond})
		}
		before := emu.CustomerCount()
		killed, out := runAndKill(t, config, emu, k)
		mustSetFaults(t, emu, latency)
		if killed {
			kills++
		}
		mapped := checkState(t, statePath, emu)
		t.Logf("kill %2d %-32s killed=%-5v customers %4d -> %4d, mapped %4d", i+1, k, killed, before, emu.CustomerCount(), mapped)
		if !killed {
			t.Logf("child finished before the kill point:\n%s", out)
		}
		if mapped < prevMapped {
			t.Fatalf("after kill %d the state maps %d customers, %d before: a confirmed mapping was lost", i+1, mapped, prevMapped)
		}
		prevMapped = mapped
	}
	if kills < 10 {
		t.Fatalf("only %d of the kill points killed a running child; want at least 10", kills)
	}

	code, out := runChild(t, config)
	if code != ExitOK {
		t.Fatalf("final run exit %d:\n%s", code, out)
	}
	t.Logf("%d kills; final run: %s; %d writes executed, %d replayed, total %s",
		kills, firstLine(out), emu.WritesExecuted(), emu.Replays(), time.Since(start).Round(time.Millisecond))

	if n := emu.CustomerCount(); n != crashUsers {
		t.Errorf("emulator holds %d customers, want %d", n, crashUsers)
	}
	seen := map[string]int{}
	for _, c := range emu.Customers() {
		seen[c.ExternalID]++
	}
	for i := range crashUsers {
		id := fmt.Sprintf("usr_%05d", i)
		if seen[id] != 1 {
			t.Errorf("externalId %s has %d customers, want exactly 1", id, seen[id])
		}
	}
	if mapped := checkState(t, statePath, emu); mapped != emu.CustomerCount() {
		t.Errorf("state maps %d customers, emulator holds %d", mapped, emu.CustomerCount())
	}
	db := openRaw(t, statePath)
	defer db.Close()
	for table, want := range map[string]int{"pending_writes": 0, "failures": 0} {
		var n int
		if err := db.QueryRow(`SELECT COUNT(*) FROM ` + table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != want {
			t.Errorf("%s holds %d rows after the final run, want %d", table, n, want)
		}
	}
	if n := statusCount(t, emu, http.MethodPost, "409"); n != 0 {
		t.Errorf("%d creates answered 409: a write of a killed process was re-sent under a new idempotency key", n)
	}
	if emu.Replays() == 0 {
		t.Error("no write was replayed: the timeout faults were not exercised")
	}

	// The history, as `status` shows it from the crashed-into state DB:
	// every killed run is marked aborted by the run after it.
	code, out, errOut := runCommand(t, "status", "--state", statePath, "--runs", "100", "--output", "json")
	if code != ExitOK {
		t.Fatalf("status exit %d: %s", code, errOut)
	}
	var rep statusReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	aborted := 0
	for i, r := range rep.Runs {
		switch {
		case i == 0 && r.Outcome != "success":
			t.Errorf("last run outcome %q, want success", r.Outcome)
		case i > 0 && r.Outcome == "aborted":
			aborted++
		case i > 0:
			t.Errorf("run %d outcome %q, want aborted (every earlier run was killed)", r.ID, r.Outcome)
		}
	}
	// The early kills may land before the child records its run.
	if aborted < kills-2 {
		t.Errorf("%d runs marked aborted, want at least %d", aborted, kills-2)
	}
	if rep.Mappings != crashUsers || rep.Failures.Total != 0 {
		t.Errorf("status: %d mappings, %d failures; want %d, 0", rep.Mappings, rep.Failures.Total, crashUsers)
	}
	t.Logf("status: %d runs, %d aborted", len(rep.Runs), aborted)
}

// writeCrashConfig writes the crash test's config: a 100ms client timeout
// (shorter than the emulator's 200ms hang, so "executed then timed out"
// writes are retried under their stored key) and a 1ms record backoff, so
// the final run retries every record that failed.
func writeCrashConfig(t *testing.T, path, statePath, url, csvPath string) {
	t.Helper()
	testConfig{Schedule: "@every 1h", State: statePath, BaseURL: url, CSV: csvPath, Timeout: "100ms",
		MaxAttempts: 3, Concurrency: 4, RetryMin: "1ms", RetryMax: "1ms", LogLevel: "error",
		Metadata: "{plan: plan, city: city}"}.write(t, path)
}

func childCommand(config string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "--config", config, "--once")
	cmd.Env = append(os.Environ(), "PLUGIPAY_SYNC_AS_MAIN=1", "TEST_SECRET="+testSecret)
	return cmd
}

// runAndKill starts a --once child and SIGKILLs it at k. killed is false
// when the child exited by itself first.
func runAndKill(t *testing.T, config string, emu *emulator.Server, k killPoint) (killed bool, out string) {
	t.Helper()
	cmd := childCommand(config)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.After(30 * time.Second)
	var at <-chan time.Time
	if k.target == 0 {
		at = time.After(k.delay)
	}
	tick := time.NewTicker(500 * time.Microsecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return false, buf.String()
		case <-deadline:
			cmd.Process.Kill()
			<-done
			t.Fatalf("child neither reached %s nor exited in 30 s:\n%s", k, buf.String())
		case <-at:
		case <-tick.C:
			if k.target == 0 || emu.CustomerCount() < k.target {
				continue
			}
		}
		if err := cmd.Process.Signal(os.Kill); err != nil {
			t.Fatal(err)
		}
		<-done
		// ExitCode is -1 for a process ended by a signal; anything else
		// exited on its own between the check and the signal.
		return cmd.ProcessState.ExitCode() == -1, buf.String()
	}
}

// runChild runs a --once child to its end.
func runChild(t *testing.T, config string) (int, string) {
	t.Helper()
	cmd := childCommand(config)
	out, err := cmd.CombinedOutput()
	if err != nil && cmd.ProcessState == nil {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

// checkState runs PRAGMA integrity_check on the state file and checks that
// every mapping names the customer the emulator holds for its externalId
// (a mapping is stored only after the write was confirmed). It returns the
// number of mappings.
func checkState(t *testing.T, path string, emu *emulator.Server) int {
	t.Helper()
	if _, err := os.Stat(path); os.IsNotExist(err) {
		return 0 // killed before the state DB was created
	}
	db := openRaw(t, path)
	defer db.Close()
	var res string
	if err := db.QueryRow(`PRAGMA integrity_check`).Scan(&res); err != nil {
		t.Fatalf("integrity_check: %v", err)
	}
	if res != "ok" {
		t.Fatalf("integrity_check: %s", res)
	}
	var tables int
	if err := db.QueryRow(`SELECT COUNT(*) FROM sqlite_master WHERE name = 'mappings'`).Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables == 0 {
		return 0 // killed before the schema was created
	}
	rows, err := db.Query(`SELECT external_id, customer_id FROM mappings`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var ext, id string
		if err := rows.Scan(&ext, &id); err != nil {
			t.Fatal(err)
		}
		c, ok := emu.CustomerByExternalID(ext)
		if !ok || c.ID != id {
			t.Fatalf("mapping %s -> %s, but the emulator holds %+v (found %v)", ext, id, c, ok)
		}
		n++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// openRaw opens the state file with the plain mattn driver, as a tool
// inspecting it would. The caller closes it.
func openRaw(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	if err := db.Ping(); err != nil {
		t.Fatal(err)
	}
	return db
}

func mustSetFaults(t *testing.T, emu *emulator.Server, f emulator.Faults) {
	t.Helper()
	if err := emu.SetFaults(f); err != nil {
		t.Fatal(err)
	}
}

// statusCount returns how many requests with method the emulator answered
// with status, from its request metric.
func statusCount(t *testing.T, emu *emulator.Server, method, status string) int {
	t.Helper()
	mfs, err := emu.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		if mf.GetName() != "plugipay_mock_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["method"] == method && labels["status"] == status {
				n += int(m.GetCounter().GetValue())
			}
		}
	}
	return n
}

func firstLine(s string) string {
	if i := bytes.IndexByte([]byte(s), '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
