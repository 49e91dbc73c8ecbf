package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/plugipay-sync/plugipay-sync/crm"
	plugipaydest "github.com/plugipay-sync/plugipay-sync/destination/plugipay"
	"github.com/plugipay-sync/plugipay-sync/plugipay/emulator"
	"github.com/plugipay-sync/plugipay-sync/state"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

// Scenario (9), issue 13: a hostile CRM export, as real ones are, measured
// against an independent floor.
//
// The floor is a bare loop that reads every field with encoding/csv and
// computes SHA-256 over each row's fields, nothing else: no project code,
// so a slower source or hash cannot make the ratio look better (style
// item 36; issue 7's floor used the project's own source and hash, 4.15x
// this one). The ratio is the median of interleaved (floor, scan) pairs
// of child processes, never the best pair.

// Targets of issue 13.
const (
	targetHostileNoop     = 1.3     // no-op scan time / floor time
	targetHostileRate     = 500_000 // users/s, no-op scan
	targetHostileChanged  = 1.6     // plan phase time / floor time, 1% changed
	targetHostileRSSRatio = 1.3     // peak RSS at 1,000,000 over 100,000 users, run and dry run
	hostilePairs          = 5       // interleaved pairs; the median counts
)

// Child modes of (9).
const (
	modeRawFloor = "rawfloor" // encoding/csv + SHA-256 per row
	modeHScan    = "hscan"    // the reconciler over the hostile export, warm
	modeHPlan    = "hplan"    // --dry-run's plan over it
)

// hostileColumns maps the hostile export: the name from two columns.
var hostileColumns = crm.ColumnMap{
	ExternalID: "id", Email: "email", NameTemplate: "{First Name} {Last Name}", Phone: "phone",
	Metadata: map[string]string{"plan": "plan", "city": "city", "company": "company"},
}

var (
	hostileFirst = []string{"Budi", "Sri", "Nguyễn", "Đặng", "Zoë", "Jürgen", "สมชาย", "วิไล", "王", "李", "Анна", "Дмитрий",
		"محمد", "Ayşe", "Łukasz", "José"}
	hostileLast = []string{"Santoso", "Simanjuntak", "Thị Hương", "Müller", "García", "ใจดี", "小明", "Иванова",
		"O'Brien", "van der Berg", "Smith-Jones", "Ñúñez"}
	hostileCompany = []string{"Acme, Inc.", "PT \"Maju\" Jaya", "Müller & Söhne GmbH", "株式会社テスト", "", "Globex; Ltd"}
)

// hostileStats says what writeHostile put in the export.
type hostileStats struct {
	Rows, Invalid, DupRows int
	// Changed are the valid, unduplicated users whose name differs in the
	// changed export.
	Changed []string
}

// writeHostile writes an export of n users: a UTF-8 BOM, CRLF line ends,
// ids in random order, quoted fields with commas, quotes and newlines,
// non-Latin text, about 5% invalid rows (bad emails), about 0.1% of ids
// on two rows. With changeEvery > 0, one valid user in changeEvery has a
// new last name. The same n always gives the same file.
func writeHostile(path string, n, changeEvery int) (hostileStats, error) {
	var st hostileStats
	f, err := os.Create(path)
	if err != nil {
		return st, err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	bw.Write([]byte{0xEF, 0xBB, 0xBF})
	w := csv.NewWriter(bw)
	w.UseCRLF = true
	w.Write([]string{"id", "email", "First Name", "Last Name", "phone", "plan", "city", "company"})
	order := rand.New(rand.NewPCG(seed1, uint64(n))).Perm(n)
	dupOf := func(i int) (int, bool) { // ~0.1% of rows repeat another user's id
		r := rand.New(rand.NewPCG(uint64(i), seed2+1))
		if r.IntN(1000) == 0 {
			return r.IntN(n), true
		}
		return 0, false
	}
	dupIDs := map[int]bool{}
	for _, i := range order {
		if j, ok := dupOf(i); ok {
			dupIDs[j] = true
		}
	}
	for _, i := range order {
		r := rand.New(rand.NewPCG(uint64(i), seed2))
		id := i
		if j, ok := dupOf(i); ok {
			id = j
			st.DupRows++
		}
		first := hostileFirst[r.IntN(len(hostileFirst))]
		last := hostileLast[r.IntN(len(hostileLast))]
		if r.IntN(20) == 0 {
			last += "\nSecondLine" // a quoted multi-line name
		}
		email := fmt.Sprintf("user%d@Example.COM", i)
		invalid := r.IntN(20) == 0
		if invalid {
			email = fmt.Sprintf("user%d.example.com", i) // no @
			st.Invalid++
		}
		valid := !invalid && !dupIDs[id] && id == i
		if valid && changeEvery > 0 && i%changeEvery == changeEvery/2 {
			last += " Changed"
		}
		if valid && changeEvery > 0 && i%changeEvery == changeEvery/2 {
			st.Changed = append(st.Changed, externalID(i))
		}
		phone := fmt.Sprintf("+62 812-%04d-%04d", r.IntN(10000), r.IntN(10000))
		city := cities[r.IntN(len(cities))] + ", Indonesia"
		w.Write([]string{externalID(id), email, first, last, phone, plans[r.IntN(len(plans))], city, hostileCompany[r.IntN(len(hostileCompany))]})
		st.Rows++
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return st, err
	}
	if err := bw.Flush(); err != nil {
		return st, err
	}
	return st, f.Close()
}

// newHostileSource is the CSV source of the hostile export, with the
// default normalisation.
func newHostileSource(path string) (*crm.CSV, error) {
	return crm.NewCSV(crm.CSVOptions{Path: path, Columns: hostileColumns, Normalize: crm.DefaultNormalize()})
}

// rawFloor is (9)'s floor: encoding/csv and SHA-256 over each row's
// fields, no project code.
func rawFloor(csvPath string) (childResult, error) {
	f, err := os.Open(csvPath)
	if err != nil {
		return childResult{}, err
	}
	defer f.Close()
	start := time.Now()
	r := csv.NewReader(bufio.NewReaderSize(f, 64<<10))
	r.ReuseRecord = true
	r.FieldsPerRecord = -1
	var n int64
	var sink byte
	h := sha256.New()
	var sum [sha256.Size]byte
	for {
		row, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return childResult{}, err
		}
		h.Reset()
		for _, v := range row {
			io.WriteString(h, v)
			h.Write([]byte{0})
		}
		sink ^= h.Sum(sum[:0])[0]
		n++
	}
	_ = sink
	return childResult{Records: n - 1, Seconds: time.Since(start).Seconds()}, nil
}

