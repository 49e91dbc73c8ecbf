package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"fmt"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/plugipay-sync/plugipay-sync/crm"
	"github.com/plugipay-sync/plugipay-sync/crm/sqlsrc"
	"github.com/plugipay-sync/plugipay-sync/state"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

// Scenario 8 (issue 15): the SQL source over the real PostgreSQL.
//
// The data: a users table of n rows (id bigint primary key, email,
// first_name, last_name, plan, updated_at timestamptz) with an index on
// (updated_at, id); updated_at is spread over a year in an order
// unrelated to id, truncated to the second, so about 1 in 60 rows shares
// its updated_at with another and the keyset crosses pages inside equal
// timestamps.

// DefaultBenchPostgresDSN is the PostgreSQL scenario 8 uses unless -sql-dsn
// or PLUGIPAY_BENCH_PG_DSN says otherwise.
const DefaultBenchPostgresDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// Targets of issue 15.
const (
	targetSQLFloorRatio = 2.0 // full no-op scan / (COPY + SHA-256 per row), median of pairs
	targetSQLLinear     = 1.5 // largest / smallest time per row across sizes
)

// Child modes of scenario 8, and the environment they read.
const (
	modeSQLFloor = "sqlfloor" // COPY (SELECT ...) TO STDOUT and SHA-256 each row
	modeSQLScan  = "sqlscan"  // the reconciler over the SQL source, full scan, warm cache
	modeSQLInc   = "sqlinc"   // a full run, then the timed incremental no-op run
	modeSQLRead  = "sqlread"  // the SQL source alone, full scan, a content hash per record
	modeSQLPrint = "sqlprint" // the SQL source's print pass alone: every row printed, nothing decoded

	childSQLDSNEnv   = "PLUGIPAY_BENCH_PG_DSN"
	childSQLTableEnv = "PLUGIPAY_BENCH_SQL_TABLE"
)

// sqlColumns maps the bench table.
var sqlColumns = crm.ColumnMap{ExternalID: "id", Email: "email", NameTemplate: "{first_name} {last_name}",
	Metadata: map[string]string{"plan": "plan"}}

// newSQLSource is the SQL source of table; wm non-nil makes it incremental.
func newSQLSource(dsn, table string, wm crm.WatermarkStore) (*sqlsrc.Source, error) {
	return sqlsrc.New(sqlsrc.Options{Driver: sqlsrc.Postgres, DSN: dsn, Table: table, Columns: sqlColumns,
		Normalize: crm.DefaultNormalize(), Incremental: wm != nil, Watermarks: wm, FullScanEvery: 1000,
		Overlap: sqlsrc.DefaultOverlap})
}

// createUsersTable creates and fills a users table of n rows with a name
// of its own, and returns the name.
func createUsersTable(ctx context.Context, db *sql.DB, n int) (string, error) {
	var buf [4]byte
	_, _ = rand.Read(buf[:])
	name := fmt.Sprintf("plugipay_bench_users_%d_%s", n, hex.EncodeToString(buf[:]))
	for _, q := range []string{
		"CREATE UNLOGGED TABLE " + name + ` (id bigint PRIMARY KEY, email text NOT NULL, first_name text NOT NULL,
			last_name text NOT NULL, plan text NOT NULL, updated_at timestamptz NOT NULL)`,
		"INSERT INTO " + name + ` SELECT g, 'user' || g || '@example.com', 'First' || (g % 997), 'Last' || (g % 7919),
			(ARRAY['free', 'starter', 'pro', 'enterprise'])[1 + g % 4],
			timestamptz '2025-11-01 00:00:00+00' + ((g * 2654435761) % 31536000) * interval '1 second'
			FROM generate_series(1, ` + strconv.Itoa(n) + `) g`,
		"CREATE INDEX " + name + "_keyset ON " + name + " (updated_at, id)",
		"VACUUM ANALYZE " + name,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return name, fmt.Errorf("create %s: %w", name, err)
		}
	}
	return name, nil
}

