package state

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/gofrs/flock"
)

// ErrLocked: another process holds the state DB's writer lock.
var ErrLocked = errors.New("the state DB is locked by another writer")

// lockRetryDelay is how often a waiting writer tries the lock again.
const lockRetryDelay = 250 * time.Millisecond

// Holder describes the process that holds a writer lock, as written into
// the lock file for the next process to report.
type Holder struct {
	PID     int       `json:"pid"`
	Host    string    `json:"host"`
	Command string    `json:"command"`
	Since   time.Time `json:"since"`
}

func (h Holder) String() string {
	if h.PID == 0 {
		return "an unknown process (the lock file names no holder)"
	}
	return fmt.Sprintf("pid %d on %s (%s), since %s", h.PID, h.Host, h.Command, h.Since.UTC().Format(time.RFC3339))
}

// LockedError is returned when the writer lock is held by another process.
// It wraps ErrLocked.
type LockedError struct {
	Path   string
	Holder Holder
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("%s: held by %s", ErrLocked, e.Holder)
}

func (e *LockedError) Unwrap() error { return ErrLocked }

// Lock is a held writer lock, of a SQLite file (AcquireLock) or of a
// PostgreSQL schema (AcquirePostgresLock); Release gives it up.
type Lock struct {
	release func() error
}

// LockPath is the lock file of the state DB at dbPath.
func LockPath(dbPath string) string { return dbPath + ".lock" }

// AcquireLock takes the exclusive writer lock of the state DB at dbPath,
// so that only one process at a time may write to the destination through
// it: two writers on one state DB each create the customers the other has
// not confirmed yet (issue 14: 464 duplicates for 595 users). The lock is
// an flock(2) on dbPath+".lock": the kernel releases it when the holder
// exits, however it exits (kill -9 included), so no timeout ever guesses
// that a holder is dead. wait > 0 retries until it passes or ctx ends;
// wait == 0 fails at once. A failure wraps ErrLocked as a *LockedError
// naming the holder.
//
// flock is reliable on a local filesystem only: a state DB on a network
// filesystem, or two replicas each with its own copy of the volume, are
// not protected (the README says so).
func AcquireLock(ctx context.Context, dbPath string, wait time.Duration, command string) (*Lock, error) {
	path := LockPath(dbPath)
	fl := flock.New(path, flock.SetPermissions(0o600))
	ok, err := fl.TryLock()
	if err == nil && !ok && wait > 0 {
		wctx, cancel := context.WithTimeout(ctx, wait)
		ok, err = fl.TryLockContext(wctx, lockRetryDelay)
		cancel()
		if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			err = nil // waited as long as we were told to
		}
	}
	if err != nil {
		return nil, fmt.Errorf("state: lock %s: %w", path, err)
	}
	if !ok {
		return nil, &LockedError{Path: path, Holder: awaitHolder(ctx, path)}
	}
	b, _ := json.Marshal(newHolder(command))
	// Written through a second descriptor: flock belongs to the first, and
	// truncating the file does not touch the lock.
	if err := os.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		_ = fl.Unlock()
		return nil, fmt.Errorf("state: lock %s: record the holder: %w", path, err)
	}
	return &Lock{release: fl.Unlock}, nil
}

// awaitHolder reads the holder a held lock file names. A holder writes
// itself in right after it takes the lock, so an empty file is given a
// moment to fill.
func awaitHolder(ctx context.Context, path string) Holder {
	return awaitRecord(ctx, func() (Holder, bool) {
		h := readHolder(path)
		return h, h.PID != 0
	})
}

// awaitRecord calls read until it reports the holder's record complete, up
// to half a second: a holder records itself right after it takes the
// lock. It returns the last record read.
func awaitRecord(ctx context.Context, read func() (Holder, bool)) Holder {
	h, ok := read()
	for i := 0; !ok && i < 50 && ctx.Err() == nil; i++ {
		time.Sleep(10 * time.Millisecond)
		h, ok = read()
	}
	return h
}

// newHolder describes this process as the holder of a lock.
func newHolder(command string) Holder {
	host, _ := os.Hostname()
	return Holder{PID: os.Getpid(), Host: host, Command: command, Since: time.Now().UTC().Truncate(time.Second)}
}

// readHolder reads the holder a lock file names, or the zero Holder.
func readHolder(path string) Holder {
	var h Holder
	b, err := os.ReadFile(path)
	if err != nil {
		return h
	}
	_ = json.Unmarshal([]byte(strings.TrimSpace(string(b))), &h)
	return h
}

// Release gives the lock up. The file stays: removing it would let a
// process that opened the old file and one that creates a new one both
// hold "the" lock.
func (l *Lock) Release() error {
	if l == nil || l.release == nil {
		return nil
	}
	err := l.release()
	l.release = nil
	return err
}
