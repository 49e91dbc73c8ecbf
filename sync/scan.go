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
	// read gets each row (valid, bad or deleted) as it is read, with how
	// long the source took to yield it.
	read func(d time.Duration)
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
	// complete: the read was the whole source.
	complete bool
	// rejected are the users whose writes are not applied: duplicates.
	rejected map[string]bool
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
	s := &scan{r: r, pol: r.policy(), seenIDs: newSeenIDs(mapped), maybe: map[string]bool{},
		marked: map[string]bool{}, rejected: map[string]bool{}}
	for _, id := range marked {
		s.marked[id], s.maybe[id] = true, true
	}
	if s.rows, err = newSpill(r.opts.SpillDir, "plugipay-sync-rows-*"); err != nil {
		return nil, err
	}
	if s.writes, err = newSpill(r.opts.SpillDir, "plugipay-sync-writes-*"); err != nil {
		s.rows.close()
		return nil, err
	}
	return s, nil
}

func (s *scan) close() {
	s.rows.close()
	s.writes.close()
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
// a fatal source or store error, or the cause of a cancelled ctx.
func (s *scan) read(ctx context.Context, h scanHooks) error {
	batch := make([]Record, 0, s.r.opts.BatchSize)
	var seen []string
	flush := func() error {
		for _, rec := range batch {
			seen = append(seen, rec.ExternalID)
		}
		if err := h.seen(ctx, seen); err != nil {
			return err
		}
		seen = seen[:0]
		err := s.decide(ctx, batch, h)
		batch = batch[:0]
		return err
	}
	readStart := time.Now()
	for rec, err := range readAhead(ctx, s.r.src.Records) {
		took := time.Since(readStart)
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		var re *RecordError
		if err != nil && !errors.As(err, &re) {
			// The source's final error is not a record (an empty file
			// was summarized as "read 1"; issue 8's bad-input matrix).
			return fmt.Errorf("read source: %w", err)
		}
		h.read(took)
		switch {
		case err != nil:
			if err := h.bad(ctx, re); err != nil {
				return err
			}
			if re.ExternalID != "" {
				seen = append(seen, re.ExternalID) // a bad row is not a deleted user
			}
		case rec.Deleted:
			// Not seen: a complete read archives its customer (decideGone).
		default:
			if s.seenIDs.testAndAdd(rec.ExternalID) {
				s.maybe[rec.ExternalID] = true
			}
			batch = append(batch, rec)
			if len(batch) == cap(batch) {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		readStart = time.Now()
	}
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if err := flush(); err != nil {
		return err
	}
	s.complete = s.r.readComplete()
	return nil
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
		if err := s.rows.add([]byte(rec.ExternalID), []byte(rec.Ref), []byte{verdictCode(d.Verdict)}, []byte(d.Reason)); err != nil {
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
	if len(s.maybe) > 0 || all {
		for f, err := range s.rows.records(4) {
			if err != nil {
				return err
			}
			row := scanRow{id: string(f[0]), ref: string(f[1]), verdict: verdictCodes[f[2][0]], reason: string(f[3])}
			switch {
			case s.maybe[row.id]:
				groups[row.id] = append(groups[row.id], row)
			case all && !row.verdict.Writes():
				h.final(row, Decision{Verdict: row.verdict, Reason: row.reason}, false)
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
				h.final(row, Decision{Verdict: row.verdict, Reason: row.reason}, false)
			}
		}
	}
	return nil
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
