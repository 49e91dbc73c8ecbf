package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/plugipay-sync/plugipay-sync/plugipay"
	"github.com/plugipay-sync/plugipay-sync/plugipay/emulator"
	"github.com/plugipay-sync/plugipay-sync/state"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

// Scenario (10), issue 18: verify of every customer, in a child process
// so that its peak RSS is its own (the driver holds the emulator and its
// customers).
const (
	modeVerify  = "verify"
	childURLEnv = "PLUGIPAY_BENCH_URL" // the emulator of the verify child
)

// verifyScenario is scenario (10): Verify customers already in the
// emulator and mapped (with their content) in the state DB, at the real
// read limit, none of them drifted. Its cost is one list request per 100
// customers and nothing else.
func (b *bench) verifyScenario(ctx context.Context) error {
	n := b.sz.Verify
	s := fmt.Sprintf("10 verify (%s customers)", count(int64(n)))
	csvPath, dbPath := filepath.Join(b.dir, "verify.csv"), filepath.Join(b.dir, "verify.db")
	if err := writeCSV(csvPath, 8_000_000, n, 0); err != nil {
		return err
	}
	recs, err := readRecords(ctx, csvPath, func(sync.Record) bool { return true })
	if err != nil {
		return err
	}
	e := startEmulator(emulator.Options{}) // limits off while seeding
	defer e.Close()
	free, err := e.client(-1, -1)
	if err != nil {
		return err
	}
	t := time.Now()
	if _, err := seedCustomers(ctx, benchDestination(free), recs, b.sz.Concurrency); err != nil {
		return err
	}
	// A run over an empty state DB rebuilds the cache from the list,
	// keeping each customer's content: every customer is comparable.
	rec, _, err := b.syncRun(ctx, csvPath, dbPath, free)
	if err != nil {
		return err
	}
	if rec.Counts.Unchanged != int64(n) {
		return fmt.Errorf("verify: the cold run left %+v, want %d unchanged", rec.Counts, n)
	}
	b.logf("verify: seeded and mapped %s customers in %s", count(int64(n)), time.Since(t).Round(time.Millisecond))

	e.SetRateLimits(emulator.DefaultReadRate, emulator.DefaultWriteRate)
	before := e.snapshot()
	res, err := runChildEnv(ctx, modeVerify, []string{childCSVEnv + "=" + csvPath, childDBEnv + "=" + dbPath, childURLEnv + "=" + e.srv.URL})
	if err != nil {
		return err
	}
	d := e.snapshot().sub(before)
	pages := (n + listPageSize - 1) / listPageSize
	b.check(s, "requests (real limits)", fmt.Sprintf("%s (%s list pages, %s other)", count(int64(d.total)), count(int64(d.list)), count(int64(d.total-d.list))),
		fmt.Sprintf("%s list pages, nothing else", count(int64(pages))),
		d.total == d.list && d.list <= pages+1 && res.Records == int64(n) && res.Counts.Updated == 0, true)
	b.info(s, "wall time (100 pages/s, the whole read limit)", secs(res.Seconds))
	b.info(s, "peak RSS (VmHWM; anon)", fmt.Sprintf("%s; %s", mib(res.PeakRSS), mib(res.PeakAnon)))
	b.note("(10) verify paces its list walk to verify.read_share of the read limit (default 0.5: twice the wall time above); here it has the whole limit, as nothing else runs")
	return nil
}

// verifyChild runs Verify over the state DB and reports what it compared
// (Records) and found drifted (Counts.Updated).
func verifyChild(ctx context.Context, csvPath, dbPath string) (childResult, error) {
	db, err := state.Open(ctx, dbPath)
	if err != nil {
		return childResult{}, err
	}
	defer db.Close()
	src, err := newSource(csvPath)
	if err != nil {
		return childResult{}, err
	}
	client, err := plugipay.New(plugipay.Options{BaseURL: os.Getenv(childURLEnv), KeyID: benchKeyID, Secret: benchSecret})
	if err != nil {
		return childResult{}, err
	}
	r := sync.New(src, benchDestination(client), db, sync.Options{})
	start := time.Now()
	rep, err := r.Verify(ctx, sync.VerifyOptions{PagesPerSecond: readCeiling})
	if err != nil {
		return childResult{}, err
	}
	return childResult{Records: rep.Compared, Seconds: time.Since(start).Seconds(), Requests: int(rep.Pages),
		Counts: sync.RunCounts{Updated: rep.Drifted, Read: rep.Listed}}, nil
}
