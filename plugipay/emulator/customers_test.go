package emulator

import (
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestEnvelope(t *testing.T) {
	e := newEnv(t, Options{AccountID: "acc_test"})
	r := e.do(req{method: "POST", target: "/api/v1/customers", body: `{}`, idem: newIdem()})
	expect(t, r, 201, "")
	if !strings.Contains(string(r.raw), `"error":null`) {
		t.Errorf("error is not null: %s", r.raw)
	}
	if id, _ := r.env.Meta["requestId"].(string); !strings.HasPrefix(id, "req_") || len(id) < 10 {
		t.Errorf("meta.requestId = %q", id)
	}
	if _, err := time.Parse(time.RFC3339, r.env.Meta["timestamp"].(string)); err != nil {
		t.Errorf("meta.timestamp: %v", err)
	}
	c := r.customer(t)
	id := c["id"].(string)
	if !strings.HasPrefix(id, "cus_") || len(id) != 4+26 {
		t.Errorf("id = %q, want cus_ + 26-char ULID", id)
	}
	for _, f := range []string{"externalId", "email", "name", "phone", "taxId", "defaultPaymentTokenId", "metadata"} {
		if v, ok := c[f]; !ok || v != nil {
			t.Errorf("%s = %v (present %t), want null", f, v, ok)
		}
	}
	if c["accountId"] != "acc_test" || !strings.Contains(c["arn"].(string), id) {
		t.Errorf("accountId/arn = %v %v", c["accountId"], c["arn"])
	}
	if c["createdAt"] != "2026-01-01T00:00:00.000Z" || c["updatedAt"] != c["createdAt"] {
		t.Errorf("createdAt/updatedAt = %v %v", c["createdAt"], c["updatedAt"])
	}

	t.Run("ErrorShape", func(t *testing.T) {
		r := e.do(req{method: "GET", target: "/api/v1/customers/cus_missing"})
		expect(t, r, 404, "not_found")
		if string(r.env.Data) != "null" || r.env.Error.DocURL == "" || r.env.Error.Message == "" {
			t.Errorf("error envelope: %s", r.raw)
		}
	})
}

func TestRoutes(t *testing.T) {
	e := newEnv(t, Options{})
	id := e.create(`{"name":"Ada"}`)
	tests := []struct {
		name, method, target string
		wantStatus           int
		wantCode             string
	}{
		{"GetOK", "GET", "/api/v1/customers/" + id, 200, ""},
		{"GetMissing", "GET", "/api/v1/customers/cus_01HXAB7K3M9N2P5QRS8TVWXY3Z", 404, "not_found"},
		{"UnknownRoute", "GET", "/api/v1/invoices", 404, "not_found"},
		{"TrailingSlash", "GET", "/api/v1/customers/", 404, "not_found"},
		{"Nested", "GET", "/api/v1/customers/" + id + "/x", 404, "not_found"},
		{"DeleteNotAllowed", "DELETE", "/api/v1/customers/" + id, 405, "method_not_allowed"},
		{"PutNotAllowed", "PUT", "/api/v1/customers", 405, "method_not_allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			expect(t, e.do(req{method: tt.method, target: tt.target}), tt.wantStatus, tt.wantCode)
		})
	}
	t.Run("PatchMissing", func(t *testing.T) {
		r := e.do(req{method: "PATCH", target: "/api/v1/customers/cus_nope", body: `{"name":"x"}`, idem: newIdem()})
		expect(t, r, 404, "not_found")
	})
}

