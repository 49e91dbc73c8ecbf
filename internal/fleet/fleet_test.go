package fleet

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/riverqueue/river/rivertype"
	"github.com/robfig/cron/v3"
)

func TestOptionsValidate(t *testing.T) {
	run := func(context.Context, string, string) error { return nil }
	tenants := func(context.Context) ([]string, error) { return nil, nil }
	valid := func() Options {
		return Options{DSN: "postgres://x", Tenants: tenants, Run: run, Every: time.Minute}
	}
	tests := []struct {
		name   string
		change func(*Options)
		want   string
	}{
		{"NoDSN", func(o *Options) { o.DSN = "" }, "fleet: DSN or Pool is required"},
		{"NoTenants", func(o *Options) { o.Tenants = nil }, "fleet: Tenants is required"},
		{"NoRun", func(o *Options) { o.Run = nil }, "fleet: Run is required"},
		{"NoEvery", func(o *Options) { o.Every = 0 }, "fleet: Every must be greater than 0 (got 0s)"},
		{"NegativeWorkers", func(o *Options) { o.Workers = -1 }, "fleet: Workers must not be negative (got -1)"},
		{"RescueNotAfterTimeout", func(o *Options) { o.RunTimeout, o.RescueAfter = time.Minute, time.Minute },
			"fleet: RescueAfter (1m0s) must exceed RunTimeout (1m0s), or a working run is taken for dead"},
		{"NegativeAttempts", func(o *Options) { o.MaxAttempts = -1 }, "fleet: MaxAttempts must be at least 1 (got -1)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := valid()
			tt.change(&o)
			_, err := New(context.Background(), o)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("New: got %v, want %q", err, tt.want)
			}
		})
	}
	t.Run("Defaults", func(t *testing.T) {
		o := valid()
		o.setDefaults()
		if err := o.validate(); err != nil {
			t.Fatalf("defaults do not validate: %v", err)
		}
		if o.RescueAfter <= o.RunTimeout || o.ClientID == "" || o.Schema != DefaultSchema {
			t.Fatalf("defaults: RescueAfter %s, RunTimeout %s, ClientID %q, Schema %q", o.RescueAfter, o.RunTimeout, o.ClientID, o.Schema)
		}
	})
}

// TestOutcomes runs one tenant through scripted run results and checks what
// River made of them: the outcome counts, the job's final state, and that a
// tenant discarded after its attempts can be enqueued again.
func TestOutcomes(t *testing.T) {
	errDown := errors.New("plugipay answered 401")
	errPanic := errors.New("the run panics")
	tests := []struct {
		name        string
		results     []error // the run's result on each call; nil past the end
		maxAttempts int
		again       bool // enqueue again once the first job has ended
		want        map[Outcome]float64
		wantStates  []rivertype.JobState
	}{
		{"OK", nil, 3, false, map[Outcome]float64{OutcomeOK: 1}, []rivertype.JobState{rivertype.JobStateCompleted}},
		{"BusySnoozesThenRuns", []error{errBusy, errBusy}, 1, false,
			map[Outcome]float64{OutcomeBusy: 2, OutcomeOK: 1}, []rivertype.JobState{rivertype.JobStateCompleted}},
		{"ErrorRetried", []error{errDown}, 3, false,
			map[Outcome]float64{OutcomeError: 1, OutcomeOK: 1}, []rivertype.JobState{rivertype.JobStateCompleted}},
		{"PanicRetried", []error{errPanic}, 3, false,
			map[Outcome]float64{OutcomeError: 1, OutcomeOK: 1}, []rivertype.JobState{rivertype.JobStateCompleted}},
		{"PersistentFailureDiscardedThenEnqueuedAgain", []error{errDown, errDown}, 2, true,
			map[Outcome]float64{OutcomeError: 1, OutcomeDiscarded: 1, OutcomeOK: 1},
			[]rivertype.JobState{rivertype.JobStateCompleted, rivertype.JobStateDiscarded}},
	}
	pool := testPool(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			var calls atomic.Int32
			o := testOptions(t, testSchema(t, pool), func(context.Context, string, string) error {
				i := int(calls.Add(1)) - 1
				if i < len(tt.results) {
					if tt.results[i] == errPanic {
						panic("boom")
					}
					return tt.results[i]
				}
				return nil
			})
			o.MaxAttempts = tt.maxAttempts
			f := startFleet(t, o)
			if err := f.Enqueue(ctx, "t1", CauseEvent); err != nil {
				t.Fatal(err)
			}
			var states []rivertype.JobState
			waitJobs := func(n int) {
				waitFor(t, 30*time.Second, "the tenant's jobs to end", func() (bool, error) {
					var err error
					states, err = tenantJobStates(ctx, f, "t1")
					return len(states) == n && settled(states), err
				})
			}
			waitJobs(1)
			if tt.again {
				if err := f.Enqueue(ctx, "t1", CauseEvent); err != nil {
					t.Fatal(err)
				}
				waitJobs(2)
			}
			if got := sortedStates(states); fmt.Sprint(got) != fmt.Sprint(tt.wantStates) {
				t.Errorf("job states: got %v, want %v", got, tt.wantStates)
			}
			for _, out := range Outcomes {
				if got := testutil.ToFloat64(f.metrics.runs[out]); got != tt.want[out] {
					t.Errorf("runs{outcome=%s}: got %v, want %v", out, got, tt.want[out])
				}
			}
			if got := testutil.ToFloat64(f.metrics.running); got != 0 {
				t.Errorf("running runs after the end: got %v, want 0", got)
			}
		})
	}
}

