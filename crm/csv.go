// Package crm holds the CRM source adapters. Each implements sync.Source:
// it streams users as sync.Records, yields a *sync.RecordError for a bad
// record and goes on, and ends the stream with any other error.
package crm

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"iter"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/plugipay-sync/plugipay-sync/sync"
)

var _ sync.Source = (*CSV)(nil)

// DefaultDelimiter separates the fields of a CSV file unless
// CSVOptions.Delimiter says otherwise.
const DefaultDelimiter = ','

// ColumnMap names the header columns that hold each customer field. Only
// ExternalID is required; an empty name leaves that field empty.
type ColumnMap struct {
	ExternalID string
	Email      string
	Name       string
	// NameTemplate builds the name from several fields instead, e.g.
	// "{first_name} {last_name}". Set Name or NameTemplate.
	NameTemplate string
	Phone        string
	TaxID        string
	// Metadata maps a Plugipay metadata key to the column holding its
	// value. Empty values are left out of the record's metadata.
	Metadata map[string]string
}

// CSVOptions configures a CSV source.
type CSVOptions struct {
	// Path is the CSV file. Its first row must be a header.
	Path string
	// Columns maps customer fields to header columns. Header names are
	// matched after trimming spaces, exactly first and then ignoring case.
	Columns ColumnMap
	// Delimiter separates fields; zero means DefaultDelimiter.
	Delimiter rune
	// Normalize is applied to each record after the columns are read
	// (values are always trimmed and empty metadata always dropped); the
	// zero value changes nothing.
	Normalize Normalize
}

// CSV streams users from a CSV file, one record per row. It reads the file
// afresh on every call to Records and never holds more than one row.
type CSV struct {
	opts CSVOptions
}

// NewCSV validates opts and returns the source. It does not open the file:
// a missing file is reported by Records, so the daemon can start before
// the first export lands.
func NewCSV(opts CSVOptions) (*CSV, error) {
	if opts.Delimiter == 0 {
		opts.Delimiter = DefaultDelimiter
	}
	if opts.Path == "" {
		return nil, errors.New("crm.csv.path: required")
	}
	switch d := opts.Delimiter; {
	case d == '"' || d == '\r' || d == '\n' || d == 0xFFFD || d > 0x10FFFF:
		return nil, fmt.Errorf("crm.csv.delimiter: %q cannot separate CSV fields", d)
	}
	if strings.TrimSpace(opts.Columns.ExternalID) == "" {
		return nil, errors.New("crm.csv.columns.external_id: required")
	}
	if opts.Columns.NameTemplate != "" {
		if opts.Columns.Name != "" {
			return nil, errors.New("crm.csv.columns: set name or name_template, not both")
		}
		if _, err := parseTemplate(opts.Columns.NameTemplate); err != nil {
			return nil, fmt.Errorf("crm.csv.columns.name_template: %w", err)
		}
	}
	if err := opts.Normalize.Validate(); err != nil {
		return nil, fmt.Errorf("crm.normalize: %w", err)
	}
	for key, col := range opts.Columns.Metadata {
		if key == "" {
			return nil, errors.New("crm.csv.columns.metadata: empty metadata key")
		}
		if strings.TrimSpace(col) == "" {
			return nil, fmt.Errorf("crm.csv.columns.metadata.%s: empty column name", key)
		}
	}
	// A copy, so a caller changing its map later does not change the source.
	opts.Columns.Metadata = maps.Clone(opts.Columns.Metadata)
	return &CSV{opts: opts}, nil
}

// Records streams the file's rows. A bad row is yielded as a
// *sync.RecordError whose Ref is "line N", the physical line where the row
// starts; the stream goes on with the next row. A missing file, a missing
// header or mapped column, a read error, a CSV syntax error that swallows
// the rest of the file, and ctx being done end the stream with an error.
func (c *CSV) Records(ctx context.Context) iter.Seq2[sync.Record, error] {
	return func(yield func(sync.Record, error) bool) {
		f, err := os.Open(c.opts.Path)
		if err != nil {
			yield(sync.Record{}, fmt.Errorf("crm: csv: %w", err))
			return
		}
		defer f.Close()
		c.stream(ctx, f, yield)
	}
}

// utf8BOM is stripped from the start of the file: spreadsheet exports often
// begin with one, and encoding/csv would make it part of the first header.
var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

