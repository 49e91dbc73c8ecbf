package plugipay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// listBody builds a list envelope with the given ids and meta JSON.
func listBody(meta string, ids ...string) string {
	items := make([]string, len(ids))
	for i, id := range ids {
		items[i] = fmt.Sprintf(`{"id":%q,"externalId":"ext_%s"}`, id, id)
	}
	return `{"data":[` + strings.Join(items, ",") + `],"error":null,"meta":` + meta + `}`
}

func TestList(t *testing.T) {
	tests := []struct {
		name        string
		body        string
		wantIDs     []string
		wantCursor  string
		wantHasMore bool
		wantErr     error
	}{
		{"Flat", listBody(`{"requestId":"req_1","cursor":"c2","hasMore":true}`, "cus_1", "cus_2"),
			[]string{"cus_1", "cus_2"}, "c2", true, nil},
		{"FlatLast", listBody(`{"requestId":"req_1","cursor":null,"hasMore":false}`, "cus_1"),
			[]string{"cus_1"}, "", false, nil},
		{"Nested", listBody(`{"requestId":"req_1","page":{"limit":2,"hasMore":true,"nextCursor":"n2"}}`, "cus_1", "cus_2"),
			[]string{"cus_1", "cus_2"}, "n2", true, nil},
		{"NestedLast", listBody(`{"requestId":"req_1","page":{"limit":2,"hasMore":false,"nextCursor":null}}`, "cus_1"),
			[]string{"cus_1"}, "", false, nil},
		{"CursorOnly", listBody(`{"requestId":"req_1","cursor":"c9"}`, "cus_1"),
			[]string{"cus_1"}, "c9", true, nil},
		{"Empty", listBody(`{"requestId":"req_1","hasMore":false}`), []string{}, "", false, nil},
		{"HasMoreNoCursor", listBody(`{"requestId":"req_1","hasMore":true}`, "cus_1"), nil, "", false, ErrInvalidResponse},
		{"DataNotArray", `{"data":{"id":"cus_1"},"error":null,"meta":{"requestId":"r"}}`, nil, "", false, ErrInvalidResponse},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newScriptServer(t, reply(200, tc.body))
			c := newTestClient(t, srv, nil)
			page, err := c.Customers.List(context.Background(), ListParams{Limit: 2})
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, cus := range page.Data {
				ids = append(ids, cus.ID)
			}
			if fmt.Sprint(ids) != fmt.Sprint(tc.wantIDs) || page.Cursor != tc.wantCursor ||
				page.HasMore != tc.wantHasMore || page.RequestID != "req_1" {
				t.Errorf("page = %v %q %v %q, want %v %q %v", ids, page.Cursor, page.HasMore, page.RequestID,
					tc.wantIDs, tc.wantCursor, tc.wantHasMore)
			}
		})
	}
}

func TestList_Query(t *testing.T) {
	srv := newScriptServer(t, reply(200, listBody(`{"requestId":"r","hasMore":false}`, "cus_1", "cus_2")))
	c := newTestClient(t, srv, nil)
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("WIB", 7*3600))
	page, err := c.Customers.List(context.Background(), ListParams{
		Limit: 100, Cursor: "c/1", Email: "a+b@example.com", ExternalID: "ext_cus_2",
		CreatedAfter: created, Order: "asc",
	})
	if err != nil {
		t.Fatal(err)
	}
	r := srv.requests()[0]
	want := "/api/v1/customers?createdAfter=2026-01-01T20%3A04%3A05Z&cursor=c%2F1&email=a%2Bb%40example.com&externalId=ext_cus_2&limit=100&order=asc"
	if r.Target != want {
		t.Errorf("target = %s\nwant     %s", r.Target, want)
	}
	if !r.SigOK {
		t.Error("signature does not verify for the query target")
	}
	// An older server ignores externalId: items that do not match are dropped.
	if len(page.Data) != 1 || page.Data[0].ID != "cus_2" {
		t.Errorf("data = %+v, want only cus_2", page.Data)
	}
}