// hostileScan runs the reconciler (or, with plan, the dry run's plan) over
// the hostile export with the warm state DB at dbPath, against an
// emulator that counts every request.
func hostileScan(ctx context.Context, csvPath, dbPath string, plan bool) (childResult, error) {
	e := startEmulator(emulator.Options{})
	defer e.Close()
	client, err := e.client(-1, -1)
	if err != nil {
		return childResult{}, err
	}
	db, err := state.Open(ctx, dbPath)
	if err != nil {
		return childResult{}, err
	}
	defer db.Close()
	src, err := newHostileSource(csvPath)
	if err != nil {
		return childResult{}, err
	}
	r := sync.New(src, benchDestination(client), db, sync.Options{SpillDir: filepath.Dir(dbPath)})
	start := time.Now()
	if plan {
		counts, err := r.Plan(ctx, func(sync.PlanEntry) {})
		if err != nil {
			return childResult{}, fmt.Errorf("plan: %w", err)
		}
		var total int64
		for _, c := range counts {
			total += c
		}
		return childResult{Records: total, Seconds: time.Since(start).Seconds(), Requests: e.TotalRequests()}, nil
	}
	run, err := r.Run(ctx)
	if err != nil {
		return childResult{}, fmt.Errorf("run: %w", err)
	}
	return childResult{Records: run.Counts.Read, Seconds: time.Since(start).Seconds(), Requests: e.TotalRequests(), Counts: run.Counts}, nil
}

// warmHostile writes the export and a state DB at dbPath as a run that
// synced it leaves it: a mapping for every valid row, then one real run
// (which records the known rejects and duplicate marks, and writes
// nothing). ids gives some users' customer ids.
func (b *bench) warmHostile(ctx context.Context, csvPath, dbPath string, n int, ids map[string]string, reuse bool) (st hostileStats, err error) {
	t := time.Now()
	// With reuse, a warm export of the same size kept in -dir serves the
	// next bench (5M rows take minutes to warm); only for a bench that
	// writes nothing (the 1% change rewrites mappings).
	marker := fmt.Sprintf("%s.warm-%d", dbPath, n)
	if reuse {
		if blob, err := os.ReadFile(marker); err == nil {
			if _, err := fmt.Sscanf(string(blob), "%d %d %d", &st.Rows, &st.Invalid, &st.DupRows); err == nil {
				b.logf("hostile: reusing the warm export %s", csvPath)
				return st, nil
			}
		}
		defer func() {
			if err == nil {
				os.WriteFile(marker, fmt.Appendf(nil, "%d %d %d", st.Rows, st.Invalid, st.DupRows), 0o600)
			}
		}()
	}
	if st, err = writeHostile(csvPath, n, 0); err != nil {
		return st, err
	}
	db, err := state.Open(ctx, dbPath)
	if err != nil {
		return st, err
	}
	src, err := newHostileSource(csvPath)
	if err != nil {
		db.Close()
		return st, err
	}
	ms := make([]sync.Mapping, 0, 5000)
	for rec, err := range src.Records(ctx) {
		var re *sync.RecordError
		if errors.As(err, &re) {
			continue
		}
		if err != nil {
			db.Close()
			return st, err
		}
		id, ok := ids[rec.ExternalID]
		if !ok {
			id = "cus_bench" + rec.ExternalID
		}
		ms = append(ms, sync.Mapping{ExternalID: rec.ExternalID, CustomerID: id, Hash: sync.ContentHash(rec)})
		if len(ms) == cap(ms) {
			if err := db.PutMappings(ctx, ms); err != nil {
				db.Close()
				return st, err
			}
			ms = ms[:0]
		}
	}
	err = db.PutMappings(ctx, ms)
	db.Close()
	if err != nil {
		return st, err
	}
	if _, err := runInChild(ctx, modeHScan, csvPath, dbPath); err != nil {
		return st, err
	}
	b.logf("hostile: %s rows (%s invalid, %s duplicated-id rows), cache warmed, known rejects recorded in %s",
		count(int64(st.Rows)), count(int64(st.Invalid)), count(int64(st.DupRows)), time.Since(t).Round(time.Millisecond))
	return st, nil
}

