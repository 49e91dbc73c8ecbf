package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	stdsync "sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/robfig/cron/v3"
	"go.uber.org/zap"

	"github.com/plugipay-sync/plugipay-sync/sync"
)

// ShutdownTimeout bounds how long the daemon waits for a run in progress
// after a stop signal; it stays under Kubernetes' default 30 s grace.
const ShutdownTimeout = 25 * time.Second

// serve runs the daemon until ctx is cancelled: the metrics and health
// listener, and the cron schedule with one run right at start.
func (m *Main) serve(ctx context.Context) error {
	var (
		wg   stdsync.WaitGroup
		runs runGroup
	)
	m.health.restore(ctx, m.store, m.syncMetrics, m.log)
	stopListener, err := m.listen()
	if err != nil {
		return err
	}

	var (
		recPtr atomic.Pointer[sync.Reconciler]
		runMu  stdsync.Mutex // one run at a time, across schedule changes too
	)
	recPtr.Store(m.rec)
	job := func() {
		if ctx.Err() != nil || !runs.enter() {
			return
		}
		defer runs.exit()
		if !runMu.TryLock() {
			m.log.Info("skipping a tick: the previous run is still going")
			return
		}
		defer runMu.Unlock()
		r := recPtr.Load()
		stopWatch := m.watchProgress(r)
		stopProgress := m.startProgress(ctx)
		rec, err := r.Run(ctx)
		stopProgress()
		stopWatch()
		m.health.runFinished(rec, err)
		if f, ferr := m.store.Freshness(context.WithoutCancel(ctx)); ferr == nil {
			m.health.setStreak(f.FailedStreak)
		}
		m.gauge.refresh(context.WithoutCancel(ctx), m.store, m.log)
		if err != nil && rec.Outcome != sync.OutcomeCanceled {
			m.log.Error("run failed", zap.Int64("run_id", rec.ID), zap.Error(explain(err)))
		}
	}

	cl := cronLogger{m.log.Named("cron").Sugar()}
	c := cron.New(cron.WithParser(CronParser), cron.WithLogger(cl),
		cron.WithChain(cron.Recover(cl), cron.SkipIfStillRunning(cl)))
	id, err := c.AddFunc(m.cfg.Schedule, job)
	if err != nil {
		return fmt.Errorf("schedule: %w", err)
	}
	if err := m.addMaintenance(ctx, c, &runMu, &runs, &recPtr); err != nil {
		return err
	}
	m.startWebhooks(ctx, &runMu, &runs, &recPtr)
	// The event path (issue 17) syncs through the current reconciler;
	// POST /v1/runs asks for a run through runNow.
	runNow := make(chan struct{}, 1)
	stopRealtime := func() {}
	if m.cfg.Realtime.on() {
		rt := newRealtime(m, recPtr.Load, runNow)
		if stopRealtime, err = rt.start(ctx); err != nil {
			stopListener()
			return err
		}
		if a, ok := rt.addr.Load().(string); ok && m.RealtimeReady != nil {
			m.RealtimeReady(a)
		}
	}
	m.gauge.refresh(ctx, m.store, m.log)
	c.Start()
	m.log.Info("daemon started", zap.String("schedule", m.cfg.Schedule), zap.String("version", Version))
	wg.Go(c.Entry(id).WrappedJob.Run) // the first run does not wait for the first tick

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-hup:
			m.reload(c, &id, job, &recPtr)
		case <-runNow:
			wg.Go(job)
		}
	}
	m.log.Info("stopping", zap.String("cause", context.Cause(ctx).Error()))
	stopped := c.Stop()
	done := make(chan struct{})
	go func() {
		<-stopped.Done()
		runs.closeAndWait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(ShutdownTimeout):
		m.log.Error("a run did not stop in time; exiting anyway", zap.Duration("timeout", ShutdownTimeout))
	}
	stopRealtime()
	stopListener()
	wg.Wait()
	m.log.Info("stopped")
	return nil
}

// runGroup counts the daemon's runs, verifies and webhook worker so that
// shutdown can wait for them. A bare WaitGroup is not enough: cron, the
// first run and POST /v1/runs start jobs from goroutines of their own, and
// an Add racing a Wait at zero is a misuse the race detector reports (and
// a run that started then would go unwaited). Once closed, enter refuses.
type runGroup struct {
	mu     stdsync.Mutex
	closed bool
	wg     stdsync.WaitGroup
}

// enter counts a job in; false means the daemon is stopping and the job
// must not start.
func (g *runGroup) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.wg.Add(1)
	return true
}

// exit counts a job out.
func (g *runGroup) exit() { g.wg.Done() }

// Go runs f in a goroutine counted in, unless the group is closed.
func (g *runGroup) Go(f func()) {
	if !g.enter() {
		return
	}
	go func() {
		defer g.exit()
		f()
	}()
}