func TestList_InvalidParams(t *testing.T) {
	srv := newScriptServer(t, reply(200, listBody(`{"requestId":"r"}`)))
	c := newTestClient(t, srv, nil)
	for _, p := range []ListParams{{Limit: 101}, {Limit: -1}, {Order: "newest"}} {
		if _, err := c.Customers.List(context.Background(), p); !errors.Is(err, ErrValidation) {
			t.Errorf("List(%+v) err = %v, want ErrValidation", p, err)
		}
	}
	if n := len(srv.requests()); n != 0 {
		t.Errorf("requests = %d, want 0", n)
	}
}

// threePages serves pages of ids by cursor: "" -> p2 -> p3 -> end.
func threePages() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("cursor") {
		case "":
			reply(200, listBody(`{"requestId":"r1","cursor":"p2","hasMore":true}`, "cus_1", "cus_2"))(w, r)
		case "p2":
			reply(200, listBody(`{"requestId":"r2","page":{"hasMore":true,"nextCursor":"p3"}}`, "cus_3", "cus_4"))(w, r)
		case "p3":
			reply(200, listBody(`{"requestId":"r3","cursor":null,"hasMore":false}`, "cus_5"))(w, r)
		default:
			reply(400, errBody(CodeValidation, "bad cursor", "r"))(w, r)
		}
	}
}

func TestListAll(t *testing.T) {
	t.Run("ThreePages", func(t *testing.T) {
		srv := newScriptServer(t, threePages())
		c := newTestClient(t, srv, nil)
		seq := c.Customers.ListAll(context.Background(), ListParams{Limit: 2})
		if n := len(srv.requests()); n != 0 {
			t.Fatalf("ListAll made %d requests before iteration", n)
		}
		var ids []string
		for cus, err := range seq {
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, cus.ID)
		}
		if got, want := strings.Join(ids, ","), "cus_1,cus_2,cus_3,cus_4,cus_5"; got != want {
			t.Errorf("ids = %s, want %s", got, want)
		}
		var targets []string
		for _, r := range srv.requests() {
			targets = append(targets, r.Target)
			if !r.SigOK {
				t.Errorf("signature does not verify for %s", r.Target)
			}
		}
		want := "/api/v1/customers?limit=2 /api/v1/customers?cursor=p2&limit=2 /api/v1/customers?cursor=p3&limit=2"
		if got := strings.Join(targets, " "); got != want {
			t.Errorf("targets = %s\nwant      %s", got, want)
		}
	})
	t.Run("Break", func(t *testing.T) {
		srv := newScriptServer(t, threePages())
		c := newTestClient(t, srv, nil)
		var ids []string
		for cus, err := range c.Customers.ListAll(context.Background(), ListParams{Limit: 2}) {
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, cus.ID)
			if cus.ID == "cus_3" {
				break
			}
		}
		if got := strings.Join(ids, ","); got != "cus_1,cus_2,cus_3" {
			t.Errorf("ids = %s", got)
		}
		if n := len(srv.requests()); n != 2 {
			t.Errorf("requests = %d, want 2 (no page fetched after break)", n)
		}
	})
	t.Run("ErrorYieldedOnce", func(t *testing.T) {
		srv := newScriptServer(t,
			reply(200, listBody(`{"requestId":"r1","cursor":"p2","hasMore":true}`, "cus_1")),
			reply(403, errBody(CodeInsufficientScope, "no read scope", "r2")),
		)
		c := newTestClient(t, srv, nil)
		var ids []string
		var errs []error
		for cus, err := range c.Customers.ListAll(context.Background(), ListParams{}) {
			if err != nil {
				if cus != nil {
					t.Errorf("customer %v yielded with error", cus)
				}
				errs = append(errs, err)
				continue // the iterator must end on its own
			}
			ids = append(ids, cus.ID)
		}
		if len(ids) != 1 || len(errs) != 1 || !errors.Is(errs[0], ErrScope) {
			t.Errorf("ids = %v, errs = %v", ids, errs)
		}
		if n := len(srv.requests()); n != 2 {
			t.Errorf("requests = %d, want 2", n)
		}
	})
	t.Run("RepeatedCursor", func(t *testing.T) {
		srv := newScriptServer(t, reply(200, listBody(`{"requestId":"r","cursor":"same","hasMore":true}`, "cus_1")))
		c := newTestClient(t, srv, nil)
		var errs []error
		n := 0
		for _, err := range c.Customers.ListAll(context.Background(), ListParams{}) {
			if err != nil {
				errs = append(errs, err)
			}
			if n++; n > 10 {
				t.Fatal("iterator does not stop on a repeated cursor")
			}
		}
		if len(errs) != 1 || !errors.Is(errs[0], ErrInvalidResponse) {
			t.Errorf("errs = %v", errs)
		}
	})
}

