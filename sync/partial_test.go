package sync_test

import (
	"context"
	"errors"
	"testing"

	"github.com/plugipay-sync/plugipay-sync/sync"
)

// partialSource is a sliceSource that reports whether its read was complete.
type partialSource struct {
	*sliceSource
	complete bool
}

func (p *partialSource) LastReadComplete() bool { return p.complete }

// An incremental read (PartialSource reporting false) archives nothing;
// a deleted record is not synced and, after the next complete read, its
// customer is archived like a user gone from the source.
func TestRun_PartialReadAndDeletedRecords(t *testing.T) {
	h := newHarness(t)
	opts := sync.Options{Concurrency: 2, BatchSize: 7, Now: h.clk.Now, Deletion: sync.DeletionArchive, MaxArchiveRatio: 1}
	if _, err := sync.New(users(20), h.dst, h.store, opts).Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Incremental: two users changed, one of them deleted at the source.
	inc := users(2)
	del := inc.items[1].(sync.Record)
	del.Deleted = true
	inc.items[1] = del
	rec, err := sync.New(&partialSource{sliceSource: inc}, h.dst, h.store, opts).Run(context.Background())
	if err != nil || rec.Counts.Archived != 0 || rec.Counts.Read != 2 || rec.Counts.Unchanged != 1 {
		t.Fatalf("incremental run: err %v, counts %+v; want 2 read, 1 unchanged, nothing archived", err, rec.Counts)
	}
	// Complete read: everyone but the deleted user; only that one is archived.
	all := users(20)
	all.items[1] = del
	rec, err = sync.New(&partialSource{sliceSource: all, complete: true}, h.dst, h.store, opts).Run(context.Background())
	if err != nil || rec.Counts.Archived != 1 {
		t.Fatalf("complete run: err %v, counts %+v; want 1 archived", err, rec.Counts)
	}
	h.dst.mu.Lock()
	defer h.dst.mu.Unlock()
	for _, c := range h.dst.byID {
		if archived := c.Metadata[sync.ArchivedKey] == "true"; archived != (c.ExternalID == del.ExternalID) {
			t.Errorf("%s archived = %v", c.ExternalID, archived)
		}
	}
}

// committingSource counts Commit calls.
type committingSource struct {
	*sliceSource
	commits int
}

func (c *committingSource) Commit(context.Context) error {
	c.commits++
	return nil
}

// The source's cursor is committed only after a run that finished with no
// transient failure: never past records whose writes did not happen.
func TestRun_CommitsCursorAfterCleanRun(t *testing.T) {
	h := newHarness(t)
	ok := &committingSource{sliceSource: users(10)}
	h.mustRun(ok, sync.RunCounts{Read: 10, Created: 10})
	if ok.commits != 1 {
		t.Fatalf("commits after a clean run = %d, want 1", ok.commits)
	}
	broken := users(3)
	broken.items = append(broken.items, errors.New("connection reset"))
	bad := &committingSource{sliceSource: broken}
	if _, err := h.run(bad); err == nil {
		t.Fatal("no error from a broken source")
	}
	if bad.commits != 0 {
		t.Fatalf("commits after a failed run = %d, want 0", bad.commits)
	}
}