// hostile is scenario (9).
func (b *bench) hostile(ctx context.Context) error {
	const s = "9 hostile export"
	n, small := b.sz.ScanUsers, b.sz.SmallUsers
	csvPath, dbPath := filepath.Join(b.dir, "hostile.csv"), filepath.Join(b.dir, "hostile.db")
	st, err := b.warmHostile(ctx, csvPath, dbPath, n, nil, false)
	if err != nil {
		return err
	}
	b.info(s, "export", fmt.Sprintf("%s rows: random id order, BOM, CRLF, quoted newlines and commas, non-Latin; %s invalid, %s rows of duplicated ids",
		count(int64(st.Rows)), count(int64(st.Invalid)), count(int64(st.DupRows))))

	// No-op: interleaved pairs, the order alternating, the median counts.
	var ratios, scans, floors []float64
	var last childResult
	for i := range hostilePairs {
		modes := []string{modeRawFloor, modeHScan}
		if i%2 == 1 {
			modes[0], modes[1] = modes[1], modes[0]
		}
		var fl, sc childResult
		for _, m := range modes {
			res, err := runInChild(ctx, m, csvPath, dbPath)
			if err != nil {
				return err
			}
			if m == modeRawFloor {
				fl = res
			} else {
				sc = res
			}
		}
		b.logf("hostile no-op %d: floor %.2fs, scan %.2fs (%.2fx), %d requests", i+1, fl.Seconds, sc.Seconds, sc.Seconds/fl.Seconds, sc.Requests)
		ratios = append(ratios, sc.Seconds/fl.Seconds)
		scans = append(scans, sc.Seconds)
		floors = append(floors, fl.Seconds)
		last = sc
	}
	ratio := median(ratios)
	b.check(s, "no-op: API calls", count(int64(last.Requests)), "0", last.Requests == 0 && last.Counts.Created+last.Counts.Updated == 0, true)
	b.info(s, "floor: encoding/csv + SHA-256 per row (median)", fmt.Sprintf("%s (%s)", secs(median(floors)), rate(float64(n)/median(floors), "rows")))
	scanRate := float64(last.Records) / median(scans)
	b.check(s, "no-op scan rate (median)", rate(scanRate, "users"), ">= 500,000 users/s", scanRate >= targetHostileRate, false)
	b.check(s, fmt.Sprintf("no-op scan / floor (median of %d interleaved pairs)", hostilePairs), fmt.Sprintf("%.2fx", ratio),
		"<= 1.3x", ratio <= targetHostileNoop, false)

	// Memory: run and dry run, 100k against 1M.
	smallCSV, smallDB := filepath.Join(b.dir, "hostile-small.csv"), filepath.Join(b.dir, "hostile-small.db")
	if _, err := b.warmHostile(ctx, smallCSV, smallDB, small, nil, false); err != nil {
		return err
	}
	for _, m := range []string{modeHScan, modeHPlan} {
		big, err := runInChild(ctx, m, csvPath, dbPath)
		if err != nil {
			return err
		}
		lil, err := runInChild(ctx, m, smallCSV, smallDB)
		if err != nil {
			return err
		}
		what := "run"
		if m == modeHPlan {
			what = "--dry-run"
		}
		r := float64(big.PeakRSS) / float64(lil.PeakRSS)
		b.check(s, fmt.Sprintf("peak RSS %s, %s / %s users", what, count(int64(small)), count(int64(n))),
			fmt.Sprintf("%s / %s = %.2fx", mib(lil.PeakRSS), mib(big.PeakRSS), r), "<= 1.3x", r <= targetHostileRSSRatio, false)
	}
	return b.hostileChanged(ctx, csvPath, dbPath, floors)
}

