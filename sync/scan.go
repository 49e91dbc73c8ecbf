package sync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
)

// A run is plan, then apply (issue 13). The plan phase (scan) reads the
// whole source once and decides every row; the rows that need a write
// are spilled to a temporary file, as is what was decided for every row.
// Only then, with the duplicated external ids known exactly, does the
// apply phase make the writes. Run and Plan share the plan phase; they
// differ in what they do with its result.

// verdictCodes numbers the verdicts in a scan's row log.
var verdictCodes = []Verdict{VerdictCreate, VerdictUpdate, VerdictLink, VerdictAdopt, VerdictUnchanged,
	VerdictArchive, VerdictSkip, VerdictBackoff, VerdictReject, VerdictLeave}

func verdictCode(v Verdict) byte { return byte(slices.Index(verdictCodes, v)) }

// scanRow is what the scan decided for one row.
type scanRow struct {
	id, ref string
	verdict Verdict
	reason  string
	print   Print
}

// scanHooks are what the run and the dry run do differently while the
// source is read.
type scanHooks struct {
	// known returns what is known of the users of batch.
	known func(ctx context.Context, batch []Record) (func(id string) Known, error)
	// bad is a row the source rejected.
	bad func(ctx context.Context, re *RecordError) error
	// seen gets the external ids read, once per batch.
	seen func(ctx context.Context, ids []string) error
	// row gets each valid row's decision as the scan made it, before
	// duplicates are known, with what was known of its user.
	row func(ctx context.Context, rec Record, k Known, d Decision) error
	// read gets each n rows (valid, bad or deleted) as they are read, with
	// how long the source took to yield them.
	read func(n int64, d time.Duration)
	// printed gets the count of the rows a print pass matched with the
	// last run's confirmed prints: unchanged rows, and rejected rows
	// counted only. each, when set, gets every such row (its id, ref,
	// verdict and, for a reject, the reason recorded with it).
	printed func(unchanged, rejected int64)
	each    func(id []byte, ref string, v Verdict, reason []byte)
}

// resolveHooks are what the run and the dry run do with the scan's
// verdicts once duplicates are known.
type resolveHooks struct {
	// final gets every row whose final verdict needs no write; changed
	// says it differs from the scan's (a duplicate's rows).
	final func(row scanRow, d Decision, changed bool)
	// mark records a user whose external id several rows carry.
	mark func(ctx context.Context, id string, refs []string) error
	// clear removes the duplicate mark of a user a complete read found on
	// one row or none.
	clear func(ctx context.Context, id string) error
}

// scan is the plan phase of one run or dry run.
type scan struct {
	r   *Reconciler
	pol policy
	// rows holds id, ref, verdict and reason of every valid row.
	rows *spill
	// writes holds the jobs of the rows that need a write.
	writes *spill
	// seenIDs screens ids already read; maybe are the ids it flagged (on
	// a second row, or a false positive) and the marked ones: only their
	// rows are gathered to find duplicates exactly.
	seenIDs *seenIDs
	maybe   map[string]bool
	marked  map[string]bool
	// markedMsg are the messages of the marks.
	markedMsg map[string]string
	// estimate is how many users the read is expected to hold.
	estimate int64
	// complete: the read was the whole source.
	complete bool
	// rejected are the users whose writes are not applied: duplicates.
	rejected map[string]bool
	// prints is the print pass of the scan, when the source and store
	// keep prints (see prints.go); nil otherwise.
	prints *scanPrints
	// old are the last run's confirmed prints, when valid for this run.
	old *printSet
	// confirmed collects the prints this run confirms, for the next.
	confirmed *printCollector
	// fallback says why a print pass gave way to a full read.
	fallback string
}

// newScan prepares a scan: the users marked as duplicated by earlier
// runs, and a seen-ids filter sized for the source.
func (r *Reconciler) newScan(ctx context.Context) (*scan, error) {
	marked, err := r.store.FailureIDsByCode(ctx, CodeDuplicateExternalID)
	if err != nil {
		return nil, fmt.Errorf("load duplicate marks: %w", err)
	}
	mapped, err := r.store.MappingCount(ctx)
	if err != nil {
		return nil, fmt.Errorf("count mappings: %w", err)
	}
	s := &scan{r: r, pol: r.policy(), estimate: mapped, maybe: map[string]bool{},
		marked: map[string]bool{}, rejected: map[string]bool{}}
	for _, id := range marked {
		s.marked[id], s.maybe[id] = true, true
	}
	// The marks' messages, so that a mark that stands unchanged is not
	// written again (which would make the store look changed).
	if len(marked) > 0 {
		fs, err := r.store.Failures(ctx, marked)
		if err != nil {
			return nil, fmt.Errorf("load duplicate marks: %w", err)
		}
		s.markedMsg = make(map[string]string, len(fs))
		for id, f := range fs {
			s.markedMsg[id] = f.Message
		}
	}
	if s.rows, err = newSpill(r.opts.SpillDir, "plugipay-sync-rows-*"); err != nil {
		return nil, err
	}
	if s.writes, err = newSpill(r.opts.SpillDir, "plugipay-sync-writes-*"); err != nil {
		s.rows.close()
		return nil, err
	}
	if err := s.openPrints(ctx); err != nil {
		s.close()
		return nil, err
	}
	if s.old == nil {
		// Every row is decoded: the filter holds every id. A print pass
		// sizes its own for the rows it decodes (readPrinted).
		s.seenIDs = newSeenIDs(mapped)
	}
	return s, nil
}

