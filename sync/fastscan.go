package sync

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// scanPrints is what a scan keeps of its print pass (see prints.go).
type scanPrints struct {
	src   PrintSource
	store PrintStore
	seed  string
	// version is the store's change version when the scan began.
	version int64
	// matched holds the rows whose print matched a confirmed one, in
	// print order: the entry, and the row's position.
	matched *spill
	// moved are the positions of matched rows decoded after all, because
	// a changed row carries their external id too.
	moved map[int64]bool
	// used: the scan was a print pass. dropped: some of the last run's
	// prints matched no row.
	used, dropped bool
}

// maxUnmatchedRows bounds the rows a print pass decodes by position
// (their positions are held in memory); past it, and past a quarter of
// the read, reading every row costs no more.
const maxUnmatchedRows = 200_000

// openPrints prepares the print pass when the source and the store keep
// prints. The archive deletion policy needs every id the read yields, so
// it reads every row.
func (s *scan) openPrints(ctx context.Context) error {
	src, ok := s.r.src.(PrintSource)
	store, ok2 := s.r.store.(PrintStore)
	if !ok || !ok2 || s.r.archiving() {
		return nil
	}
	p := &scanPrints{src: src, store: store, seed: src.PrintSeed() + "\x00" + s.r.printSeed(), moved: map[int64]bool{}}
	v, err := store.ChangeVersion(ctx)
	if err != nil {
		return fmt.Errorf("read change version: %w", err)
	}
	p.version = v
	if s.old, err = openPrints(ctx, store, p.seed); err != nil {
		return err
	}
	s.prints = p
	s.confirmed = &printCollector{s: newEntrySorter(s.r.opts.SpillDir)}
	return nil
}

func (s *scan) closePrints() {
	s.old.close()
	if s.prints != nil && s.prints.matched != nil {
		s.prints.matched.close()
	}
	if s.confirmed != nil {
		s.confirmed.s.close()
	}
}

