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
	"slices"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/plugipay-sync/plugipay-sync/plugipay/emulator"
)

// crashUsers is how many users the crash test backfills.
const crashUsers = 1500

// killPoint is one SIGKILL of a --once child: after delay when target is
// 0, otherwise once the destination holds target customers. fault names
// the faults injected meanwhile ("" for none).
type killPoint struct {
	delay  time.Duration
	target int
	fault  string
}

func (k killPoint) String() string {
	s := fmt.Sprintf("after %s", k.delay)
	if k.target > 0 {
		s = fmt.Sprintf("at %d customers", k.target)
	}
	if k.fault != "" {
		s += " with " + k.fault
	}
	return s
}

// killSchedule draws the kill points of a backfill: two early ones
// (before any write, the first while the state DB is being created),
// eight spread over [lo, hi) customers, four of which inject fault, and
// one in each range [end[0], end[0]+end[1]) near the backfill's end.
func killSchedule(rng *rand.Rand, fault string, lo, hi int, ends ...[2]int) []killPoint {
	var ks []killPoint
	for range 2 {
		ks = append(ks, killPoint{delay: time.Duration(rng.IntN(40)) * time.Millisecond})
	}
	const spread = 8
	seg := (hi - lo) / spread
	faulted := rng.Perm(spread)[:4]
	for i := range spread {
		k := killPoint{target: lo + i*seg + rng.IntN(seg)}
		if slices.Contains(faulted, i) {
			k.fault = fault
		}
		ks = append(ks, k)
	}
	for _, e := range ends {
		ks = append(ks, killPoint{target: e[0] + rng.IntN(e[1])})
	}
	return ks
}

// crashDest is what killNine needs of the destination a crash test
// backfills.
type crashDest interface {
	// customers is how many customers the destination holds.
	customers() int
	// setFaults turns the faults of a faulted kill point on or off.
	setFaults(t *testing.T, on bool)
	// checkState checks the state file against the destination (see
	// checkMappings) and returns the number of mappings.
	checkState(t *testing.T, statePath string) int
	// afterKill reads a killed child's output and returns what the kill's
	// log line adds.
	afterKill(t *testing.T, out string) string
}

// killNine is the kill loop of the crash tests: for each kill point of
// schedule it runs a --once child on config, SIGKILLs it there (a target
// already reached moves a little past the current count; one at or past
// users becomes a short delay) and checks the state: dest.checkState
// passes and the number of mappings never decreases, since a confirmed
// mapping must never be lost. It fails the test unless at least 10 kill
// points killed a running child, and returns how many did.
func killNine(t *testing.T, rng *rand.Rand, dest crashDest, config, statePath string, users int, schedule []killPoint) int {
	t.Helper()
	kills, prevMapped := 0, 0
	for i, k := range schedule {
		cur := dest.customers()
		if k.target > 0 && k.target <= cur {
			k.target = cur + 1 + rng.IntN(5)
		}
		if k.target >= users {
			k = killPoint{delay: time.Duration(rng.IntN(100)) * time.Millisecond, fault: k.fault}
		}
		if k.fault != "" {
			dest.setFaults(t, true)
		}
		killed, out := runAndKill(t, config, dest.customers, k)
		dest.setFaults(t, false)
		if killed {
			kills++
		}
		mapped := dest.checkState(t, statePath)
		t.Logf("kill %2d %-36s killed=%-5v customers %4d -> %4d, mapped %4d%s",
			i+1, k, killed, cur, dest.customers(), mapped, dest.afterKill(t, out))
		if !killed {
			t.Logf("child finished before the kill point:\n%s", lastLines(out, 5))
		}
		if mapped < prevMapped {
			t.Fatalf("after kill %d the state maps %d customers, %d before: a confirmed mapping was lost", i+1, mapped, prevMapped)
		}
		prevMapped = mapped
	}
	if kills < 10 {
		t.Fatalf("only %d of the kill points killed a running child; want at least 10", kills)
	}
	return kills
}

// checkRunHistory checks the run history `status` shows from a crashed-into
// state DB after the final run: the last run succeeded, at least kills-2
// runs are marked aborted by the run after them (the early kills may land
// before the child records its run), with everyAborted every earlier run
// is, and the state maps users customers with no failure.
func checkRunHistory(t *testing.T, statePath string, kills, users int, everyAborted bool) {
	t.Helper()
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
		case i > 0 && everyAborted:
			t.Errorf("run %d outcome %q, want aborted (every earlier run was killed)", r.ID, r.Outcome)
		}
	}
	if aborted < kills-2 {
		t.Errorf("%d runs marked aborted, want at least %d", aborted, kills-2)
	}
	if rep.Mappings != int64(users) || rep.Failures.Total != 0 {
		t.Errorf("status: %d mappings, %d failures; want %d, 0", rep.Mappings, rep.Failures.Total, users)
	}
	t.Logf("status: %d runs, %d aborted", len(rep.Runs), aborted)
}

