package paygate_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/plugipay-sync/plugipay-sync/destination/paygate"
	"github.com/plugipay-sync/plugipay-sync/destination/paygate/fake"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

const key = "sk_test_paygate"

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// env is one adapter talking to one fake over real HTTP.
type env struct {
	d   *paygate.Destination
	f   *fake.Server
	url string

	mu     gosync.Mutex
	script func(n int) fake.Faults // faults of the n-th request (1-based); nil = none
	n      int
}

// setScript makes the fake inject script(n) into its n-th request from
// now on, so a test scripts each attempt of a call.
func (e *env) setScript(script func(n int) fake.Faults) {
	e.mu.Lock()
	e.script, e.n = script, 0
	e.mu.Unlock()
}

func (e *env) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	if e.script != nil {
		e.n++
		if err := e.f.SetFaults(e.script(e.n)); err != nil {
			panic(err)
		}
	}
	e.mu.Unlock()
	e.f.ServeHTTP(w, r)
}

func newEnv(t *testing.T, edit func(*paygate.Options)) *env {
	t.Helper()
	e := &env{f: fake.New(fake.Options{Keys: []string{key}, Seed: 1, Now: func() time.Time { return t0 }})}
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	e.url = srv.URL + "/v1"
	o := paygate.Options{BaseURL: e.url, SecretKey: key, RequestsPerSecond: 10000, Timeout: 5 * time.Second}
	if edit != nil {
		edit(&o)
	}
	d, err := paygate.New(o)
	if err != nil {
		t.Fatal(err)
	}
	e.d = d
	return e
}

func put(t *testing.T, f *fake.Server, c fake.Customer) fake.Customer {
	t.Helper()
	got, err := f.Put(c)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// checkKind checks that err is a *sync.APIError of kind (nil: transient)
// with code, if code is not empty.
func checkKind(t *testing.T, err error, kind error, code string) {
	t.Helper()
	var ae *sync.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("err = %v (%T), want a *sync.APIError", err, err)
	}
	if ae.Kind != kind {
		t.Errorf("kind = %v, want %v (err %v)", ae.Kind, kind, err)
	}
	if code != "" && ae.Code != code {
		t.Errorf("code = %q, want %q (err %v)", ae.Code, code, err)
	}
}

