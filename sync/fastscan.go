package sync

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"iter"
	"math/bits"
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
	// sorter holds the read's prints, sorted on demand; kept until the
	// run writes the confirmed prints (a second merge gives the matched
	// ones again, instead of a copy of every matched row spilled).
	sorter *bucketSorter[RowPrint]
	// shared are the id hashes more than one row of the read carries:
	// their rows never match, so every row of a duplicated id is decoded
	// and found by the scan's exact count. candidates are the hashes the
	// print pass's filter flagged (shared ones and false positives), whose
	// rows the first merge counts exactly.
	shared, candidates map[uint64]bool
	// used: the scan was a print pass. dropped: some of the last run's
	// prints matched no row.
	used, dropped bool
}

// idFilter flags the id hashes of a read that may repeat: three probes a
// hash in a bit array of about 16 bits a row (under 0.5% false positives,
// which the merge then counts exactly). The hashes are hashes already, so
// each probe is a multiply and a shift, not a hash of its own: a Bloom
// filter's seven hashes a row cost a tenth of a print pass.
type idFilter struct {
	bits  []uint64
	shift uint
}

func newIDFilter(estimate int64) *idFilter {
	n := max(uint64(estimate), 1<<16) * 16
	log := uint(64 - bits.LeadingZeros64(n-1))
	return &idFilter{bits: make([]uint64, (uint64(1)<<log)/64), shift: 64 - log}
}

// testAndAdd reports whether h was (probably) added before, and adds it.
func (f *idFilter) testAndAdd(h uint64) bool {
	seen := true
	for _, m := range [3]uint64{0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9} {
		i := (h * m) >> f.shift
		w, b := &f.bits[i/64], uint64(1)<<(i%64)
		if *w&b == 0 {
			seen = false
			*w |= b
		}
	}
	return seen
}

// maxUnmatchedRows bounds the rows a print pass decodes by position
// (their positions are held in memory); past it, and past a quarter of
// the read, reading every row costs no more.
const maxUnmatchedRows = 200_000

