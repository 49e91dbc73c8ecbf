package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	stdsync "sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/plugipay-sync/plugipay-sync/plugipay"
	"github.com/plugipay-sync/plugipay-sync/plugipay/emulator"
)

// Scenario 11 (issue 17): freshness, from the PostgreSQL COMMIT of a
// change to the customer being readable with the new value through the
// API.
//
// The set-up is the product's: the real plugipay-sync binary (built from
// this module) runs as a daemon in a child process with
// realtime.postgres.enabled, the trigger of `notify-sql --install`, the
// schedule an hour away, the client limits at the API's (20 writes/s, 100
// reads/s), against the emulator with the real limits and 20 ms added to
// every request. For each change: t0 is when the autocommit UPDATE ...
// SET email returns (its COMMIT done); t1 is when a GET of the customer,
// sent every freshReadEvery by a reader with an API key of its own (the
// emulator counts limits per key, so the reader does not take from the
// sync's budget), first returns the new email, including that GET's own
// 20 ms. The changes are made one at a time.
//
// Under backfill: backfill new rows are inserted in one transaction with
// the trigger off (session_replication_role = replica), so they are not
// events but the work of a full run, which POST /v1/runs starts; the
// changes are measured once its creates have begun, and the writes the
// emulator executed during the measurement, over its duration, show the
// run was at the write ceiling throughout.

// Targets of issue 17.
const (
	targetFreshIdle     = time.Second
	targetFreshBackfill = 2 * time.Second
	freshReadEvery      = 12 * time.Millisecond // < 100 reads/s: the reader stays under its key's limit
	freshLatency        = 20 * time.Millisecond
	freshReaderKey      = "key_bench_reader"
	freshReaderSecret   = "sk_bench_reader_secret"
	freshToken          = "bench-trigger-token-0123456789abcdef"
)

// freshSizes are scenario 11's sizes.
type freshSizes struct {
	Users    int           // rows synced before the measurement; the changes go round them
	Changes  int           // changes measured at idle, and again under backfill
	Backfill int           // new rows of the backfill (at 20 creates/s)
	Gap      time.Duration // pause between two changes
}

func (b *bench) freshSizes(quick bool) freshSizes {
	if quick {
		return freshSizes{Users: 10, Changes: 20, Backfill: 200, Gap: 0}
	}
	return freshSizes{Users: 100, Changes: 200, Backfill: 6000, Gap: 100 * time.Millisecond}
}

