package emulator

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/plugipay-sync/plugipay-sync/plugipay"
)

// hangingCreate starts a create that the emulator executes and then never
// answers (Faults.TimeoutRate 1), waits until it has executed, and returns
// the function that abandons it and waits for the client to return. While
// it hangs, its request is inside the handler: a write from another client
// meanwhile overlaps it, with no timing involved.
func hangingCreate(t *testing.T, e *env, c *plugipay.Client, acc, ext string) (release func()) {
	t.Helper()
	before := e.srv.WritesExecutedIn(acc)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := create(ctx, c, ext, newIdem())
		done <- err
	}()
	waitFor(t, func() bool { return e.srv.WritesExecutedIn(acc) == before+1 })
	return func() {
		cancel()
		if err := <-done; !errors.Is(err, plugipay.ErrCanceled) {
			t.Errorf("hanging create of %s: %v, want canceled", ext, err)
		}
	}
}

// TestRequestLog_Overlaps: two clients writing one workspace at once are
// reported; one after the other, one client at a time, or two workspaces
// at once are not.
func TestRequestLog_Overlaps(t *testing.T) {
	hang := Faults{TimeoutRate: 1, HangTimeout: time.Minute}
	for _, tc := range []struct {
		name string
		// run drives the writes; clients are keyed by "client account".
		run func(t *testing.T, e *env, c func(ua, acc string) *plugipay.Client)
		// writes is how many write requests run makes: a dropped request
		// is logged when its handler returns, after its client gave up.
		writes int
		want   []string // "account ext1 ext2" of each reported overlap
	}{
		{"TwoClientsAtOnce", func(t *testing.T, e *env, c func(ua, acc string) *plugipay.Client) {
			mustSetFaults(t, e, hang)
			r1 := hangingCreate(t, e, c("replica-1", "acc_a"), "acc_a", "u1")
			r2 := hangingCreate(t, e, c("replica-2", "acc_a"), "acc_a", "u2")
			r1()
			r2()
		}, 2, []string{"acc_a u1 u2"}},
		{"TwoClientsOneAfterTheOther", func(t *testing.T, e *env, c func(ua, acc string) *plugipay.Client) {
			for i, ua := range []string{"replica-1", "replica-2", "replica-1"} {
				if _, err := create(context.Background(), c(ua, "acc_a"), "u"+strconv.Itoa(i), newIdem()); err != nil {
					t.Fatal(err)
				}
			}
		}, 3, nil},
		{"OneClientAtOnce", func(t *testing.T, e *env, c func(ua, acc string) *plugipay.Client) {
			mustSetFaults(t, e, hang)
			r1 := hangingCreate(t, e, c("replica-1", "acc_a"), "acc_a", "u1")
			r2 := hangingCreate(t, e, c("replica-1", "acc_a"), "acc_a", "u2")
			r1()
			r2()
		}, 2, nil},
		{"TwoClientsTwoWorkspacesAtOnce", func(t *testing.T, e *env, c func(ua, acc string) *plugipay.Client) {
			mustSetFaults(t, e, hang)
			r1 := hangingCreate(t, e, c("replica-1", "acc_a"), "acc_a", "u1")
			r2 := hangingCreate(t, e, c("replica-2", "acc_b"), "acc_b", "u1")
			r1()
			r2()
		}, 2, nil},
		{"RejectedWriteDoesNotCount", func(t *testing.T, e *env, c func(ua, acc string) *plugipay.Client) {
			mustSetFaults(t, e, hang)
			r1 := hangingCreate(t, e, c("replica-1", "acc_a"), "acc_a", "u1")
			// The platform key is not connected to acc_c: 403, nothing written.
			_, err := create(context.Background(), c("replica-2", "acc_c"), "u2", newIdem())
			if !errors.Is(err, plugipay.ErrScope) {
				t.Errorf("acc_c: %v, want insufficient_scope", err)
			}
			r1()
		}, 2, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newPlatformEnv(t, Options{RequestLog: 100}, PlatformKey{Accounts: []string{"acc_a", "acc_b"}})
			tc.run(t, e, func(ua, acc string) *plugipay.Client { return e.sdk(platformKeyID, platformSecret, acc, ua) })
			waitFor(t, func() bool { return e.srv.InFlightWrites() == 0 })
			if n := len(e.srv.RequestLog()); n != tc.writes {
				t.Fatalf("%d records, want %d", n, tc.writes)
			}
			var got []string
			for _, o := range e.srv.OverlappingWrites() {
				got = append(got, o.Account+" "+o.A.ExternalID+" "+o.B.ExternalID)
				if o.A.ClientID == o.B.ClientID || o.A.Account != o.Account || o.B.Account != o.Account {
					t.Errorf("overlap %+v: same client or another account", o)
				}
			}
			if len(got) != len(tc.want) || (len(got) > 0 && got[0] != tc.want[0]) {
				t.Fatalf("overlaps %q, want %q", got, tc.want)
			}
		})
	}
}

