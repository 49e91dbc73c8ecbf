// Command plugipay-bench measures plugipay-sync against its two physical
// limits (issue 7): how fast it reads and compares the CRM locally, and
// Plugipay's rate ceiling (20 writes/s, 100 reads/s per workspace). It
// generates seeded CRM data in a temp dir, runs seven scenarios against the
// real reconciler, SQLite store, CSV source, SDK and emulator, and prints
// each figure next to its target. Ratios are taken in the same run, so a
// noisy machine moves both sides.
//
//	go run ./cmd/plugipay-bench            # the full suite (make bench), a few minutes
//	go run ./cmd/plugipay-bench -quick     # tiny sizes, seconds (the smoke test)
//
// The no-op scans run in a child process of this binary, so their peak RSS
// is their own. The rate-bound scenarios are scaled down to fit the suite
// in 10 minutes; the table says so.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// The emulator's key pair for every scenario.
const (
	benchKeyID  = "key_bench"
	benchSecret = "sk_bench_secret"
)

// Targets of issue 7.
const (
	targetScanRate      = 250_000 // users/s, no-op scan
	targetFloorRatio    = 2.0     // no-op scan time / floor time
	targetCeilingShare  = 0.95    // backfill creates/s over the write limit
	targetOverheadRatio = 0.9     // sync creates/s over bare creates/s
	targetRSSRatio      = 1.5     // peak RSS at 1,000,000 over 100,000 users
	writeCeiling        = 20.0    // Plugipay writes/s per workspace
	readCeiling         = 100.0   // Plugipay reads/s per workspace
	listPageSize        = 100     // customers per list request
)

// sizes are the scenario sizes; full are issue 7's, scaled where a
// scenario is bound by the rate limits.
type sizes struct {
	ScanUsers    int // (1), (2): users in the no-op scan and the incremental run
	SmallUsers   int // (6): the smaller scan
	ChangeEvery  int // (2): one user in ChangeEvery changes
	Backfill     int // (3): new users at the real limits
	Overhead     int // (4): creates per side
	ColdStart    int // (5): customers already in the emulator
	Naive        int // (5): users run through the create-then-409 path
	StoreRows    int // (7): mappings upserted
	StoreLookups int // (7): ids looked up
	Concurrency  int
	Repeat       int   // (1), (4), (7): best of Repeat alternated runs of each side
	SQLUsers     int   // (8): rows in the PostgreSQL table of the no-op scans
	SQLLinear    []int // (8): table sizes of the linearity measurement
	SQLPairs     int   // (8): interleaved floor/scan pairs (the median counts)
	Verify       int   // (10): customers verified
}

var fullSizes = sizes{
	ScanUsers: 1_000_000, SmallUsers: 100_000, ChangeEvery: 100,
	Backfill: 1200, Overhead: 2000, ColdStart: 100_000, Naive: 1000,
	StoreRows: 200_000, StoreLookups: 200_000, Concurrency: 8, Repeat: 3,
	SQLUsers: 1_000_000, SQLLinear: []int{100_000, 1_000_000, 10_000_000}, SQLPairs: 5,
	Verify: 100_000,
}

var quickSizes = sizes{
	ScanUsers: 4000, SmallUsers: 400, ChangeEvery: 100,
	Backfill: 20, Overhead: 100, ColdStart: 1000, Naive: 50,
	StoreRows: 5000, StoreLookups: 5000, Concurrency: 8, Repeat: 1,
	SQLUsers: 2000, SQLLinear: []int{1000, 2000}, SQLPairs: 1,
	Verify: 1000,
}

func main() {
	if mode := os.Getenv(childEnv); mode != "" {
		if err := runChild(mode, os.Stdout); err != nil {
			fmt.Fprintf(os.Stderr, "plugipay-bench child: %v\n", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "plugipay-bench: %v\n", err)
		os.Exit(1)
	}
}

// Status of a row.
const (
	statusOK   = "ok"
	statusMiss = "MISS"
	statusInfo = ""
)

// row is one figure of the table.
type row struct {
	Scenario string
	Metric   string
	Value    string
	Target   string
	Status   string
	// Exact marks a target that is a count (0 API calls, exactly N
	// PATCHes), which must hold at any size and speed; the others are
	// rates that depend on the machine.
	Exact bool
}

// bench is one run of the suite.
type bench struct {
	sz    sizes
	dir   string
	log   io.Writer
	rows  []row
	notes []string // printed under the table: what was scaled and how
	// big is the scan-size CSV and its warm state DB, shared by (1), (2),
	// (6) and (7).
	bigCSV, bigDB string
	sqlDSN        string        // (8), (11)
	fresh         freshSizes    // (11)
	plat          platformSizes // (12)
	// daemon is the plugipay-sync binary built for (11) and (12), once.
	daemon string
	// keep: the data directory was given (-dir) and is kept.
	keep bool
}

func (b *bench) add(r row) { b.rows = append(b.rows, r) }

// note adds a line printed under the table.
func (b *bench) note(format string, args ...any) {
	b.notes = append(b.notes, fmt.Sprintf(format, args...))
}

// check adds a row whose status is ok when pass holds.
func (b *bench) check(scenario, metric, value, target string, pass, exact bool) {
	st := statusMiss
	if pass {
		st = statusOK
	}
	b.add(row{Scenario: scenario, Metric: metric, Value: value, Target: target, Status: st, Exact: exact})
}

func (b *bench) info(scenario, metric, value string) {
	b.add(row{Scenario: scenario, Metric: metric, Value: value, Status: statusInfo})
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.log, "%s  "+format+"\n", append([]any{time.Now().UTC().Format("15:04:05")}, args...)...)
}

