package state_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/plugipay-sync/plugipay-sync/state"
)

// Environment of the lock-holding child process: the backend and the
// location of the store whose writer lock it takes.
const (
	envHolderBackend  = "STATE_TEST_LOCK_HOLDER_BACKEND"
	envHolderLocation = "STATE_TEST_LOCK_HOLDER_LOCATION"
	holderCommand     = "plugipay-sync lock-holder-child"
)

// TestMain runs the test binary as the lock-holding child when the
// environment asks it to.
func TestMain(m *testing.M) {
	if name := os.Getenv(envHolderBackend); name != "" {
		os.Exit(holdLock(name, os.Getenv(envHolderLocation)))
	}
	os.Exit(m.Run())
}

// holdLock takes the writer lock, says so on stdout and holds it until the
// process is killed (or its stdin closes).
func holdLock(name, loc string) int {
	for _, b := range backends {
		if b.name != name {
			continue
		}
		if _, err := b.lock(context.Background(), loc, 0, holderCommand); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Println("locked")
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		return 0
	}
	fmt.Fprintf(os.Stderr, "no backend %q\n", name)
	return 2
}

// TestLockAcrossProcesses: a lock held by another process refuses a second
// writer naming that process, and kill -9 of the holder releases it (the
// kernel closes the lock file, PostgreSQL ends the session).
func TestLockAcrossProcesses(t *testing.T) { forEachBackend(t, testLockAcrossProcesses) }

func testLockAcrossProcesses(t *testing.T, b backend) {
	ctx := context.Background()
	loc := b.NewLocation(t)
	child := exec.Command(os.Args[0], "-test.run=^$")
	child.Env = append(os.Environ(), envHolderBackend+"="+b.name, envHolderLocation+"="+loc)
	child.Stderr = os.Stderr
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "locked\n" {
		t.Fatalf("child: %q, %v; want it to report the lock taken", line, err)
	}

	_, err = b.lock(ctx, loc, 0, "plugipay-sync --once")
	var le *state.LockedError
	if !errors.As(err, &le) || !errors.Is(err, state.ErrLocked) {
		t.Fatalf("lock held by the child: %v, want a *LockedError", err)
	}
	if le.Holder.PID != child.Process.Pid || le.Holder.Command != holderCommand {
		t.Errorf("holder = %+v, want pid %d command %q", le.Holder, child.Process.Pid, holderCommand)
	}

	if err := child.Process.Signal(os.Kill); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	// The server ends a killed client's session when it notices the
	// closed socket, a moment after the kill: wait for it, as a
	// restarted daemon would with --wait-lock.
	l, err := b.lock(ctx, loc, time.Minute, "plugipay-sync daemon")
	if err != nil {
		t.Fatalf("after kill -9 of the holder: %v", err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
}
