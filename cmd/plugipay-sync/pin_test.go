package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	pinfake "github.com/plugipay-sync/plugipay-sync/destination/pin/fake"
)

// End-to-end tests of the real program against the Pin-style fake: an
// update-only API without external ids or metadata, whose customers are
// created at checkout and linked to CRM users by rebuild-cache
// --match-email.

// pinRequests are the fake's request counters.
type pinRequests struct{ lists, gets, posts, puts, deletes, total, writes int }

func pinCount(f *pinfake.Server) pinRequests {
	return pinRequests{
		lists:   f.RequestCount(http.MethodGet, pinfake.RouteCustomers),
		gets:    f.RequestCount(http.MethodGet, pinfake.RouteCustomer),
		posts:   f.RequestCount(http.MethodPost, pinfake.RouteCustomers),
		puts:    f.RequestCount(http.MethodPut, pinfake.RouteCustomer),
		deletes: f.RequestCount(http.MethodDelete, pinfake.RouteCustomer),
		total:   f.TotalRequests(),
		writes:  f.WritesExecuted(),
	}
}

func (r pinRequests) sub(o pinRequests) pinRequests {
	return pinRequests{r.lists - o.lists, r.gets - o.gets, r.posts - o.posts, r.puts - o.puts,
		r.deletes - o.deletes, r.total - o.total, r.writes - o.writes}
}

