package crm

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/plugipay-sync/plugipay-sync/sync"
)

var _ sync.Source = (*JSONL)(nil)

// DefaultMaxLineBytes is the longest JSON Lines line read unless
// JSONLOptions.MaxLineBytes says otherwise. Longer lines are rejected (with
// their number) rather than held in memory.
const DefaultMaxLineBytes = 16 << 20

// JSONLOptions configures a JSON Lines source.
type JSONLOptions struct {
	// Path is the file: one JSON object per line.
	Path string
	// Fields maps customer fields to JSON keys. A key with dots ("address.city")
	// reads a nested object, unless the object has that dotted key itself.
	Fields ColumnMap
	// Normalize is applied to every value.
	Normalize Normalize
	// MaxLineBytes caps one line; 0 means DefaultMaxLineBytes.
	MaxLineBytes int
}

// JSONL streams users from a JSON Lines file (https://jsonlines.org), one
// object per line. Lines may be of any length up to MaxLineBytes (no 64 KiB
// bufio.Scanner limit); it holds one line at a time.
type JSONL struct {
	opts   JSONLOptions
	mapper *Mapper
}

// NewJSONL validates opts. Like NewCSV it does not open the file.
func NewJSONL(opts JSONLOptions) (*JSONL, error) {
	if opts.Path == "" {
		return nil, errors.New("crm.jsonl.path: required")
	}
	if opts.MaxLineBytes <= 0 {
		opts.MaxLineBytes = DefaultMaxLineBytes
	}
	mp, err := NewMapper(opts.Fields, opts.Normalize, "crm.jsonl.fields")
	if err != nil {
		return nil, err
	}
	return &JSONL{opts: opts, mapper: mp}, nil
}

// Records streams the file's lines. A line that is not a JSON object, or
// whose values fail the checks, is yielded as a *sync.RecordError with Ref
// "line N" and the stream goes on. The first object must carry every
// mapped key (null is fine): a key it lacks is taken for a mapping error
// and ends the stream, naming the key.
func (j *JSONL) Records(ctx context.Context) iter.Seq2[sync.Record, error] {
	return func(yield func(sync.Record, error) bool) {
		f, err := os.Open(j.opts.Path)
		if err != nil {
			yield(sync.Record{}, fmt.Errorf("crm: jsonl: %w", err))
			return
		}
		defer f.Close()
		j.stream(ctx, f, yield)
	}
}

func (j *JSONL) stream(ctx context.Context, r io.Reader, yield func(sync.Record, error) bool) {
	lr := newLineReader(r, j.opts.MaxLineBytes)
	fields := j.mapper.Fields()
	vals := make([]string, len(fields))
	checked := false
	for n := 1; ; n++ {
		if err := ctx.Err(); err != nil {
			yield(sync.Record{}, fmt.Errorf("crm: jsonl %s: %w", j.opts.Path, context.Cause(ctx)))
			return
		}
		line, tooLong, err := lr.next()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			yield(sync.Record{}, fmt.Errorf("crm: jsonl %s: %w", j.opts.Path, err))
			return
		}
		ref := "line " + strconv.Itoa(n)
		if tooLong {
			if !yield(sync.Record{}, &sync.RecordError{Ref: ref, Reason: fmt.Sprintf("line longer than %d bytes", j.opts.MaxLineBytes)}) {
				return
			}
			continue
		}
		if n == 1 {
			line = bytes.TrimPrefix(line, utf8BOM)
		}
		var obj map[string]any
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.UseNumber()
		if err := dec.Decode(&obj); err != nil || obj == nil || dec.More() {
			reason := "not a JSON object"
			switch {
			case len(bytes.TrimSpace(line)) == 0:
				reason = "blank line (JSON Lines wants one object per line)"
			case err != nil:
				reason = "invalid JSON: " + err.Error()
			case dec.More():
				reason = "more than one JSON value on the line"
			}
			if !yield(sync.Record{}, &sync.RecordError{Ref: ref, Reason: reason}) {
				return
			}
			continue
		}
		if !checked {
			if err := j.mapper.Check(func(f string) bool { _, ok := lookup(obj, f); return ok }, j.opts.Path+" (first object, "+ref+")"); err != nil {
				yield(sync.Record{}, err)
				return
			}
			checked = true
		}
		var problems []string
		for i, f := range fields {
			v, _ := lookup(obj, f)
			s, p := jsonString(v, f)
			if p != "" {
				problems = append(problems, p)
			}
			vals[i] = s
		}
		var ok bool
		if len(problems) > 0 {
			id := strings.TrimSpace(vals[0])
			if !utf8.ValidString(id) || hasControl(id) || utf8.RuneCountInString(id) > MaxExternalIDLen {
				id = "" // not safe to print
			}
			ok = yield(sync.Record{}, &sync.RecordError{Ref: ref, ExternalID: id, Reason: strings.Join(problems, "; ")})
		} else if rec, rerr := j.mapper.Record(vals, ref); rerr != nil {
			ok = yield(sync.Record{}, rerr)
		} else {
			ok = yield(rec, nil)
		}
		if !ok {
			return
		}
	}
}

