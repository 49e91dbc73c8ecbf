package state_test

import (
	"context"
	"testing"
	"time"

	"github.com/plugipay-sync/plugipay-sync/state"
)

func TestWatermark(t *testing.T) { forEachBackend(t, testWatermark) }

func testWatermark(t *testing.T, b backend) {
	ctx := context.Background()
	db := b.MustOpen(t)
	if _, ok, err := db.Watermark(ctx, "sql:users"); err != nil || ok {
		t.Fatalf("Watermark of a new source = ok %v, err %v; want none", ok, err)
	}
	want := state.Watermark{At: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), RunsSinceFull: 3, LastFullAt: testNow}
	if err := db.SetWatermark(ctx, "sql:users", want); err != nil {
		t.Fatal(err)
	}
	want.RunsSinceFull = 4
	if err := db.SetWatermark(ctx, "sql:users", want); err != nil {
		t.Fatal(err)
	}
	got, ok, err := db.Watermark(ctx, "sql:users")
	if err != nil || !ok || !got.At.Equal(want.At) || got.RunsSinceFull != 4 || !got.LastFullAt.Equal(testNow) {
		t.Fatalf("Watermark = %+v, %v, %v; want %+v", got, ok, err, want)
	}
	if err := db.DeleteWatermark(ctx, "sql:users"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := db.Watermark(ctx, "sql:users"); ok {
		t.Fatal("watermark still there after DeleteWatermark")
	}
}
