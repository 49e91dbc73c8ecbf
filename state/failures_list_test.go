package state_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/plugipay-sync/plugipay-sync/state"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

// seedFailures records three failures: u1 terminal (validation_error), u2
// and u3 retrying later (network_error, internal_error).
func seedFailures(t *testing.T, db *state.DB) {
	t.Helper()
	for _, f := range []sync.Failure{
		{ExternalID: "u1", Hash: "A", Terminal: true, Code: "validation_error", Message: "bad email", RequestID: "req_1"},
		{ExternalID: "u2", Hash: "B", Code: "network_error", Message: "timeout", NextAttempt: testNow.Add(time.Hour)},
		{ExternalID: "u3", Hash: "C", Code: "internal_error", Message: "boom", NextAttempt: testNow.Add(2 * time.Hour)},
	} {
		if _, err := db.RecordFailure(context.Background(), f); err != nil {
			t.Fatal(err)
		}
	}
}

func ids(fs []sync.Failure) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.ExternalID)
	}
	return out
}

func TestListFailures(t *testing.T) { forEachBackend(t, testListFailures) }

func testListFailures(t *testing.T, b backend) {
	db := b.MustOpen(t)
	seedFailures(t, db)
	for _, tt := range []struct {
		name   string
		filter state.FailureFilter
		want   []string
	}{
		{"All", state.FailureFilter{}, []string{"u1", "u2", "u3"}},
		{"Code", state.FailureFilter{Code: "network_error"}, []string{"u2"}},
		{"Terminal", state.FailureFilter{TerminalOnly: true}, []string{"u1"}},
		{"ExternalIDs", state.FailureFilter{ExternalIDs: []string{"u3", "u1", "nobody"}}, []string{"u1", "u3"}},
		{"CodeAndTerminal", state.FailureFilter{Code: "network_error", TerminalOnly: true}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := db.ListFailures(context.Background(), tt.filter)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ids(got), tt.want) {
				t.Errorf("ListFailures(%+v) = %v, want %v", tt.filter, ids(got), tt.want)
			}
		})
	}
	t.Run("Fields", func(t *testing.T) {
		got, err := db.ListFailures(context.Background(), state.FailureFilter{ExternalIDs: []string{"u1"}})
		if err != nil {
			t.Fatal(err)
		}
		want := sync.Failure{ExternalID: "u1", Hash: "A", Terminal: true, Attempts: 1, Code: "validation_error",
			Message: "bad email", RequestID: "req_1", UpdatedAt: testNow}
		if len(got) != 1 || got[0] != want {
			t.Errorf("got %+v, want %+v", got, want)
		}
	})
}

func TestResetFailures(t *testing.T) { forEachBackend(t, testResetFailures) }

func testResetFailures(t *testing.T, b backend) {
	ctx := context.Background()
	t.Run("ByCode", func(t *testing.T) {
		db := b.MustOpen(t)
		seedFailures(t, db)
		got, err := db.ResetFailures(ctx, state.FailureFilter{Code: "validation_error"})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].ExternalID != "u1" || !got[0].Terminal {
			t.Fatalf("ResetFailures() = %+v, want u1 as it was (terminal)", got)
		}
		fs, err := db.Failures(ctx, []string{"u1", "u2"})
		if err != nil {
			t.Fatal(err)
		}
		if u1 := fs["u1"]; u1.Terminal || !u1.NextAttempt.IsZero() || u1.Attempts != 1 || u1.Code != "validation_error" {
			t.Errorf("u1 after reset = %+v, want not terminal, no next attempt, attempts and code kept", u1)
		}
		if u2 := fs["u2"]; !u2.NextAttempt.Equal(testNow.Add(time.Hour)) {
			t.Errorf("u2 was reset too: %+v", u2)
		}
		total, terminal, err := db.FailureCount(ctx)
		if err != nil || total != 3 || terminal != 0 {
			t.Errorf("FailureCount() = %d, %d, %v; want 3, 0, nil", total, terminal, err)
		}
	})
	t.Run("All", func(t *testing.T) {
		db := b.MustOpen(t)
		seedFailures(t, db)
		got, err := db.ResetFailures(ctx, state.FailureFilter{})
		if err != nil || len(got) != 3 {
			t.Fatalf("ResetFailures() = %v, %v; want 3 failures", ids(got), err)
		}
		after, err := db.ListFailures(ctx, state.FailureFilter{})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range after {
			if f.Terminal || !f.NextAttempt.IsZero() {
				t.Errorf("%s not reset: %+v", f.ExternalID, f)
			}
		}
	})
	t.Run("ExternalIDs", func(t *testing.T) {
		db := b.MustOpen(t)
		seedFailures(t, db)
		got, err := db.ResetFailures(ctx, state.FailureFilter{ExternalIDs: []string{"u2", "nobody"}})
		if err != nil || !slices.Equal(ids(got), []string{"u2"}) {
			t.Fatalf("ResetFailures() = %v, %v; want [u2]", ids(got), err)
		}
		fs, _ := db.Failures(ctx, []string{"u3"})
		if fs["u3"].NextAttempt.IsZero() {
			t.Error("u3 was reset too")
		}
	})
	t.Run("None", func(t *testing.T) {
		db := b.MustOpen(t)
		got, err := db.ResetFailures(ctx, state.FailureFilter{Code: "nothing"})
		if err != nil || len(got) != 0 {
			t.Fatalf("ResetFailures() = %v, %v; want none", got, err)
		}
	})
}