func TestIdempotency(t *testing.T) {
	const body = `{"externalId":"u1","email":"ada@example.com"}`
	post := func(e *env, key, body string) *response {
		return e.do(req{method: "POST", target: "/api/v1/customers", body: body, idem: key})
	}

	t.Run("MissingKey", func(t *testing.T) {
		e := newEnv(t, Options{})
		expect(t, post(e, "", body), 400, "validation_error")
		r := e.do(req{method: "PATCH", target: "/api/v1/customers/cus_x", body: body})
		expect(t, r, 400, "validation_error")
		if e.srv.WritesExecuted() != 0 {
			t.Fatal("a write executed without a key")
		}
	})

	t.Run("ReplaySameBody", func(t *testing.T) {
		e := newEnv(t, Options{})
		first := post(e, "idem_a", body)
		expect(t, first, 201, "")
		e.clock.Advance(time.Hour)
		second := post(e, "idem_a", body)
		expect(t, second, 201, "")
		if string(first.env.Data) != string(second.env.Data) {
			t.Fatalf("replayed data differs:\n%s\n%s", first.env.Data, second.env.Data)
		}
		if second.header.Get("Idempotent-Replayed") != "true" {
			t.Error("replay not marked")
		}
		if first.env.Meta["requestId"] == second.env.Meta["requestId"] {
			t.Error("replay reused the requestId")
		}
		if got, want := e.srv.WritesExecuted(), 1; got != want {
			t.Fatalf("WritesExecuted = %d, want %d", got, want)
		}
		if got, want := e.srv.Replays(), 1; got != want {
			t.Fatalf("Replays = %d, want %d", got, want)
		}
		if got := e.srv.CustomerCount(); got != 1 {
			t.Fatalf("CustomerCount = %d, want 1", got)
		}
	})

	t.Run("ReplayConcurrent", func(t *testing.T) {
		e := newEnv(t, Options{})
		var wg sync.WaitGroup
		ids := make([]string, 20)
		for i := range ids {
			wg.Go(func() {
				r, err := e.try(req{method: "POST", target: "/api/v1/customers", body: body, idem: "idem_c"})
				if err != nil || r.status != 201 {
					t.Errorf("attempt %d: %v %v", i, err, r)
					return
				}
				ids[i] = r.customer(t)["id"].(string)
			})
		}
		wg.Wait()
		for _, id := range ids {
			if id != ids[0] {
				t.Fatalf("ids differ: %v", ids)
			}
		}
		if e.srv.WritesExecuted() != 1 || e.srv.Replays() != 19 {
			t.Fatalf("writes %d replays %d, want 1 and 19", e.srv.WritesExecuted(), e.srv.Replays())
		}
	})

	t.Run("DifferentBody", func(t *testing.T) {
		e := newEnv(t, Options{})
		expect(t, post(e, "idem_b", body), 201, "")
		expect(t, post(e, "idem_b", `{"externalId":"u2"}`), 409, "idempotency_key_reused")
		// Same JSON, other bytes: the body hash differs.
		expect(t, post(e, "idem_b", `{"email":"ada@example.com","externalId":"u1"}`), 409, "idempotency_key_reused")
		if e.srv.WritesExecuted() != 1 {
			t.Fatalf("WritesExecuted = %d, want 1", e.srv.WritesExecuted())
		}
	})

	t.Run("DifferentPath", func(t *testing.T) {
		e := newEnv(t, Options{})
		id := e.create(`{}`)
		expect(t, post(e, "idem_p", `{"name":"x"}`), 201, "")
		r := e.do(req{method: "PATCH", target: "/api/v1/customers/" + id, body: `{"name":"x"}`, idem: "idem_p"})
		expect(t, r, 409, "idempotency_key_reused")
	})

	t.Run("Expires", func(t *testing.T) {
		e := newEnv(t, Options{})
		expect(t, post(e, "idem_e", `{}`), 201, "")
		e.clock.Advance(24*time.Hour + time.Second)
		expect(t, post(e, "idem_e", `{}`), 201, "")
		if e.srv.CustomerCount() != 2 {
			t.Fatalf("CustomerCount = %d, want 2", e.srv.CustomerCount())
		}
	})

	t.Run("PerKey", func(t *testing.T) {
		e := newEnv(t, Options{Keys: map[string]string{testKeyID: testSecret, "key_b": "sk_b"}})
		expect(t, post(e, "idem_k", `{}`), 201, "")
		r := e.do(req{method: "POST", target: "/api/v1/customers", body: `{}`, idem: "idem_k", keyID: "key_b", secret: "sk_b"})
		expect(t, r, 201, "")
		if e.srv.Replays() != 0 || e.srv.CustomerCount() != 2 {
			t.Fatalf("replays %d customers %d, want 0 and 2", e.srv.Replays(), e.srv.CustomerCount())
		}
	})

	t.Run("ErrorsAreStored", func(t *testing.T) {
		e := newEnv(t, Options{})
		e.create(`{"externalId":"taken"}`)
		first := post(e, "idem_err", `{"externalId":"taken"}`)
		expect(t, first, 409, "conflict")
		second := post(e, "idem_err", `{"externalId":"taken"}`)
		expect(t, second, 409, "conflict")
		if second.header.Get("Idempotent-Replayed") != "true" || e.srv.Replays() != 1 {
			t.Fatal("the 409 was not replayed")
		}
		bad := `{"email":"nope"}`
		expect(t, post(e, "idem_bad", bad), 400, "validation_error")
		expect(t, post(e, "idem_bad", bad), 400, "validation_error")
		if e.srv.Replays() != 2 {
			t.Fatalf("Replays = %d, want 2", e.srv.Replays())
		}
	})
}