// warmFrom stores a mapping for every record of recs with the hash of its
// content, as a run that synced them would have left it.
func warmFrom(ctx context.Context, db *state.DB, recs iter.Seq2[sync.Record, error]) (int, error) {
	const batch = 5000
	ms := make([]sync.Mapping, 0, batch)
	n := 0
	for rec, err := range recs {
		if err != nil {
			return n, err
		}
		ms = append(ms, sync.Mapping{ExternalID: rec.ExternalID, CustomerID: "cus_bench" + rec.ExternalID, Hash: sync.ContentHash(rec)})
		if len(ms) == batch {
			if err := db.PutMappings(ctx, ms); err != nil {
				return n, err
			}
			n += len(ms)
			ms = ms[:0]
		}
	}
	n += len(ms)
	return n, db.PutMappings(ctx, ms)
}

// sqlScenario is scenario (8).
func (b *bench) sqlScenario(ctx context.Context) error {
	const s = "8 sql (PostgreSQL)"
	dsn := b.sqlDSN
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.PingContext(ctx); err != nil {
		b.info(s, "skipped", "no PostgreSQL at -sql-dsn")
		b.note("(8) skipped: PostgreSQL not reachable (%v)", err)
		return nil
	}
	var tables []string
	defer func() {
		for _, t := range tables {
			_, _ = db.ExecContext(context.WithoutCancel(ctx), "DROP TABLE IF EXISTS "+t)
		}
	}()
	table := func(n int) (string, error) {
		t := time.Now()
		name, err := createUsersTable(ctx, db, n)
		tables = append(tables, name)
		b.logf("sql: created %s (%s rows) in %s", name, count(int64(n)), time.Since(t).Round(time.Millisecond))
		return name, err
	}

	users := b.sz.SQLUsers
	name, err := table(users)
	if err != nil {
		return err
	}
	// The warm cache: every row mapped with the hash of its content.
	dbPath := filepath.Join(b.dir, "users-sql.db")
	src, err := newSQLSource(dsn, name, nil)
	if err != nil {
		return err
	}
	store, err := state.Open(ctx, dbPath)
	if err != nil {
		return err
	}
	m, err := warmFrom(ctx, store, src.Records(ctx))
	store.Close()
	if err != nil {
		return err
	}
	b.logf("sql: warmed the cache with %s mappings", count(int64(m)))
	env := []string{childSQLDSNEnv + "=" + dsn, childSQLTableEnv + "=" + name, childDBEnv + "=" + dbPath}
	// The first run over the warm cache reads every row with Records (no
	// prints yet) and keeps the prints of the rows it confirmed, as every
	// finished run does: the no-op scans below are print passes.
	first, err := runChildEnv(ctx, modeSQLScan, env)
	if err != nil {
		return err
	}
	b.logf("sql: first run (Records, keeps the prints) %.2fs, %d requests", first.Seconds, first.Requests)

	// The floor and the scan alternate, each in its own child; a read of
	// the table before the first pair warms PostgreSQL's cache.
	if _, err := runChildEnv(ctx, modeSQLFloor, env); err != nil {
		return err
	}
	var floors, scans, ratios []float64
	var last childResult
	for i := range b.sz.SQLPairs {
		fl, err := runChildEnv(ctx, modeSQLFloor, env)
		if err != nil {
			return err
		}
		sc, err := runChildEnv(ctx, modeSQLScan, env)
		if err != nil {
			return err
		}
		b.logf("sql no-op scan %d: floor %.2fs, scan %.2fs (%.2fx), %d requests", i+1, fl.Seconds, sc.Seconds, sc.Seconds/fl.Seconds, sc.Requests)
		floors, scans, ratios = append(floors, fl.Seconds), append(scans, sc.Seconds), append(ratios, sc.Seconds/fl.Seconds)
		if i == 0 || sc.Requests > last.Requests || sc.Counts.Unchanged < last.Counts.Unchanged {
			last = sc // the worst counts are the ones checked
		}
	}
	ratio := median(ratios)
	b.info(s, "users (rows, all unchanged)", count(int64(users)))
	b.check(s, "API calls, full no-op scan", count(int64(last.Requests)), "0",
		last.Requests == 0 && last.Counts.Unchanged == int64(users), true)
	b.info(s, "first run: every row decoded (Records), prints kept", fmt.Sprintf("%s, %s", secs(first.Seconds), rate(float64(users)/first.Seconds, "users")))
	b.info(s, "full no-op scan, print pass (median)", fmt.Sprintf("%s, %s", secs(median(scans)), rate(float64(users)/median(scans), "users")))
	b.info(s, "floor: COPY TO STDOUT + SHA-256 per row (median)", fmt.Sprintf("%s, %s", secs(median(floors)), rate(float64(users)/median(floors), "rows")))
	b.check(s, fmt.Sprintf("scan / floor (median of %d interleaved pairs)", len(ratios)), fmt.Sprintf("%.2fx", ratio), "<= 2.0x", ratio <= targetSQLFloorRatio, false)

	inc, err := runChildEnv(ctx, modeSQLInc, env)
	if err != nil {
		return err
	}
	b.info(s, "incremental no-op run (overlap 5m)", fmt.Sprintf("%s, %s rows read, %d API calls", secs(inc.Seconds), count(inc.Records), inc.Requests))

	// Linearity: the source's print pass alone (what a no-op full scan
	// reads) and Records alone (what a changed row or a first run reads)
	// at each size, median of three reads each.
	var perRow, perRowRead []float64
	var desc, descRead []string
	alone, aloneRead := 0.0, 0.0 // the source alone at the scan's size
	for _, n := range b.sz.SQLLinear {
		t := name
		if n != users {
			if t, err = table(n); err != nil {
				return err
			}
		}
		tenv := []string{childSQLDSNEnv + "=" + dsn, childSQLTableEnv + "=" + t}
		var runs, reads []float64
		for range 3 {
			for _, mode := range []string{modeSQLPrint, modeSQLRead} {
				r, err := runChildEnv(ctx, mode, tenv)
				if err != nil {
					return err
				}
				if r.Records != int64(n) {
					return fmt.Errorf("sql %s of %s: %d records, want %d", mode, t, r.Records, n)
				}
				if mode == modeSQLPrint {
					runs = append(runs, r.Seconds)
				} else {
					reads = append(reads, r.Seconds)
				}
			}
		}
		if n == users {
			alone, aloneRead = median(runs), median(reads)
		}
		us, usRead := median(runs)/float64(n)*1e6, median(reads)/float64(n)*1e6
		perRow, perRowRead = append(perRow, us), append(perRowRead, usRead)
		desc = append(desc, fmt.Sprintf("%s: %.2f µs", count(int64(n)), us))
		descRead = append(descRead, fmt.Sprintf("%s: %.2f µs", count(int64(n)), usRead))
		b.logf("sql %s rows: print pass %.2fs (%.2f µs/row), Records %.2fs (%.2f µs/row)", count(int64(n)), median(runs), us, median(reads), usRead)
		if n != users {
			_, _ = db.ExecContext(ctx, "DROP TABLE "+t)
		}
	}
	spread := slices.Max(perRow) / slices.Min(perRow)
	spreadRead := slices.Max(perRowRead) / slices.Min(perRowRead)
	b.info(s, "print pass alone, time per row (median of 3)", strings.Join(desc, ", "))
	b.check(s, "linearity (print pass): slowest / fastest time per row", fmt.Sprintf("%.2fx", spread), "<= 1.5x", spread <= targetSQLLinear, false)
	b.info(s, "Records alone (read, map, hash), time per row (median of 3)", strings.Join(descRead, ", "))
	b.info(s, "linearity (Records): slowest / fastest time per row", fmt.Sprintf("%.2fx", spreadRead))
	if alone > 0 {
		// Where the scan's time goes: the source's share against the rest
		// (the reconciler's sort and merge of the prints).
		b.info(s, "print pass alone / floor", fmt.Sprintf("%s, %.2fx", secs(alone), alone/median(floors)))
		b.info(s, "Records alone (read, map, hash) / floor", fmt.Sprintf("%s, %.2fx", secs(aloneRead), aloneRead/median(floors)))
	}
	return nil
}

