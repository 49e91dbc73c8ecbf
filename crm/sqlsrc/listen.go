package sqlsrc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Defaults of ListenOptions.
const (
	DefaultChannel         = "plugipay_sync"
	DefaultListenWindow    = 5 * time.Millisecond
	DefaultListenHeartbeat = 15 * time.Second
	DefaultListenRetryMax  = 30 * time.Second
	// ListenerApplicationName is the listener connection's
	// application_name, unless the DSN sets one.
	ListenerApplicationName = "plugipay-sync-listener"
)

// ListenOptions configure Source.Listen.
type ListenOptions struct {
	// Channel is the NOTIFY channel the trigger of NotifySQL notifies.
	Channel string
	// Notify receives the external ids of changed users: those of a burst
	// of notifications together, and after every (re)connect those the
	// catch-up read found. It is called from Listen's goroutine.
	Notify func(ids []string)
	// Window is how long the first id of a burst waits for more.
	Window time.Duration
	// Heartbeat is how often an idle connection is checked (and the
	// database clock read, the point a catch-up starts from).
	Heartbeat time.Duration
	// OnConnect and OnDisconnect, if set, report the connection's state
	// (logs, metrics).
	OnConnect    func()
	OnDisconnect func(err error)
	// CatchUp, if set, replaces the catch-up read after every (re)connect:
	// a listener whose notifications are not user ids (platform mode's
	// tenant payloads) catches up its own way. It runs once LISTEN is in
	// place, so nothing committed after it starts is missed.
	CatchUp func(ctx context.Context) error
}

// Listen holds a dedicated connection that LISTENs on o.Channel and hands
// the ids the trigger notifies to o.Notify, until ctx is done (issue 17).
//
// NOTIFY is delivered only to connections listening when the change
// commits, so Listen never relies on it alone: after every (re)connect,
// once LISTEN is in place, it reads the ids of the rows whose updated_at
// is at or after the last moment the old connection was known to be
// alive (its last heartbeat's database clock; on the first connect, the
// connect itself) minus the source's overlap, and hands them over too.
// What changed while no connection listened is synced then; a row deleted
// meanwhile, which leaves no updated_at to find, is archived by the next
// full scan. It reconnects with a backoff up to 30 s; only ctx ends it.
func (s *Source) Listen(ctx context.Context, o ListenOptions) error {
	if s.opts.Driver != Postgres {
		return fmt.Errorf("crm.sql: LISTEN/NOTIFY needs PostgreSQL, not %s; use a short schedule with incremental: true", s.opts.Driver)
	}
	if o.Channel == "" {
		o.Channel = DefaultChannel
	}
	if o.Window <= 0 {
		o.Window = DefaultListenWindow
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = DefaultListenHeartbeat
	}
	if o.OnConnect == nil {
		o.OnConnect = func() {}
	}
	if o.OnDisconnect == nil {
		o.OnDisconnect = func(error) {}
	}
	var alive time.Time // database clock when a connection was last known alive
	wait := time.Duration(0)
	for ctx.Err() == nil {
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
		}
		err := s.listenOnce(ctx, o, &alive)
		if ctx.Err() != nil {
			return nil
		}
		o.OnDisconnect(err)
		wait = min(max(2*wait, 250*time.Millisecond), DefaultListenRetryMax)
		if errors.Is(err, errConnected) {
			wait = 250 * time.Millisecond // it worked until now: retry soon
		}
	}
	return nil
}

// errConnected wraps the error that ended a connection that had been
// listening.
var errConnected = errors.New("listener connection lost")

