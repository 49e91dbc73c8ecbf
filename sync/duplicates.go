package sync

import (
	"github.com/bits-and-blooms/bloom/v3"
)

// CodeDuplicateExternalID is the failure code that marks a user whose
// external id more than one source row carries. No row is synced, and a
// customer that exists for it is left alone, while the mark stands; a
// complete read with one row left clears it and syncs that row in the
// same run.
const CodeDuplicateExternalID = "duplicate_external_id"

// Shape of the run's seen-ids filter: 10 bits and 7 hash probes a user.
// Filled to its capacity a filter's false-positive rate is under 1%, and
// it is sized at 1.25 times the cache, where it is about 0.3%. Since the
// plan phase counts the rows of every flagged id exactly (scan.resolve), a
// false positive costs only gathering that user's rows after the read; it
// never makes a user look duplicated. Before that (36 bits and 12 probes,
// for 3 false positives in 10 million) the filter was 28 MiB of a 5M-row
// run and 7% of a no-op scan (issue 13).
const (
	seenBitsPerID   = 10
	seenHashes      = 7
	seenMinCapacity = 100_000
)

// seenIDs is a scalable Bloom filter of the external ids a run has read:
// when one filter holds its capacity, a twice as large one is added, so
// the false-positive rate stays bounded however much the source grew
// since the estimate. It never forgets an id (no false negatives), so
// every real duplicate is flagged, across batches and in about 1.3 bytes
// a user instead of the ids themselves.
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
func (s *seenIDs) testAndAdd(id string) bool { return s.testAndAddBytes([]byte(id)) }

// testAndAddBytes is testAndAdd of b.
func (s *seenIDs) testAndAddBytes(b []byte) bool {
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
