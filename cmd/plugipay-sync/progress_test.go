package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plugipay-sync/plugipay-sync/plugipay/emulator"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

func TestFormatProgress(t *testing.T) {
	for _, tt := range []struct {
		name    string
		c       sync.RunCounts
		total   int64
		elapsed time.Duration
		want    string
	}{
		{"Start", sync.RunCounts{}, 1000, 0,
			"[>                       ] 0/1000   0.0%  0.0 rec/s  ETA -  (created 0, updated 0, unchanged 0, recovered 0, rejected 0, failed 0)"},
		{"Quarter", sync.RunCounts{Created: 200, Unchanged: 50}, 1000, 5 * time.Second,
			"[======>                 ] 250/1000  25.0%  50 rec/s  ETA 15s  (created 200, updated 0, unchanged 50, recovered 0, rejected 0, failed 0)"},
		{"Done", sync.RunCounts{Created: 990, Rejected: 5, Failed: 5}, 1000, 10 * time.Second,
			"[========================] 1000/1000 100.0%  100 rec/s  ETA 0s  (created 990, updated 0, unchanged 0, recovered 0, rejected 5, failed 5)"},
		{"UnknownTotal", sync.RunCounts{Updated: 3, Recovered: 1}, -1, 2 * time.Second,
			"4 processed  2.0 rec/s  (created 0, updated 3, unchanged 0, recovered 1, rejected 0, failed 0)"},
		{"EmptySource", sync.RunCounts{}, 0, time.Second,
			"[========================] 0/0 100.0%  0.0 rec/s  ETA 0s  (created 0, updated 0, unchanged 0, recovered 0, rejected 0, failed 0)"},
		{"MoreThanTotal", sync.RunCounts{Unchanged: 12}, 10, time.Second,
			"[========================] 12/10 100.0%  12 rec/s  ETA 0s  (created 0, updated 0, unchanged 12, recovered 0, rejected 0, failed 0)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var rate float64 // the average since the start, in these cases
			if tt.elapsed > 0 {
				rate = float64(processed(tt.c)) / tt.elapsed.Seconds()
			}
			if got := formatProgress(tt.c, tt.total, rate); got != tt.want {
				t.Errorf("formatProgress() =\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

// TestRecentRate: after a fast start (unchanged users) the rate, and so the
// ETA, follows the slow writes within a minute instead of averaging them
// with the start.
func TestRecentRate(t *testing.T) {
	var r recentRate
	t0 := time.Unix(0, 0)
	r.observe(0, t0)
	if got := r.observe(500_000, t0.Add(time.Second)); got != 500_000 {
		t.Fatalf("first rate %v", got)
	}
	done := int64(500_000)
	var got float64
	for i := 2; i <= 90; i++ { // then 20 a second for 89 s
		done += 20
		got = r.observe(done, t0.Add(time.Duration(i)*time.Second))
	}
	average := float64(done) / 90
	if got > 1000 || average < 5000 {
		t.Errorf("recent rate %.0f/s after 89 s at 20/s (the average since the start is %.0f/s)", got, average)
	}
	line := formatProgress(sync.RunCounts{Created: 500_000}, 1_000_000, 20)
	if !strings.Contains(line, "ETA 6h56m40s") {
		t.Errorf("at 20/s with 500,000 to go: %s", line)
	}
}

func TestIsTerminal(t *testing.T) {
	if isTerminal(&bytes.Buffer{}) {
		t.Error("a buffer is a terminal")
	}
	f, err := openDevNull()
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	if isTerminal(f) {
		t.Error("/dev/null is a terminal")
	}
}

// TestOnce_ProgressLog runs a slow --once off a terminal and checks it logs
// progress lines with the run id, the processed count and the total.
func TestOnce_ProgressLog(t *testing.T) {
	const n = 80
	dir := t.TempDir()
	e := newE2E(t, writeUsers(t, filepath.Join(dir, "u.csv"), n),
		emulator.Options{Faults: emulator.Faults{Latency: 20 * time.Millisecond}})
	var out, errOut bytes.Buffer
	m := NewMain(&out, &errOut)
	m.LookupEnv = env(map[string]string{"TEST_SECRET": testSecret})
	m.ProgressInterval = 50 * time.Millisecond
	if err := m.ParseFlags([]string{"--config", e.config, "--once", "--log-level", "info"}); err != nil {
		t.Fatal(err)
	}
	code, err := m.Run(context.Background())
	if code != ExitOK || err != nil {
		t.Fatalf("exit %d, %v:\n%s\n%s", code, err, out.String(), errOut.String())
	}
	var lines []map[string]any
	for _, l := range strings.Split(errOut.String(), "\n") {
		var entry map[string]any
		if json.Unmarshal([]byte(l), &entry) == nil && entry["msg"] == "progress" {
			lines = append(lines, entry)
		}
	}
	if len(lines) < 2 {
		t.Fatalf("%d progress lines in a run of %s, want at least 2:\n%s", len(lines), "80 records at 20ms", errOut.String())
	}
	last := lines[len(lines)-1]
	if last["run_id"] != float64(1) || last["total"] != float64(n) || last["processed"].(float64) <= 0 {
		t.Errorf("last progress line = %v", last)
	}
	if _, ok := last["rate_per_second"]; !ok {
		t.Errorf("progress line without rate: %v", last)
	}
	if strings.Contains(out.String(), "\r") {
		t.Errorf("a progress line was drawn off a terminal:\n%q", out.String())
	}
}

func openDevNull() (*os.File, error) { return os.OpenFile(os.DevNull, os.O_WRONLY, 0) }

// TestTermLine: a log line written to a terminal that shows the progress
// line clears the line first and redraws it after.
func TestTermLine(t *testing.T) {
	var screen bytes.Buffer // stdout and stderr share the terminal
	tl := &termLine{out: &screen}
	stderr := termStderr{t: tl, w: &screen}

	stderr.Write([]byte("before\n"))
	tl.draw("[=>  ] 1/4")
	stderr.Write([]byte("WARN record rejected\n"))
	tl.draw("[==> ] 2/4")
	tl.clear()
	tl.clear()
	stderr.Write([]byte("after\n"))

	want := "before\n" +
		"\r[=>  ] 1/4\x1b[K" +
		"\r\x1b[K" + "WARN record rejected\n" + "\r[=>  ] 1/4\x1b[K" +
		"\r[==> ] 2/4\x1b[K" +
		"\r\x1b[K" +
		"after\n"
	if got := screen.String(); got != want {
		t.Errorf("screen =\n%q\nwant\n%q", got, want)
	}
}
