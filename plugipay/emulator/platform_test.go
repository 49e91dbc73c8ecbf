package emulator

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/plugipay-sync/plugipay-sync/plugipay"
)

const (
	platformKeyID  = "key_platform"
	platformSecret = "sk_platform_secret"
)

// uaTransport sends every request with User-Agent ua: the client id the
// request log records.
type uaTransport struct{ ua string }

func (u uaTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("User-Agent", u.ua)
	return http.DefaultTransport.RoundTrip(r)
}

// sdk returns a client of package plugipay for key keyID acting for acc,
// sending User-Agent ua, with no retries and no client-side rate limit, so
// every server answer reaches the test.
func (e *env) sdk(keyID, secret, acc, ua string) *plugipay.Client {
	e.t.Helper()
	c, err := plugipay.New(plugipay.Options{BaseURL: e.http.URL, KeyID: keyID, Secret: secret, OnBehalfOf: acc,
		MaxAttempts: 1, ReadRate: -1, WriteRate: -1, Timeout: time.Minute,
		HTTPClient: &http.Client{Transport: uaTransport{ua: ua}}})
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// newPlatformEnv is an emulator with platform key platformKeyID connected
// to accounts, on a clock frozen at the real time (the SDK signs with the
// real clock, and a frozen clock keeps every request in one rate-limit
// window).
func newPlatformEnv(t *testing.T, opts Options, pk PlatformKey) *env {
	t.Helper()
	pk.Secret = platformSecret
	opts.PlatformKeys = map[string]PlatformKey{platformKeyID: pk}
	e := newEnv(t, opts)
	e.clock.mu.Lock()
	e.clock.t = time.Now()
	e.clock.mu.Unlock()
	return e
}

func create(ctx context.Context, c *plugipay.Client, ext, idem string) (*plugipay.Customer, error) {
	return c.Customers.Create(ctx, plugipay.CustomerParams{ExternalID: plugipay.String(ext)}, idem)
}

// TestPlatform_Isolation: two workspaces under one platform key see only
// their own customers, externalIds and idempotency keys, through the SDK.
func TestPlatform_Isolation(t *testing.T) {
	e := newPlatformEnv(t, Options{}, PlatformKey{Accounts: []string{"acc_a", "acc_b"}})
	ctx := context.Background()
	a := e.sdk(platformKeyID, platformSecret, "acc_a", "test")
	b := e.sdk(platformKeyID, platformSecret, "acc_b", "test")

	ca, err := create(ctx, a, "user_1", "idem_same")
	if err != nil {
		t.Fatal(err)
	}
	// The same externalId and the same idempotency key in another
	// workspace: a new customer, not a conflict and not a replay.
	cb, err := create(ctx, b, "user_1", "idem_same")
	if err != nil {
		t.Fatalf("same externalId and key in acc_b: %v", err)
	}
	if ca.ID == cb.ID || ca.AccountID != "acc_a" || cb.AccountID != "acc_b" {
		t.Fatalf("customers %s in %s and %s in %s", ca.ID, ca.AccountID, cb.ID, cb.AccountID)
	}
	if e.srv.Replays() != 0 || e.srv.WritesExecuted() != 2 {
		t.Fatalf("replays %d writes %d, want 0 and 2", e.srv.Replays(), e.srv.WritesExecuted())
	}
	if _, err := create(ctx, a, "user_2", "idem_same"); !errors.Is(err, plugipay.ErrIdempotency) {
		t.Fatalf("key reused with another body in acc_a: %v, want idempotency_key_reused", err)
	}

	for _, tc := range []struct {
		name string
		call func() error
		want error
	}{
		{"DuplicateExternalIDInOneWorkspace", func() error { _, err := create(ctx, a, "user_1", "idem_dup"); return err }, plugipay.ErrConflict},
		{"GetOtherWorkspacesID", func() error { _, err := b.Customers.Get(ctx, ca.ID); return err }, plugipay.ErrNotFound},
		{"UpdateOtherWorkspacesID", func() error {
			_, err := b.Customers.Update(ctx, ca.ID, plugipay.CustomerParams{Name: plugipay.String("x")}, "idem_upd")
			return err
		}, plugipay.ErrNotFound},
		{"GetOwnID", func() error { _, err := a.Customers.Get(ctx, ca.ID); return err }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}

	// Lists and the Go accessors are per workspace.
	for _, tc := range []struct {
		acc    string
		client *plugipay.Client
		want   string
	}{{"acc_a", a, ca.ID}, {"acc_b", b, cb.ID}} {
		page, err := tc.client.Customers.List(ctx, plugipay.ListParams{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Data) != 1 || page.Data[0].ID != tc.want || page.Data[0].AccountID != tc.acc {
			t.Errorf("list in %s: %+v, want only %s", tc.acc, page.Data, tc.want)
		}
		if c, ok := e.srv.CustomerByExternalIDIn(tc.acc, "user_1"); !ok || c.ID != tc.want {
			t.Errorf("CustomerByExternalIDIn(%s) = %+v, %t", tc.acc, c, ok)
		}
		if n := e.srv.CustomerCountIn(tc.acc); n != 1 {
			t.Errorf("CustomerCountIn(%s) = %d, want 1", tc.acc, n)
		}
		if cs := e.srv.CustomersIn(tc.acc); len(cs) != 1 || cs[0].ID != tc.want {
			t.Errorf("CustomersIn(%s) = %+v", tc.acc, cs)
		}
		if _, ok := e.srv.CustomerIn(tc.acc, tc.want); !ok {
			t.Errorf("CustomerIn(%s, %s) not found", tc.acc, tc.want)
		}
	}
	if got := e.srv.CustomerCounts(); len(got) != 2 || got["acc_a"] != 1 || got["acc_b"] != 1 {
		t.Errorf("CustomerCounts = %v, want acc_a and acc_b at 1", got)
	}
	if n := e.srv.CustomerCount(); n != 0 {
		t.Errorf("the platform's own workspace holds %d customers, want 0", n)
	}
}

// TestPlatform_Access: who may act for which workspace, and what the
// others answer.
func TestPlatform_Access(t *testing.T) {
	e := newEnv(t, Options{AccountID: "acc_own", PlatformKeys: map[string]PlatformKey{
		platformKeyID: {Secret: platformSecret, Accounts: []string{"acc_a"}},
		"key_auto":    {Secret: "sk_auto", AutoConnect: true},
	}})
	for _, tc := range []struct {
		name, keyID, secret, acc string
		status                   int
		code, account            string // account: the accountId of the created customer
	}{
		{"PlatformConnected", platformKeyID, platformSecret, "acc_a", 201, "", "acc_a"},
		{"PlatformNotConnected", platformKeyID, platformSecret, "acc_c", 403, "insufficient_scope", ""},
		{"PlatformOwnWorkspace", platformKeyID, platformSecret, "", 201, "", "acc_own"},
		{"PlatformOwnWorkspaceByName", platformKeyID, platformSecret, "acc_own", 201, "", "acc_own"},
		{"PlatformMalformedAccount", platformKeyID, platformSecret, "merchant_1", 400, "validation_error", ""},
		{"PlatformEmptyAccountSuffix", platformKeyID, platformSecret, "acc_", 400, "validation_error", ""},
		{"AutoConnectAny", "key_auto", "sk_auto", "acc_new_1", 201, "", "acc_new_1"},
		{"PlainOwnAccount", testKeyID, testSecret, "acc_own", 201, "", "acc_own"},
		{"PlainOtherAccount", testKeyID, testSecret, "acc_a", 403, "insufficient_scope", ""},
		{"PlainNoHeader", testKeyID, testSecret, "", 201, "", "acc_own"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(req{method: "POST", target: "/api/v1/customers", body: `{}`, idem: newIdem(),
				keyID: tc.keyID, secret: tc.secret, onBehalfOf: tc.acc})
			expect(t, r, tc.status, tc.code)
			if tc.account != "" {
				c := r.customer(t)
				if c["accountId"] != tc.account || c["arn"] != "arn:plugipay:customer:"+tc.account+":"+c["id"].(string) {
					t.Fatalf("accountId %v arn %v, want %s", c["accountId"], c["arn"], tc.account)
				}
			}
		})
	}
	if got := e.srv.ConnectedAccounts("key_auto"); len(got) != 1 || got[0] != "acc_new_1" {
		t.Errorf("ConnectedAccounts(key_auto) = %v", got)
	}
}

// TestPlatform_Revocation: disconnecting one account answers 403 for it
// only (auto-connect does not bring it back); revoking a key answers 401.
func TestPlatform_Revocation(t *testing.T) {
	e := newPlatformEnv(t, Options{}, PlatformKey{Accounts: []string{"acc_a", "acc_b"}, AutoConnect: true})
	ctx := context.Background()
	a := e.sdk(platformKeyID, platformSecret, "acc_a", "test")
	b := e.sdk(platformKeyID, platformSecret, "acc_b", "test")
	plain := e.sdk(testKeyID, testSecret, "", "test")
	check := func(t *testing.T, c *plugipay.Client, want error, code string) {
		t.Helper()
		_, err := create(ctx, c, "u_"+rand8(), newIdem())
		var pe *plugipay.Error
		if want == nil {
			if err != nil {
				t.Fatalf("got %v, want success", err)
			}
			return
		}
		if !errors.Is(err, want) || !errors.As(err, &pe) || pe.Code != code {
			t.Fatalf("got %v, want %v (%s)", err, want, code)
		}
	}
	for _, c := range []*plugipay.Client{a, b, plain} {
		check(t, c, nil, "")
	}
	if !e.srv.Disconnect(platformKeyID, "acc_a") {
		t.Fatal("Disconnect: acc_a was not connected")
	}
	t.Run("Disconnected", func(t *testing.T) { check(t, a, plugipay.ErrScope, plugipay.CodeInsufficientScope) })
	t.Run("OtherAccountGoesOn", func(t *testing.T) { check(t, b, nil, "") })
	if err := e.srv.Connect(platformKeyID, "acc_a"); err != nil {
		t.Fatal(err)
	}
	t.Run("Reconnected", func(t *testing.T) { check(t, a, nil, "") })
	if n := e.srv.CustomerCountIn("acc_a"); n != 2 {
		t.Fatalf("acc_a holds %d customers after reconnecting, want 2 (a disconnection keeps the workspace)", n)
	}

	if !e.srv.RevokeKey(platformKeyID) {
		t.Fatal("RevokeKey: no such key")
	}
	t.Run("RevokedKey", func(t *testing.T) { check(t, b, plugipay.ErrAuth, plugipay.CodeInvalidKey) })
	t.Run("PlainKeyGoesOn", func(t *testing.T) { check(t, plain, nil, "") })
	if err := e.srv.Connect(platformKeyID, "acc_a"); err == nil {
		t.Error("Connect on a revoked key succeeded")
	}
}

func rand8() string { return newIdem()[5:13] }

// TestPlatform_RateLimitsPerWorkspace: account A at its write ceiling gets
// 429s while account B, under the same key and in the same one-second
// window, gets none, and reads have their own budget.
func TestPlatform_RateLimitsPerWorkspace(t *testing.T) {
	e := newPlatformEnv(t, Options{ReadRate: DefaultReadRate, WriteRate: DefaultWriteRate},
		PlatformKey{Accounts: []string{"acc_a", "acc_b"}})
	ctx := context.Background()
	clients := map[string]*plugipay.Client{
		"acc_a": e.sdk(platformKeyID, platformSecret, "acc_a", "test"),
		"acc_b": e.sdk(platformKeyID, platformSecret, "acc_b", "test"),
	}
	// Interleaved: 30 writes to A, 20 to B, all in one window (the clock
	// is frozen).
	limited := map[string]int{}
	for i := range 30 {
		for _, acc := range []string{"acc_a", "acc_b"} {
			if acc == "acc_b" && i >= DefaultWriteRate {
				continue
			}
			_, err := create(ctx, clients[acc], "u"+strconv.Itoa(i), newIdem())
			switch {
			case errors.Is(err, plugipay.ErrRateLimited):
				limited[acc]++
			case err != nil:
				t.Fatalf("%s create %d: %v", acc, i, err)
			}
		}
	}
	if limited["acc_a"] != 10 || limited["acc_b"] != 0 {
		t.Fatalf("429s per account = %v, want acc_a 10, acc_b 0", limited)
	}
	if a, b := e.srv.CustomerCountIn("acc_a"), e.srv.CustomerCountIn("acc_b"); a != 20 || b != 20 {
		t.Fatalf("customers a=%d b=%d, want 20 each", a, b)
	}

	for _, tc := range []struct {
		name, method, acc, keyID, secret string
		status                           int
		remaining                        string
	}{
		{"AWriteAtCeiling", "POST", "acc_a", platformKeyID, platformSecret, 429, "0"},
		{"BWriteAtCeiling", "POST", "acc_b", platformKeyID, platformSecret, 429, "0"},
		{"AReadOwnBudget", "GET", "acc_a", platformKeyID, platformSecret, 200, "99"},
		{"BReadOwnBudget", "GET", "acc_b", platformKeyID, platformSecret, 200, "99"},
		{"OwnWorkspaceWrite", "POST", "", platformKeyID, platformSecret, 201, "19"},
		{"PlainKeyWrite", "POST", "", testKeyID, testSecret, 201, "19"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := req{method: tc.method, target: "/api/v1/customers", keyID: tc.keyID, secret: tc.secret, onBehalfOf: tc.acc}
			if tc.method == "POST" {
				q.body, q.idem = `{}`, newIdem()
			}
			r := e.do(q)
			if r.status != tc.status || r.header.Get(HeaderRateLimit) == "" || r.header.Get(HeaderRateRemaining) != tc.remaining {
				t.Fatalf("status %d, %s=%q %s=%q; want %d, remaining %s", r.status, HeaderRateLimit, r.header.Get(HeaderRateLimit),
					HeaderRateRemaining, r.header.Get(HeaderRateRemaining), tc.status, tc.remaining)
			}
		})
	}
}

// TestPlatform_BulkAccountsAreLazy: thousands of connected accounts cost
// no workspace until a request reaches one; auto-connected ones are made
// empty on first use.
func TestPlatform_BulkAccountsAreLazy(t *testing.T) {
	accounts := make([]string, 5000)
	for i := range accounts {
		accounts[i] = "acc_t" + strconv.Itoa(i)
	}
	e := newPlatformEnv(t, Options{}, PlatformKey{Accounts: accounts, AutoConnect: true})
	for _, acc := range []string{"acc_t0", "acc_t4999", "acc_fresh"} {
		r := e.do(req{method: "GET", target: "/api/v1/customers", keyID: platformKeyID, secret: platformSecret, onBehalfOf: acc})
		expect(t, r, 200, "")
		if n := len(r.customers(t)); n != 0 {
			t.Fatalf("%s lists %d customers, want an empty workspace", acc, n)
		}
	}
	got := e.srv.Accounts()
	want := []string{DefaultAccountID, "acc_fresh", "acc_t0", "acc_t4999"}
	if len(got) != len(want) {
		t.Fatalf("Accounts() = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("Accounts() = %v, want %v", got, want)
		}
	}
	if n := len(e.srv.ConnectedAccounts(platformKeyID)); n != 5001 {
		t.Fatalf("%d connected accounts, want 5001", n)
	}
}

// TestPlatform_StatePersistence: a platform workspace's customers and
// idempotency keys survive a reload from the state file, in their own
// workspace.
func TestPlatform_StatePersistence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.jsonl")
	pk := PlatformKey{Accounts: []string{"acc_a"}}
	e := newPlatformEnv(t, Options{StatePath: path}, pk)
	q := req{method: "POST", target: "/api/v1/customers", body: `{"externalId":"u1"}`, idem: "idem_1",
		keyID: platformKeyID, secret: platformSecret, onBehalfOf: "acc_a"}
	expect(t, e.do(q), 201, "")
	e.create(`{"externalId":"u1"}`) // the own workspace: not a conflict

	e2 := newPlatformEnv(t, Options{StatePath: path}, pk)
	if a, own := e2.srv.CustomerCountIn("acc_a"), e2.srv.CustomerCount(); a != 1 || own != 1 {
		t.Fatalf("after reload acc_a holds %d, own %d; want 1 and 1", a, own)
	}
	r := e2.do(q)
	expect(t, r, 201, "")
	if r.header.Get(HeaderReplayed) != "true" {
		t.Fatal("acc_a's idempotency key was not replayed after reload")
	}
}

func TestPlatform_Options(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"KeyInBoth", Options{Keys: map[string]string{"k": "s"}, PlatformKeys: map[string]PlatformKey{"k": {Secret: "s"}}}},
		{"EmptySecret", Options{PlatformKeys: map[string]PlatformKey{"k": {}}}},
		{"BadAccount", Options{PlatformKeys: map[string]PlatformKey{"k": {Secret: "s", Accounts: []string{"merchant"}}}}},
		{"NegativeRequestLog", Options{RequestLog: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Open(tc.opts); err == nil {
				t.Fatal("Open succeeded")
			}
		})
	}
}
