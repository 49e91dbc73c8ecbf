package state_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/plugipay-sync/plugipay-sync/sync"
)

func benchMappings(n int) []sync.Mapping {
	ms := make([]sync.Mapping, n)
	for i := range ms {
		ms[i] = sync.Mapping{
			ExternalID: fmt.Sprintf("usr_%07d", i),
			CustomerID: fmt.Sprintf("cus_01HXAB7K3M9N2P5QRS%07d", i),
			Hash:       fmt.Sprintf("%064x", i),
			SyncedAt:   testNow,
		}
	}
	return ms
}

// BenchmarkMappings looks up batches of 500 ids in a table of rows
// mappings: what the reconciler does once per batch of source records. A
// no-op scan of 1,000,000 users is 2,000 such calls. order=random is the
// worst case (every id on a different page); order=sorted is a source that
// lists users in id order, as CRM exports usually do.
func BenchmarkMappings(b *testing.B) {
	const batch = 500
	for _, bc := range []struct {
		rows   int
		sorted bool
	}{{100_000, false}, {100_000, true}, {1_000_000, false}, {1_000_000, true}} {
		rows := bc.rows
		order := "random"
		if bc.sorted {
			order = "sorted"
		}
		b.Run(fmt.Sprintf("rows=%d/order=%s", rows, order), func(b *testing.B) {
			if rows > 100_000 && testing.Short() {
				b.Skip("large table in -short mode")
			}
			ctx := context.Background()
			db := MustOpenDB(b)
			ms := benchMappings(rows)
			for i := 0; i < len(ms); i += 50_000 {
				if err := db.PutMappings(ctx, ms[i:min(i+50_000, len(ms))]); err != nil {
					b.Fatal(err)
				}
			}
			ids := make([]string, rows)
			for i, p := range rand.New(rand.NewPCG(1, 2)).Perm(rows) {
				if bc.sorted {
					p = i
				}
				ids[i] = ms[p].ExternalID
			}
			b.ReportAllocs()
			b.ResetTimer()
			var off int
			for b.Loop() {
				if off+batch > len(ids) {
					off = 0
				}
				got, err := db.Mappings(ctx, ids[off:off+batch])
				if err != nil {
					b.Fatal(err)
				}
				if len(got) != batch {
					b.Fatalf("got %d mappings, want %d", len(got), batch)
				}
				off += batch
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/batch, "ns/id")
		})
	}
}

// BenchmarkPutMappings upserts batches of 1,000 mappings in one
// transaction, as a cache rebuild does.
func BenchmarkPutMappings(b *testing.B) {
	const batch = 1000
	ctx := context.Background()
	db := MustOpenDB(b)
	ms := benchMappings(batch)
	b.ReportAllocs()
	var n int
	for b.Loop() {
		for i := range ms {
			ms[i].ExternalID = fmt.Sprintf("usr_%07d", n)
			n++
		}
		if err := db.PutMappings(ctx, ms); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/batch, "ns/row")
}

// BenchmarkPutMapping is one confirmed write: upsert plus clearing the
// pending write and failure, one transaction each.
func BenchmarkPutMapping(b *testing.B) {
	ctx := context.Background()
	db := MustOpenDB(b)
	var n int
	for b.Loop() {
		if err := db.PutMapping(ctx, sync.Mapping{ExternalID: fmt.Sprintf("usr_%07d", n), CustomerID: "cus_1", Hash: "h"}); err != nil {
			b.Fatal(err)
		}
		n++
	}
}
