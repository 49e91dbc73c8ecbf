package fake

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/plugipay-sync/plugipay-sync/destination/internal/fakeapi/fakeapitest"
)

const (
	testKey = "sk_test_1"
	liveKey = "sk_live_1"
)

type env struct {
	t     *testing.T
	srv   *Server
	hs    *httptest.Server
	clock *fakeapitest.Clock
}

func newEnv(t *testing.T, opts Options) *env {
	t.Helper()
	clk := fakeapitest.NewClock(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC))
	if opts.TestKeys == nil && opts.LiveKeys == nil {
		opts.TestKeys, opts.LiveKeys = []string{testKey}, []string{liveKey}
	}
	if opts.Now == nil {
		opts.Now = clk.Now
	}
	if opts.Seed == 0 {
		opts.Seed = 42
	}
	s := New(opts)
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	return &env{t: t, srv: s, hs: hs, clock: clk}
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (a answer) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(a.body, &m); err != nil {
		t.Fatalf("answer %d is not a JSON object: %v: %s", a.status, err, a.body)
	}
	return m
}

// errorCode checks the error body shape and returns its code and the codes
// of its messages.
func (a answer) errorCode(t *testing.T) (string, []string) {
	t.Helper()
	var e ErrorBody
	dec := json.NewDecoder(strings.NewReader(string(a.body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil || e.Error == "" || e.Description == "" {
		t.Fatalf("not an error body (%v): %s", err, a.body)
	}
	var codes []string
	for _, m := range e.Messages {
		if m.Param == "" || m.Code == "" || m.Message == "" {
			t.Errorf("incomplete message %+v", m)
		}
		codes = append(codes, m.Code)
	}
	return e.Error, codes
}

// do sends a request with key (none when "") and a JSON body.
func (e *env) do(method, path, key, body string) answer {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.hs.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if key != "" {
		req.SetBasicAuth(key, "")
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: b}
}

var tokenRE = regexp.MustCompile(`^cust_[A-Za-z0-9_-]{22}$`)

func TestCreateGetUpdateDelete(t *testing.T) {
	e := newEnv(t, Options{})
	a := e.do("POST", "/1/customers", testKey, `{"email":"ada@example.com","first_name":"Ada","last_name":"Lovelace"}`)
	if a.status != 201 {
		t.Fatalf("create: %d %s", a.status, a.body)
	}
	m := a.json(t)
	if m["status"] != float64(201) {
		t.Errorf("status field = %v, want 201", m["status"])
	}
	c := m["response"].(map[string]any)
	tok, _ := c["token"].(string)
	if !tokenRE.MatchString(tok) {
		t.Errorf("token %q does not match %v", tok, tokenRE)
	}
	want := map[string]any{"token": tok, "email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace", "created_at": "2026-03-01T10:00:00Z"}
	for k, v := range want {
		if c[k] != v {
			t.Errorf("%s = %v, want %v", k, c[k], v)
		}
	}
	if len(c) != len(want) {
		t.Errorf("customer has fields %v, want exactly %v", c, want)
	}

	a = e.do("PUT", "/1/customers/"+tok, testKey, `{"last_name":""}`)
	if a.status != 200 {
		t.Fatalf("update: %d %s", a.status, a.body)
	}
	got, _ := e.srv.Customer(ModeTest, tok)
	if got.Email != "ada@example.com" || got.FirstName != "Ada" || got.LastName != "" {
		t.Errorf("after partial update: %+v", got)
	}
	if a := e.do("GET", "/1/customers/"+tok, testKey, ""); a.status != 200 || a.json(t)["response"].(map[string]any)["last_name"] != "" {
		t.Errorf("get: %d %s", a.status, a.body)
	}
	a = e.do("DELETE", "/1/customers/"+tok, testKey, "")
	if a.status != 204 || len(a.body) != 0 {
		t.Errorf("delete: %d %q, want 204 and no body", a.status, a.body)
	}
	if a := e.do("GET", "/1/customers/"+tok, testKey, ""); a.status != 404 {
		t.Errorf("get after delete: %d", a.status)
	} else if code, _ := a.errorCode(t); code != CodeNotFound {
		t.Errorf("code %q", code)
	}
	if got := e.srv.WritesExecuted(); got != 3 {
		t.Errorf("WritesExecuted = %d, want 3", got)
	}
	if e.srv.CardDataSeen() {
		t.Error("CardDataSeen after requests without card data")
	}
}

func TestAuth(t *testing.T) {
	e := newEnv(t, Options{})
	for _, tc := range []struct {
		name string
		set  func(*http.Request)
	}{
		{"none", func(*http.Request) {}},
		{"unknown key", func(r *http.Request) { r.SetBasicAuth("sk_nope", "") }},
		{"password", func(r *http.Request) { r.SetBasicAuth(testKey, "x") }},
		{"bearer", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+testKey) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", e.hs.URL+"/1/customers", nil)
			tc.set(req)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			a := answer{status: resp.StatusCode, header: resp.Header, body: b}
			if a.status != 401 {
				t.Fatalf("status %d, want 401", a.status)
			}
			if code, _ := a.errorCode(t); code != CodeUnauthenticated {
				t.Errorf("code %q", code)
			}
			if a.header.Get("WWW-Authenticate") == "" {
				t.Error("no WWW-Authenticate")
			}
		})
	}
}

func TestRoutes(t *testing.T) {
	e := newEnv(t, Options{})
	for _, tc := range []struct {
		method, path string
		status       int
		allow        string
	}{
		{"GET", "/1/charges", 404, ""},
		{"GET", "/v1/customers", 404, ""},
		{"GET", "/1/customers/", 404, ""},
		{"GET", "/1/customers/a/b", 404, ""},
		{"PATCH", "/1/customers/cust_x", 405, "GET, PUT, DELETE"},
		{"DELETE", "/1/customers", 405, "GET, POST"},
		{"PUT", "/1/customers", 405, "GET, POST"},
	} {
		a := e.do(tc.method, tc.path, testKey, "")
		if a.status != tc.status || a.header.Get("Allow") != tc.allow {
			t.Errorf("%s %s: %d Allow %q, want %d %q", tc.method, tc.path, a.status, a.header.Get("Allow"), tc.status, tc.allow)
		}
		a.errorCode(t)
	}
}

func TestCreateValidation(t *testing.T) {
	card := func(fields string) string {
		return `{"email":"a@example.com","card":{` + fields + `}}`
	}
	good := `"number":"4200000000000000","expiry_month":12,"expiry_year":2027,"cvc":"123","name":"Ada L"`
	for _, tc := range []struct {
		name, body string
		status     int
		code       string
		msgCodes   []string
	}{
		{"empty object", `{}`, 422, CodeInvalidResource, []string{"email_missing"}},
		{"bad email", `{"email":"nope"}`, 422, CodeInvalidResource, []string{"email_invalid"}},
		{"blank email", `{"email":""}`, 422, CodeInvalidResource, []string{"email_invalid"}},
		{"email no dot", `{"email":"a@localhost"}`, 422, CodeInvalidResource, []string{"email_invalid"}},
		{"display name email", `{"email":"Ada <a@example.com>"}`, 422, CodeInvalidResource, []string{"email_invalid"}},
		{"long email", `{"email":"` + strings.Repeat("a", 60) + "@" + strings.Repeat("b", 200) + `.com"}`, 422, CodeInvalidResource, []string{"email_invalid"}},
		{"email number", `{"email":5}`, 422, CodeInvalidResource, []string{"email_invalid"}},
		{"email null", `{"email":null}`, 422, CodeInvalidResource, []string{"email_invalid"}},
		{"name type", `{"email":"a@example.com","first_name":["x"]}`, 422, CodeInvalidResource, []string{"first_name_invalid"}},
		{"long name", `{"email":"a@example.com","last_name":"` + strings.Repeat("é", MaxNameLen+1) + `"}`, 422, CodeInvalidResource, []string{"last_name_invalid"}},
		{"control char", `{"email":"a@example.com","last_name":"a\u0007"}`, 422, CodeInvalidResource, []string{"last_name_invalid"}},
		{"unknown field", `{"email":"a@example.com","phone":"1"}`, 422, CodeInvalidResource, []string{"phone_unknown"}},
		{"several", `{"email":"x","first_name":1,"metadata":{}}`, 422, CodeInvalidResource, []string{"email_invalid", "first_name_invalid", "metadata_unknown"}},
		{"not an object", `[1]`, 400, CodeBadRequest, nil},
		{"malformed", `{"email":`, 400, CodeBadRequest, nil},
		{"trailing", `{"email":"a@example.com"} {}`, 400, CodeBadRequest, nil},
		{"duplicate", `{"email":"a@example.com","email":"b@example.com"}`, 400, CodeBadRequest, nil},
		{"bad luhn", card(strings.Replace(good, "4200000000000000", "4200000000000001", 1)), 422, CodeInvalidResource, []string{"card_number_invalid"}},
		{"short number", card(strings.Replace(good, "4200000000000000", "42", 1)), 422, CodeInvalidResource, []string{"card_number_invalid"}},
		{"expired", card(strings.Replace(good, `"expiry_month":12,"expiry_year":2027`, `"expiry_month":2,"expiry_year":2026`, 1)), 422, CodeInvalidResource, []string{"card_expired"}},
		{"two-digit year", card(strings.Replace(good, `2027`, `27`, 1)), 422, CodeInvalidResource, []string{"card_expiry_year_invalid"}},
		{"bad month", card(strings.Replace(good, `"expiry_month":12`, `"expiry_month":13`, 1)), 422, CodeInvalidResource, []string{"card_expiry_month_invalid"}},
		{"bad cvc", card(strings.Replace(good, `"123"`, `"12a"`, 1)), 422, CodeInvalidResource, []string{"card_cvc_invalid"}},
		{"missing fields", card(`"number":"4200000000000000"`), 422, CodeInvalidResource, []string{"card_expiry_month_missing", "card_expiry_year_missing", "card_cvc_missing", "card_name_missing"}},
		{"unknown card field", card(good + `,"pin":"1234"`), 422, CodeInvalidResource, []string{"card_pin_unknown"}},
		{"card not object", `{"email":"a@example.com","card":"4200000000000000"}`, 422, CodeInvalidResource, []string{"card_invalid"}},
		{"card and token", `{"email":"a@example.com","card_token":"card_x",` + card(good)[len(`{"email":"a@example.com",`):], 422, CodeInvalidResource, []string{"card_token_invalid"}},
		{"bad card token", `{"email":"a@example.com","card_token":"tok_1"}`, 422, CodeInvalidResource, []string{"card_token_invalid"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Options{})
			a := e.do("POST", "/1/customers", testKey, tc.body)
			if a.status != tc.status {
				t.Fatalf("status %d, want %d: %s", a.status, tc.status, a.body)
			}
			code, msgs := a.errorCode(t)
			if code != tc.code || strings.Join(msgs, ",") != strings.Join(tc.msgCodes, ",") {
				t.Errorf("got %s %v, want %s %v", code, msgs, tc.code, tc.msgCodes)
			}
			if strings.Contains(string(a.body), "420000000000000") {
				t.Errorf("error echoes the card number: %s", a.body)
			}
			if e.srv.CustomerCount(ModeTest) != 0 || e.srv.WritesExecuted() != 0 {
				t.Error("a rejected create was stored")
			}
		})
	}
}

