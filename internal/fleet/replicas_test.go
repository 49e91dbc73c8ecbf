package fleet

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"
)

// Replica processes: the test binary re-executed with these variables set
// runs replicaMain instead of the tests.
const (
	envReplica = "FLEET_TEST_REPLICA" // the replica's id
	envSchema  = "FLEET_TEST_SCHEMA"
	envTenants = "FLEET_TEST_TENANTS" // how many tenants, tenant-000...
	envRunFor  = "FLEET_TEST_RUN_FOR" // each run's duration
)

// The replicas' timings: short, so a kill is taken over within the test.
const (
	replicaEvery       = 2 * time.Second
	replicaRunTimeout  = 2 * time.Second
	replicaRescueAfter = 3 * time.Second
	replicaWorkers     = 4
)

func TestMain(m *testing.M) {
	if id := os.Getenv(envReplica); id != "" {
		os.Exit(replicaMain(id))
	}
	os.Exit(m.Run())
}

// replicaMain is one replica process: a Fleet whose runs are recorded,
// stopped gracefully on SIGTERM. It prints "started" once it works.
func replicaMain(id string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	log, _ := zap.NewDevelopment()
	defer func() { _ = log.Sync() }()
	fail := func(err error) int {
		log.Error("replica failed", zap.Error(err))
		return 1
	}
	schema := os.Getenv(envSchema)
	n, err := strconv.Atoi(os.Getenv(envTenants))
	if err != nil {
		return fail(err)
	}
	runFor, err := time.ParseDuration(os.Getenv(envRunFor))
	if err != nil {
		return fail(err)
	}
	pool, err := pgxpool.New(ctx, os.Getenv(envDSN))
	if err != nil {
		return fail(err)
	}
	defer pool.Close()
	rec := &recorder{pool: pool, schema: schema, replica: id, hold: sleepRun(runFor)}
	tenants := make([]string, n)
	for i := range tenants {
		tenants[i] = fmt.Sprintf("tenant-%03d", i)
	}
	f, err := New(ctx, Options{
		DSN:         os.Getenv(envDSN),
		Schema:      schema,
		ClientID:    id,
		Tenants:     func(context.Context) ([]string, error) { return tenants, nil },
		Run:         rec.Run,
		Busy:        isBusy,
		Every:       replicaEvery,
		Workers:     replicaWorkers,
		RunTimeout:  replicaRunTimeout,
		RescueAfter: replicaRescueAfter,
		BusyRetry:   200 * time.Millisecond,
		StopTimeout: time.Second,
		Log:         log,
	})
	if err != nil {
		return fail(err)
	}
	if err := f.Start(context.Background()); err != nil {
		return fail(err)
	}
	fmt.Println("started")
	<-ctx.Done()
	stopCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.Stop(stopCtx); err != nil {
		return fail(err)
	}
	return 0
}

// replica is a running replica process.
type replica struct {
	id     string
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has exited
	err    error         // cmd.Wait's, once exited is closed
}

func startReplica(t *testing.T, id, schema string, tenants int, runFor time.Duration) *replica {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envDSN+"="+testDSN(t), envReplica+"="+id, envSchema+"="+schema,
		envTenants+"="+strconv.Itoa(tenants), envRunFor+"="+runFor.String())
	logPath := filepath.Join(t.TempDir(), id+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = logFile
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &replica{id: id, cmd: cmd, exited: make(chan struct{})}
	started := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if sc.Text() == "started" {
				close(started)
				break
			}
		}
		_, _ = io.Copy(io.Discard, out)
		r.err = cmd.Wait()
		_ = logFile.Close()
		close(r.exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-r.exited
		if t.Failed() {
			if b, err := os.ReadFile(logPath); err == nil {
				t.Logf("replica %s log (tail):\n%s", id, tail(b, 3000))
			}
		}
	})
	select {
	case <-started:
	case <-r.exited:
		t.Fatalf("replica %s exited before starting: %v", id, r.err)
	case <-time.After(30 * time.Second):
		t.Fatalf("replica %s did not start", id)
	}
	return r
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// TestReplicasTakeOverAKilledReplica: 3 replica processes share 60 tenants;
// one is killed with SIGKILL in the middle of runs: a follower, or River's
// leader (whose death adds an election before the rescue and moves the
// schedule). Every tenant completes a run after the kill, the killed
// replica's tenants on another replica after River's rescue, no tenant ever
// had two runs at once, all three replicas took a share, and the survivors
// stop gracefully on SIGTERM. The cases run in parallel, each on its own
// schema, so that the test takes one takeover's time.
func TestReplicasTakeOverAKilledReplica(t *testing.T) {
	if testing.Short() {
		t.Skip("kills replicas and waits for River's rescue (up to ~45 s); runs without -short")
	}
	for _, tt := range []struct {
		name       string
		killLeader bool
	}{{"Follower", false}, {"Leader", true}} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			testKillReplica(t, tt.killLeader)
		})
	}
}