// run parses args, runs the scenarios and prints the table to stdout.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) ([]row, error) {
	fs := flag.NewFlagSet("plugipay-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	quick := fs.Bool("quick", false, "tiny sizes (seconds): checks that every scenario works, not how fast")
	dir := fs.String("dir", "", "directory for the generated data (default: a new temp dir, removed at the end)")
	prof := fs.String("cpuprofile", "", "directory to write CPU profiles of the no-op scan children to (floor.pprof, scan.pprof)")
	only := fs.String("only", "", "comma-separated scenario numbers to run (1-12, or 12a/12b for half of 12; 1 and 6 run together); default all")
	sz := fullSizes
	fs.IntVar(&sz.ScanUsers, "users", 0, "users in the no-op scan and incremental run (default 1,000,000)")
	fs.IntVar(&sz.Backfill, "backfill", 0, "new users in the backfill at the real limits (default 1,200 = 60 s)")
	fs.IntVar(&sz.ColdStart, "cold", 0, "customers in the emulator for the cold start (default 100,000)")
	fs.IntVar(&sz.Verify, "verify", 0, "customers verified in scenario 10 (default 100,000)")
	sqlDSN := fs.String("sql-dsn", cmp.Or(os.Getenv(childSQLDSNEnv), DefaultBenchPostgresDSN), "PostgreSQL of scenario 8 (env "+childSQLDSNEnv+")")
	fs.IntVar(&sz.SQLUsers, "sql-users", 0, "rows in scenario 8's table (default 1,000,000)")
	sqlLinear := fs.String("sql-linear", "", "comma-separated table sizes of scenario 8's linearity measurement (default 100000,1000000,10000000)")
	platTenants := fs.Int("tenants", 0, "tenants in scenario 12's no-op round (default 1,000)")
	platUsers := fs.Int("tenant-users", 0, "users per tenant in scenario 12's no-op round (default 1,000)")
	hostileMem := fs.Int("hostile-mem", 0, "with N > 0, only measure the peak RSS of a no-op run and of --dry-run over N hostile rows (issue 13: 5,000,000)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	base := fullSizes
	if *quick {
		base = quickSizes
	}
	if sz.ScanUsers == 0 {
		sz.ScanUsers = base.ScanUsers
		sz.SmallUsers = base.SmallUsers
	} else {
		sz.SmallUsers = max(sz.ScanUsers/10, 1)
	}
	for _, f := range []struct{ dst, def *int }{
		{&sz.Backfill, &base.Backfill}, {&sz.ColdStart, &base.ColdStart},
	} {
		if *f.dst == 0 {
			*f.dst = *f.def
		}
	}
	sz.ChangeEvery, sz.Overhead, sz.Naive = base.ChangeEvery, base.Overhead, base.Naive
	sz.StoreRows, sz.StoreLookups, sz.Concurrency, sz.Repeat = base.StoreRows, base.StoreLookups, base.Concurrency, base.Repeat
	sz.Naive = min(sz.Naive, sz.ColdStart)
	if sz.SQLUsers == 0 {
		sz.SQLUsers = base.SQLUsers
	}
	sz.SQLLinear, sz.SQLPairs = base.SQLLinear, base.SQLPairs
	if sz.Verify == 0 {
		sz.Verify = base.Verify
	}
	if *sqlLinear != "" {
		sz.SQLLinear = nil
		for f := range strings.SplitSeq(*sqlLinear, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 {
				return nil, fmt.Errorf("-sql-linear: %q is not a row count", f)
			}
			sz.SQLLinear = append(sz.SQLLinear, n)
		}
	}

	if *prof != "" {
		abs, err := filepath.Abs(*prof)
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(abs, 0o755); err != nil {
			return nil, err
		}
		os.Setenv(childProfEnv, abs) // read by the children runInChild starts
	}
	want := map[string]bool{}
	for s := range strings.SplitSeq(*only, ",") {
		if s = strings.TrimSpace(s); s != "" {
			want[s] = true
		}
	}
	if want["6"] {
		want["1"] = true
	}
	// 12a and 12b are the halves of 12.
	platParts := map[string]bool{"12a": want["12a"] || !want["12b"], "12b": want["12b"] || !want["12a"]}
	if want["12a"] || want["12b"] {
		want["12"] = true
	}
	runs := func(n string) bool { return len(want) == 0 || want[n] }

	b := &bench{sz: sz, log: stderr, dir: *dir, sqlDSN: *sqlDSN, keep: *dir != ""}
	b.fresh = b.freshSizes(*quick)
	b.plat = platformSizesFor(*quick)
	b.plat.NoopRound, b.plat.Writes = platParts["12a"], platParts["12b"]
	b.plat.Tenants, b.plat.UsersPer = cmp.Or(*platTenants, b.plat.Tenants), cmp.Or(*platUsers, b.plat.UsersPer)
	if b.dir == "" {
		d, err := os.MkdirTemp("", "plugipay-bench-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		b.dir = d
	} else if err := os.MkdirAll(b.dir, 0o700); err != nil {
		return nil, err
	}
	start := time.Now()
	b.logf("plugipay-bench: data in %s; %d CPUs, %s", b.dir, runtime.NumCPU(), runtime.Version())

	steps := []struct {
		n  string
		fn func(context.Context) error
	}{
		{"1", b.noopScan}, // with (6)
		{"2", b.incremental},
		{"3", b.backfill},
		{"4", b.overhead},
		{"5", b.coldStart},
		{"7", b.store},
		{"8", b.sqlScenario},
		{"9", b.hostile},
		{"10", b.verifyScenario},
		{"11", b.freshness},
		{"12", b.platform},
	}
	if *hostileMem > 0 {
		steps = []struct {
			n  string
			fn func(context.Context) error
		}{{"9", func(ctx context.Context) error { return b.hostileMemory(ctx, *hostileMem) }}}
	}
	for _, s := range steps {
		if !runs(s.n) {
			continue
		}
		if err := s.fn(ctx); err != nil {
			return b.rows, fmt.Errorf("scenario %s: %w", s.n, err)
		}
	}
	printTable(stdout, b.rows)
	if len(b.notes) > 0 {
		fmt.Fprintln(stdout, "\nScaled down to fit the suite in 10 minutes:")
		for _, n := range b.notes {
			fmt.Fprintln(stdout, "- "+n)
		}
	}
	fmt.Fprintf(stdout, "\nsuite took %s; %d CPUs, %s\n", time.Since(start).Round(time.Second), runtime.NumCPU(), runtime.Version())
	return b.rows, nil
}

// ensureBig generates the scan-size CSV and warms a state DB for it, once.
func (b *bench) ensureBig(ctx context.Context) error {
	if b.bigCSV != "" {
		return nil
	}
	csvPath, dbPath := filepath.Join(b.dir, "users.csv"), filepath.Join(b.dir, "users.db")
	if err := b.prepareScan(ctx, csvPath, dbPath, b.sz.ScanUsers); err != nil {
		return err
	}
	b.bigCSV, b.bigDB = csvPath, dbPath
	return nil
}

// printTable prints rows as a Markdown table, aligned for a terminal too.
func printTable(w io.Writer, rows []row) {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', tabwriter.Debug)
	fmt.Fprintln(tw, "| scenario\t metric\t result\t target\t \t")
	fmt.Fprintln(tw, "|---\t---\t---\t---\t---\t")
	for _, r := range rows {
		target := r.Target
		if target == "" {
			target = "-"
		}
		st := r.Status
		if st == statusInfo {
			st = " "
		}
		fmt.Fprintf(tw, "| %s\t %s\t %s\t %s\t %s\t\n", r.Scenario, r.Metric, r.Value, target, st)
	}
	tw.Flush()
}

// Formatting helpers.

func count(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

func rate(per float64, unit string) string {
	if per >= 1000 {
		return count(int64(per+0.5)) + " " + unit + "/s"
	}
	return fmt.Sprintf("%.2f %s/s", per, unit)
}

func secs(s float64) string {
	if s < 10 {
		return fmt.Sprintf("%.2f s", s)
	}
	return fmt.Sprintf("%.1f s", s)
}

func mib(kib int64) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }
