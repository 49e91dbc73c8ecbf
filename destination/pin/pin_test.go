package pin_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	stdsync "sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/plugipay-sync/plugipay-sync/destination/pin"
	"github.com/plugipay-sync/plugipay-sync/destination/pin/fake"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

const (
	testKey = "sk_test_abc"
	liveKey = "sk_live_abc"
)

// env is a fake API behind a real HTTP server and an adapter talking to
// it with the test key.
type env struct {
	t    *testing.T
	fake *fake.Server
	hs   *httptest.Server
	dest *pin.Pin
	reg  *prometheus.Registry
}

// newEnv starts a fake with fo (test and live keys by default) and an
// adapter whose options mod may change. Every test using it also checks
// that no request carried card data.
func newEnv(t *testing.T, fo fake.Options, mod func(*pin.Options)) *env {
	t.Helper()
	if fo.TestKeys == nil && fo.LiveKeys == nil {
		fo.TestKeys, fo.LiveKeys = []string{testKey}, []string{liveKey}
	}
	if fo.Seed == 0 {
		fo.Seed = 1
	}
	e := &env{t: t, fake: fake.New(fo), reg: prometheus.NewRegistry()}
	e.hs = httptest.NewServer(e.fake)
	t.Cleanup(e.hs.Close)
	t.Cleanup(func() {
		if e.fake.CardDataSeen() {
			t.Error("a request carried card data")
		}
	})
	e.dest = e.adapter(func(o *pin.Options) {
		if mod != nil {
			mod(o)
		}
	})
	return e
}

// adapter returns a new adapter on e's server.
func (e *env) adapter(mod func(*pin.Options)) *pin.Pin {
	e.t.Helper()
	o := pin.Options{
		BaseURL:           e.hs.URL + "/1",
		SecretKey:         testKey,
		MaxAttempts:       4,
		RequestsPerSecond: 1000,
		Registerer:        e.reg,
	}
	if mod != nil {
		mod(&o)
	}
	d, err := pin.New(o)
	if err != nil {
		e.t.Fatalf("pin.New: %v", err)
	}
	return d
}

// seed adds n test-mode customers one second apart, oldest first.
func (e *env) seed(n int, email func(i int) string) []fake.Customer {
	out := make([]fake.Customer, n)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range n {
		out[i] = e.fake.Seed(fake.ModeTest, fake.Customer{
			Email: email(i), FirstName: "First", LastName: fmt.Sprint(i), CreatedAt: t0.Add(time.Duration(i) * time.Second),
		})
	}
	return out
}

func nthEmail(i int) string { return fmt.Sprintf("user%d@example.com", i) }

func apiError(t *testing.T, err error) *sync.APIError {
	t.Helper()
	var ae *sync.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v (%T) is not a *sync.APIError", err, err)
	}
	return ae
}

func ptr(s string) *string { return &s }

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    pin.Options
		want string
	}{
		{"no base URL", pin.Options{SecretKey: "k"}, "pin: BaseURL is required"},
		{"relative base URL", pin.Options{BaseURL: "/1", SecretKey: "k"}, `pin: BaseURL "/1" must be an http(s) URL with a host`},
		{"ftp base URL", pin.Options{BaseURL: "ftp://h/1", SecretKey: "k"}, `pin: BaseURL "ftp://h/1" must be an http(s) URL with a host`},
		{"no key", pin.Options{BaseURL: "https://h/1"}, "pin: SecretKey is required"},
		{"bad mode", pin.Options{BaseURL: "https://h/1", SecretKey: "k", Mode: "prod"}, `pin: Mode must be "test" or "live" (got "prod")`},
		{"negative timeout", pin.Options{BaseURL: "https://h/1", SecretKey: "k", Timeout: -time.Second}, "pin: Timeout must not be negative (got -1s)"},
		{"negative attempts", pin.Options{BaseURL: "https://h/1", SecretKey: "k", MaxAttempts: -1}, "pin: MaxAttempts must not be negative (got -1)"},
		{"negative rate", pin.Options{BaseURL: "https://h/1", SecretKey: "k", RequestsPerSecond: -1}, "pin: RequestsPerSecond must not be negative (got -1)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := pin.New(tc.o)
			if err == nil || err.Error() != tc.want {
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
	t.Run("OK", func(t *testing.T) {
		for mode, want := range map[string]string{"": "test", "test": "test", "live": "live"} {
			d, err := pin.New(pin.Options{BaseURL: "https://h/1", SecretKey: "k", Mode: mode})
			if err != nil || d.Mode() != want {
				t.Errorf("mode %q: %v, Mode() = %q, want %q", mode, err, d.Mode(), want)
			}
		}
	})
}

func TestCapabilities(t *testing.T) {
	e := newEnv(t, fake.Options{}, nil)
	want := sync.Capabilities{ExternalID: sync.ExternalIDNone}
	if got := e.dest.Capabilities(); got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if err := sync.CheckMode(sync.ModeUpsert, e.dest.Capabilities()); err == nil {
		t.Error("upsert allowed")
	}
	if err := sync.CheckMode(sync.ModeUpdateOnly, e.dest.Capabilities()); err != nil {
		t.Errorf("update-only refused: %v", err)
	}
}

func TestCreateCustomerMakesNoRequest(t *testing.T) {
	e := newEnv(t, fake.Options{}, nil)
	_, err := e.dest.CreateCustomer(context.Background(), sync.Customer{Email: "a@example.com", Name: "A B"}, "idem_1")
	ae := apiError(t, err)
	if !errors.Is(err, sync.ErrInvalid) || ae.Code != pin.CodeCreateNotSupported || !strings.Contains(ae.Message, "checkout") {
		t.Errorf("got %v (code %q), want ErrInvalid %s", err, ae.Code, pin.CodeCreateNotSupported)
	}
	if n := e.fake.TotalRequests(); n != 0 {
		t.Errorf("%d requests sent, want 0", n)
	}
	if e.fake.CustomerCount(fake.ModeTest) != 0 {
		t.Error("a customer was created")
	}
}

func TestFindByExternalID(t *testing.T) {
	e := newEnv(t, fake.Options{}, nil)
	e.seed(3, nthEmail)
	_, err := e.dest.FindByExternalID(context.Background(), "user_1")
	if !errors.Is(err, sync.ErrNotFound) || apiError(t, err).Code != pin.CodeExternalIDNotSupported {
		t.Errorf("got %v, want ErrNotFound", err)
	}
	if n := e.fake.TotalRequests(); n != 0 {
		t.Errorf("%d requests sent, want 0", n)
	}
}

func TestGetCustomer(t *testing.T) {
	e := newEnv(t, fake.Options{}, nil)
	c := e.fake.Seed(fake.ModeTest, fake.Customer{Email: "ada@example.com", FirstName: "Ada", LastName: "Lovelace"})
	ctx := context.Background()
	t.Run("OK", func(t *testing.T) {
		got, err := e.dest.GetCustomer(ctx, c.Token)
		want := sync.Customer{ID: c.Token, Email: "ada@example.com", Name: "Ada Lovelace"}
		if err != nil || got.ID != want.ID || got.Email != want.Email || got.Name != want.Name || got.ExternalID != "" || got.Metadata != nil {
			t.Errorf("got %+v, %v; want %+v", got, err, want)
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		for _, id := range []string{"cust_unknown", "", "a/b", "../customers"} {
			_, err := e.dest.GetCustomer(ctx, id)
			if !errors.Is(err, sync.ErrNotFound) {
				t.Errorf("%q: got %v, want ErrNotFound", id, err)
			}
		}
		_, err := e.dest.GetCustomer(ctx, "cust_unknown")
		if ae := apiError(t, err); ae.Status != 404 || ae.Code != fake.CodeNotFound {
			t.Errorf("status %d code %q", ae.Status, ae.Code)
		}
	})
}

func TestAuth(t *testing.T) {
	e := newEnv(t, fake.Options{}, nil)
	c := e.fake.Seed(fake.ModeTest, fake.Customer{Email: "a@example.com"})
	bad := e.adapter(func(o *pin.Options) { o.SecretKey = "sk_wrong" })
	ctx := context.Background()
	calls := map[string]func() error{
		"get": func() error { _, err := bad.GetCustomer(ctx, c.Token); return err },
		"update": func() error {
			_, err := bad.UpdateCustomer(ctx, c.Token, sync.Patch{Email: ptr("b@example.com")}, "k")
			return err
		},
		"list": func() error {
			for _, err := range bad.ListCustomers(ctx) {
				return err
			}
			return nil
		},
		"find by email": func() error {
			for _, err := range bad.FindByEmail(ctx, "a@example.com") {
				return err
			}
			return nil
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			before := e.fake.TotalRequests()
			err := call()
			if !errors.Is(err, sync.ErrFatal) {
				t.Fatalf("got %v, want ErrFatal", err)
			}
			if ae := apiError(t, err); ae.Status != 401 || ae.Code != fake.CodeUnauthenticated {
				t.Errorf("status %d code %q", ae.Status, ae.Code)
			}
			if n := e.fake.TotalRequests() - before; n != 1 {
				t.Errorf("%d requests, want 1 (401 is not retried)", n)
			}
		})
	}
	if got, _ := e.fake.Customer(fake.ModeTest, c.Token); got.Email != "a@example.com" {
		t.Error("an unauthenticated update executed")
	}
}

func TestModes(t *testing.T) {
	e := newEnv(t, fake.Options{}, nil)
	tc := e.fake.Seed(fake.ModeTest, fake.Customer{Email: "test@example.com"})
	lc := e.fake.Seed(fake.ModeLive, fake.Customer{Email: "live@example.com"})
	live := e.adapter(func(o *pin.Options) { o.SecretKey, o.Mode = liveKey, "live" })
	ctx := context.Background()
	for _, x := range []struct {
		name       string
		d          *pin.Pin
		own, other string
		email      string
	}{
		{"test", e.dest, tc.Token, lc.Token, "test@example.com"},
		{"live", live, lc.Token, tc.Token, "live@example.com"},
	} {
		t.Run(x.name, func(t *testing.T) {
			if _, err := x.d.GetCustomer(ctx, x.own); err != nil {
				t.Errorf("own customer: %v", err)
			}
			if _, err := x.d.GetCustomer(ctx, x.other); !errors.Is(err, sync.ErrNotFound) {
				t.Errorf("other mode's customer: got %v, want ErrNotFound", err)
			}
			if _, err := x.d.UpdateCustomer(ctx, x.other, sync.Patch{Name: ptr("X")}, "k"); !errors.Is(err, sync.ErrNotFound) {
				t.Errorf("update other mode's customer: got %v, want ErrNotFound", err)
			}
			var emails []string
			for c, err := range x.d.ListCustomers(ctx) {
				if err != nil {
					t.Fatal(err)
				}
				emails = append(emails, c.Email)
			}
			if len(emails) != 1 || emails[0] != x.email {
				t.Errorf("list: %v, want [%s]", emails, x.email)
			}
		})
	}
}

func TestUpdateCustomer(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name                   string
		patch                  sync.Patch
		email, first, last     string
		puts, gets, writesDiff int
	}{
		{"email only", sync.Patch{Email: ptr("new@example.com")}, "new@example.com", "Old", "Name", 1, 0, 1},
		{"name only", sync.Patch{Name: ptr("Budi Santoso Putra")}, "old@example.com", "Budi Santoso", "Putra", 1, 0, 1},
		{"both", sync.Patch{Email: ptr("x@example.com"), Name: ptr("Cher")}, "x@example.com", "Cher", "", 1, 0, 1},
		{"empty name", sync.Patch{Name: ptr("")}, "old@example.com", "", "", 1, 0, 1},
		{"empty patch reads", sync.Patch{}, "old@example.com", "Old", "Name", 0, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, fake.Options{}, nil)
			c := e.fake.Seed(fake.ModeTest, fake.Customer{Email: "old@example.com", FirstName: "Old", LastName: "Name"})
			got, err := e.dest.UpdateCustomer(ctx, c.Token, tc.patch, "idem")
			if err != nil {
				t.Fatal(err)
			}
			stored, _ := e.fake.Customer(fake.ModeTest, c.Token)
			if stored.Email != tc.email || stored.FirstName != tc.first || stored.LastName != tc.last {
				t.Errorf("stored %+v, want %s / %q / %q", stored, tc.email, tc.first, tc.last)
			}
			want := sync.Customer{ID: c.Token, Email: tc.email, Name: pin.JoinName(tc.first, tc.last)}
			if got.ID != want.ID || got.Email != want.Email || got.Name != want.Name {
				t.Errorf("returned %+v, want %+v", got, want)
			}
			if n := e.fake.RequestCount("PUT", fake.RouteCustomer); n != tc.puts {
				t.Errorf("%d PUTs, want %d", n, tc.puts)
			}
			if n := e.fake.RequestCount("GET", fake.RouteCustomer); n != tc.gets {
				t.Errorf("%d GETs, want %d", n, tc.gets)
			}
			if n := e.fake.WritesExecuted(); n != tc.writesDiff {
				t.Errorf("%d writes, want %d", n, tc.writesDiff)
			}
		})
	}
}