func mustSetFaults(t *testing.T, e *env, f Faults) {
	t.Helper()
	if err := e.srv.SetFaults(f); err != nil {
		t.Fatal(err)
	}
}

// TestRequestLog_Records: what one write of each kind leaves in the log.
func TestRequestLog_Records(t *testing.T) {
	e := newPlatformEnv(t, Options{RequestLog: 100}, PlatformKey{Accounts: []string{"acc_a"}})
	p := func(q req) req {
		q.keyID, q.secret, q.onBehalfOf, q.userAgent = platformKeyID, platformSecret, "acc_a", "replica-7"
		return q
	}
	r := e.do(p(req{method: "POST", target: "/api/v1/customers", body: `{"externalId":"u1"}`, idem: newIdem()}))
	expect(t, r, 201, "")
	id := r.customer(t)["id"].(string)
	expect(t, e.do(p(req{method: "PATCH", target: "/api/v1/customers/" + id, body: `{"externalId":"u1b"}`, idem: newIdem()})), 200, "")
	expect(t, e.do(p(req{method: "POST", target: "/api/v1/customers", body: `{"externalId":"u1b"}`, idem: newIdem()})), 409, "conflict")
	expect(t, e.do(p(req{method: "GET", target: "/api/v1/customers"})), 200, "") // reads are not logged
	bad := p(req{method: "POST", target: "/api/v1/customers", body: `{"externalId":"u2"}`, idem: newIdem()})
	bad.onBehalfOf = "acc_x"
	expect(t, e.do(bad), 403, "insufficient_scope")
	expect(t, e.do(p(req{method: "DELETE", target: "/api/v1/customers/" + id})), 405, "method_not_allowed")
	expect(t, e.do(p(req{method: "PUT", target: "/api/v1/customers/" + id})), 405, "method_not_allowed") // not a write: not logged

	want := []WriteRecord{
		{Account: "acc_a", Method: "POST", Path: "/api/v1/customers", ExternalID: "u1", Status: 201, Handled: true},
		{Account: "acc_a", Method: "PATCH", Path: "/api/v1/customers/" + id, ExternalID: "u1", Status: 200, Handled: true},
		{Account: "acc_a", Method: "POST", Path: "/api/v1/customers", ExternalID: "u1b", Status: 409, Handled: true},
		{Account: "acc_x", Method: "POST", Path: "/api/v1/customers", Status: 403},
		{Account: "acc_a", Method: "DELETE", Path: "/api/v1/customers/" + id, Status: 405},
	}
	got := e.srv.RequestLog()
	if len(got) != len(want) {
		t.Fatalf("%d records, want %d: %+v", len(got), len(want), got)
	}
	for i, g := range got {
		if g.ClientID != "replica-7" || g.Begin.IsZero() || g.End.Before(g.Begin) {
			t.Errorf("record %d: client %q, interval %v..%v", i, g.ClientID, g.Begin, g.End)
		}
		g.ClientID, g.Begin, g.End = "", time.Time{}, time.Time{}
		if g != want[i] {
			t.Errorf("record %d = %+v, want %+v", i, g, want[i])
		}
	}
}

