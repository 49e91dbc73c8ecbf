package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/plugipay-sync/plugipay-sync/state"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

// failureJSON is one failure in `failures --output json` (one JSON object
// per line) and `retry --output json`.
type failureJSON struct {
	ExternalID  string     `json:"external_id"`
	Terminal    bool       `json:"terminal"`
	NextAttempt *time.Time `json:"next_attempt,omitempty"`
	Attempts    int        `json:"attempts"`
	Code        string     `json:"code"`
	Message     string     `json:"message"`
	RequestID   string     `json:"request_id,omitempty"`
	UpdatedAt   time.Time  `json:"updated_at"`
}

func toFailureJSON(f sync.Failure) failureJSON {
	out := failureJSON{ExternalID: f.ExternalID, Terminal: f.Terminal, Attempts: f.Attempts,
		Code: f.Code, Message: f.Message, RequestID: f.RequestID, UpdatedAt: f.UpdatedAt}
	if !f.Terminal && !f.NextAttempt.IsZero() {
		t := f.NextAttempt
		out.NextAttempt = &t
	}
	return out
}

// failureStatus says when a failure is retried: "terminal" (not until its
// content changes), "next run" (eligible now) or the time of its next try.
func failureStatus(f sync.Failure, now time.Time) string {
	switch {
	case f.Terminal:
		return "terminal"
	case !f.NextAttempt.After(now):
		return "next run"
	}
	return "retry after " + f.NextAttempt.UTC().Format(time.DateTime)
}

// printFailures writes fs as a table, or as JSON lines.
func printFailures(w io.Writer, fs []sync.Failure, output string, now time.Time) error {
	if output == OutputJSON {
		enc := json.NewEncoder(w)
		for _, f := range fs {
			if err := enc.Encode(toFailureJSON(f)); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "EXTERNAL ID\tSTATUS (UTC)\tATTEMPTS\tCODE\tREQUEST ID\tMESSAGE")
	for _, f := range fs {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", f.ExternalID, failureStatus(f, now), f.Attempts,
			f.Code, orDash(f.RequestID), oneLine(f.Message, 100))
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func runFailures(ctx context.Context, m *Main, args []string) (int, error) {
	fs := flag.NewFlagSet("failures", flag.ContinueOnError)
	var sf stateFlags
	m.stateCommandFlags(fs, &sf)
	var filter state.FailureFilter
	fs.StringVar(&filter.Code, "code", "", "only failures whose last error code is CODE (e.g. validation_error, network_error)")
	fs.BoolVar(&filter.TerminalOnly, "terminal", false, "only terminal failures (rejected as invalid; not retried until the record changes)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: plugipay-sync failures [--config FILE | --state PATH] [--code CODE] [--terminal] [--output table|json]\n\n"+
			"Lists the records kept as failed in the state DB, with when each is retried.\n\n")
		fs.PrintDefaults()
	}
	if err := sf.parse(fs, args); err != nil {
		return ExitFailed, err
	}
	if err := m.openStateOnly(ctx, sf); err != nil {
		return ExitFailed, err
	}
	list, err := m.store.ListFailures(ctx, filter)
	if err != nil {
		return ExitFailed, err
	}
	if err := printFailures(m.stdout, list, sf.output, time.Now()); err != nil {
		return ExitFailed, err
	}
	if sf.output == OutputTable {
		fmt.Fprintf(m.stdout, "%d failures\n", len(list))
	}
	return ExitOK, nil
}

// listFlag is a repeatable flag that also splits comma lists.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

func runRetry(ctx context.Context, m *Main, args []string) (int, error) {
	fs := flag.NewFlagSet("retry", flag.ContinueOnError)
	var sf stateFlags
	m.stateCommandFlags(fs, &sf)
	var ids listFlag
	fs.Var(&ids, "external-id", "retry this user (repeatable, or a comma-separated list)")
	code := fs.String("code", "", "retry every failure whose last error code is CODE")
	all := fs.Bool("all", false, "retry every failure")
	dryRun := fs.Bool("dry-run", false, "show what would be reset, change nothing")
	m.lockFlag(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: plugipay-sync retry [--config FILE | --state PATH] (--external-id ID... | --code CODE | --all) [--dry-run]\n\n"+
			"Makes failed records eligible again now: the next run sends them, skipping their backoff (or,\n"+
			"for terminal ones, the wait for a change of content). --external-id and --code combine with AND.\n\n")
		fs.PrintDefaults()
	}
	if err := sf.parse(fs, args); err != nil {
		return ExitFailed, err
	}
	filter := state.FailureFilter{ExternalIDs: ids, Code: *code}
	switch {
	case *all && (len(ids) > 0 || *code != ""):
		return ExitFailed, errors.New("--all selects every failure; do not combine it with --external-id or --code")
	case !*all && len(ids) == 0 && *code == "":
		return ExitFailed, errors.New("say which failures to retry: --external-id ID, --code CODE or --all")
	}
	if !*dryRun {
		sf.lockFor = "plugipay-sync retry"
	}
	if err := m.openStateOnly(ctx, sf); err != nil {
		return exitCode(err), err
	}
	var (
		list []sync.Failure
		err  error
	)
	if *dryRun {
		list, err = m.store.ListFailures(ctx, filter)
	} else {
		list, err = m.store.ResetFailures(ctx, filter)
	}
	if err != nil {
		return ExitFailed, err
	}
	if err := printFailures(m.stdout, list, sf.output, time.Now()); err != nil {
		return ExitFailed, err
	}
	if sf.output == OutputTable {
		verb := "reset; the next run retries them"
		if *dryRun {
			verb = "would be reset (dry run: nothing changed)"
		}
		fmt.Fprintf(m.stdout, "%d failures %s\n", len(list), verb)
	}
	return ExitOK, nil
}
