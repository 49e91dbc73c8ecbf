package state_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/plugipay-sync/plugipay-sync/state"
)

// testNow is the fixed clock of MustOpenDB's databases.
var testNow = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

// MustOpenDB opens a new state database in a temporary directory with the
// clock fixed at testNow, and closes it when the test ends.
func MustOpenDB(tb testing.TB, opts ...state.Option) *state.DB {
	tb.Helper()
	return MustOpenDBAt(tb, filepath.Join(tb.TempDir(), "state", "state.db"), opts...)
}

// MustOpenDBAt is MustOpenDB at a given path.
func MustOpenDBAt(tb testing.TB, path string, opts ...state.Option) *state.DB {
	tb.Helper()
	opts = append([]state.Option{state.WithClock(func() time.Time { return testNow })}, opts...)
	db, err := state.Open(context.Background(), path, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = db.Close() })
	return db
}

// MustCloseDB closes db and fails the test on error.
func MustCloseDB(tb testing.TB, db *state.DB) {
	tb.Helper()
	if err := db.Close(); err != nil {
		tb.Fatal(err)
	}
}