func sortedStates(s []rivertype.JobState) []rivertype.JobState {
	out := append([]rivertype.JobState(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// TestEnqueueWhileRunning: 100 event enqueues for a tenant whose run is in
// progress make exactly one more run (the follow-up an event owes), never
// two at once, and one enqueue for an idle tenant makes one run.
func TestEnqueueWhileRunning(t *testing.T) {
	ctx := context.Background()
	pool := testPool(t)
	schema := testSchema(t, pool)
	if err := createRunsTable(ctx, pool, schema); err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{}, 10)
	release := make(chan struct{})
	rec := &recorder{pool: pool, schema: schema, replica: "a", hold: func(ctx context.Context, tenant string) error {
		if tenant != "busy" {
			return nil
		}
		started <- struct{}{}
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}}
	f := startFleet(t, testOptions(t, schema, rec.Run))
	// A second replica on the same schema, so the follow-up job is fetched
	// while the first run still holds the tenant's lock.
	rec2 := *rec
	rec2.replica = "b"
	o2 := testOptions(t, schema, rec2.Run)
	o2.ClientID = "fleet-test-b"
	startFleet(t, o2)

	if err := f.Enqueue(ctx, "busy", "first"); err != nil {
		t.Fatal(err)
	}
	<-started
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- f.Enqueue(ctx, "busy", fmt.Sprintf("event-%d", i))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Enqueue: %v", err)
		}
	}
	if err := f.Enqueue(ctx, "idle", CauseEvent); err != nil {
		t.Fatal(err)
	}
	close(release)
	waitFor(t, 30*time.Second, "both tenants' jobs to end", func() (bool, error) {
		for _, tenant := range []string{"busy", "idle"} {
			states, err := tenantJobStates(ctx, f, tenant)
			if err != nil || !settled(states) {
				return false, err
			}
		}
		return true, nil
	})
	runs, err := loadRuns(ctx, pool, schema)
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, r := range runs {
		if r.Ended != nil {
			count[r.Tenant]++
		}
	}
	if count["busy"] != 2 || count["idle"] != 1 {
		t.Errorf("finished runs: got busy=%d idle=%d, want busy=2 idle=1 (runs: %+v)", count["busy"], count["idle"], runs)
	}
	if len(runs) > 0 && runs[0].Tenant == "busy" && runs[0].Cause != "first" {
		t.Errorf("first run's cause: got %q, want %q", runs[0].Cause, "first")
	}
	if len(runs) > 1 && !strings.HasPrefix(runs[1].Cause, "event-") {
		t.Errorf("follow-up run's cause: got %q, want an event", runs[1].Cause)
	}
	if o := overlaps(runs, time.Now()); len(o) > 0 {
		t.Errorf("overlapping runs: %v", o)
	}
}

// TestScheduleEnqueuesEveryTenant: the leader's schedule (on start) enqueues
// every listed tenant once, and two replicas between them run each once,
// whether the period is an interval or the daemon's cron schedule.
func TestScheduleEnqueuesEveryTenant(t *testing.T) {
	hourly, err := cron.ParseStandard("@every 1h")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		set  func(*Options)
	}{
		{"Every", func(o *Options) { o.Every = time.Hour }},
		{"CronSchedule", func(o *Options) { o.Every, o.Schedule = 0, hourly }},
	} {
		t.Run(tc.name, func(t *testing.T) { testScheduleEnqueuesEveryTenant(t, tc.set) })
	}
}

