package sqlsrc

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/plugipay-sync/plugipay-sync/sync"
)

// pgPrints is Prints on PostgreSQL: one query with no ORDER BY (a
// sequential scan, like COPY) in a REPEATABLE READ, READ ONLY transaction,
// streamed by pgx, whose raw values are printed without being scanned
// into Go values where their text is what Records reads (text, varchar,
// integers, booleans). A full scan needs no keyset: the snapshot holds
// still, pgx streams the rows as they come (memory stays flat), and the
// reconciler needs neither id order nor a resumable position (a broken
// read ends the run, as a broken page does). Issue 15 measured paging at
// 5.5 s a million rows against 0.55 s for COPY; the print pass had to drop
// both the pages and the per-value scanning to come near the floor.
func (s *Source) pgPrints(ctx context.Context, db *sql.DB, r *read, yield func(sync.RowPrint, error) bool) (bool, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return true, fmt.Errorf("crm: sql: %w", err)
	}
	defer conn.Close()
	err = conn.Raw(func(dc any) error {
		c := dc.(*stdlib.Conn).Conn()
		tx, err := c.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
		if err != nil {
			return fmt.Errorf("crm: sql: begin the read's snapshot: %w", err)
		}
		defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
		a := args{d: s.dialect}
		q := "SELECT " + strings.Join(r.cols, ", ") + " FROM " + s.from(&a)
		rows, err := tx.Query(ctx, q, append([]any{pgResultFormats}, a.list...)...)
		if err != nil {
			return fmt.Errorf("crm: sql: query %s: %w", s.what(), err)
		}
		defer rows.Close()
		m := c.TypeMap()
		fds := rows.FieldDescriptions()
		convs := make([]pgConv, len(fds))
		for i, fd := range fds {
			convs[i] = newPGConv(m, fd.DataTypeOID, fd.Format)
		}
		off := 2
		if s.opts.DeletedColumn != "" {
			off = 3
		}
		vals := make([][]byte, len(r.vals))
		idField := s.mapper.ExternalIDField()
		var buf, key []byte
		// The newest updated_at: a binary timestamp compares as its
		// microseconds, converted once at the end; other types as Records
		// reads them.
		at := convs[1]
		rawAt := at.oid == pgtype.TimestamptzOID || at.oid == pgtype.TimestampOID
		rawAt = rawAt && at.format == pgx.BinaryFormatCode
		maxRaw, haveRaw := int64(math.MinInt64), false
		var pos int64
		for rows.Next() {
			pos++
			if pos&4095 == 0 && ctx.Err() != nil {
				return fmt.Errorf("crm: sql: %w", context.Cause(ctx))
			}
			raw := rows.RawValues()
			if rawAt {
				if v := raw[1]; len(v) == 8 {
					if us := int64(binary.BigEndian.Uint64(v)); us != math.MaxInt64 && us != math.MinInt64 && (!haveRaw || us > maxRaw) {
						maxRaw, haveRaw = us, true
					}
				}
			} else if raw[1] != nil {
				v, err := at.value(raw[1])
				if err != nil {
					return fmt.Errorf("crm: sql: read %s: %w", s.what(), err)
				}
				if t, ok := s.toTime(v); ok && t.After(r.maxAt) {
					r.maxAt = t
				}
			}
			buf = buf[:0]
			for i := range vals {
				start := len(buf)
				var direct bool
				if buf, direct, err = convs[off+i].appendText(buf, raw[off+i]); err != nil {
					return fmt.Errorf("crm: sql: read %s: %w", s.what(), err)
				}
				if direct {
					vals[i] = raw[off+i]
				} else {
					vals[i] = buf[start:len(buf):len(buf)]
				}
			}
			deleted := false
			if off == 3 && raw[2] != nil {
				v, err := convs[2].value(raw[2])
				if err != nil {
					return fmt.Errorf("crm: sql: read %s: %w", s.what(), err)
				}
				deleted = truthy(v)
			}
			var p sync.Print
			p, r.scratch = printVals(deleted, vals, r.scratch)
			key = key[:0]
			kb, direct, err := convs[0].appendText(key, raw[0])
			if err != nil {
				return fmt.Errorf("crm: sql: read %s: %w", s.what(), err)
			}
			if direct {
				kb = raw[0]
			} else {
				key = kb
			}
			id := sync.IDHashBytes(bytes.TrimSpace(vals[idField]))
			if !yield(sync.RowPrint{Print: p, Pos: pos, Key: string(kb), ID: id}, nil) {
				return errStopped
			}
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("crm: sql: read %s: %w", s.what(), err)
		}
		if haveRaw {
			var b [8]byte
			binary.BigEndian.PutUint64(b[:], uint64(maxRaw))
			v, err := at.value(b[:])
			if err != nil {
				return fmt.Errorf("crm: sql: read %s: %w", s.what(), err)
			}
			if t, ok := s.toTime(v); ok && t.After(r.maxAt) {
				r.maxAt = t
			}
		}
		return nil
	})
	if errors.Is(err, errStopped) {
		return false, nil
	}
	return true, err
}

