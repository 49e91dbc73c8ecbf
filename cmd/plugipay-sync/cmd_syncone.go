package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/plugipay-sync/plugipay-sync/sync"
)

// runSyncOne is `plugipay-sync sync --external-id ID`: it reconciles one
// user now, doing what a run would do with it (sync.Reconciler.SyncOne
// reads the whole source and calls the run's decision), and prints what
// it did. Exit 0 when the user is in sync, 2 when Plugipay or the source
// rejected the record or the write failed (the failure is stored as a run
// would store it), 1 when it could not run or the id is not in the source.
func runSyncOne(ctx context.Context, m *Main, args []string) (int, error) {
	fs := flag.NewFlagSet("sync", flag.ContinueOnError)
	m.commonFlags(fs)
	var id string
	fs.StringVar(&id, "external-id", "", "the CRM user id to reconcile now (required)")
	m.lockFlag(fs)
	if err := parseCommandFlags(fs, args, m.stdout); err != nil {
		return ExitFailed, err
	}
	if id == "" {
		return ExitFailed, errors.New("--external-id is required")
	}
	m.Command = "plugipay-sync sync --external-id"
	if err := m.open(ctx); err != nil {
		return exitCode(err), err
	}
	res, err := m.rec.SyncOne(ctx, id)
	switch {
	case errors.Is(err, sync.ErrNotInSource):
		return ExitFailed, err
	case err != nil && res.Action == "":
		return exitCode(err), err
	case err != nil:
		fmt.Fprintf(m.stdout, "%s: %s\n", id, res.Action)
		return ExitPartial, err
	}
	if res.Action == sync.ActionSkipped {
		fmt.Fprintf(m.stdout, "%s: skipped (%s)\n", id, res.Reason)
		return ExitOK, nil
	}
	fmt.Fprintf(m.stdout, "%s: %s (customer %s)\n", id, res.Action, res.CustomerID)
	return ExitOK, nil
}
