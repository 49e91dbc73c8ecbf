package main

import (
	"context"
	"flag"
	"fmt"
)

// runRebuildCache is `plugipay-sync rebuild-cache`: it walks Plugipay's
// whole customer list (100 per request) and stores a mapping for every
// customer with an externalId, hashed over the listed fields, so the next
// run writes only what differs. A run does the same by itself when the
// state DB holds no mapping; this command does it on demand, for example
// after customers were edited or imported behind the sync's back.
func runRebuildCache(ctx context.Context, m *Main, args []string) (int, error) {
	fs := flag.NewFlagSet("rebuild-cache", flag.ContinueOnError)
	m.commonFlags(fs)
	if err := parseCommandFlags(fs, args); err != nil {
		return ExitFailed, err
	}
	if err := m.open(ctx); err != nil {
		return ExitFailed, err
	}
	n, err := m.rec.RebuildCache(ctx)
	fmt.Fprintf(m.stdout, "listed %d  mapped %d  without externalId %d\n", n.Listed, n.Mapped, n.WithoutExternalID)
	if err != nil {
		return ExitFailed, err
	}
	return ExitOK, nil
}
