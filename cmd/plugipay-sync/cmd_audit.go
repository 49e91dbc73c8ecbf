package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/plugipay-sync/plugipay-sync/state"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

// auditJSON is one ledger entry in `history --output json` and `audit
// export` (one JSON object per line), with the snake_case keys of the
// other JSON outputs.
type auditJSON struct {
	ID             int64              `json:"id"`
	At             time.Time          `json:"at"`
	Cause          sync.Cause         `json:"cause"`
	CauseID        string             `json:"cause_id,omitempty"`
	ExternalID     string             `json:"external_id"`
	CustomerID     string             `json:"customer_id"`
	Op             sync.AuditOp       `json:"op"`
	IdempotencyKey string             `json:"idempotency_key,omitempty"`
	RequestID      string             `json:"request_id,omitempty"`
	Changes        []sync.FieldChange `json:"changes"`
}

func toAuditJSON(e sync.AuditEntry) auditJSON {
	ch := e.Changes
	if ch == nil {
		ch = []sync.FieldChange{}
	}
	return auditJSON{ID: e.ID, At: e.At, Cause: e.Cause, CauseID: e.CauseID, ExternalID: e.ExternalID,
		CustomerID: e.CustomerID, Op: e.Op, IdempotencyKey: e.IdempotencyKey, RequestID: e.RequestID, Changes: ch}
}

// statusAudit is the ledger's size in `status`.
type statusAudit struct {
	Entries int64      `json:"entries"`
	Bytes   int64      `json:"bytes"`
	Oldest  *time.Time `json:"oldest,omitempty"`
}

func (a statusAudit) String() string {
	if a.Entries == 0 {
		return "0 entries"
	}
	return fmt.Sprintf("%d entries, about %s, oldest %s", a.Entries, formatBytes(a.Bytes), a.Oldest.UTC().Format(time.DateTime))
}

func formatBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func auditStatus(ctx context.Context, db *state.DB) (statusAudit, error) {
	st, err := db.AuditStats(ctx)
	if err != nil {
		return statusAudit{}, err
	}
	out := statusAudit{Entries: st.Entries, Bytes: st.Bytes}
	if !st.Oldest.IsZero() {
		o := st.Oldest
		out.Oldest = &o
	}
	return out, nil
}

// describeChanges renders an entry's changes for a table: "field" when
// redacted, "field: old -> new" otherwise.
func describeChanges(cs []sync.FieldChange) string {
	if len(cs) == 0 {
		return "-"
	}
	parts := make([]string, len(cs))
	for i, c := range cs {
		if c.Redacted {
			parts[i] = c.Field
		} else {
			parts[i] = fmt.Sprintf("%s: %q -> %q", c.Field, c.Old, c.New)
		}
	}
	return strings.Join(parts, ", ")
}

// runHistory is `plugipay-sync history --external-id X`: what the sync
// wrote to one user's customer, when and why, from the audit ledger.
func runHistory(ctx context.Context, m *Main, args []string) (int, error) {
	fs := flag.NewFlagSet("history", flag.ContinueOnError)
	var sf stateFlags
	m.stateCommandFlags(fs, &sf)
	id := fs.String("external-id", "", "the CRM user id (required)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: plugipay-sync history --external-id ID [--config FILE | --state PATH] [--output table|json]\n\n"+
			"Lists the confirmed writes to one user's customer from the audit ledger, oldest first.\n\n")
		fs.PrintDefaults()
	}
	if err := sf.parse(fs, args, m.stdout); err != nil {
		return ExitFailed, err
	}
	if *id == "" {
		return ExitFailed, errors.New("--external-id is required")
	}
	if err := m.openStateOnly(ctx, sf); err != nil {
		return exitCode(err), err
	}
	entries, err := m.store.AuditHistory(ctx, *id)
	if err != nil {
		return ExitFailed, err
	}
	if sf.output == OutputJSON {
		enc := json.NewEncoder(m.stdout)
		for _, e := range entries {
			if err := enc.Encode(toAuditJSON(e)); err != nil {
				return ExitFailed, err
			}
		}
		return ExitOK, nil
	}
	return ExitOK, printHistory(m.stdout, entries)
}