func (s *scan) close() {
	s.rows.close()
	s.writes.close()
	s.closePrints()
}

// spilledJob is a job as the writes spill holds it.
type spilledJob struct {
	Rec      Record
	Hash     string
	Mapping  *Mapping `json:",omitempty"`
	Failures int      `json:",omitempty"`
	Verdict  Verdict
}

// read reads the source once, decides every row and spills it. It returns
// a fatal source or store error, or the cause of a cancelled ctx. Where
// the last run's confirmed prints are at hand, only the rows that do not
// match them are decoded (readPrinted).
func (s *scan) read(ctx context.Context, h scanHooks) error {
	rd := &scanReader{s: s, h: h, batch: make([]Record, 0, s.r.opts.BatchSize)}
	if s.old != nil {
		done, err := s.readPrinted(ctx, rd)
		if err != nil || done {
			return err
		}
		s.r.log.Info("reading every row: the source could not print this read", zap.String("why", s.fallback))
		s.seenIDs = newSeenIDs(s.estimate)
	}
	readStart := time.Now()
	for rec, err := range readAhead(ctx, s.r.src.Records) {
		if err := rd.take(ctx, rec, err, time.Since(readStart)); err != nil {
			return err
		}
		readStart = time.Now()
	}
	if err := rd.finish(ctx); err != nil {
		return err
	}
	s.complete = s.r.readComplete()
	return nil
}

// scanReader batches the rows of a read for decide.
type scanReader struct {
	s     *scan
	h     scanHooks
	batch []Record
	seen  []string
}

// take takes one row of the read (a record, a *RecordError, or a fatal
// error) that took the source took to yield.
func (rd *scanReader) take(ctx context.Context, rec Record, err error, took time.Duration) error {
	s, h := rd.s, rd.h
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	var re *RecordError
	if err != nil && !errors.As(err, &re) {
		// The source's final error is not a record (an empty file
		// was summarized as "read 1"; issue 8's bad-input matrix).
		return fmt.Errorf("read source: %w", err)
	}
	h.read(1, took)
	switch {
	case err != nil:
		if err := h.bad(ctx, re); err != nil {
			return err
		}
		if re.ExternalID != "" {
			rd.seen = append(rd.seen, re.ExternalID) // a bad row is not a deleted user
		}
	case rec.Deleted:
		// Not seen: a complete read archives its customer (decideGone).
	default:
		if s.seenIDs.testAndAdd(rec.ExternalID) {
			s.maybe[rec.ExternalID] = true
		}
		rd.batch = append(rd.batch, rec)
		if len(rd.batch) == cap(rd.batch) {
			return rd.flush(ctx)
		}
	}
	return nil
}

func (rd *scanReader) flush(ctx context.Context) error {
	for _, rec := range rd.batch {
		rd.seen = append(rd.seen, rec.ExternalID)
	}
	if err := rd.h.seen(ctx, rd.seen); err != nil {
		return err
	}
	rd.seen = rd.seen[:0]
	err := rd.s.decide(ctx, rd.batch, rd.h)
	rd.batch = rd.batch[:0]
	return err
}

// finish decides the last batch of a read that ended.
func (rd *scanReader) finish(ctx context.Context) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return rd.flush(ctx)
}

