package state_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"path/filepath"
	stdsync "sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver, to drop test schemas

	"github.com/plugipay-sync/plugipay-sync/state"
)

// testNow is the fixed clock of MustOpenDB's databases.
var testNow = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

// MustOpenDB opens a new SQLite state database in a temporary directory
// with the clock fixed at testNow, and closes it when the test ends.
func MustOpenDB(tb testing.TB, opts ...state.Option) *state.DB {
	tb.Helper()
	return sqliteBackend.MustOpen(tb, opts...)
}

// MustOpenDBAt is MustOpenDB at a given path.
func MustOpenDBAt(tb testing.TB, path string, opts ...state.Option) *state.DB {
	tb.Helper()
	return sqliteBackend.MustOpenAt(tb, path, opts...)
}

// MustCloseDB closes db and fails the test on error.
func MustCloseDB(tb testing.TB, db *state.DB) {
	tb.Helper()
	if err := db.Close(); err != nil {
		tb.Fatal(err)
	}
}

// backend is where the tests' stores live: a SQLite file or a PostgreSQL
// schema. A location names one store (a path, a schema); opening it twice
// gives two DBs on the same store, as two processes would have.
type backend struct {
	name string
	// NewLocation returns the location of a new, empty store, removed
	// when the test ends.
	NewLocation func(tb testing.TB) string
	open        func(ctx context.Context, loc string, opts ...state.Option) (*state.DB, error)
	// lock takes the writer lock of the store at loc.
	lock func(ctx context.Context, loc string, wait time.Duration, command string) (*state.Lock, error)
}

// backends are the dialects every store test runs against.
var backends = []backend{sqliteBackend, postgresBackend, sharedPostgresBackend}

var sqliteBackend = backend{
	name: "sqlite",
	NewLocation: func(tb testing.TB) string {
		return filepath.Join(tb.TempDir(), "state.db")
	},
	open: state.Open,
	lock: state.AcquireLock,
}

// testPostgresDSN is the test database: the PostgreSQL on this machine
// unless PLUGIPAY_TEST_POSTGRES_DSN names another.
func testPostgresDSN() string {
	if dsn := os.Getenv("PLUGIPAY_TEST_POSTGRES_DSN"); dsn != "" {
		return dsn
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

var postgresBackend = backend{
	name:        "postgres",
	NewLocation: newTestSchema,
	open: func(ctx context.Context, schema string, opts ...state.Option) (*state.DB, error) {
		return state.OpenPostgres(ctx, testPostgresDSN(), schema, opts...)
	},
	lock: func(ctx context.Context, schema string, wait time.Duration, command string) (*state.Lock, error) {
		return state.AcquirePostgresLock(ctx, testPostgresDSN(), schema, wait, command)
	},
}

// sharedPostgresBackend opens every store from one PostgresPool, as
// platform mode does: the stores' connections are the same, and only the
// schema qualification of their queries keeps them apart.
var sharedPostgresBackend = backend{
	name:        "postgres_shared",
	NewLocation: newTestSchema,
	open: func(ctx context.Context, schema string, opts ...state.Option) (*state.DB, error) {
		p, err := sharedTestPool()
		if err != nil {
			return nil, err
		}
		return p.Open(ctx, schema, opts...)
	},
	lock: postgresBackend.lock,
}

var (
	sharedPoolOnce stdsync.Once
	sharedPool     *state.PostgresPool
	sharedPoolErr  error
)

// sharedTestPool is the package's one shared pool, small so that the
// stores of concurrent tests take turns on its connections.
func sharedTestPool() (*state.PostgresPool, error) {
	sharedPoolOnce.Do(func() { sharedPool, sharedPoolErr = state.OpenPostgresPool(testPostgresDSN(), 3, 2) })
	return sharedPool, sharedPoolErr
}

// newTestSchema names a schema no other test (or helper) uses and drops it
// when the test ends. The schema itself is created by the first open.
func newTestSchema(tb testing.TB) string {
	tb.Helper()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	schema := "state_test_" + hex.EncodeToString(b)
	tb.Cleanup(func() {
		db, err := sql.Open("pgx", testPostgresDSN())
		if err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer db.Close()
		if _, err := db.Exec(`DROP SCHEMA IF EXISTS "` + schema + `" CASCADE`); err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return schema
}

// MustOpen opens a new store with the clock fixed at testNow, closed when
// the test ends.
func (b backend) MustOpen(tb testing.TB, opts ...state.Option) *state.DB {
	tb.Helper()
	return b.MustOpenAt(tb, b.NewLocation(tb), opts...)
}

// MustOpenAt is MustOpen on the store at loc.
func (b backend) MustOpenAt(tb testing.TB, loc string, opts ...state.Option) *state.DB {
	tb.Helper()
	opts = append([]state.Option{state.WithClock(func() time.Time { return testNow })}, opts...)
	db, err := b.open(context.Background(), loc, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = db.Close() })
	return db
}

// forEachBackend runs test once per backend, as a subtest named after it.
func forEachBackend(t *testing.T, test func(t *testing.T, b backend)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { test(t, b) })
	}
}
