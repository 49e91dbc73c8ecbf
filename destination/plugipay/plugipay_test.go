package plugipay_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	plugipaydest "github.com/plugipay-sync/plugipay-sync/destination/plugipay"
	"github.com/plugipay-sync/plugipay-sync/plugipay/emulator"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

const (
	keyID  = "key_test_dest"
	secret = "sk_test_dest_secret"
)

// env is the adapter against the emulator over real HTTP.
type env struct {
	emu *emulator.Server
	d   *plugipaydest.Destination
	url string
}

func newEnv(t *testing.T, opts ...func(*plugipaydest.Options)) *env {
	t.Helper()
	emu := emulator.New(emulator.Options{Keys: map[string]string{keyID: secret}, AccountID: "acc_dest"})
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	o := plugipaydest.Options{BaseURL: srv.URL, KeyID: keyID, Secret: secret, MaxAttempts: 2, ReadRate: -1, WriteRate: -1}
	for _, f := range opts {
		f(&o)
	}
	d, err := plugipaydest.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return &env{emu: emu, d: d, url: srv.URL}
}

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    plugipaydest.Options
	}{
		{"NoKeyID", plugipaydest.Options{BaseURL: "https://plugipay.com", Secret: secret}},
		{"NoSecret", plugipaydest.Options{BaseURL: "https://plugipay.com", KeyID: keyID}},
		{"BadURL", plugipaydest.Options{BaseURL: "ftp://x", KeyID: keyID, Secret: secret}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := plugipaydest.New(tc.o); err == nil {
				t.Fatal("New accepted it")
			}
		})
	}
}

func TestCapabilities(t *testing.T) {
	c := newEnv(t).d.Capabilities()
	want := sync.Capabilities{ExternalID: sync.ExternalIDField, UniqueExternalID: true, FilterByExternalID: true,
		IdempotentCreate: true, Create: true, Metadata: true, Phone: true, TaxID: true}
	if c != want {
		t.Errorf("capabilities = %+v, want %+v", c, want)
	}
}

