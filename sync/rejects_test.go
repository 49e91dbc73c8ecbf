package sync_test

import (
	"context"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/plugipay-sync/plugipay-sync/sync"
)

// Known rejects (issue 13): a bad row is logged once, when first
// rejected, kept as a terminal failure (code rejected, with its line and
// reason), and on later runs only counted in one summary line. Fixing the
// row clears the failure, whether the fix needs a write or not.
func TestRun_KnownRejectsLoggedOnce(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	core, logs := observer.New(zapcore.InfoLevel)
	src := users(4)
	src.items = append(src.items,
		&sync.RecordError{Ref: "line 10", ExternalID: "bad_1", Reason: "invalid email"},
		&sync.RecordError{Ref: "line 11", ExternalID: "bad_2", Reason: "name too long"},
		&sync.RecordError{Ref: "line 12", Reason: "missing externalId"})
	opts := sync.Options{Concurrency: 2, BatchSize: 2, Now: h.clk.Now, Logger: zap.New(core)}
	run := func(want sync.RunCounts) (rejectLogs int, summaries []any) {
		t.Helper()
		logs.TakeAll()
		rec, err := sync.New(src, h.dst, h.store, opts).Run(ctx)
		if err != nil || rec.Counts != want {
			t.Fatalf("run: %v, counts %+v, want %+v", err, rec.Counts, want)
		}
		rejectLogs = logs.FilterMessage("record rejected").Len()
		for _, e := range logs.FilterMessageSnippet("not logged one by one").All() {
			summaries = append(summaries, e.ContextMap()["count"])
		}
		return rejectLogs, summaries
	}
	if logged, summaries := run(sync.RunCounts{Read: 7, Created: 4, Rejected: 3}); logged != 3 || len(summaries) != 0 {
		t.Fatalf("first run: %d rejects logged, %d summaries; want 3 and none", logged, len(summaries))
	}
	fs, err := h.store.Failures(ctx, []string{"bad_1", "bad_2"})
	if err != nil {
		t.Fatal(err)
	}
	if f := fs["bad_1"]; f.Code != sync.CodeRejected || !f.Terminal || f.Message != "line 10: invalid email" {
		t.Fatalf("failure of bad_1 = %+v", f)
	}
	for range 2 {
		if logged, summaries := run(sync.RunCounts{Read: 7, Unchanged: 4, Rejected: 3}); logged != 1 || len(summaries) != 1 || summaries[0] != int64(2) {
			t.Fatalf("later run: %d rejects logged, %d summaries; want only the id-less row and one summary", logged, len(summaries))
		}
	}
	// The row moves: still known, its line kept current.
	src.items[4] = &sync.RecordError{Ref: "line 20", ExternalID: "bad_1", Reason: "invalid email"}
	if logged, _ := run(sync.RunCounts{Read: 7, Unchanged: 4, Rejected: 3}); logged != 1 {
		t.Fatalf("moved row logged again: %d", logged)
	}
	if fs, _ := h.store.Failures(ctx, []string{"bad_1"}); fs["bad_1"].Message != "line 20: invalid email" {
		t.Errorf("moved row's failure = %+v", fs["bad_1"])
	}

	// Fixed: bad_1 becomes a new user (created), usr_0001 goes bad and
	// back to its synced content (unchanged): both failures are cleared.
	src.items[4] = sync.Record{ExternalID: "bad_1", Email: "fixed@example.com", Ref: "line 20"}
	good := src.items[1]
	src.items[1] = &sync.RecordError{Ref: "line 3", ExternalID: "usr_0001", Reason: "invalid email"}
	run(sync.RunCounts{Read: 7, Unchanged: 3, Created: 1, Rejected: 3})
	src.items[1] = good
	run(sync.RunCounts{Read: 7, Unchanged: 5, Rejected: 2})
	fs, _ = h.store.Failures(ctx, []string{"bad_1", "usr_0001", "bad_2"})
	if _, ok := fs["bad_1"]; ok {
		t.Errorf("fixed and created row keeps its failure: %+v", fs["bad_1"])
	}
	if _, ok := fs["usr_0001"]; ok {
		t.Errorf("fixed unchanged row keeps its failure: %+v", fs["usr_0001"])
	}
	if _, ok := fs["bad_2"]; !ok {
		t.Error("bad_2 lost its failure")
	}
}
