package sync

import (
	"bufio"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"path/filepath"
	"slices"
	stdsync "sync"
)

// A no-op run at parser speed (issue 13). A row the last run confirmed is
// recognised by its print: a 128-bit hash of its raw mapped fields,
// seeded with everything that turns those fields into a record (the
// mapping, the normalisation, the validator's version, the fields the
// content hash covers). The prints the last run confirmed are kept in a
// file beside the state DB, sorted; a run prints every row without
// decoding it, sorts the prints in bounded memory (partitions spilled to a
// temporary file) and merges them with that file. Only the rows that do
// not match are decoded, validated and decided as before. The file is
// valid only for the store's change version it was written at: any other
// writer (sync --external-id, retry, rebuild-cache, a crash mid-apply)
// changes the version, and the next run decides every row again and
// writes the file afresh.

// Print identifies a row's raw mapped fields (see PrintSource).
type Print [16]byte

// RowPrint is one row of a PrintSource's print pass.
type RowPrint struct {
	Print Print
	// Pos is where the row is in the read, ascending in source order and
	// unique in one read: a byte offset for a file, an ordinal for a
	// query.
	Pos int64
	// Line is the row's first line, for its Ref (0 where there is none).
	Line int
	// Key finds the row again where a position cannot (a SQL row's
	// primary key); empty for a file.
	Key string
	// ID is IDHash of the external id the row's record carries (its
	// mapped id field, trimmed); zero when it has none. Rows sharing one
	// never match, so duplicates are found as a full read finds them.
	ID uint64
}

// IDHash is the hash of an external id that RowPrint.ID carries: 64-bit
// FNV-1a (ids are short; the reconciler imports no hashing library), zero
// for no id and never zero otherwise.
func IDHash(id string) uint64 { return idHash(id) }

// IDHashBytes is IDHash of id's bytes.
func IDHashBytes(id []byte) uint64 { return idHash(id) }

func idHash[S string | []byte](id S) uint64 {
	if len(id) == 0 {
		return 0
	}
	h := uint64(14695981039346656037)
	for i := 0; i < len(id); i++ {
		h ^= uint64(id[i])
		h *= 1099511628211
	}
	return max(h, 1)
}

// ErrNoPrints: the source cannot print this read (a row its fast scanner
// cannot decode exactly); the run reads it with Records instead.
var ErrNoPrints = errors.New("source cannot print its rows")

// PrintSource is a Source whose rows can be printed without being decoded,
// and read back by position: a file export. Records must set Record.Print
// (and RecordError.Print) to the print the print pass gives the same row.
type PrintSource interface {
	Source
	// PrintSeed names everything that turns a row's fields into a record:
	// prints of another seed never match.
	PrintSeed() string
	// Prints yields the print of every row, in source order. An error
	// ends it; ErrNoPrints asks for a read with Records.
	Prints(ctx context.Context) iter.Seq2[RowPrint, error]
	// RecordsAt yields the records (or *RecordError) of the rows at
	// rows' positions, which are ascending.
	RecordsAt(ctx context.Context, rows []RowPrint) iter.Seq2[Record, error]
}

// PrintStore is a Store that can keep a run's confirmed prints beside it.
type PrintStore interface {
	// ChangeVersion changes whenever a mapping, pending write or failure
	// does.
	ChangeVersion(ctx context.Context) (int64, error)
	// PrintsPath is the file the prints are kept in; "" when the store
	// keeps none (one in PostgreSQL has no file beside it), and every
	// run reads every row.
	PrintsPath() string
	// PrintsToken is the token of the prints file last written for this
	// store, set with SetPrintsToken: a store restored from a backup does
	// not trust a newer file.
	PrintsToken(ctx context.Context) (string, error)
	SetPrintsToken(ctx context.Context, token string) error
}

// printVersion is mixed into every print seed: bump it when what a run
// does with a confirmed row changes.
const printVersion = "prints-v1"