func collect(t *testing.T, seq func(yield func(sync.Customer, error) bool)) []sync.Customer {
	t.Helper()
	var out []sync.Customer
	for c, err := range seq {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

func TestNew(t *testing.T) {
	tests := []struct {
		name string
		o    paygate.Options
		want string // error substring; "" = OK
	}{
		{"OK", paygate.Options{BaseURL: "https://api.paygate.example/v1", SecretKey: "sk_live_x"}, ""},
		{"NoBaseURL", paygate.Options{SecretKey: "sk_test_x"}, "BaseURL is required"},
		{"BadScheme", paygate.Options{BaseURL: "ftp://h/v1", SecretKey: "sk_test_x"}, "http(s) URL with a host"},
		{"NoHost", paygate.Options{BaseURL: "https:///v1", SecretKey: "sk_test_x"}, "http(s) URL with a host"},
		{"NoKey", paygate.Options{BaseURL: "https://h/v1"}, "sk_test_... or sk_live_..."},
		{"PublishableKey", paygate.Options{BaseURL: "https://h/v1", SecretKey: "pk_test_x"}, "sk_test_... or sk_live_..."},
		{"BarePrefix", paygate.Options{BaseURL: "https://h/v1", SecretKey: "sk_test_"}, "sk_test_... or sk_live_..."},
		{"KeyWhitespace", paygate.Options{BaseURL: "https://h/v1", SecretKey: "sk_test_a b"}, "whitespace"},
		{"LongExternalIDKey", paygate.Options{BaseURL: "https://h/v1", SecretKey: "sk_test_x", ExternalIDKey: strings.Repeat("k", 41)}, "at most 40"},
		{"NegativeRate", paygate.Options{BaseURL: "https://h/v1", SecretKey: "sk_test_x", RequestsPerSecond: -1}, "must not be negative"},
		{"NegativeAttempts", paygate.Options{BaseURL: "https://h/v1", SecretKey: "sk_test_x", MaxAttempts: -1}, "must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := paygate.New(tt.o)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("err = %v", err)
			case tt.want == "" && d == nil:
				t.Fatal("nil Destination")
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestCapabilities(t *testing.T) {
	e := newEnv(t, nil)
	want := sync.Capabilities{ExternalID: sync.ExternalIDMetadata, Create: true, Metadata: true, Phone: true}
	if got := e.d.Capabilities(); got != want {
		t.Errorf("Capabilities() = %+v, want %+v", got, want)
	}
	if err := sync.CheckMode(sync.ModeUpsert, e.d.Capabilities()); err != nil {
		t.Error(err)
	}
}

func TestCreateRoundTrip(t *testing.T) {
	for _, tt := range []struct{ name, extKey, stored string }{
		{"DefaultKey", "", "crm_user_id"},
		{"CustomKey", "user_id", "user_id"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(o *paygate.Options) { o.ExternalIDKey = tt.extKey })
			in := sync.Customer{ExternalID: "u1", Email: "ada@example.com", Name: "Ada", Phone: "+44 20", Metadata: map[string]string{"tier": "gold"}}
			got, err := e.d.CreateCustomer(context.Background(), in, "idem-ignored")
			if err != nil {
				t.Fatal(err)
			}
			want := in
			want.ID = got.ID
			if !equal(got, want) {
				t.Errorf("created %+v, want %+v", got, want)
			}
			stored, ok := e.f.Customer(got.ID)
			if !ok || !maps.Equal(stored.Metadata, map[string]string{tt.stored: "u1", "tier": "gold"}) {
				t.Errorf("stored metadata %v, want the external id under %q", stored.Metadata, tt.stored)
			}
			read, err := e.d.GetCustomer(context.Background(), got.ID)
			if err != nil || !equal(read, want) {
				t.Errorf("GetCustomer = %+v, %v; want %+v", read, err, want)
			}
			if in.Metadata["tier"] != "gold" || len(in.Metadata) != 1 {
				t.Errorf("CreateCustomer changed the caller's metadata: %v", in.Metadata)
			}
		})
	}
	t.Run("NoMetadata", func(t *testing.T) {
		e := newEnv(t, nil)
		got, err := e.d.CreateCustomer(context.Background(), sync.Customer{ExternalID: "u2"}, "")
		if err != nil || got.ExternalID != "u2" || got.Metadata != nil || got.Email != "" {
			t.Errorf("got %+v, %v", got, err)
		}
	})
}

func equal(a, b sync.Customer) bool {
	return a.ID == b.ID && a.ExternalID == b.ExternalID && a.Email == b.Email && a.Name == b.Name &&
		a.Phone == b.Phone && a.TaxID == b.TaxID && maps.Equal(a.Metadata, b.Metadata)
}

func TestCreateRefused(t *testing.T) {
	tests := []struct {
		name string
		c    sync.Customer
		code string
	}{
		{"NoExternalID", sync.Customer{Email: "a@example.com"}, paygate.CodeMissingExternalID},
		{"ReservedKey", sync.Customer{ExternalID: "u1", Metadata: map[string]string{"crm_user_id": "u9"}}, paygate.CodeReservedMetadataKey},
		{"ReservedKeySameValue", sync.Customer{ExternalID: "u1", Metadata: map[string]string{"crm_user_id": "u1"}}, paygate.CodeReservedMetadataKey},
		{"TaxID", sync.Customer{ExternalID: "u1", TaxID: "GB123"}, paygate.CodeUnsupportedField},
	}
	e := newEnv(t, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.d.CreateCustomer(context.Background(), tt.c, "k")
			checkKind(t, err, sync.ErrInvalid, tt.code)
		})
	}
	if n := e.f.TotalRequests(); n != 0 {
		t.Errorf("%d requests sent, want 0", n)
	}
}

func TestCreateInvalid(t *testing.T) {
	e := newEnv(t, nil)
	for _, tt := range []struct {
		name string
		c    sync.Customer
		code string
	}{
		{"BadEmail", sync.Customer{ExternalID: "u1", Email: "not-an-email"}, fake.CodeEmailInvalid},
		{"LongName", sync.Customer{ExternalID: "u1", Name: strings.Repeat("n", 257)}, fake.CodeParameterInvalid},
		{"LongMetadataValue", sync.Customer{ExternalID: "u1", Metadata: map[string]string{"k": strings.Repeat("v", 501)}}, fake.CodeParameterInvalid},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.d.CreateCustomer(context.Background(), tt.c, "")
			checkKind(t, err, sync.ErrInvalid, tt.code)
		})
	}
	if e.f.CustomerCount() != 0 || e.f.RequestCount("POST", fake.RouteCustomers) != 3 {
		t.Errorf("customers %d, POSTs %d; want 0, 3 (a 400 is not retried)", e.f.CustomerCount(), e.f.RequestCount("POST", fake.RouteCustomers))
	}
}

