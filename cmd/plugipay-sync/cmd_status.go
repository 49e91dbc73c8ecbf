package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/plugipay-sync/plugipay-sync/state"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

// DefaultStatusRuns is how many runs `status` shows unless --runs says.
const DefaultStatusRuns = 10

// Output formats of the state commands.
const (
	OutputTable = "table"
	OutputJSON  = "json"
)

// stateFlags are the flags of the commands that read the state DB only
// (status, failures, retry): they need neither API credentials nor the
// network.
type stateFlags struct {
	// lockFor, when set, takes the writer lock for that command: the
	// command changes the state DB.
	lockFor   string
	statePath string
	output    string
}

func (m *Main) stateCommandFlags(fs *flag.FlagSet, sf *stateFlags) {
	m.commonFlags(fs)
	fs.StringVar(&sf.statePath, "state", "", "path of the state DB; overrides state.path and makes --config unnecessary")
	fs.StringVar(&sf.output, "output", OutputTable, "output format: table or json")
}

// parse parses a state command's flags and checks the shared ones.
func (sf *stateFlags) parse(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	if err := parseCommandFlags(fs, args, stdout); err != nil {
		return err
	}
	return sf.validate()
}

func (sf *stateFlags) validate() error {
	if sf.output != OutputTable && sf.output != OutputJSON {
		return fmt.Errorf("--output: must be %s or %s (got %q)", OutputTable, OutputJSON, sf.output)
	}
	return nil
}

// openStateOnly opens the state DB named by --state, or else by the
// config's state section (state.path, or the PostgreSQL schema of
// state.driver postgres), without building any API client. The config is
// parsed strictly but only state.path is required, so status works on a
// host that holds no Plugipay secret. The file must exist: a typo should
// not create an empty database that reports "no runs".
func (m *Main) openStateOnly(ctx context.Context, sf stateFlags) error {
	path := sf.statePath
	if path == "" {
		cfg, err := readStateConfig(m.ConfigPath, m.expandLookup())
		if err != nil {
			return withExit(ExitConfig, err)
		}
		if cfg.State.Postgres() {
			return m.openPostgres(ctx, cfg.State, sf.lockFor)
		}
		path = cfg.State.Path
	}
	fi, err := os.Stat(path)
	if err == nil && fi.IsDir() {
		return withExit(ExitConfig, fmt.Errorf("state.path %s is platform mode's directory of tenant state files; name one tenant's with --state %s", path, tenantStatePath(path, "<tenant-id>")))
	}
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return withExit(ExitConfig, fmt.Errorf("state DB %s does not exist (has plugipay-sync run yet? is state.path or --state right?)", path))
		}
		return withExit(ExitFailed, fmt.Errorf("state DB: %w", err))
	}
	if sf.lockFor != "" {
		if err := m.lockState(ctx, path, sf.lockFor); err != nil {
			return err
		}
	}
	db, err := state.Open(ctx, path)
	if err != nil {
		return withExit(ExitFailed, err)
	}
	m.store = db
	return nil
}

func (m *Main) expandLookup() func(string) (string, bool) {
	if m.NoExpandEnv {
		return nil
	}
	return m.LookupEnv
}

// unsetMarker stands in for a ${VAR} whose variable is unset when the state
// commands read the config: they need state.path only, so a missing
// PLUGIPAY_SECRET must not stop them.
const unsetMarker = "__plugipay_sync_unset_"