// Print entry kinds, as the prints file keeps them.
const (
	printConfirmed byte = iota // the row's record is what the mapping holds
	printRejected              // the row was rejected, and is counted only
)

// printEntry is one confirmed print.
type printEntry struct {
	hi, lo uint64
	kind   byte
	line   int    // rejected rows: the line it was recorded with
	id     string // external id; empty for a rejected row without one
	reason string // rejected rows: why (the dry run shows it)
}

func splitPrint(p Print) (hi, lo uint64) {
	return binary.BigEndian.Uint64(p[:8]), binary.BigEndian.Uint64(p[8:])
}

func printLess(ahi, alo, bhi, blo uint64) bool { return ahi < bhi || (ahi == bhi && alo < blo) }

// The prints file: a fixed header (magic, seed digest, change version,
// entry count, token) and the entries in print order.
const (
	printsMagic      = "PSYPRNT2"
	printsHeaderSize = 8 + 32 + 8 + 8 + 16
)

// printSet is a prints file opened for reading.
type printSet struct {
	f *os.File
	n uint64
}

// openPrints opens the prints file at path when it was written for seed
// at the store's current version; otherwise it returns nil.
func openPrints(ctx context.Context, ps PrintStore, seed string) (*printSet, error) {
	f, err := os.Open(ps.PrintsPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open prints file: %w", err)
	}
	var h [printsHeaderSize]byte
	if _, err := io.ReadFull(f, h[:]); err != nil {
		f.Close()
		return nil, nil // short or torn: rebuilt by this run
	}
	sum := sha256.Sum256([]byte(seed))
	v, err := ps.ChangeVersion(ctx)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("read change version: %w", err)
	}
	token, err := ps.PrintsToken(ctx)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("read prints token: %w", err)
	}
	if string(h[:8]) != printsMagic || [32]byte(h[8:40]) != sum || int64(binary.BigEndian.Uint64(h[40:48])) != v ||
		token != hex.EncodeToString(h[56:72]) {
		f.Close()
		return nil, nil
	}
	return &printSet{f: f, n: binary.BigEndian.Uint64(h[48:56])}, nil
}

func (s *printSet) close() {
	if s != nil {
		s.f.Close()
	}
}

// printReader reads a set's entries one by one without allocating: the
// merge of a print pass reads every entry.
type printReader struct {
	r    *bufio.Reader
	left uint64
	// e is the current entry, without its id and reason; raw is its
	// encoding, id the id within it. Both are reused by next.
	e      printEntry
	raw    []byte
	id     []byte
	reason []byte
}

func (s *printSet) reader() (*printReader, error) {
	if _, err := s.f.Seek(printsHeaderSize, io.SeekStart); err != nil {
		return nil, fmt.Errorf("read prints file: %w", err)
	}
	return &printReader{r: bufio.NewReaderSize(s.f, 64<<10), left: s.n}, nil
}

// next reads the next entry; false at the end.
func (c *printReader) next() (bool, error) {
	if c.left == 0 {
		return false, nil
	}
	c.left--
	fixed, err := c.r.Peek(17)
	if err != nil {
		return false, fmt.Errorf("read prints file: %w", err)
	}
	c.raw = append(c.raw[:0], fixed...)
	if _, err := c.r.Discard(17); err != nil {
		return false, fmt.Errorf("read prints file: %w", err)
	}
	c.e = printEntry{hi: binary.BigEndian.Uint64(c.raw[:8]), lo: binary.BigEndian.Uint64(c.raw[8:16]), kind: c.raw[16]}
	line, err := binary.ReadUvarint(c.r)
	if err != nil {
		return false, fmt.Errorf("read prints file: %w", err)
	}
	c.e.line = int(line)
	c.raw = binary.AppendUvarint(c.raw, line)
	n, err := binary.ReadUvarint(c.r)
	if err != nil || n > 1<<16 {
		return false, fmt.Errorf("read prints file: corrupt entry (%v)", err)
	}
	c.raw = binary.AppendUvarint(c.raw, n)
	at := len(c.raw)
	c.raw = slices.Grow(c.raw, int(n))[:at+int(n)]
	if _, err := io.ReadFull(c.r, c.raw[at:]); err != nil {
		return false, fmt.Errorf("read prints file: %w", err)
	}
	idEnd := len(c.raw)
	m, err := binary.ReadUvarint(c.r)
	if err != nil || m > 1<<16 {
		return false, fmt.Errorf("read prints file: corrupt entry (%v)", err)
	}
	c.raw = binary.AppendUvarint(c.raw, m)
	rat := len(c.raw)
	c.raw = slices.Grow(c.raw, int(m))[:rat+int(m)]
	if _, err := io.ReadFull(c.r, c.raw[rat:]); err != nil {
		return false, fmt.Errorf("read prints file: %w", err)
	}
	c.id = c.raw[at:idEnd]
	c.reason = c.raw[rat:]
	return true, nil
}