func ptr(s string) *string { return &s }

func TestUpdate(t *testing.T) {
	tests := []struct {
		name      string
		patch     sync.Patch
		want      sync.Customer // ID filled in
		stored    map[string]string
		method    string // the one call expected: "PATCH" or "GET"
		wantPatch bool
	}{
		{
			name:   "Email",
			patch:  sync.Patch{Email: ptr("new@example.com")},
			want:   sync.Customer{ExternalID: "u1", Email: "new@example.com", Name: "Ada", Metadata: map[string]string{"foreign": "x", "owned": "a"}},
			stored: map[string]string{"crm_user_id": "u1", "foreign": "x", "owned": "a"},
			method: "PATCH",
		},
		{
			name:   "ClearName",
			patch:  sync.Patch{Name: ptr("")},
			want:   sync.Customer{ExternalID: "u1", Email: "ada@example.com", Metadata: map[string]string{"foreign": "x", "owned": "a"}},
			stored: map[string]string{"crm_user_id": "u1", "foreign": "x", "owned": "a"},
			method: "PATCH",
		},
		{
			name:   "ForeignKeysSurvive",
			patch:  sync.Patch{SetMetadata: true, Metadata: map[string]string{"foreign": "x", "owned": "b"}},
			want:   sync.Customer{ExternalID: "u1", Email: "ada@example.com", Name: "Ada", Metadata: map[string]string{"foreign": "x", "owned": "b"}},
			stored: map[string]string{"crm_user_id": "u1", "foreign": "x", "owned": "b"},
			method: "PATCH",
		},
		{
			name:   "MetadataUnset",
			patch:  sync.Patch{SetMetadata: true, Metadata: map[string]string{"foreign": "x"}, MetadataUnset: []string{"owned"}},
			want:   sync.Customer{ExternalID: "u1", Email: "ada@example.com", Name: "Ada", Metadata: map[string]string{"foreign": "x"}},
			stored: map[string]string{"crm_user_id": "u1", "foreign": "x"},
			method: "PATCH",
		},
		{
			name:   "UnsetEverything",
			patch:  sync.Patch{SetMetadata: true, MetadataUnset: []string{"foreign", "owned"}},
			want:   sync.Customer{ExternalID: "u1", Email: "ada@example.com", Name: "Ada"},
			stored: map[string]string{"crm_user_id": "u1"},
			method: "PATCH",
		},
		{
			name: "ReservedKeyNeverTouched",
			patch: sync.Patch{Phone: ptr("+1"), SetMetadata: true,
				Metadata: map[string]string{"crm_user_id": "evil", "foreign": "x", "owned": "a"}, MetadataUnset: []string{"crm_user_id"}},
			want:   sync.Customer{ExternalID: "u1", Email: "ada@example.com", Name: "Ada", Phone: "+1", Metadata: map[string]string{"foreign": "x", "owned": "a"}},
			stored: map[string]string{"crm_user_id": "u1", "foreign": "x", "owned": "a"},
			method: "PATCH",
		},
		{
			name:   "EmptyPatchReads",
			patch:  sync.Patch{},
			want:   sync.Customer{ExternalID: "u1", Email: "ada@example.com", Name: "Ada", Metadata: map[string]string{"foreign": "x", "owned": "a"}},
			stored: map[string]string{"crm_user_id": "u1", "foreign": "x", "owned": "a"},
			method: "GET",
		},
		{
			name:   "OnlyReservedKeyReads",
			patch:  sync.Patch{SetMetadata: true, MetadataUnset: []string{"crm_user_id"}},
			want:   sync.Customer{ExternalID: "u1", Email: "ada@example.com", Name: "Ada", Metadata: map[string]string{"foreign": "x", "owned": "a"}},
			stored: map[string]string{"crm_user_id": "u1", "foreign": "x", "owned": "a"},
			method: "GET",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			c := put(t, e.f, fake.Customer{Email: "ada@example.com", Name: "Ada",
				Metadata: map[string]string{"crm_user_id": "u1", "foreign": "x", "owned": "a"}})
			got, err := e.d.UpdateCustomer(context.Background(), c.ID, tt.patch, "idem")
			if err != nil {
				t.Fatal(err)
			}
			want := tt.want
			want.ID = c.ID
			if !equal(got, want) {
				t.Errorf("got  %+v\nwant %+v", got, want)
			}
			stored, _ := e.f.Customer(c.ID)
			if !maps.Equal(stored.Metadata, tt.stored) {
				t.Errorf("stored metadata %v, want %v", stored.Metadata, tt.stored)
			}
			if n := e.f.RequestCount(tt.method, fake.RouteCustomer); n != 1 || e.f.TotalRequests() != 1 {
				t.Errorf("%s requests %d, total %d; want exactly one %s", tt.method, n, e.f.TotalRequests(), tt.method)
			}
		})
	}

	t.Run("TaxIDRefused", func(t *testing.T) {
		e := newEnv(t, nil)
		_, err := e.d.UpdateCustomer(context.Background(), "cus_any", sync.Patch{TaxID: ptr("GB1"), Name: ptr("x")}, "")
		checkKind(t, err, sync.ErrInvalid, paygate.CodeUnsupportedField)
		if e.f.TotalRequests() != 0 {
			t.Errorf("%d requests, want 0", e.f.TotalRequests())
		}
	})
	t.Run("NotFound", func(t *testing.T) {
		e := newEnv(t, nil)
		_, err := e.d.UpdateCustomer(context.Background(), "cus_nope", sync.Patch{Name: ptr("x")}, "")
		checkKind(t, err, sync.ErrNotFound, fake.CodeResourceMissing)
		_, err = e.d.UpdateCustomer(context.Background(), "cus_nope", sync.Patch{}, "")
		checkKind(t, err, sync.ErrNotFound, fake.CodeResourceMissing)
	})
	t.Run("Invalid", func(t *testing.T) {
		e := newEnv(t, nil)
		c := put(t, e.f, fake.Customer{})
		_, err := e.d.UpdateCustomer(context.Background(), c.ID, sync.Patch{Email: ptr("nope")}, "")
		checkKind(t, err, sync.ErrInvalid, fake.CodeEmailInvalid)
	})
}

