package sync

import (
	"context"
	"fmt"
	stdsync "sync"
	"sync/atomic"
	"testing"
	"time"
)

// Users: overlapping sets locked from many goroutines never hold one user
// twice, never deadlock, and leave nothing behind.
func TestUsers_Lock(t *testing.T) {
	u := NewUsers()
	var inside [5]atomic.Int32
	var wg stdsync.WaitGroup
	for g := range 20 {
		wg.Go(func() {
			for i := range 200 {
				a, b := (g+i)%5, (g*7+i)%5
				unlock, err := u.lock(context.Background(), []string{fmt.Sprint(a), fmt.Sprint(b), fmt.Sprint(a)})
				if err != nil {
					t.Error(err)
					return
				}
				for _, k := range []int{a, b} {
					if k == b && a == b {
						continue
					}
					if n := inside[k].Add(1); n != 1 {
						t.Errorf("user %d held by %d workers", k, n)
					}
				}
				for _, k := range []int{a, b} {
					if k == b && a == b {
						continue
					}
					inside[k].Add(-1)
				}
				unlock()
			}
		})
	}
	wg.Wait()
	if n := u.held(); n != 0 {
		t.Errorf("%d lock entries left", n)
	}

	t.Run("ctx", func(t *testing.T) {
		unlock, _ := u.lock(context.Background(), []string{"x"})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		if _, err := u.lock(ctx, []string{"w", "x"}); err == nil {
			t.Fatal("locked a held user")
		}
		unlock()
		if n := u.held(); n != 0 {
			t.Errorf("%d lock entries left after a cancelled wait", n)
		}
	})

	t.Run("readSince", func(t *testing.T) {
		t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		u.noteRead([]string{"a"}, t0)
		if !u.readSince("a", t0) || u.readSince("a", t0.Add(time.Nanosecond)) || u.readSince("b", t0) {
			t.Error("readSince wrong")
		}
		u.forgetBefore(t0.Add(time.Second))
		if u.readSince("a", t0) {
			t.Error("forgetBefore kept an older read")
		}
	})
}
