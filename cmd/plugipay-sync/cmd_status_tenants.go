package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/plugipay-sync/plugipay-sync/state"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

// tenantsDir says whether status runs on platform mode's state directory,
// and which: --state naming a directory, or else a config with tenants:.
func (m *Main) tenantsDir(sf stateFlags) (dir string, st StateConfig, platform bool, err error) {
	if sf.statePath != "" {
		fi, err := os.Stat(sf.statePath)
		return sf.statePath, StateConfig{}, err == nil && fi.IsDir(), nil
	}
	cfg, err := readStateConfig(m.ConfigPath, m.expandLookup())
	if err != nil {
		return "", StateConfig{}, false, withExit(ExitConfig, err)
	}
	return cfg.State.Path, cfg.State, cfg.platform(), nil
}

// tenantStatus is one row of `status` in platform mode; its JSON form is
// the `--output json` contract.
type tenantStatus struct {
	Tenant  string         `json:"tenant"`
	LastRun *statusRunJSON `json:"last_run"`
	// LagSeconds is the time since the last run with outcome success or
	// partial finished; nil if none did.
	LagSeconds   *float64       `json:"lag_seconds"`
	FailedStreak int64          `json:"failed_streak"`
	Failures     statusFailures `json:"failures"`
	Error        string         `json:"error,omitempty"`
}

// statusTenants prints the table of every tenant with a state file in dir,
// read from the state files alone (no CRM query, no credentials). A file
// that cannot be read is a row with its error, not the end of the table.
func (m *Main) statusTenants(ctx context.Context, dir string, st StateConfig, output string) (int, error) {
	now := time.Now()
	rows := []tenantStatus{}
	if st.Postgres() {
		// The tenants' schemas, <state.schema>_<id>; the job queue's
		// schema is not a tenant's.
		dir = "postgres schemas " + tenantSchema(st.Schema, "*")
		names, err := state.PostgresSchemas(ctx, st.DSN, tenantSchema(st.Schema, ""))
		if err != nil {
			return ExitFailed, fmt.Errorf("state.dsn: %w", err)
		}
		for _, name := range names {
			id := strings.TrimPrefix(name, tenantSchema(st.Schema, ""))
			if name == fleetSchema(st.Schema) || checkTenantID(id) != nil {
				continue
			}
			rows = append(rows, readTenantStatus(ctx, id, now, func() (*state.DB, error) { return state.OpenPostgres(ctx, st.DSN, name) }))
		}
	} else {
		paths, err := filepath.Glob(filepath.Join(dir, "*.db"))
		if err != nil {
			return ExitFailed, fmt.Errorf("state.path %s: %w", dir, err)
		}
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			return ExitFailed, withExit(ExitConfig, fmt.Errorf("state directory %s does not exist (has plugipay-sync run yet? is state.path or --state right?)", dir))
		}
		slices.Sort(paths)
		for _, p := range paths {
			id := strings.TrimSuffix(filepath.Base(p), ".db")
			if checkTenantID(id) != nil {
				continue // not a tenant's file
			}
			rows = append(rows, readTenantStatus(ctx, id, now, func() (*state.DB, error) { return state.Open(ctx, p) }))
		}
	}
	if output == OutputJSON {
		enc := json.NewEncoder(m.stdout)
		enc.SetIndent("", "  ")
		return ExitOK, enc.Encode(rows)
	}
	return ExitOK, printTenantStatus(m.stdout, dir, rows)
}

// readTenantStatus reads one tenant's row from its store, which open
// opens.
func readTenantStatus(ctx context.Context, id string, now time.Time, open func() (*state.DB, error)) tenantStatus {
	row := tenantStatus{Tenant: id}
	db, err := open()
	if err != nil {
		row.Error = err.Error()
		return row
	}
	defer db.Close()
	runs, err := db.RecentRuns(ctx, 1)
	if err == nil && len(runs) > 0 {
		r := toStatusRun(runs[0])
		row.LastRun = &r
	}
	f, ferr := db.Freshness(ctx)
	if ferr == nil {
		row.FailedStreak = f.FailedStreak
		if !f.LastSuccess.IsZero() {
			lag := now.Sub(f.LastSuccess).Seconds()
			row.LagSeconds = &lag
		}
	}
	total, terminal, cerr := db.FailureCount(ctx)
	row.Failures = statusFailures{Total: total, Terminal: terminal, Retrying: total - terminal}
	if err := errors.Join(err, ferr, cerr); err != nil {
		row.Error = err.Error()
	}
	return row
}

// printTenantStatus writes the tenants' table for a person, the failing
// ones first.
func printTenantStatus(w io.Writer, dir string, rows []tenantStatus) error {
	failing := 0
	for _, r := range rows {
		if r.failing() {
			failing++
		}
	}
	fmt.Fprintf(w, "State directory: %s\nTenants:         %d (%d failing)\n\n", dir, len(rows), failing)
	if len(rows) == 0 {
		fmt.Fprintln(w, "No tenant has run yet.")
		return nil
	}
	sorted := slices.Clone(rows)
	slices.SortStableFunc(sorted, func(a, b tenantStatus) int {
		switch {
		case a.failing() == b.failing():
			return 0
		case a.failing():
			return -1
		}
		return 1
	})
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TENANT\tLAST RUN (UTC)\tOUTCOME\tLAG\tFAILED RUNS\tFAILURES\tERROR")
	for _, r := range sorted {
		last, outcome, errText := "-", "-", r.Error
		if r.LastRun != nil {
			last, outcome = r.LastRun.StartedAt.UTC().Format(time.DateTime), r.LastRun.Outcome
			if errText == "" {
				errText = r.LastRun.Error
			}
		}
		lag := "never synced"
		if r.LagSeconds != nil {
			lag = formatDuration(time.Duration(*r.LagSeconds * float64(time.Second)))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d (%d terminal)\t%s\n", r.Tenant, last, outcome, lag,
			r.FailedStreak, r.Failures.Total, r.Failures.Terminal, oneLine(errText, 80))
	}
	return tw.Flush()
}

// failing: the tenant's last run failed, or its state cannot be read.
func (r tenantStatus) failing() bool {
	return r.Error != "" || (r.LastRun != nil && r.LastRun.Outcome == sync.OutcomeFailed)
}
