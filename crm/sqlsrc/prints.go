package sqlsrc

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"

	"github.com/zeebo/xxh3"

	"github.com/plugipay-sync/plugipay-sync/crm"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

// The print pass of a full scan (issue 15's acceptance, on top of issue
// 13's print pass): a warm no-op full scan prints every row instead of
// decoding it, and the reconciler decodes, through RecordsAt, only the
// rows whose print it has not confirmed. A print covers what turns a row
// into a record: the values of the mapped columns exactly as Records
// hands them to the mapper, and whether the soft-delete column marks the
// row deleted; PrintSeed covers the rest (the query, the columns, the
// mapping, the normalisation and the checks).
//
// A full scan only: an incremental read returns the changed rows alone,
// which Records decodes anyway, so Prints answers sync.ErrNoPrints and the
// run reads with Records. The print pass of a full scan reads in one
// snapshot and prepares the same watermark as Records would (see finish),
// so the run's Commit stores what a full Records read would have stored.

// printsVersion is the SQL source's part of the print seed: bump it when
// what a print covers, or how a value becomes the string the mapper
// reads, changes.
const printsVersion = "sql-prints-v1"

// keysPerQuery is how many keys RecordsAt reads back with one query.
const keysPerQuery = 500

// PrintSeed names everything that turns a row into a record: the
// database, the table or query, the key and soft-delete columns, the
// column mapping, the normalisation and the mapper's checks.
func (s *Source) PrintSeed() string {
	o := s.opts
	return fmt.Sprintf("%s %s %s id=%q updated_at=%q deleted=%q %+v %+v", printsVersion, crm.MapperVersion, s.key,
		o.IDColumn, o.UpdatedAtColumn, o.DeletedColumn, o.Columns, o.Normalize)
}

// printVals is the print of a row: whether it is soft-deleted, then each
// mapped value, length-prefixed, hashed with XXH3-128. A NULL is the
// empty string, as the mapper reads it.
func printVals[F string | []byte](deleted bool, vals []F, scratch []byte) (sync.Print, []byte) {
	b := append(scratch[:0], 0)
	if deleted {
		b[0] = 1
	}
	for _, v := range vals {
		b = binary.AppendUvarint(b, uint64(len(v)))
		b = append(b, v...)
	}
	h := xxh3.Hash128(b)
	var p sync.Print
	binary.BigEndian.PutUint64(p[:8], h.Hi)
	binary.BigEndian.PutUint64(p[8:], h.Lo)
	return p, b
}

// Prints yields the print of every row of a full scan, in one snapshot,
// without decoding it; Pos is the row's ordinal in the read and Key its
// id, as Records writes it in the Ref. On PostgreSQL it is one streamed
// query read with pgx's raw values (see pgPrints); on MySQL/MariaDB and
// SQLite it pages as Records does. An incremental read answers
// sync.ErrNoPrints. A read that reaches the end prepares the watermark
// Records would have prepared, for Commit.
func (s *Source) Prints(ctx context.Context) iter.Seq2[sync.RowPrint, error] {
	return func(yield func(sync.RowPrint, error) bool) {
		s.mu.Lock()
		s.complete = false
		s.pending.Clear()
		s.mu.Unlock()
		if s.opts.Incremental {
			w, ok, err := s.opts.Watermarks.Watermark(ctx, s.key)
			if err != nil {
				yield(sync.RowPrint{}, fmt.Errorf("crm: sql: %w", err))
				return
			}
			if ok && !crm.FullScanDue(w, s.opts.FullScanEvery, s.opts.FullScanInterval, s.opts.Now()) {
				yield(sync.RowPrint{}, fmt.Errorf("%w: an incremental read", sync.ErrNoPrints))
				return
			}
		}
		db, r, err := s.openRead(ctx)
		if err != nil {
			yield(sync.RowPrint{}, err)
			return
		}
		defer db.Close()
		if !r.full {
			yield(sync.RowPrint{}, fmt.Errorf("%w: an incremental read", sync.ErrNoPrints))
			return
		}
		if r.hz, err = s.horizon(ctx, db); err != nil {
			yield(sync.RowPrint{}, err)
			return
		}
		var ok bool
		if s.opts.Driver == Postgres {
			ok, err = s.pgPrints(ctx, db, r, yield)
		} else {
			ok, err = s.pagedPrints(ctx, db, r, yield)
		}
		if err != nil {
			yield(sync.RowPrint{}, err)
		}
		if !ok || err != nil {
			return
		}
		s.finish(r)
	}
}

// pagedPrints is Prints over the pages of Records, in its snapshot.
func (s *Source) pagedPrints(ctx context.Context, db *sql.DB, r *read, yield func(sync.RowPrint, error) bool) (bool, error) {
	q, done, err := s.begin(ctx, db)
	if err != nil {
		return true, err
	}
	defer done()
	r.q = q
	var pos int64
	return r.stream(ctx, func(raw []any, _ string) bool {
		deleted := r.fill(raw)
		var p sync.Print
		p, r.scratch = printVals(deleted, r.vals, r.scratch)
		pos++
		id := sync.IDHash(strings.TrimSpace(r.vals[s.mapper.ExternalIDField()]))
		return yield(sync.RowPrint{Print: p, Pos: pos, Key: str(raw[0]), ID: id}, nil)
	})
}

