package main

import (
	"context"
	"fmt"

	"github.com/plugipay-sync/plugipay-sync/state"
)

// openPostgresStore is openStore for state.driver postgres: it takes the
// schema's writer lock (a second process exits ExitLocked naming the
// holder, as with a SQLite file), opens the store in the schema and binds
// it to the destination.
func (m *Main) openPostgresStore(ctx context.Context) error {
	if err := m.openPostgres(ctx, m.cfg.State, m.command()); err != nil {
		return err
	}
	if err := m.store.BindDestination(ctx, destinationIdentity(m.cfg)); err != nil {
		return withExit(ExitConfig, fmt.Errorf("state.schema %s: %w", m.cfg.State.Schema, err))
	}
	return nil
}

// openPostgres opens the store in st's schema as m.store, first taking its
// writer lock for lockFor unless lockFor is "" (a read-only command).
func (m *Main) openPostgres(ctx context.Context, st StateConfig, lockFor string) error {
	key := "state.schema " + st.Schema
	if lockFor != "" && m.lock == nil {
		l, err := state.AcquirePostgresLock(ctx, st.DSN, st.Schema, m.WaitLock, lockFor)
		if err := m.tookLock(l, err, key); err != nil {
			return err
		}
	}
	db, err := state.OpenPostgres(ctx, st.DSN, st.Schema)
	if err != nil {
		return withExit(ExitFailed, fmt.Errorf("%s: %w", key, err))
	}
	m.store = db
	return nil
}
