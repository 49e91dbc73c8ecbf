package sync

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// idSorter sorts and deduplicates across many spilled chunks exactly as
// an in-memory sort would.
func TestIDSorter(t *testing.T) {
	for _, n := range []int{0, 1, 99, 1000, 5000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			s := newIDSorter(t.TempDir())
			s.chunk = 97 // many runs
			defer s.close()
			rng := rand.New(rand.NewPCG(uint64(n), 1))
			var want []string
			for range n {
				id := fmt.Sprintf("id_%d\n\x00%d", rng.IntN(n), rng.IntN(3)) // any bytes
				want = append(want, id)
				if err := s.add(id); err != nil {
					t.Fatal(err)
				}
			}
			slices.Sort(want)
			want = slices.Compact(want)
			var got []string
			for id, err := range s.sorted() {
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, id)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("sorted %d ids: got %d, want %d", n, len(got), len(want))
			}
		})
	}
}

// A spill yields its records in order, as often as asked, and can grow
// between reads.
func TestSpill(t *testing.T) {
	s, err := newSpill(t.TempDir(), "test-*")
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	read := func() []string {
		var out []string
		for f, err := range s.records(2) {
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, string(f[0])+"="+string(f[1]))
		}
		return out
	}
	s.add([]byte("a"), []byte(""))
	s.add([]byte("b"), []byte("2"))
	if got := read(); !slices.Equal(got, []string{"a=", "b=2"}) {
		t.Fatalf("got %q", got)
	}
	s.add([]byte("c"), []byte("3"))
	if got := read(); !slices.Equal(got, []string{"a=", "b=2", "c=3"}) {
		t.Fatalf("after a later add: %q", got)
	}
}
