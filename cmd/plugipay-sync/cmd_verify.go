package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"text/tabwriter"

	"github.com/plugipay-sync/plugipay-sync/sync"
)

// runVerify is `plugipay-sync verify`: it walks the destination's
// customer list and compares every mapped customer with the content the
// sync last confirmed for it (sync.Reconciler.Verify), reporting drift per
// field, missing customers and orphans; --repair puts the drifted managed
// fields back through the run's write path. It holds the writer lock like
// every command that may write. Exit 0 when nothing is left drifted or
// missing (orphans are reported but are not the sync's to fix), 2 when
// drift or a missing customer is reported and not repaired, or a repair
// failed.
func runVerify(ctx context.Context, m *Main, args []string) (int, error) {
	fs := flag.NewFlagSet("verify", flag.ContinueOnError)
	m.commonFlags(fs)
	repair := fs.Bool("repair", false, "put drifted managed fields back (PATCH, through pending writes and idempotency keys), as verify.policy: repair does")
	missing := fs.String("missing", "", "with --repair, what to do with mapped customers no longer listed: report or recreate (default verify.missing)")
	output := fs.String("output", OutputTable, "output format: table or json")
	showValues := fs.Bool("show-values", false, "show the confirmed and the current value of each drift example (personal data: off by default)")
	m.lockFlag(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: plugipay-sync verify [--config FILE] [--repair [--missing report|recreate]] [--output table|json] [--show-values]\n\n"+
			"Compares every mapped customer's managed fields with what the sync last confirmed, one list request per 100 customers.\n\n")
		fs.PrintDefaults()
	}
	if err := parseCommandFlags(fs, args, m.stdout); err != nil {
		return ExitFailed, err
	}
	if *output != OutputTable && *output != OutputJSON {
		return ExitFailed, fmt.Errorf("--output: must be %s or %s (got %q)", OutputTable, OutputJSON, *output)
	}
	if *missing != "" && !sync.MissingPolicy(*missing).Valid() {
		return ExitFailed, fmt.Errorf("--missing: must be report or recreate (got %q)", *missing)
	}
	m.Command = "plugipay-sync verify"
	if err := m.open(ctx); err != nil {
		return exitCode(err), err
	}
	o := m.verifyOptions(*repair)
	if *missing != "" {
		o.Missing = sync.MissingPolicy(*missing)
	}
	rep, err := m.rec.Verify(ctx, o)
	if err != nil {
		return exitCode(err), err
	}
	if !*showValues {
		for i := range rep.Examples {
			rep.Examples[i].Want, rep.Examples[i].Have = "", ""
		}
	}
	if err := printVerify(m.stdout, rep, *output); err != nil {
		return ExitFailed, err
	}
	if rep.Repairs[sync.RepairFailed] > 0 {
		return ExitPartial, fmt.Errorf("%d repairs failed; see the log", rep.Repairs[sync.RepairFailed])
	}
	left := rep.Drifted - rep.Repairs[sync.RepairRepaired] - rep.Repairs[sync.RepairUnchanged]
	if o.Missing == sync.MissingRecreate {
		left += rep.Missing - rep.Repairs[sync.RepairRecreated]
	} else {
		left += rep.Missing
	}
	if !*repair {
		left = rep.Drifted + rep.Missing
	}
	if left > 0 {
		return ExitPartial, nil
	}
	return ExitOK, nil
}

// verifyOptions are the options of a verify under the config; repair
// overrides verify.policy when set.
func (m *Main) verifyOptions(repair bool) sync.VerifyOptions {
	return sync.VerifyOptions{
		Repair:         repair || m.cfg.Verify.Policy == VerifyRepair,
		Missing:        sync.MissingPolicy(m.cfg.Verify.Missing),
		PagesPerSecond: m.cfg.verifyPagesPerSecond(),
		Metrics:        m.verifyMetrics,
	}
}

// printVerify writes the report as a table, or as one JSON object.
func printVerify(w io.Writer, r sync.VerifyReport, output string) error {
	if output == OutputJSON {
		return json.NewEncoder(w).Encode(r)
	}
	fmt.Fprintf(w, "verify %s: %d customers listed in %d requests, %d compared, %d unverifiable (no confirmed content), %d archived\n",
		r.ID, r.Listed, r.Pages, r.Compared, r.Unverifiable, r.Archived)
	fmt.Fprintf(w, "drifted: %d customers\n", r.Drifted)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if r.Drifted > 0 {
		fmt.Fprintln(tw, "  FIELD\tCUSTOMERS")
		for _, f := range slices.Sorted(maps.Keys(r.DriftByField)) {
			fmt.Fprintf(tw, "  %s\t%d\n", f, r.DriftByField[f])
		}
		fmt.Fprintln(tw, "  EXTERNAL ID\tCUSTOMER ID\tFIELD\tCONFIRMED\tNOW")
		for _, e := range r.Examples {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", e.ExternalID, e.CustomerID, e.Field, orHidden(e.Want), orHidden(e.Have))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	printRefs(w, "missing (mapped, no longer listed)", r.Missing, r.MissingExamples)
	printRefs(w, "orphans (externalId unknown to the sync; never touched)", r.Orphans, r.OrphanExamples)
	if r.Repairs != nil {
		fmt.Fprintf(w, "repairs:")
		for _, o := range slices.Sorted(maps.Keys(r.Repairs)) {
			fmt.Fprintf(w, " %s %d", o, r.Repairs[o])
		}
		fmt.Fprintln(w)
	}
	return nil
}

func printRefs(w io.Writer, what string, n int64, refs []sync.CustomerRef) {
	fmt.Fprintf(w, "%s: %d\n", what, n)
	for _, r := range refs {
		fmt.Fprintf(w, "  %s  %s\n", r.ExternalID, r.CustomerID)
	}
}

func orHidden(s string) string {
	if s == "" {
		return "(hidden)"
	}
	return s
}