func printHistory(w io.Writer, es []sync.AuditEntry) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME (UTC)\tCAUSE\tOP\tCUSTOMER ID\tREQUEST ID\tIDEMPOTENCY KEY\tCHANGES")
	for _, e := range es {
		cause := string(e.Cause)
		if e.CauseID != "" {
			cause += " " + e.CauseID
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.At.UTC().Format("2006-01-02 15:04:05.000"), cause, e.Op,
			e.CustomerID, orDash(e.RequestID), orDash(e.IdempotencyKey), describeChanges(e.Changes))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d entries\n", len(es))
	return err
}

// runAudit is `plugipay-sync audit export|prune`. The subcommand may
// come after the common flags (audit --config FILE export ...).
func runAudit(ctx context.Context, m *Main, args []string) (int, error) {
	for i, a := range args {
		rest := append(slices.Clone(args[:i]), args[i+1:]...)
		switch a {
		case "export":
			return runAuditExport(ctx, m, rest)
		case "prune":
			return runAuditPrune(ctx, m, rest)
		}
	}
	fmt.Fprintf(m.stderr, "Usage: plugipay-sync audit export --since T [--config FILE | --state PATH]\n       plugipay-sync audit prune [--config FILE] [--before T]\n")
	return ExitFailed, errors.New("audit: say export or prune")
}

// parseSince reads a point in time: RFC 3339, a date (UTC midnight), or a
// duration back from now ("72h").
func parseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is not a time: use RFC 3339 (2026-01-02T15:04:05Z), a date (2026-01-02) or a duration back from now (72h)", s)
}

// runAuditExport writes the ledger entries since --since as JSON Lines.
func runAuditExport(ctx context.Context, m *Main, args []string) (int, error) {
	fs := flag.NewFlagSet("audit export", flag.ContinueOnError)
	var sf stateFlags
	m.stateCommandFlags(fs, &sf)
	since := fs.String("since", "", "export entries written at or after this time: RFC 3339, a date, or a duration back from now (required)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: plugipay-sync audit export --since T [--config FILE | --state PATH]\n\n"+
			"Writes the audit ledger's entries since T as JSON Lines, oldest first.\n\n")
		fs.PrintDefaults()
	}
	if err := sf.parse(fs, args, m.stdout); err != nil {
		return ExitFailed, err
	}
	if *since == "" {
		return ExitFailed, errors.New("--since is required")
	}
	t, err := parseSince(*since, time.Now())
	if err != nil {
		return ExitFailed, fmt.Errorf("--since: %w", err)
	}
	if err := m.openStateOnly(ctx, sf); err != nil {
		return exitCode(err), err
	}
	enc := json.NewEncoder(m.stdout)
	for e, err := range m.store.AuditSince(ctx, t) {
		if err != nil {
			return ExitFailed, err
		}
		if err := enc.Encode(toAuditJSON(e)); err != nil {
			return ExitFailed, err
		}
	}
	return ExitOK, nil
}

// runAuditPrune deletes the entries older than audit.retention (or
// --before), for deployments without the daemon (a CronJob of --once).
func runAuditPrune(ctx context.Context, m *Main, args []string) (int, error) {
	fs := flag.NewFlagSet("audit prune", flag.ContinueOnError)
	var sf stateFlags
	m.stateCommandFlags(fs, &sf)
	before := fs.String("before", "", "delete entries written before this time (default: now minus audit.retention)")
	m.lockFlag(fs)
	if err := sf.parse(fs, args, m.stdout); err != nil {
		return ExitFailed, err
	}
	now := time.Now()
	var cut time.Time
	if *before != "" {
		t, err := parseSince(*before, now)
		if err != nil {
			return ExitFailed, fmt.Errorf("--before: %w", err)
		}
		cut = t
	} else {
		cfg, err := readStateConfig(m.ConfigPath, m.expandLookup())
		if err != nil {
			return ExitConfig, err
		}
		if cfg.Audit.Retention == 0 {
			fmt.Fprintln(m.stdout, "audit.retention is 0: the ledger is kept forever; nothing pruned")
			return ExitOK, nil
		}
		cut = now.Add(-cfg.Audit.Retention)
	}
	sf.lockFor = "plugipay-sync audit prune"
	if err := m.openStateOnly(ctx, sf); err != nil {
		return exitCode(err), err
	}
	n, err := m.store.PruneAudit(ctx, cut)
	if err != nil {
		return ExitFailed, err
	}
	fmt.Fprintf(m.stdout, "pruned %d entries written before %s\n", n, cut.UTC().Format(time.RFC3339))
	return ExitOK, nil
}