func TestExternalIDConflict(t *testing.T) {
	e := newEnv(t, Options{})
	first := e.create(`{"externalId":"user_1"}`)
	second := e.create(`{"externalId":"user_2"}`)

	r := e.do(req{method: "POST", target: "/api/v1/customers", body: `{"externalId":"user_1"}`, idem: newIdem()})
	expect(t, r, 409, "conflict")
	if !strings.Contains(r.env.Error.Message, "user_1") || strings.Contains(r.env.Error.Message, first) {
		t.Errorf("message %q must name the externalId and not the customer", r.env.Error.Message)
	}
	r = e.do(req{method: "PATCH", target: "/api/v1/customers/" + second, body: `{"externalId":"user_1"}`, idem: newIdem()})
	expect(t, r, 409, "conflict")
	// Setting a customer's own externalId again is no conflict.
	r = e.do(req{method: "PATCH", target: "/api/v1/customers/" + first, body: `{"externalId":"user_1","name":"A"}`, idem: newIdem()})
	expect(t, r, 200, "")
	// Clearing frees the externalId.
	r = e.do(req{method: "PATCH", target: "/api/v1/customers/" + first, body: `{"externalId":null}`, idem: newIdem()})
	expect(t, r, 200, "")
	r = e.do(req{method: "PATCH", target: "/api/v1/customers/" + second, body: `{"externalId":"user_1"}`, idem: newIdem()})
	expect(t, r, 200, "")
	if c, ok := e.srv.CustomerByExternalID("user_1"); !ok || c.ID != second {
		t.Fatalf("user_1 belongs to %v, want %s", c.ID, second)
	}
}

func TestValidation(t *testing.T) {
	many := make([]string, 51)
	for i := range many {
		many[i] = fmt.Sprintf(`"k%d":"v"`, i)
	}
	fifty := strings.Join(many[:50], ",")
	tests := []struct {
		name, body string
		ok         bool
		field      string // must appear in the message
	}{
		{"Empty", `{}`, true, ""},
		{"AllFields", `{"externalId":"e","email":"a@b.co","name":"n","phone":"+62 1","taxId":"t","defaultPaymentTokenId":"pt_1","metadata":{"a":"b"}}`, true, ""},
		{"NoBody", ``, false, "body"},
		{"Array", `[]`, false, "body"},
		{"String", `"x"`, false, "body"},
		{"Null", `null`, false, "body"},
		{"Malformed", `{"name":`, false, "body"},
		{"TrailingData", `{} {}`, false, "body"},
		{"UnknownField", `{"nmae":"x"}`, false, "nmae"},
		{"ReadOnlyField", `{"id":"cus_x"}`, false, "id"},
		{"DuplicateField", `{"name":"a","name":"b"}`, false, "name"},
		{"BadEmail", `{"email":"not-an-email"}`, false, "email"},
		{"EmailWithName", `{"email":"Ada <ada@example.com>"}`, false, "email"},
		{"EmailWithSpaces", `{"email":" ada@example.com"}`, false, "email"},
		{"EmailTooLong", `{"email":"a@` + strings.Repeat("b", 320) + `.com"}`, false, "email"},
		{"NameTooLong", `{"name":"` + strings.Repeat("n", 256) + `"}`, false, "name"},
		{"NameMax", `{"name":"` + strings.Repeat("é", 255) + `"}`, true, ""},
		{"ExternalIDTooLong", `{"externalId":"` + strings.Repeat("x", 256) + `"}`, false, "externalId"},
		{"PhoneTooLong", `{"phone":"` + strings.Repeat("1", 65) + `"}`, false, "phone"},
		{"TaxIDTooLong", `{"taxId":"` + strings.Repeat("1", 65) + `"}`, false, "taxId"},
		{"BadPaymentToken", `{"defaultPaymentTokenId":"tok_1"}`, false, "defaultPaymentTokenId"},
		{"WrongTypeNumber", `{"name":5}`, false, "name"},
		{"WrongTypeBool", `{"email":true}`, false, "email"},
		{"WrongTypeMetadata", `{"metadata":"x"}`, false, "metadata"},
		{"MetadataValueNotString", `{"metadata":{"a":1}}`, false, "metadata.a"},
		{"Metadata50", `{"metadata":{` + fifty + `}}`, true, ""},
		{"Metadata51", `{"metadata":{` + strings.Join(many, ",") + `}}`, false, "metadata"},
		{"MetadataKeyTooLong", `{"metadata":{"` + strings.Repeat("k", 41) + `":"v"}}`, false, "metadata"},
		{"MetadataEmptyKey", `{"metadata":{"":"v"}}`, false, "metadata"},
		{"MetadataValueTooLong", `{"metadata":{"k":"` + strings.Repeat("v", 501) + `"}}`, false, "metadata.k"},
		{"NullFields", `{"email":null,"metadata":null}`, true, ""},
	}
	e := newEnv(t, Options{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(req{method: "POST", target: "/api/v1/customers", body: tt.body, idem: newIdem()})
			if tt.ok {
				expect(t, r, 201, "")
				return
			}
			expect(t, r, 400, "validation_error")
			if !strings.Contains(r.env.Error.Message, tt.field) {
				t.Errorf("message %q does not name %q", r.env.Error.Message, tt.field)
			}
		})
	}
	t.Run("ContentType", func(t *testing.T) {
		for _, ct := range []string{"-", "text/plain", "application/x-www-form-urlencoded"} {
			r := e.do(req{method: "POST", target: "/api/v1/customers", body: `{}`, idem: newIdem(), contentType: ct})
			expect(t, r, 400, "validation_error")
		}
		r := e.do(req{method: "POST", target: "/api/v1/customers", body: `{}`, idem: newIdem(), contentType: "application/json; charset=utf-8"})
		expect(t, r, 201, "")
	})
	t.Run("PatchValidates", func(t *testing.T) {
		id := e.create(`{"name":"x"}`)
		r := e.do(req{method: "PATCH", target: "/api/v1/customers/" + id, body: `{"email":"bad"}`, idem: newIdem()})
		expect(t, r, 400, "validation_error")
		if c, _ := e.srv.Customer(id); c.Email != "" {
			t.Fatal("invalid patch changed the customer")
		}
	})
}