// TestRoundTrip: create, get, find by externalId and email, update with
// a partial patch, list: every field survives the SDK's translation.
func TestRoundTrip(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	in := sync.Customer{ExternalID: "u1", Email: "ada@example.com", Name: "Ada Lovelace", Phone: "+6281234567890",
		TaxID: "01.234.567.8-901.000", Metadata: map[string]string{"plan": "pro"}}
	got, err := e.d.CreateCustomer(ctx, in, "idem_1")
	if err != nil {
		t.Fatal(err)
	}
	in.ID = got.ID
	if !strings.HasPrefix(got.RequestID, "req_") {
		t.Errorf("created customer carries request id %q, want the response's req_...", got.RequestID)
	}
	got.RequestID = "" // the response's, not the customer's
	if fmt.Sprint(got) != fmt.Sprint(in) {
		t.Errorf("created %+v, want %+v", got, in)
	}
	for name, find := range map[string]func() (sync.Customer, error){
		"Get":              func() (sync.Customer, error) { return e.d.GetCustomer(ctx, in.ID) },
		"FindByExternalID": func() (sync.Customer, error) { return e.d.FindByExternalID(ctx, "u1") },
		"FindByEmail": func() (sync.Customer, error) {
			for c, err := range e.d.FindByEmail(ctx, "ada@example.com") {
				return c, err
			}
			return sync.Customer{}, errors.New("none")
		},
	} {
		c, err := find()
		c.RequestID = ""
		if err != nil || fmt.Sprint(c) != fmt.Sprint(in) {
			t.Errorf("%s = %+v, %v", name, c, err)
		}
	}
	name := "Ada King"
	upd, err := e.d.UpdateCustomer(ctx, in.ID, sync.Patch{Name: &name}, "idem_2")
	if err != nil || upd.Name != name || upd.Email != in.Email || upd.Metadata["plan"] != "pro" {
		t.Errorf("after a name-only patch: %+v, %v", upd, err)
	}
	upd, err = e.d.UpdateCustomer(ctx, in.ID, sync.Patch{SetMetadata: true}, "idem_3")
	if err != nil || len(upd.Metadata) != 0 {
		t.Errorf("an empty metadata patch left %v (%v)", upd.Metadata, err)
	}
	n := 0
	for _, err := range e.d.ListCustomers(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 1 {
		t.Errorf("listed %d customers", n)
	}
}

// TestErrorKinds: the SDK's errors reach the reconciler as its kinds.
func TestErrorKinds(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.d.CreateCustomer(ctx, sync.Customer{ExternalID: "dup"}, "idem_a"); err != nil {
		t.Fatal(err)
	}
	_, errConflict := e.d.CreateCustomer(ctx, sync.Customer{ExternalID: "dup"}, "idem_b")
	_, errInvalid := e.d.CreateCustomer(ctx, sync.Customer{ExternalID: "bad", Email: "not an email"}, "idem_c")
	_, errNotFound := e.d.GetCustomer(ctx, "cus_01HXAB7K3M9N2P5QRS8TVWXY3Z")
	_, errMissing := e.d.FindByExternalID(ctx, "nobody")
	_, errReused := e.d.CreateCustomer(ctx, sync.Customer{ExternalID: "other"}, "idem_a")
	bad, err := plugipaydest.New(plugipaydest.Options{BaseURL: e.url, KeyID: keyID, Secret: "sk_test_wrong", MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, errAuth := bad.GetCustomer(ctx, "cus_x")
	for _, tc := range []struct {
		name string
		err  error
		kind error
	}{
		{"Conflict", errConflict, sync.ErrConflict},
		{"Invalid", errInvalid, sync.ErrInvalid},
		{"NotFound", errNotFound, sync.ErrNotFound},
		{"NotFoundByExternalID", errMissing, sync.ErrNotFound},
		{"IdempotencyKeyReused", errReused, sync.ErrIdempotency},
		{"Auth", errAuth, sync.ErrFatal},
	} {
		var ae *sync.APIError
		if !errors.Is(tc.err, tc.kind) || !errors.As(tc.err, &ae) {
			t.Errorf("%s: %v, want an *sync.APIError of kind %v", tc.name, tc.err, tc.kind)
		}
	}
}

// TestProbe: the identity a run checks its state DB against.
func TestProbe(t *testing.T) {
	e := newEnv(t, func(o *plugipaydest.Options) { o.OnBehalfOf = "" })
	ctx := context.Background()
	id, err := e.d.Probe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if id.API != "plugipay" || id.Host != "127.0.0.1" || id.Mode != "test" || id.Account != "" {
		t.Errorf("empty workspace: %+v", id)
	}
	if _, err := e.d.CreateCustomer(ctx, sync.Customer{ExternalID: "u1"}, "idem_p"); err != nil {
		t.Fatal(err)
	}
	if id, err = e.d.Probe(ctx); err != nil || id.Account != "acc_dest" {
		t.Errorf("with a customer: %+v, %v; want account acc_dest", id, err)
	}
}

// TestMetrics: calls are counted under destination="plugipay".
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, func(o *plugipaydest.Options) { o.Registerer = reg; o.Timeout = time.Second })
	if _, err := e.d.GetCustomer(context.Background(), "cus_01HXAB7K3M9N2P5QRS8TVWXY3Z"); !errors.Is(err, sync.ErrNotFound) {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		if mf.GetName() != "plugipay_sync_api_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			if l["destination"] == "plugipay" && l["op"] == "get" && l["code"] == "not_found" && m.GetCounter().GetValue() == 1 {
				found = true
			}
		}
	}
	if !found {
		t.Error("no plugipay_sync_api_requests_total{destination=plugipay,op=get,code=not_found} 1")
	}
}
