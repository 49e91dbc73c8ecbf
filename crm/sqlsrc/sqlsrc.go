// Package sqlsrc is the SQL source: users read from a table or a SELECT in
// PostgreSQL (pgx), MySQL/MariaDB (go-sql-driver/mysql) or SQLite (mattn),
// streamed with keyset pagination (never OFFSET) on id for a full scan and
// on (updated_at, id) for an incremental read, every page of one read in
// one snapshot (see begin).
//
// In incremental mode it reads only rows whose updated_at is at or after
// the stored watermark minus an overlap window (so a row committed late
// with an older updated_at is still read), and never moves the watermark
// past a transaction that was open when it read (see horizon). Every N
// runs, or when the last full scan is older than a set interval, it reads
// everything, which is what lets the reconciler see hard-deleted rows as
// gone.
package sqlsrc

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"iter"
	"regexp"
	"slices"
	"strconv"
	"strings"
	stdsync "sync"
	"time"

	"github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib" // registers "pgx"
	_ "github.com/mattn/go-sqlite3"    // registers "sqlite3"

	"github.com/plugipay-sync/plugipay-sync/crm"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

var (
	_ sync.PartialSource = (*Source)(nil)
	_ sync.Committer     = (*Source)(nil)
	_ sync.PrintSource   = (*Source)(nil)
)

// Drivers.
const (
	Postgres = "postgres"
	MySQL    = "mysql"
	SQLite   = "sqlite"
)

// Defaults of Options.
const (
	DefaultPageSize      = 1000
	DefaultOverlap       = 5 * time.Minute
	DefaultFullScanEvery = 24
)

// Options configures a SQL source.
type Options struct {
	// Driver is Postgres, MySQL (also MariaDB) or SQLite.
	Driver string
	// DSN is the driver's data source name. For MySQL parseTime=true,
	// loc=UTC and time_zone='+00:00' are set.
	DSN string
	// Table names the table (or schema.table); Query gives a SELECT
	// instead, which is read as a subquery. Set one.
	Table string
	Query string
	// TenantColumn and Tenant bind the source to one tenant of a shared
	// table (platform mode, issue 19): every read, keyed read and print
	// pass sees only the rows whose TenantColumn equals Tenant, sent as a
	// bound parameter, never spliced into the SQL. Both or neither.
	TenantColumn string
	Tenant       string
	// IDColumn and UpdatedAtColumn are the keysets: a full scan pages on
	// the id (give it an index: the primary key), an incremental read on
	// (updated_at, id) (give it an index on both). The id should be
	// unique and NOT NULL.
	IDColumn        string
	UpdatedAtColumn string
	// DeletedColumn, if set, marks rows whose value is not NULL, false, 0
	// or empty as deleted users (a deleted_at or is_deleted column).
	DeletedColumn string
	// Columns maps customer fields to columns.
	Columns   crm.ColumnMap
	Normalize crm.Normalize
	// PageSize is how many rows one query reads.
	PageSize int
	// Incremental turns on the watermark; Watermarks must be set.
	Incremental bool
	// Overlap is re-read below the watermark on every incremental read.
	Overlap time.Duration
	// FullScanEvery makes every N-th read a full scan (0: never by count);
	// FullScanInterval makes a read a full scan when the last one is older
	// (0: never by age).
	FullScanEvery    int
	FullScanInterval time.Duration
	Watermarks       crm.WatermarkStore
	// Now is the clock; tests fix it.
	Now func() time.Time
}

// Source streams users from a SQL database.
type Source struct {
	opts   Options
	mapper *crm.Mapper
	dialect
	key string // watermark key
	// complete is whether the last finished read was a full scan;
	// pending the watermark it prepared, for Commit.
	mu       stdsync.Mutex
	complete bool
	pending  crm.PendingWatermark
}

