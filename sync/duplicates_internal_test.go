package sync

import (
	"fmt"
	"testing"
)

// The filter grows past its estimate without losing an id (no false
// negatives) and keeps false positives rare.
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
	// About 3e-7 a user at full capacity, less while filling: expect 0.
	if falsePositives > 2 {
		t.Errorf("%d false positives in %d new ids", falsePositives, n)
	}
}