// readStateConfig reads the config for its state.path alone.
func readStateConfig(path string, lookupEnv func(string) (string, bool)) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w (or give the state DB with --state)", err)
	}
	if lookupEnv != nil {
		lenient := func(k string) (string, bool) {
			if v, ok := lookupEnv(k); ok && v != "" {
				return v, true
			}
			return unsetMarker + k + "-", true // "-" cannot occur in a variable name
		}
		if b, err = ExpandEnv(b, lenient); err != nil {
			return Config{}, fmt.Errorf("config %s: %w", path, err)
		}
	}
	cfg, err := ParseConfig(strings.NewReader(string(b)))
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	if _, rest, found := strings.Cut(cfg.State.Path, unsetMarker); found {
		name, _, _ := strings.Cut(rest, "-")
		return Config{}, fmt.Errorf("config %s: state.path: environment variable %s is not set", path, name)
	}
	if cfg.State.Path == "" {
		return Config{}, fmt.Errorf("config %s: %w", path, invalid("state.path", "", "required"))
	}
	if err := cfg.State.resolveDSN(lookupEnv); err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	if err := cfg.State.validate(); err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// statusReport is what `status` prints; its JSON form is the
// `--output json` contract.
type statusReport struct {
	StatePath string          `json:"state_path"`
	Mappings  int64           `json:"mappings"`
	Failures  statusFailures  `json:"failures"`
	Audit     statusAudit     `json:"audit"`
	Runs      []statusRunJSON `json:"runs"`
}

type statusFailures struct {
	Total    int64 `json:"total"`
	Terminal int64 `json:"terminal"`
	Retrying int64 `json:"retrying"`
}

type statusRunJSON struct {
	ID              int64      `json:"id"`
	StartedAt       time.Time  `json:"started_at"`
	FinishedAt      *time.Time `json:"finished_at"`
	DurationSeconds *float64   `json:"duration_seconds"`
	Outcome         string     `json:"outcome"`
	Error           string     `json:"error,omitempty"`
	Read            int64      `json:"read"`
	Created         int64      `json:"created"`
	Updated         int64      `json:"updated"`
	Unchanged       int64      `json:"unchanged"`
	Recovered       int64      `json:"recovered"`
	Rejected        int64      `json:"rejected"`
	Failed          int64      `json:"failed"`
	Archived        int64      `json:"archived"`
	Skipped         int64      `json:"skipped"`
}

// outcomeRunning is shown for a run with no outcome yet: in progress, or
// its process died and no later run has marked it aborted.
const outcomeRunning = "running"

func toStatusRun(r sync.RunRecord) statusRunJSON {
	c := r.Counts
	out := statusRunJSON{ID: r.ID, StartedAt: r.StartedAt, Outcome: r.Outcome, Error: r.Error,
		Read: c.Read, Created: c.Created, Updated: c.Updated, Unchanged: c.Unchanged,
		Recovered: c.Recovered, Rejected: c.Rejected, Failed: c.Failed, Archived: c.Archived, Skipped: c.Skipped}
	if out.Outcome == "" {
		out.Outcome = outcomeRunning
	}
	if !r.FinishedAt.IsZero() {
		f := r.FinishedAt
		d := f.Sub(r.StartedAt).Seconds()
		out.FinishedAt, out.DurationSeconds = &f, &d
	}
	return out
}

