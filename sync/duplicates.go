package sync

import (
	"context"
	"fmt"
	"strings"

	"github.com/bits-and-blooms/bloom/v3"
	"go.uber.org/zap"
)

// CodeDuplicateExternalID is the failure code that marks a user whose
// external id more than one source row carries. Neither row is synced
// while the mark stands; a complete read with one row left clears it and
// syncs that row in the same run.
const CodeDuplicateExternalID = "duplicate_external_id"

// Shape of the run's seen-ids filter: 36 bits and 12 hash probes a user.
// Filled to its capacity a filter's false-positive rate is about 3 in 10
// million, and it is sized at 1.25 times the cache, so a run of a million
// users sees one about every few dozen runs. A false positive makes one
// user look duplicated for one run; the next complete read clears it.
// Twelve probes rather than the 23 that minimise the rate for these bits
// keep the lookups cheap (each probe is a cache miss).
const (
	seenBitsPerID   = 36
	seenHashes      = 12
	seenMinCapacity = 100_000
)

// seenIDs is a scalable Bloom filter of the external ids a run has read:
// when one filter holds its capacity, a twice as large one is added, so
// the false-positive rate stays bounded however much the source grew
// since the estimate. It never forgets an id (no false negatives), so
// every real duplicate is found, across batches and in about 4.5 bytes a
// user instead of the ids themselves.
type seenIDs struct {
	filters []*bloom.BloomFilter
	capLast uint // capacity of the last filter
	inLast  uint // ids added to the last filter
}

func newSeenIDs(estimate int64) *seenIDs {
	c := uint(max(estimate+estimate/4, seenMinCapacity))
	return &seenIDs{filters: []*bloom.BloomFilter{newSeenFilter(c)}, capLast: c}
}

func newSeenFilter(capacity uint) *bloom.BloomFilter {
	return bloom.New(capacity*seenBitsPerID, seenHashes)
}

// testAndAdd reports whether id was (probably) added before, and adds it.
func (s *seenIDs) testAndAdd(id string) bool {
	b := []byte(id)
	for _, f := range s.filters[:len(s.filters)-1] {
		if f.Test(b) {
			return true
		}
	}
	if s.filters[len(s.filters)-1].TestAndAdd(b) {
		return true
	}
	s.inLast++
	if s.inLast >= s.capLast {
		s.capLast *= 2
		s.inLast = 0
		s.filters = append(s.filters, newSeenFilter(s.capLast))
	}
	return false
}

// dupRows are the rows of one duplicated external id a run read.
type dupRows struct {
	refs  []string
	first Record // the first row read this run
	// fresh: found in this run, not marked before it. Its first row may
	// have been synced before the second was read; each later row is
	// rejected as it comes.
	fresh bool
}

// duplicates finds external ids that more than one source row carries.
type duplicates struct {
	seen *seenIDs
	ids  map[string]*dupRows
}

// loadDuplicates prepares the run's duplicate tracking: the users marked
// as duplicated by earlier runs, and a filter sized for the source.
func (ru *run) loadDuplicates(ctx context.Context) error {
	marked, err := ru.store.FailureIDsByCode(ctx, CodeDuplicateExternalID)
	if err != nil {
		return fmt.Errorf("load duplicate marks: %w", err)
	}
	mapped, err := ru.store.MappingCount(ctx)
	if err != nil {
		return fmt.Errorf("count mappings: %w", err)
	}
	ru.dups = duplicates{seen: newSeenIDs(mapped), ids: make(map[string]*dupRows, len(marked))}
	for _, id := range marked {
		ru.dups.ids[id] = &dupRows{}
	}
	return nil
}

// screen decides what dispatch does with rec: false sends it on. A row of
// a user marked as duplicated is held until the end of the read; a row
// whose external id an earlier row of this run carried is rejected, with
// the earlier row if it is still in batch, and its user marked.
func (ru *run) screen(ctx context.Context, rec Record, batch *[]Record) (bool, error) {
	id := rec.ExternalID
	if d, ok := ru.dups.ids[id]; ok {
		d.refs = append(d.refs, rec.Ref)
		if d.fresh {
			ru.rejectDuplicate(rec, d)
			return true, nil
		}
		if len(d.refs) == 1 {
			d.first = rec
		}
		ru.noteSeen(id)
		return true, nil
	}
	if !ru.dups.seen.testAndAdd(id) {
		return false, nil
	}
	d := &dupRows{fresh: true}
	ru.dups.ids[id] = d
	for i, b := range *batch {
		if b.ExternalID == id {
			// Not sent yet: neither row is synced.
			d.refs = append(d.refs, b.Ref, rec.Ref)
			*batch = append((*batch)[:i], (*batch)[i+1:]...)
			ru.rejectDuplicate(b, d)
			break
		}
	}
	if len(d.refs) == 0 {
		d.refs = append(d.refs, rec.Ref)
	}
	ru.rejectDuplicate(rec, d)
	msg := "more than one source row has this externalId; none is synced until one is left"
	if _, err := ru.store.RecordFailure(ctx, Failure{ExternalID: id, Terminal: true,
		Code: CodeDuplicateExternalID, Message: msg, UpdatedAt: ru.opts.Now()}); err != nil {
		return true, fmt.Errorf("mark duplicate externalId: %w", err)
	}
	ru.noteSeen(id)
	return true, nil
}

func (ru *run) rejectDuplicate(rec Record, d *dupRows) {
	others := make([]string, 0, len(d.refs))
	for _, r := range d.refs {
		if r != rec.Ref {
			others = append(others, r)
		}
	}
	where := "an earlier row"
	if len(others) > 0 {
		where = strings.Join(others, ", ")
	}
	ru.reject(&RecordError{Ref: rec.Ref, ExternalID: rec.ExternalID,
		Reason: fmt.Sprintf("duplicate externalId (also at %s); none of its rows is synced until the source has one", where)})
}

// settleDuplicates ends the read for the users marked as duplicated before
// the run: after a complete read, one left with a single row is unmarked
// and that row returned for syncing, one with no row left is unmarked,
// and one still with several has every row rejected. After a partial
// (incremental) read the rows it saw are rejected and the marks kept: only
// a complete read shows the other rows are gone.
func (ru *run) settleDuplicates(ctx context.Context) ([]Record, error) {
	complete := ru.readComplete()
	var release []Record
	for id, d := range ru.dups.ids {
		if d.fresh {
			continue
		}
		switch {
		case complete && len(d.refs) <= 1:
			if err := ru.store.DeleteFailure(ctx, id); err != nil {
				return nil, fmt.Errorf("clear duplicate mark: %w", err)
			}
			if len(d.refs) == 1 {
				ru.log.Info("externalId no longer duplicated; syncing its row",
					zap.Int64("run_id", ru.id), zap.String("external_id", id), zap.String("ref", d.refs[0]))
				release = append(release, d.first)
			}
		default:
			for _, ref := range d.refs {
				rec := d.first
				rec.Ref = ref
				ru.rejectDuplicate(rec, d)
			}
		}
	}
	return release, nil
}