func TestUpdateCustomerErrors(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, fake.Options{}, nil)
	c := e.fake.Seed(fake.ModeTest, fake.Customer{Email: "old@example.com", FirstName: "Old", LastName: "Name"})
	t.Run("unsupported fields make no request", func(t *testing.T) {
		for name, p := range map[string]sync.Patch{
			"phone":    {Phone: ptr("+6281234"), Email: ptr("a@example.com")},
			"tax id":   {TaxID: ptr("NPWP")},
			"metadata": {SetMetadata: true, Metadata: map[string]string{"a": "b"}},
			"clear":    {SetMetadata: true},
		} {
			_, err := e.dest.UpdateCustomer(ctx, c.Token, p, "k")
			if !errors.Is(err, sync.ErrInvalid) || apiError(t, err).Code != pin.CodeFieldNotSupported {
				t.Errorf("%s: got %v, want ErrInvalid %s", name, err, pin.CodeFieldNotSupported)
			}
		}
		if n := e.fake.TotalRequests(); n != 0 {
			t.Errorf("%d requests, want 0", n)
		}
	})
	t.Run("ErrInvalid", func(t *testing.T) {
		for name, p := range map[string]sync.Patch{
			"bad email":   {Email: ptr("not-an-email")},
			"blank email": {Email: ptr("")},
			"long name":   {Name: ptr(strings.Repeat("n", fake.MaxNameLen+1))},
		} {
			_, err := e.dest.UpdateCustomer(ctx, c.Token, p, "k")
			if !errors.Is(err, sync.ErrInvalid) {
				t.Fatalf("%s: got %v, want ErrInvalid", name, err)
			}
			ae := apiError(t, err)
			if ae.Status != 422 || ae.Code != fake.CodeInvalidResource || !strings.Contains(ae.Message, "_invalid") {
				t.Errorf("%s: status %d code %q message %q", name, ae.Status, ae.Code, ae.Message)
			}
		}
		if got, _ := e.fake.Customer(fake.ModeTest, c.Token); got != c {
			t.Errorf("customer changed: %+v", got)
		}
	})
	t.Run("ErrNotFound", func(t *testing.T) {
		_, err := e.dest.UpdateCustomer(ctx, "cust_gone", sync.Patch{Email: ptr("a@example.com")}, "k")
		if !errors.Is(err, sync.ErrNotFound) {
			t.Errorf("got %v, want ErrNotFound", err)
		}
		_, err = e.dest.UpdateCustomer(ctx, "cust_gone", sync.Patch{}, "k")
		if !errors.Is(err, sync.ErrNotFound) {
			t.Errorf("empty patch: got %v, want ErrNotFound", err)
		}
	})
}