// lookup finds key in obj: the key itself, else a dotted path through
// nested objects.
func lookup(obj map[string]any, key string) (any, bool) {
	if v, ok := obj[key]; ok {
		return v, true
	}
	head, rest, found := strings.Cut(key, ".")
	if !found {
		return nil, false
	}
	inner, ok := obj[head].(map[string]any)
	if !ok {
		return nil, false
	}
	return lookup(inner, rest)
}

// jsonString turns a JSON scalar into the string sent to Plugipay.
func jsonString(v any, key string) (string, string) {
	switch v := v.(type) {
	case nil:
		return "", ""
	case string:
		return v, ""
	case json.Number:
		return v.String(), ""
	case bool:
		return strconv.FormatBool(v), ""
	}
	return "", fmt.Sprintf("key %q holds an object or array, want a string, number or boolean", key)
}

// lineReader reads lines of any length up to max bytes, reusing one buffer.
type lineReader struct {
	br  *bufio.Reader
	buf []byte
	max int
}

func newLineReader(r io.Reader, max int) *lineReader {
	return &lineReader{br: bufio.NewReaderSize(r, 64<<10), max: max}
}

// next returns the next line without its "\n" or "\r\n"; tooLong reports
// a line over max, whose bytes are skipped. It returns io.EOF after the
// last line. The line is valid until the next call.
func (l *lineReader) next() (line []byte, tooLong bool, err error) {
	l.buf = l.buf[:0]
	for {
		chunk, err := l.br.ReadSlice('\n')
		if !tooLong {
			if len(l.buf)+len(chunk) > l.max+2 { // +2: the line end
				tooLong = true
				l.buf = l.buf[:0]
			} else {
				l.buf = append(l.buf, chunk...)
			}
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if len(l.buf) == 0 && !tooLong {
				return nil, false, io.EOF
			}
		case err != nil:
			return nil, false, err
		}
		line = bytes.TrimSuffix(l.buf, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		if !tooLong && len(line) > l.max {
			tooLong = true
		}
		// Keep a huge buffer from pinning memory after one long line.
		if cap(l.buf) > 1<<20 {
			l.buf = nil
		}
		return line, tooLong, nil
	}
}

// Count returns how many lines the file holds, for the progress display.
func (j *JSONL) Count(ctx context.Context) (int64, error) {
	f, err := os.Open(j.opts.Path)
	if err != nil {
		return 0, fmt.Errorf("crm: jsonl: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	var n int64
	last := byte('\n')
	for i := 0; ; i++ {
		if i&255 == 0 {
			if err := ctx.Err(); err != nil {
				return 0, context.Cause(ctx)
			}
		}
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 {
			last = chunk[len(chunk)-1]
			if last == '\n' {
				n++
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if errors.Is(err, io.EOF) {
			if last != '\n' {
				n++
			}
			return n, nil
		}
		if err != nil {
			return 0, fmt.Errorf("crm: jsonl %s: %w", j.opts.Path, err)
		}
	}
}