func runStatus(ctx context.Context, m *Main, args []string) (int, error) {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	var sf stateFlags
	m.stateCommandFlags(fs, &sf)
	n := fs.Int("runs", DefaultStatusRuns, "how many of the last runs to show")
	tenant := fs.String("tenant", "", "platform mode: the status of this tenant's workspace; without it, a table of every tenant")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: plugipay-sync status [--config FILE | --state PATH] [--tenant ID] [--runs N] [--output table|json]\n\n"+
			"Prints the last runs, the failure queue and the cache size from the state DB alone: no API call, no credentials.\n"+
			"In platform mode (tenants:) it prints one row per tenant (last run, outcome, lag, failures), or with --tenant one tenant's status.\n\n")
		fs.PrintDefaults()
	}
	if err := sf.parse(fs, args, m.stdout); err != nil {
		return ExitFailed, err
	}
	if *n < 1 {
		return ExitFailed, fmt.Errorf("--runs: must be at least 1 (got %d)", *n)
	}
	dir, st, platform, err := m.tenantsDir(sf)
	if err != nil {
		return ExitFailed, err
	}
	switch {
	case *tenant != "" && !platform:
		return ExitFailed, withExit(ExitConfig, errors.New("--tenant: the config has no tenants: section (platform mode), and --state is not a directory of tenant state files"))
	case *tenant != "":
		if err := checkTenantID(*tenant); err != nil {
			return ExitFailed, withExit(ExitConfig, fmt.Errorf("--tenant %q: %w", *tenant, err))
		}
		if st.Postgres() {
			st.Schema = tenantSchema(st.Schema, *tenant)
			if err := m.openPostgres(ctx, st, ""); err != nil {
				return ExitFailed, err
			}
			break
		}
		sf.statePath = tenantStatePath(dir, *tenant)
	case platform:
		return m.statusTenants(ctx, dir, st, sf.output)
	}
	if m.store == nil {
		if err := m.openStateOnly(ctx, sf); err != nil {
			return ExitFailed, err
		}
	}
	rep, err := buildStatus(ctx, m.store, *n)
	if err != nil {
		return ExitFailed, err
	}
	if sf.output == OutputJSON {
		enc := json.NewEncoder(m.stdout)
		enc.SetIndent("", "  ")
		return ExitOK, enc.Encode(rep)
	}
	return ExitOK, printStatus(m.stdout, rep)
}

func buildStatus(ctx context.Context, db *state.DB, n int) (statusReport, error) {
	rep := statusReport{StatePath: db.Location(), Runs: []statusRunJSON{}}
	var err error
	if rep.Mappings, err = db.MappingCount(ctx); err != nil {
		return rep, err
	}
	if rep.Failures.Total, rep.Failures.Terminal, err = db.FailureCount(ctx); err != nil {
		return rep, err
	}
	rep.Failures.Retrying = rep.Failures.Total - rep.Failures.Terminal
	if rep.Audit, err = auditStatus(ctx, db); err != nil {
		return rep, err
	}
	runs, err := db.RecentRuns(ctx, n)
	if err != nil {
		return rep, err
	}
	for _, r := range runs {
		rep.Runs = append(rep.Runs, toStatusRun(r))
	}
	return rep, nil
}

// printStatus writes the report for a person: a header, then one table
// row per run, newest first.
func printStatus(w io.Writer, rep statusReport) error {
	fmt.Fprintf(w, "State DB:      %s\n", rep.StatePath)
	fmt.Fprintf(w, "Cache:         %d mappings\n", rep.Mappings)
	fmt.Fprintf(w, "Failure queue: %d (%d terminal, %d retrying)\n", rep.Failures.Total, rep.Failures.Terminal, rep.Failures.Retrying)
	fmt.Fprintf(w, "Audit ledger:  %s\n\n", rep.Audit)
	if len(rep.Runs) == 0 {
		fmt.Fprintln(w, "No runs yet.")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tSTARTED (UTC)\tDURATION\tOUTCOME\tREAD\tCREATED\tUPDATED\tUNCHANGED\tRECOVERED\tREJECTED\tFAILED\tARCHIVED\tSKIPPED\tERROR")
	for _, r := range rep.Runs {
		dur := "-"
		if r.DurationSeconds != nil {
			dur = formatDuration(time.Duration(*r.DurationSeconds * float64(time.Second)))
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n",
			r.ID, r.StartedAt.UTC().Format(time.DateTime), dur, r.Outcome,
			r.Read, r.Created, r.Updated, r.Unchanged, r.Recovered, r.Rejected, r.Failed,
			r.Archived, r.Skipped, oneLine(r.Error, 80))
	}
	return tw.Flush()
}

// formatDuration rounds d for a table: milliseconds under a minute,
// seconds above.
func formatDuration(d time.Duration) string {
	if d < time.Minute {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// oneLine keeps the first line of s, cut to at most n runes.
func oneLine(s string, n int) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if r := []rune(s); len(r) > n {
		s = string(r[:n-1]) + "…"
	}
	return s
}