// listenOnce connects, listens, catches up and forwards notifications
// until the connection fails or ctx is done.
func (s *Source) listenOnce(ctx context.Context, o ListenOptions, alive *time.Time) error {
	cfg, err := pgx.ParseConfig(s.opts.DSN)
	if err != nil {
		return fmt.Errorf("crm: sql: listener: %w", err)
	}
	if cfg.RuntimeParams["application_name"] == "" {
		// Named in pg_stat_activity, for operators (and tests) to find.
		cfg.RuntimeParams["application_name"] = ListenerApplicationName
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("crm: sql: listener connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{o.Channel}.Sanitize()); err != nil {
		return fmt.Errorf("crm: sql: LISTEN %s: %w", o.Channel, err)
	}
	var now time.Time
	if err := conn.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&now); err != nil {
		return fmt.Errorf("crm: sql: listener: read the clock: %w", err)
	}
	since := *alive
	if since.IsZero() {
		since = now
	}
	if o.CatchUp != nil {
		if err := o.CatchUp(ctx); err != nil {
			return fmt.Errorf("crm: sql: listener catch-up: %w", err)
		}
	} else if err := s.catchUp(ctx, conn, since.Add(-s.opts.Overlap), o.Notify); err != nil {
		return err
	}
	*alive = now
	o.OnConnect()

	var (
		buf     []string
		flushAt time.Time
	)
	flush := func() {
		if len(buf) > 0 {
			o.Notify(buf)
			buf = nil
		}
	}
	defer flush()
	for {
		deadline := time.Now().Add(o.Heartbeat)
		if len(buf) > 0 {
			deadline = flushAt
		}
		wctx, cancel := context.WithDeadline(ctx, deadline)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			if len(buf) == 0 {
				flushAt = time.Now().Add(o.Window)
			}
			if id := strings.TrimSpace(n.Payload); id != "" {
				buf = append(buf, id)
			}
			continue
		case ctx.Err() != nil:
			return nil
		case wctx.Err() == nil || conn.IsClosed():
			return fmt.Errorf("%w: %w", errConnected, err)
		}
		if len(buf) > 0 {
			flush()
			continue
		}
		// Idle: check the connection and move the catch-up point.
		if err := conn.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&now); err != nil {
			return fmt.Errorf("%w: heartbeat: %w", errConnected, err)
		}
		*alive = now
	}
}