// openPrints prepares the print pass when the source and the store keep
// prints (a store with no prints file, PrintsPath "", keeps none). The
// archive deletion policy needs every id the read yields, so it reads
// every row.
func (s *scan) openPrints(ctx context.Context) error {
	src, ok := s.r.src.(PrintSource)
	store, ok2 := s.r.store.(PrintStore)
	if !ok || !ok2 || store.PrintsPath() == "" || s.r.archiving() {
		return nil
	}
	p := &scanPrints{src: src, store: store, seed: src.PrintSeed() + "\x00" + s.r.printSeed()}
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
	if s.prints != nil {
		s.prints.sorter.close()
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
	p.sorter = newRowPrintSorter(s.r.opts.SpillDir)
	// Every row's id hash goes through a filter as it is printed: an id on
	// two rows (a duplicate, exactly as a full read defines it) is flagged
	// here, wherever the rows are, and counted exactly by the merge, so
	// that no row of it can match.
	ids := newIDFilter(s.estimate)
	p.candidates, p.shared = map[uint64]bool{}, map[uint64]bool{}
	var rows int64
	for rp, err := range p.src.Prints(ctx) {
		if errors.Is(err, ErrNoPrints) {
			s.fallback = err.Error()
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("read source: %w", err)
		}
		if rp.ID != 0 && ids.testAndAdd(rp.ID) {
			p.candidates[rp.ID] = true
		}
		if err := p.sorter.add(rp); err != nil {
			return false, err
		}
		rows++
	}
	if ctx.Err() != nil {
		return false, context.Cause(ctx)
	}
	unmatched, counts, ok, err := s.mergePrints(max(maxUnmatchedRows, rows/4), h.each, nil)
	if err != nil || !ok {
		return false, err
	}
	s.confirmed.shared = p.shared
	h.read(counts.unchanged+counts.rejected, time.Since(start))
	h.printed(counts.unchanged, counts.rejected)

	// The changed rows, in source order, decided as a full read decides
	// them; the seen-ids filter need only hold theirs.
	s.seenIDs = newSeenIDs(int64(len(unmatched)))
	if err := s.decodeAt(ctx, rd, unmatched); err != nil {
		return true, err
	}
	if err := rd.finish(ctx); err != nil {
		return true, err
	}
	s.complete = s.r.readComplete()
	p.used = true
	s.r.log.Info("print pass: only the rows that changed since the last run were decoded",
		zap.Int64("rows", rows), zap.Int64("unchanged", counts.unchanged), zap.Int64("known_rejects", counts.rejected),
		zap.Int("decoded", len(unmatched)), zap.Duration("took", time.Since(start)))
	return true, nil
}

// mergeCounts are the rows a merge matched.
type mergeCounts struct{ unchanged, rejected int64 }

// mergePrints merges the sorted prints of the read with the last run's
// confirmed ones. A row matches when its print is a confirmed one, no
// other row of the read has that print, and no other row has its id; a
// known reject also has to be on the line it was recorded with. each gets
// every matched row; keep, when set, gets every matched entry in print
// order (the second merge, when the run writes the confirmed prints). The
// rows that did not match are returned, in source order; ok is false when
// more than limit of them did not match.
func (s *scan) mergePrints(limit int64, each func(id []byte, ref string, v Verdict, reason []byte), keep func(printEntry) error) (unmatched []RowPrint, counts mergeCounts, ok bool, err error) {
	p := s.prints
	old, err := s.old.reader()
	if err != nil {
		return nil, counts, false, err
	}
	haveOld, err := old.next()
	if err != nil {
		return nil, counts, false, err
	}
	// A row that would match but whose id hash the filter flagged waits
	// until the merge has counted that hash's rows (first merge only).
	type deferred struct {
		rp         RowPrint
		kind       byte
		id, reason string
	}
	var waiting []deferred
	count := map[uint64]int{}
	var group []RowPrint
	// A matched row is decided as every row is, by decide: a confirmed
	// print is unchanged, a known reject rejected again.
	confirmed := s.pol.decide(Desired{Kind: WantConfirmed}, Known{}, when{}).Verdict
	matched := func(rp RowPrint, kind byte, id, reason []byte) {
		v := confirmed
		if kind == printRejected {
			v = s.pol.decide(Desired{Kind: WantRejected}, Known{}, when{}).Verdict
		}
		switch v {
		case VerdictUnchanged:
			counts.unchanged++
		case VerdictReject:
			counts.rejected++
		}
		if each != nil {
			ref := ""
			if rp.Line > 0 {
				ref = "line " + strconv.Itoa(rp.Line)
			}
			each(id, ref, v, reason)
		}
	}
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
		rp := group[0]
		if keep == nil && p.candidates[rp.ID] {
			count[rp.ID] += len(group)
		}
		match := haveOld && old.e.hi == hi && old.e.lo == lo && len(group) == 1 && !p.shared[rp.ID]
		if match && old.e.kind == printRejected {
			// A known reject is counted only while it stays on its line
			// (the failure names the line).
			match = len(old.id) == 0 || old.e.line == rp.Line
		}
		switch {
		case match && keep == nil && p.candidates[rp.ID]:
			waiting = append(waiting, deferred{rp: rp, kind: old.e.kind, id: string(old.id), reason: string(old.reason)})
			if haveOld, err = old.next(); err != nil {
				return err
			}
		case match:
			if keep == nil {
				matched(rp, old.e.kind, old.id, old.reason)
			}
			if keep != nil {
				e := old.e
				e.id, e.reason = string(old.id), string(old.reason)
				if err := keep(e); err != nil {
					return err
				}
			}
			if haveOld, err = old.next(); err != nil {
				return err
			}
		case keep == nil:
			unmatched = append(unmatched, group...)
		}
		group = group[:0]
		return nil
	}
	for rp, err := range p.sorter.sorted() {
		if err != nil {
			return nil, counts, false, err
		}
		if len(group) > 0 && group[0].Print != rp.Print {
			if err := settle(); err != nil {
				return nil, counts, false, err
			}
			if int64(len(unmatched)) > limit {
				s.fallback = fmt.Sprintf("more than %d rows changed since the last run", limit)
				return nil, counts, false, nil
			}
		}
		group = append(group, rp)
	}
	if err := settle(); err != nil {
		return nil, counts, false, err
	}
	if haveOld {
		p.dropped = true
	}
	if keep == nil {
		for h, n := range count {
			if n > 1 {
				p.shared[h] = true
			}
		}
		for _, d := range waiting {
			if p.shared[d.rp.ID] {
				unmatched = append(unmatched, d.rp)
			} else {
				matched(d.rp, d.kind, []byte(d.id), []byte(d.reason))
			}
		}
	}
	if int64(len(unmatched)) > limit {
		s.fallback = fmt.Sprintf("more than %d rows changed since the last run", limit)
		return nil, counts, false, nil
	}
	slices.SortFunc(unmatched, func(a, b RowPrint) int { return cmp.Compare(a.Pos, b.Pos) })
	return unmatched, counts, true, nil
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
// the matched rows' (merged again) and those the run decided or wrote.
func (s *scan) confirmedPrints() iter.Seq2[printEntry, error] {
	matched := func(yield func(printEntry, error) bool) {
		if !s.prints.used {
			return
		}
		stop := errors.New("stopped")
		_, _, _, err := s.mergePrints(0, nil, func(e printEntry) error {
			if !yield(e, nil) {
				return stop
			}
			return nil
		})
		if err != nil && !errors.Is(err, stop) {
			yield(printEntry{}, err)
		}
	}
	return mergeEntries(matched, s.confirmed.s.sorted())
}

// keepPrints writes the prints the run confirmed for the next run. When
// they are the ones it read, the file stays; if the store changed (for the
// rows the run decoded, which the file does not hold), only its version
// is brought up to date. Users a targeted sync read during the run
// (touched) are left out: their confirmed content may have changed since
// the run read their rows.
func (s *scan) keepPrints(ctx context.Context, touchedSince func() map[string]bool) error {
	p := s.prints
	if p == nil || s.confirmed.err != nil || !s.complete {
		return nil
	}
	v, err := p.store.ChangeVersion(ctx)
	if err != nil {
		return fmt.Errorf("read change version: %w", err)
	}
	// After the version: a targeted sync that writes from here on moves
	// it, and the file is then not installed (writePrints, touchPrints).
	touched := touchedSince()
	same := p.used && !p.dropped && s.confirmed.s.n == 0 && len(touched) == 0
	switch {
	case same && v == p.version:
		return nil
	case same:
		return touchPrints(ctx, p.store, v)
	}
	s.r.log.Debug("writing the confirmed prints", zap.Bool("print_pass", p.used), zap.Bool("dropped", p.dropped),
		zap.Int64("confirmed", s.confirmed.s.n), zap.Int("touched", len(touched)))
	entries := s.confirmedPrints()
	if len(touched) > 0 {
		all := entries
		entries = func(yield func(printEntry, error) bool) {
			for e, err := range all {
				if err == nil && touched[e.id] {
					continue
				}
				if !yield(e, err) {
					return
				}
			}
		}
	}
	return writePrints(ctx, p.store, p.seed, v, entries)
}

// refLine is the line of a "line N" ref, or 0.
func refLine(ref string) int {
	n, _ := strconv.Atoi(strings.TrimPrefix(ref, "line "))
	return n
}