// decide decides a batch of rows and spills them. A duplicate is not
// known yet: each row is decided as the only one of its user, after a
// complete read; resolve corrects what that assumed.
func (s *scan) decide(ctx context.Context, batch []Record, h scanHooks) error {
	if len(batch) == 0 {
		return nil
	}
	known, err := h.known(ctx, batch)
	if err != nil {
		return err
	}
	w := when{now: s.r.opts.Now()}
	for _, rec := range batch {
		k := known(rec.ExternalID)
		d := s.pol.decide(Desired{Kind: WantRecord, Record: rec, Rows: 1, Complete: true}, k, w)
		if err := h.row(ctx, rec, k, d); err != nil {
			return err
		}
		if err := s.rows.add([]byte(rec.ExternalID), []byte(rec.Ref), []byte{verdictCode(d.Verdict)}, []byte(d.Reason), rec.Print[:]); err != nil {
			return err
		}
		if !d.Verdict.Writes() {
			continue
		}
		j := spilledJob{Rec: rec, Hash: d.Hash, Mapping: k.Mapping, Verdict: d.Verdict}
		if f := k.Failure; f != nil && !d.ClearMark && f.Code != CodeRejected {
			j.Failures = f.Attempts
		}
		b, err := json.Marshal(j)
		if err != nil {
			return fmt.Errorf("spill a write: %w", err)
		}
		if err := s.writes.add(b); err != nil {
			return err
		}
	}
	return nil
}

// resolve finds the duplicated external ids exactly, among the rows of
// the ids the filter flagged, and settles the duplicate marks: every row
// of a duplicated id is rejected, whatever the batch size, and its user
// marked; a marked user a complete read found on one row is unmarked and
// synced; one a partial read found is rejected, as only a complete read
// shows the other rows are gone. all asks for every row's final verdict,
// not only the flagged ones'.
func (s *scan) resolve(ctx context.Context, all bool, h resolveHooks) error {
	groups := map[string][]scanRow{}
	if len(s.maybe) > 0 || all || s.confirmed != nil {
		for f, err := range s.rows.records(5) {
			if err != nil {
				return err
			}
			row := scanRow{id: string(f[0]), ref: string(f[1]), verdict: verdictCodes[f[2][0]], reason: string(f[3])}
			copy(row.print[:], f[4])
			switch {
			case s.maybe[row.id]:
				groups[row.id] = append(groups[row.id], row)
			case !row.verdict.Writes():
				s.confirm(row)
				if all {
					h.final(row, Decision{Verdict: row.verdict, Reason: row.reason}, false)
				}
			}
		}
	}
	for _, id := range slices.Sorted(maps.Keys(s.maybe)) {
		rows := groups[id]
		d, rejected := s.pol.duplicate(len(rows), s.marked[id], s.complete)
		if rejected {
			s.rejected[id] = true
			refs := make([]string, len(rows))
			for i, row := range rows {
				refs[i] = row.ref
			}
			for _, row := range rows {
				dd := d
				if len(rows) > 1 {
					dd.Reason = duplicateReason(row.ref, refs)
				}
				h.final(row, dd, true)
			}
			if len(rows) > 1 {
				if err := h.mark(ctx, id, refs); err != nil {
					return err
				}
			}
			continue
		}
		if d.ClearMark {
			if err := h.clear(ctx, id); err != nil {
				return err
			}
		}
		for _, row := range rows {
			if !row.verdict.Writes() {
				s.confirm(row)
				h.final(row, Decision{Verdict: row.verdict, Reason: row.reason}, false)
			}
		}
	}
	return nil
}

// confirm keeps the print of a row whose final verdict is unchanged: the
// next run need not decode it.
func (s *scan) confirm(row scanRow) {
	if row.verdict == VerdictUnchanged {
		s.confirmed.add(row.print, printConfirmed, 0, row.id, "")
	}
}

// duplicateReason is the reason a row of a duplicated id is rejected,
// naming the other rows.
func duplicateReason(ref string, refs []string) string {
	others := make([]string, 0, len(refs))
	for _, r := range refs {
		if r != ref {
			others = append(others, r)
		}
	}
	where := "an earlier row"
	if len(others) > 0 {
		where = strings.Join(others, ", ")
	}
	return fmt.Sprintf("duplicate externalId (also at %s); none of its rows is synced until the source has one", where)
}

// jobs yields the spilled writes, leaving out the rejected users'.
func (s *scan) jobs() func(yield func(job, error) bool) {
	return func(yield func(job, error) bool) {
		for f, err := range s.writes.records(1) {
			if err != nil {
				yield(job{}, err)
				return
			}
			var sj spilledJob
			if err := json.Unmarshal(f[0], &sj); err != nil {
				yield(job{}, fmt.Errorf("read a spilled write: %w", err))
				return
			}
			if s.rejected[sj.Rec.ExternalID] {
				continue
			}
			if !yield(job{rec: sj.Rec, hash: sj.Hash, mapping: sj.Mapping, failures: sj.Failures, verdict: sj.Verdict}, nil) {
				return
			}
		}
	}
}

// spillDir is where scans spill by default.
func spillDir() string { return os.TempDir() }