func TestPatchSemantics(t *testing.T) {
	e := newEnv(t, Options{})
	id := e.create(`{"externalId":"e1","email":"a@b.co","name":"Ada","phone":"1","metadata":{"a":"1","b":"2"}}`)
	patch := func(body string) map[string]any {
		t.Helper()
		e.clock.Advance(time.Second)
		r := e.do(req{method: "PATCH", target: "/api/v1/customers/" + id, body: body, idem: newIdem()})
		expect(t, r, 200, "")
		return r.customer(t)
	}

	c := patch(`{"name":"Ada L"}`)
	if c["name"] != "Ada L" || c["email"] != "a@b.co" || c["externalId"] != "e1" {
		t.Fatalf("partial update: %v", c)
	}
	if c["updatedAt"] == c["createdAt"] {
		t.Errorf("updatedAt not bumped: %v", c)
	}
	c = patch(`{"email":"","phone":null}`)
	if c["email"] != nil || c["phone"] != nil || c["name"] != "Ada L" {
		t.Fatalf("clearing: %v", c)
	}
	c = patch(`{"metadata":{"c":"3"}}`)
	if m := c["metadata"].(map[string]any); len(m) != 1 || m["c"] != "3" {
		t.Fatalf("metadata not replaced: %v", c["metadata"])
	}
	c = patch(`{"metadata":{}}`)
	if c["metadata"] != nil {
		t.Fatalf("empty metadata object not stored as null: %v", c["metadata"])
	}
	patch(`{"metadata":{"d":"4"}}`)
	c = patch(`{"metadata":null}`)
	if c["metadata"] != nil {
		t.Fatalf("metadata not cleared: %v", c["metadata"])
	}
	before := c["updatedAt"]
	c = patch(`{}`)
	if c["updatedAt"] != before {
		t.Errorf("no-op patch bumped updatedAt")
	}
	got, _ := e.srv.Customer(id)
	if got.Name != "Ada L" || got.Email != "" || got.Metadata != nil {
		t.Fatalf("stored: %+v", got)
	}
	if e.srv.WritesExecuted() != 8 {
		t.Fatalf("WritesExecuted = %d, want 8", e.srv.WritesExecuted())
	}
	r := e.do(req{method: "GET", target: "/api/v1/customers/" + id})
	expect(t, r, http.StatusOK, "")
	if !reflect.DeepEqual(r.customer(t), c) {
		t.Fatalf("GET = %s, want %s", r.env.Data, mustJSON(t, c))
	}
}