// catchUp hands over the ids of the rows changed at or after since.
func (s *Source) catchUp(ctx context.Context, conn *pgx.Conn, since time.Time, notify func([]string)) error {
	ext := s.quote(s.mapper.Fields()[0])
	a := args{d: s.dialect}
	q := "SELECT " + ext + "::text FROM " + s.from(&a)
	q += " WHERE " + s.quote(s.opts.UpdatedAtColumn) + " >= " + a.add(s.timeParam(since))
	rows, err := conn.Query(ctx, q, a.list...)
	if err != nil {
		return fmt.Errorf("crm: sql: listener catch-up: %w", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id *string
		if err := rows.Scan(&id); err != nil {
			return fmt.Errorf("crm: sql: listener catch-up: %w", err)
		}
		if id != nil && strings.TrimSpace(*id) != "" {
			ids = append(ids, strings.TrimSpace(*id))
		}
		if len(ids) == 1000 {
			notify(ids)
			ids = nil
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("crm: sql: listener catch-up: %w", err)
	}
	if len(ids) > 0 {
		notify(ids)
	}
	return nil
}

// NotifySQL returns the SQL that installs the trigger Listen hears: a
// function notifying channel with the row's external id column (the old
// and the new one when an update changes it) on every insert, update and
// delete, and the trigger on the source's table. It needs crm.sql.table
// (a query: install it on the tables behind it by hand).
func (s *Source) NotifySQL(channel string) (string, error) {
	return s.notifySQL(channel, "")
}

// NotifyTenantSQL is NotifySQL for a table shared by tenants (platform
// mode, issue 19): each notification's payload is the JSON object
// {"t": <tenantColumn>, "id": <external id>}, so that the listener knows
// whose run to ask for; a row moved to another tenant notifies both.
func (s *Source) NotifyTenantSQL(channel, tenantColumn string) (string, error) {
	if !columnRE.MatchString(tenantColumn) {
		return "", fmt.Errorf("crm.sql.tenant_column: %q is not a plain column name (letters, digits and _)", tenantColumn)
	}
	return s.notifySQL(channel, tenantColumn)
}

// TenantNotification is the payload of NotifyTenantSQL's notifications.
type TenantNotification struct {
	Tenant     string `json:"t"`
	ExternalID string `json:"id"`
}

// notifySQL is NotifySQL, with tenant payloads when tenantColumn is set.
func (s *Source) notifySQL(channel, tenantColumn string) (string, error) {
	if s.opts.Driver != Postgres {
		return "", fmt.Errorf("crm.sql.driver: LISTEN/NOTIFY needs postgres, not %s", s.opts.Driver)
	}
	if s.opts.Table == "" {
		return "", errors.New("crm.sql.table: the trigger is installed on a table; with crm.sql.query install it on the tables behind the query by hand")
	}
	if channel == "" {
		channel = DefaultChannel
	}
	col := s.mapper.Fields()[0]
	lit := func(v string) string { return "'" + strings.ReplaceAll(v, "'", "''") + "'" }
	table := s.quoteTable(s.opts.Table)
	trigger := s.quote("plugipay_sync_notify_" + strings.ReplaceAll(s.opts.Table, ".", "_"))
	if tenantColumn != "" {
		return `-- plugipay-sync: notify the platform daemon of every change to ` + s.opts.Table + ` (issue 19).
-- pg_notify(channel, {"t": tenant, "id": external id}) after each insert,
-- update and delete; the notification is delivered when the transaction
-- commits. Safe to run again.
CREATE OR REPLACE FUNCTION plugipay_sync_notify_tenant() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  channel text := TG_ARGV[0];
  col text := TG_ARGV[1];
  tcol text := TG_ARGV[2];
  new_id text;
  old_id text;
  new_t text;
  old_t text;
BEGIN
  IF TG_OP <> 'DELETE' THEN
    new_id := to_jsonb(NEW) ->> col;
    new_t := to_jsonb(NEW) ->> tcol;
  END IF;
  IF TG_OP <> 'INSERT' THEN
    old_id := to_jsonb(OLD) ->> col;
    old_t := to_jsonb(OLD) ->> tcol;
  END IF;
  IF new_id IS NOT NULL AND new_t IS NOT NULL THEN
    PERFORM pg_notify(channel, json_build_object('t', new_t, 'id', new_id)::text);
  END IF;
  IF old_id IS NOT NULL AND old_t IS NOT NULL AND (old_id IS DISTINCT FROM new_id OR old_t IS DISTINCT FROM new_t) THEN
    PERFORM pg_notify(channel, json_build_object('t', old_t, 'id', old_id)::text);
  END IF;
  RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS ` + trigger + ` ON ` + table + `;
CREATE TRIGGER ` + trigger + `
  AFTER INSERT OR UPDATE OR DELETE ON ` + table + `
  FOR EACH ROW EXECUTE FUNCTION plugipay_sync_notify_tenant(` + lit(channel) + `, ` + lit(col) + `, ` + lit(tenantColumn) + `);
`, nil
	}
	return `-- plugipay-sync: notify the daemon of every change to ` + s.opts.Table + ` (issue 17).
-- pg_notify(channel, external id) after each insert, update and delete; the
-- notification is delivered when the transaction commits. Safe to run again.
CREATE OR REPLACE FUNCTION plugipay_sync_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  channel text := TG_ARGV[0];
  col text := TG_ARGV[1];
  new_id text;
  old_id text;
BEGIN
  IF TG_OP <> 'DELETE' THEN
    new_id := to_jsonb(NEW) ->> col;
  END IF;
  IF TG_OP <> 'INSERT' THEN
    old_id := to_jsonb(OLD) ->> col;
  END IF;
  IF new_id IS NOT NULL THEN
    PERFORM pg_notify(channel, new_id);
  END IF;
  IF old_id IS NOT NULL AND old_id IS DISTINCT FROM new_id THEN
    PERFORM pg_notify(channel, old_id);
  END IF;
  RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS ` + trigger + ` ON ` + table + `;
CREATE TRIGGER ` + trigger + `
  AFTER INSERT OR UPDATE OR DELETE ON ` + table + `
  FOR EACH ROW EXECUTE FUNCTION plugipay_sync_notify(` + lit(channel) + `, ` + lit(col) + `);
`, nil
}

// InstallNotify runs NotifySQL(channel) in one transaction.
func (s *Source) InstallNotify(ctx context.Context, channel string) error {
	q, err := s.NotifySQL(channel)
	if err != nil {
		return err
	}
	return s.install(ctx, q)
}

// InstallNotifyTenant runs NotifyTenantSQL(channel, tenantColumn) in one
// transaction.
func (s *Source) InstallNotifyTenant(ctx context.Context, channel, tenantColumn string) error {
	q, err := s.NotifyTenantSQL(channel, tenantColumn)
	if err != nil {
		return err
	}
	return s.install(ctx, q)
}

// install runs the notify trigger's SQL q in one transaction.
func (s *Source) install(ctx context.Context, q string) error {
	conn, err := pgx.Connect(ctx, s.opts.DSN)
	if err != nil {
		return fmt.Errorf("crm: sql: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("crm: sql: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, q); err != nil {
		return fmt.Errorf("crm: sql: install the notify trigger: %w", err)
	}
	return tx.Commit(ctx)
}