// median of xs (the mean of the middle two for an even count).
func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// runSQLChild measures one scenario (8) mode in this process.
func runSQLChild(ctx context.Context, mode string) (childResult, error) {
	dsn, table, dbPath := os.Getenv(childSQLDSNEnv), os.Getenv(childSQLTableEnv), os.Getenv(childDBEnv)
	switch mode {
	case modeSQLFloor:
		return sqlFloor(ctx, dsn, table)
	case modeSQLRead:
		src, err := newSQLSource(dsn, table, nil)
		if err != nil {
			return childResult{}, err
		}
		return hashAll(ctx, src)
	case modeSQLPrint:
		src, err := newSQLSource(dsn, table, nil)
		if err != nil {
			return childResult{}, err
		}
		return printAll(ctx, src)
	case modeSQLScan:
		src, err := newSQLSource(dsn, table, nil)
		if err != nil {
			return childResult{}, err
		}
		return syncOnce(ctx, src, dbPath, nil)
	case modeSQLInc:
		src, err := newSQLSource(dsn, table, &crm.MemoryWatermarks{})
		if err != nil {
			return childResult{}, err
		}
		// The first run reads everything and sets the watermark; the
		// second, timed, is the incremental no-op.
		return syncOnce(ctx, src, dbPath, func(r *sync.Reconciler) error { _, err := r.Run(ctx); return err })
	}
	return childResult{}, fmt.Errorf("unknown child mode %q", mode)
}

