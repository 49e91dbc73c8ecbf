package sync

import (
	"context"
	"slices"
	stdsync "sync"
	"time"

	"go.uber.org/zap"
)

// Users serialises the work on each user inside the process, and
// remembers when a targeted sync last read a user, so that a run never
// writes a value older than one a targeted sync has read (issue 17).
//
// The daemon holds the state DB's writer lock for its life, so every
// writer of a user is in this process: the run's workers and the targeted
// syncs of the event path. Both take the user's lock around their work; a
// targeted sync takes it before it reads the CRM and keeps it until its
// write is confirmed, so its read is never older than a write made before
// it. A run reads the CRM long before it writes (plan, then apply): a run
// whose job for a user finds that a targeted sync's read of the user ended
// after the run started leaves the user alone. The run's own read began
// after its start, so only a targeted read that ended before the start is
// surely older than the run's; any other may be newer, and writing the
// run's value after it would put an older CRM value over a newer one.
//
// One Users is shared by every Reconciler of the process (a config reload
// builds a new one beside the running one): see Options.Users.
type Users struct {
	mu    stdsync.Mutex
	locks map[string]*userLock
	// read is when a targeted sync's last read of each user ended; forgotten at the
	// start of a run for reads older than it (see forgetBefore).
	read map[string]time.Time
}

type userLock struct {
	ch   chan struct{} // holds a token while the user is locked
	refs int           // holders and waiters; the entry goes at zero
}

// NewUsers returns an empty registry.
func NewUsers() *Users {
	return &Users{locks: map[string]*userLock{}, read: map[string]time.Time{}}
}

// lock locks the users ids (duplicates allowed) in sorted order, so two
// callers locking overlapping sets cannot deadlock, and returns the
// function that unlocks them. It gives up, holding nothing, when ctx is
// done.
func (u *Users) lock(ctx context.Context, ids []string) (unlock func(), err error) {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	held := make([]string, 0, len(ids))
	release := func() {
		for _, id := range held {
			u.release(id)
		}
	}
	for _, id := range ids {
		u.mu.Lock()
		l := u.locks[id]
		if l == nil {
			l = &userLock{ch: make(chan struct{}, 1)}
			u.locks[id] = l
		}
		l.refs++
		u.mu.Unlock()
		select {
		case l.ch <- struct{}{}:
			held = append(held, id)
		case <-ctx.Done():
			u.mu.Lock()
			u.drop(id, l)
			u.mu.Unlock()
			release()
			return nil, context.Cause(ctx)
		}
	}
	return release, nil
}

// release unlocks one held user.
func (u *Users) release(id string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	l := u.locks[id]
	<-l.ch
	u.drop(id, l)
}

// drop removes a holder or waiter; u.mu is held.
func (u *Users) drop(id string, l *userLock) {
	if l.refs--; l.refs == 0 {
		delete(u.locks, id)
	}
}

// noteRead records that a targeted sync's read of the users ids ended at
// t (the caller holds their locks).
func (u *Users) noteRead(ids []string, t time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, id := range ids {
		if t.After(u.read[id]) {
			u.read[id] = t
		}
	}
}

// readSince reports whether a targeted sync's read of the user ended at
// or after t.
func (u *Users) readSince(id string, t time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	r, ok := u.read[id]
	return ok && !r.Before(t)
}

// readSinceSet returns the users a targeted sync read at or after t.
func (u *Users) readSinceSet(t time.Time) map[string]bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := map[string]bool{}
	for id, r := range u.read {
		if !r.Before(t) {
			out[id] = true
		}
	}
	return out
}

// forgetBefore forgets the reads older than t: a run starting at t, and
// every later one, reads the CRM after them.
func (u *Users) forgetBefore(t time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for id, r := range u.read {
		if r.Before(t) {
			delete(u.read, id)
		}
	}
}

// held reports how many users are locked or waited for (tests).
func (u *Users) held() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.locks)
}

// lockUser locks the user of one of the run's jobs; superseded reports
// that a targeted sync read the user after the run started, so the run's
// older read must not be written (the user is left to that sync).
func (ru *run) lockUser(ctx context.Context, id string) (unlock func(), superseded bool, err error) {
	unlock, err = ru.users.lock(ctx, []string{id})
	if err != nil {
		return nil, false, err
	}
	if ru.users.readSince(id, ru.started) {
		ru.log.Debug("left to a newer targeted sync", zap.Int64("run_id", ru.id), zap.String("external_id", id))
		return unlock, true, nil
	}
	return unlock, false, nil
}