// freshness is scenario (11).
func (b *bench) freshness(ctx context.Context) error {
	const s = "11 freshness (PostgreSQL)"
	fz := b.fresh
	db, err := sql.Open("pgx", b.sqlDSN)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.PingContext(ctx); err != nil {
		b.info(s, "skipped", "no PostgreSQL at -sql-dsn")
		b.note("(11) skipped: PostgreSQL not reachable (%v)", err)
		return nil
	}
	if _, err := exec.LookPath("go"); err != nil {
		b.info(s, "skipped", "no go command to build the daemon")
		b.note("(11) skipped: %v", err)
		return nil
	}
	var rb [4]byte
	_, _ = rand.Read(rb[:])
	suffix := hex.EncodeToString(rb[:])
	table, channel := "plugipay_bench_fresh_"+suffix, "plugipay_bench_fresh_"+suffix
	defer db.ExecContext(context.WithoutCancel(ctx), "DROP TABLE IF EXISTS "+table)
	for _, q := range []string{
		"CREATE TABLE " + table + ` (id bigint PRIMARY KEY, email text NOT NULL, first_name text NOT NULL,
			last_name text NOT NULL, plan text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())`,
		"CREATE INDEX " + table + "_keyset ON " + table + " (updated_at, id)",
		"INSERT INTO " + table + ` (id, email, first_name, last_name, plan)
			SELECT g, 'user' || g || '@example.com', 'First' || g, 'Last' || g, 'free' FROM generate_series(1, ` + strconv.Itoa(fz.Users) + `) g`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("create %s: %w", table, err)
		}
	}

	// The daemon: the real binary.
	bin, err := b.daemonBinary(ctx)
	if err != nil {
		return err
	}

	opts := limitsReal
	opts.Keys = map[string]string{benchKeyID: benchSecret, freshReaderKey: freshReaderSecret}
	opts.Faults = emulator.Faults{Latency: freshLatency}
	emu := emulator.New(opts)
	srv := httptest.NewServer(emu)
	defer srv.Close()
	reader, err := plugipay.New(plugipay.Options{BaseURL: srv.URL, KeyID: freshReaderKey, Secret: freshReaderSecret,
		ReadRate: -1, WriteRate: -1, MaxAttempts: 1,
		HTTPClient: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}})
	if err != nil {
		return err
	}

	metricsAddr, err := freePort()
	if err != nil {
		return err
	}
	rtAddr, err := freePort()
	if err != nil {
		return err
	}
	cfg := filepath.Join(b.dir, "fresh.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`schedule: "@every 1h"
listen: %q
state:
  path: %s
plugipay:
  base_url: %s
  key_id: %s
  secret: ${PLUGIPAY_SECRET}
  reads_per_second: 100
  writes_per_second: 20
crm:
  type: sql
  sql:
    driver: postgres
    dsn: %q
    table: %s
    columns:
      external_id: id
      email: email
      name_template: "{first_name} {last_name}"
      metadata: {plan: plan}
log:
  level: warn
realtime:
  listen: %q
  token: ${PLUGIPAY_SYNC_TRIGGER_TOKEN}
  postgres:
    enabled: true
    channel: %s
`, metricsAddr, filepath.Join(b.dir, "fresh.db"), srv.URL, benchKeyID, b.sqlDSN, table, rtAddr, channel)), 0o600); err != nil {
		return err
	}
	env := append(os.Environ(), "PLUGIPAY_SECRET="+benchSecret, "PLUGIPAY_SYNC_TRIGGER_TOKEN="+freshToken)
	install := exec.CommandContext(ctx, bin, "notify-sql", "--install", "--config", cfg)
	install.Env = env
	if out, err := install.CombinedOutput(); err != nil {
		return fmt.Errorf("notify-sql --install: %w\n%s", err, out)
	}
	logPath := filepath.Join(b.dir, "fresh-daemon.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	daemon := exec.Command(bin, "--config", cfg)
	daemon.Env, daemon.Stdout, daemon.Stderr = env, logf, logf
	if err := daemon.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- daemon.Wait() }()
	defer func() {
		_ = daemon.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = daemon.Process.Kill()
			<-exited
		}
	}()
	daemonLog := func() string { out, _ := os.ReadFile(logPath); return string(out) }

	// Ready: the first run has created every user, the listener is up.
	metric := func(name string) float64 { return scrape("http://"+metricsAddr+"/metrics", name) }
	if err := waitFor(ctx, exited, 2*time.Minute, func() bool {
		return emu.RequestCount(http.MethodPost, emulator.RouteCustomers) >= fz.Users &&
			metric(`plugipay_sync_runs_total{outcome="success"}`) >= 1 && metric("plugipay_sync_listener_connected") == 1
	}); err != nil {
		return fmt.Errorf("daemon not ready: %w\n%s", err, daemonLog())
	}
	ids := make([]string, fz.Users)
	for i := range ids {
		c, ok := emu.CustomerByExternalID(strconv.Itoa(i + 1))
		if !ok {
			return fmt.Errorf("user %d not created by the first run", i+1)
		}
		ids[i] = c.ID
	}

	seq := 0
	measure := func(n int) (lat []time.Duration, readErrs int, err error) {
		for range n {
			seq++
			user := seq % fz.Users
			email := fmt.Sprintf("fresh%d-u%d@example.com", seq, user+1)
			if _, err := db.ExecContext(ctx, "UPDATE "+table+" SET email = $1, updated_at = now() WHERE id = $2", email, user+1); err != nil {
				return lat, readErrs, err
			}
			t0 := time.Now()
			d, errs, err := pollUntil(ctx, reader, ids[user], email, exited, 30*time.Second)
			readErrs += errs
			if err != nil {
				return lat, readErrs, fmt.Errorf("change %d (user %d): %w", seq, user+1, err)
			}
			lat = append(lat, d.Sub(t0))
			if fz.Gap > 0 {
				time.Sleep(fz.Gap)
			}
		}
		return lat, readErrs, nil
	}
	report := func(phase string, lat []time.Duration, target time.Duration) {
		med, p99 := percentile(lat, 0.50), percentile(lat, 0.99)
		b.info(s, phase+": changes measured", count(int64(len(lat))))
		b.info(s, phase+": median COMMIT to readable", ms(med))
		b.check(s, phase+": p99 COMMIT to readable", ms(p99), "<= "+ms(target), p99 <= target, false)
		b.logf("freshness %s: %d changes, median %s, p99 %s, max %s", phase, len(lat), ms(med), ms(p99), ms(slices.Max(lat)))
	}

	lat, readErrs, err := measure(fz.Changes)
	if err != nil {
		return fmt.Errorf("idle: %w\n%s", err, daemonLog())
	}
	report("idle", lat, targetFreshIdle)

	// The backfill: rows the trigger does not see, created by a full run.
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, "SET LOCAL session_replication_role = replica"); err != nil {
		tx.Rollback()
		return err
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO "+table+` (id, email, first_name, last_name, plan)
		SELECT g, 'new' || g || '@example.com', 'New' || g, 'Backfill' || g, 'pro' FROM generate_series($1::bigint, $2::bigint) g`,
		fz.Users+1, fz.Users+fz.Backfill); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	creates := func() int { return emu.RequestCount(http.MethodPost, emulator.RouteCustomers) }
	before := creates()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+rtAddr+"/v1/runs", nil)
	req.Header.Set("Authorization", "Bearer "+freshToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("POST /v1/runs: %s", resp.Status)
	}
	// Wait until the run has been creating for a couple of seconds, so
	// the measurement starts with the backfill at full speed.
	if err := waitFor(ctx, exited, time.Minute, func() bool { return creates()-before >= min(40, fz.Backfill/4) }); err != nil {
		return fmt.Errorf("backfill did not start: %w\n%s", err, daemonLog())
	}
	w0, c0, start := emu.WritesExecuted(), creates(), time.Now()
	blat, berrs, err := measure(fz.Changes)
	if err != nil {
		return fmt.Errorf("under backfill: %w\n%s", err, daemonLog())
	}
	window := time.Since(start)
	w1, c1 := emu.WritesExecuted(), creates()
	readErrs += berrs
	report("under backfill", blat, targetFreshBackfill)
	wps := float64(w1-w0) / window.Seconds()
	running := c1-before < fz.Backfill
	b.info(s, "under backfill: writes/s executed during the measurement", fmt.Sprintf("%.2f (%s creates, %s PATCHes in %s)",
		wps, count(int64(c1-c0)), count(int64((w1-w0)-(c1-c0))), secs(window.Seconds())))
	b.check(s, "under backfill: the run at the write ceiling throughout", fmt.Sprintf("%.0f%% of 20/s, run unfinished at the end: %v", 100*wps/writeCeiling, running),
		">= 90%, unfinished", wps >= 0.9*writeCeiling && running, false)
	b.info(s, "reader GETs refused or failed", count(int64(readErrs)))
	if metric(`plugipay_sync_runs_total{outcome="success"}`) != 1 {
		b.note("(11) a scheduled run other than the first finished during the measurement")
	}
	b.info(s, "set-up", fmt.Sprintf("%s users, %s-row backfill, +%s a request, GET every %s",
		count(int64(fz.Users)), count(int64(fz.Backfill)), freshLatency, freshReadEvery))
	return nil
}

// pollUntil GETs customer id every freshReadEvery (each GET in its own
// goroutine, at most four at once) until one returns email, and returns
// when that GET returned, and how many GETs failed.
func pollUntil(ctx context.Context, c *plugipay.Client, id, email string, exited <-chan error, limit time.Duration) (time.Time, int, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	found := make(chan time.Time, 1)
	var inflight, errs atomic.Int32
	var wg stdsync.WaitGroup
	defer wg.Wait()
	defer cancel()
	tick := time.NewTicker(freshReadEvery)
	defer tick.Stop()
	get := func() {
		defer wg.Done()
		defer inflight.Add(-1)
		cu, err := c.Customers.Get(ctx, id)
		now := time.Now()
		switch {
		case err != nil:
			if ctx.Err() == nil {
				errs.Add(1)
			}
		case cu.Email == email:
			select {
			case found <- now:
			default:
			}
		}
	}
	for {
		if inflight.Load() < 4 {
			inflight.Add(1)
			wg.Add(1)
			go get()
		}
		select {
		case t := <-found:
			return t, int(errs.Load()), nil
		case <-ctx.Done():
			return time.Time{}, int(errs.Load()), fmt.Errorf("new email not readable within %s", limit)
		case err := <-exited:
			return time.Time{}, int(errs.Load()), fmt.Errorf("daemon exited: %v", err)
		case <-tick.C:
		}
	}
}

// waitFor polls cond every 50 ms until it holds, the daemon exits or
// limit passes.
func waitFor(ctx context.Context, exited <-chan error, limit time.Duration, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", limit)
		}
		select {
		case err := <-exited:
			return fmt.Errorf("daemon exited: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// scrape returns the value of the Prometheus sample name (with its
// labels, as exposed) at url, or -1.
func scrape(url, name string) float64 {
	resp, err := http.Get(url)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 8<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

// daemonBinary builds the real plugipay-sync binary into the data
// directory, once per suite, and returns its path.
func (b *bench) daemonBinary(ctx context.Context) (string, error) {
	if b.daemon != "" {
		return b.daemon, nil
	}
	goCmd, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("build plugipay-sync: %w", err)
	}
	bin := filepath.Join(b.dir, "plugipay-sync")
	t := time.Now()
	if out, err := exec.CommandContext(ctx, goCmd, "build", "-o", bin, "github.com/plugipay-sync/plugipay-sync/cmd/plugipay-sync").CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build plugipay-sync: %w\n%s", err, out)
	}
	b.logf("built plugipay-sync in %s", time.Since(t).Round(time.Millisecond))
	b.daemon = bin
	return bin, nil
}

// freePort returns a loopback address nothing listens on now.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// percentile is the nearest-rank q-quantile of ds.
func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(ds))
	i := int(q*float64(len(s))+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%d ms", d.Round(time.Millisecond).Milliseconds())
}