func TestGetNotFound(t *testing.T) {
	e := newEnv(t, nil)
	c := put(t, e.f, fake.Customer{Metadata: map[string]string{"crm_user_id": "u1"}})
	req, _ := http.NewRequest("DELETE", e.url+"/customers/"+c.ID, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("delete: %v %v", resp, err)
	}
	resp.Body.Close()
	for _, id := range []string{c.ID, "cus_unknown", "weird/../id"} {
		t.Run(id, func(t *testing.T) {
			_, err := e.d.GetCustomer(context.Background(), id)
			checkKind(t, err, sync.ErrNotFound, "")
			if !errors.Is(err, sync.ErrNotFound) {
				t.Errorf("errors.Is(err, ErrNotFound) = false: %v", err)
			}
		})
	}
}

func TestFindByExternalID(t *testing.T) {
	e := newEnv(t, nil)
	put(t, e.f, fake.Customer{Metadata: map[string]string{"crm_user_id": "u1"}})
	_, err := e.d.FindByExternalID(context.Background(), "u1")
	checkKind(t, err, sync.ErrNotFound, paygate.CodeFilterUnsupported)
	if e.f.TotalRequests() != 0 {
		t.Errorf("%d requests, want 0", e.f.TotalRequests())
	}
}

func TestFindByEmail(t *testing.T) {
	e := newEnv(t, nil)
	want := map[string]bool{}
	for i := range 230 {
		email := "other@example.com"
		if i%3 == 0 {
			email = "ada@example.com"
		}
		c := put(t, e.f, fake.Customer{Email: email, CreatedAt: t0.Add(time.Duration(i) * time.Second)})
		if i%3 == 0 {
			want[c.ID] = true
		}
	}
	put(t, e.f, fake.Customer{Email: "Ada@example.com"}) // exact match only
	got := collect(t, e.d.FindByEmail(context.Background(), "ada@example.com"))
	if len(got) != len(want) {
		t.Fatalf("got %d customers, want %d", len(got), len(want))
	}
	for _, c := range got {
		if !want[c.ID] || c.Email != "ada@example.com" {
			t.Errorf("unexpected %+v", c)
		}
		delete(want, c.ID)
	}
	if n := e.f.RequestCount("GET", fake.RouteCustomers); n != 1 { // 77 matches: one page of 100
		t.Errorf("%d list requests, want 1", n)
	}
	if got := collect(t, e.d.FindByEmail(context.Background(), "nobody@example.com")); len(got) != 0 {
		t.Errorf("got %d customers for an unknown email", len(got))
	}
}

