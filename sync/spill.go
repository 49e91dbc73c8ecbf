package sync

import (
	"bufio"
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"slices"
)

// spill is an append-only temporary file of length-prefixed records,
// read back once or more in the order they were written. A run keeps
// what it learns of every row here instead of in memory (issue 13: the
// dry run held every id in a map, 1.7 GB on 5M rows).
type spill struct {
	f *os.File
	w *bufio.Writer
	n int64 // records written
	// readBuf is the read buffer of records: small for the many runs an
	// idSorter merges at once.
	readBuf int
	lenBuf  [binary.MaxVarintLen64]byte
}

func newSpill(dir, pattern string) (*spill, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return nil, fmt.Errorf("create spill file: %w", err)
	}
	// Unlinked at once: the file goes with the process, whatever happens.
	_ = os.Remove(f.Name())
	return &spill{f: f, w: bufio.NewWriterSize(f, 64<<10), readBuf: 64 << 10}, nil
}

// add appends one record made of fields.
func (s *spill) add(fields ...[]byte) error {
	n := &s.lenBuf // a local array would escape through Write, once per field
	for _, b := range fields {
		if _, err := s.w.Write(n[:binary.PutUvarint(n[:], uint64(len(b)))]); err != nil {
			return fmt.Errorf("write spill file: %w", err)
		}
		if _, err := s.w.Write(b); err != nil {
			return fmt.Errorf("write spill file: %w", err)
		}
	}
	s.n++
	return nil
}

// records yields the records written so far, each as its k fields; the
// slices are reused between records.
func (s *spill) records(k int) iter.Seq2[[][]byte, error] {
	return func(yield func([][]byte, error) bool) {
		if err := s.w.Flush(); err != nil {
			yield(nil, fmt.Errorf("write spill file: %w", err))
			return
		}
		if _, err := s.f.Seek(0, io.SeekStart); err != nil {
			yield(nil, fmt.Errorf("read spill file: %w", err))
			return
		}
		defer s.f.Seek(0, io.SeekEnd) //nolint:errcheck // the next add would fail and say so
		r := bufio.NewReaderSize(s.f, s.readBuf)
		fields := make([][]byte, k)
		for range s.n {
			for i := range fields {
				b, err := readField(r, fields[i][:0])
				if err != nil {
					yield(nil, fmt.Errorf("read spill file: %w", err))
					return
				}
				fields[i] = b
			}
			if !yield(fields, nil) {
				return
			}
		}
	}
}

func readField(r *bufio.Reader, buf []byte) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return nil, err
	}
	buf = slices.Grow(buf, int(n))[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

func (s *spill) close() error { return s.f.Close() }

// sortChunk is how many strings idSorter sorts in memory at once.
const sortChunk = 1 << 16

// idSorter sorts any number of strings in bounded memory: chunks are
// sorted in memory and spilled, then merged.
type idSorter struct {
	dir   string
	chunk int
	buf   []string
	runs  []*spill
}

func newIDSorter(dir string) *idSorter { return &idSorter{dir: dir, chunk: sortChunk} }

func (s *idSorter) add(id string) error {
	s.buf = append(s.buf, id)
	if len(s.buf) >= s.chunk {
		return s.flush()
	}
	return nil
}

func (s *idSorter) flush() error {
	if len(s.buf) == 0 {
		return nil
	}
	slices.Sort(s.buf)
	run, err := newSpill(s.dir, "plugipay-sync-sort-*")
	if err != nil {
		return err
	}
	run.readBuf = 8 << 10
	s.runs = append(s.runs, run)
	for _, id := range slices.Compact(s.buf) {
		if err := run.add([]byte(id)); err != nil {
			return err
		}
	}
	if err := run.w.Flush(); err != nil {
		return fmt.Errorf("write spill file: %w", err)
	}
	run.w = bufio.NewWriterSize(run.f, 16) // written once: free its buffer
	s.buf = s.buf[:0]
	return nil
}

// sorted yields every distinct string added, in ascending byte order.
func (s *idSorter) sorted() iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		if len(s.runs) == 0 {
			slices.Sort(s.buf)
			for _, id := range slices.Compact(s.buf) {
				if !yield(id, nil) {
					return
				}
			}
			return
		}
		if err := s.flush(); err != nil {
			yield("", err)
			return
		}
		h := &mergeHeap{}
		for _, run := range s.runs {
			next, stop := iter.Pull2(run.records(1))
			defer stop()
			c := &cursor{next: next}
			if ok, err := c.advance(); err != nil {
				yield("", err)
				return
			} else if ok {
				heap.Push(h, c)
			}
		}
		last, have := "", false
		for h.Len() > 0 {
			c := (*h)[0]
			if !have || c.cur != last {
				if !yield(c.cur, nil) {
					return
				}
				last, have = c.cur, true
			}
			ok, err := c.advance()
			switch {
			case err != nil:
				yield("", err)
				return
			case ok:
				heap.Fix(h, 0)
			default:
				heap.Pop(h)
			}
		}
	}
}

func (s *idSorter) close() error {
	var errs []error
	for _, r := range s.runs {
		errs = append(errs, r.close())
	}
	return errors.Join(errs...)
}

type cursor struct {
	next func() ([][]byte, error, bool)
	cur  string
}

func (c *cursor) advance() (bool, error) {
	f, err, ok := c.next()
	if !ok {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	c.cur = string(f[0])
	return true, nil
}

type mergeHeap []*cursor

func (h mergeHeap) Len() int           { return len(h) }
func (h mergeHeap) Less(i, j int) bool { return h[i].cur < h[j].cur }
func (h mergeHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *mergeHeap) Push(x any)        { *h = append(*h, x.(*cursor)) }
func (h *mergeHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