// hostileMemory is (9)'s large-export memory check (-hostile-mem N): the
// peak RSS of a no-op run and of --dry-run over N hostile rows.
func (b *bench) hostileMemory(ctx context.Context, n int) error {
	const s = "9 hostile export"
	csvPath, dbPath := filepath.Join(b.dir, "hostile-mem.csv"), filepath.Join(b.dir, "hostile-mem.db")
	if _, err := b.warmHostile(ctx, csvPath, dbPath, n, nil, b.keep); err != nil {
		return err
	}
	for _, m := range []string{modeHScan, modeHPlan} {
		res, err := runInChild(ctx, m, csvPath, dbPath)
		if err != nil {
			return err
		}
		what := "run"
		if m == modeHPlan {
			what = "--dry-run"
		}
		b.logf("hostile %s over %s rows: %.1f s, peak RSS %s", what, count(int64(n)), res.Seconds, mib(res.PeakRSS))
		b.check(s, fmt.Sprintf("peak RSS %s, %s users", what, count(int64(n))), mib(res.PeakRSS), "< 100 MiB", res.PeakRSS < 100*1024, false)
	}
	return nil
}

// hostileChanged is (9) with 1% of the valid users changed: exactly their
// writes, and the plan phase against the floor.
func (b *bench) hostileChanged(ctx context.Context, csvPath, dbPath string, floors []float64) error {
	const s = "9 hostile export"
	n := b.sz.ScanUsers
	changedCSV := filepath.Join(b.dir, "hostile-changed.csv")
	st, err := writeHostile(changedCSV, n, b.sz.ChangeEvery)
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for _, id := range st.Changed {
		want[id] = true
	}
	src, err := newHostileSource(csvPath)
	if err != nil {
		return err
	}
	var recs []sync.Record
	for rec, err := range src.Records(ctx) {
		if err == nil && want[rec.ExternalID] {
			recs = append(recs, rec)
		}
	}
	e := startEmulator(emulator.Options{})
	defer e.Close()
	client, err := e.client(-1, -1)
	if err != nil {
		return err
	}
	ids, err := seedCustomers(ctx, plugipaydest.FromClient(client), recs, b.sz.Concurrency)
	if err != nil {
		return err
	}
	db, err := state.Open(ctx, dbPath)
	if err != nil {
		return err
	}
	defer db.Close()
	ms := make([]sync.Mapping, 0, len(recs))
	for _, r := range recs {
		ms = append(ms, sync.Mapping{ExternalID: r.ExternalID, CustomerID: ids[r.ExternalID], Hash: sync.ContentHash(r)})
	}
	if err := db.PutMappings(ctx, ms); err != nil {
		return err
	}
	// The last run: it read the export as it was, with these customers,
	// and confirmed every row (a state DB changed by hand is not trusted
	// by a print pass: issue 13's prints are kept per store version).
	last, err := sync.New(src, benchDestination(client), db, sync.Options{Concurrency: b.sz.Concurrency, SpillDir: b.dir}).Run(ctx)
	if err != nil {
		return fmt.Errorf("the last run before the change: %w", err)
	}
	if last.Counts.Created+last.Counts.Updated != 0 {
		return fmt.Errorf("the last run before the change wrote: %+v", last.Counts)
	}
	core, logs := observer.New(zapcore.InfoLevel)
	changed, err := newHostileSource(changedCSV)
	if err != nil {
		return err
	}
	before := e.snapshot()
	r := sync.New(changed, benchDestination(client), db, sync.Options{Concurrency: b.sz.Concurrency, SpillDir: b.dir,
		Logger: zap.New(core)})
	rec, err := r.Run(ctx)
	if err != nil {
		return err
	}
	d := e.snapshot().sub(before)
	var planSecs float64
	for _, l := range logs.FilterMessageSnippet("plan phase done").All() {
		planSecs = l.ContextMap()["took"].(time.Duration).Seconds()
	}
	b.check(s, "1% changed: writes", fmt.Sprintf("%s PATCH, %s create", count(int64(d.patch)), count(int64(d.create))),
		fmt.Sprintf("exactly %s PATCH", count(int64(len(recs)))), d.patch == len(recs) && d.create == 0 && rec.Counts.Updated == int64(len(recs)), true)
	pr := planSecs / median(floors)
	b.check(s, "1% changed: plan phase / floor (in-process, floor median)", fmt.Sprintf("%s, %.2fx", secs(planSecs), pr), "<= 1.6x", pr <= targetHostileChanged, false)
	return nil
}
