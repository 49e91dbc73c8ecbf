package crm

import (
	"bytes"
	"errors"
	"io"
)

// errScanUnsure: the fast scanner met something it does not decode
// exactly as encoding/csv would (a syntax error, a stray carriage return
// at the end of the file, a field longer than the buffer can grow to).
// The caller then reads the file with encoding/csv instead.
var errScanUnsure = errors.New("csv row the fast scanner does not decode")

// csvScanner splits a CSV stream into records and fields without
// allocating per row, for the fingerprint pass of a no-op run (issue 13:
// encoding/csv builds a string per row, and the run only needs to know
// whether a row is the one it confirmed last time). For every well-formed
// record it yields exactly the fields encoding/csv yields (with
// FieldsPerRecord -1, LazyQuotes off, no comment character); anything
// else is errScanUnsure, never a guess. The differential fuzz test holds
// it to that.
type csvScanner struct {
	r     io.Reader
	delim byte
	buf   []byte
	pos   int   // next unread byte in buf
	base  int64 // stream offset of buf[0]
	line  int   // line of buf[pos], 1-based
	eof   bool
	// fields are the last record's fields: slices of buf, or of scratch
	// where quotes were unescaped.
	fields  [][]byte
	scratch []byte
}

// maxScanRecord caps how far the buffer grows for one record.
const maxScanRecord = 64 << 20

func newCSVScanner(r io.Reader, delim byte, offset int64, line int) *csvScanner {
	return &csvScanner{r: r, delim: delim, buf: make([]byte, 0, 256<<10), base: offset, line: line}
}

// fill reads more input, keeping buf[from:]. It returns false at the end
// of the input.
func (s *csvScanner) fill(from int) (bool, error) {
	if s.eof {
		return false, nil
	}
	n := copy(s.buf[:cap(s.buf)], s.buf[from:])
	s.base += int64(from)
	s.pos -= from
	s.buf = s.buf[:n]
	if n == cap(s.buf) {
		if cap(s.buf) >= maxScanRecord {
			return false, errScanUnsure
		}
		grown := make([]byte, n, 2*cap(s.buf))
		copy(grown, s.buf)
		s.buf = grown
	}
	m, err := s.r.Read(s.buf[n:cap(s.buf)])
	s.buf = s.buf[:n+m]
	if errors.Is(err, io.EOF) {
		s.eof = true
		return m > 0, nil
	}
	if err != nil {
		return false, err
	}
	return true, nil
}

// next decodes the next record. It returns the stream offset and line at
// which the record starts, or io.EOF after the last one.
func (s *csvScanner) next() (offset int64, line int, err error) {
	for {
		offset, line, done, err := s.parse()
		if err != nil || done {
			return offset, line, err
		}
		// The record runs past the buffer: keep it and read more.
		more, err := s.fill(s.pos)
		if err != nil {
			return 0, 0, err
		}
		if !more && s.eof && s.pos >= len(s.buf) {
			return 0, 0, io.EOF
		}
		if !more && s.eof {
			// Parse once more with the end of input known.
			offset, line, done, err := s.parse()
			if err == nil && !done {
				err = errScanUnsure
			}
			return offset, line, err
		}
	}
}