func TestNameRoundTrip(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, fake.Options{}, nil)
	c := e.fake.Seed(fake.ModeTest, fake.Customer{Email: "a@example.com", FirstName: "Seed", LastName: "Name"})
	for _, tc := range []struct{ name, first, last string }{
		{"Cher", "Cher", ""},
		{"Ada Lovelace", "Ada", "Lovelace"},
		{"Budi Santoso Putra", "Budi Santoso", "Putra"},
		{"José Álvarez Núñez", "José Álvarez", "Núñez"},
		{"Zoë 李小龙", "Zoë", "李小龙"},
		{"محمد بن سلمان", "محمد بن", "سلمان"},
		{"Ölaf Ünal-Straße", "Ölaf", "Ünal-Straße"},
		{"", "", ""},
		{" Lead", "", "Lead"},
		{"Trail ", "Trail ", ""},
		{"A  B", "A ", "B"},
		{" ", " ", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if f, l := pin.SplitName(tc.name); f != tc.first || l != tc.last {
				t.Errorf("SplitName = %q, %q; want %q, %q", f, l, tc.first, tc.last)
			}
			got, err := e.dest.UpdateCustomer(ctx, c.Token, sync.Patch{Name: ptr(tc.name)}, "k")
			if err != nil {
				t.Fatal(err)
			}
			if got.Name != tc.name {
				t.Errorf("update returned %q", got.Name)
			}
			stored, _ := e.fake.Customer(fake.ModeTest, c.Token)
			if stored.FirstName != tc.first || stored.LastName != tc.last {
				t.Errorf("stored %q, %q; want %q, %q", stored.FirstName, stored.LastName, tc.first, tc.last)
			}
			read, err := e.dest.GetCustomer(ctx, c.Token)
			if err != nil || read.Name != tc.name {
				t.Errorf("get: %q, %v; want %q", read.Name, err, tc.name)
			}
			for lc, err := range e.dest.ListCustomers(ctx) {
				if err != nil || lc.Name != tc.name {
					t.Errorf("list: %q, %v; want %q", lc.Name, err, tc.name)
				}
			}
		})
	}
}

