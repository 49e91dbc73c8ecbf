package state_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/plugipay-sync/plugipay-sync/state"
)

// newTestLocker returns a locker on the test database, closed when the
// test ends.
func newTestLocker(t *testing.T) *state.PostgresLocker {
	t.Helper()
	l, err := state.NewPostgresLocker(testPostgresDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// newPoolLocker returns a locker of a pool of its own (PostgresPool.Locker),
// both closed when the test ends.
func newPoolLocker(t *testing.T) (*state.PostgresLocker, *state.PostgresPool) {
	t.Helper()
	p, err := state.OpenPostgresPool(testPostgresDSN(), 2, 2)
	if err != nil {
		t.Fatal(err)
	}
	l := p.Locker()
	t.Cleanup(func() {
		_ = l.Close()
		_ = p.Close()
	})
	return l, p
}

// testSQL is a connection of the test's own to the test database, closed
// when the test ends.
func testSQL(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", testPostgresDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// lockBackend is the backend pid recorded as the holder of schema's lock.
func lockBackend(t *testing.T, db *sql.DB, schema string) int {
	t.Helper()
	var pid int
	if err := db.QueryRow(`SELECT backend_pid FROM "` + schema + `".writer_lock`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	return pid
}

// advisoryLocks counts the advisory locks backend pid holds.
func advisoryLocks(t *testing.T, db *sql.DB, pid int) int {
	t.Helper()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = $1`, pid).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// mustAcquire takes schema's lock through l and fails the test if it
// cannot.
func mustAcquire(t *testing.T, l *state.PostgresLocker, schema string, wait time.Duration, command string) *state.Lock {
	t.Helper()
	lock, err := l.Acquire(context.Background(), schema, wait, command)
	if err != nil {
		t.Fatalf("acquire %s: %v", schema, err)
	}
	return lock
}

// wantLocked checks that err is a *LockedError naming this process, with
// command, as the holder of schema.
func wantLocked(t *testing.T, err error, schema, command string) {
	t.Helper()
	var le *state.LockedError
	if !errors.As(err, &le) || !errors.Is(err, state.ErrLocked) {
		t.Fatalf("err = %v, want a *LockedError", err)
	}
	if le.Holder.PID != os.Getpid() || le.Holder.Command != command || le.Holder.Since.IsZero() {
		t.Errorf("holder = %+v, want pid %d command %q", le.Holder, os.Getpid(), command)
	}
	if want := `postgres schema "` + schema + `"`; le.Path != want {
		t.Errorf("path = %q, want %q", le.Path, want)
	}
}

// TestPostgresLocker_OneSession: the locks of many schemas taken through
// one locker are held by one backend, which stays after they are released
// and goes with Close.
func TestPostgresLocker_OneSession(t *testing.T) {
	db := testSQL(t)
	l := newTestLocker(t)
	const n = 20
	schemas := make([]string, n)
	locks := make([]*state.Lock, n)
	for i := range schemas {
		schemas[i] = newTestSchema(t)
		locks[i] = mustAcquire(t, l, schemas[i], 0, fmt.Sprintf("tenant %d", i))
	}
	backends := map[int]bool{}
	for _, s := range schemas {
		backends[lockBackend(t, db, s)] = true
	}
	if len(backends) != 1 {
		t.Fatalf("the locks are held by backends %v, want one", backends)
	}
	var pid int
	for pid = range backends {
	}
	if got := advisoryLocks(t, db, pid); got != n {
		t.Errorf("backend %d holds %d advisory locks, want %d", pid, got, n)
	}
	// Another view of the same: one pid, n locks, grouped as an operator
	// would look at them.
	rows, err := db.Query(`SELECT pid, count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND pid = $1 GROUP BY pid`, pid)
	if err != nil {
		t.Fatal(err)
	}
	var groups int
	for rows.Next() {
		var p, c int
		if err := rows.Scan(&p, &c); err != nil {
			t.Fatal(err)
		}
		groups++
		if c != n {
			t.Errorf("pid %d: %d locks, want %d", p, c, n)
		}
	}
	rows.Close()
	if groups != 1 {
		t.Errorf("%d pids hold the locks, want 1", groups)
	}

	for i, lock := range locks[:n/2] {
		if err := lock.Release(); err != nil {
			t.Fatalf("release %d: %v", i, err)
		}
	}
	if got := advisoryLocks(t, db, pid); got != n-n/2 {
		t.Errorf("after releasing %d: backend holds %d locks, want %d", n/2, got, n-n/2)
	}
	// Taken again on the same session.
	relock := mustAcquire(t, l, schemas[0], 0, "tenant 0 again")
	if got := lockBackend(t, db, schemas[0]); got != pid {
		t.Errorf("retaken on backend %d, want %d", got, pid)
	}

	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if got := advisoryLocks(t, db, pid); got != 0 {
		t.Errorf("after Close: backend holds %d locks, want 0", got)
	}
	// Released after Close: no-ops.
	for i, lock := range append(locks[n/2:], relock) {
		if err := lock.Release(); err != nil {
			t.Errorf("release %d after Close: %v", i, err)
		}
	}
	if _, err := l.Acquire(context.Background(), schemas[1], 0, "x"); !errors.Is(err, state.ErrLockerClosed) {
		t.Errorf("acquire after Close: %v, want ErrLockerClosed", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	// Close released everything at once: another locker need not wait.
	other := newTestLocker(t)
	for _, s := range schemas {
		mustAcquire(t, other, s, 0, "other")
	}
}

// TestPostgresLocker_Refusals: a schema held through a locker is refused
// to another locker (another process) and to the holding locker itself,
// naming the holder, and given to either once released, waiting or not.
func TestPostgresLocker_Refusals(t *testing.T) {
	ctx := context.Background()
	holder := newTestLocker(t)
	other := newTestLocker(t)
	for _, tc := range []struct {
		name   string
		second *state.PostgresLocker
	}{
		{"AnotherLocker", other},
		{"SameLocker", holder},
	} {
		t.Run(tc.name, func(t *testing.T) {
			schema := newTestSchema(t)
			const command = "plugipay-sync platform tenant a"
			lock := mustAcquire(t, holder, schema, 0, command)

			_, err := tc.second.Acquire(ctx, schema, 0, "plugipay-sync --once")
			wantLocked(t, err, schema, command)
			if !strings.Contains(err.Error(), command) {
				t.Errorf("error %q does not name the holder's command", err)
			}

			start := time.Now()
			_, err = tc.second.Acquire(ctx, schema, 300*time.Millisecond, "waiter")
			if !errors.Is(err, state.ErrLocked) || time.Since(start) < 300*time.Millisecond {
				t.Fatalf("after %s: %v; want ErrLocked after the wait", time.Since(start), err)
			}

			cctx, cancel := context.WithCancel(ctx)
			go func() { time.Sleep(100 * time.Millisecond); cancel() }()
			if _, err := tc.second.Acquire(cctx, schema, time.Minute, "cancelled"); !errors.Is(err, context.Canceled) {
				t.Fatalf("cancelled wait: %v, want context.Canceled", err)
			}

			released := make(chan error, 1)
			go func() {
				time.Sleep(200 * time.Millisecond)
				released <- lock.Release()
			}()
			waited, err := tc.second.Acquire(ctx, schema, 10*time.Second, "waiter")
			if err != nil {
				t.Fatalf("waiting for the release: %v", err)
			}
			if err := <-released; err != nil {
				t.Fatalf("release: %v", err)
			}
			_, err = holder.Acquire(ctx, schema, 0, "y")
			wantLocked(t, err, schema, "waiter")
			if err := waited.Release(); err != nil {
				t.Fatal(err)
			}

			// Released without a waiter: taken at once.
			again := mustAcquire(t, holder, schema, 0, "again")
			if err := again.Release(); err != nil {
				t.Fatal(err)
			}
			if err := again.Release(); err != nil {
				t.Errorf("second release: %v", err)
			}
			mustAcquire(t, tc.second, schema, 0, "after").Release()
		})
	}
}

// TestPostgresLocker_BrokenSession: when the locker's session is
// terminated, its locks are free for others; the locker reconnects for
// its next Acquire; and the old locks' Releases, whether they are the
// first to find the session broken or come after the reconnection, return
// nil and unlock nothing of the new holders.
func TestPostgresLocker_BrokenSession(t *testing.T) {
	ctx := context.Background()
	db := testSQL(t)
	first := newTestLocker(t)
	other := newTestLocker(t)
	a, b, c := newTestSchema(t), newTestSchema(t), newTestSchema(t)
	lockA := mustAcquire(t, first, a, 0, "first a")
	lockB := mustAcquire(t, first, b, 0, "first b")
	pid := lockBackend(t, db, a)

	var terminated bool
	if err := db.QueryRow(`SELECT pg_terminate_backend($1)`, pid).Scan(&terminated); err != nil || !terminated {
		t.Fatalf("terminate backend %d: %v, %v", pid, terminated, err)
	}
	// The server releases the locks when the backend has exited.
	otherA := mustAcquire(t, other, a, 10*time.Second, "other a")
	otherB := mustAcquire(t, other, b, 10*time.Second, "other b")
	defer otherA.Release()
	defer otherB.Release()

	// The first to find the session broken: a Release.
	if err := lockB.Release(); err != nil {
		t.Errorf("release of a lock lost with its session: %v", err)
	}
	lockC := mustAcquire(t, first, c, 0, "first c")
	if got := lockBackend(t, db, c); got == pid {
		t.Errorf("c locked on the terminated backend %d", pid)
	}
	// After the reconnection.
	if err := lockA.Release(); err != nil {
		t.Errorf("release of a lock lost with its session, after a reconnection: %v", err)
	}
	for _, s := range []string{a, b} {
		_, err := newTestLocker(t).Acquire(ctx, s, 0, "third")
		wantLocked(t, err, s, map[string]string{a: "other a", b: "other b"}[s])
	}
	if err := lockC.Release(); err != nil {
		t.Fatal(err)
	}

	// Broken again, found by an Acquire this time: the locker reconnects
	// and takes the lock.
	lockC = mustAcquire(t, first, c, 0, "first c")
	pid = lockBackend(t, db, c)
	if _, err := db.Exec(`SELECT pg_terminate_backend($1)`, pid); err != nil {
		t.Fatal(err)
	}
	d := newTestSchema(t)
	lockD := mustAcquire(t, first, d, 0, "first d")
	if got := lockBackend(t, db, d); got == pid {
		t.Errorf("d locked on the terminated backend %d", pid)
	}
	// c was lost with the old session: this locker may take it again.
	mustAcquire(t, first, c, 10*time.Second, "first c again")
	if err := lockC.Release(); err != nil {
		t.Errorf("release of c lost with its session: %v", err)
	}
	_, err := other.Acquire(ctx, c, 0, "other c")
	wantLocked(t, err, c, "first c again")
	if err := lockD.Release(); err != nil {
		t.Fatal(err)
	}
}

// TestPostgresLocker_Concurrent: goroutines of two lockers take and give
// up the locks of a few schemas at once; no two ever hold one schema.
func TestPostgresLocker_Concurrent(t *testing.T) {
	ctx := context.Background()
	pl, _ := newPoolLocker(t)
	lockers := []*state.PostgresLocker{newTestLocker(t), pl}
	schemas := make([]string, 4)
	holders := make([]atomic.Int32, len(schemas))
	for i := range schemas {
		schemas[i] = newTestSchema(t)
	}
	const goroutines, rounds = 16, 4
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*rounds)
	for g := range goroutines {
		wg.Go(func() {
			l := lockers[g%len(lockers)]
			for r := range rounds {
				i := (g + r) % len(schemas)
				lock, err := l.Acquire(ctx, schemas[i], 30*time.Second, fmt.Sprintf("g%d r%d", g, r))
				if err != nil {
					errs <- err
					return
				}
				if n := holders[i].Add(1); n != 1 {
					errs <- fmt.Errorf("%d holders of schema %d", n, i)
				}
				time.Sleep(time.Millisecond)
				holders[i].Add(-1)
				if err := lock.Release(); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestPostgresPool_Locker: a pool's locker creates the lock tables of new
// schemas on the pool's connections and holds the locks on its one session,
// which another locker is refused while it holds them.
func TestPostgresPool_Locker(t *testing.T) {
	db := testSQL(t)
	l, p := newPoolLocker(t)
	if n := p.Stats().OpenConnections; n != 0 {
		t.Fatalf("a new pool has %d connections open", n)
	}
	schemas := []string{newTestSchema(t), newTestSchema(t), newTestSchema(t)}
	var locks []*state.Lock
	for i, s := range schemas {
		locks = append(locks, mustAcquire(t, l, s, 0, fmt.Sprintf("tenant %d", i)))
	}
	if n := p.Stats().OpenConnections; n == 0 {
		t.Error("the pool was never used: the lock tables were not created on it")
	}
	backends := map[int]bool{}
	for _, s := range schemas {
		backends[lockBackend(t, db, s)] = true
	}
	if len(backends) != 1 {
		t.Errorf("the locks are held by backends %v, want one", backends)
	}
	other := newTestLocker(t)
	for i, s := range schemas {
		_, err := other.Acquire(context.Background(), s, 0, "other")
		wantLocked(t, err, s, fmt.Sprintf("tenant %d", i))
	}
	for _, lk := range locks {
		if err := lk.Release(); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range schemas {
		lk := mustAcquire(t, other, s, 0, "other")
		if err := lk.Release(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestNewPostgresLocker_BadDSN: the error does not quote the DSN.
func TestNewPostgresLocker_BadDSN(t *testing.T) {
	const password = "hunter2-s3cret"
	_, err := state.NewPostgresLocker("postgres://u:" + password + "@127.0.0.1:notaport/db")
	if err == nil || strings.Contains(err.Error(), password) {
		t.Errorf("err = %v, want an error without the password", err)
	}
	l, err := state.NewPostgresLocker("postgres://u:" + password + "@127.0.0.1:1/db?connect_timeout=5")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = l.Acquire(context.Background(), "s", 0, "x")
	if err == nil || strings.Contains(err.Error(), password) {
		t.Errorf("acquire: err = %v, want an error without the password", err)
	}
}
