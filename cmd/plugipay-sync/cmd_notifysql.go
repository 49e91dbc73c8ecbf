package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/plugipay-sync/plugipay-sync/crm/sqlsrc"
)

// runNotifySQL prints (or, with --install, runs) the SQL of the trigger
// that notifies the daemon of every change to crm.sql.table, for
// realtime.postgres (issue 17). It reads the config only; the daemon need
// not be stopped.
func runNotifySQL(ctx context.Context, m *Main, args []string) (int, error) {
	fs := flag.NewFlagSet("notify-sql", flag.ContinueOnError)
	m.commonFlags(fs)
	doInstall := fs.Bool("install", false, "run the SQL against crm.sql.dsn (needs the right to create functions and triggers) instead of printing it")
	if err := parseCommandFlags(fs, args, m.stdout); err != nil {
		return ExitFailed, err
	}
	if err := m.loadConfig(); err != nil {
		return ExitConfig, err
	}
	channel := m.cfg.Realtime.Postgres.Channel
	var (
		q       string
		install func(context.Context) error
	)
	if m.cfg.platform() {
		// Platform mode: the payloads name each row's tenant, whose run
		// the daemon asks for (the trigger is on the table all share).
		pg, err := sharedSource(m.cfg.CRM, sourceEnv{})
		if err != nil {
			return ExitConfig, err
		}
		col := m.cfg.CRM.SQL.TenantColumn
		if q, err = pg.NotifyTenantSQL(channel, col); err != nil {
			return ExitConfig, err
		}
		install = func(ctx context.Context) error { return pg.InstallNotifyTenant(ctx, channel, col) }
	} else {
		src, err := newSourceWith(m.cfg.CRM, sourceEnv{})
		if err != nil {
			return ExitConfig, err
		}
		pg, ok := src.(*sqlsrc.Source)
		if !ok {
			return ExitConfig, errors.New("crm.type: notify-sql needs crm.type: sql with driver postgres")
		}
		if q, err = pg.NotifySQL(channel); err != nil {
			return ExitConfig, err
		}
		install = func(ctx context.Context) error { return pg.InstallNotify(ctx, channel) }
	}
	if !*doInstall {
		fmt.Fprint(m.stdout, q)
		return ExitOK, nil
	}
	if err := install(ctx); err != nil {
		return ExitFailed, err
	}
	fmt.Fprintf(m.stdout, "installed the notify trigger on %s (channel %s)\n", m.cfg.CRM.SQL.Table, channel)
	return ExitOK, nil
}