// pinUsers writes 20 CRM users usr_00000..usr_00019 (user<i>@example.co.id,
// "Pengguna <i>"), except that usr_00017 and usr_00018 share the email
// shared@example.co.id.
func pinUsers(t *testing.T, path string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("id,email,full_name,phone,npwp,plan,city,signup_source\n")
	for i := range 20 {
		email := fmt.Sprintf("user%d@example.co.id", i)
		if i == 17 || i == 18 {
			email = "shared@example.co.id"
		}
		fmt.Fprintf(&b, "usr_%05d,%s,Pengguna %d,+6281100000%02d,,pro,Bandung,web\n", i, email, i, i)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestPin_LinkByEmail walks the Pin path end to end. The fake holds
// customers made at checkout for some CRM users:
//   - usr_00000..09: same email and name as the CRM (linked, unchanged);
//   - usr_00010..12: same email, another name (linked, then one PUT each);
//   - usr_00013: its email on two customers (ambiguous, not linked);
//   - usr_00014: its email in another case (linked case-insensitively,
//     then one PUT to the CRM's email);
//   - usr_00017 and usr_00018: two CRM users share an email one customer
//     has (ambiguous, not linked);
//   - usr_00015, 16, 19: no customer (usr_00015's email exists only in
//     live mode, which the test key never sees);
//   - a customer no CRM user has.
//
// Before linking, --once skips everyone without a single request; the
// dry run stores nothing; the real link exits 2 naming the ambiguous ids;
// the next --once PUTs exactly the differing linked customers, POSTs
// nothing and skips the unlinked users; no card data is ever sent; a
// second --once writes nothing.
func TestPin_LinkByEmail(t *testing.T) {
	f := pinfake.New(pinfake.Options{TestKeys: []string{testSecret}, LiveKeys: []string{"sk_live_other"}, Seed: 11})
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	d := newDestRun(t)
	destConfig{Type: DestPin, BaseURL: srv.URL + "/1", State: d.state, Environment: "test",
		CSV: pinUsers(t, filepath.Join(d.dir, "u.csv")), MaxAttempts: 2}.write(t, d.config)

	seed := func(mode pinfake.Mode, email, first, last string) pinfake.Customer {
		return f.Seed(mode, pinfake.Customer{Email: email, FirstName: first, LastName: last})
	}
	tokens := map[string]string{} // user -> the customer it must be linked to
	for i := range 10 {
		tokens[fmt.Sprintf("usr_%05d", i)] = seed(pinfake.ModeTest, fmt.Sprintf("user%d@example.co.id", i), "Pengguna", fmt.Sprint(i)).Token
	}
	for i := 10; i < 13; i++ {
		tokens[fmt.Sprintf("usr_%05d", i)] = seed(pinfake.ModeTest, fmt.Sprintf("user%d@example.co.id", i), "Nama", fmt.Sprintf("Lama %d", i)).Token
	}
	amb13a := seed(pinfake.ModeTest, "user13@example.co.id", "Pengguna", "13")
	amb13b := seed(pinfake.ModeTest, "user13@example.co.id", "Budi", "Tigabelas")
	tokens["usr_00014"] = seed(pinfake.ModeTest, "User14@Example.co.id", "Pengguna", "14").Token
	shared := seed(pinfake.ModeTest, "shared@example.co.id", "Pengguna", "17")
	stranger := seed(pinfake.ModeTest, "stranger@example.com", "Orang", "Asing")
	live := seed(pinfake.ModeLive, "user15@example.co.id", "Pengguna", "15")
	const listed, linked, differing, unmatched = 18, 14, 4, 3
	snapshot := func() map[string]pinfake.Customer {
		m := map[string]pinfake.Customer{}
		for _, c := range f.Customers(pinfake.ModeTest) {
			m[c.Token] = c
		}
		return m
	}
	seeded := snapshot()

	// Before any link: the state knows no customer and the API cannot look
	// one up, so every user is skipped, without listing or writing.
	before := pinCount(f)
	code, out := d.once()
	if code != ExitOK {
		t.Fatalf("first --once exit %d:\n%s", code, out)
	}
	wantSummary(t, out, "read 20  created 0  updated 0  unchanged 0  recovered 0  rejected 0  failed 0")
	if r := d.lastRun(); r.Counts.Skipped != 20 {
		t.Errorf("first --once skipped %d users, want 20 (%+v)", r.Counts.Skipped, r.Counts)
	}
	if dd := pinCount(f).sub(before); dd.total != preflightLists || dd.lists != preflightLists {
		t.Errorf("first --once made %d requests (%+v); want only the preflight's list: nothing is linked", dd.total, dd)
	}

	// Syncing one user by hand says why nothing happened.
	code, out = d.command("sync", "--external-id", "usr_00003")
	if code != ExitOK || !strings.Contains(out, "usr_00003: skipped (left alone by sync.mode") {
		t.Errorf("sync --external-id before linking: exit %d\n%s", code, out)
	}

	// The dry run reports and stores nothing.
	before = pinCount(f)
	code, out = d.command("rebuild-cache", "--match-email", "--dry-run")
	t.Logf("dry run (exit %d):\n%s", code, out)
	if code != ExitPartial {
		t.Errorf("dry run exit %d, want %d (ambiguous emails)", code, ExitPartial)
	}
	wantSummary(t, out, fmt.Sprintf("listed %d customers  would link %d  already linked 0  no customer with the email %d  without email 0  ambiguous 2", listed, linked, unmatched))
	if got := d.stateRows("mappings"); got != 0 {
		t.Errorf("the dry run stored %d mappings", got)
	}
	if dd := pinCount(f).sub(before); dd.writes != 0 || dd.posts+dd.puts+dd.deletes != 0 {
		t.Errorf("the dry run wrote to the API: %+v", dd)
	}

	// The link: 14 users linked, the ambiguous ones named and left out.
	code, out = d.command("rebuild-cache", "--match-email")
	t.Logf("link (exit %d):\n%s", code, out)
	if code != ExitPartial {
		t.Errorf("link exit %d, want %d (ambiguous emails)", code, ExitPartial)
	}
	wantSummary(t, out, fmt.Sprintf("listed %d customers  linked %d  already linked 0  no customer with the email %d  without email 0  ambiguous 2", listed, linked, unmatched))
	for _, want := range []string{
		"users usr_00013  customers " + strings.Join(sorted(amb13a.Token, amb13b.Token), ","),
		"users usr_00017,usr_00018  customers " + shared.Token,
	} {
		wantSummary(t, out, "ambiguous, not linked: "+want)
	}
	db := openRaw(t, d.state)
	rows, err := db.Query(`SELECT external_id, customer_id FROM mappings`)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for rows.Next() {
		var ext, id string
		if err := rows.Scan(&ext, &id); err != nil {
			t.Fatal(err)
		}
		got[ext] = id
	}
	rows.Close()
	db.Close()
	if len(got) != linked {
		t.Errorf("%d mappings after the link, want %d: %v", len(got), linked, got)
	}
	for user, token := range tokens {
		if got[user] != token {
			t.Errorf("%s linked to %q, want %s", user, got[user], token)
		}
	}
	for _, tok := range []string{amb13a.Token, amb13b.Token, shared.Token, stranger.Token, live.Token} {
		for user, id := range got {
			if id == tok {
				t.Errorf("%s linked to %s, which must stay unlinked", user, tok)
			}
		}
	}

	// The next run brings the differing linked customers in line: one PUT
	// each, no POST, the unlinked users skipped.
	before = pinCount(f)
	code, out = d.once()
	dd := pinCount(f).sub(before)
	t.Logf("run after the link: %+v\n%s", dd, out)
	if code != ExitOK {
		t.Fatalf("--once after the link exit %d:\n%s", code, out)
	}
	wantSummary(t, out, fmt.Sprintf("read 20  created 0  updated %d  unchanged %d  recovered 0  rejected 0  failed 0", differing, linked-differing))
	if r := d.lastRun(); r.Counts.Skipped != 20-linked {
		t.Errorf("skipped %d users, want %d (%+v)", r.Counts.Skipped, 20-linked, r.Counts)
	}
	if dd.puts != differing || dd.posts != 0 || dd.deletes != 0 || dd.lists != preflightLists {
		t.Errorf("%d PUTs, %d POSTs, %d DELETEs, %d list requests; want %d PUTs and nothing else written or listed but the preflight's list",
			dd.puts, dd.posts, dd.deletes, dd.lists, differing)
	}
	after := snapshot()
	for i := 10; i < 15; i++ {
		if i == 13 {
			continue
		}
		c := after[tokens[fmt.Sprintf("usr_%05d", i)]]
		if c.Email != fmt.Sprintf("user%d@example.co.id", i) || c.FirstName != "Pengguna" || c.LastName != fmt.Sprint(i) {
			t.Errorf("usr_%05d's customer = %+v; want the CRM's email and name", i, c)
		}
	}
	for tok, c := range seeded {
		if isLinked(tokens, tok) {
			continue
		}
		if after[tok] != c {
			t.Errorf("unlinked customer %s changed: %+v -> %+v", tok, c, after[tok])
		}
	}
	if c, _ := f.Customer(pinfake.ModeLive, live.Token); c != live {
		t.Errorf("the live-mode customer changed: %+v", c)
	}
	if n := f.CustomerCount(pinfake.ModeTest); n != listed {
		t.Errorf("%d test-mode customers, want %d", n, listed)
	}

	// A second run has nothing to do.
	before = pinCount(f)
	code, out = d.once()
	dd = pinCount(f).sub(before)
	if code != ExitOK {
		t.Fatalf("second --once exit %d:\n%s", code, out)
	}
	wantSummary(t, out, fmt.Sprintf("created 0  updated 0  unchanged %d  recovered 0  rejected 0  failed 0", linked))
	if dd.writes != 0 || dd.puts+dd.posts+dd.deletes != 0 || dd.total != preflightLists+preflightGets || dd.lists != preflightLists {
		t.Errorf("second --once: %+v; want no request but the preflight's reads", dd)
	}

	if f.CardDataSeen() {
		t.Error("the fake saw card data in a request")
	}
}

func sorted(a, b string) []string {
	if a > b {
		return []string{b, a}
	}
	return []string{a, b}
}

func isLinked(tokens map[string]string, tok string) bool {
	for _, t := range tokens {
		if t == tok {
			return true
		}
	}
	return false
}