func TestIdempotencyKey(t *testing.T) {
	srv := newScriptServer(t, okCustomer("cus_01HXAB7K3M9N2P5QRS8TVWXY3Z"))
	c := newTestClient(t, srv, nil)
	ctx := context.Background()
	t.Run("Supplied", func(t *testing.T) {
		for _, call := range []func() (*Customer, error){
			func() (*Customer, error) { return c.Customers.Create(ctx, CustomerParams{}, "idem_given") },
			func() (*Customer, error) {
				return c.Customers.Update(ctx, "cus_1", CustomerParams{Name: String("")}, "idem_given")
			},
		} {
			before := len(srv.requests())
			cus, err := call()
			if err != nil {
				t.Fatal(err)
			}
			if cus.ID != "cus_01HXAB7K3M9N2P5QRS8TVWXY3Z" || cus.Metadata["a"] != "b" {
				t.Errorf("customer = %+v", cus)
			}
			r := srv.requests()[before]
			if got := r.Header.Get(HeaderIdempotencyKey); got != "idem_given" {
				t.Errorf("%s Idempotency-Key = %q", r.Method, got)
			}
			if !r.SigOK {
				t.Errorf("%s signature does not verify", r.Method)
			}
			// The key is part of the signed string: the signature must not
			// verify without it.
			_, _, sig, _ := ParseAuthorization(r.Header.Get(HeaderAuthorization))
			var ts int64
			fmt.Sscan(r.Header.Get(HeaderTimestamp), &ts)
			if VerifySignature(testSecret, r.Method, r.Target, ts, r.Body, "", sig) {
				t.Errorf("%s signature does not cover the idempotency key", r.Method)
			}
		}
	})
	t.Run("Minted", func(t *testing.T) {
		before := len(srv.requests())
		if _, err := c.Customers.Create(ctx, CustomerParams{}, ""); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Customers.Create(ctx, CustomerParams{}, ""); err != nil {
			t.Fatal(err)
		}
		reqs := srv.requests()[before:]
		k1, k2 := reqs[0].Header.Get(HeaderIdempotencyKey), reqs[1].Header.Get(HeaderIdempotencyKey)
		if !strings.HasPrefix(k1, "idem_") || len(k1) != len("idem_")+32 || k1 == k2 {
			t.Errorf("minted keys = %q, %q", k1, k2)
		}
		if !reqs[0].SigOK || string(reqs[0].Body) != "{}" {
			t.Errorf("request = %+v", reqs[0])
		}
	})
}

func TestPathEscape(t *testing.T) {
	srv := newScriptServer(t, okCustomer("cus_1"))
	c := newTestClient(t, srv, nil)
	if _, err := c.Customers.Get(context.Background(), "cus_1/../x y?z"); err != nil {
		t.Fatal(err)
	}
	r := srv.requests()[0]
	if want := "/api/v1/customers/cus_1%2F..%2Fx%20y%3Fz"; r.Target != want {
		t.Errorf("target = %s, want %s", r.Target, want)
	}
	if !r.SigOK {
		t.Error("signature does not verify for an escaped id")
	}
}

func TestCustomerParamsBody(t *testing.T) {
	srv := newScriptServer(t, okCustomer("cus_1"))
	c := newTestClient(t, srv, nil)
	p := CustomerParams{Email: String(""), ClearMetadata: true}
	if _, err := c.Customers.Update(context.Background(), "cus_1", p, "idem_1"); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(srv.requests()[0].Body, &got); err != nil {
		t.Fatal(err)
	}
	if v, ok := got["metadata"]; !ok || v != nil || got["email"] != "" || len(got) != 2 {
		t.Errorf("body = %s", srv.requests()[0].Body)
	}
}