var (
	identRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$`)
	columnRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// New validates opts. It does not connect: the database is opened on every
// read, so the daemon starts while the database is down.
func New(opts Options) (*Source, error) {
	d, ok := dialects[opts.Driver]
	if !ok {
		return nil, fmt.Errorf("crm.sql.driver: %q is not one of postgres, mysql, sqlite", opts.Driver)
	}
	if opts.DSN == "" {
		return nil, errors.New("crm.sql.dsn: required")
	}
	dsn, err := sessionDSN(opts.Driver, opts.DSN)
	if err != nil {
		return nil, err
	}
	opts.DSN = dsn
	switch {
	case (opts.Table == "") == (opts.Query == ""):
		return nil, errors.New("crm.sql: set table or query, not both")
	case opts.Table != "" && !identRE.MatchString(opts.Table):
		return nil, fmt.Errorf("crm.sql.table: %q is not a plain table name (letters, digits, _ and one optional schema.)", opts.Table)
	case opts.Query != "" && !strings.HasPrefix(strings.ToUpper(strings.TrimSpace(opts.Query)), "SELECT"):
		return nil, errors.New("crm.sql.query: must be a SELECT")
	case opts.TenantColumn != "" && !columnRE.MatchString(opts.TenantColumn):
		return nil, fmt.Errorf("crm.sql.tenant_column: %q is not a plain column name (letters, digits and _)", opts.TenantColumn)
	case (opts.TenantColumn == "") != (opts.Tenant == ""):
		return nil, errors.New("crm.sql.tenant_column: a tenant-bound source needs both the column and the tenant id")
	}
	if opts.IDColumn == "" {
		opts.IDColumn = "id"
	}
	if opts.UpdatedAtColumn == "" {
		opts.UpdatedAtColumn = "updated_at"
	}
	if opts.PageSize <= 0 {
		opts.PageSize = DefaultPageSize
	}
	if opts.Overlap < 0 {
		return nil, errors.New("crm.sql.overlap: must not be negative")
	}
	if opts.Incremental && opts.Watermarks == nil {
		return nil, errors.New("crm.sql.incremental: needs a watermark store")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	mp, err := crm.NewMapper(opts.Columns, opts.Normalize, "crm.sql.columns")
	if err != nil {
		return nil, err
	}
	what := opts.Table
	if what == "" {
		h := sha256.Sum256([]byte(opts.Query))
		what = "query:" + hex.EncodeToString(h[:8])
	}
	return &Source{opts: opts, mapper: mp, dialect: d, key: "sql:" + opts.Driver + ":" + what}, nil
}

// sessionDSN is the DSN every connection of the source opens with: for
// MySQL, parseTime and a session pinned to UTC.
func sessionDSN(driver, dsn string) (string, error) {
	if driver != MySQL {
		return dsn, nil
	}
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return "", fmt.Errorf("crm.sql.dsn: not a MySQL DSN (user:pass@tcp(host:3306)/db): %v", err)
	}
	cfg.ParseTime = true
	// Pin the session to UTC: TIMESTAMP values are converted to the
	// session time zone, which otherwise follows the server's
	// time_zone (issue 15: a change from +07:00 to +00:00 hid updated
	// rows for 7 hours). Parameters are sent, and DATETIMEs read, in
	// UTC too.
	cfg.Loc = time.UTC
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	cfg.Params["time_zone"] = "'+00:00'"
	return cfg.FormatDSN(), nil
}

// WatermarkKey is the key the source's watermark is stored under.
func (s *Source) WatermarkKey() string { return s.key }

// LastReadComplete reports whether the last finished read was a full scan
// that reached the end (see sync.PartialSource).
func (s *Source) LastReadComplete() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.complete
}

// Records streams the rows, one page per query, all read in one snapshot
// (see begin). A row whose values fail the checks is yielded as a
// *sync.RecordError with Ref "id=<id>". A connection or query failure, a
// mapped column the table lacks, and ctx being done end the stream. A read
// that reaches the end prepares the new watermark, which Commit stores.
func (s *Source) Records(ctx context.Context) iter.Seq2[sync.Record, error] {
	return func(yield func(sync.Record, error) bool) {
		s.mu.Lock()
		s.complete = false
		s.pending.Clear()
		s.mu.Unlock()
		db, r, err := s.openRead(ctx)
		if err != nil {
			yield(sync.Record{}, err)
			return
		}
		defer db.Close()
		// The horizon is read before the snapshot is taken: see horizon.
		if r.hz, err = s.horizon(ctx, db); err != nil {
			yield(sync.Record{}, err)
			return
		}
		q, done, err := s.begin(ctx, db)
		if err != nil {
			yield(sync.Record{}, err)
			return
		}
		defer done()
		r.q = q
		ok, err := r.stream(ctx, func(raw []any, ref string) bool {
			rec, rerr := r.decode(raw, ref)
			if rerr != nil {
				return yield(sync.Record{}, rerr)
			}
			return yield(rec, nil)
		})
		if err != nil {
			yield(sync.Record{}, err)
		}
		if !ok || err != nil {
			return
		}
		s.finish(r)
	}
}

// querier is a *sql.Tx (the snapshot) or, where there is none, the *sql.DB.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// read is one Records call.
type read struct {
	s    *Source
	q    querier
	cols []string  // quoted select list: id, updated_at, [deleted], mapped fields
	keys [2]string // quoted id and updated_at columns
	// full is a full scan; lower is the incremental lower bound.
	full  bool
	prev  crm.Watermark
	lower time.Time
	hz    horizon
	maxAt time.Time
	vals  []string
	// scratch is the buffer prints are built in.
	scratch []byte
	// The keyset position: the key of the last row read, and how many
	// consecutive rows carried it (see page).
	lastAt, lastID any
	run            int
}

// from is the FROM clause every query of the source reads, aliased src.
// A tenant-bound source filters it on the tenant column with the tenant
// as a's first parameter: call from before adding any other parameter,
// so that with "?" placeholders the order of a's list is the order of
// the placeholders in the text (from comes first in every query).
func (s *Source) from(a *args) string {
	base := "(" + strings.TrimRight(strings.TrimSpace(s.opts.Query), ";") + ")"
	if s.opts.Table != "" {
		base = s.quoteTable(s.opts.Table)
	}
	if s.opts.TenantColumn == "" {
		return base + " src"
	}
	return "(SELECT * FROM " + base + " t WHERE t." + s.quote(s.opts.TenantColumn) + " = " + a.add(s.opts.Tenant) + ") src"
}

// newRead checks the columns against the source and picks the mode.
func (s *Source) newRead(ctx context.Context, db *sql.DB) (*read, error) {
	a := args{d: s.dialect}
	rows, err := db.QueryContext(ctx, "SELECT * FROM "+s.from(&a)+" WHERE 1=0", a.list...)
	if err != nil {
		return nil, fmt.Errorf("crm: sql: read the columns of %s: %w", s.what(), err)
	}
	have, err := rows.Columns()
	rows.Close()
	if err != nil {
		return nil, fmt.Errorf("crm: sql: %w", err)
	}
	resolve := func(key, col string) (string, error) {
		if i := slices.Index(have, col); i >= 0 {
			return have[i], nil
		}
		for _, h := range have {
			if strings.EqualFold(h, col) {
				return h, nil
			}
		}
		return "", fmt.Errorf("%s: column %q not in %s (have: %s)", key, col, s.what(), strings.Join(have, ", "))
	}
	r := &read{s: s, full: true}
	var names []string
	for _, c := range []struct{ key, col string }{
		{"crm.sql.id_column", s.opts.IDColumn},
		{"crm.sql.updated_at_column", s.opts.UpdatedAtColumn},
		{"crm.sql.deleted_column", s.opts.DeletedColumn},
	} {
		if c.col == "" {
			continue
		}
		n, err := resolve(c.key, c.col)
		if err != nil {
			return nil, err
		}
		names = append(names, n)
	}
	for _, f := range s.mapper.Fields() {
		n, err := resolve("crm.sql.columns", f)
		if err != nil {
			return nil, err
		}
		names = append(names, n)
	}
	for i, n := range names {
		q := s.quote(n)
		if i == 1 && s.opts.Driver == SQLite {
			// As text, mattn hands back what is stored instead of a
			// time.Time it would format differently: the keyset then
			// compares the stored value with itself exactly.
			q = "CAST(" + q + " AS TEXT)"
		}
		r.cols = append(r.cols, q)
	}
	r.keys = [2]string{s.quote(names[0]), s.quote(names[1])}
	r.vals = make([]string, len(s.mapper.Fields()))
	if s.opts.Incremental {
		w, ok, err := s.opts.Watermarks.Watermark(ctx, s.key)
		if err != nil {
			return nil, fmt.Errorf("crm: sql: %w", err)
		}
		r.prev = w
		if ok && !crm.FullScanDue(w, s.opts.FullScanEvery, s.opts.FullScanInterval, s.opts.Now()) {
			r.full = false
			r.lower = w.At.Add(-s.opts.Overlap)
		}
	}
	return r, nil
}

// openRead opens the database and prepares one read of it; the caller
// closes the *sql.DB. Records, Prints, RecordsAt and RecordsByID all
// start here.
func (s *Source) openRead(ctx context.Context) (*sql.DB, *read, error) {
	db, err := sql.Open(s.driverName, s.opts.DSN)
	if err != nil {
		return nil, nil, fmt.Errorf("crm: sql: %w", err)
	}
	r, err := s.newRead(ctx, db)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return db, r, nil
}

func (s *Source) what() string {
	if s.opts.Table != "" {
		return "table " + s.opts.Table
	}
	return "crm.sql.query"
}

// stream pages through the rows and hands each to emit with its Ref; it
// returns false when emit stopped it, and the error that ended it.
func (r *read) stream(ctx context.Context, emit func(raw []any, ref string) bool) (bool, error) {
	for first := true; ; first = false {
		q, params, limit := r.pageQuery(first)
		n, ok, err := r.page(ctx, q, params, emit)
		if !ok || err != nil {
			return ok, err
		}
		if n < limit {
			return true, nil
		}
	}
}

// page runs one query and hands its rows to emit; it returns how many rows
// the query returned.
//
// A page starts at the key of the last row read, inclusive, and skips the
// rows of that key already read: a query: whose JOIN gives one id several
// rows with one (updated_at, id) then has each of them read once even when
// a page ends between them (issue 15: "id > 7" skipped the second row
// silently). Each repeat gets its own Ref, so the reconciler reports the
// id as duplicated rather than syncing one row by sort order.
func (r *read) page(ctx context.Context, q string, params []any, emit func(raw []any, ref string) bool) (n int, ok bool, err error) {
	s := r.s
	if err := ctx.Err(); err != nil {
		return 0, true, fmt.Errorf("crm: sql: %w", context.Cause(ctx))
	}
	rows, err := r.q.QueryContext(ctx, q, params...)
	if err != nil {
		return 0, true, fmt.Errorf("crm: sql: query %s: %w", s.what(), err)
	}
	defer rows.Close()
	raw := make([]any, len(r.cols))
	ptrs := make([]any, len(raw))
	for i := range raw {
		ptrs[i] = &raw[i]
	}
	skip := r.run // rows of the last key that the previous page read
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return n, true, fmt.Errorf("crm: sql: scan %s: %w", s.what(), err)
		}
		n++
		at, id := keyParam(raw[1]), keyParam(raw[0])
		if r.run > 0 && keyEqual(id, r.lastID) && (r.full || keyEqual(at, r.lastAt)) {
			if skip > 0 {
				skip--
				continue
			}
			r.run++
		} else {
			skip = 0
			r.lastAt, r.lastID, r.run = at, id, 1
		}
		if t, ok := s.toTime(raw[1]); ok && t.After(r.maxAt) {
			r.maxAt = t
		}
		if !emit(raw, r.ref(str(raw[0]), r.run)) {
			return n, false, nil
		}
	}
	if err := rows.Err(); err != nil {
		return n, true, fmt.Errorf("crm: sql: read %s: %w", s.what(), err)
	}
	return n, true, nil
}

// ref is the Ref of the run-th row read with the key id.
func (r *read) ref(id string, run int) string {
	ref := "id=" + id
	if run > 1 {
		ref += fmt.Sprintf(" (row %d with this %s)", run, r.keyName())
	}
	return ref
}

// fill sets r.vals to the mapped values of a scanned row and returns
// whether the row is soft-deleted.
func (r *read) fill(raw []any) (deleted bool) {
	off := 2
	if r.s.opts.DeletedColumn != "" {
		off = 3
	}
	for i := range r.vals {
		r.vals[i] = str(raw[off+i])
	}
	return off == 3 && truthy(raw[2])
}

// decode builds the record of a scanned row, or the RecordError saying
// why it cannot be synced; either carries the row's print (see Prints).
func (r *read) decode(raw []any, ref string) (sync.Record, *sync.RecordError) {
	deleted := r.fill(raw)
	var p sync.Print
	p, r.scratch = printVals(deleted, r.vals, r.scratch)
	if deleted {
		if id := strings.TrimSpace(r.vals[0]); id != "" {
			return sync.Record{ExternalID: id, Ref: ref, Deleted: true, Print: p}, nil
		}
		return sync.Record{}, &sync.RecordError{Ref: ref, Reason: "deleted row without an externalId", Print: p}
	}
	rec, rerr := r.s.mapper.Record(r.vals, ref)
	if rerr != nil {
		rerr.Print = p
		return sync.Record{}, rerr
	}
	rec.Print = p
	return rec, nil
}

// finish prepares the new watermark after a read that reached the end;
// Commit stores it.
func (s *Source) finish(r *read) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.complete = r.full
	if !s.opts.Incremental {
		return
	}
	s.pending.Set(r.next())
}

// Commit stores the watermark the last complete read prepared (see
// sync.Committer): the reconciler calls it once the run's writes are done.
func (s *Source) Commit(ctx context.Context) error {
	if err := s.pending.Commit(ctx, s.opts.Watermarks, s.key); err != nil {
		return fmt.Errorf("crm: sql: %w", err)
	}
	return nil
}

// keyEqual compares two scanned keyset values.
func keyEqual(a, b any) bool {
	switch a := a.(type) {
	case time.Time:
		b, ok := b.(time.Time)
		return ok && a.Equal(b)
	case nil, string, int64, int32, float64, bool:
		return a == b
	}
	return fmt.Sprint(a) == fmt.Sprint(b)
}

// keyParam turns a scanned keyset value into a query parameter.
func keyParam(v any) any {
	if b, ok := v.([]byte); ok {
		return string(b)
	}
	return v
}

// str turns a scanned value into the string the mapper reads.
func str(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case []byte:
		return string(v)
	case time.Time:
		return v.UTC().Format(time.RFC3339Nano)
	case int64:
		return strconv.FormatInt(v, 10)
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(v)
	}
	return fmt.Sprint(v)
}

// truthy: a soft-delete value that marks the row deleted.
func truthy(v any) bool {
	switch v := v.(type) {
	case nil:
		return false
	case bool:
		return v
	case int64:
		return v != 0
	case float64:
		return v != 0
	}
	switch s := strings.ToLower(strings.TrimSpace(str(v))); s {
	case "", "0", "false", "f", "no", "n":
		return false
	}
	return true
}

// sqliteTimeLayouts are the text forms SQLite timestamps are read in.
var sqliteTimeLayouts = []string{
	"2006-01-02 15:04:05.999999999-07:00", "2006-01-02T15:04:05.999999999-07:00",
	"2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05.999999999", "2006-01-02",
}

// toTime reads an updated_at value.
func (d dialect) toTime(v any) (time.Time, bool) {
	switch v := v.(type) {
	case time.Time:
		return v, true
	case int64: // SQLite unix seconds
		return time.Unix(v, 0).UTC(), true
	case []byte:
		return parseTime(string(v))
	case string:
		return parseTime(v)
	}
	return time.Time{}, false
}

func parseTime(s string) (time.Time, bool) {
	for _, l := range sqliteTimeLayouts {
		if t, err := time.Parse(l, strings.TrimSuffix(s, "Z")); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}

// dialect is what differs between the databases.
type dialect struct {
	driverName string
	quoteChar  string
	dollar     bool // $1 placeholders
	textTime   bool // timestamps compared as SQLite text
	// rowValue: the engine turns (updated_at, id) >= (?, ?) into an index
	// range (PostgreSQL, SQLite); MySQL and MariaDB scan the whole table
	// for it and get the expanded form instead (see pageQuery).
	rowValue bool
}

var dialects = map[string]dialect{
	Postgres: {driverName: "pgx", quoteChar: `"`, dollar: true, rowValue: true},
	MySQL:    {driverName: "mysql", quoteChar: "`"},
	SQLite:   {driverName: "sqlite3", quoteChar: `"`, textTime: true, rowValue: true},
}

func (d dialect) quote(ident string) string {
	return d.quoteChar + strings.ReplaceAll(ident, d.quoteChar, d.quoteChar+d.quoteChar) + d.quoteChar
}

func (d dialect) quoteTable(t string) string {
	schema, table, ok := strings.Cut(t, ".")
	if !ok {
		return d.quote(t)
	}
	return d.quote(schema) + "." + d.quote(table)
}

// timeParam is the incremental lower bound as a parameter.
func (d dialect) timeParam(t time.Time) any {
	if d.textTime {
		// SQLite's CURRENT_TIMESTAMP form; stored text must sort the same.
		return t.UTC().Format("2006-01-02 15:04:05")
	}
	return t.UTC()
}

// args collects query parameters and writes their placeholders.
type args struct {
	d    dialect
	list []any
}

func (a *args) add(v any) string {
	a.list = append(a.list, v)
	if a.d.dollar {
		return "$" + strconv.Itoa(len(a.list))
	}
	return "?"
}
