package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
)

// command is a subcommand, run as `plugipay-sync NAME [flags]`. Without a
// command the program is the daemon (or one run with --once).
type command struct {
	// Summary is the one line shown by `plugipay-sync help`.
	Summary string
	// Run parses its own flags (see Main.commonFlags) and runs, returning
	// the exit code.
	Run func(ctx context.Context, m *Main, args []string) (int, error)
}

// commandTable lists the subcommands. It is a function, not a package
// variable, so commands may refer to the table (help does).
func commandTable() map[string]command {
	return map[string]command{
		"help":          {Summary: "list the commands", Run: runHelp},
		"check-config":  {Summary: "validate a config file and exit (0 valid, 1 not)", Run: runCheckConfig},
		"status":        {Summary: "show the last runs, the failure queue and the cache size (state DB only)", Run: runStatus},
		"failures":      {Summary: "list the records kept as failed", Run: runFailures},
		"retry":         {Summary: "make failed records eligible again now (--external-id, --code, --all)", Run: runRetry},
		"sync":          {Summary: "sync --external-id ID: reconcile one user now and print what was done", Run: runSyncOne},
		"notify-sql":    {Summary: "print (or --install) the PostgreSQL trigger that notifies the daemon of each change (realtime.postgres)", Run: runNotifySQL},
		"history":       {Summary: "history --external-id ID: what the sync wrote to one user's customer, when and why (the audit ledger)", Run: runHistory},
		"audit":         {Summary: "audit export --since T: the audit ledger as JSON Lines; audit prune: apply audit.retention", Run: runAudit},
		"verify":        {Summary: "compare Plugipay with what the sync last confirmed: drift per field, missing customers, orphans (--repair puts drift back)", Run: runVerify},
		"rebuild-cache": {Summary: "rebuild the state DB's mappings from the destination's customer list (--match-email: link by email where it keeps no external id)", Run: runRebuildCache},
	}
}

// commonFlags registers the flags every command shares on fs.
func (m *Main) commonFlags(fs *flag.FlagSet) {
	fs.SetOutput(m.stderr)
	fs.StringVar(&m.ConfigPath, "config", "plugipay-sync.yaml", "path of the YAML config file")
	fs.BoolVar(&m.NoExpandEnv, "no-expand-env", false, "do not expand ${VAR} references in the config file")
	fs.StringVar(&m.LogLevel, "log-level", "", "override log.level (debug, info, warn, error)")
	fs.StringVar(&m.LogFormat, "log-format", "", "override log.format (json, console)")
	fs.BoolVar(&m.LogPII, "log-pii", false, "log emails and phone numbers unmasked (debugging only; they are masked by default)")
}

// parseCommandFlags parses a command's flags, refusing stray arguments.
// Asked for help, it prints the usage on stdout (so `--help | less`
// works); a usage error goes to stderr.
func parseCommandFlags(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	helpToStdout(fs, args, stdout)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q; see %s --help", fs.Arg(0), fs.Name())
	}
	return nil
}

func runHelp(_ context.Context, m *Main, _ []string) (int, error) {
	printCommands(m.stdout)
	return ExitOK, nil
}

func printCommands(w io.Writer) {
	fmt.Fprintf(w, "Usage:\n  plugipay-sync [--config FILE] [--once]   run the daemon, or one sync\n  plugipay-sync COMMAND [flags]            see COMMAND --help\n\nCommands:\n")
	table := commandTable()
	for _, name := range slices.Sorted(maps.Keys(table)) {
		fmt.Fprintf(w, "  %-14s %s\n", name, table[name].Summary)
	}
}

// helpToStdout sends fs's output to stdout when args ask for help.
func helpToStdout(fs *flag.FlagSet, args []string, stdout io.Writer) {
	for _, a := range args {
		if a == "--" {
			return
		}
		switch a {
		case "-h", "-help", "--help", "--h":
			fs.SetOutput(stdout)
			return
		}
	}
}