// printSeed is the reconciler's part of a print seed: what makes a
// decoded record unchanged.
func (r *Reconciler) printSeed() string {
	keys := make([]string, 0, len(r.fields.keys))
	for k := range r.fields.keys {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return fmt.Sprintf("%s %s %+v %v %v", printVersion, hashVersion, r.fields.Managed, r.fields.allMetadata, keys)
}

// readPrinted is the scan's print pass: every row is printed, the prints
// sorted and merged with the last run's confirmed ones, and only the rows
// that did not match are decoded and decided (issue 13). It returns false,
// having decided nothing, when the source cannot print this read or too
// many rows changed; the scan then reads every row.
func (s *scan) readPrinted(ctx context.Context, rd *scanReader) (bool, error) {
	p, h := s.prints, rd.h
	start := time.Now()
	sorter := newRowPrintSorter(s.r.opts.SpillDir)
	defer sorter.close()
	var rows int64
	for rp, err := range p.src.Prints(ctx) {
		if errors.Is(err, ErrNoPrints) {
			s.fallback = err.Error()
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("read source: %w", err)
		}
		if err := sorter.add(rp); err != nil {
			return false, err
		}
		rows++
	}
	if ctx.Err() != nil {
		return false, context.Cause(ctx)
	}
	var err error
	if p.matched, err = newSpill(s.r.opts.SpillDir, "plugipay-sync-matched-*"); err != nil {
		return false, err
	}
	unmatched, ok, err := s.mergePrints(sorter, max(maxUnmatchedRows, rows/4))
	if err != nil || !ok {
		return false, err
	}
	printTook := time.Since(start)

	// The changed rows, in source order, decided as a full read decides
	// them; the seen-ids filter need only hold theirs.
	s.seenIDs = newSeenIDs(int64(len(unmatched)))
	if err := s.decodeAt(ctx, rd, unmatched); err != nil {
		return true, err
	}
	// A matched row whose id a changed row carries too is decoded after
	// all: the two are duplicates (or the filter's false positive).
	var again []RowPrint
	var unchanged, rejected int64
	for f, err := range p.matched.records(2) {
		if err != nil {
			return true, err
		}
		e, id, reason, rp := decodeMatched(f)
		if e.kind == printConfirmed && s.seenIDs.testBytes(id) {
			p.moved[rp.Pos] = true
			again = append(again, rp)
			continue
		}
		v := VerdictUnchanged
		if e.kind == printConfirmed {
			unchanged++
		} else {
			v = VerdictReject
			rejected++
		}
		if h.each != nil {
			ref := ""
			if rp.Line > 0 {
				ref = "line " + strconv.Itoa(rp.Line)
			}
			h.each(id, ref, v, reason)
		}
	}
	h.read(unchanged+rejected, printTook)
	h.printed(unchanged, rejected)
	if len(again) > 0 {
		slices.SortFunc(again, func(a, b RowPrint) int { return cmp.Compare(a.Pos, b.Pos) })
		if err := s.decodeAt(ctx, rd, again); err != nil {
			return true, err
		}
	}
	if err := rd.finish(ctx); err != nil {
		return true, err
	}
	s.complete = s.r.readComplete()
	p.used = true
	s.r.log.Info("print pass: only the rows that changed since the last run were decoded",
		zap.Int64("rows", rows), zap.Int64("unchanged", unchanged), zap.Int64("known_rejects", rejected),
		zap.Int("decoded", len(unmatched)+len(again)), zap.Duration("took", time.Since(start)))
	return true, nil
}

// mergePrints merges the sorted prints of the read with the last run's
// confirmed ones: a row whose print matches one (and no other row's) goes
// to the matched spill; the others are returned, in source order. ok is
// false when more than limit rows did not match.
func (s *scan) mergePrints(sorter *bucketSorter[RowPrint], limit int64) (unmatched []RowPrint, ok bool, err error) {
	p := s.prints
	old, err := s.old.reader()
	if err != nil {
		return nil, false, err
	}
	haveOld, err := old.next()
	if err != nil {
		return nil, false, err
	}
	var group []RowPrint
	var where []byte
	settle := func() error {
		if len(group) == 0 {
			return nil
		}
		hi, lo := splitPrint(group[0].Print)
		for haveOld && printLess(old.e.hi, old.e.lo, hi, lo) {
			p.dropped = true
			if haveOld, err = old.next(); err != nil {
				return err
			}
		}
		match := haveOld && old.e.hi == hi && old.e.lo == lo && len(group) == 1
		if match && old.e.kind == printRejected {
			// A known reject is counted only while it stays on its line
			// (the failure names the line).
			match = len(old.id) == 0 || old.e.line == group[0].Line
		}
		if match {
			where = binary.BigEndian.AppendUint64(where[:0], uint64(group[0].Pos))
			where = binary.AppendUvarint(where, uint64(group[0].Line))
			where = append(where, group[0].Key...)
			if err := p.matched.add(old.raw, where); err != nil {
				return err
			}
			if haveOld, err = old.next(); err != nil {
				return err
			}
		} else {
			unmatched = append(unmatched, group...)
		}
		group = group[:0]
		return nil
	}
	for rp, err := range sorter.sorted() {
		if err != nil {
			return nil, false, err
		}
		if len(group) > 0 && group[0].Print != rp.Print {
			if err := settle(); err != nil {
				return nil, false, err
			}
			if int64(len(unmatched)) > limit {
				s.fallback = fmt.Sprintf("more than %d rows changed since the last run", limit)
				return nil, false, nil
			}
		}
		group = append(group, rp)
	}
	if err := settle(); err != nil {
		return nil, false, err
	}
	if haveOld {
		p.dropped = true
	}
	if int64(len(unmatched)) > limit {
		s.fallback = fmt.Sprintf("more than %d rows changed since the last run", limit)
		return nil, false, nil
	}
	slices.SortFunc(unmatched, func(a, b RowPrint) int { return cmp.Compare(a.Pos, b.Pos) })
	return unmatched, true, nil
}

// decodeMatched decodes a matched spill record: the entry (its id and
// reason as bytes of f, not copied) and the row's place.
func decodeMatched(f [][]byte) (e printEntry, id, reason []byte, rp RowPrint) {
	e = printEntry{hi: binary.BigEndian.Uint64(f[0][:8]), lo: binary.BigEndian.Uint64(f[0][8:16]), kind: f[0][16]}
	rest := f[0][17:]
	line, n := binary.Uvarint(rest)
	e.line = int(line)
	rest = rest[n:]
	idLen, n := binary.Uvarint(rest)
	id = rest[n : n+int(idLen)]
	rest = rest[n+int(idLen):]
	reasonLen, n := binary.Uvarint(rest)
	reason = rest[n : n+int(reasonLen)]
	rp = RowPrint{Print: e.print(), Pos: int64(binary.BigEndian.Uint64(f[1][:8]))}
	l, n := binary.Uvarint(f[1][8:])
	rp.Line = int(l)
	if key := f[1][8+n:]; len(key) > 0 {
		rp.Key = string(key)
	}
	return e, id, reason, rp
}

// decodeAt decodes and takes the rows at rows' positions.
func (s *scan) decodeAt(ctx context.Context, rd *scanReader, rows []RowPrint) error {
	if len(rows) == 0 {
		return nil
	}
	readStart := time.Now()
	for rec, err := range s.prints.src.RecordsAt(ctx, rows) {
		if err := rd.take(ctx, rec, err, time.Since(readStart)); err != nil {
			return err
		}
		readStart = time.Now()
	}
	return nil
}

// confirmedPrints yields the prints the run confirmed, in print order:
// the matched rows' and those the run decided or wrote.
func (s *scan) confirmedPrints() iter.Seq2[printEntry, error] {
	p := s.prints
	matched := func(yield func(printEntry, error) bool) {
		if p.matched == nil {
			return
		}
		for f, err := range p.matched.records(2) {
			if err != nil {
				yield(printEntry{}, err)
				return
			}
			e, id, reason, rp := decodeMatched(f)
			if p.moved[rp.Pos] {
				continue
			}
			e.id, e.reason = string(id), string(reason)
			if !yield(e, nil) {
				return
			}
		}
	}
	return mergeEntries(matched, s.confirmed.s.sorted())
}

// keepPrints writes the prints the run confirmed for the next run, unless
// they are the ones it read and nothing changed in the store since.
//
// A read that was not the whole source (an incremental SQL read) confirmed
// only the rows it read: it leaves the file as it is, which stays valid
// if the run changed nothing in the store. Written over, the file of the
// last full read was lost to every incremental run, even a no-op, and the
// next full scan decoded every row again.
func (s *scan) keepPrints(ctx context.Context) error {
	p := s.prints
	if p == nil || s.confirmed.err != nil || !s.complete {
		return nil
	}
	v, err := p.store.ChangeVersion(ctx)
	if err != nil {
		return fmt.Errorf("read change version: %w", err)
	}
	if p.used && !p.dropped && len(p.moved) == 0 && s.confirmed.s.n == 0 && v == p.version {
		return nil
	}
	s.r.log.Debug("writing the confirmed prints", zap.Bool("print_pass", p.used), zap.Bool("dropped", p.dropped),
		zap.Int("moved", len(p.moved)), zap.Int64("confirmed", s.confirmed.s.n), zap.Bool("store_changed", v != p.version))
	return writePrints(ctx, p.store, p.seed, s.confirmedPrints())
}

// refLine is the line of a "line N" ref, or 0.
func refLine(ref string) int {
	n, _ := strconv.Atoi(strings.TrimPrefix(ref, "line "))
	return n
}