func TestListCustomers(t *testing.T) {
	e := newEnv(t, nil)
	ids := map[string]string{} // id -> external id
	for i := range 250 {
		// Three customers per second: the id breaks created_at ties.
		c := put(t, e.f, fake.Customer{CreatedAt: t0.Add(time.Duration(i/3) * time.Second),
			Metadata: map[string]string{"crm_user_id": fmt.Sprintf("u%d", i), "n": "1"}})
		ids[c.ID] = fmt.Sprintf("u%d", i)
	}
	seen := map[string]int{}
	for _, c := range collect(t, e.d.ListCustomers(context.Background())) {
		seen[c.ID]++
		if c.ExternalID != ids[c.ID] || !maps.Equal(c.Metadata, map[string]string{"n": "1"}) {
			t.Errorf("customer %+v, want external id %q and metadata without it", c, ids[c.ID])
		}
	}
	if len(seen) != 250 {
		t.Errorf("saw %d customers, want 250", len(seen))
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("%s yielded %d times", id, n)
		}
	}
	if n := e.f.RequestCount("GET", fake.RouteCustomers); n != 3 {
		t.Errorf("%d list requests, want 3 pages of up to 100", n)
	}

	t.Run("Empty", func(t *testing.T) {
		e := newEnv(t, nil)
		if got := collect(t, e.d.ListCustomers(context.Background())); len(got) != 0 {
			t.Errorf("got %d customers", len(got))
		}
	})
	t.Run("Lazy", func(t *testing.T) {
		before := e.f.TotalRequests()
		seq := e.d.ListCustomers(context.Background())
		if e.f.TotalRequests() != before {
			t.Error("ListCustomers sent a request before iteration")
		}
		for range seq {
			break
		}
		if n := e.f.TotalRequests() - before; n != 1 {
			t.Errorf("breaking after the first customer sent %d requests, want 1", n)
		}
	})
	t.Run("Canceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		var errs []error
		for _, err := range e.d.ListCustomers(ctx) {
			errs = append(errs, err)
		}
		if len(errs) != 1 || !errors.Is(errs[0], context.Canceled) {
			t.Errorf("got %v, want one error wrapping context.Canceled", errs)
		}
	})
}