func (c *CSV) stream(ctx context.Context, f io.Reader, yield func(sync.Record, error) bool) {
	br := bufio.NewReaderSize(f, 64<<10)
	if b, err := br.Peek(len(utf8BOM)); err == nil && bytes.Equal(b, utf8BOM) {
		_, _ = br.Discard(len(utf8BOM))
	}
	r := csv.NewReader(br)
	r.Comma = c.opts.Delimiter
	r.FieldsPerRecord = -1
	r.ReuseRecord = true

	header, err := r.Read()
	switch {
	case errors.Is(err, io.EOF):
		yield(sync.Record{}, fmt.Errorf("crm: csv %s: empty file, want a header row", c.opts.Path))
		return
	case err != nil:
		yield(sync.Record{}, fmt.Errorf("crm: csv %s: header: %w", c.opts.Path, err))
		return
	}
	cols, err := c.resolve(header)
	if err != nil {
		yield(sync.Record{}, err)
		return
	}

	var lastSyntax *csv.ParseError
	for {
		if err := ctx.Err(); err != nil {
			yield(sync.Record{}, fmt.Errorf("crm: csv %s: %w", c.opts.Path, context.Cause(ctx)))
			return
		}
		row, err := r.Read()
		if errors.Is(err, io.EOF) {
			if lastSyntax != nil && errors.Is(lastSyntax.Err, csv.ErrQuote) && lastSyntax.Line > lastSyntax.StartLine {
				// An unterminated quoted field runs to the end of the
				// file: every row after it was read as part of it.
				yield(sync.Record{}, fmt.Errorf("crm: csv %s: line %d: quoted field never closed; the rest of the file (to line %d) could not be read",
					c.opts.Path, lastSyntax.StartLine, lastSyntax.Line))
			}
			return
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			lastSyntax = pe
			if !yield(sync.Record{}, &sync.RecordError{Ref: fmt.Sprintf("line %d", pe.StartLine), Reason: syntaxReason(pe)}) {
				return
			}
			continue
		}
		if err != nil {
			yield(sync.Record{}, fmt.Errorf("crm: csv %s: %w", c.opts.Path, err))
			return
		}
		lastSyntax = nil
		line, _ := r.FieldPos(0)
		rec, rerr := c.decode(cols, row, len(header), line)
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

// decode is the record of one row (its fields as encoding/csv gives
// them), with its print.
func (c *CSV) decode(cols *columns, row []string, headerLen, line int) (sync.Record, *sync.RecordError) {
	rec, rerr := cols.record(row, headerLen, line)
	if rerr == nil {
		if p := c.opts.Normalize.Apply(&rec, c.opts.Columns.Phone); p != "" {
			rerr = &sync.RecordError{Ref: rec.Ref, ExternalID: rec.ExternalID, Reason: p}
		}
	}
	var scratch [512]byte
	p, _ := printRow(cols.printIdx, row, scratch[:0])
	if rerr != nil {
		rerr.Print = p
	} else {
		rec.Print = p
	}
	return rec, rerr
}

// syntaxReason describes a CSV syntax error without repeating the line.
func syntaxReason(pe *csv.ParseError) string {
	return fmt.Sprintf("CSV syntax error at line %d, column %d: %v", pe.Line, pe.Column, pe.Err)
}

// columns are the header positions of the mapped fields; -1 is unmapped.
type columns struct {
	externalID, email, name, phone, taxID int
	// nameTmpl, when set, builds the name: literals and (field >= 0)
	// column indexes.
	nameTmpl []tmplPart
	// collapseName turns every run of white space inside the name (a
	// newline of a quoted multi-line field, a tab) into one space before
	// the name is checked.
	collapseName bool
	metaKeys     []string // sorted
	metaIdx      []int
	metaLabels   []string // "metadata.<key>", for messages
	names        []string // header names, trimmed
	// printIdx are the mapped columns, ascending: what a row's print
	// covers.
	printIdx []int
}

// resolve finds each mapped column in the header.
func (c *CSV) resolve(header []string) (*columns, error) {
	names := make([]string, len(header))
	for i, h := range header {
		names[i] = strings.TrimSpace(h)
	}
	find := func(key, col string) (int, error) {
		if col == "" {
			return -1, nil
		}
		col = strings.TrimSpace(col)
		if i := slices.Index(names, col); i >= 0 {
			return i, nil
		}
		for i, n := range names {
			if strings.EqualFold(n, col) {
				return i, nil
			}
		}
		return -1, fmt.Errorf("crm.csv.columns.%s: column %q not in header of %s (have: %s)", key, col, c.opts.Path, listNames(names))
	}
	cols := &columns{names: names, collapseName: c.opts.Normalize.CollapseNameSpace}
	m := c.opts.Columns
	var err error
	if m.NameTemplate != "" {
		parts, err := parseTemplate(m.NameTemplate)
		if err != nil {
			return nil, fmt.Errorf("crm.csv.columns.name_template: %w", err)
		}
		for _, p := range parts {
			if p.field >= 0 {
				if p.field, err = find("name_template", p.lit); err != nil {
					return nil, err
				}
				p.lit = ""
			}
			cols.nameTmpl = append(cols.nameTmpl, p)
		}
	}
	for _, f := range []struct {
		key, col string
		dst      *int
	}{
		{"external_id", m.ExternalID, &cols.externalID},
		{"email", m.Email, &cols.email},
		{"name", m.Name, &cols.name},
		{"phone", m.Phone, &cols.phone},
		{"tax_id", m.TaxID, &cols.taxID},
	} {
		if *f.dst, err = find(f.key, f.col); err != nil {
			return nil, err
		}
	}
	for key := range m.Metadata {
		cols.metaKeys = append(cols.metaKeys, key)
	}
	slices.Sort(cols.metaKeys)
	for _, key := range cols.metaKeys {
		i, err := find("metadata."+key, m.Metadata[key])
		if err != nil {
			return nil, err
		}
		cols.metaIdx = append(cols.metaIdx, i)
		cols.metaLabels = append(cols.metaLabels, "metadata."+key)
	}
	cols.printIdx = append(cols.printIdx, cols.externalID, cols.email, cols.name, cols.phone, cols.taxID)
	cols.printIdx = append(cols.printIdx, cols.metaIdx...)
	for _, p := range cols.nameTmpl {
		cols.printIdx = append(cols.printIdx, p.field)
	}
	slices.Sort(cols.printIdx)
	cols.printIdx = slices.Compact(cols.printIdx)
	if len(cols.printIdx) > 0 && cols.printIdx[0] < 0 {
		cols.printIdx = cols.printIdx[slices.IndexFunc(cols.printIdx, func(i int) bool { return i >= 0 }):]
	}
	return cols, nil
}

// listNames lists header names for an error message, cut after 20.
func listNames(names []string) string {
	const max = 20
	if len(names) > max {
		return strings.Join(names[:max], ", ") + fmt.Sprintf(", ... (%d more)", len(names)-max)
	}
	return strings.Join(names, ", ")
}