// printAll times src's print pass to the end: a source's part of a no-op
// scan by print.
func printAll(ctx context.Context, src sync.PrintSource) (childResult, error) {
	start := time.Now()
	var n int64
	var sink byte
	for rp, err := range src.Prints(ctx) {
		if err != nil {
			return childResult{}, err
		}
		sink ^= rp.Print[0]
		n++
	}
	_ = sink
	return childResult{Records: n, Seconds: time.Since(start).Seconds()}, nil
}

// sqlFloor is the floor of a SQL no-op scan: PostgreSQL's own fastest
// export of the mapped columns, COPY (SELECT ...) TO STDOUT, read by pgx
// with a SHA-256 of each row. No keyset, no mapping, no store.
func sqlFloor(ctx context.Context, dsn, table string) (childResult, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return childResult{}, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	h := &rowHasher{}
	start := time.Now()
	_, err = conn.PgConn().CopyTo(ctx, h, "COPY (SELECT id, email, first_name, last_name, plan, updated_at FROM "+
		pgx.Identifier{table}.Sanitize()+") TO STDOUT")
	if err != nil {
		return childResult{}, err
	}
	h.flush()
	return childResult{Records: h.rows, Seconds: time.Since(start).Seconds()}, nil
}

// rowHasher hashes each line written to it.
type rowHasher struct {
	carry []byte
	rows  int64
	sink  byte
}

func (h *rowHasher) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			h.carry = append(h.carry, p...)
			break
		}
		line := p[:i]
		if len(h.carry) > 0 {
			line = append(h.carry, line...)
			h.carry = h.carry[:0]
		}
		sum := sha256.Sum256(line)
		h.sink ^= sum[0]
		h.rows++
		p = p[i+1:]
	}
	return n, nil
}

func (h *rowHasher) flush() {
	if len(h.carry) > 0 {
		sum := sha256.Sum256(h.carry)
		h.sink ^= sum[0]
		h.rows++
	}
}