func testScheduleEnqueuesEveryTenant(t *testing.T, set func(*Options)) {
	ctx := context.Background()
	pool := testPool(t)
	schema := testSchema(t, pool)
	if err := createRunsTable(ctx, pool, schema); err != nil {
		t.Fatal(err)
	}
	var tenants []string
	for i := range 20 {
		tenants = append(tenants, fmt.Sprintf("tenant-%02d", i))
	}
	var fleets []*Fleet
	for _, id := range []string{"a", "b"} {
		rec := &recorder{pool: pool, schema: schema, replica: id, hold: sleepRun(20 * time.Millisecond)}
		o := testOptions(t, schema, rec.Run)
		o.ClientID = "fleet-test-" + id
		o.Tenants = func(context.Context) ([]string, error) { return tenants, nil }
		set(&o)
		fleets = append(fleets, startFleet(t, o))
	}
	waitFor(t, 30*time.Second, "every tenant's job to end", func() (bool, error) {
		for _, tenant := range tenants {
			states, err := tenantJobStates(ctx, fleets[0], tenant)
			if err != nil || !settled(states) {
				return false, err
			}
		}
		return true, nil
	})
	runs, err := loadRuns(ctx, pool, schema)
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, r := range runs {
		if r.Cause != CauseSchedule || r.Ended == nil {
			t.Errorf("run %+v: want a finished scheduled run", r)
		}
		count[r.Tenant]++
	}
	for _, tenant := range tenants {
		if count[tenant] != 1 {
			t.Errorf("tenant %s: %d runs, want 1", tenant, count[tenant])
		}
	}
}

// TestStopReleasesRunningJob: a run still going when Stop's grace ends, or
// when the caller's deadline for Stop ends first, is cancelled and its job
// released at once, so another replica runs the tenant without waiting for
// River's rescue (set to an hour here).
func TestStopReleasesRunningJob(t *testing.T) {
	tests := []struct {
		name        string
		stopTimeout time.Duration // Options.StopTimeout
		stopWithin  time.Duration // the ctx given to Stop
		wantErr     string
	}{
		{"GraceEnds", 200 * time.Millisecond, 15 * time.Second, ""},
		{"CallerDeadlineFirst", time.Minute, 300 * time.Millisecond,
			"fleet: stop: context deadline exceeded; running runs were cancelled"},
	}
	pool := testPool(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			schema := testSchema(t, pool)
			running := make(chan struct{}, 1)
			oa := testOptions(t, schema, func(ctx context.Context, _, _ string) error {
				running <- struct{}{}
				<-ctx.Done() // a run that only ends when cancelled
				return ctx.Err()
			})
			oa.StopTimeout = tt.stopTimeout
			a, err := New(ctx, oa)
			if err != nil {
				t.Fatal(err)
			}
			if err := a.Start(ctx); err != nil {
				t.Fatal(err)
			}
			if err := a.Enqueue(ctx, "t1", CauseEvent); err != nil {
				t.Fatal(err)
			}
			<-running
			stopCtx, cancel := context.WithTimeout(ctx, tt.stopWithin)
			defer cancel()
			err = a.Stop(stopCtx)
			if got := fmt.Sprint(err); (tt.wantErr == "" && err != nil) || (tt.wantErr != "" && got != tt.wantErr) {
				t.Fatalf("Stop: got %v, want %q", err, tt.wantErr)
			}
			if got := testutil.ToFloat64(a.metrics.runs[OutcomeReleased]); got != 1 {
				t.Errorf("released runs: got %v, want 1", got)
			}

			ran := make(chan string, 1)
			ob := testOptions(t, schema, func(_ context.Context, tenant, _ string) error {
				ran <- tenant
				return nil
			})
			ob.ClientID = "fleet-test-b"
			startFleet(t, ob)
			select {
			case got := <-ran:
				if got != "t1" {
					t.Errorf("replica b ran %q, want t1", got)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("the released job was not run by the next replica")
			}
		})
	}
}

// TestNewMigratesConcurrently: replicas starting together on a schema that
// does not exist yet all migrate it without error.
func TestNewMigratesConcurrently(t *testing.T) {
	pool := testPool(t)
	schema := testSchema(t, pool)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := testOptions(t, schema, func(context.Context, string, string) error { return nil })
			f, err := New(context.Background(), o)
			if err == nil {
				f.closePool()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("replica %d: New: %v", i, err)
		}
	}
}