// RecordsAt reads the rows of rows again by their keys, keysPerQuery keys
// a query, in one snapshot of its own, and yields their records (or
// *sync.RecordError) as Records would. That snapshot is later than the
// print pass's: a row changed in between is read at its newer value (as
// a row changed during a run is read by the next one: the later read
// wins), and a row deleted in between is absent, as it is from the
// source. Rows of a key that several rows carry (a query: with a JOIN)
// are matched to the requested ones by print, and read in one query.
func (s *Source) RecordsAt(ctx context.Context, rows []sync.RowPrint) iter.Seq2[sync.Record, error] {
	return func(yield func(sync.Record, error) bool) {
		if len(rows) == 0 {
			return
		}
		db, r, err := s.openRead(ctx)
		if err != nil {
			yield(sync.Record{}, err)
			return
		}
		defer db.Close()
		r.full = true // refs name the id, as a full scan's do
		q, done, err := s.begin(ctx, db)
		if err != nil {
			yield(sync.Record{}, err)
			return
		}
		defer done()
		r.q = q
		for batch := range keyBatches(rows, keysPerQuery) {
			if !r.recordsAt(ctx, batch, yield) {
				return
			}
		}
	}
}

// keyBatches splits rows into batches of at most n keys, in order, every
// row of a key in the batch of its first row.
func keyBatches(rows []sync.RowPrint, n int) iter.Seq[[]sync.RowPrint] {
	return func(yield func([]sync.RowPrint) bool) {
		repeated := map[string][]sync.RowPrint{}
		counts := map[string]int{}
		for _, rp := range rows {
			counts[rp.Key]++
		}
		for _, rp := range rows {
			if counts[rp.Key] > 1 {
				repeated[rp.Key] = append(repeated[rp.Key], rp)
			}
		}
		var batch []sync.RowPrint
		keys := 0
		for _, rp := range rows {
			switch rs, ok := repeated[rp.Key]; {
			case !ok:
				batch = append(batch, rp)
			case rs != nil:
				batch = append(batch, rs...)
				repeated[rp.Key] = nil
			default:
				continue // in an earlier batch
			}
			if keys++; keys == n {
				if !yield(batch) {
					return
				}
				batch, keys = nil, 0
			}
		}
		if len(batch) > 0 {
			yield(batch)
		}
	}
}

// readRow is a row read again by RecordsAt.
type readRow struct {
	raw   []any
	run   int
	print sync.Print
	used  bool
}

// recordsAt reads the rows of one batch of keys and yields their
// records in the batch's order; it returns false when the stream ended.
func (r *read) recordsAt(ctx context.Context, batch []sync.RowPrint, yield func(sync.Record, error) bool) bool {
	s := r.s
	if err := ctx.Err(); err != nil {
		yield(sync.Record{}, fmt.Errorf("crm: sql: %w", context.Cause(ctx)))
		return false
	}
	a := args{d: s.dialect}
	from := s.from(&a)
	var marks []string
	for i, rp := range batch {
		if i > 0 && batch[i-1].Key == rp.Key {
			continue
		}
		marks = append(marks, a.add(rp.Key))
	}
	q := "SELECT " + strings.Join(r.cols, ", ") + " FROM " + from + " WHERE " + r.keys[0] + " IN (" +
		strings.Join(marks, ", ") + ") ORDER BY " + r.keys[0]
	rows, err := r.q.QueryContext(ctx, q, a.list...)
	if err != nil {
		yield(sync.Record{}, fmt.Errorf("crm: sql: query %s: %w", s.what(), err))
		return false
	}
	byKey := make(map[string][]*readRow, len(marks))
	for rows.Next() {
		raw := make([]any, len(r.cols))
		ptrs := make([]any, len(raw))
		for i := range raw {
			ptrs[i] = &raw[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			rows.Close()
			yield(sync.Record{}, fmt.Errorf("crm: sql: scan %s: %w", s.what(), err))
			return false
		}
		for i, v := range raw {
			if b, ok := v.([]byte); ok {
				raw[i] = slices.Clone(b) // drivers may reuse the buffer
			}
		}
		key := str(raw[0])
		deleted := r.fill(raw)
		rr := &readRow{raw: raw, run: len(byKey[key]) + 1}
		rr.print, r.scratch = printVals(deleted, r.vals, r.scratch)
		byKey[key] = append(byKey[key], rr)
	}
	err = rows.Err()
	rows.Close()
	if err != nil {
		yield(sync.Record{}, fmt.Errorf("crm: sql: read %s: %w", s.what(), err))
		return false
	}
	for _, rp := range batch {
		// The row of the key with the print asked for; else, the row
		// changed since its print, the first not yielded yet; none left:
		// it was deleted since, and is absent.
		var pick *readRow
		for _, rr := range byKey[rp.Key] {
			if rr.used {
				continue
			}
			if rr.print == rp.Print {
				pick = rr
				break
			}
			if pick == nil {
				pick = rr
			}
		}
		if pick == nil {
			continue
		}
		pick.used = true
		rec, rerr := r.decode(pick.raw, r.ref(rp.Key, pick.run))
		var ok bool
		if rerr != nil {
			ok = yield(sync.Record{}, rerr)
		} else {
			ok = yield(rec, nil)
		}
		if !ok {
			return false
		}
	}
	return true
}

// errStopped ends a pgPrints whose consumer stopped.
var errStopped = errors.New("stopped")
