package fleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"go.uber.org/zap/zaptest"
)

// envDSN names the test PostgreSQL, as in the project's other PostgreSQL
// tests; without it the machine's server is tried as postgres, then root.
const envDSN = "PLUGIPAY_SYNC_TEST_POSTGRES_DSN"

var dsnOnce = sync.OnceValues(func() (string, error) {
	dsns := []string{os.Getenv(envDSN)}
	if dsns[0] == "" {
		dsns = []string{"postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "postgres://root@127.0.0.1:5432/test?sslmode=disable"}
	}
	var errs []error
	for _, dsn := range dsns {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		conn, err := pgx.Connect(ctx, dsn)
		if err == nil {
			err = conn.Close(ctx)
		}
		cancel()
		if err == nil {
			return dsn, nil
		}
		errs = append(errs, err)
	}
	return "", errors.Join(errs...)
})

// testDSN is the DSN of the machine's PostgreSQL. Without a server the test
// skips, or fails under PLUGIPAY_SYNC_REQUIRE_DB=1 (as in CI): these tests
// are about PostgreSQL and prove nothing without it.
func testDSN(t *testing.T) string {
	t.Helper()
	dsn, err := dsnOnce()
	if err == nil {
		return dsn
	}
	if os.Getenv("PLUGIPAY_SYNC_REQUIRE_DB") == "1" {
		t.Fatalf("PostgreSQL is not reachable: %v", err)
	}
	t.Skipf("PostgreSQL is not reachable on 127.0.0.1:5432 (%v); start it or set PLUGIPAY_SYNC_REQUIRE_DB=1 to make this a failure", err)
	return ""
}

// testSchema makes a fresh schema name, so tests (and other people's tests
// on the same server) never share River's tables, and drops it at the end.
func testSchema(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	schema := "fleet_test_" + hex.EncodeToString(b)
	t.Cleanup(func() {
		if _, err := pool.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return schema
}

// testPool connects to the test database (see testDSN).
func testPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), testDSN(t))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// errBusy is the recorder's "tenant lock held elsewhere".
var errBusy = errors.New("tenant lock held by another session")

func isBusy(err error) bool { return errors.Is(err, errBusy) }

// recorder is the tests' tenant run: like the real state store, it holds
// a per-tenant session advisory lock for the run's duration (a second
// holder gets errBusy, a killed process's lock is released by PostgreSQL),
// and it records (tenant, replica, cause, start, end) in schema.runs.
type recorder struct {
	pool    *pgxpool.Pool
	schema  string
	replica string
	// hold, when set, is the run's body between its recorded start and end.
	hold func(ctx context.Context, tenant string) error
}

func createRunsTable(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	s := pgx.Identifier{schema}.Sanitize()
	_, err := pool.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+s+
		"; CREATE TABLE IF NOT EXISTS "+s+".runs (id bigserial PRIMARY KEY, tenant text NOT NULL, replica text NOT NULL, cause text NOT NULL, started timestamptz NOT NULL, ended timestamptz)")
	return err
}

func (r *recorder) Run(ctx context.Context, tenant, cause string) (err error) {
	conn, err := r.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	key := r.schema + ":" + tenant
	var got bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock(hashtext($1))", key).Scan(&got); err != nil {
		return err
	}
	if !got {
		return fmt.Errorf("tenant %s: %w", tenant, errBusy)
	}
	defer func() {
		if _, uerr := conn.Exec(context.Background(), "SELECT pg_advisory_unlock(hashtext($1))", key); uerr != nil && err == nil {
			err = uerr
		}
	}()
	s := pgx.Identifier{r.schema}.Sanitize()
	var id int64
	if err := conn.QueryRow(ctx, "INSERT INTO "+s+".runs (tenant, replica, cause, started) VALUES ($1, $2, $3, clock_timestamp()) RETURNING id",
		tenant, r.replica, cause).Scan(&id); err != nil {
		return err
	}
	if r.hold != nil {
		if err := r.hold(ctx, tenant); err != nil {
			return err
		}
	}
	_, err = conn.Exec(ctx, "UPDATE "+s+".runs SET ended = clock_timestamp() WHERE id = $1", id)
	return err
}

