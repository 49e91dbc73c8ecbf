// Command plugipay-sync keeps Plugipay's customers in step with a CRM: on a
// cron schedule (or once, with --once) it streams the CRM's users, compares
// them with a local SQLite cache of what was last synced, and creates or
// updates customers through Plugipay's API.
//
// Exit codes (exitcode.go, and the README's table): 0 every record synced;
// 2 bad data (some records rejected or failed, kept and retried); 3 the
// API or CRM unreachable or failing (run again later); 4 config,
// credentials or destination identity wrong; 5 another process holds the
// state DB's writer lock; 1 anything else, or interrupted.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Build information, set with -ldflags "-X main.Version=... -X main.Commit=...".
var (
	Version = "dev"
	Commit  = "unknown"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it parses args, runs, and maps the
// outcome to an exit code. A first SIGINT/SIGTERM stops gracefully; a
// second one exits at once.
func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signalContext()
	defer stop()

	m := NewMain(stdout, stderr)
	if len(args) > 0 {
		if c, ok := commandTable()[args[0]]; ok {
			defer m.Close()
			code, err := c.Run(ctx, m, args[1:])
			if errors.Is(err, flag.ErrHelp) || errors.Is(err, errHelp) {
				return ExitOK
			}
			if err != nil {
				fmt.Fprintf(stderr, "plugipay-sync %s: %v\n", args[0], explain(err))
			}
			return code
		}
	}
	if err := m.ParseFlags(args); err != nil {
		if errors.Is(err, errHelp) {
			return ExitOK
		}
		fmt.Fprintf(stderr, "plugipay-sync: %v\n", err)
		return ExitFailed
	}
	code, err := m.Run(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "plugipay-sync: %v\n", explain(err))
	}
	return code
}

// signalContext is cancelled by the first SIGINT or SIGTERM; a second
// signal ends the process at once.
func signalContext() (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		sig, ok := <-ch
		if !ok {
			return
		}
		cancel(fmt.Errorf("received %s", sig))
		if _, ok := <-ch; ok {
			os.Exit(ExitFailed)
		}
	}()
	return ctx, func() {
		signal.Stop(ch)
		close(ch)
		cancel(nil)
	}
}
