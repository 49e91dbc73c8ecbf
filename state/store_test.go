package state_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	stdsync "sync"
	"testing"
	"time"

	"github.com/plugipay-sync/plugipay-sync/state"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

func mapping(ext, cus, hash string) sync.Mapping {
	return sync.Mapping{ExternalID: ext, CustomerID: cus, Hash: hash, SyncedAt: testNow.Add(-time.Hour)}
}

func TestMappings(t *testing.T) { forEachBackend(t, testMappings) }

func testMappings(t *testing.T, b backend) {
	ctx := context.Background()

	t.Run("OK", func(t *testing.T) {
		db := b.MustOpen(t)
		for _, m := range []sync.Mapping{mapping("u1", "cus_1", "h1"), mapping("u2", "cus_2", "h2"), mapping("u3", "cus_3", "h3")} {
			if err := db.PutMapping(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
		got, err := db.Mappings(ctx, []string{"u1", "u3", "missing", "u1"})
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]sync.Mapping{"u1": mapping("u1", "cus_1", "h1"), "u3": mapping("u3", "cus_3", "h3")}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("Mappings() = %v, want %v", got, want)
		}
	})

	t.Run("Replace", func(t *testing.T) {
		db := b.MustOpen(t)
		if err := db.PutMapping(ctx, mapping("u1", "cus_1", "h1")); err != nil {
			t.Fatal(err)
		}
		m := sync.Mapping{ExternalID: "u1", CustomerID: "cus_9", Hash: "h9"} // zero SyncedAt: now
		if err := db.PutMapping(ctx, m); err != nil {
			t.Fatal(err)
		}
		got, err := db.Mappings(ctx, []string{"u1"})
		if err != nil {
			t.Fatal(err)
		}
		m.SyncedAt = testNow
		if got["u1"] != m {
			t.Errorf("Mappings()[u1] = %v, want %v", got["u1"], m)
		}
	})

	t.Run("Empty", func(t *testing.T) {
		db := b.MustOpen(t)
		got, err := db.Mappings(ctx, nil)
		if err != nil || len(got) != 0 {
			t.Fatalf("Mappings(nil) = %v, %v; want empty, nil", got, err)
		}
	})

	// Chunk and bucket edges: lists of every awkward length find exactly
	// the ids that exist.
	t.Run("Chunks", func(t *testing.T) {
		db := b.MustOpen(t)
		var ms []sync.Mapping
		for i := range 1200 {
			if i%3 != 0 {
				ms = append(ms, mapping(fmt.Sprintf("u%05d", i), fmt.Sprintf("cus_%d", i), "h"))
			}
		}
		if err := db.PutMappings(ctx, ms); err != nil {
			t.Fatal(err)
		}
		if n, err := db.MappingCount(ctx); err != nil || n != int64(len(ms)) {
			t.Fatalf("MappingCount() = %d, %v; want %d", n, err, len(ms))
		}
		for _, n := range []int{1, 2, 3, 5, 255, 256, 257, 499, 500, 501, 999, 1000, 1001, 1200} {
			var ids []string
			want := 0
			for i := range n {
				ids = append(ids, fmt.Sprintf("u%05d", i))
				if i%3 != 0 {
					want++
				}
			}
			got, err := db.Mappings(ctx, ids)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != want {
				t.Errorf("len(Mappings(%d ids)) = %d, want %d", n, len(got), want)
			}
		}
	})

	t.Run("Delete", func(t *testing.T) {
		db := b.MustOpen(t)
		if err := db.PutMapping(ctx, mapping("u1", "cus_1", "h1")); err != nil {
			t.Fatal(err)
		}
		for range 2 { // deleting twice is fine
			if err := db.DeleteMapping(ctx, "u1"); err != nil {
				t.Fatal(err)
			}
		}
		got, err := db.Mappings(ctx, []string{"u1"})
		if err != nil || len(got) != 0 {
			t.Fatalf("Mappings() after delete = %v, %v", got, err)
		}
	})

	t.Run("ErrInvalid", func(t *testing.T) {
		db := b.MustOpen(t)
		for _, tc := range []struct {
			m    sync.Mapping
			want string
		}{
			{sync.Mapping{CustomerID: "cus_1"}, "state: put mapping: empty external id"},
			{sync.Mapping{ExternalID: "u1"}, `state: put mapping: "u1": empty customer id`},
		} {
			if err := db.PutMapping(ctx, tc.m); err == nil || err.Error() != tc.want {
				t.Errorf("PutMapping(%v) = %v, want %q", tc.m, err, tc.want)
			}
		}
	})

	t.Run("AllMappings", func(t *testing.T) {
		db := b.MustOpen(t)
		want := []sync.Mapping{mapping("a", "cus_a", "1"), mapping("b", "cus_b", "2"), mapping("c", "cus_c", "3")}
		if err := db.PutMappings(ctx, []sync.Mapping{want[2], want[0], want[1]}); err != nil {
			t.Fatal(err)
		}
		var got []sync.Mapping
		for m, err := range db.AllMappings(ctx) {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, m)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("AllMappings() = %v, want %v", got, want)
		}
		// Stopping early releases the read; a write afterwards works.
		for range db.AllMappings(ctx) {
			break
		}
		if err := db.DeleteMapping(ctx, "a"); err != nil {
			t.Fatal(err)
		}
	})
}

