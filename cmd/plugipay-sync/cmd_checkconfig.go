package main

import (
	"context"
	"flag"
	"fmt"
)

// runCheckConfig validates a config file and exits: 0 valid, 1 not. For CI
// and deploy pipelines; it opens nothing and calls no API.
func runCheckConfig(_ context.Context, m *Main, args []string) (int, error) {
	fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
	m.commonFlags(fs)
	if err := parseCommandFlags(fs, args, m.stdout); err != nil {
		return ExitFailed, err
	}
	if err := m.loadConfig(); err != nil {
		return ExitFailed, err
	}
	fmt.Fprintf(m.stdout, "%s: valid (source %s, destination %s, schedule %q, state %s)\n",
		m.ConfigPath, m.cfg.CRM.Type, m.cfg.Destination.Type, m.cfg.Schedule, m.cfg.State)
	for _, d := range m.cfg.Deprecations {
		fmt.Fprintf(m.stdout, "  deprecated: %s\n", d)
	}
	return ExitOK, nil
}
