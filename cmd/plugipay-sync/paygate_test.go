package main

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pgfake "github.com/plugipay-sync/plugipay-sync/destination/paygate/fake"
)

// End-to-end tests of the real program against the PayGate-style fake:
// an API without an external-id field, uniqueness or idempotency keys,
// where the sync keeps the CRM user id in metadata crm_user_id.

const pgExternalIDKey = "crm_user_id" // the config's default external_id_key

// pgEnv is the PayGate fake over real HTTP and a config pointing at it.
type pgEnv struct {
	*destRun
	fake *pgfake.Server
	cfg  destConfig
}

// newPayGate starts the fake (accepting testSecret, an sk_test_ key) and
// writes a config syncing n users of writeUsers into it.
func newPayGate(t *testing.T, n int, opts pgfake.Options) *pgEnv {
	t.Helper()
	opts.Keys = []string{testSecret}
	f := pgfake.New(opts)
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	d := newDestRun(t)
	p := &pgEnv{destRun: d, fake: f, cfg: destConfig{
		Type: DestPayGate, BaseURL: srv.URL + "/v1", State: d.state,
		CSV:         writeUsers(t, filepath.Join(d.dir, "u.csv"), n),
		MaxAttempts: 2, Concurrency: 4,
	}}
	p.cfg.write(t, d.config)
	return p
}

func (p *pgEnv) rewriteConfig() { p.cfg.write(p.t, p.config) }

// pgRequests are the fake's request counters.
type pgRequests struct{ lists, gets, posts, patches, total int }

func pgCount(f *pgfake.Server) pgRequests {
	return pgRequests{
		lists:   f.RequestCount(http.MethodGet, pgfake.RouteCustomers),
		gets:    f.RequestCount(http.MethodGet, pgfake.RouteCustomer),
		posts:   f.RequestCount(http.MethodPost, pgfake.RouteCustomers),
		patches: f.RequestCount(http.MethodPatch, pgfake.RouteCustomer),
		total:   f.TotalRequests(),
	}
}

func (r pgRequests) sub(o pgRequests) pgRequests {
	return pgRequests{r.lists - o.lists, r.gets - o.gets, r.posts - o.posts, r.patches - o.patches, r.total - o.total}
}

func (r pgRequests) writes() int { return r.posts + r.patches }

// preflightOnly reports whether r is exactly a run's preflight (see
// preflightLists).
func (r pgRequests) preflightOnly() bool {
	return r.lists == preflightLists && r.gets == preflightGets && r.total == preflightLists+preflightGets
}

// pgByUser counts the fake's customers per metadata crm_user_id ("" for
// customers without one).
func pgByUser(f *pgfake.Server) map[string]int {
	seen := map[string]int{}
	for _, c := range f.Customers() {
		seen[c.Metadata[pgExternalIDKey]]++
	}
	return seen
}

// assertEachUserOnce checks the fake holds exactly one customer for each
// of the n users of writeUsers, and nothing else.
func assertEachUserOnce(t *testing.T, f *pgfake.Server, n int) {
	t.Helper()
	seen := pgByUser(f)
	bad := 0
	for i := range n {
		id := fmt.Sprintf("usr_%05d", i)
		if seen[id] != 1 {
			bad++
			if bad <= 10 {
				t.Errorf("crm_user_id %s has %d customers, want exactly 1", id, seen[id])
			}
		}
	}
	if bad > 10 {
		t.Errorf("... %d users in all without exactly one customer", bad)
	}
	if got := f.CustomerCount(); got != n {
		t.Errorf("the fake holds %d customers, want %d", got, n)
	}
}

