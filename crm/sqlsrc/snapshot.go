package sqlsrc

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/plugipay-sync/plugipay-sync/crm"
)

// pageQuery is the query of one page, the first or the next after the
// keyset position. It returns the query, its parameters and its LIMIT.
//
// A full scan pages on the id alone, in the order of the id's index (the
// primary key, as a rule): it needs no order by change time, because the
// read's snapshot holds still (see begin), and in id order PostgreSQL
// reads the heap in about the order it is stored, rows without an
// updated_at come with the others, and the reconciler's state DB lookups
// walk its externalId index in order too.
//
// An incremental read pages on (updated_at, id). Issue 15: PostgreSQL does
// not turn the expanded form "u > $1 OR (u = $1 AND id > $2)" into an
// index condition; it walked the index from the start on every page and a
// 1M-row full scan took 94 s. The row value "(u, id) >= ($1, $2)" is an
// index condition there and in SQLite; MariaDB does the opposite (a full
// table scan and a sort for the row value, a range for the expanded form
// led by "u >= ?"). Every page is bounded below by the watermark minus the
// overlap and above by the database clock when the read started: a row
// dated ahead of the clock is left to a later run, and cannot move the
// watermark past rows not read yet. TestPageQuery_UsesIndex reads each
// engine's plan of both.
//
// A page starts at the last key inclusive (see page), so its LIMIT is the
// page size plus the rows of that key already read.
func (r *read) pageQuery(first bool) (string, []any, int) {
	s := r.s
	a := args{d: s.dialect}
	from := s.from(&a)
	u, id := r.keys[1], r.keys[0]
	var where []string
	order := u + ", " + id
	switch {
	case r.full:
		order = id
		if !first {
			where = append(where, id+" >= "+a.add(r.lastID))
		}
	default:
		where = append(where, u+" >= "+a.add(s.timeParam(r.lower)))
		if r.hz.upper != nil {
			where = append(where, u+" <= "+a.add(r.hz.upper))
		}
		if first {
			break
		}
		if s.rowValue {
			where = append(where, "("+u+", "+id+") >= ("+a.add(r.lastAt)+", "+a.add(r.lastID)+")")
		} else {
			at := r.lastAt
			where = append(where, u+" >= "+a.add(at), "("+u+" > "+a.add(at)+" OR ("+u+" = "+a.add(at)+" AND "+id+" >= "+a.add(r.lastID)+"))")
		}
	}
	if s.opts.Query != "" {
		// A query: may give one key several rows (a JOIN). Ordered by
		// every column read as well, they come in one order on every
		// page, so the rows of the last key a page skips (see page) are
		// the ones the previous page read: on MariaDB the next page
		// returned them in another order, and one of user 7's two rows was
		// read twice and the other never.
		rest := r.cols[2:]
		if r.full {
			rest = r.cols[1:]
		}
		for _, c := range rest {
			order += ", " + c
		}
	}
	limit := s.opts.PageSize + r.run
	q := "SELECT " + strings.Join(r.cols, ", ") + " FROM " + from
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY " + order + " LIMIT " + strconv.Itoa(limit)
	return q, a.list, limit
}

// keyName names the keyset of the read, for refs.
func (r *read) keyName() string {
	if r.full {
		return r.s.opts.IDColumn
	}
	return r.s.opts.UpdatedAtColumn + ", " + r.s.opts.IDColumn
}

// horizon is what a read learns before its snapshot about the writes it
// may not see: the database clock, and the start of the oldest other
// transaction then open. Read before the snapshot, it covers every
// transaction the snapshot leaves out: one that was open is listed, and
// one that started later writes an updated_at after now. The next
// watermark is kept at or below both (see next), so a transaction longer
// than the overlap is read by the first run after it commits (issue 15).
type horizon struct {
	now   time.Time // database clock; zero if unknown
	upper any       // now as an upper bound parameter; nil if unknown
	// oldest is the start of the oldest open transaction (zero: none);
	// known is whether the database let the source list them.
	oldest time.Time
	known  bool
}