func TestJoinNameCheckout(t *testing.T) {
	// Names as checkout may leave them, read and split back.
	for _, tc := range []struct{ first, last, want string }{
		{"Ada", "Lovelace", "Ada Lovelace"},
		{"Ada", "", "Ada"},
		{"", "Lovelace", " Lovelace"},
		{"", "", ""},
		{"Mary Ann", "van der Berg", "Mary Ann van der Berg"},
	} {
		got := pin.JoinName(tc.first, tc.last)
		if got != tc.want {
			t.Errorf("JoinName(%q, %q) = %q, want %q", tc.first, tc.last, got, tc.want)
		}
		if f, l := pin.SplitName(got); pin.JoinName(f, l) != got {
			t.Errorf("%q does not round-trip", got)
		}
	}
}

func TestListCustomers(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct{ n, pages int }{{0, 1}, {1, 1}, {25, 1}, {26, 2}, {60, 3}, {250, 10}} {
		t.Run(fmt.Sprint(tc.n), func(t *testing.T) {
			e := newEnv(t, fake.Options{}, nil)
			seeded := e.seed(tc.n, nthEmail)
			it := e.dest.ListCustomers(ctx)
			if n := e.fake.TotalRequests(); n != 0 {
				t.Fatalf("%d requests before iterating", n)
			}
			seen := map[string]int{}
			i := 0
			for c, err := range it {
				if err != nil {
					t.Fatal(err)
				}
				seen[c.ID]++
				if i < len(seeded) && (c.ID != seeded[i].Token || c.Email != seeded[i].Email || c.Name != "First "+fmt.Sprint(i)) {
					t.Errorf("customer %d: %+v, want %+v", i, c, seeded[i])
				}
				i++
			}
			if i != tc.n || len(seen) != tc.n {
				t.Errorf("yielded %d customers, %d distinct; want %d", i, len(seen), tc.n)
			}
			if n := e.fake.RequestCount("GET", fake.RouteCustomers); n != tc.pages {
				t.Errorf("%d list requests, want %d", n, tc.pages)
			}
		})
	}
	t.Run("stops early", func(t *testing.T) {
		e := newEnv(t, fake.Options{}, nil)
		e.seed(100, nthEmail)
		n := 0
		for _, err := range e.dest.ListCustomers(ctx) {
			if err != nil {
				t.Fatal(err)
			}
			if n++; n == 30 {
				break
			}
		}
		if got := e.fake.RequestCount("GET", fake.RouteCustomers); got != 2 {
			t.Errorf("%d list requests, want 2", got)
		}
	})
}