// TestPayGate_ColdStart is the acceptance "cold-start test passes against
// PayGate with no duplicates": a backfill, a no-op pass, a lost state DB
// rebuilt from the customer list (metadata crm_user_id) with no write, and
// one changed user costing exactly one PATCH.
func TestPayGate_ColdStart(t *testing.T) {
	const n = 300
	p := newPayGate(t, n, pgfake.Options{})

	code, out := p.once()
	if code != ExitOK {
		t.Fatalf("backfill exit %d:\n%s", code, out)
	}
	wantSummary(t, out, fmt.Sprintf("read %d  created %d  updated 0  unchanged 0  recovered 0  rejected 0  failed 0", n, n))
	if got := pgCount(p.fake).posts; got != n {
		t.Errorf("backfill sent %d POSTs, want %d", got, n)
	}
	for _, c := range p.fake.Customers() {
		var i int
		if _, err := fmt.Sscanf(c.Metadata[pgExternalIDKey], "usr_%05d", &i); err != nil {
			t.Fatalf("customer %s has metadata %v; want %s = usr_NNNNN", c.ID, c.Metadata, pgExternalIDKey)
		}
		if c.Email != fmt.Sprintf("user%d@example.co.id", i) || c.Name != fmt.Sprintf("Pengguna %d", i) ||
			c.Metadata["plan"] != "pro" || c.Metadata["city"] != "Bandung" || c.Metadata["signup_source"] != "web" {
			t.Fatalf("customer %s = %+v does not hold user %d", c.ID, c, i)
		}
	}
	assertEachUserOnce(t, p.fake, n)

	before := pgCount(p.fake)
	code, out = p.once()
	if code != ExitOK {
		t.Fatalf("second run exit %d:\n%s", code, out)
	}
	wantSummary(t, out, fmt.Sprintf("created 0  updated 0  unchanged %d  recovered 0  rejected 0  failed 0", n))
	if d := pgCount(p.fake).sub(before); !d.preflightOnly() {
		t.Errorf("unchanged pass: %+v; want only the preflight's reads", d)
	}

	// A lost state DB: the next run lists the customers (100 a page),
	// reads crm_user_id and writes nothing.
	p.removeState()
	before = pgCount(p.fake)
	code, out = p.once()
	d := pgCount(p.fake).sub(before)
	t.Logf("cold start: %d list requests, %d requests in all\n%s", d.lists, d.total, out)
	if code != ExitOK {
		t.Fatalf("cold start exit %d:\n%s", code, out)
	}
	wantSummary(t, out, fmt.Sprintf("created 0  updated 0  unchanged %d  recovered 0  rejected 0  failed 0", n))
	if d.posts != 0 || d.patches != 0 {
		t.Errorf("cold start sent %d POSTs and %d PATCHes, want none", d.posts, d.patches)
	}
	if d.lists < n/100+preflightLists || d.lists > n/100+1+preflightLists {
		t.Errorf("cold start made %d list requests, want about %d (100 customers a page) and the preflight's", d.lists, n/100)
	}
	if d.total != d.lists {
		t.Errorf("cold start made %d requests besides the %d list requests", d.total-d.lists, d.lists)
	}
	if m := p.stateRows("mappings"); m != n {
		t.Errorf("the rebuilt state maps %d users, want %d", m, n)
	}
	assertEachUserOnce(t, p.fake, n)

	// One changed user: exactly one PATCH.
	p.cfg.CSV = renameFirst(t, p.cfg.CSV, filepath.Join(p.dir, "renamed.csv"))
	p.rewriteConfig()
	before = pgCount(p.fake)
	code, out = p.once()
	d = pgCount(p.fake).sub(before)
	if code != ExitOK {
		t.Fatalf("rename run exit %d:\n%s", code, out)
	}
	wantSummary(t, out, fmt.Sprintf("created 0  updated 1  unchanged %d  recovered 0  rejected 0  failed 0", n-1))
	if d.patches != 1 || d.posts != 0 {
		t.Errorf("rename run sent %d PATCHes and %d POSTs; want exactly 1 PATCH", d.patches, d.posts)
	}
	for _, c := range p.fake.Customers() {
		if c.Metadata[pgExternalIDKey] == "usr_00000" && c.Name != "Pengguna 0 Renamed" {
			t.Errorf("usr_00000's customer = %+v; want the new name", c)
		}
	}
	assertEachUserOnce(t, p.fake, n)
}

// TestPayGate_AnswersLost: 30% of the writes execute but their answer is
// lost (no kill). Those records fail; the next run (sync.retry_min 1ms)
// finds the customers the unanswered creates made, adopts them as
// recovered and creates none again.
func TestPayGate_AnswersLost(t *testing.T) {
	const n = 200
	p := newPayGate(t, n, pgfake.Options{Seed: 7, Faults: pgfake.Faults{DropAfterWriteRate: 0.3}})
	p.cfg.RetryMin = "1ms"
	p.rewriteConfig()

	code, out := p.once()
	if code != ExitPartial {
		t.Fatalf("first run exit %d, want %d (lost answers fail their records):\n%s", code, ExitPartial, out)
	}
	first := p.lastRun().Counts
	t.Logf("first run: %+v\n%s", first, out)
	if first.Failed == 0 || first.Created+first.Failed != n {
		t.Fatalf("first run created %d and failed %d; want some failed and %d in all", first.Created, first.Failed, n)
	}
	// Every create executed, answered or not.
	if got := p.fake.CustomerCount(); got != n {
		t.Fatalf("the fake holds %d customers after the first run, want %d", got, n)
	}
	if got := p.stateRows("pending_writes"); got != int(first.Failed) {
		t.Errorf("%d pending writes after the first run, want %d (one per unanswered create)", got, first.Failed)
	}

	// The faults stay on: the second run must need no write at all.
	before := pgCount(p.fake)
	code, out = p.once()
	d := pgCount(p.fake).sub(before)
	t.Logf("second run: %d list requests, %d POSTs, %d PATCHes\n%s", d.lists, d.posts, d.patches, out)
	if code != ExitOK {
		t.Fatalf("second run exit %d:\n%s", code, out)
	}
	wantSummary(t, out, fmt.Sprintf("created 0  updated 0  unchanged %d  recovered %d  rejected 0  failed 0", first.Created, first.Failed))
	if d.writes() != 0 {
		t.Errorf("second run sent %d POSTs and %d PATCHes, want none", d.posts, d.patches)
	}
	assertEachUserOnce(t, p.fake, n)
	for table, want := range map[string]int{"mappings": n, "pending_writes": 0, "failures": 0} {
		if got := p.stateRows(table); got != want {
			t.Errorf("%s holds %d rows, want %d", table, got, want)
		}
	}
}