// pgResultFormats are the result formats database/sql gets from pgx's
// stdlib (binary for its intrinsic types, text for the others), so that
// a raw value here is the bytes Records' value was made from.
var pgResultFormats = pgx.QueryResultFormatsByOID{
	pgtype.BoolOID: 1, pgtype.ByteaOID: 1, pgtype.CIDOID: 1, pgtype.DateOID: 1,
	pgtype.Float4OID: 1, pgtype.Float8OID: 1, pgtype.Int2OID: 1, pgtype.Int4OID: 1,
	pgtype.Int8OID: 1, pgtype.OIDOID: 1, pgtype.TimestampOID: 1, pgtype.TimestamptzOID: 1,
	pgtype.XIDOID: 1,
}

// pgConv turns a raw value of one result column into the string Records
// hands the mapper (str of the value pgx's stdlib gives database/sql).
type pgConv struct {
	oid    uint32
	format int16
	value  func(src []byte) (any, error) // as stdlib's Rows.Next
}

// appendText appends the string Records reads for src to b; direct says
// it is src itself (nothing was appended).
func (c pgConv) appendText(b, src []byte) ([]byte, bool, error) {
	if src == nil {
		return b, false, nil
	}
	if c.format == pgx.TextFormatCode {
		switch c.oid {
		case pgtype.TextOID, pgtype.VarcharOID, pgtype.BPCharOID, pgtype.NameOID, pgtype.JSONOID, pgtype.JSONBOID:
			return b, true, nil
		}
	} else {
		switch {
		case (c.oid == pgtype.Int8OID && len(src) == 8):
			return strconv.AppendInt(b, int64(binary.BigEndian.Uint64(src)), 10), false, nil
		case (c.oid == pgtype.Int4OID && len(src) == 4):
			return strconv.AppendInt(b, int64(int32(binary.BigEndian.Uint32(src))), 10), false, nil
		case (c.oid == pgtype.Int2OID && len(src) == 2):
			return strconv.AppendInt(b, int64(int16(binary.BigEndian.Uint16(src))), 10), false, nil
		case c.oid == pgtype.BoolOID && len(src) == 1:
			return strconv.AppendBool(b, src[0] != 0), false, nil
		}
	}
	v, err := c.value(src)
	if err != nil {
		return b, false, err
	}
	return append(b, str(v)...), false, nil
}

// newPGConv mirrors pgx stdlib's Rows.initValueFuncs (v5.12): the Go value
// database/sql gets for each type, which str then writes.
func newPGConv(m *pgtype.Map, oid uint32, format int16) pgConv {
	c := pgConv{oid: oid, format: format}
	scan := func(dst any, out func() (any, error)) func([]byte) (any, error) {
		plan := m.PlanScan(oid, format, dst)
		return func(src []byte) (any, error) {
			if err := plan.Scan(src, dst); err != nil {
				return nil, err
			}
			return out()
		}
	}
	switch oid {
	case pgtype.BoolOID:
		var d bool
		c.value = scan(&d, func() (any, error) { return d, nil })
	case pgtype.ByteaOID, pgtype.JSONOID, pgtype.JSONBOID, pgtype.XMLOID:
		var d []byte
		c.value = scan(&d, func() (any, error) { return d, nil })
	case pgtype.CIDOID, pgtype.OIDOID, pgtype.XIDOID:
		var d pgtype.Uint32
		c.value = scan(&d, func() (any, error) { return d.Value() })
	case pgtype.DateOID:
		var d pgtype.Date
		c.value = scan(&d, func() (any, error) { return d.Value() })
	case pgtype.Float4OID:
		var d float32
		c.value = scan(&d, func() (any, error) { return float64(d), nil })
	case pgtype.Float8OID:
		var d float64
		c.value = scan(&d, func() (any, error) { return d, nil })
	case pgtype.Int2OID:
		var d int16
		c.value = scan(&d, func() (any, error) { return int64(d), nil })
	case pgtype.Int4OID:
		var d int32
		c.value = scan(&d, func() (any, error) { return int64(d), nil })
	case pgtype.Int8OID:
		var d int64
		c.value = scan(&d, func() (any, error) { return d, nil })
	case pgtype.TimestampOID:
		var d pgtype.Timestamp
		c.value = scan(&d, func() (any, error) { return d.Value() })
	case pgtype.TimestamptzOID:
		var d pgtype.Timestamptz
		c.value = scan(&d, func() (any, error) { return d.Value() })
	default:
		var d string
		c.value = scan(&d, func() (any, error) { return d, nil })
	}
	return c
}
