package state_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/plugipay-sync/plugipay-sync/state"
)

func TestAcquireLock(t *testing.T) { forEachBackend(t, testAcquireLock) }

func testAcquireLock(t *testing.T, b backend) {
	ctx := context.Background()
	db := b.NewLocation(t)
	l, err := b.lock(ctx, db, 0, "plugipay-sync daemon")
	if err != nil {
		t.Fatal(err)
	}

	t.Run("HeldNamesTheHolder", func(t *testing.T) {
		_, err := b.lock(ctx, db, 0, "plugipay-sync --once")
		var le *state.LockedError
		if !errors.As(err, &le) || !errors.Is(err, state.ErrLocked) {
			t.Fatalf("second lock: %v, want a *LockedError wrapping ErrLocked", err)
		}
		if le.Holder.PID != os.Getpid() || le.Holder.Command != "plugipay-sync daemon" || le.Holder.Since.IsZero() {
			t.Errorf("holder = %+v", le.Holder)
		}
		if !strings.Contains(err.Error(), "plugipay-sync daemon") {
			t.Errorf("error %q does not name the holder's command", err)
		}
	})

	t.Run("WaitGivesUp", func(t *testing.T) {
		start := time.Now()
		_, err := b.lock(ctx, db, 300*time.Millisecond, "x")
		if !errors.Is(err, state.ErrLocked) || time.Since(start) < 300*time.Millisecond {
			t.Fatalf("after %s: %v; want ErrLocked after the wait", time.Since(start), err)
		}
	})

	t.Run("WaitGetsItOnRelease", func(t *testing.T) {
		go func() {
			time.Sleep(200 * time.Millisecond)
			l.Release()
		}()
		l2, err := b.lock(ctx, db, 10*time.Second, "plugipay-sync retry")
		if err != nil {
			t.Fatalf("waiting writer: %v", err)
		}
		defer l2.Release()
		_, err = b.lock(ctx, db, 0, "y")
		var le *state.LockedError
		if !errors.As(err, &le) || le.Holder.Command != "plugipay-sync retry" {
			t.Fatalf("the new holder is not recorded: %v", err)
		}
	})

	t.Run("CancelledWait", func(t *testing.T) {
		h, err := b.lock(ctx, db, 0, "holder")
		if err != nil {
			t.Fatal(err)
		}
		defer h.Release()
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := b.lock(cctx, db, time.Minute, "z"); err == nil || errors.Is(err, state.ErrLocked) {
			t.Fatalf("cancelled wait: %v, want the context's error", err)
		}
	})
}
