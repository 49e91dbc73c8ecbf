package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/plugipay-sync/plugipay-sync/state"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

// Exit codes, in the README's table. A Kubernetes Job's podFailurePolicy
// can tell them apart: retry on ExitTransient and ExitLocked, fail the Job
// at once on ExitConfig, alert a person on ExitPartial.
const (
	// ExitOK: every record synced.
	ExitOK = 0
	// ExitFailed: the run could not run for another reason (the state DB
	// unusable, an internal error) or was interrupted.
	ExitFailed = 1
	// ExitPartial: bad data. The run finished, but some records were
	// rejected or failed; they are kept and retried.
	ExitPartial = 2
	// ExitTransient: the destination or the CRM could not be reached or
	// kept failing (network, timeouts, 5xx, rate limits beyond the wait
	// cap, every write failed, the circuit breaker stopped the run).
	// Running again later is the fix.
	ExitTransient = 3
	// ExitConfig: the config, the credentials (401/403) or the
	// destination's identity are wrong. Running again cannot help.
	ExitConfig = 4
	// ExitLocked: another process holds the state DB's writer lock.
	ExitLocked = 5
)

// exitError carries the exit code of an error found before a run.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// withExit tags err with an exit code (nil stays nil).
func withExit(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: code, err: err}
}

// exitCode is the one place that maps an error to the process's exit
// code; every command's failure goes through it.
func exitCode(err error) int {
	var ee *exitError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ee):
		return ee.code
	case errors.Is(err, state.ErrLocked):
		return ExitLocked
	case errors.Is(err, sync.ErrFatal), errors.Is(err, sync.ErrIdentity), errors.Is(err, state.ErrOtherDestination):
		return ExitConfig
	case errors.Is(err, context.Canceled), errors.Is(err, sync.ErrMassArchive):
		return ExitFailed
	case errors.Is(err, sync.ErrUnreachable):
		return ExitTransient
	}
	// A run that stopped on its source or an API call: running it again
	// later is what a Job controller should do.
	return ExitTransient
}

// explain adds to err what the operator can do about it, where the fix is
// not obvious from the error itself.
func explain(err error) error {
	switch {
	case errors.Is(err, sync.ErrIdentity):
		return fmt.Errorf("%w\n  Nothing was written. Either point state.path at a new file for this account (the first run rebuilds it from the customer list),\n"+
			"  or, if this account is now the right one, run `plugipay-sync rebuild-cache --rebind`: it binds the state DB to it and forgets the\n"+
			"  mappings whose customers its customer list does not have, so the next run re-creates those users, each once", err)
	case errors.Is(err, state.ErrLocked):
		return fmt.Errorf("%w\n  Only one process may write through a state DB. Wait for it (--wait-lock 10m), or stop it first", err)
	}
	return err
}