// closeAndWait refuses new jobs and waits for those counted in.
func (g *runGroup) closeAndWait() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
	g.wg.Wait()
}

// listen serves /metrics, /healthz and /readyz on cfg.Listen, if set, and
// returns the function that shuts the listener down. It binds before
// serving, so a busy port is an error here, not a log line later.
func (m *Main) listen() (stop func(), err error) {
	if m.cfg.Listen == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", m.cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: m.handler(), ReadHeaderTimeout: 10 * time.Second}
	var wg stdsync.WaitGroup
	wg.Go(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.log.Error("metrics listener stopped", zap.Error(err))
		}
	})
	m.log.Info("serving metrics and health", zap.String("addr", ln.Addr().String()))
	if m.Ready != nil {
		m.Ready(ln.Addr().String())
	}
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			m.log.Warn("metrics listener shutdown", zap.Error(err))
		}
		wg.Wait()
	}, nil
}

// reload re-reads the config on SIGHUP. A bad config is logged and
// counted and the running one kept; a good one takes effect from the next
// run (the run in progress finishes with the old one). state.path and
// listen need a restart; another destination is refused.
func (m *Main) reload(c *cron.Cron, id *cron.EntryID, job func(), rec *atomic.Pointer[sync.Reconciler]) {
	fail := func(err error) {
		m.reloadOK.Set(0)
		m.log.Error("config reload failed; keeping the running config", zap.String("config", m.ConfigPath), zap.Error(err))
	}
	cfg, err := m.readConfig()
	if err != nil {
		fail(err)
		return
	}
	if cfg.State != m.cfg.State || cfg.Listen != m.cfg.Listen {
		m.log.Warn("state and listen change only with a restart; keeping the running values",
			zap.String("state.path", m.cfg.State.Path), zap.String("listen", m.cfg.Listen))
		cfg.State, cfg.Listen = m.cfg.State, m.cfg.Listen
	}
	if was, now := destinationIdentity(m.cfg), destinationIdentity(cfg); was != now {
		// The state file holds the running destination's customer ids.
		fail(fmt.Errorf("destination.type: changing the destination (%s to %s) needs a restart with a state.path of its own", was, now))
		return
	}
	r, err := m.buildReconciler(cfg)
	if err != nil {
		fail(err)
		return
	}
	if cfg.Schedule != m.cfg.Schedule {
		newID, err := c.AddFunc(cfg.Schedule, job)
		if err != nil {
			fail(fmt.Errorf("schedule: %w", err))
			return
		}
		c.Remove(*id)
		*id = newID
	}
	rec.Store(r)
	m.cfg = cfg
	m.health.setSchedule(cfg.Schedule, cfg.Health.StaleAfterRuns, time.Now())
	m.reloadOK.Set(1)
	m.reloadTime.SetToCurrentTime()
	m.log.Info("config reloaded", zap.String("config", m.ConfigPath), zap.String("schedule", cfg.Schedule))
}

// watchProgress marks the health's run as moving whenever r's counts
// change, until the returned stop is called.
func (m *Main) watchProgress(r *sync.Reconciler) (stop func()) {
	m.health.runStarted(time.Now())
	done := make(chan struct{})
	var wg stdsync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var last sync.RunCounts
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				if c, ok := r.Progress(); ok && c != last {
					last = c
					m.health.progressed(now)
				}
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// handler serves /metrics, /healthz (the process is alive) and /readyz
// (the state DB reachable, the last run able to use the destination, and a
// run succeeded recently; see health.ready).
func (m *Main) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg}))
	mux.HandleFunc("POST "+WebhookPath, m.serveWebhook)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if m.platform != nil {
			if ok, reason := m.platform.ready(); !ok {
				writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": reason})
				return
			}
			writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
			return
		}
		if m.store == nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": "state DB not open"})
			return
		}
		if err := m.store.Ping(r.Context()); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": err.Error()})
			return
		}
		if ok, reason := m.health.ready(time.Now()); !ok {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": reason})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// cronLogger adapts zap to cron.Logger.
type cronLogger struct{ s *zap.SugaredLogger }

func (l cronLogger) Info(msg string, kv ...any) { l.s.Debugw(msg, kv...) }
func (l cronLogger) Error(err error, msg string, kv ...any) {
	l.s.Errorw(msg, append(kv, "error", err)...)
}

// healthCheck probes url for the container's HEALTHCHECK.
func healthCheck(ctx context.Context, url string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return ExitFailed, fmt.Errorf("healthcheck: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ExitFailed, fmt.Errorf("healthcheck: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ExitFailed, fmt.Errorf("healthcheck: %s answered %s", url, resp.Status)
	}
	return ExitOK, nil
}
