package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	stdsync "sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/plugipay-sync/plugipay-sync/sync"
)

// Progress display of a --once run (issue 4 item 8): large runs must never
// look hung.
const (
	// DefaultProgressInterval is how often a run off a terminal logs a
	// progress line; Main.ProgressInterval overrides it.
	DefaultProgressInterval = 5 * time.Second
	// progressRedraw is how often the line on a terminal is redrawn.
	progressRedraw = 200 * time.Millisecond
	// progressBarWidth is the width of the bar between the brackets.
	progressBarWidth = 24
)

// counter is implemented by sources that can count their records cheaply
// (crm.CSV); the count is the progress display's total.
type counter interface {
	Count(ctx context.Context) (int64, error)
}

// processed is how many records of a run have an outcome so far.
func processed(c sync.RunCounts) int64 {
	return c.Created + c.Updated + c.Unchanged + c.Recovered + c.Rejected + c.Failed
}

// formatProgress renders one progress line: a bar, processed / total and
// percentage when total is known (total < 0 means unknown), the rate (see
// recentRate), the ETA at that rate when the total is known, and the
// counts. It is a pure function of its arguments.
func formatProgress(c sync.RunCounts, total int64, rate float64) string {
	done := processed(c)
	var b strings.Builder
	if total >= 0 {
		shown := min(done, total)
		frac := 1.0
		if total > 0 {
			frac = float64(shown) / float64(total)
		}
		filled := int(frac * progressBarWidth)
		bar := strings.Repeat("=", filled)
		if filled < progressBarWidth {
			bar += ">" + strings.Repeat(" ", progressBarWidth-filled-1)
		}
		fmt.Fprintf(&b, "[%s] %d/%d %5.1f%%  %s rec/s", bar, done, total, frac*100, formatRate(rate))
		switch {
		case done >= total:
			b.WriteString("  ETA 0s")
		case rate > 0:
			eta := time.Duration(float64(total-done) / rate * float64(time.Second))
			fmt.Fprintf(&b, "  ETA %s", eta.Round(time.Second))
		default:
			b.WriteString("  ETA -")
		}
	} else {
		fmt.Fprintf(&b, "%d processed  %s rec/s", done, formatRate(rate))
	}
	fmt.Fprintf(&b, "  (created %d, updated %d, unchanged %d, recovered %d, rejected %d, failed %d)",
		c.Created, c.Updated, c.Unchanged, c.Recovered, c.Rejected, c.Failed)
	return b.String()
}

// recentRate is the processing rate over the last recentRateWindow: the
// records done between the oldest look inside the window and now. A run's
// pace changes (unchanged users go by at 500k/s, writes at 20/s), so an ETA
// from the average since the start promised minutes for hours of writes
// (issue 16).
type recentRate struct {
	looks []rateLook
}

type rateLook struct {
	at   time.Time
	done int64
}

// recentRateWindow is how far back the rate looks.
const recentRateWindow = 30 * time.Second

// observe records done records at now and returns the recent rate (0 until
// there are two looks).
func (r *recentRate) observe(done int64, now time.Time) float64 {
	r.looks = append(r.looks, rateLook{now, done})
	// Keep one look at or before the window's start, so the rate spans it.
	for len(r.looks) > 2 && now.Sub(r.looks[1].at) >= recentRateWindow {
		r.looks = r.looks[1:]
	}
	first := r.looks[0]
	if dt := now.Sub(first.at); dt > 0 {
		return float64(done-first.done) / dt.Seconds()
	}
	return 0
}

func formatRate(r float64) string {
	if r < 10 {
		return fmt.Sprintf("%.1f", r)
	}
	return fmt.Sprintf("%.0f", r)
}

// isTerminal reports whether w is a character device other than /dev/null
// (which is one too, but nobody watches it).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	if err != nil || st.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	if null, err := os.Stat(os.DevNull); err == nil && os.SameFile(st, null) {
		return false
	}
	return true
}

// progress reports a run's progress until stopped: redrawn in place on a
// terminal, as a log line every interval otherwise.
type progress struct {
	m     *Main
	term  *termLine // nil off a terminal
	log   *zap.Logger
	every time.Duration
	start time.Time
	total atomic.Int64 // -1 until known
	runID int64
	rate  recentRate
	wg    stdsync.WaitGroup
}