// emulatorCrash is the Plugipay emulator as a crash test's destination;
// its faulted kill points inject "executed then timed out" writes.
type emulatorCrash struct {
	emu     *emulator.Server
	latency emulator.Faults
}

func (d emulatorCrash) customers() int { return d.emu.CustomerCount() }

func (d emulatorCrash) setFaults(t *testing.T, on bool) {
	f := d.latency
	if on {
		f = emulator.Faults{Latency: d.latency.Latency, TimeoutRate: 0.2, HangTimeout: 200 * time.Millisecond}
	}
	mustSetFaults(t, d.emu, f)
}

func (d emulatorCrash) checkState(t *testing.T, statePath string) int {
	n := checkState(t, statePath, d.emu)
	checkLedger(t, statePath, n)
	return n
}

func (emulatorCrash) afterKill(*testing.T, string) string { return "" }

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
	seed := testSeed(t, "PLUGIPAY_SYNC_CRASH_SEED")
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
	schedule := killSchedule(rng, "timeouts", 30, 1440, [2]int{1460, 15}, [2]int{1485, 12})
	kills := killNine(t, rng, emulatorCrash{emu, latency}, config, statePath, crashUsers, schedule)

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
	checkLedger(t, statePath, crashUsers)
	if n := statusCount(t, emu, http.MethodPost, "409"); n != 0 {
		t.Errorf("%d creates answered 409: a write of a killed process was re-sent under a new idempotency key", n)
	}
	if emu.Replays() == 0 {
		t.Error("no write was replayed: the timeout faults were not exercised")
	}

	// The history, as `status` shows it from the crashed-into state DB:
	// every killed run is marked aborted by the run after it.
	checkRunHistory(t, statePath, kills, crashUsers, true)
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

// runAndKill starts a --once child and SIGKILLs it at k, reading the
// destination's customer count with count. killed is false when the child
// exited by itself first.
func runAndKill(t *testing.T, config string, count func() int, k killPoint) (killed bool, out string) {
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
			if k.target == 0 || count() < k.target {
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

// checkState is checkMappings against the Plugipay emulator: every
// mapping names the customer the emulator holds for its externalId.
func checkState(t *testing.T, path string, emu *emulator.Server) int {
	t.Helper()
	return checkMappings(t, path, func(ext, id string) error {
		if c, ok := emu.CustomerByExternalID(ext); !ok || c.ID != id {
			return fmt.Errorf("mapping %s -> %s, but the emulator holds %+v (found %v)", ext, id, c, ok)
		}
		return nil
	})
}

// checkMappings runs PRAGMA integrity_check on the state file and checks
// every mapping with check, which returns an error when the destination
// does not hold the mapping's customer (a mapping is stored only after the
// write was confirmed). It returns the number of mappings.
func checkMappings(t *testing.T, path string, check func(ext, id string) error) int {
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
		if err := check(ext, id); err != nil {
			t.Fatal(err)
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

// checkLedger checks the audit ledger of a backfill's state file, at any
// kill point (issue 18): each entry is written in its mapping's
// transaction, so there is exactly one create entry per mapping (a write
// executed by a killed process and replayed by the next is confirmed, and
// recorded, once), naming the mapping's customer, with the write's
// idempotency key and request id.
func checkLedger(t *testing.T, path string, mappings int) {
	t.Helper()
	if mappings == 0 {
		return // killed before the schema or the first confirmation
	}
	db := openRaw(t, path)
	defer db.Close()
	var entries, users, matched, complete int
	err := db.QueryRow(`SELECT COUNT(*), COUNT(DISTINCT a.external_id),
		COUNT(m.external_id), SUM(a.idempotency_key <> '' AND a.request_id <> '' AND a.op = 'create' AND a.cause = 'run')
		FROM audit_log a LEFT JOIN mappings m ON m.external_id = a.external_id AND m.customer_id = a.customer_id`).
		Scan(&entries, &users, &matched, &complete)
	if err != nil {
		t.Fatal(err)
	}
	if entries != mappings || users != mappings || matched != mappings || complete != mappings {
		t.Errorf("audit ledger: %d entries for %d users, %d matching a mapping, %d complete creates; want one per mapping (%d)",
			entries, users, matched, complete, mappings)
	}
}
