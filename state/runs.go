package state

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/plugipay-sync/plugipay-sync/sync"
)

// abortedMessage is the error recorded on runs MarkStaleRuns closes.
const abortedMessage = "the process stopped before the run finished"

// StartRun records the start of a run and returns its id. In the same
// transaction it marks the unfinished runs of earlier processes as aborted
// (see MarkStaleRuns).
func (db *DB) StartRun(ctx context.Context, startedAt time.Time) (int64, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	var id int64
	err := db.update(ctx, func(tx *Tx) error {
		if _, err := tx.markStaleRuns(ctx); err != nil {
			return err
		}
		if startedAt.IsZero() {
			startedAt = tx.now
		}
		return tx.QueryRowContext(ctx, `INSERT INTO runs (started_at) VALUES (?) RETURNING id`, encodeTime(startedAt)).Scan(&id)
	})
	if err != nil {
		return 0, fmt.Errorf("state: start run: %w", err)
	}
	db.active[id] = true
	return id, nil
}

// FinishRun records the end of run r.ID: its outcome, error and counts. A
// zero FinishedAt is set to now.
func (db *DB) FinishRun(ctx context.Context, r sync.RunRecord) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	err := db.update(ctx, func(tx *Tx) error {
		finished := r.FinishedAt
		if finished.IsZero() {
			finished = tx.now
		}
		c := r.Counts
		res, err := tx.ExecContext(ctx, `UPDATE runs SET finished_at = ?, outcome = ?, error = ?,
	read = ?, created = ?, updated = ?, unchanged = ?, recovered = ?, rejected = ?, failed = ?,
	archived = ?, skipped = ?
WHERE id = ?`,
			encodeTime(finished), r.Outcome, r.Error,
			c.Read, c.Created, c.Updated, c.Unchanged, c.Recovered, c.Rejected, c.Failed,
			c.Archived, c.Skipped, r.ID)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("no run with id %d", r.ID)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("state: finish run %d: %w", r.ID, err)
	}
	delete(db.active, r.ID)
	return nil
}

// MarkStaleRuns gives the outcome "aborted" to every unfinished run not
// started through this DB: its process died (or was killed) mid-run. It
// returns how many runs it marked. StartRun calls it, so a crash shows up
// in the history at the next run. It assumes one process runs syncs
// against a state file at a time.
func (db *DB) MarkStaleRuns(ctx context.Context) (int64, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	var n int64
	err := db.update(ctx, func(tx *Tx) error {
		var err error
		n, err = tx.markStaleRuns(ctx)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("state: mark stale runs: %w", err)
	}
	return n, nil
}

// markStaleRuns needs db.mu held, for db.active.
func (tx *Tx) markStaleRuns(ctx context.Context) (int64, error) {
	q := `UPDATE runs SET outcome = ?, error = ? WHERE finished_at IS NULL AND outcome = ''`
	args := []any{OutcomeAborted, abortedMessage}
	if len(tx.db.active) > 0 {
		q += ` AND id NOT IN (` + strings.TrimSuffix(strings.Repeat("?,", len(tx.db.active)), ",") + `)`
		for id := range tx.db.active {
			args = append(args, id)
		}
	}
	res, err := tx.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// RecentRuns returns the last n runs, newest first.
func (db *DB) RecentRuns(ctx context.Context, n int) ([]sync.RunRecord, error) {
	rows, err := db.db.QueryContext(ctx, `SELECT id, started_at, finished_at, outcome, error,
	read, created, updated, unchanged, recovered, rejected, failed, archived, skipped
FROM runs ORDER BY id DESC LIMIT ?`, n)
	if err != nil {
		return nil, fmt.Errorf("state: recent runs: %w", err)
	}
	defer rows.Close()
	var out []sync.RunRecord
	for rows.Next() {
		var r sync.RunRecord
		var started int64
		var finished sql.NullInt64
		c := &r.Counts
		if err := rows.Scan(&r.ID, &started, &finished, &r.Outcome, &r.Error,
			&c.Read, &c.Created, &c.Updated, &c.Unchanged, &c.Recovered, &c.Rejected, &c.Failed,
			&c.Archived, &c.Skipped); err != nil {
			return nil, fmt.Errorf("state: recent runs: %w", err)
		}
		r.StartedAt = decodeTime(started)
		if finished.Valid {
			r.FinishedAt = decodeTime(finished.Int64)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("state: recent runs: %w", err)
	}
	return out, nil
}

// RunFreshness is what the run history says about how current the sync
// is, for the health checks and the freshness gauges after a restart.
type RunFreshness struct {
	// LastFinished and LastSuccess are when the last run, and the last
	// run with outcome success or partial, finished; zero if none.
	LastFinished, LastSuccess time.Time
	// FailedStreak is how many runs in a row have failed since the last
	// success (aborted and canceled runs are not counted).
	FailedStreak int64
}

// Freshness reads RunFreshness from the run history.
func (db *DB) Freshness(ctx context.Context) (RunFreshness, error) {
	var f RunFreshness
	var last, success sql.NullInt64
	err := db.db.QueryRowContext(ctx, `SELECT
	(SELECT max(finished_at) FROM runs WHERE finished_at IS NOT NULL),
	(SELECT max(finished_at) FROM runs WHERE outcome IN (?, ?)),
	(SELECT count(*) FROM runs WHERE outcome = ?
		AND id > coalesce((SELECT max(id) FROM runs WHERE outcome IN (?, ?)), 0))`,
		sync.OutcomeSuccess, sync.OutcomePartial, sync.OutcomeFailed, sync.OutcomeSuccess, sync.OutcomePartial,
	).Scan(&last, &success, &f.FailedStreak)
	if err != nil {
		return f, fmt.Errorf("state: run freshness: %w", err)
	}
	f.LastFinished, f.LastSuccess = decodeTime(last.Int64), decodeTime(success.Int64)
	return f, nil
}