func testKillReplica(t *testing.T, killLeader bool) {
	const tenants = 60
	ctx := context.Background()
	pool := testPool(t)
	schema := testSchema(t, pool)
	if err := createRunsTable(ctx, pool, schema); err != nil {
		t.Fatal(err)
	}
	replicas := make([]*replica, 3)
	for i := range replicas {
		replicas[i] = startReplica(t, fmt.Sprintf("replica-%d", i), schema, tenants, 300*time.Millisecond)
	}

	// The first round done by all three, then the victim in the middle of
	// a run.
	waitFor(t, 30*time.Second, "every tenant's first run, by all three replicas", func() (bool, error) {
		var done, by int
		err := pool.QueryRow(ctx, "SELECT count(DISTINCT tenant), count(DISTINCT replica) FROM "+schema+".runs WHERE ended IS NOT NULL").Scan(&done, &by)
		return done == tenants && by == 3, err
	})
	leader, err := riverLeader(ctx, pool, schema)
	if err != nil {
		t.Fatal(err)
	}
	var victim *replica
	for _, r := range replicas {
		if (r.id == leader) == killLeader {
			victim = r
			break
		}
	}
	if victim == nil {
		t.Fatalf("no replica to kill (leader %q)", leader)
	}
	waitFor(t, 20*time.Second, "the victim in the middle of a run", func() (bool, error) {
		var n int
		err := pool.QueryRow(ctx, "SELECT count(*) FROM "+schema+".runs WHERE replica = $1 AND ended IS NULL", victim.id).Scan(&n)
		return n > 0, err
	})
	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	<-victim.exited
	t.Logf("killed %s (the leader was %s)", victim.id, leader)

	// The victim's runs cut by the kill: they never record an end.
	rows, err := pool.Query(ctx, "SELECT tenant FROM "+schema+".runs WHERE replica = $1 AND ended IS NULL", victim.id)
	if err != nil {
		t.Fatal(err)
	}
	var cut []string
	for rows.Next() {
		var tenant string
		if err := rows.Scan(&tenant); err != nil {
			t.Fatal(err)
		}
		cut = append(cut, tenant)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(cut) == 0 {
		t.Fatal("the kill cut no run")
	}

	// Every tenant runs again after the kill; the cut ones on a survivor.
	var takeover time.Duration
	waitFor(t, 50*time.Second, "every tenant to complete a run after the kill", func() (bool, error) {
		var n int
		err := pool.QueryRow(ctx, "SELECT count(DISTINCT tenant) FROM "+schema+".runs WHERE ended IS NOT NULL AND started > $1", killedAt).Scan(&n)
		if err != nil || n < tenants {
			return false, err
		}
		takeover = 0
		for _, tenant := range cut {
			var first *time.Time
			err := pool.QueryRow(ctx, "SELECT min(ended) FROM "+schema+".runs WHERE tenant = $1 AND replica <> $2 AND started > $3",
				tenant, victim.id, killedAt).Scan(&first)
			if err != nil || first == nil {
				return false, err
			}
			takeover = max(takeover, first.Sub(killedAt))
		}
		return true, nil
	})
	t.Logf("takeover: %d runs cut by SIGKILL of %s finished on other replicas %s after the kill (RescueAfter %s, River's rescuer runs every 30 s)",
		len(cut), victim.id, takeover.Round(100*time.Millisecond), replicaRescueAfter)

	if killLeader {
		// The schedule moved: the runs after the kill needed a new leader
		// (checked before the survivors stop and resign).
		if now, err := riverLeader(ctx, pool, schema); err != nil || now == victim.id {
			t.Errorf("River's leader after the kill: %q (%v), want a survivor", now, err)
		}
	}

	// Graceful stop of the survivors.
	for _, r := range replicas {
		if r == victim {
			continue
		}
		if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range replicas {
		if r == victim {
			continue
		}
		select {
		case <-r.exited:
			if r.err != nil {
				t.Errorf("replica %s after SIGTERM: %v", r.id, r.err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("replica %s did not stop within 15 s of SIGTERM", r.id)
		}
	}

	runs, err := loadRuns(ctx, pool, schema)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range runs {
		if r.Ended == nil && r.Replica != victim.id {
			t.Errorf("run %+v never ended, but its replica was stopped gracefully", r)
		}
	}
	if o := overlaps(runs, killedAt); len(o) > 0 {
		t.Errorf("%d overlapping runs of one tenant, e.g. %s", len(o), o[0])
	}
	t.Logf("%d runs recorded for %d tenants", len(runs), tenants)
}

// riverLeader is the client id River's leader election chose.
func riverLeader(ctx context.Context, pool *pgxpool.Pool, schema string) (string, error) {
	var id string
	if err := pool.QueryRow(ctx, "SELECT leader_id FROM "+schema+".river_leader").Scan(&id); err != nil {
		return "", fmt.Errorf("River's leader: %w", err)
	}
	return id, nil
}
