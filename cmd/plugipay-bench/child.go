package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	stdsync "sync"
	"sync/atomic"
	"time"

	plugipaydest "github.com/plugipay-sync/plugipay-sync/destination/plugipay"
	"github.com/plugipay-sync/plugipay-sync/plugipay"
	"github.com/plugipay-sync/plugipay-sync/plugipay/emulator"
	"github.com/plugipay-sync/plugipay-sync/state"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

// The no-op scans run in a child process (this same binary, selected by
// childEnv), so that the peak RSS they report is the scan's own and not
// the bench driver's, which holds other scenarios' data.
const (
	childEnv    = "PLUGIPAY_BENCH_CHILD" // "scan" or "floor"
	childCSVEnv = "PLUGIPAY_BENCH_CSV"
	childDBEnv  = "PLUGIPAY_BENCH_DB"
	// childProfEnv, when set, is a directory the child writes a CPU
	// profile of its measurement to (mode.pprof), for go tool pprof.
	childProfEnv = "PLUGIPAY_BENCH_CPUPROFILE"
)

// Modes of the child.
const (
	modeScan  = "scan"  // the reconciler over a warm cache
	modeFloor = "floor" // parse the CSV and hash each record, nothing else
)

// childResult is what a child prints on stdout, as one JSON object.
type childResult struct {
	Mode    string  `json:"mode"`
	Records int64   `json:"records"`
	Seconds float64 `json:"seconds"`
	PeakRSS int64   `json:"peak_rss_kib"` // VmHWM at the end
	// RSSAnon and RSSFile split the resident set at the end: anonymous
	// memory (heap, SQLite's page cache) and file pages mapped in (SQLite
	// reads the state DB through mmap).
	RSSAnon int64 `json:"rss_anon_kib"`
	RSSFile int64 `json:"rss_file_kib"`
	// PeakAnon is the largest RssAnon sampled every 10 ms during the
	// measurement: the process's own memory, without the file pages.
	PeakAnon int64 `json:"peak_anon_kib"`
	Requests int   `json:"api_requests"`
	Counts   sync.RunCounts
}

// runChild runs one measurement in this process and prints its result.
func runChild(mode string, stdout io.Writer) error {
	ctx := context.Background()
	csvPath, dbPath := os.Getenv(childCSVEnv), os.Getenv(childDBEnv)
	if dir := os.Getenv(childProfEnv); dir != "" {
		f, err := os.Create(filepath.Join(dir, mode+".pprof"))
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	stopSampling, peakAnon := sampleAnon()
	var res childResult
	var err error
	switch mode {
	case modeFloor:
		res, err = floor(ctx, csvPath)
	case modeScan:
		res, err = scan(ctx, csvPath, dbPath)
	case modeRawFloor:
		res, err = rawFloor(csvPath)
	case modeVerify:
		res, err = verifyChild(ctx, csvPath, dbPath)
	case modeHScan, modeHPlan:
		res, err = hostileScan(ctx, csvPath, dbPath, mode == modeHPlan)
	default:
		res, err = runSQLChild(ctx, mode)
	}
	if err != nil {
		return err
	}
	res.Mode = mode
	stopSampling()
	st, err := procStatus("VmHWM", "RssAnon", "RssFile")
	if err != nil {
		return err
	}
	res.PeakRSS, res.RSSAnon, res.RSSFile = st[0], st[1], st[2]
	res.PeakAnon = max(peakAnon.Load(), res.RSSAnon)
	return json.NewEncoder(stdout).Encode(res)
}

// floor is the local floor of a no-op scan: stream the CSV through the
// source (parse and validate every row) and hash each record. No store, no
// reconciler.
func floor(ctx context.Context, csvPath string) (childResult, error) {
	src, err := newSource(csvPath)
	if err != nil {
		return childResult{}, err
	}
	return hashAll(ctx, src)
}

// hashAll times reading src to the end with a content hash of each
// record: a source's part of a no-op scan.
func hashAll(ctx context.Context, src sync.Source) (childResult, error) {
	start := time.Now()
	var n int64
	var sink byte
	for rec, err := range src.Records(ctx) {
		if err != nil {
			return childResult{}, err
		}
		sink ^= sync.ContentHash(rec)[0]
		n++
	}
	_ = sink
	return childResult{Records: n, Seconds: time.Since(start).Seconds()}, nil
}

// scan runs the real reconciler over csvPath with the warm state DB at
// dbPath, against an emulator that counts every request it gets.
func scan(ctx context.Context, csvPath, dbPath string) (childResult, error) {
	src, err := newSource(csvPath)
	if err != nil {
		return childResult{}, err
	}
	return syncOnce(ctx, src, dbPath, nil)
}

// syncOnce times one run of the real reconciler over src with the warm
// state DB at dbPath, against an emulator at the real limits that counts
// every request it gets; before, if set, runs first, untimed.
func syncOnce(ctx context.Context, src sync.Source, dbPath string, before func(*sync.Reconciler) error) (childResult, error) {
	emu := emulator.New(emulator.Options{Keys: map[string]string{benchKeyID: benchSecret},
		ReadRate: emulator.DefaultReadRate, WriteRate: emulator.DefaultWriteRate})
	srv := httptest.NewServer(emu)
	defer srv.Close()
	client, err := plugipay.New(plugipay.Options{BaseURL: srv.URL, KeyID: benchKeyID, Secret: benchSecret})
	if err != nil {
		return childResult{}, err
	}
	db, err := state.Open(ctx, dbPath)
	if err != nil {
		return childResult{}, err
	}
	defer db.Close()
	rec := sync.New(src, benchDestination(client), db, sync.Options{})
	if before != nil {
		if err := before(rec); err != nil {
			return childResult{}, err
		}
	}
	start := time.Now()
	run, err := rec.Run(ctx)
	secs := time.Since(start).Seconds()
	if err != nil {
		return childResult{}, fmt.Errorf("no-op run: %w", err)
	}
	return childResult{Records: run.Counts.Read, Seconds: secs, Requests: emu.TotalRequests(), Counts: run.Counts}, nil
}

// sampleAnon samples RssAnon every 10 ms until stop is called, keeping
// the largest value. VmHWM has no anonymous-only counterpart.
func sampleAnon() (stop func(), peak *atomic.Int64) {
	peak = new(atomic.Int64)
	done := make(chan struct{})
	var wg stdsync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			if v, err := procStatus("RssAnon"); err == nil && v[0] > peak.Load() {
				peak.Store(v[0])
			}
			select {
			case <-t.C:
			case <-done:
				return
			}
		}
	})
	return func() { close(done); wg.Wait() }, peak
}

