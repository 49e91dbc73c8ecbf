package main

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/plugipay-sync/plugipay-sync/plugipay/emulator"
)

// crashLoopUsers and crashLoopKills are the sizes of issue 8 item 2.
const (
	crashLoopUsers = 5000
	crashLoopKills = 20
)

// persistentEmulator is an emulator persisting its state to a file, served
// on one fixed address across restarts, so the child's config stays valid.
type persistentEmulator struct {
	t        *testing.T
	addr     string
	path     string
	seed     uint64
	emu      *emulator.Server
	srv      *httptest.Server
	restarts int
	// conflicts counts the 409s answered to creates by earlier instances.
	conflicts int
}

func startPersistentEmulator(t *testing.T, path string, seed uint64) *persistentEmulator {
	t.Helper()
	p := &persistentEmulator{t: t, path: path, seed: seed}
	p.start()
	t.Cleanup(p.stop)
	return p
}

func (p *persistentEmulator) start() {
	p.t.Helper()
	emu, err := emulator.Open(emulator.Options{
		Keys:      map[string]string{testKeyID: testSecret},
		Faults:    emulator.Faults{Latency: time.Millisecond},
		Seed:      p.seed + uint64(p.restarts),
		StatePath: p.path,
	})
	if err != nil {
		p.t.Fatalf("emulator restart %d: %v", p.restarts, err)
	}
	srv := httptest.NewUnstartedServer(emu)
	if p.addr != "" {
		// The old listener is closed; the port is free again (Go's
		// listeners set SO_REUSEADDR), though it can take a moment.
		var ln net.Listener
		for i := 0; ; i++ {
			if ln, err = net.Listen("tcp", p.addr); err == nil {
				break
			}
			if i == 50 {
				p.t.Fatalf("emulator restart %d: listen %s: %v", p.restarts, p.addr, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		srv.Listener.Close()
		srv.Listener = ln
	}
	srv.Start()
	p.addr = srv.Listener.Addr().String()
	p.emu, p.srv = emu, srv
}

func (p *persistentEmulator) stop() {
	if p.srv == nil {
		return
	}
	p.srv.CloseClientConnections()
	p.srv.Close()
	p.conflicts += statusCount(p.t, p.emu, http.MethodPost, "409")
	if err := p.emu.Close(); err != nil {
		p.t.Errorf("emulator close: %v", err)
	}
	p.srv, p.emu = nil, nil
}

// restart stops the emulator and starts a new one from the state file.
func (p *persistentEmulator) restart() {
	p.t.Helper()
	p.stop()
	p.restarts++
	p.start()
}

// TestCrash_Loop is issue 8 item 2: a real plugipay-sync --once child
// backfilling 5,000 users is killed with SIGKILL at 20 random moments
// (seeded: PLUGIPAY_SYNC_CRASHLOOP_SEED replays the schedule) and
// restarted each time. The emulator persists its state to a file and is
// itself restarted from it at a third of the kill points, in the same
// moment as the kill. At the end there are exactly 5,000 customers, one
// per user, every one mapped, and the state DB passes integrity_check
// after every kill.
func TestCrash_Loop(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes; skipped with -short")
	}
	seed := testSeed(t, "PLUGIPAY_SYNC_CRASHLOOP_SEED")
	rng := rand.New(rand.NewPCG(seed, seed^1))

	dir := t.TempDir()
	csvPath := writeUsers(t, filepath.Join(dir, "u.csv"), crashLoopUsers)
	pe := startPersistentEmulator(t, filepath.Join(dir, "emulator.jsonl"), seed)
	statePath := filepath.Join(dir, "state.db")
	config := filepath.Join(dir, "config.yaml")
	writeCrashConfig(t, config, statePath, "http://"+pe.addr, csvPath)

	// Two kills before any write (the first while the state DB is being
	// created), the rest at customer counts spread over the backfill.
	var schedule []killPoint
	for range 2 {
		schedule = append(schedule, killPoint{delay: time.Duration(rng.IntN(40)) * time.Millisecond})
	}
	const spread = crashLoopKills - 2
	seg := (crashLoopUsers - 100) / spread
	for i := range spread {
		schedule = append(schedule, killPoint{target: 50 + i*seg + rng.IntN(seg)})
	}
	restartAt := rng.Perm(crashLoopKills)[:crashLoopKills/3]

	start := time.Now()
	kills, prevMapped := 0, 0
	for i, k := range schedule {
		cur := pe.emu.CustomerCount()
		if k.target > 0 && k.target <= cur {
			k.target = cur + 1 + rng.IntN(20)
		}
		if k.target >= crashLoopUsers {
			k = killPoint{delay: time.Duration(rng.IntN(100)) * time.Millisecond}
		}
		killed, out := runAndKill(t, config, pe.emu.CustomerCount, k)
		restarted := slices.Contains(restartAt, i)
		if restarted {
			pe.restart()
		}
		if killed {
			kills++
		}
		mapped := checkState(t, statePath, pe.emu)
		t.Logf("kill %2d %-20s killed=%-5v emulator restarted=%-5v customers %4d, mapped %4d", i+1, k, killed, restarted, pe.emu.CustomerCount(), mapped)
		if !killed {
			t.Logf("child finished before the kill point:\n%s", out)
		}
		if mapped < prevMapped {
			t.Fatalf("after kill %d the state maps %d customers, %d before: a confirmed mapping was lost", i+1, mapped, prevMapped)
		}
		prevMapped = mapped
	}
	if kills < crashLoopKills*3/4 {
		t.Fatalf("only %d of the %d kill points killed a running child", kills, crashLoopKills)
	}

	code, out := runChild(t, config)
	if code != ExitOK {
		t.Fatalf("final run exit %d:\n%s", code, out)
	}
	// The final check runs against a fresh emulator loaded from the file:
	// what was acknowledged survived every restart.
	pe.restart()
	t.Logf("%d kills, %d emulator restarts; final run: %s; total %s", kills, pe.restarts, firstLine(out), time.Since(start).Round(time.Millisecond))

	if n := pe.emu.CustomerCount(); n != crashLoopUsers {
		t.Errorf("emulator holds %d customers, want %d", n, crashLoopUsers)
	}
	seen := map[string]int{}
	for _, c := range pe.emu.Customers() {
		seen[c.ExternalID]++
	}
	for i := range crashLoopUsers {
		if id := fmt.Sprintf("usr_%05d", i); seen[id] != 1 {
			t.Errorf("externalId %s has %d customers, want exactly 1", id, seen[id])
		}
	}
	if mapped := checkState(t, statePath, pe.emu); mapped != crashLoopUsers {
		t.Errorf("state maps %d customers, want %d", mapped, crashLoopUsers)
	}
	if pe.conflicts != 0 {
		t.Errorf("%d creates answered 409: a write of a killed process was re-sent under a new idempotency key", pe.conflicts)
	}
}