func TestListCreatedSince(t *testing.T) {
	e := newEnv(t, nil)
	for i := range 150 { // old
		put(t, e.f, fake.Customer{CreatedAt: t0.Add(-time.Hour + time.Duration(i)*time.Second)})
	}
	put(t, e.f, fake.Customer{CreatedAt: t0.Add(-time.Second)}) // just before since
	var want []string
	for i := range 120 { // recent: at or after since
		c := put(t, e.f, fake.Customer{CreatedAt: t0.Add(time.Duration(i) * time.Second),
			Metadata: map[string]string{"crm_user_id": fmt.Sprintf("r%d", i)}})
		want = append(want, c.ID)
	}
	var got []string
	for _, c := range collect(t, e.d.ListCreatedSince(context.Background(), t0.Add(500*time.Millisecond))) {
		got = append(got, c.ID)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("got %d customers, want the %d recent ones", len(got), len(want))
	}
}

func TestAuth(t *testing.T) {
	e := newEnv(t, func(o *paygate.Options) { o.SecretKey = "sk_live_unknown" })
	ctx := context.Background()
	_, err := e.d.GetCustomer(ctx, "cus_x")
	checkKind(t, err, sync.ErrFatal, fake.CodeInvalidAPIKey)
	_, err = e.d.CreateCustomer(ctx, sync.Customer{ExternalID: "u1"}, "")
	checkKind(t, err, sync.ErrFatal, fake.CodeInvalidAPIKey)
	for _, err := range e.d.ListCustomers(ctx) {
		checkKind(t, err, sync.ErrFatal, fake.CodeInvalidAPIKey)
	}
	if n := e.f.TotalRequests(); n != 3 {
		t.Errorf("%d requests, want 3 (a 401 is not retried)", n)
	}
}

// first returns a script injecting f into the first n requests only.
func first(n int, f fake.Faults) func(int) fake.Faults {
	return func(i int) fake.Faults {
		if i <= n {
			return f
		}
		return fake.Faults{}
	}
}

var (
	err500    = fake.Faults{ErrorRate: 1, Status: 500}
	err503    = fake.Faults{ErrorRate: 1, Status: 503}
	limited   = fake.Faults{RateLimitRate: 1}
	dropAfter = fake.Faults{DropAfterWriteRate: 1}
	dropped   = fake.Faults{DropRate: 1}
)