// TestPayGate_UnansweredCreateThenChange: a create executes without an
// answer; before the next run the CRM changes the user, so the next run
// finds that customer and PATCHes it, and that answer is lost too. The
// run after must still not create the user a second time. (It did, until
// the reconciler learnt that a pending update of an unmapped user names
// the customer of its unconfirmed create.)
func TestPayGate_UnansweredCreateThenChange(t *testing.T) {
	const n = 10
	p := newPayGate(t, n, pgfake.Options{Seed: 3})
	p.cfg.RetryMin = "1ms"
	p.rewriteConfig()
	if code, out := p.once(); code != ExitOK {
		t.Fatalf("backfill exit %d:\n%s", code, out)
	}

	// A new user whose create executes without an answer.
	csv := writeUsers(t, filepath.Join(p.dir, "more.csv"), n+1)
	p.cfg.CSV = csv
	p.rewriteConfig()
	mustPGFaults(t, p.fake, pgfake.Faults{DropAfterWriteRate: 1})
	code, out := p.once()
	if code != ExitTransient { // the run's only write failed: an outage, not bad data
		t.Fatalf("run 2 exit %d, want %d:\n%s", code, ExitTransient, out)
	}
	wantSummary(t, out, "created 0  updated 0  unchanged 10  recovered 0  rejected 0  failed 1")
	if got := p.fake.CustomerCount(); got != n+1 {
		t.Fatalf("%d customers after the unanswered create, want %d", got, n+1)
	}

	// The CRM renames the user; the next run finds its customer, and the
	// PATCH's answer is lost too.
	b, err := os.ReadFile(csv)
	if err != nil {
		t.Fatal(err)
	}
	s := strings.Replace(string(b), "usr_00010,user10@example.co.id,Pengguna 10,", "usr_00010,user10@example.co.id,Pengguna Sepuluh,", 1)
	if err := os.WriteFile(csv, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out = p.once()
	t.Logf("run 3 (exit %d):\n%s", code, out)
	if got := p.fake.CustomerCount(); got != n+1 {
		t.Fatalf("%d customers after run 3, want %d", got, n+1)
	}
	db := openRaw(t, p.state)
	var op, customerID string
	err = db.QueryRow(`SELECT op, customer_id FROM pending_writes WHERE external_id = 'usr_00010'`).Scan(&op, &customerID)
	db.Close()
	t.Logf("after run 3: usr_00010 has no mapping (%d mappings) and a pending write op=%q customer_id=%q (err %v)",
		p.stateRows("mappings"), op, customerID, err)

	mustPGFaults(t, p.fake, pgfake.Faults{})
	code, out = p.once()
	t.Logf("run 4 (exit %d):\n%s", code, out)
	if code != ExitOK {
		t.Errorf("run 4 exit %d, want %d", code, ExitOK)
	}
	assertEachUserOnce(t, p.fake, n+1)
	for _, c := range p.fake.Customers() {
		if c.Metadata[pgExternalIDKey] == "usr_00010" && c.Name != "Pengguna Sepuluh" {
			t.Errorf("usr_00010's customer %s has name %q, want the CRM's", c.ID, c.Name)
		}
	}
}

func mustPGFaults(t *testing.T, f *pgfake.Server, faults pgfake.Faults) {
	t.Helper()
	if err := f.SetFaults(faults); err != nil {
		t.Fatal(err)
	}
}

// pgCrashUsers is how many users the PayGate crash test backfills.
const pgCrashUsers = 1000

// payGateCrash is the PayGate fake as a crash test's destination; its
// faulted kill points turn on writes that execute without an answer.
type payGateCrash struct {
	p       *pgEnv
	latency pgfake.Faults
	// adopted counts the customers of unconfirmed creates the children
	// logged finding.
	adopted int
}

// pgFound is what a child logs (at info) for each customer of an
// unconfirmed create it finds.
const pgFound = "found the customer of an unconfirmed create"

func (c *payGateCrash) customers() int { return c.p.fake.CustomerCount() }

func (c *payGateCrash) setFaults(t *testing.T, on bool) {
	f := c.latency
	if on {
		f = pgfake.Faults{Latency: c.latency.Latency, DropAfterWriteRate: 0.1}
	}
	mustPGFaults(t, c.p.fake, f)
}

func (c *payGateCrash) checkState(t *testing.T, statePath string) int {
	return checkPayGateState(t, statePath, c.p.fake)
}

func (c *payGateCrash) afterKill(_ *testing.T, out string) string {
	found := strings.Count(out, pgFound)
	c.adopted += found
	return fmt.Sprintf(", pending %d, found %d", c.p.stateRows("pending_writes"), found)
}

// checkPayGateState checks that no user has two customers, then is
// checkMappings against the fake: every mapping names a customer carrying
// the mapping's user in crm_user_id.
func checkPayGateState(t *testing.T, path string, f *pgfake.Server) int {
	t.Helper()
	for id, c := range pgByUser(f) {
		if c > 1 {
			t.Fatalf("crm_user_id %q has %d customers: a duplicate", id, c)
		}
	}
	return checkMappings(t, path, func(ext, id string) error {
		if c, ok := f.Customer(id); !ok || c.Metadata[pgExternalIDKey] != ext {
			return fmt.Errorf("mapping %s -> %s, but the fake holds %+v (found %v)", ext, id, c, ok)
		}
		return nil
	})
}

// TestPayGate_CrashKillNine is the acceptance "crash test passes against
// PayGate with no duplicates", modelled on TestCrash_KillNine: the real
// program backfills pgCrashUsers users into the fake as a child process
// and is SIGKILLed at random moments (seeded; PLUGIPAY_SYNC_CRASH_SEED
// replays a run), on four rounds with 10% of the writes executing without
// an answer; then a last run finishes. The API takes a second create for
// the same user, so every create the killed or unanswered processes made
// must be found (metadata crm_user_id, ListCreatedSince) rather than
// repeated: every user ends with exactly one customer, every mapping
// names its user's customer, and no confirmed mapping is ever lost.
func TestPayGate_CrashKillNine(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes and backfills 1000 users with SIGKILLs; skipped with -short")
	}
	seed := testSeed(t, "PLUGIPAY_SYNC_CRASH_SEED")
	rng := rand.New(rand.NewPCG(seed, seed))

	const n = pgCrashUsers
	latency := pgfake.Faults{Latency: 3 * time.Millisecond}
	p := newPayGate(t, n, pgfake.Options{Faults: latency, Seed: seed})
	// info: the children log each customer found for an unconfirmed
	// create, which the test counts.
	p.cfg.MaxAttempts, p.cfg.RetryMin, p.cfg.Timeout, p.cfg.LogLevel = 3, "1ms", "2s", "info"
	p.cfg.Metadata = "{plan: plan, city: city}"
	p.rewriteConfig()

	start := time.Now()
	// As TestCrash_KillNine's schedule, scaled to n users.
	schedule := killSchedule(rng, "lost answers", n/50, n*94/100, [2]int{n * 955 / 1000, n / 70}, [2]int{n * 975 / 1000, n / 70})
	dest := &payGateCrash{p: p, latency: latency}
	kills := killNine(t, rng, dest, p.config, p.state, n, schedule)

	code, out := runChild(t, p.config)
	if code != ExitOK {
		t.Fatalf("final run exit %d:\n%s", code, out)
	}
	adopted := dest.adopted + strings.Count(out, pgFound)
	final := p.lastRun().Counts
	posts := pgCount(p.fake).posts
	t.Logf("%d kills; final run %+v; %d customers of unconfirmed creates found in all; %d POSTs, %d writes executed; total %s",
		kills, final, adopted, posts, p.fake.WritesExecuted(), time.Since(start).Round(time.Millisecond))

	assertEachUserOnce(t, p.fake, n)
	if mapped := checkPayGateState(t, p.state, p.fake); mapped != p.fake.CustomerCount() {
		t.Errorf("state maps %d customers, the fake holds %d", mapped, p.fake.CustomerCount())
	}
	for table, want := range map[string]int{"mappings": n, "pending_writes": 0, "failures": 0} {
		if got := p.stateRows(table); got != want {
			t.Errorf("%s holds %d rows after the final run, want %d", table, got, want)
		}
	}
	if adopted == 0 {
		t.Error("no customer of an unconfirmed create was found: the lost answers and kills did not exercise the recovery")
	}

	// Every killed run is marked aborted by the run after it.
	checkRunHistory(t, p.state, kills, n, false)
}
