package sqlsrc

import (
	"context"
	"iter"
	"strings"

	"github.com/plugipay-sync/plugipay-sync/sync"
)

var _ sync.IDReader = (*Source)(nil)

// byIDChunk is the most ids one keyed query names.
const byIDChunk = 500

// RecordsByID reads the users ids with one keyed query on the external id
// column (a query per 500 ids), for the event path's targeted sync
// (sync.IDReader, issue 17): every row of each id, so a duplicated id and
// a soft-deleted row are seen as a full scan sees them. Rows are mapped
// and checked as Records maps them. It neither reads nor moves the
// watermark's state, and does not change LastReadComplete. Give the
// external id column an index (it is the primary key as a rule); an id is
// compared as the database compares the column with a text parameter.
func (s *Source) RecordsByID(ctx context.Context, ids []string) iter.Seq2[sync.Record, error] {
	return func(yield func(sync.Record, error) bool) {
		if len(ids) == 0 {
			return
		}
		db, r, err := s.openRead(ctx)
		if err != nil {
			yield(sync.Record{}, err)
			return
		}
		defer db.Close()
		r.full, r.q = true, db
		off := 2
		if s.opts.DeletedColumn != "" {
			off = 3
		}
		ext := strings.TrimPrefix(strings.TrimSuffix(r.cols[off], " AS TEXT)"), "CAST(")
		for len(ids) > 0 {
			chunk := ids[:min(len(ids), byIDChunk)]
			ids = ids[len(chunk):]
			a := args{d: s.dialect}
			from := s.from(&a)
			marks := make([]string, len(chunk))
			for i, id := range chunk {
				marks[i] = a.add(id)
			}
			q := "SELECT " + strings.Join(r.cols, ", ") + " FROM " + from +
				" WHERE " + ext + " IN (" + strings.Join(marks, ", ") + ") ORDER BY " + r.keys[0]
			r.lastAt, r.lastID, r.run = nil, nil, 0
			_, ok, err := r.page(ctx, q, a.list, func(raw []any, ref string) bool {
				rec, rerr := r.decode(raw, ref)
				if rerr != nil {
					return yield(sync.Record{}, rerr)
				}
				return yield(rec, nil)
			})
			if err != nil {
				yield(sync.Record{}, err)
				return
			}
			if !ok {
				return
			}
		}
	}
}