func appendPrintEntry(b []byte, e printEntry) []byte {
	b = binary.BigEndian.AppendUint64(b, e.hi)
	b = binary.BigEndian.AppendUint64(b, e.lo)
	b = append(b, e.kind)
	b = binary.AppendUvarint(b, uint64(e.line))
	b = binary.AppendUvarint(b, uint64(len(e.id)))
	b = append(b, e.id...)
	b = binary.AppendUvarint(b, uint64(len(e.reason)))
	return append(b, e.reason...)
}

func readPrintEntry(r *bufio.Reader, buf []byte) (printEntry, []byte, error) {
	var fixed [17]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return printEntry{}, buf, err
	}
	e := printEntry{hi: binary.BigEndian.Uint64(fixed[:8]), lo: binary.BigEndian.Uint64(fixed[8:16]), kind: fixed[16]}
	line, err := binary.ReadUvarint(r)
	if err != nil {
		return e, buf, err
	}
	e.line = int(line)
	n, err := binary.ReadUvarint(r)
	if err != nil {
		return e, buf, err
	}
	if n > 1<<16 {
		return e, buf, errors.New("corrupt entry")
	}
	buf = slices.Grow(buf[:0], int(n))[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		return e, buf, err
	}
	e.id = string(buf)
	if n, err = binary.ReadUvarint(r); err != nil {
		return e, buf, err
	}
	if n > 1<<16 {
		return e, buf, errors.New("corrupt entry")
	}
	if n > 0 {
		buf = slices.Grow(buf[:0], int(n))[:n]
		if _, err := io.ReadFull(r, buf); err != nil {
			return e, buf, err
		}
		e.reason = string(buf)
	}
	return e, buf, nil
}