// parse decodes one record from buf[pos:]. done false means the buffer
// ends inside it (or inside the empty lines before it) and nothing was
// consumed.
func (s *csvScanner) parse() (offset int64, line int, done bool, err error) {
	b, p, ln := s.buf, s.pos, s.line
	// Empty lines are skipped, as encoding/csv skips them.
	for {
		switch {
		case p < len(b) && b[p] == '\n':
			p++
			ln++
			continue
		case p+1 < len(b) && b[p] == '\r' && b[p+1] == '\n':
			p += 2
			ln++
			continue
		case p+1 == len(b) && b[p] == '\r' && !s.eof:
			return 0, 0, false, nil
		}
		break
	}
	if p >= len(b) {
		if s.eof {
			s.pos, s.line = p, ln
			return 0, 0, false, io.EOF
		}
		return 0, 0, false, nil
	}
	start, startLine := p, ln
	s.fields = s.fields[:0]
	s.scratch = s.scratch[:0]
	for {
		if b[p] != '"' {
			// Unquoted: up to the delimiter or the end of the line.
			i := p
			for i < len(b) && b[i] != s.delim && b[i] != '\n' && b[i] != '"' {
				i++
			}
			if i < len(b) && b[i] == '"' {
				return 0, 0, false, errScanUnsure // a bare quote
			}
			if i == len(b) && !s.eof {
				return 0, 0, false, nil
			}
			f := b[p:i]
			if i == len(b) || b[i] == '\n' {
				if n := len(f); n > 0 && f[n-1] == '\r' {
					if i == len(b) {
						return 0, 0, false, errScanUnsure // encoding/csv drops a final \r
					}
					f = f[:n-1]
				}
				s.fields = append(s.fields, f)
				if i < len(b) {
					i++
					ln++
				}
				s.pos, s.line = i, ln
				return s.base + int64(start), startLine, true, nil
			}
			s.fields = append(s.fields, f)
			p = i + 1
			if p == len(b) {
				if !s.eof {
					return 0, 0, false, nil
				}
				// A delimiter ends the input: one more, empty field.
				s.fields = append(s.fields, b[p:p])
				s.pos, s.line = p, ln
				return s.base + int64(start), startLine, true, nil
			}
			continue
		}
		// Quoted: "" is a quote, \r\n a \n; the closing quote is followed
		// by the delimiter or the end of the line.
		p++
		from := len(s.scratch)
		copied := false
		seg := p
		for {
			q := bytes.IndexByte(b[p:], '"')
			if q < 0 {
				if !s.eof {
					return 0, 0, false, nil
				}
				return 0, 0, false, errScanUnsure // never closed
			}
			// Newlines inside the quotes: count them, and turn \r\n into \n.
			part := b[p : p+q]
			if nl := bytes.Count(part, []byte{'\n'}); nl > 0 {
				ln += nl
				if bytes.Contains(part, []byte("\r\n")) {
					if !copied {
						s.scratch = append(s.scratch, b[seg:p]...)
						copied = true
					}
					s.scratch = append(s.scratch, bytes.ReplaceAll(part, []byte("\r\n"), []byte{'\n'})...)
					seg = p + q
				}
			}
			p += q
			if p+1 >= len(b) {
				if !s.eof {
					return 0, 0, false, nil
				}
				// The closing quote ends the input.
				s.fields = append(s.fields, s.quoted(b, seg, p, from, copied))
				s.pos, s.line = p+1, ln
				return s.base + int64(start), startLine, true, nil
			}
			switch c := b[p+1]; {
			case c == '"':
				if !copied {
					s.scratch = append(s.scratch, b[seg:p]...)
					copied = true
				} else {
					s.scratch = append(s.scratch, b[seg:p]...)
				}
				s.scratch = append(s.scratch, '"')
				p += 2
				seg = p
				continue
			case c == s.delim:
				s.fields = append(s.fields, s.quoted(b, seg, p, from, copied))
				p += 2
				if p == len(b) {
					if !s.eof {
						return 0, 0, false, nil
					}
					s.fields = append(s.fields, b[p:p])
					s.pos, s.line = p, ln
					return s.base + int64(start), startLine, true, nil
				}
			case c == '\n':
				s.fields = append(s.fields, s.quoted(b, seg, p, from, copied))
				s.pos, s.line = p+2, ln+1
				return s.base + int64(start), startLine, true, nil
			case c == '\r':
				if p+2 >= len(b) {
					if !s.eof {
						return 0, 0, false, nil
					}
					return 0, 0, false, errScanUnsure
				}
				if b[p+2] != '\n' {
					return 0, 0, false, errScanUnsure
				}
				s.fields = append(s.fields, s.quoted(b, seg, p, from, copied))
				s.pos, s.line = p+3, ln+1
				return s.base + int64(start), startLine, true, nil
			default:
				return 0, 0, false, errScanUnsure // text after the closing quote
			}
			break
		}
	}
}

// quoted is a quoted field's content: buf[seg:end] after what was copied
// to scratch from index from, if anything was.
func (s *csvScanner) quoted(b []byte, seg, end, from int, copied bool) []byte {
	if !copied {
		return b[seg:end]
	}
	s.scratch = append(s.scratch, b[seg:end]...)
	return s.scratch[from:]
}