// procStatus reads the named fields, in KiB, from /proc/self/status.
func procStatus(names ...string) ([]int64, error) { return procStatusOf("self", names...) }

// procStatusOf reads the named fields, in KiB, from /proc/<pid>/status.
func procStatusOf(pid string, names ...string) ([]int64, error) {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return nil, err
	}
	out := make([]int64, len(names))
	for i, name := range names {
		found := false
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, name+":"); ok {
				v = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB"))
				if out[i], err = strconv.ParseInt(v, 10, 64); err != nil {
					return nil, fmt.Errorf("/proc/%s/status %s: %w", pid, name, err)
				}
				found = true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("no %s in /proc/%s/status", name, pid)
		}
	}
	return out, nil
}

// runInChild runs mode in a child process of this binary and returns what
// it measured.
func runInChild(ctx context.Context, mode, csvPath, dbPath string) (childResult, error) {
	return runChildEnv(ctx, mode, []string{childCSVEnv + "=" + csvPath, childDBEnv + "=" + dbPath})
}

// runChildEnv runs mode in a child process with env added to this one's.
func runChildEnv(ctx context.Context, mode string, env []string) (childResult, error) {
	exe, err := os.Executable()
	if err != nil {
		return childResult{}, err
	}
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = append(append(os.Environ(), childEnv+"="+mode), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return childResult{}, fmt.Errorf("child %s: %w: %s", mode, err, stderr.String())
	}
	var res childResult
	if err := json.Unmarshal(out, &res); err != nil {
		return childResult{}, fmt.Errorf("child %s: %w (output %q)", mode, err, out)
	}
	return res, nil
}

// overWarmCache is the destination of a run over a generated warm cache.
// It hides plugipaydest.Destination's Probe, so the run skips the identity
// check that every real run makes (one list and three gets, constant per
// run, covered by the end-to-end tests): the generated state DB maps
// placeholder customer ids that the bench's emulator does not hold, and
// the check would rightly refuse it as another workspace.
type overWarmCache struct{ sync.Destination }

func benchDestination(c *plugipay.Client) sync.Destination {
	return overWarmCache{plugipaydest.FromClient(c)}
}