// startProgress starts reporting the progress of the run m.rec is about to
// make and returns the function that stops it (clearing the terminal
// line). It counts the source's records in the background when the source
// can (see counter), so the count never delays the run.
func (m *Main) startProgress(ctx context.Context) (stop func()) {
	// Not stopped by a shutdown signal: the run drains its records in
	// flight, and its progress goes on showing, until stop.
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	p := &progress{m: m, term: m.term, log: m.log.Named("progress"),
		every: m.ProgressInterval, start: time.Now()}
	p.rate.observe(0, p.start)
	if p.every <= 0 {
		p.every = DefaultProgressInterval
	}
	p.total.Store(-1)
	if src, err := newSource(m.cfg.CRM); err == nil {
		if c, ok := src.(counter); ok {
			p.wg.Go(func() {
				n, err := c.Count(ctx)
				if err != nil {
					if ctx.Err() == nil {
						p.log.Debug("cannot count the source's records; progress shows no total", zap.Error(err))
					}
					return
				}
				p.total.Store(n)
			})
		}
	}
	p.wg.Go(func() { p.loop(ctx) })
	return func() {
		cancel()
		p.wg.Wait()
		if p.term != nil {
			p.term.clear()
		}
	}
}

func (p *progress) loop(ctx context.Context) {
	every := p.every
	if p.term != nil {
		every = progressRedraw
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c, ok := p.m.rec.Progress()
		if !ok {
			continue
		}
		now := time.Now()
		rate := p.rate.observe(processed(c), now)
		if p.term != nil {
			p.term.draw(formatProgress(c, p.total.Load(), rate))
			continue
		}
		p.logLine(ctx, c, now.Sub(p.start), rate)
	}
}

// logLine logs one progress line. The run id is looked up once, as the
// newest run in the state DB: the reconciler's Progress gives counts only.
func (p *progress) logLine(ctx context.Context, c sync.RunCounts, elapsed time.Duration, rate float64) {
	if p.runID == 0 {
		if runs, err := p.m.store.RecentRuns(ctx, 1); err == nil && len(runs) == 1 {
			p.runID = runs[0].ID
		}
	}
	done := processed(c)
	fields := []zap.Field{
		zap.Int64("run_id", p.runID),
		zap.Int64("processed", done),
		zap.Float64("rate_per_second", float64(int64(rate*10))/10),
		zap.Int64("elapsed_seconds", int64(elapsed.Round(time.Second).Seconds())),
	}
	if total := p.total.Load(); total >= 0 {
		fields = append(fields, zap.Int64("total", total))
		if rate > 0 && done < total {
			fields = append(fields, zap.Int64("eta_seconds", int64(math.Round(float64(total-done)/rate))))
		}
	}
	fields = append(fields,
		zap.Int64("created", c.Created), zap.Int64("updated", c.Updated), zap.Int64("unchanged", c.Unchanged),
		zap.Int64("rejected", c.Rejected), zap.Int64("failed", c.Failed))
	p.log.Info("progress", fields...)
}

// termLine is the progress line drawn on a terminal. Log lines written to
// the same terminal through termStderr clear it first and redraw it after,
// so a warning in the middle of a run never lands glued to the bar.
type termLine struct {
	mu   stdsync.Mutex
	out  io.Writer
	line string // as drawn; "" when none is
}

func (t *termLine) draw(s string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.line = s
	fmt.Fprintf(t.out, "\r%s\x1b[K", s)
}

func (t *termLine) clear() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.line != "" {
		fmt.Fprint(t.out, "\r\x1b[K")
		t.line = ""
	}
}

// termStderr is stderr when it shares the terminal with the progress line.
type termStderr struct {
	t *termLine
	w io.Writer
}

func (e termStderr) Write(b []byte) (int, error) {
	e.t.mu.Lock()
	defer e.t.mu.Unlock()
	if e.t.line != "" {
		fmt.Fprint(e.t.out, "\r\x1b[K")
	}
	n, err := e.w.Write(b)
	if e.t.line != "" {
		fmt.Fprintf(e.t.out, "\r%s\x1b[K", e.t.line)
	}
	return n, err
}

// attachTerminal sets up the progress line when stdout is a terminal, and
// routes stderr through it when stderr is one too. NewMain calls it, before
// the logger is built on m.stderr.
func (m *Main) attachTerminal() {
	if !isTerminal(m.stdout) {
		return
	}
	m.term = &termLine{out: m.stdout}
	if isTerminal(m.stderr) {
		m.stderr = termStderr{t: m.term, w: m.stderr}
	}
}