func TestListCustomersBadPagination(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"response":[{"token":"cust_1","email":"a@example.com","first_name":"A","last_name":""}],"status":200,"pagination":{"current":1,"next":1}}`)
	}))
	defer hs.Close()
	d, err := pin.New(pin.Options{BaseURL: hs.URL + "/1", SecretKey: "k", RequestsPerSecond: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var got []error
	for _, err := range d.ListCustomers(context.Background()) {
		got = append(got, err)
	}
	if len(got) != 2 || got[0] != nil || got[1] == nil || !strings.Contains(got[1].Error(), "pagination.next") {
		t.Errorf("got %v, want one customer then a pagination error", got)
	}
}

func TestFindByEmail(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, fake.Options{}, nil)
	// Matches on pages 1, 2 and 3, in three spellings.
	dups := map[int]string{3: "dup@example.com", 30: "Dup@Example.com", 55: "DUP@EXAMPLE.COM"}
	seeded := e.seed(60, func(i int) string {
		if d, ok := dups[i]; ok {
			return d
		}
		return nthEmail(i)
	})
	var got []string
	for c, err := range e.dest.FindByEmail(ctx, "dup@example.COM") {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, c.ID)
	}
	want := []string{seeded[3].Token, seeded[30].Token, seeded[55].Token}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for c, err := range e.dest.FindByEmail(ctx, "nobody@example.com") {
		t.Errorf("unexpected %+v, %v", c, err)
	}
	before := e.fake.TotalRequests()
	for c, err := range e.dest.FindByEmail(ctx, "") {
		t.Errorf("empty email yielded %+v, %v", c, err)
	}
	if e.fake.TotalRequests() != before {
		t.Error("an empty email made requests")
	}
}

func TestRetries(t *testing.T) {
	ctx := context.Background()
	t.Run("429 absorbed", func(t *testing.T) {
		e := newEnv(t, fake.Options{Seed: 3, Faults: fake.Faults{RateLimitRate: 0.3}}, func(o *pin.Options) { o.MaxAttempts = 10 })
		cs := e.seed(30, nthEmail)
		for _, c := range cs[:3] {
			if _, err := e.dest.UpdateCustomer(ctx, c.Token, sync.Patch{Name: ptr("New Name")}, "k"); err != nil {
				t.Fatalf("update: %v", err)
			}
		}
		n := 0
		for _, err := range e.dest.ListCustomers(ctx) {
			if err != nil {
				t.Fatalf("list: %v", err)
			}
			n++
		}
		if n != 30 {
			t.Errorf("listed %d, want 30", n)
		}
		if e.fake.TotalRequests() <= 5 {
			t.Errorf("%d requests for 5 calls: no 429 was retried", e.fake.TotalRequests())
		}
		if e.fake.WritesExecuted() != 3 {
			t.Errorf("%d writes, want 3", e.fake.WritesExecuted())
		}
	})
	t.Run("5xx retried", func(t *testing.T) {
		e := newEnv(t, fake.Options{Seed: 5, Faults: fake.Faults{ErrorRate: 0.3}}, func(o *pin.Options) { o.MaxAttempts = 10 })
		cs := e.seed(3, nthEmail)
		for _, c := range cs {
			if _, err := e.dest.UpdateCustomer(ctx, c.Token, sync.Patch{Email: ptr("n" + c.Email)}, "k"); err != nil {
				t.Fatalf("update: %v", err)
			}
			if got, err := e.dest.GetCustomer(ctx, c.Token); err != nil || got.Email != "n"+c.Email {
				t.Fatalf("get: %+v, %v", got, err)
			}
		}
		if e.fake.TotalRequests() <= 6 {
			t.Errorf("%d requests for 6 calls: no 5xx was retried", e.fake.TotalRequests())
		}
	})
	t.Run("5xx exhausted is transient", func(t *testing.T) {
		e := newEnv(t, fake.Options{Faults: fake.Faults{ErrorRate: 1}}, func(o *pin.Options) { o.MaxAttempts = 2 })
		c := e.seed(1, nthEmail)[0]
		_, err := e.dest.GetCustomer(ctx, c.Token)
		ae := apiError(t, err)
		for _, k := range []error{sync.ErrInvalid, sync.ErrFatal, sync.ErrNotFound, sync.ErrConflict} {
			if errors.Is(err, k) {
				t.Errorf("error is %v, want transient", k)
			}
		}
		if ae.Status < 500 || e.fake.TotalRequests() != 2 {
			t.Errorf("status %d after %d requests, want 5xx after 2", ae.Status, e.fake.TotalRequests())
		}
	})
	t.Run("dropped update retried", func(t *testing.T) {
		e := newEnv(t, fake.Options{Seed: 6, Faults: fake.Faults{DropAfterWriteRate: 0.3}}, func(o *pin.Options) { o.MaxAttempts = 10 })
		cs := e.seed(3, nthEmail)
		for _, c := range cs {
			got, err := e.dest.UpdateCustomer(ctx, c.Token, sync.Patch{Name: ptr("Dropped Twice")}, "k")
			if err != nil || got.Name != "Dropped Twice" {
				t.Fatalf("update: %+v, %v", got, err)
			}
		}
		if e.fake.WritesExecuted() <= 3 {
			t.Errorf("%d writes for 3 updates: no dropped write was retried", e.fake.WritesExecuted())
		}
	})
	t.Run("dropped every time", func(t *testing.T) {
		e := newEnv(t, fake.Options{Faults: fake.Faults{DropAfterWriteRate: 1}}, func(o *pin.Options) { o.MaxAttempts = 3 })
		c := e.seed(1, nthEmail)[0]
		_, err := e.dest.UpdateCustomer(ctx, c.Token, sync.Patch{Name: ptr("X Y")}, "k")
		if ae := apiError(t, err); ae.Kind != nil || ae.Code != "network_error" {
			t.Errorf("got %v (kind %v code %q), want a transient network_error", err, ae.Kind, ae.Code)
		}
		if e.fake.WritesExecuted() != 3 {
			t.Errorf("%d writes, want 3", e.fake.WritesExecuted())
		}
	})
}

func TestNonJSONError(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "<html>bad gateway</html>", http.StatusBadGateway)
	}))
	defer hs.Close()
	d, err := pin.New(pin.Options{BaseURL: hs.URL + "/1", SecretKey: "k", MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.GetCustomer(context.Background(), "cust_1")
	if ae := apiError(t, err); ae.Status != 502 || ae.Code != "http_502" || ae.Message != "Bad Gateway" {
		t.Errorf("got status %d code %q message %q", ae.Status, ae.Code, ae.Message)
	}
}

func TestCanceled(t *testing.T) {
	e := newEnv(t, fake.Options{}, nil)
	c := e.seed(1, nthEmail)[0]
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.dest.GetCustomer(ctx, c.Token); !errors.Is(err, context.Canceled) {
		t.Errorf("get: got %v, want context.Canceled", err)
	}
	for _, err := range e.dest.ListCustomers(ctx) {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("list: got %v, want context.Canceled", err)
		}
	}
}

func TestConcurrentUpdates(t *testing.T) {
	e := newEnv(t, fake.Options{}, nil)
	cs := e.seed(40, nthEmail)
	var wg stdsync.WaitGroup
	errs := make(chan error, len(cs))
	for i, c := range cs {
		wg.Go(func() {
			_, err := e.dest.UpdateCustomer(context.Background(), c.Token, sync.Patch{Name: ptr(fmt.Sprintf("Worker %d", i))}, "k")
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	for i, c := range cs {
		if got, _ := e.fake.Customer(fake.ModeTest, c.Token); got.FirstName != "Worker" || got.LastName != fmt.Sprint(i) {
			t.Errorf("customer %d: %+v", i, got)
		}
	}
}

func TestMetrics(t *testing.T) {
	e := newEnv(t, fake.Options{}, nil)
	c := e.seed(1, nthEmail)[0]
	ctx := context.Background()
	_, _ = e.dest.GetCustomer(ctx, c.Token)
	_, _ = e.dest.GetCustomer(ctx, "cust_unknown")
	fams, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		if f.GetName() != "plugipay_sync_api_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			if m.GetCounter().GetValue() == 0 {
				continue // every op x code series exists from the start
			}
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			got[strings.Join(labels, ",")] = m.GetCounter().GetValue()
		}
	}
	want := map[string]float64{
		"code=ok,destination=pin,op=get":        1,
		"code=not_found,destination=pin,op=get": 1,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", got, want)
	}
}
