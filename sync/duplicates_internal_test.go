package sync

import (
	"fmt"
	"testing"
)

// The filter grows past its estimate without losing an id (no false
// negatives) and keeps false positives under 1%.
func TestSeenIDs_GrowsWithoutFalseNegatives(t *testing.T) {
	s := newSeenIDs(0) // capacity seenMinCapacity, then doubling
	const n = 3 * seenMinCapacity
	falsePositives := 0
	for i := range n {
		if s.testAndAdd(fmt.Sprintf("usr_%07d", i)) {
			falsePositives++
		}
	}
	if len(s.filters) < 2 {
		t.Errorf("%d filters after %d ids with capacity %d; want it to grow", len(s.filters), n, seenMinCapacity)
	}
	for i := range n {
		if !s.testAndAdd(fmt.Sprintf("usr_%07d", i)) {
			t.Fatalf("usr_%07d was added but not found", i)
		}
	}
	// Under 1% a user at full capacity, less while filling (a false
	// positive only costs an exact count of that id's rows).
	if falsePositives > n/100 {
		t.Errorf("%d false positives in %d new ids", falsePositives, n)
	}
}
