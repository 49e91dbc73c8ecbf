package sync

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestRadixSortKeys: the radix sort of a partition's keys orders them as
// a comparison sort does, for uniform prints, for prints sharing long
// prefixes, for equal prints, and for small partitions.
func TestRadixSortKeys(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const top = uint64(0x5a) << (64 - printBucketBits) // one partition's bits
	gens := map[string]func(i int) sortKey{
		"uniform": func(i int) sortKey { return sortKey{top | rng.Uint64()>>printBucketBits, rng.Uint64(), i} },
		"shared prefix": func(i int) sortKey {
			return sortKey{top | uint64(rng.IntN(4)), rng.Uint64(), i}
		},
		"equal": func(i int) sortKey { return sortKey{top | 7, 9, i} },
	}
	for name, gen := range gens {
		for _, n := range []int{0, 1, 63, 64, 1000, 20000} {
			keys := make([]sortKey, n)
			for i := range keys {
				keys[i] = gen(i)
			}
			want := slices.Clone(keys)
			slices.SortStableFunc(want, compareKeys)
			got, _ := radixSortKeys(slices.Clone(keys), nil)
			if len(got) != n || !slices.IsSortedFunc(got, compareKeys) {
				t.Fatalf("%s, %d keys: not sorted", name, n)
			}
			seen := map[int]bool{}
			for _, k := range got {
				seen[k.i] = true
			}
			if len(seen) != n {
				t.Fatalf("%s, %d keys: lost or repeated keys", name, n)
			}
		}
	}
}

// TestIDFilter: an id hash added is always found again (a duplicate is
// never missed), and few others are (each costs an exact count).
func TestIDFilter(t *testing.T) {
	const n = 200_000
	f := newIDFilter(n)
	rng := rand.New(rand.NewPCG(3, 4))
	added := make([]uint64, n)
	falsePos := 0
	for i := range added {
		added[i] = rng.Uint64() | 1
		if f.testAndAdd(added[i]) {
			falsePos++
		}
	}
	for _, h := range added {
		if !f.testAndAdd(h) {
			t.Fatalf("hash %x added and not found", h)
		}
	}
	if rate := float64(falsePos) / n; rate > 0.01 {
		t.Errorf("false positives %.2f%% while filling to the estimate, want under 1%%", 100*rate)
	}
}