// touchPrints makes the prints file at path valid at the store's version
// now, its entries unchanged: the run changed the store only for users
// the file does not hold (the rows it decoded), under the writer lock.
// v is the store's version the caller judged the entries at; a store
// that moved since (a targeted sync wrote meanwhile) keeps the file
// invalid instead.
func touchPrints(ctx context.Context, ps PrintStore, v int64) error {
	f, err := os.OpenFile(ps.PrintsPath(), os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("update prints file: %w", err)
	}
	defer f.Close()
	if now, err := ps.ChangeVersion(ctx); err != nil || now != v {
		return errStoreMoved(err)
	}
	var h [8 + 8 + 16]byte // version, count (kept), token
	if _, err := f.ReadAt(h[:], 40); err != nil {
		return fmt.Errorf("update prints file: %w", err)
	}
	binary.BigEndian.PutUint64(h[:8], uint64(v))
	if _, err := rand.Read(h[16:]); err != nil {
		return fmt.Errorf("update prints file: %w", err)
	}
	// The token first, as writePrints does.
	if err := ps.SetPrintsToken(ctx, hex.EncodeToString(h[16:])); err != nil {
		return err
	}
	if _, err := f.WriteAt(h[:], 40); err != nil {
		return fmt.Errorf("update prints file: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("update prints file: %w", err)
	}
	return nil
}

// errStoreMoved: the store changed while the prints were being kept, so
// they are not installed; the next run decodes every row and keeps them.
func errStoreMoved(err error) error {
	if err != nil {
		return fmt.Errorf("read change version: %w", err)
	}
	return errors.New("the state DB changed while the prints were written (a targeted sync); not kept")
}

// writePrints writes the entries of next, in print order, as the prints
// file for seed at the store's version v (read before the entries were
// chosen): to a temporary file, synced, then renamed over the old one,
// unless the store moved past v meanwhile.
func writePrints(ctx context.Context, ps PrintStore, seed string, v int64, next iter.Seq2[printEntry, error]) error {
	path := ps.PrintsPath()
	tmp, err := os.CreateTemp(filepath.Dir(path), ".prints-*")
	if err != nil {
		return fmt.Errorf("write prints file: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	w := bufio.NewWriterSize(tmp, 256<<10)
	var h [printsHeaderSize]byte
	if _, err := w.Write(h[:]); err != nil {
		return fmt.Errorf("write prints file: %w", err)
	}
	var n uint64
	var buf []byte
	for e, err := range next {
		if err != nil {
			return err
		}
		buf = appendPrintEntry(buf[:0], e)
		if _, err := w.Write(buf); err != nil {
			return fmt.Errorf("write prints file: %w", err)
		}
		n++
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write prints file: %w", err)
	}
	if now, err := ps.ChangeVersion(ctx); err != nil || now != v {
		return errStoreMoved(err)
	}
	copy(h[:8], printsMagic)
	sum := sha256.Sum256([]byte(seed))
	copy(h[8:40], sum[:])
	binary.BigEndian.PutUint64(h[40:48], uint64(v))
	binary.BigEndian.PutUint64(h[48:56], n)
	if _, err := rand.Read(h[56:72]); err != nil {
		return fmt.Errorf("write prints file: %w", err)
	}
	// The token first: a crash before the rename leaves a store that
	// trusts no file, never one that trusts a stale file.
	if err := ps.SetPrintsToken(ctx, hex.EncodeToString(h[56:72])); err != nil {
		return err
	}
	if _, err := tmp.WriteAt(h[:], 0); err != nil {
		return fmt.Errorf("write prints file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write prints file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write prints file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write prints file: %w", err)
	}
	return nil
}

// printBuckets partitions values by the top bits of their print; each
// partition is sorted in memory on its own (a radix partition, then a
// sort), so sorting n values holds about n/printBucketCount of them.
const (
	printBucketBits  = 7
	printBucketCount = 1 << printBucketBits
	printBucketChunk = 256 // values held per partition before it spills
)

// bucketSorter sorts values by print in bounded memory: values go to
// their partition's buffer; a full buffer is spilled, as one chunk, to a
// shared temporary file.
type bucketSorter[T any] struct {
	dir    string
	key    func(T) (hi, lo uint64)
	enc    func([]byte, T) []byte
	dec    func(*bufio.Reader) (T, error)
	bufs   [printBucketCount][]T
	chunks [printBucketCount][][2]int64 // offset, length in f
	f      *os.File
	off    int64
	n      int64
	scr    []byte
}

func newBucketSorter[T any](dir string, key func(T) (uint64, uint64), enc func([]byte, T) []byte, dec func(*bufio.Reader) (T, error)) *bucketSorter[T] {
	return &bucketSorter[T]{dir: dir, key: key, enc: enc, dec: dec}
}

func (s *bucketSorter[T]) add(v T) error {
	hi, _ := s.key(v)
	b := hi >> (64 - printBucketBits)
	s.bufs[b] = append(s.bufs[b], v)
	s.n++
	if len(s.bufs[b]) < printBucketChunk {
		return nil
	}
	return s.spill(int(b))
}

func (s *bucketSorter[T]) spill(b int) error {
	if s.f == nil {
		f, err := os.CreateTemp(s.dir, "plugipay-sync-prints-*")
		if err != nil {
			return fmt.Errorf("create spill file: %w", err)
		}
		_ = os.Remove(f.Name())
		s.f = f
	}
	s.scr = s.scr[:0]
	for _, v := range s.bufs[b] {
		s.scr = s.enc(s.scr, v)
	}
	if _, err := s.f.WriteAt(s.scr, s.off); err != nil {
		return fmt.Errorf("write spill file: %w", err)
	}
	s.chunks[b] = append(s.chunks[b], [2]int64{s.off, int64(len(s.scr))})
	s.off += int64(len(s.scr))
	s.bufs[b] = s.bufs[b][:0]
	return nil
}

// sorted yields every value added, in print order (values with equal
// prints in no particular order).
func (s *bucketSorter[T]) sorted() iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		var all []T
		var keys, scratch []sortKey
		r := bufio.NewReaderSize(nil, 64<<10)
		for b := range printBucketCount {
			all = all[:0]
			for _, c := range s.chunks[b] {
				r.Reset(io.NewSectionReader(s.f, c[0], c[1]))
				for {
					v, err := s.dec(r)
					if errors.Is(err, io.EOF) {
						break
					}
					if err != nil {
						var zero T
						yield(zero, fmt.Errorf("read spill file: %w", err))
						return
					}
					all = append(all, v)
				}
			}
			all = append(all, s.bufs[b]...)
			// Sort the keys, not the values: a value (a SQL row's print
			// with its key) is 48 bytes and its print is split on every
			// comparison; this sort took a quarter of a SQL no-op scan.
			keys = keys[:0]
			for i, v := range all {
				hi, lo := s.key(v)
				keys = append(keys, sortKey{hi, lo, i})
			}
			keys, scratch = radixSortKeys(keys, scratch)
			for _, k := range keys {
				if !yield(all[k.i], nil) {
					return
				}
			}
		}
	}
}

// sortKey is a value's print and its index in its partition.
type sortKey struct {
	hi, lo uint64
	i      int
}

// Radix passes of radixSortKeys: the bits of hi below a partition's.
const (
	radixBits   = 11
	radixPasses = 2
)

// radixSortKeys sorts the keys of one partition by print. Prints are
// uniform hashes, so two counting-sort passes over the next 22 bits of hi
// leave only rare runs of equal prefixes, which a comparison sort puts in
// order: about a third of the time of sorting by comparison alone. It
// returns the sorted keys and the buffer to reuse.
func radixSortKeys(keys, scratch []sortKey) ([]sortKey, []sortKey) {
	if len(keys) < 64 {
		slices.SortFunc(keys, compareKeys)
		return keys, scratch
	}
	scratch = slices.Grow(scratch[:0], len(keys))[:len(keys)]
	src, dst := keys, scratch
	var count [1 << radixBits]int
	for pass := range radixPasses {
		shift := 64 - printBucketBits - radixBits*(radixPasses-pass)
		clear(count[:])
		for _, k := range src {
			count[(k.hi>>shift)&(1<<radixBits-1)]++
		}
		sum := 0
		for d, c := range count {
			count[d] = sum
			sum += c
		}
		for _, k := range src {
			d := (k.hi >> shift) & (1<<radixBits - 1)
			dst[count[d]] = k
			count[d]++
		}
		src, dst = dst, src
	}
	// src is sorted by the top bits; order each run of equal prefixes.
	const prefix = 64 - printBucketBits - radixBits*radixPasses
	for i := 0; i < len(src); {
		j := i + 1
		for j < len(src) && src[j].hi>>prefix == src[i].hi>>prefix {
			j++
		}
		if j-i > 1 {
			slices.SortFunc(src[i:j], compareKeys)
		}
		i = j
	}
	return src, dst
}

func compareKeys(a, b sortKey) int {
	if c := cmp.Compare(a.hi, b.hi); c != 0 {
		return c
	}
	return cmp.Compare(a.lo, b.lo)
}

func (s *bucketSorter[T]) close() {
	if s != nil && s.f != nil {
		s.f.Close()
	}
}

// rowPrintSorter sorts a read's row prints.
func newRowPrintSorter(dir string) *bucketSorter[RowPrint] {
	return newBucketSorter(dir,
		func(r RowPrint) (uint64, uint64) { return splitPrint(r.Print) },
		func(b []byte, r RowPrint) []byte {
			b = append(b, r.Print[:]...)
			b = binary.BigEndian.AppendUint64(b, uint64(r.Pos))
			b = binary.BigEndian.AppendUint32(b, uint32(r.Line))
			b = binary.BigEndian.AppendUint64(b, r.ID)
			b = binary.AppendUvarint(b, uint64(len(r.Key)))
			return append(b, r.Key...)
		},
		func(r *bufio.Reader) (RowPrint, error) {
			b, err := r.Peek(36) // no copy: a buffer here would escape, per row
			if err != nil {
				if errors.Is(err, io.EOF) && len(b) > 0 {
					err = io.ErrUnexpectedEOF
				}
				return RowPrint{}, err
			}
			rp := RowPrint{Pos: int64(binary.BigEndian.Uint64(b[16:24])), Line: int(binary.BigEndian.Uint32(b[24:28])),
				ID: binary.BigEndian.Uint64(b[28:36])}
			copy(rp.Print[:], b[:16])
			if _, err := r.Discard(36); err != nil {
				return RowPrint{}, err
			}
			n, err := binary.ReadUvarint(r)
			if err != nil {
				return RowPrint{}, err
			}
			if n > 0 {
				key := make([]byte, n)
				if _, err := io.ReadFull(r, key); err != nil {
					return RowPrint{}, err
				}
				rp.Key = string(key)
			}
			return rp, nil
		})
}

// newEntrySorter sorts print entries.
func newEntrySorter(dir string) *bucketSorter[printEntry] {
	return newBucketSorter(dir,
		func(e printEntry) (uint64, uint64) { return e.hi, e.lo },
		appendPrintEntry,
		func(r *bufio.Reader) (printEntry, error) {
			e, _, err := readPrintEntry(r, nil)
			return e, err
		})
}

// printCollector gathers the entries a run confirms while it decides and
// writes (from several workers at once).
type printCollector struct {
	mu stdsync.Mutex
	s  *bucketSorter[printEntry]
	// shared are the id hashes several rows of the read carry: their
	// rows never match, so their prints are not kept.
	shared map[uint64]bool
	// err is the first spill error; the run then keeps the old file
	// invalid rather than write a partial one.
	err error
}

func (c *printCollector) add(p Print, kind byte, line int, id, reason string) {
	if c == nil || p == (Print{}) {
		return
	}
	hi, lo := splitPrint(p)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.shared[IDHash(id)] && id != "" {
		return
	}
	if c.err == nil {
		c.err = c.s.add(printEntry{hi: hi, lo: lo, kind: kind, line: line, id: id, reason: reason})
	}
}

// mergeEntries yields the entries of a and b, both in print order, in
// print order.
func mergeEntries(a, b iter.Seq2[printEntry, error]) iter.Seq2[printEntry, error] {
	return func(yield func(printEntry, error) bool) {
		nextB, stop := iter.Pull2(b)
		defer stop()
		eb, errB, okB := nextB()
		for ea, errA := range a {
			if errA != nil {
				yield(printEntry{}, errA)
				return
			}
			for okB && (errB != nil || printLess(eb.hi, eb.lo, ea.hi, ea.lo)) {
				if errB != nil {
					yield(printEntry{}, errB)
					return
				}
				if !yield(eb, nil) {
					return
				}
				eb, errB, okB = nextB()
			}
			if !yield(ea, nil) {
				return
			}
		}
		for ; okB; eb, errB, okB = nextB() {
			if errB != nil {
				yield(printEntry{}, errB)
				return
			}
			if !yield(eb, nil) {
				return
			}
		}
	}
}