func TestCreateRetries(t *testing.T) {
	tests := []struct {
		name      string
		script    func(int) fake.Faults
		ok        bool
		posts     int // POSTs the fake received
		customers int // customers the fake holds afterwards
	}{
		{"429Retried", first(2, limited), true, 3, 1},
		{"500NotRetried", first(1, err500), false, 1, 0},
		{"503NotRetried", first(1, err503), false, 1, 0},
		{"DropNotRetried", first(1, dropped), false, 1, 0},
		// The create executed but its answer was lost: transient, and the
		// customer exists on the fake. The reconciler must resolve it.
		{"DropAfterWrite", first(1, dropAfter), false, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.setScript(tt.script)
			got, err := e.d.CreateCustomer(context.Background(), sync.Customer{ExternalID: "u1", Email: "a@example.com"}, "k")
			if tt.ok {
				if err != nil || got.ExternalID != "u1" {
					t.Fatalf("got %+v, %v", got, err)
				}
			} else {
				checkKind(t, err, nil, "")
			}
			if n := e.f.RequestCount("POST", fake.RouteCustomers); n != tt.posts {
				t.Errorf("%d POSTs, want %d", n, tt.posts)
			}
			if n := e.f.CustomerCount(); n != tt.customers {
				t.Errorf("%d customers, want %d", n, tt.customers)
			}
			if tt.name == "DropAfterWrite" {
				found := collect(t, e.d.ListCreatedSince(context.Background(), t0))
				if len(found) != 1 || found[0].ExternalID != "u1" {
					t.Errorf("ListCreatedSince after the lost answer = %+v, want the u1 customer", found)
				}
			}
		})
	}
}

func TestIdempotentRetries(t *testing.T) {
	tests := []struct {
		name     string
		script   func(int) fake.Faults
		call     func(*env, string) error
		method   string
		route    string
		attempts int
		ok       bool
	}{
		{"Update5xx", first(2, err500), update, "PATCH", fake.RouteCustomer, 3, true},
		{"UpdateDropAfterWrite", first(1, dropAfter), update, "PATCH", fake.RouteCustomer, 2, true},
		{"Update429", first(1, limited), update, "PATCH", fake.RouteCustomer, 2, true},
		{"Get5xx", first(1, err503), get, "GET", fake.RouteCustomer, 2, true},
		{"GetDropped", first(1, dropped), get, "GET", fake.RouteCustomer, 2, true},
		{"List5xx", first(1, err500), list, "GET", fake.RouteCustomers, 2, true},
		{"Get5xxExhausted", first(10, err500), get, "GET", fake.RouteCustomer, 3, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(o *paygate.Options) { o.MaxAttempts = 3 })
			c := put(t, e.f, fake.Customer{Name: "old", Metadata: map[string]string{"crm_user_id": "u1"}})
			e.setScript(tt.script)
			err := tt.call(e, c.ID)
			if tt.ok && err != nil {
				t.Fatal(err)
			}
			if !tt.ok {
				checkKind(t, err, nil, "")
			}
			if n := e.f.RequestCount(tt.method, tt.route); n != tt.attempts {
				t.Errorf("%d %s requests, want %d", n, tt.method, tt.attempts)
			}
		})
	}
}

func update(e *env, id string) error {
	got, err := e.d.UpdateCustomer(context.Background(), id, sync.Patch{Name: ptr("new")}, "")
	if err == nil && (got.Name != "new" || got.ExternalID != "u1") {
		err = fmt.Errorf("updated %+v", got)
	}
	return err
}

func get(e *env, id string) error {
	_, err := e.d.GetCustomer(context.Background(), id)
	return err
}

func list(e *env, _ string) error {
	for _, err := range e.d.ListCustomers(context.Background()) {
		if err != nil {
			return err
		}
	}
	return nil
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, func(o *paygate.Options) { o.Registerer = reg })
	if _, err := e.d.CreateCustomer(context.Background(), sync.Customer{ExternalID: "u1"}, ""); err != nil {
		t.Fatal(err)
	}
	_, _ = e.d.GetCustomer(context.Background(), "cus_nope")
	// Every op x code series exists from the start; these two moved.
	want := map[string]float64{"code=not_found,destination=paygate,op=get": 1, "code=ok,destination=paygate,op=create": 1}
	if got := nonZero(t, reg, "plugipay_sync_api_requests_total"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// nonZero returns the series of the counter name in reg that are not 0,
// keyed by their labels.
func nonZero(t *testing.T, reg prometheus.Gatherer, name string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range mfs {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if m.GetCounter().GetValue() == 0 {
				continue
			}
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			got[strings.Join(labels, ",")] = m.GetCounter().GetValue()
		}
	}
	return got
}
