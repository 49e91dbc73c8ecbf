package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/plugipay-sync/plugipay-sync/state"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

// Output formats of --dry-run.
const (
	planOutputTable = "table"
	planOutputJSON  = "json"
)

// planActions is the order actions are counted in.
var planActions = []string{sync.PlanCreate, sync.PlanUpdate, sync.PlanUnchanged, sync.PlanArchive, sync.PlanReject, sync.PlanSkip}

// runPlan is `--once --dry-run`: it prints what a run would do, writing
// neither to Plugipay nor to the state DB. Exit codes are those of a run:
// 0, 2 when records would be rejected or skipped or the archive would be
// refused, 1 when the plan could not be made.
func (m *Main) runPlan(ctx context.Context) (int, error) {
	var emit func(sync.PlanEntry)
	var tw *tabwriter.Writer
	enc := json.NewEncoder(m.stdout)
	switch m.Output {
	case planOutputJSON:
		emit = func(e sync.PlanEntry) { _ = enc.Encode(e) }
	default:
		tw = tabwriter.NewWriter(m.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ACTION\tEXTERNAL ID\tCUSTOMER\tCHANGES")
		emit = func(e sync.PlanEntry) {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.Action, e.ExternalID, dash(e.CustomerID), describe(e))
		}
	}
	counts, err := m.rec.Plan(ctx, emit)
	if tw != nil {
		tw.Flush()
		fmt.Fprintf(m.stdout, "\nplan (dry run, nothing written):")
		for _, a := range planActions {
			fmt.Fprintf(m.stdout, "  %s %d", a, counts[a])
		}
		fmt.Fprintln(m.stdout)
	} else {
		_ = enc.Encode(map[string]any{"summary": counts, "dry_run": true})
	}
	switch {
	case errors.Is(err, sync.ErrMassArchive):
		return ExitPartial, err
	case err != nil:
		return ExitFailed, err
	case counts[sync.PlanReject] > 0 || counts[sync.PlanSkip] > 0:
		return ExitPartial, nil
	}
	return ExitOK, nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// describe renders an entry's field changes as `field: "old" -> "new"`.
func describe(e sync.PlanEntry) string {
	var parts []string
	for _, c := range e.Changes {
		parts = append(parts, fmt.Sprintf("%s: %q -> %q", c.Field, c.Old, c.New))
	}
	switch {
	case e.Reason != "" && e.Ref != "":
		parts = append(parts, "("+e.Ref+": "+e.Reason+")")
	case e.Reason != "":
		parts = append(parts, "("+e.Reason+")")
	}
	return strings.Join(parts, ", ")
}

// openPlanStore opens the state DB for a dry run. A state DB that does not
// exist yet is not created (a dry run writes nothing): the plan is made
// against an empty one in a temporary directory, removed by Close.
func (m *Main) openPlanStore(ctx context.Context) error {
	if m.cfg.State.Postgres() {
		return m.openStore(ctx)
	}
	if _, err := os.Stat(m.cfg.State.Path); !errors.Is(err, fs.ErrNotExist) {
		return m.openStore(ctx)
	}
	dir, err := os.MkdirTemp("", "plugipay-sync-plan-")
	if err != nil {
		return fmt.Errorf("dry run: %w", err)
	}
	m.planDir = dir
	if m.store, err = state.Open(ctx, filepath.Join(dir, "state.db")); err != nil {
		return fmt.Errorf("dry run: empty state DB: %w", err)
	}
	return nil
}

// validOutput checks the --output value.
func validOutput(s string) error {
	if !slices.Contains([]string{planOutputTable, planOutputJSON}, s) {
		return fmt.Errorf("--output must be %s or %s (got %q)", planOutputTable, planOutputJSON, s)
	}
	return nil
}
