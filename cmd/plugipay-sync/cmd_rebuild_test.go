package main

import (
	"context"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/plugipay-sync/plugipay-sync/plugipay"
	"github.com/plugipay-sync/plugipay-sync/plugipay/emulator"
	"github.com/plugipay-sync/plugipay-sync/state"
)

// requests is a snapshot of the emulator's request counts.
type requests struct{ lists, gets, posts, patches, total int }

func (e *e2e) requests() requests {
	return requests{
		lists:   e.emu.RequestCount(http.MethodGet, emulator.RouteCustomers),
		gets:    e.emu.RequestCount(http.MethodGet, emulator.RouteCustomer),
		posts:   e.emu.RequestCount(http.MethodPost, emulator.RouteCustomers),
		patches: e.emu.RequestCount(http.MethodPatch, emulator.RouteCustomer),
		total:   e.emu.TotalRequests(),
	}
}

// Every run, sync --external-id and rebuild-cache first prove the
// credentials and the workspace (issue 14): one list of one customer, and
// a get of up to three mapped customers (none while the state DB maps
// nobody).
const preflightLists, preflightGets = 1, 3

// preflightOnly reports whether r is exactly the preflight of a state DB
// that maps at least three customers.
func (r requests) preflightOnly() bool {
	return r.lists == preflightLists && r.gets == preflightGets && r.total == preflightLists+preflightGets
}

func (r requests) sub(o requests) requests {
	return requests{r.lists - o.lists, r.gets - o.gets, r.posts - o.posts, r.patches - o.patches, r.total - o.total}
}

func (e *e2e) removeState() {
	e.t.Helper()
	removeStateFiles(e.t, e.state)
}

// command runs a subcommand in-process with the e2e config.
func (e *e2e) command(name string, args ...string) (int, string) {
	e.t.Helper()
	code, out, _ := commandInProcess(e.t, e.config, name, args...)
	return code, out
}

func (e *e2e) mappingCount() int64 {
	e.t.Helper()
	db, err := state.Open(context.Background(), e.state)
	if err != nil {
		e.t.Fatal(err)
	}
	defer db.Close()
	n, err := db.MappingCount(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return n
}

// TestOnce_ColdStart10k is issue 4's cold-start acceptance: 10,000
// customers already in Plugipay, an empty state DB, one run: no create, no
// PATCH, and about one list request per 100 customers.
func TestOnce_ColdStart10k(t *testing.T) {
	if testing.Short() {
		t.Skip("creates 10,000 customers; skipped with -short")
	}
	const n = 10000
	dir := t.TempDir()
	e := newE2E(t, writeUsers(t, filepath.Join(dir, "u.csv"), n), emulator.Options{})
	if code, out := e.once(); code != ExitOK {
		t.Fatalf("seeding run exit %d:\n%s", code, out)
	}
	if got := e.emu.CustomerCount(); got != n {
		t.Fatalf("emulator holds %d customers, want %d", got, n)
	}

	e.removeState()
	before := e.requests()
	code, out := e.once()
	d := e.requests().sub(before)
	t.Logf("cold start with %d customers: %d list GETs, %d customer GETs, %d POSTs, %d PATCHes, %d requests in all",
		n, d.lists, d.gets, d.posts, d.patches, d.total)
	if code != ExitOK {
		t.Fatalf("cold run exit %d:\n%s", code, out)
	}
	wantSummary(t, out, "read 10000  created 0  updated 0  unchanged 10000  recovered 0  rejected 0  failed 0")
	if d.posts != 0 || d.patches != 0 {
		t.Errorf("%d creates and %d PATCHes; want none", d.posts, d.patches)
	}
	if d.lists+d.gets > 110 {
		t.Errorf("%d GET requests; want about 100 (one list page per 100 customers)", d.lists+d.gets)
	}
	if d.lists < n/100 {
		t.Errorf("%d list requests; the walk cannot have seen every customer", d.lists)
	}
	e.assertNoDuplicates()
}

func TestRebuildCache(t *testing.T) {
	dir := t.TempDir()
	e := newE2E(t, writeUsers(t, filepath.Join(dir, "u.csv"), 250), emulator.Options{})
	if code, out := e.once(); code != ExitOK {
		t.Fatalf("first run exit %d:\n%s", code, out)
	}
	// Two customers made by another tool, one without an externalId.
	client := newTestClient(t, e)
	createForeign(t, client, "", "noid@example.com")
	createForeign(t, client, "foreign_1", "f1@example.com")

	e.removeState()
	before := e.requests()
	code, out := e.command("rebuild-cache")
	if code != ExitOK {
		t.Fatalf("rebuild-cache exit %d:\n%s", code, out)
	}
	wantSummary(t, out, "listed 252  mapped 251  without externalId 1")
	d := e.requests().sub(before)
	if d.lists != 3+preflightLists || d.total != 3+preflightLists {
		t.Errorf("%d list requests, %d in all; want 3 pages of 100 and the preflight's list", d.lists, d.total)
	}
	if got := e.mappingCount(); got != 251 {
		t.Errorf("state maps %d customers, want 251", got)
	}
	before = e.requests()
	code, out = e.once()
	if code != ExitOK {
		t.Fatalf("run after rebuild exit %d:\n%s", code, out)
	}
	wantSummary(t, out, "created 0  updated 0  unchanged 250")
	if d := e.requests().sub(before); !d.preflightOnly() {
		t.Errorf("run after rebuild-cache made %+v; want only the preflight", d)
	}
}

// newTestClient is a Plugipay client of the e2e emulator, for acting as
// another tool would.
func newTestClient(t *testing.T, e *e2e) *plugipay.Client {
	t.Helper()
	c, err := plugipay.New(plugipay.Options{BaseURL: e.url, KeyID: testKeyID, Secret: testSecret, ReadRate: -1, WriteRate: -1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// createForeign creates a customer behind the sync's back.
func createForeign(t *testing.T, c *plugipay.Client, externalID, email string, meta ...string) *plugipay.Customer {
	t.Helper()
	p := plugipay.CustomerParams{Email: plugipay.String(email)}
	if externalID != "" {
		p.ExternalID = plugipay.String(externalID)
	}
	if len(meta) > 0 {
		p.Metadata = map[string]string{}
		for i := 0; i+1 < len(meta); i += 2 {
			p.Metadata[meta[i]] = meta[i+1]
		}
	}
	cus, err := c.Customers.Create(context.Background(), p, "")
	if err != nil {
		t.Fatal(err)
	}
	return cus
}

func openState(t *testing.T, e *e2e) *state.DB {
	t.Helper()
	db, err := state.Open(context.Background(), e.state)
	if err != nil {
		t.Fatal(err)
	}
	return db
}