// TestRequestLog_Bounded: the log keeps the newest records and counts the
// evicted ones; it is off by default.
func TestRequestLog_Bounded(t *testing.T) {
	for _, tc := range []struct {
		name            string
		max, writes     int
		keep, evicted   int
		firstExternalID string
	}{
		{"Off", 0, 3, 0, 0, ""},
		{"NotFull", 5, 3, 3, 0, "u0"},
		{"Wrapped", 3, 7, 3, 4, "u4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Options{RequestLog: tc.max})
			for i := range tc.writes {
				e.create(`{"externalId":"u` + strconv.Itoa(i) + `"}`)
			}
			got := e.srv.RequestLog()
			if len(got) != tc.keep || e.srv.RequestLogEvicted() != tc.evicted {
				t.Fatalf("%d records, %d evicted; want %d and %d", len(got), e.srv.RequestLogEvicted(), tc.keep, tc.evicted)
			}
			if tc.keep > 0 && (got[0].ExternalID != tc.firstExternalID || got[0].Account != DefaultAccountID) {
				t.Fatalf("oldest kept = %+v, want externalId %s in %s", got[0], tc.firstExternalID, DefaultAccountID)
			}
			for i := 1; i < len(got); i++ {
				if got[i].End.Before(got[i-1].End) {
					t.Fatalf("records out of order at %d", i)
				}
			}
		})
	}
}

// TestFindOverlaps: the detector over hand-made records.
func TestFindOverlaps(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	w := func(acc, client string, from, to int) WriteRecord {
		return WriteRecord{Account: acc, ClientID: client, ExternalID: client + strconv.Itoa(from),
			Begin: t0.Add(time.Duration(from) * time.Millisecond), End: t0.Add(time.Duration(to) * time.Millisecond), Handled: true}
	}
	unhandled := func(r WriteRecord) WriteRecord { r.Handled = false; return r }
	for _, tc := range []struct {
		name string
		recs []WriteRecord
		want []string // "account A.ExternalID B.ExternalID"
	}{
		{"Empty", nil, nil},
		{"Disjoint", []WriteRecord{w("acc_a", "r1", 0, 10), w("acc_a", "r2", 11, 20)}, nil},
		{"Touching", []WriteRecord{w("acc_a", "r1", 0, 10), w("acc_a", "r2", 10, 20)}, []string{"acc_a r10 r210"}},
		{"Nested", []WriteRecord{w("acc_a", "r2", 5, 6), w("acc_a", "r1", 0, 10)}, []string{"acc_a r10 r25"}},
		{"SameClient", []WriteRecord{w("acc_a", "r1", 0, 10), w("acc_a", "r1", 5, 20)}, nil},
		{"OtherAccount", []WriteRecord{w("acc_a", "r1", 0, 10), w("acc_b", "r2", 5, 20)}, nil},
		{"Unhandled", []WriteRecord{w("acc_a", "r1", 0, 10), unhandled(w("acc_a", "r2", 5, 20))}, nil},
		{"LongOneSpansMany", []WriteRecord{w("acc_a", "r1", 0, 100), w("acc_a", "r2", 10, 20), w("acc_a", "r2", 30, 40), w("acc_b", "r3", 0, 100), w("acc_b", "r1", 200, 300)},
			[]string{"acc_a r10 r210", "acc_a r10 r230"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, o := range FindOverlaps(tc.recs) {
				got = append(got, o.Account+" "+o.A.ExternalID+" "+o.B.ExternalID)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("got %q, want %q", got, tc.want)
				}
			}
		})
	}
}