// sleepRun is a hold that sleeps d, or until ctx ends.
func sleepRun(d time.Duration) func(ctx context.Context, tenant string) error {
	return func(ctx context.Context, _ string) error {
		select {
		case <-time.After(d):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// run is one row of schema.runs.
type run struct {
	Tenant, Replica, Cause string
	Started                time.Time
	Ended                  *time.Time
}

func loadRuns(ctx context.Context, pool *pgxpool.Pool, schema string) ([]run, error) {
	rows, err := pool.Query(ctx, "SELECT tenant, replica, cause, started, ended FROM "+pgx.Identifier{schema}.Sanitize()+".runs ORDER BY tenant, started")
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[run])
}

// overlaps returns, for each tenant, the pairs of its runs that overlap in
// time. Runs are sorted by (tenant, started); a run that never ended (its
// replica was killed) is taken to end at openEnd, when its session died.
func overlaps(runs []run, openEnd time.Time) []string {
	var out []string
	for i := 1; i < len(runs); i++ {
		prev, cur := runs[i-1], runs[i]
		if prev.Tenant != cur.Tenant {
			continue
		}
		end := openEnd
		if prev.Ended != nil {
			end = *prev.Ended
		}
		if cur.Started.Before(end) {
			out = append(out, fmt.Sprintf("tenant %s: %s [%s, %s] and %s from %s",
				cur.Tenant, prev.Replica, prev.Started.Format(time.StampMicro), end.Format(time.StampMicro),
				cur.Replica, cur.Started.Format(time.StampMicro)))
		}
	}
	return out
}

// testOptions are options for an in-process Fleet on schema: a schedule
// that lists no tenant (runs come from Enqueue) and short waits.
func testOptions(t *testing.T, schema string, run func(ctx context.Context, tenant, cause string) error) Options {
	return Options{
		DSN:         testDSN(t),
		Schema:      schema,
		Tenants:     func(context.Context) ([]string, error) { return nil, nil },
		Run:         run,
		Busy:        isBusy,
		Every:       time.Hour,
		Workers:     4,
		RunTimeout:  10 * time.Second,
		RescueAfter: time.Hour,
		BusyRetry:   100 * time.Millisecond,
		StopTimeout: 200 * time.Millisecond,
		Log:         zaptest.NewLogger(t),
		Registerer:  prometheus.NewRegistry(),
	}
}

// startFleet builds and starts a Fleet, stopped at the test's end.
func startFleet(t *testing.T, o Options) *Fleet {
	t.Helper()
	ctx := context.Background()
	f, err := New(ctx, o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := f.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := f.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return f
}

// waitFor polls cond until it holds or within elapses; the deadline is a
// guard against a hang, not the assertion.
func waitFor(t *testing.T, within time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tenantJobStates lists the states of the tenant's run jobs in River's table.
func tenantJobStates(ctx context.Context, f *Fleet, tenant string) ([]rivertype.JobState, error) {
	res, err := f.client.JobList(ctx, river.NewJobListParams().Kinds(kindRun).First(1000).States(rivertype.JobStates()...))
	if err != nil {
		return nil, err
	}
	var states []rivertype.JobState
	for _, j := range res.Jobs {
		var a runArgs
		if err := json.Unmarshal(j.EncodedArgs, &a); err != nil {
			return nil, err
		}
		if a.Tenant == tenant {
			states = append(states, j.State)
		}
	}
	return states, nil
}

// settled reports that every job in states has ended (completed, discarded
// or cancelled): nothing more will run for the tenant.
func settled(states []rivertype.JobState) bool {
	for _, s := range states {
		switch s {
		case rivertype.JobStateCompleted, rivertype.JobStateDiscarded, rivertype.JobStateCancelled:
		default:
			return false
		}
	}
	return len(states) > 0
}
