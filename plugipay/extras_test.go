package plugipay

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestRaw: a raw request is signed like the typed ones, retried under one
// idempotency key on a 503, and its envelope returned.
func TestRaw(t *testing.T) {
	srv := newScriptServer(t, reply(503, errBody(CodeServiceUnavailable, "busy", "req_1")),
		reply(200, `{"data":{"id":"cus_1","loyaltyTier":"gold"},"error":null,"meta":{"requestId":"req_2"}}`))
	c := newTestClient(t, srv, nil)
	body := []byte(`{"loyaltyTier":"gold"}`)
	env, err := c.Raw(context.Background(), RawRequest{Method: http.MethodPatch, Path: "/customers/cus_1", Body: body})
	if err != nil {
		t.Fatal(err)
	}
	if env.Meta.RequestID != "req_2" || !strings.Contains(string(env.Data), `"loyaltyTier":"gold"`) {
		t.Errorf("envelope = %+v", env)
	}
	reqs := srv.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d attempts, want 2", len(reqs))
	}
	key := reqs[0].Header.Get(HeaderIdempotencyKey)
	for i, r := range reqs {
		if !r.SigOK || r.Method != http.MethodPatch || r.Target != "/api/v1/customers/cus_1" || string(r.Body) != string(body) {
			t.Errorf("attempt %d = %s %s sig %v body %s", i, r.Method, r.Target, r.SigOK, r.Body)
		}
		if got := r.Header.Get(HeaderIdempotencyKey); key == "" || got != key {
			t.Errorf("attempt %d idempotency key %q, want the first's %q", i, got, key)
		}
	}

	t.Run("ErrValidation", func(t *testing.T) {
		for _, r := range []RawRequest{{Method: "PUT", Path: "/customers"}, {Method: http.MethodGet, Path: "customers"}} {
			if _, err := c.Raw(context.Background(), r); !errors.Is(err, ErrValidation) {
				t.Errorf("%+v: err = %v, want ErrValidation", r, err)
			}
		}
	})
}

// TestWithOnBehalfOf: the account is chosen per call, over the client's.
func TestWithOnBehalfOf(t *testing.T) {
	srv := newScriptServer(t, okCustomer("cus_1"))
	c := newTestClient(t, srv, func(o *Options) { o.OnBehalfOf = "acc_default" })
	ctx := context.Background()
	for _, ctx := range []context.Context{ctx, WithOnBehalfOf(ctx, "acc_other"), WithOnBehalfOf(ctx, "")} {
		if _, err := c.Customers.Get(ctx, "cus_1"); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for _, r := range srv.requests() {
		got = append(got, r.Header.Get(HeaderOnBehalfOf))
	}
	if strings.Join(got, ",") != "acc_default,acc_other," {
		t.Errorf("On-Behalf-Of per call = %q, want acc_default, acc_other, none", got)
	}
}

// TestCustomerRaw: fields the type does not know survive in Raw, from a
// get and from a list, and the request id of a get is kept.
func TestCustomerRaw(t *testing.T) {
	srv := newScriptServer(t,
		reply(200, `{"data":{"id":"cus_1","email":"a@example.com","loyaltyTier":"gold"},"error":null,"meta":{"requestId":"req_g"}}`),
		reply(200, `{"data":[{"id":"cus_2","loyaltyTier":"silver"}],"error":null,"meta":{"requestId":"req_l","hasMore":false}}`))
	c := newTestClient(t, srv, nil)
	got, err := c.Customers.Get(context.Background(), "cus_1")
	if err != nil {
		t.Fatal(err)
	}
	var extra struct {
		LoyaltyTier string `json:"loyaltyTier"`
	}
	if err := json.Unmarshal(got.Raw, &extra); err != nil || extra.LoyaltyTier != "gold" || got.Email != "a@example.com" || got.RequestID != "req_g" {
		t.Errorf("get: %+v raw %s: %v", got, got.Raw, err)
	}
	page, err := c.Customers.List(context.Background(), ListParams{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Data) != 1 || !strings.Contains(string(page.Data[0].Raw), `"loyaltyTier":"silver"`) {
		t.Errorf("list: %+v", page.Data)
	}
}

func TestVerifyWebhook(t *testing.T) {
	const secret = "whsec_test"
	payload := []byte(`{"id":"evt_1","type":"plugipay.customer.updated.v1","data":{"object":{"id":"cus_1","externalId":"u1"}}}`)
	now := time.Unix(1_800_000_000, 0)
	at := func(d time.Duration) int64 { return now.Add(d).Unix() }
	for _, tc := range []struct {
		name    string
		payload []byte
		header  string
		secret  string
		want    error
	}{
		{"OK", payload, SignWebhook(secret, at(0), payload), secret, nil},
		{"OKWithinTolerance", payload, SignWebhook(secret, at(-299*time.Second), payload), secret, nil},
		{"OKRotatedSecret", payload, SignWebhook("whsec_old", at(0), payload) + ",v1=" + strings.Split(SignWebhook(secret, at(0), payload), "v1=")[1], secret, nil},
		{"ErrStale", payload, SignWebhook(secret, at(-301*time.Second), payload), secret, ErrWebhookTimestamp},
		{"ErrFuture", payload, SignWebhook(secret, at(301*time.Second), payload), secret, ErrWebhookTimestamp},
		{"ErrAlteredBody", []byte(strings.Replace(string(payload), "u1", "u2", 1)), SignWebhook(secret, at(0), payload), secret, ErrWebhookSignature},
		{"ErrWrongSecret", payload, SignWebhook("whsec_other", at(0), payload), secret, ErrWebhookSignature},
		{"ErrForgedTimestamp", payload, strings.Replace(SignWebhook(secret, at(-400*time.Second), payload), "t=", "t=1", 1), secret, ErrWebhookSignature},
		{"ErrNoHeader", payload, "", secret, ErrWebhookSignature},
		{"ErrGarbage", payload, "t=abc,v1=zz", secret, ErrWebhookSignature},
		{"ErrNoSecret", payload, SignWebhook("", at(0), payload), "", ErrWebhookSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := VerifyWebhook(tc.payload, tc.header, tc.secret, now, 0)
			if (tc.want == nil) != (err == nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("VerifyWebhook = %v, want %v", err, tc.want)
			}
		})
	}
	ev, err := ParseWebhook(payload, SignWebhook(secret, at(0), payload), secret, now, 0)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ev.Customer()
	if err != nil || ev.Type != EventCustomerUpdated || c.ID != "cus_1" || c.ExternalID != "u1" {
		t.Errorf("event %+v customer %+v: %v", ev, c, err)
	}
}
