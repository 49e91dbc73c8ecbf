package crm

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
)

// Count returns how many data rows the file holds, which is how many
// items Records yields for a well-formed file (a bad row is one item too).
// It streams the file through the CSV parser, so a quoted field spanning
// lines counts once, without building records: the progress display uses
// it as the run's total. It checks ctx every 4096 rows.
func (c *CSV) Count(ctx context.Context) (int64, error) {
	f, err := os.Open(c.opts.Path)
	if err != nil {
		return 0, fmt.Errorf("crm: csv: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	if b, err := br.Peek(len(utf8BOM)); err == nil && bytes.Equal(b, utf8BOM) {
		_, _ = br.Discard(len(utf8BOM))
	}
	r := csv.NewReader(br)
	r.Comma = c.opts.Delimiter
	r.FieldsPerRecord = -1
	r.ReuseRecord = true
	var n int64 = -1 // the header is not a record
	for {
		if n&4095 == 0 {
			if err := ctx.Err(); err != nil {
				return 0, context.Cause(ctx)
			}
		}
		_, err := r.Read()
		if errors.Is(err, io.EOF) {
			return max(n, 0), nil
		}
		var pe *csv.ParseError
		if err != nil && !errors.As(err, &pe) {
			return 0, fmt.Errorf("crm: csv %s: %w", c.opts.Path, err)
		}
		n++
	}
}
