package crm

import (
	"bytes"
	"encoding/csv"
	"errors"
	"io"
	"slices"
	"testing"
)

// scanAll decodes input with the fast scanner: every record's fields,
// start line and offset, or errScanUnsure.
func scanAll(t testing.TB, input []byte, delim byte) (recs [][]string, lines []int, offsets []int64, err error) {
	// A small reader chunk so records cross buffer refills.
	s := newCSVScanner(iotestHalfReader{bytes.NewReader(input)}, delim, 0, 1)
	s.buf = make([]byte, 0, 16)
	for {
		off, line, err := s.next()
		if errors.Is(err, io.EOF) {
			return recs, lines, offsets, nil
		}
		if err != nil {
			return nil, nil, nil, err
		}
		f := make([]string, len(s.fields))
		for i, b := range s.fields {
			f[i] = string(b)
		}
		recs, lines, offsets = append(recs, f), append(lines, line), append(offsets, off)
	}
}

// iotestHalfReader reads at most 7 bytes at a time.
type iotestHalfReader struct{ r io.Reader }

func (h iotestHalfReader) Read(p []byte) (int, error) {
	if len(p) > 7 {
		p = p[:7]
	}
	return h.r.Read(p)
}

// stdAll decodes input with encoding/csv as the CSV source does.
func stdAll(input []byte, delim rune) (recs [][]string, lines []int, err error) {
	r := csv.NewReader(bytes.NewReader(input))
	r.Comma = delim
	r.FieldsPerRecord = -1
	for {
		row, err := r.Read()
		if errors.Is(err, io.EOF) {
			return recs, lines, nil
		}
		if err != nil {
			return nil, nil, err
		}
		line, _ := r.FieldPos(0)
		recs, lines = append(recs, row), append(lines, line)
	}
}

// checkScanner holds the fast scanner to encoding/csv on one input: when
// it decodes the input at all, it yields the same records from the same
// lines, and each record decodes alike when read again from its offset.
func checkScanner(t *testing.T, input []byte) {
	t.Helper()
	got, gotLines, offsets, err := scanAll(t, input, ',')
	want, wantLines, stdErr := stdAll(input, ',')
	if err != nil {
		if !errors.Is(err, errScanUnsure) {
			t.Fatalf("scanner error %v on %q", err, input)
		}
		return // unsure is always allowed: the source falls back
	}
	if stdErr != nil {
		t.Fatalf("scanner decoded %q, encoding/csv says %v", input, stdErr)
	}
	if !slices.EqualFunc(got, want, slices.Equal) || !slices.Equal(gotLines, wantLines) {
		t.Fatalf("input %q:\nscanner  %q lines %v\nencoding %q lines %v", input, got, gotLines, want, wantLines)
	}
	for i, off := range offsets {
		s := newCSVScanner(bytes.NewReader(input[off:]), ',', off, gotLines[i])
		o, line, err := s.next()
		if err != nil || o != off || line != gotLines[i] {
			t.Fatalf("input %q: record %d again from offset %d: offset %d line %d err %v", input, i, off, o, line, err)
		}
		again := make([]string, len(s.fields))
		for j, b := range s.fields {
			again[j] = string(b)
		}
		if !slices.Equal(again, got[i]) {
			t.Fatalf("input %q: record %d again from offset %d: %q, first %q", input, i, off, again, got[i])
		}
	}
}

func TestCSVScanner_MatchesEncodingCSV(t *testing.T) {
	for _, in := range []string{
		"",
		"a,b,c\n",
		"a,b,c",
		"a,b,c\r\n1,2,3\r\n",
		"\n\n a , b \n\r\n\r\nc,d\n",
		"\"q\",\"x,y\"\n",
		"\"multi\nline\",2\n3,4\n",
		"\"multi\r\nline\r\n\",2\r\n",
		"\"he said \"\"hi\"\"\",x\n",
		"\"\"\"\",\"\"\n",
		"a,\n,b\n,\n",
		"a,",
		"\"a\",",
		"\"a\"",
		"id,name\n1,\"Anderson\r\nSecondLine\"\r\n",
		"\ufeffid\n1\n",
		"a\"b,c\n",       // bare quote: unsure
		"\"a\"b,c\n",     // text after closing quote: unsure
		"\"never closed", // unsure
		"a,b\r",          // encoding/csv drops the final \r: unsure
		"x,\"\r\",y\n",
		"x,\"a\rb\",y\n",
		"Nguyễn,สมชาย,王\n",
	} {
		checkScanner(t, []byte(in))
	}
}

func FuzzCSVScanner(f *testing.F) {
	for _, s := range []string{"a,b\n", "\"x\r\ny\",\"\"\"\"\n\n", "1,\"2\",3\r\n4,5,6", "\"a,b\",\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, input []byte) {
		checkScanner(t, input)
	})
}