func TestPutMapping_ClearsPendingWriteAndFailure(t *testing.T) {
	forEachBackend(t, testPutMapping_ClearsPendingWriteAndFailure)
}

func testPutMapping_ClearsPendingWriteAndFailure(t *testing.T, b backend) {
	ctx := context.Background()
	db := b.MustOpen(t)
	for _, id := range []string{"u1", "u2"} {
		if _, err := db.PreparePendingWrite(ctx, sync.PendingWrite{ExternalID: id, Op: sync.OpCreate, Hash: "h", IdempotencyKey: "k_" + id}); err != nil {
			t.Fatal(err)
		}
		if _, err := db.RecordFailure(ctx, sync.Failure{ExternalID: id, Hash: "h", Code: "network_error"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.PutMapping(ctx, mapping("u1", "cus_1", "h")); err != nil {
		t.Fatal(err)
	}
	ids := []string{"u1", "u2"}
	pw, err := db.PendingWrites(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	fs, err := db.Failures(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := pw["u1"]; ok {
		t.Error("pending write of u1 survived PutMapping")
	}
	if _, ok := fs["u1"]; ok {
		t.Error("failure of u1 survived PutMapping")
	}
	if _, ok := pw["u2"]; !ok {
		t.Error("pending write of u2 was deleted")
	}
	if _, ok := fs["u2"]; !ok {
		t.Error("failure of u2 was deleted")
	}
}

func TestPutMapping_Atomic(t *testing.T) { forEachBackend(t, testPutMapping_Atomic) }

func testPutMapping_Atomic(t *testing.T, b backend) {
	// A canceled context makes the whole transaction fail: neither the
	// mapping nor the deletes are applied.
	db := b.MustOpen(t)
	ctx := context.Background()
	if _, err := db.PreparePendingWrite(ctx, sync.PendingWrite{ExternalID: "u1", Op: sync.OpCreate, Hash: "h", IdempotencyKey: "k"}); err != nil {
		t.Fatal(err)
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if err := db.PutMapping(canceled, mapping("u1", "cus_1", "h")); !errors.Is(err, context.Canceled) {
		t.Fatalf("PutMapping(canceled) = %v, want context.Canceled", err)
	}
	pw, _ := db.PendingWrites(ctx, []string{"u1"})
	ms, _ := db.Mappings(ctx, []string{"u1"})
	if len(pw) != 1 || len(ms) != 0 {
		t.Fatalf("after failed PutMapping: pending=%v mappings=%v", pw, ms)
	}
}

func TestPreparePendingWrite(t *testing.T) { forEachBackend(t, testPreparePendingWrite) }

func testPreparePendingWrite(t *testing.T, b backend) {
	ctx := context.Background()
	w := func(op, cus, hash, key string) sync.PendingWrite {
		return sync.PendingWrite{ExternalID: "u1", Op: op, CustomerID: cus, Hash: hash, IdempotencyKey: key}
	}
	for _, tc := range []struct {
		name    string
		writes  []sync.PendingWrite
		wantKey []string // key returned by each call
	}{
		{"SameHashReusesKey", []sync.PendingWrite{w("create", "", "A", "k1"), w("create", "", "A", "k2")}, []string{"k1", "k1"}},
		{"HashChangeReplaces", []sync.PendingWrite{w("create", "", "A", "k1"), w("create", "", "B", "k2")}, []string{"k1", "k2"}},
		{"ABAGetsNewKey", []sync.PendingWrite{w("create", "", "A", "k1"), w("create", "", "B", "k2"), w("create", "", "A", "k3")}, []string{"k1", "k2", "k3"}},
		{"OpChangeReplaces", []sync.PendingWrite{w("create", "", "A", "k1"), w("update", "cus_1", "A", "k2")}, []string{"k1", "k2"}},
		{"CustomerChangeReplaces", []sync.PendingWrite{w("update", "cus_1", "A", "k1"), w("update", "cus_2", "A", "k2"), w("update", "cus_2", "A", "k3")}, []string{"k1", "k2", "k2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := b.MustOpen(t)
			for i, in := range tc.writes {
				got, err := db.PreparePendingWrite(ctx, in)
				if err != nil {
					t.Fatal(err)
				}
				if got.IdempotencyKey != tc.wantKey[i] {
					t.Errorf("call %d: key = %q, want %q", i, got.IdempotencyKey, tc.wantKey[i])
				}
				if !got.CreatedAt.Equal(testNow) {
					t.Errorf("call %d: CreatedAt = %v, want %v", i, got.CreatedAt, testNow)
				}
				stored, err := db.PendingWrites(ctx, []string{"u1"})
				if err != nil {
					t.Fatal(err)
				}
				if stored["u1"] != got {
					t.Errorf("call %d: stored %v, returned %v", i, stored["u1"], got)
				}
			}
		})
	}

	t.Run("ErrInvalid", func(t *testing.T) {
		db := b.MustOpen(t)
		for _, tc := range []struct {
			w    sync.PendingWrite
			want string
		}{
			{sync.PendingWrite{Op: "create", IdempotencyKey: "k"}, "state: prepare pending write: empty external id"},
			{sync.PendingWrite{ExternalID: "u1", Op: "delete", IdempotencyKey: "k"}, `state: prepare pending write: "u1": unknown op "delete"`},
			{sync.PendingWrite{ExternalID: "u1", Op: "update", IdempotencyKey: "k"}, `state: prepare pending write: "u1": update without a customer id`},
			{sync.PendingWrite{ExternalID: "u1", Op: "create"}, `state: prepare pending write: "u1": empty idempotency key`},
		} {
			if _, err := db.PreparePendingWrite(ctx, tc.w); err == nil || err.Error() != tc.want {
				t.Errorf("PreparePendingWrite(%v) = %v, want %q", tc.w, err, tc.want)
			}
		}
	})
}

func TestRecordFailure(t *testing.T) { forEachBackend(t, testRecordFailure) }

func testRecordFailure(t *testing.T, b backend) {
	ctx := context.Background()
	db := b.MustOpen(t)
	next := testNow.Add(time.Minute)
	in := sync.Failure{ExternalID: "u1", Hash: "A", Code: "network_error", Message: "timeout", NextAttempt: next, Attempts: 99}
	got, err := db.RecordFailure(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	want := in
	want.Attempts, want.UpdatedAt = 1, testNow
	if got != want {
		t.Errorf("first RecordFailure() = %+v, want %+v", got, want)
	}

	in2 := sync.Failure{ExternalID: "u1", Hash: "B", Terminal: true, Code: "validation_error", Message: "bad email", RequestID: "req_1"}
	got, err = db.RecordFailure(ctx, in2)
	if err != nil {
		t.Fatal(err)
	}
	want = in2
	want.Attempts, want.UpdatedAt = 2, testNow
	if got != want {
		t.Errorf("second RecordFailure() = %+v, want %+v", got, want)
	}
	fs, err := db.Failures(ctx, []string{"u1", "u2"})
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 1 || fs["u1"] != want {
		t.Errorf("Failures() = %+v, want u1: %+v", fs, want)
	}
	if _, err := db.RecordFailure(ctx, sync.Failure{ExternalID: "u2", Code: "internal_error"}); err != nil {
		t.Fatal(err)
	}
	total, terminal, err := db.FailureCount(ctx)
	if err != nil || total != 2 || terminal != 1 {
		t.Errorf("FailureCount() = %d, %d, %v; want 2, 1, nil", total, terminal, err)
	}
	if _, err := db.RecordFailure(ctx, sync.Failure{}); err == nil {
		t.Error("RecordFailure with empty id succeeded")
	}
}

func TestRuns(t *testing.T) { forEachBackend(t, testRuns) }

func testRuns(t *testing.T, b backend) {
	ctx := context.Background()

	t.Run("StartFinish", func(t *testing.T) {
		db := b.MustOpen(t)
		start := testNow.Add(-time.Minute)
		id, err := db.StartRun(ctx, start)
		if err != nil {
			t.Fatal(err)
		}
		runs, err := db.RecentRuns(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		if want := []sync.RunRecord{{ID: id, StartedAt: start}}; !reflect.DeepEqual(runs, want) {
			t.Errorf("RecentRuns() while running = %+v, want %+v", runs, want)
		}
		rec := sync.RunRecord{ID: id, Outcome: sync.OutcomePartial, Error: "2 records rejected",
			Counts: sync.RunCounts{Read: 10, Created: 3, Updated: 2, Unchanged: 1, Recovered: 1, Rejected: 2, Failed: 1}}
		if err := db.FinishRun(ctx, rec); err != nil {
			t.Fatal(err)
		}
		rec.StartedAt, rec.FinishedAt = start, testNow
		runs, err = db.RecentRuns(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		if want := []sync.RunRecord{rec}; !reflect.DeepEqual(runs, want) {
			t.Errorf("RecentRuns() = %+v, want %+v", runs, want)
		}
		if err := db.FinishRun(ctx, sync.RunRecord{ID: 999}); err == nil || err.Error() != "state: finish run 999: no run with id 999" {
			t.Errorf("FinishRun(unknown) = %v", err)
		}
	})

	t.Run("RecentRunsOrderAndLimit", func(t *testing.T) {
		db := b.MustOpen(t)
		var ids []int64
		for i := range 5 {
			id, err := db.StartRun(ctx, testNow.Add(time.Duration(i)*time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			if err := db.FinishRun(ctx, sync.RunRecord{ID: id, Outcome: sync.OutcomeSuccess}); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		runs, err := db.RecentRuns(ctx, 3)
		if err != nil {
			t.Fatal(err)
		}
		var got []int64
		for _, r := range runs {
			got = append(got, r.ID)
		}
		if want := []int64{ids[4], ids[3], ids[2]}; !reflect.DeepEqual(got, want) {
			t.Errorf("RecentRuns(3) ids = %v, want %v", got, want)
		}
	})

	t.Run("StaleRunsAborted", func(t *testing.T) {
		path := b.NewLocation(t)
		db := b.MustOpenAt(t, path)
		dead, err := db.StartRun(ctx, testNow)
		if err != nil {
			t.Fatal(err)
		}
		// This process's own running run is not stale.
		if n, err := db.MarkStaleRuns(ctx); err != nil || n != 0 {
			t.Fatalf("MarkStaleRuns() with own active run = %d, %v; want 0", n, err)
		}
		MustCloseDB(t, db) // the process "dies" without FinishRun

		db = b.MustOpenAt(t, path)
		id, err := db.StartRun(ctx, testNow.Add(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		runs, err := db.RecentRuns(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(runs) != 2 || runs[0].ID != id || runs[1].ID != dead {
			t.Fatalf("RecentRuns() = %+v", runs)
		}
		if got := runs[1]; got.Outcome != state.OutcomeAborted || !got.FinishedAt.IsZero() || got.Error == "" {
			t.Errorf("dead run = %+v, want outcome aborted, no finish time, an error", got)
		}
		if got := runs[0]; got.Outcome != "" {
			t.Errorf("new run outcome = %q, want empty while running", got.Outcome)
		}
	})
}

// TestConcurrentWriters checks that writers in several goroutines queue on
// the busy timeout (transactions begin IMMEDIATE) instead of failing with
// "database is locked", while readers run alongside.
func TestConcurrentWriters(t *testing.T) { forEachBackend(t, testConcurrentWriters) }

func testConcurrentWriters(t *testing.T, b backend) {
	ctx := context.Background()
	loc := b.NewLocation(t)
	db := b.MustOpenAt(t, loc)
	const writers, perWriter = 8, 50
	var wg stdsync.WaitGroup
	errs := make(chan error, writers*perWriter*3)
	for g := range writers {
		wg.Go(func() {
			for i := range perWriter {
				id := fmt.Sprintf("g%d-u%d", g, i)
				if _, err := db.PreparePendingWrite(ctx, sync.PendingWrite{ExternalID: id, Op: sync.OpCreate, Hash: "h", IdempotencyKey: "k"}); err != nil {
					errs <- err
				}
				if _, err := db.RecordFailure(ctx, sync.Failure{ExternalID: id, Code: "network_error"}); err != nil {
					errs <- err
				}
				if err := db.PutMapping(ctx, mapping(id, "cus_"+id, "h")); err != nil {
					errs <- err
				}
				if _, err := db.Mappings(ctx, []string{id}); err != nil {
					errs <- err
				}
			}
		})
	}
	// A second handle on the same file: another process's writer.
	other := b.MustOpenAt(t, loc)
	wg.Go(func() {
		for i := range perWriter {
			if err := other.PutMapping(ctx, mapping(fmt.Sprintf("other-%d", i), "cus_o", "h")); err != nil {
				errs <- err
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		if strings.Contains(err.Error(), "locked") || strings.Contains(err.Error(), "busy") {
			t.Fatalf("concurrent write: %v", err)
		}
		t.Error(err)
	}
	if n, err := db.MappingCount(ctx); err != nil || n != writers*perWriter+perWriter {
		t.Errorf("MappingCount() = %d, %v; want %d", n, err, writers*perWriter+perWriter)
	}
	if total, _, _ := db.FailureCount(ctx); total != 0 {
		t.Errorf("FailureCount() = %d, want 0", total)
	}
}

func TestBindDestination(t *testing.T) { forEachBackend(t, testBindDestination) }

func testBindDestination(t *testing.T, b backend) {
	ctx := context.Background()
	path := b.NewLocation(t)
	db, err := b.open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.BindDestination(ctx, "paygate https://a/v1"); err != nil {
		t.Fatalf("first bind: %v", err)
	}
	if err := db.BindDestination(ctx, "paygate https://a/v1"); err != nil {
		t.Fatalf("same bind again: %v", err)
	}
	err = db.BindDestination(ctx, "plugipay https://plugipay.com")
	if !errors.Is(err, state.ErrOtherDestination) || !strings.Contains(err.Error(), `"paygate https://a/v1"`) {
		t.Fatalf("other destination: err = %v", err)
	}
	db.Close()
	db, err = b.open(ctx, path) // the binding survives a restart
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.BindDestination(ctx, "pin https://b/1"); !errors.Is(err, state.ErrOtherDestination) {
		t.Fatalf("after reopen: err = %v", err)
	}
}

// A duplicate externalId mark outlives the confirmed or failed write of
// the user's first row, which can finish after the second row was read.
func TestDuplicateMarkOutlivesTheFirstRowsWrite(t *testing.T) {
	forEachBackend(t, testDuplicateMarkOutlivesTheFirstRowsWrite)
}

func testDuplicateMarkOutlivesTheFirstRowsWrite(t *testing.T, b backend) {
	ctx := context.Background()
	db := b.MustOpen(t)
	mark := sync.Failure{ExternalID: "u1", Terminal: true, Code: sync.CodeDuplicateExternalID, Message: "two rows"}
	if _, err := db.RecordFailure(ctx, mark); err != nil {
		t.Fatal(err)
	}
	got, err := db.RecordFailure(ctx, sync.Failure{ExternalID: "u1", Hash: "h", Code: "network_error"})
	if err != nil || got.Code != sync.CodeDuplicateExternalID {
		t.Fatalf("a later failure replaced the mark: %+v, %v", got, err)
	}
	if err := db.PutMapping(ctx, sync.Mapping{ExternalID: "u1", CustomerID: "cus_1", Hash: "h"}); err != nil {
		t.Fatal(err)
	}
	if ids, _ := db.FailureIDsByCode(ctx, sync.CodeDuplicateExternalID); len(ids) != 1 {
		t.Fatalf("PutMapping deleted the mark: %v", ids)
	}
	// Another failure is still cleared by a confirmed write.
	if _, err := db.RecordFailure(ctx, sync.Failure{ExternalID: "u2", Code: "network_error"}); err != nil {
		t.Fatal(err)
	}
	if err := db.PutMapping(ctx, sync.Mapping{ExternalID: "u2", CustomerID: "cus_2", Hash: "h"}); err != nil {
		t.Fatal(err)
	}
	if f, _ := db.Failures(ctx, []string{"u2"}); len(f) != 0 {
		t.Fatalf("a confirmed write kept its failure: %+v", f)
	}
}

// TestOpenConcurrently: processes opening one new store at once all open
// it, and each migration is applied once.
func TestOpenConcurrently(t *testing.T) { forEachBackend(t, testOpenConcurrently) }

func testOpenConcurrently(t *testing.T, b backend) {
	ctx := context.Background()
	loc := b.NewLocation(t)
	const openers = 4
	dbs := make([]*state.DB, openers)
	errs := make([]error, openers)
	var wg stdsync.WaitGroup
	for i := range openers {
		wg.Go(func() { dbs[i], errs[i] = b.open(ctx, loc) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("opener %d: %v", i, err)
		}
		defer dbs[i].Close()
	}
	// Every handle writes and sees the others' writes.
	for i, db := range dbs {
		if err := db.PutMapping(ctx, mapping(fmt.Sprintf("u%d", i), "cus", "h")); err != nil {
			t.Fatal(err)
		}
	}
	for i, db := range dbs {
		if n, err := db.MappingCount(ctx); err != nil || n != openers {
			t.Errorf("handle %d: MappingCount() = %d, %v; want %d", i, n, err, openers)
		}
	}
}

// TestPutMappingsSameIDTwice: a rebuild that meets one external id on two
// customers keeps the later, in one call, on both backends.
func TestPutMappingsSameIDTwice(t *testing.T) { forEachBackend(t, testPutMappingsSameIDTwice) }

func testPutMappingsSameIDTwice(t *testing.T, b backend) {
	ctx := context.Background()
	db := b.MustOpen(t)
	ms := []sync.Mapping{mapping("u1", "cus_1", "h1"), mapping("u2", "cus_2", "h2"), mapping("u1", "cus_9", "h9")}
	if err := db.PutMappings(ctx, ms); err != nil {
		t.Fatal(err)
	}
	got, err := db.Mappings(ctx, []string{"u1", "u2"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]sync.Mapping{"u1": ms[2], "u2": ms[1]}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Mappings() = %v, want %v", got, want)
	}
	if n, err := db.MappingCount(ctx); err != nil || n != 2 {
		t.Errorf("MappingCount() = %d, %v; want 2", n, err)
	}
}

// TestOpenPostgres_Errors: a schema the store will not use is refused
// before connecting, and no error carries the DSN's password.
func TestOpenPostgres_Errors(t *testing.T) {
	ctx := context.Background()
	const password = "hunter2-s3cret"
	for _, tc := range []struct {
		name, dsn, schema string
		want              error // nil: any error
	}{
		{"ReservedSchema", testPostgresDSN(), "pg_catalog", state.ErrBadSchema},
		{"EmptySchema", testPostgresDSN(), "", state.ErrBadSchema},
		{"DSNDoesNotParse", "postgres://u:" + password + "@127.0.0.1:notaport/db", "s", nil},
		{"Unreachable", "postgres://u:" + password + "@127.0.0.1:1/db?connect_timeout=5", "s", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, err := state.OpenPostgres(ctx, tc.dsn, tc.schema)
			if err == nil {
				db.Close()
				t.Fatal("opened")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
			if strings.Contains(err.Error(), password) {
				t.Errorf("the password is in the error: %v", err)
			}
			_, err = state.AcquirePostgresLock(ctx, tc.dsn, tc.schema, 0, "x")
			if err == nil || strings.Contains(err.Error(), password) {
				t.Errorf("lock: err = %v, want an error without the password", err)
			}
		})
	}
}

// TestLocation: a store names itself by its file, or by its schema.
func TestLocation(t *testing.T) { forEachBackend(t, testLocation) }

func testLocation(t *testing.T, b backend) {
	loc := b.NewLocation(t)
	db := b.MustOpenAt(t, loc)
	want := loc
	if b.name != "sqlite" {
		want = `postgres schema "` + loc + `" on `
	}
	if got := db.Location(); !strings.HasPrefix(got, want) {
		t.Errorf("Location() = %q, want %q", got, want)
	}
}