func TestCreateWithCard(t *testing.T) {
	for _, tc := range []struct{ name, body string }{
		{"card", `{"email":"a@example.com","card":{"number":"4200000000000000","expiry_month":"03","expiry_year":"2026","cvc":123,"name":"Ada L","address_line1":"1 Main St","address_country":"AU"}}`},
		{"card token", `{"email":"a@example.com","card_token":"card_nytGw7koRg23EEp9NTmz9w"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Options{})
			if e.srv.CardDataSeen() {
				t.Fatal("CardDataSeen before any request")
			}
			a := e.do("POST", "/1/customers", testKey, tc.body)
			if a.status != 201 {
				t.Fatalf("status %d: %s", a.status, a.body)
			}
			if strings.Contains(string(a.body), "4200000000000000") || strings.Contains(string(a.body), "card") {
				t.Errorf("answer echoes card data: %s", a.body)
			}
			if !e.srv.CardDataSeen() {
				t.Error("CardDataSeen false after a create with card data")
			}
		})
	}
}

func TestCardDataSeen(t *testing.T) {
	for _, tc := range []struct {
		name, method, path, key, body string
		want                          bool
	}{
		{"plain update", "PUT", "/1/customers/cust_x", testKey, `{"first_name":"4111"}`, false},
		{"rejected unauthenticated", "POST", "/1/customers", "", `{"card":{"number":"1"}}`, true},
		{"nested key on unknown route", "POST", "/1/charges", testKey, `{"x":[{"cvc":"123"}]}`, true},
		{"pan in a name", "PUT", "/1/customers/cust_x", testKey, `{"first_name":"4111111111111111"}`, true},
		{"pan in the query", "GET", "/1/customers?q=4111111111111111", testKey, "", true},
		{"card key in the query", "GET", "/1/customers?card[number]=1", testKey, "", true},
		{"form body", "POST", "/1/customers", testKey, `email=a%40b.com&card_token=card_1`, true},
		{"non-luhn digits", "PUT", "/1/customers/cust_x", testKey, `{"first_name":"4111111111111112"}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Options{})
			e.do(tc.method, tc.path, tc.key, tc.body)
			if got := e.srv.CardDataSeen(); got != tc.want {
				t.Errorf("CardDataSeen = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestUpdateValidation(t *testing.T) {
	e := newEnv(t, Options{})
	c := e.srv.Seed(ModeTest, Customer{Email: "a@example.com", FirstName: "A", LastName: "B"})
	for _, tc := range []struct {
		name, path, ctype, body string
		status                  int
		code                    string
	}{
		{"unknown token", "/1/customers/cust_nope", "application/json", `{"email":"b@example.com"}`, 404, CodeNotFound},
		{"blank email", "/1/customers/" + c.Token, "application/json", `{"email":""}`, 422, CodeInvalidResource},
		{"card on update", "/1/customers/" + c.Token, "application/json", `{"card_token":"card_1"}`, 422, CodeInvalidResource},
		{"null name", "/1/customers/" + c.Token, "application/json", `{"first_name":null}`, 422, CodeInvalidResource},
		{"no body", "/1/customers/" + c.Token, "application/json", ``, 400, CodeBadRequest},
		{"form content type", "/1/customers/" + c.Token, "application/x-www-form-urlencoded", `email=b%40example.com`, 400, CodeBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("PUT", e.hs.URL+tc.path, strings.NewReader(tc.body))
			req.SetBasicAuth(testKey, "")
			req.Header.Set("Content-Type", tc.ctype)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			a := answer{status: resp.StatusCode, body: b}
			if a.status != tc.status {
				t.Fatalf("status %d, want %d: %s", a.status, tc.status, b)
			}
			if code, _ := a.errorCode(t); code != tc.code {
				t.Errorf("code %q, want %q", code, tc.code)
			}
		})
	}
	if got, _ := e.srv.Customer(ModeTest, c.Token); got != c {
		t.Errorf("customer changed by rejected updates: %+v", got)
	}
}

func TestListPagination(t *testing.T) {
	e := newEnv(t, Options{})
	for range 60 {
		e.srv.Seed(ModeTest, Customer{Email: "a@example.com"})
		e.clock.Advance(time.Second)
	}
	type page struct {
		Response   []Customer `json:"response"`
		Status     int        `json:"status"`
		Count      int        `json:"count"`
		Pagination Pagination `json:"pagination"`
	}
	seen := map[string]bool{}
	var order []Customer
	for _, tc := range []struct {
		q          string
		n          int
		next, prev *int
	}{
		{"", 25, ptr(2), nil},
		{"?page=1", 25, ptr(2), nil},
		{"?page=2", 25, ptr(3), ptr(1)},
		{"?page=3", 10, nil, ptr(2)},
		{"?page=4", 0, nil, ptr(3)},
	} {
		a := e.do("GET", "/1/customers"+tc.q, testKey, "")
		if a.status != 200 {
			t.Fatalf("%s: %d %s", tc.q, a.status, a.body)
		}
		var p page
		dec := json.NewDecoder(strings.NewReader(string(a.body)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("%s: %v", tc.q, err)
		}
		if p.Response == nil {
			t.Errorf("%s: response is null, want a list", tc.q)
		}
		pg := p.Pagination
		if len(p.Response) != tc.n || p.Status != 200 || p.Count != 60 || pg.Count != 60 || pg.PerPage != 25 || pg.Pages != 3 ||
			!eqPtr(pg.Next, tc.next) || !eqPtr(pg.Previous, tc.prev) {
			t.Errorf("%s: %d items, %+v count %d", tc.q, len(p.Response), pg, p.Count)
		}
		if tc.q != "" {
			for _, c := range p.Response {
				if seen[c.Token] {
					t.Errorf("%s repeats %s", tc.q, c.Token)
				}
				seen[c.Token] = true
				order = append(order, c)
			}
		}
	}
	if len(seen) != 60 {
		t.Errorf("pages hold %d customers, want 60", len(seen))
	}
	for i := 1; i < len(order); i++ {
		if less(&order[i-1], &order[i]) >= 0 {
			t.Errorf("list not ordered by created_at, token at %d", i)
		}
	}
	for _, q := range []string{"?page=0", "?page=-1", "?page=abc", "?page=1.5", "?page=", "?page=1&page=2", "?limit=10", "?page=99999999", "?page=%zz"} {
		a := e.do("GET", "/1/customers"+q, testKey, "")
		if a.status != 400 {
			t.Errorf("%s: %d, want 400", q, a.status)
			continue
		}
		if code, _ := a.errorCode(t); code != CodeBadRequest {
			t.Errorf("%s: code %q", q, code)
		}
	}
}

func TestListEmpty(t *testing.T) {
	e := newEnv(t, Options{})
	a := e.do("GET", "/1/customers", testKey, "")
	m := a.json(t)
	if a.status != 200 || string(mustJSON(m["response"])) != "[]" {
		t.Fatalf("%d %s", a.status, a.body)
	}
	p := m["pagination"].(map[string]any)
	if p["pages"] != float64(0) || p["next"] != nil || p["previous"] != nil || p["current"] != float64(1) {
		t.Errorf("pagination %v", p)
	}
}

func TestListOrderSameSecond(t *testing.T) {
	e := newEnv(t, Options{})
	later := e.srv.Seed(ModeTest, Customer{Email: "a@example.com", CreatedAt: e.clock.Now().Add(time.Hour)})
	for range 5 {
		e.srv.Seed(ModeTest, Customer{Email: "a@example.com"})
	}
	got := e.srv.Customers(ModeTest)
	if got[len(got)-1].Token != later.Token {
		t.Error("a later created_at is not last")
	}
	for i := 1; i < len(got)-1; i++ {
		if got[i-1].Token >= got[i].Token {
			t.Errorf("same-second customers not ordered by token: %s, %s", got[i-1].Token, got[i].Token)
		}
	}
}

func TestModesSeparate(t *testing.T) {
	e := newEnv(t, Options{})
	live := e.srv.Seed(ModeLive, Customer{Email: "live@example.com"})
	if a := e.do("GET", "/1/customers/"+live.Token, testKey, ""); a.status != 404 {
		t.Errorf("test key sees a live customer: %d", a.status)
	}
	if a := e.do("GET", "/1/customers/"+live.Token, liveKey, ""); a.status != 200 {
		t.Errorf("live key: %d", a.status)
	}
	e.do("POST", "/1/customers", testKey, `{"email":"t@example.com"}`)
	if e.srv.CustomerCount(ModeTest) != 1 || e.srv.CustomerCount(ModeLive) != 1 {
		t.Errorf("counts test %d live %d, want 1 and 1", e.srv.CustomerCount(ModeTest), e.srv.CustomerCount(ModeLive))
	}
}

func TestSeedTokensReproducible(t *testing.T) {
	a := New(Options{Seed: 7}).Seed(ModeTest, Customer{})
	b := New(Options{Seed: 7}).Seed(ModeTest, Customer{})
	if a.Token != b.Token || !tokenRE.MatchString(a.Token) {
		t.Errorf("tokens %q, %q: want equal and well formed", a.Token, b.Token)
	}
}

func TestRateLimit(t *testing.T) {
	e := newEnv(t, Options{RequestsPerSecond: 2})
	e.clock.Advance(300 * time.Millisecond)
	for i := range 2 {
		if a := e.do("GET", "/1/customers", testKey, ""); a.status != 200 {
			t.Fatalf("request %d: %d", i, a.status)
		}
	}
	a := e.do("GET", "/1/customers", testKey, "")
	if a.status != 429 || a.header.Get("Retry-After") != "1" {
		t.Fatalf("third request: %d Retry-After %q, want 429 and 1", a.status, a.header.Get("Retry-After"))
	}
	if code, _ := a.errorCode(t); code != CodeTooManyRequests {
		t.Errorf("code %q", code)
	}
	if a := e.do("GET", "/1/customers", liveKey, ""); a.status != 200 {
		t.Errorf("another key is limited too: %d", a.status)
	}
	e.clock.Advance(time.Second)
	if a := e.do("GET", "/1/customers", testKey, ""); a.status != 200 {
		t.Errorf("next second: %d", a.status)
	}
}

func TestFaults(t *testing.T) {
	t.Run("ErrorRate", func(t *testing.T) {
		e := newEnv(t, Options{Faults: Faults{ErrorRate: 1, RetryAfter: 3}})
		for range 10 {
			a := e.do("POST", "/1/customers", testKey, `{"email":"a@example.com"}`)
			code, _ := a.errorCode(t)
			if a.status < 500 || code != faultCodes[a.status] {
				t.Fatalf("%d %s", a.status, code)
			}
			if a.status == 503 && a.header.Get("Retry-After") != "3" {
				t.Errorf("503 without Retry-After 3")
			}
		}
		if e.srv.WritesExecuted() != 0 {
			t.Error("a faulted write executed")
		}
	})
	t.Run("RateLimitRate", func(t *testing.T) {
		e := newEnv(t, Options{Faults: Faults{RateLimitRate: 1}})
		a := e.do("GET", "/1/customers", testKey, "")
		if a.status != 429 || a.header.Get("Retry-After") != "0" {
			t.Errorf("%d Retry-After %q", a.status, a.header.Get("Retry-After"))
		}
	})
	t.Run("DropAfterWriteRate", func(t *testing.T) {
		e := newEnv(t, Options{Faults: Faults{DropAfterWriteRate: 1}})
		if a := e.do("GET", "/1/customers", testKey, ""); a.status != 200 {
			t.Errorf("read affected: %d", a.status)
		}
		req, _ := http.NewRequest("POST", e.hs.URL+"/1/customers", strings.NewReader(`{"email":"a@example.com"}`))
		req.SetBasicAuth(testKey, "")
		req.Header.Set("Content-Type", "application/json")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			t.Fatalf("got an answer %d, want a dropped connection", resp.StatusCode)
		}
		if e.srv.WritesExecuted() != 1 || e.srv.CustomerCount(ModeTest) != 1 {
			t.Error("the dropped write did not execute")
		}
		if a := e.do("POST", "/1/customers", testKey, `{}`); a.status != 422 {
			t.Errorf("an invalid write was dropped: %d", a.status)
		}
	})
	t.Run("Validate", func(t *testing.T) {
		for _, f := range []Faults{{ErrorRate: -0.1}, {RateLimitRate: 1.1}, {ErrorRate: 0.6, DropAfterWriteRate: 0.6}, {RetryAfter: -1}} {
			if err := New(Options{}).SetFaults(f); err == nil {
				t.Errorf("%+v accepted", f)
			}
		}
	})
}

func TestNewPanics(t *testing.T) {
	for _, o := range []Options{
		{TestKeys: []string{""}},
		{TestKeys: []string{"k"}, LiveKeys: []string{"k"}},
		{RequestsPerSecond: -1},
		{Faults: Faults{ErrorRate: 2}},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("New(%+v) did not panic", o)
				}
			}()
			New(o)
		}()
	}
}

func TestLuhn(t *testing.T) {
	for s, want := range map[string]bool{
		"4242424242424242": true, "4000056655665556": true, "5555555555554444": true, "378282246310005": true,
		"4242424242424241": false, "42424242424": false, "4242a24242424242": false, "": false,
	} {
		if got := luhn(s); got != want {
			t.Errorf("luhn(%q) = %v", s, got)
		}
	}
}

func eqPtr(a, b *int) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}