// horizon reads the database clock and, on PostgreSQL (pg_stat_activity,
// this database's sessions only, which needs pg_read_all_stats to see
// other roles' sessions) and
// MySQL/MariaDB (information_schema.innodb_trx, which needs the PROCESS
// privilege), the start of the oldest open transaction. Without the
// privilege the source falls back to the overlap (known false).
func (s *Source) horizon(ctx context.Context, db *sql.DB) (horizon, error) {
	var h horizon
	fail := func(err error) (horizon, error) {
		return h, fmt.Errorf("crm: sql: read the database clock: %w", err)
	}
	switch s.opts.Driver {
	case Postgres:
		var oldest sql.NullTime
		err := db.QueryRowContext(ctx, `SELECT clock_timestamp(),
	(SELECT min(xact_start) FROM pg_stat_activity
	 WHERE pid <> pg_backend_pid() AND backend_type = 'client backend' AND xact_start IS NOT NULL
	   AND datname = current_database()),
	pg_has_role('pg_read_all_stats', 'USAGE')`).Scan(&h.now, &oldest, &h.known)
		if err != nil {
			return fail(err)
		}
		h.oldest = oldest.Time
	case MySQL:
		var err error
		if h, err = mysqlHorizon(ctx, db); err != nil {
			return fail(err)
		}
	case SQLite:
		var now string
		if err := db.QueryRowContext(ctx, "SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')").Scan(&now); err != nil {
			return fail(err)
		}
		// No upper bound: SQLite compares text, and a row stored in
		// another form ("2026-12-01T10:00:00Z") would sort after it all
		// day. The snapshot bounds the read and next bounds the
		// watermark.
		h.now, _ = parseTime(now)
		return h, nil
	}
	h.now = h.now.UTC()
	h.oldest = h.oldest.UTC()
	h.upper = h.now
	return h, nil
}

// begin opens the read's snapshot: a REPEATABLE READ, READ ONLY
// transaction on PostgreSQL and MySQL/MariaDB (InnoDB), a read transaction
// on a SQLite database in WAL mode. Every page reads the same snapshot, so
// a row updated during the run is read once, as it was when the read
// began (issue 15: it was read twice and rejected as a duplicate), and a
// row not read yet cannot move behind the keyset and look gone to a full
// scan's deletion detection. The change itself is read by the next run.
// The snapshot is held until the read ends; see README "SQL source" for
// what that costs the database. A SQLite database in rollback-journal mode
// gets no transaction: holding one would block its writers for the run.
func (s *Source) begin(ctx context.Context, db *sql.DB) (querier, func(), error) {
	opts := &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true}
	if s.opts.Driver == SQLite {
		var mode string
		if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
			return nil, nil, fmt.Errorf("crm: sql: %w", err)
		}
		if !strings.EqualFold(mode, "wal") {
			return db, func() {}, nil
		}
		opts = nil
	}
	tx, err := db.BeginTx(ctx, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("crm: sql: begin the read's snapshot: %w", err)
	}
	return tx, func() { _ = tx.Rollback() }, nil
}

// next is the watermark after a read that reached the end: the newest
// updated_at read, but never past the database clock when the read began
// (a row dated in the future would otherwise hide every change until
// then), nor past the start of the oldest transaction then open, whose
// rows may carry an updated_at from its start (PostgreSQL's now()) and
// become visible only when it commits.
func (r *read) next() crm.Watermark {
	maxAt := r.maxAt
	if !r.hz.now.IsZero() && maxAt.After(r.hz.now) {
		maxAt = r.hz.now
	}
	w := r.prev.Next(maxAt, r.full, r.s.opts.Now())
	if r.hz.known && !r.hz.oldest.IsZero() && r.hz.oldest.Before(w.At) {
		w.At = r.hz.oldest
	}
	return w
}

// mysqlHorizon reads the clock and the oldest open InnoDB transaction.
// trx_started is in the server's system time zone, not the session's, so
// the oldest start is measured against the start of a transaction of our
// own, in the same frame, and taken back from UTC_TIMESTAMP; a second is
// subtracted for trx_started's precision. Autocommit SELECTs cannot write
// and are left out.
func mysqlHorizon(ctx context.Context, db *sql.DB) (horizon, error) {
	var h horizon
	conn, err := db.Conn(ctx)
	if err != nil {
		return h, err
	}
	defer conn.Close()
	if err := conn.QueryRowContext(ctx, "SELECT UTC_TIMESTAMP(6)").Scan(&h.now); err != nil {
		return h, err
	}
	if _, err := conn.ExecContext(ctx, "START TRANSACTION WITH CONSISTENT SNAPSHOT"); err != nil {
		return h, err
	}
	defer func() { _, _ = conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK") }()
	var ours, oldest sql.NullTime
	err = conn.QueryRowContext(ctx, `SELECT
	(SELECT MAX(trx_started) FROM information_schema.innodb_trx WHERE trx_mysql_thread_id = CONNECTION_ID()),
	(SELECT MIN(trx_started) FROM information_schema.innodb_trx
	 WHERE trx_mysql_thread_id <> CONNECTION_ID() AND trx_autocommit_non_locking = 0)`).Scan(&ours, &oldest)
	if err != nil || !ours.Valid {
		// No PROCESS privilege: the overlap is all there is.
		return h, nil
	}
	h.known = true
	if oldest.Valid {
		h.oldest = h.now.Add(-ours.Time.Sub(oldest.Time) - time.Second)
	}
	return h, nil
}
