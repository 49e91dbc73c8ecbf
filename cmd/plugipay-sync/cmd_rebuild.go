package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
)

// runRebuildCache is `plugipay-sync rebuild-cache`: it walks the
// destination's whole customer list and stores a mapping for every
// customer that carries an external id, hashed over the listed fields, so
// the next run writes only what differs. A run does the same by itself
// when the state DB holds no mapping; this command does it on demand, for
// example after customers were edited or imported behind the sync's back.
//
// With --match-email (for a destination that keeps no external id, such
// as a Pin-style API) it links users to customers by email instead: only
// where exactly one unlinked user and one unlinked customer share an
// email. It prints the ambiguous emails' user and customer ids and links
// none of them; --dry-run reports without storing anything. It exits 2
// when something was ambiguous, so a script notices.
func runRebuildCache(ctx context.Context, m *Main, args []string) (int, error) {
	fs := flag.NewFlagSet("rebuild-cache", flag.ContinueOnError)
	m.commonFlags(fs)
	matchEmail := fs.Bool("match-email", false, "link users to customers by email (destinations without an external id); ambiguous matches are listed and none of them linked")
	dryRun := fs.Bool("dry-run", false, "with --match-email: report what would be linked and store nothing")
	rebind := fs.Bool("rebind", false, "bind the state DB to the destination the config names now (after a refusal naming two identities),\n"+
		"forgetting the mappings whose customers its customer list does not have; the next run re-creates those users once")
	m.lockFlag(fs)
	if err := parseCommandFlags(fs, args); err != nil {
		return ExitFailed, err
	}
	if *dryRun && !*matchEmail {
		return ExitFailed, fmt.Errorf("--dry-run goes with --match-email")
	}
	if *rebind && *matchEmail {
		return ExitFailed, fmt.Errorf("--rebind and --match-email are separate steps: rebind first, then link by email")
	}
	m.Command = "plugipay-sync rebuild-cache"
	if err := m.open(ctx); err != nil {
		return exitCode(err), err
	}
	if *matchEmail {
		return m.linkByEmail(ctx, !*dryRun)
	}
	if *rebind {
		n, dropped, err := m.rec.Rebind(ctx)
		fmt.Fprintf(m.stdout, "listed %d  mapped %d  forgotten %d (their customers are not in this account; the next run re-creates those users)\n",
			n.Listed, n.Mapped, dropped)
		if err != nil {
			return exitCode(err), err
		}
		return ExitOK, nil
	}
	n, err := m.rec.RebuildCache(ctx)
	fmt.Fprintf(m.stdout, "listed %d  mapped %d  without externalId %d  duplicates %d\n", n.Listed, n.Mapped, n.WithoutExternalID, n.Duplicates)
	if err != nil {
		return exitCode(err), err
	}
	return ExitOK, nil
}

func (m *Main) linkByEmail(ctx context.Context, apply bool) (int, error) {
	if err := m.rec.VerifyDestination(ctx); err != nil {
		return exitCode(err), err
	}
	rep, err := m.rec.LinkByEmail(ctx, apply)
	if err != nil {
		return exitCode(err), err
	}
	verb := "linked"
	if !apply {
		verb = "would link"
	}
	fmt.Fprintf(m.stdout, "listed %d customers  %s %d  already linked %d  no customer with the email %d  without email %d  ambiguous %d\n",
		rep.Listed, verb, rep.Linked, rep.AlreadyLinked, rep.Unmatched, rep.WithoutEmail, len(rep.Ambiguous))
	for _, a := range rep.Ambiguous {
		fmt.Fprintf(m.stdout, "ambiguous, not linked: users %s  customers %s\n",
			strings.Join(a.ExternalIDs, ","), strings.Join(a.CustomerIDs, ","))
	}
	if len(rep.Ambiguous) > 0 {
		fmt.Fprintln(m.stdout, "fix the emails in the CRM or the destination so each is one user's and one customer's, then run this again")
		return ExitPartial, nil
	}
	return ExitOK, nil
}
