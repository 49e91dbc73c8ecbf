package crm

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"unicode/utf8"

	"github.com/zeebo/xxh3"

	"github.com/plugipay-sync/plugipay-sync/sync"
)

var _ sync.PrintSource = (*CSV)(nil)

// validatorVersion is part of every print seed: bump it when the checks
// or the normalisation of a field change, so that every row is validated
// again on the next run.
const validatorVersion = "csv-v1"

// PrintSeed names what turns a row's fields into a record: the column
// mapping, the normalisation and the validator's version.
func (c *CSV) PrintSeed() string {
	return fmt.Sprintf("%s %q %+v %+v", validatorVersion, c.opts.Delimiter, c.opts.Columns, c.opts.Normalize)
}

// printRow is the print of a row: its field count and the mapped fields,
// each length-prefixed (a missing field apart from an empty one), hashed
// with XXH3-128. It is the same whichever scanner split the row.
func printRow[F string | []byte](idx []int, row []F, scratch []byte) (sync.Print, []byte) {
	b := binary.AppendUvarint(scratch[:0], uint64(len(row)))
	for _, i := range idx {
		if i >= len(row) {
			b = append(b, 0)
			continue
		}
		b = binary.AppendUvarint(b, uint64(len(row[i]))+1)
		b = append(b, row[i]...)
	}
	h := xxh3.Hash128(b)
	var p sync.Print
	binary.BigEndian.PutUint64(p[:8], h.Hi)
	binary.BigEndian.PutUint64(p[8:], h.Lo)
	return p, b
}

// openScan opens the file for the fast scanner and reads its header:
// the scanner is left at the first row.
func (c *CSV) openScan(bufSize int) (*os.File, *csvScanner, *columns, int, error) {
	if c.opts.Delimiter >= utf8.RuneSelf {
		return nil, nil, nil, 0, fmt.Errorf("%w: a multi-byte delimiter", sync.ErrNoPrints)
	}
	f, err := os.Open(c.opts.Path)
	if err != nil {
		return nil, nil, nil, 0, fmt.Errorf("crm: csv: %w", err)
	}
	var bom [3]byte
	start := int64(0)
	if n, _ := io.ReadFull(f, bom[:]); n == 3 && string(bom[:]) == string(utf8BOM) {
		start = 3
	}
	if _, err := f.Seek(start, io.SeekStart); err != nil {
		f.Close()
		return nil, nil, nil, 0, fmt.Errorf("crm: csv %s: %w", c.opts.Path, err)
	}
	s := newCSVScanner(f, byte(c.opts.Delimiter), start, 1)
	s.buf = make([]byte, 0, bufSize)
	if _, _, err := s.next(); err != nil {
		f.Close()
		// An empty file, a bad header: Records says exactly what is wrong.
		return nil, nil, nil, 0, fmt.Errorf("%w: header: %v", sync.ErrNoPrints, err)
	}
	header := make([]string, len(s.fields))
	for i, b := range s.fields {
		header[i] = string(b)
	}
	cols, err := c.resolve(header)
	if err != nil {
		f.Close()
		return nil, nil, nil, 0, err
	}
	return f, s, cols, len(header), nil
}

// Prints yields the print of every row without decoding it (the fast
// path of a no-op run). A row the fast scanner cannot split exactly as
// encoding/csv would ends it with sync.ErrNoPrints.
func (c *CSV) Prints(ctx context.Context) iter.Seq2[sync.RowPrint, error] {
	return func(yield func(sync.RowPrint, error) bool) {
		f, s, cols, _, err := c.openScan(256 << 10)
		if err != nil {
			yield(sync.RowPrint{}, err)
			return
		}
		defer f.Close()
		scratch := make([]byte, 0, 1024)
		for n := 0; ; n++ {
			if n&4095 == 0 && ctx.Err() != nil {
				yield(sync.RowPrint{}, fmt.Errorf("crm: csv %s: %w", c.opts.Path, context.Cause(ctx)))
				return
			}
			off, line, err := s.next()
			if errors.Is(err, io.EOF) {
				return
			}
			if errors.Is(err, errScanUnsure) {
				yield(sync.RowPrint{}, fmt.Errorf("%w: line %d is not plain CSV", sync.ErrNoPrints, s.line))
				return
			}
			if err != nil {
				yield(sync.RowPrint{}, fmt.Errorf("crm: csv %s: %w", c.opts.Path, err))
				return
			}
			var p sync.Print
			p, scratch = printRow(cols.printIdx, s.fields, scratch)
			var id uint64
			if cols.externalID < len(s.fields) {
				id = sync.IDHashBytes(bytes.TrimSpace(s.fields[cols.externalID]))
			}
			if !yield(sync.RowPrint{Print: p, Pos: off, Line: line, ID: id}, nil) {
				return
			}
		}
	}
}

// RecordsAt decodes the rows at rows' positions (ascending), as Records
// decodes them.
func (c *CSV) RecordsAt(ctx context.Context, rows []sync.RowPrint) iter.Seq2[sync.Record, error] {
	return func(yield func(sync.Record, error) bool) {
		f, s, cols, headerLen, err := c.openScan(16 << 10)
		if err != nil {
			yield(sync.Record{}, err)
			return
		}
		defer f.Close()
		var row []string
		for _, rp := range rows {
			if ctx.Err() != nil {
				yield(sync.Record{}, fmt.Errorf("crm: csv %s: %w", c.opts.Path, context.Cause(ctx)))
				return
			}
			if rp.Pos >= s.base && rp.Pos < s.base+int64(len(s.buf)) {
				s.pos, s.line = int(rp.Pos-s.base), rp.Line
			} else {
				if _, err := f.Seek(rp.Pos, io.SeekStart); err != nil {
					yield(sync.Record{}, fmt.Errorf("crm: csv %s: %w", c.opts.Path, err))
					return
				}
				s.buf, s.pos, s.base, s.line, s.eof = s.buf[:0], 0, rp.Pos, rp.Line, false
			}
			off, line, err := s.next()
			if err == nil && (off != rp.Pos || line != rp.Line) {
				err = fmt.Errorf("row at offset %d is now at %d: the file changed during the run", rp.Pos, off)
			}
			if err != nil {
				yield(sync.Record{}, fmt.Errorf("crm: csv %s: %w", c.opts.Path, err))
				return
			}
			row = row[:0]
			for _, b := range s.fields {
				row = append(row, string(b))
			}
			rec, rerr := c.decode(cols, row, headerLen, line)
			if rerr == nil && rec.Print != rp.Print {
				yield(sync.Record{}, fmt.Errorf("crm: csv %s: line %d changed during the run", c.opts.Path, line))
				return
			}
			var ok bool
			if rerr != nil {
				ok = yield(sync.Record{}, rerr)
			} else {
				ok = yield(rec, nil)
			}
			if !ok {
				return
			}
		}
	}
}
