package fake_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/plugipay-sync/plugipay-sync/destination/internal/fakeapi/fakeapitest"
	"github.com/plugipay-sync/plugipay-sync/destination/paygate/fake"
)

const key = "sk_test_abc123"

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newFake(t *testing.T, opts fake.Options) (*fake.Server, string, *fakeapitest.Clock) {
	t.Helper()
	clk := fakeapitest.NewClock(t0)
	if opts.Keys == nil {
		opts.Keys = []string{key}
	}
	if opts.Now == nil {
		opts.Now = clk.Now
	}
	if opts.Seed == 0 {
		opts.Seed = 1
	}
	f := fake.New(opts)
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv.URL, clk
}

type answer struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

// call sends one request with the test key and JSON content type (unless
// headers override them).
func call(t *testing.T, base, method, path, body string, headers ...string) answer {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
		} else {
			req.Header.Set(headers[i], headers[i+1])
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	a := answer{status: resp.StatusCode, header: resp.Header, raw: string(b)}
	if err := json.Unmarshal(b, &a.body); err != nil {
		t.Fatalf("%s %s: answer is not a JSON object: %q", method, path, b)
	}
	return a
}

func errCode(a answer) string {
	e, _ := a.body["error"].(map[string]any)
	code, _ := e["code"].(string)
	return code
}

// checkError checks status and code, and that the error body has exactly
// type, code and message.
func checkError(t *testing.T, a answer, status int, code string) {
	t.Helper()
	if a.status != status || errCode(a) != code {
		t.Fatalf("got %d %q, want %d %q: %s", a.status, errCode(a), status, code, a.raw)
	}
	e := a.body["error"].(map[string]any)
	if len(a.body) != 1 || len(e) != 3 || e["type"] == "" || e["message"] == "" {
		t.Errorf("error body %s: want exactly {error: {type, code, message}}", a.raw)
	}
}

var idRE = regexp.MustCompile(`^cus_[a-z0-9]{12,}$`)

func TestCreateGet(t *testing.T) {
	f, base, _ := newFake(t, fake.Options{})
	a := call(t, base, "POST", "/v1/customers", `{"email":"ada@example.com","name":"Ada","phone":"+44 20","metadata":{"crm_user_id":"u1","tier":"gold"}}`, "Idempotency-Key", "k1")
	if a.status != 200 {
		t.Fatalf("create: %d %s", a.status, a.raw)
	}
	id, _ := a.body["id"].(string)
	if !idRE.MatchString(id) {
		t.Errorf("id %q does not match %s", id, idRE)
	}
	want := fmt.Sprintf(`{"id":%q,"object":"customer","email":"ada@example.com","name":"Ada","phone":"+44 20","metadata":{"crm_user_id":"u1","tier":"gold"},"created_at":"2026-03-01T12:00:00.000Z","updated_at":"2026-03-01T12:00:00.000Z"}`+"\n", id)
	if a.raw != want {
		t.Errorf("create answer\n got %s\nwant %s", a.raw, want)
	}
	if g := call(t, base, "GET", "/v1/customers/"+id, ""); g.raw != want {
		t.Errorf("get answer\n got %s\nwant %s", g.raw, want)
	}

	// No idempotency, no uniqueness: the same create again is a second customer.
	b := call(t, base, "POST", "/v1/customers", `{"email":"ada@example.com","metadata":{"crm_user_id":"u1"}}`, "Idempotency-Key", "k1")
	if b.status != 200 || b.body["id"] == id {
		t.Fatalf("second create: %d %s", b.status, b.raw)
	}
	if got := f.CustomerCount(); got != 2 {
		t.Errorf("CustomerCount = %d, want 2", got)
	}
	if got := f.WritesExecuted(); got != 2 {
		t.Errorf("WritesExecuted = %d, want 2", got)
	}

	// An empty create makes a customer with nulls and {} metadata.
	e := call(t, base, "POST", "/v1/customers", "", "Content-Type", "")
	if e.status != 200 || e.body["email"] != nil || len(e.body["metadata"].(map[string]any)) != 0 {
		t.Errorf("empty create: %d %s", e.status, e.raw)
	}
}

func TestUpdate(t *testing.T) {
	_, base, clk := newFake(t, fake.Options{})
	a := call(t, base, "POST", "/v1/customers", `{"email":"a@example.com","name":"A","metadata":{"a":"1","b":"2"}}`)
	id := a.body["id"].(string)
	clk.Advance(time.Minute)

	tests := []struct {
		name, body string
		want       string // email|name|phone|metadata JSON
	}{
		{"OnlyName", `{"name":"B"}`, `a@example.com|B|<nil>|{"a":"1","b":"2"}`},
		{"MergeMetadata", `{"metadata":{"c":"3","a":"9"}}`, `a@example.com|B|<nil>|{"a":"9","b":"2","c":"3"}`},
		{"RemoveKey", `{"metadata":{"b":""}}`, `a@example.com|B|<nil>|{"a":"9","c":"3"}`},
		{"ClearEmailNull", `{"email":null,"phone":"+1"}`, `<nil>|B|+1|{"a":"9","c":"3"}`},
		{"ClearNameEmpty", `{"name":""}`, `<nil>|<nil>|+1|{"a":"9","c":"3"}`},
		{"ClearMetadataNull", `{"metadata":null}`, `<nil>|<nil>|+1|{}`},
		{"SetAgain", `{"metadata":{"x":"1"}}`, `<nil>|<nil>|+1|{"x":"1"}`},
		{"ClearMetadataEmptyString", `{"metadata":""}`, `<nil>|<nil>|+1|{}`},
		{"Empty", `{}`, `<nil>|<nil>|+1|{}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := call(t, base, "PATCH", "/v1/customers/"+id, tt.body)
			if u.status != 200 {
				t.Fatalf("%d %s", u.status, u.raw)
			}
			md, _ := json.Marshal(u.body["metadata"])
			got := fmt.Sprintf("%v|%v|%v|%s", u.body["email"], u.body["name"], u.body["phone"], md)
			if got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
			if u.body["created_at"] != "2026-03-01T12:00:00.000Z" || u.body["updated_at"] != "2026-03-01T12:01:00.000Z" {
				t.Errorf("times %v %v", u.body["created_at"], u.body["updated_at"])
			}
		})
	}

	t.Run("MetadataOver50AfterMerge", func(t *testing.T) {
		var b strings.Builder
		for i := range 50 {
			fmt.Fprintf(&b, `"k%d":"v",`, i)
		}
		if u := call(t, base, "PATCH", "/v1/customers/"+id, `{"metadata":{`+strings.TrimSuffix(b.String(), ",")+`}}`); u.status != 200 {
			t.Fatalf("50 keys: %d %s", u.status, u.raw)
		}
		u := call(t, base, "PATCH", "/v1/customers/"+id, `{"metadata":{"one_more":"v"}}`)
		checkError(t, u, 400, fake.CodeParameterInvalid)
	})
	t.Run("NotFound", func(t *testing.T) {
		checkError(t, call(t, base, "PATCH", "/v1/customers/cus_nope", `{"name":"x"}`), 404, fake.CodeResourceMissing)
	})
}

func TestDelete(t *testing.T) {
	f, base, _ := newFake(t, fake.Options{})
	id := call(t, base, "POST", "/v1/customers", `{"name":"A"}`).body["id"].(string)
	d := call(t, base, "DELETE", "/v1/customers/"+id, "")
	if want := fmt.Sprintf(`{"id":%q,"object":"customer","deleted":true}`+"\n", id); d.status != 200 || d.raw != want {
		t.Fatalf("delete: %d %s, want %s", d.status, d.raw, want)
	}
	checkError(t, call(t, base, "GET", "/v1/customers/"+id, ""), 404, fake.CodeResourceMissing)
	checkError(t, call(t, base, "DELETE", "/v1/customers/"+id, ""), 404, fake.CodeResourceMissing)
	if l := call(t, base, "GET", "/v1/customers", ""); len(l.body["data"].([]any)) != 0 {
		t.Errorf("list after delete: %s", l.raw)
	}
	if f.CustomerCount() != 0 || f.WritesExecuted() != 2 {
		t.Errorf("count %d writes %d, want 0 2", f.CustomerCount(), f.WritesExecuted())
	}
}

func TestValidation(t *testing.T) {
	long := func(n int) string { return strings.Repeat("x", n) }
	many := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, `"k%d":"v",`, i)
		}
		return `{"metadata":{` + strings.TrimSuffix(b.String(), ",") + `}}`
	}
	tests := []struct {
		name, body, ctype string
		code              string // "" = accepted
	}{
		{"OK", `{"email":"a@example.com"}`, "application/json", ""},
		{"CharsetOK", `{"name":"x"}`, "application/json; charset=utf-8", ""},
		{"FormEncoded", `email=a%40example.com`, "application/x-www-form-urlencoded", fake.CodeInvalidContentType},
		{"NoContentType", `{"name":"x"}`, "", fake.CodeInvalidContentType},
		{"NotJSON", `{"name":`, "application/json", fake.CodeInvalidJSON},
		{"Array", `[]`, "application/json", fake.CodeInvalidJSON},
		{"TrailingData", `{} {}`, "application/json", fake.CodeInvalidJSON},
		{"DuplicateField", `{"name":"a","name":"b"}`, "application/json", fake.CodeInvalidJSON},
		{"UnknownField", `{"tax_id":"x"}`, "application/json", fake.CodeParameterUnknown},
		{"ReadOnlyField", `{"id":"cus_x"}`, "application/json", fake.CodeParameterUnknown},
		{"CamelCase", `{"createdAt":"x"}`, "application/json", fake.CodeParameterUnknown},
		{"EmailNumber", `{"email":1}`, "application/json", fake.CodeParameterInvalidType},
		{"NameObject", `{"name":{}}`, "application/json", fake.CodeParameterInvalidType},
		{"BadEmail", `{"email":"not-an-email"}`, "application/json", fake.CodeEmailInvalid},
		{"EmailWithName", `{"email":"Ada <a@example.com>"}`, "application/json", fake.CodeEmailInvalid},
		{"EmailNoDot", `{"email":"a@localhost"}`, "application/json", fake.CodeEmailInvalid},
		{"NameMax", `{"name":"` + long(256) + `"}`, "application/json", ""},
		{"NameTooLong", `{"name":"` + long(257) + `"}`, "application/json", fake.CodeParameterInvalid},
		{"PhoneMax", `{"phone":"` + long(40) + `"}`, "application/json", ""},
		{"PhoneTooLong", `{"phone":"` + long(41) + `"}`, "application/json", fake.CodeParameterInvalid},
		{"MetadataArray", `{"metadata":["a"]}`, "application/json", fake.CodeParameterInvalidType},
		{"MetadataNumberValue", `{"metadata":{"a":1}}`, "application/json", fake.CodeParameterInvalidType},
		{"MetadataNullValue", `{"metadata":{"a":null}}`, "application/json", fake.CodeParameterInvalidType},
		{"MetadataEmptyKey", `{"metadata":{"":"v"}}`, "application/json", fake.CodeParameterInvalid},
		{"MetadataKeyMax", `{"metadata":{"` + long(40) + `":"v"}}`, "application/json", ""},
		{"MetadataKeyTooLong", `{"metadata":{"` + long(41) + `":"v"}}`, "application/json", fake.CodeParameterInvalid},
		{"MetadataValueMax", `{"metadata":{"k":"` + long(500) + `"}}`, "application/json", ""},
		{"MetadataValueTooLong", `{"metadata":{"k":"` + long(501) + `"}}`, "application/json", fake.CodeParameterInvalid},
		{"Metadata50Keys", many(50), "application/json", ""},
		{"Metadata51Keys", many(51), "application/json", fake.CodeParameterInvalid},
	}
	f, base, _ := newFake(t, fake.Options{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := f.CustomerCount()
			a := call(t, base, "POST", "/v1/customers", tt.body, "Content-Type", tt.ctype)
			if tt.code == "" {
				if a.status != 200 {
					t.Fatalf("got %d %s, want 200", a.status, a.raw)
				}
				return
			}
			checkError(t, a, 400, tt.code)
			if f.CustomerCount() != before {
				t.Error("a rejected create stored a customer")
			}
		})
	}
}

func TestAuthAndRoutes(t *testing.T) {
	_, base, _ := newFake(t, fake.Options{Keys: []string{key, "sk_live_other"}})
	tests := []struct {
		name, method, path, authz string
		status                    int
		code                      string
	}{
		{"NoKey", "GET", "/v1/customers", "", 401, fake.CodeInvalidAPIKey},
		{"UnknownKey", "GET", "/v1/customers", "Bearer sk_test_wrong", 401, fake.CodeInvalidAPIKey},
		{"Basic", "GET", "/v1/customers", "Basic c2tfdGVzdF9hYmMxMjM6", 401, fake.CodeInvalidAPIKey},
		{"LiveKey", "GET", "/v1/customers", "Bearer sk_live_other", 200, ""},
		{"UnknownRoute", "GET", "/v1/charges", "Bearer " + key, 404, fake.CodeRouteNotFound},
		{"TrailingSlash", "GET", "/v1/customers/", "Bearer " + key, 404, fake.CodeRouteNotFound},
		{"PutCustomer", "PUT", "/v1/customers/cus_x", "Bearer " + key, 405, fake.CodeMethodNotAllowed},
		{"DeleteList", "DELETE", "/v1/customers", "Bearer " + key, 405, fake.CodeMethodNotAllowed},
		{"UnknownCustomer", "GET", "/v1/customers/cus_nope", "Bearer " + key, 404, fake.CodeResourceMissing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := call(t, base, tt.method, tt.path, "", "Authorization", tt.authz)
			if tt.code == "" {
				if a.status != tt.status {
					t.Fatalf("got %d %s", a.status, a.raw)
				}
				return
			}
			checkError(t, a, tt.status, tt.code)
		})
	}
}

// seed creates n customers one second apart through the API and returns
// their ids, oldest first.
func seed(t *testing.T, base string, clk *fakeapitest.Clock, n int, email func(i int) string) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range n {
		body := `{}`
		if email != nil {
			body = fmt.Sprintf(`{"email":%q}`, email(i))
		}
		a := call(t, base, "POST", "/v1/customers", body)
		if a.status != 200 {
			t.Fatalf("seed: %d %s", a.status, a.raw)
		}
		ids[i] = a.body["id"].(string)
		clk.Advance(time.Second)
	}
	return ids
}

func pageIDs(t *testing.T, a answer) []string {
	t.Helper()
	if a.status != 200 {
		t.Fatalf("list: %d %s", a.status, a.raw)
	}
	if a.body["object"] != "list" || a.body["url"] != "/v1/customers" {
		t.Fatalf("list envelope: %s", a.raw)
	}
	var ids []string
	for _, d := range a.body["data"].([]any) {
		ids = append(ids, d.(map[string]any)["id"].(string))
	}
	return ids
}

func TestList(t *testing.T) {
	_, base, clk := newFake(t, fake.Options{})
	ids := seed(t, base, clk, 25, func(i int) string { return fmt.Sprintf("u%d@example.com", i%5) })
	newest := func(from, n int) []string { // ids[from], ids[from-1], ...
		var out []string
		for i := from; i > from-n && i >= 0; i-- {
			out = append(out, ids[i])
		}
		return out
	}
	eq := func(t *testing.T, got, want []string) {
		t.Helper()
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("got  %v\nwant %v", got, want)
		}
	}

	t.Run("DefaultLimit", func(t *testing.T) {
		a := call(t, base, "GET", "/v1/customers", "")
		eq(t, pageIDs(t, a), newest(24, 10))
		if a.body["has_more"] != true {
			t.Error("has_more = false")
		}
	})
	t.Run("StartingAfterWalk", func(t *testing.T) {
		var got []string
		q := "limit=7"
		for {
			a := call(t, base, "GET", "/v1/customers?"+q, "")
			p := pageIDs(t, a)
			got = append(got, p...)
			if a.body["has_more"] != true {
				break
			}
			q = "limit=7&starting_after=" + p[len(p)-1]
		}
		eq(t, got, newest(24, 25))
	})
	t.Run("EndingBefore", func(t *testing.T) {
		a := call(t, base, "GET", "/v1/customers?limit=3&ending_before="+ids[10], "")
		eq(t, pageIDs(t, a), []string{ids[13], ids[12], ids[11]})
		if a.body["has_more"] != true {
			t.Error("has_more = false")
		}
		a = call(t, base, "GET", "/v1/customers?limit=3&ending_before="+ids[22], "")
		eq(t, pageIDs(t, a), []string{ids[24], ids[23]})
		if a.body["has_more"] != false {
			t.Error("has_more = true")
		}
	})
	t.Run("Email", func(t *testing.T) {
		a := call(t, base, "GET", "/v1/customers?email=u3%40example.com", "")
		eq(t, pageIDs(t, a), []string{ids[23], ids[18], ids[13], ids[8], ids[3]})
		a = call(t, base, "GET", "/v1/customers?email=U3%40example.com", "")
		eq(t, pageIDs(t, a), nil)
	})
	t.Run("Created", func(t *testing.T) {
		gte := strconv.FormatInt(t0.Add(20*time.Second).Unix(), 10)
		lte := strconv.FormatInt(t0.Add(22*time.Second).Unix(), 10)
		a := call(t, base, "GET", "/v1/customers?created%5Bgte%5D="+gte+"&created%5Blte%5D="+lte, "")
		eq(t, pageIDs(t, a), []string{ids[22], ids[21], ids[20]})
	})
	t.Run("SameSecondStableOrder", func(t *testing.T) {
		_, base, _ := newFake(t, fake.Options{Seed: 7})
		var want []string
		for range 5 {
			want = append(want, call(t, base, "POST", "/v1/customers", `{}`).body["id"].(string))
		}
		// Same created_at: ordered by id, descending, the same on every call.
		got := pageIDs(t, call(t, base, "GET", "/v1/customers", ""))
		slices.Sort(want)
		slices.Reverse(want)
		eq(t, got, want) // every created customer, by id descending
		var walked []string
		for q := "limit=2"; ; {
			a := call(t, base, "GET", "/v1/customers?"+q, "")
			p := pageIDs(t, a)
			walked = append(walked, p...)
			if a.body["has_more"] != true {
				break
			}
			q = "limit=2&starting_after=" + p[len(p)-1]
		}
		eq(t, walked, got)
	})

	bad := []struct{ name, query, code string }{
		{"Limit0", "limit=0", fake.CodeParameterInvalid},
		{"Limit101", "limit=101", fake.CodeParameterInvalid},
		{"LimitText", "limit=ten", fake.CodeParameterInvalid},
		{"LimitTwice", "limit=1&limit=2", fake.CodeParameterInvalid},
		{"UnknownCursor", "starting_after=cus_nope", fake.CodeResourceMissing},
		{"UnknownEndingBefore", "ending_before=cus_nope", fake.CodeResourceMissing},
		{"BothCursors", "starting_after=" + ids[1] + "&ending_before=" + ids[2], fake.CodeParameterInvalid},
		{"CreatedISO", "created%5Bgte%5D=2026-03-01T12:00:00Z", fake.CodeParameterInvalid},
		{"CreatedGt", "created%5Bgt%5D=1", fake.CodeParameterUnknown},
		{"Unknown", "order=asc", fake.CodeParameterUnknown},
		{"EmptyEmail", "email=", fake.CodeParameterInvalid},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			checkError(t, call(t, base, "GET", "/v1/customers?"+tt.query, ""), 400, tt.code)
		})
	}
}

func TestFaults(t *testing.T) {
	t.Run("ErrorNotExecuted", func(t *testing.T) {
		f, base, _ := newFake(t, fake.Options{Faults: fake.Faults{ErrorRate: 1, Status: 503, RetryAfter: 2}})
		a := call(t, base, "POST", "/v1/customers", `{}`)
		checkError(t, a, 503, fake.CodeServiceUnavailable)
		if a.header.Get("Retry-After") != "2" || f.WritesExecuted() != 0 || f.CustomerCount() != 0 {
			t.Errorf("Retry-After %q, writes %d", a.header.Get("Retry-After"), f.WritesExecuted())
		}
	})
	t.Run("RateLimitNotExecuted", func(t *testing.T) {
		f, base, _ := newFake(t, fake.Options{Faults: fake.Faults{RateLimitRate: 1}})
		a := call(t, base, "POST", "/v1/customers", `{}`)
		checkError(t, a, 429, fake.CodeRateLimited)
		if a.header.Get("Retry-After") != "0" || f.CustomerCount() != 0 {
			t.Errorf("Retry-After %q, count %d", a.header.Get("Retry-After"), f.CustomerCount())
		}
	})
	t.Run("DropAfterWrite", func(t *testing.T) {
		f, base, _ := newFake(t, fake.Options{Faults: fake.Faults{DropAfterWriteRate: 1}})
		req, _ := http.NewRequest("POST", base+"/v1/customers", strings.NewReader(`{"name":"x"}`))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			t.Fatalf("got an answer %d, want a dropped connection", resp.StatusCode)
		}
		if f.CustomerCount() != 1 || f.WritesExecuted() != 1 {
			t.Errorf("count %d writes %d, want 1 1", f.CustomerCount(), f.WritesExecuted())
		}
		// Reads and rejected writes are answered.
		if a := call(t, base, "GET", "/v1/customers", ""); a.status != 200 {
			t.Errorf("read: %d", a.status)
		}
		checkError(t, call(t, base, "POST", "/v1/customers", `{"bogus":1}`), 400, fake.CodeParameterUnknown)
	})
	t.Run("Invalid", func(t *testing.T) {
		f, _, _ := newFake(t, fake.Options{})
		for _, bad := range []fake.Faults{{ErrorRate: 1.5}, {ErrorRate: 0.6, DropRate: 0.6}, {Status: 404}, {RetryAfter: -1}} {
			if err := f.SetFaults(bad); err == nil {
				t.Errorf("SetFaults(%+v) = nil, want an error", bad)
			}
		}
	})
}

func TestRateLimit(t *testing.T) {
	_, base, clk := newFake(t, fake.Options{RequestsPerSecond: 2, Keys: []string{key, "sk_test_other"}})
	for i := range 2 {
		if a := call(t, base, "GET", "/v1/customers", ""); a.status != 200 {
			t.Fatalf("request %d: %d", i, a.status)
		}
	}
	a := call(t, base, "GET", "/v1/customers", "")
	checkError(t, a, 429, fake.CodeRateLimited)
	if a.header.Get("Retry-After") != "1" {
		t.Errorf("Retry-After = %q, want 1", a.header.Get("Retry-After"))
	}
	// Another key has its own bucket.
	if a := call(t, base, "GET", "/v1/customers", "", "Authorization", "Bearer sk_test_other"); a.status != 200 {
		t.Errorf("other key: %d", a.status)
	}
	clk.Advance(time.Second)
	if a := call(t, base, "GET", "/v1/customers", ""); a.status != 200 {
		t.Errorf("next second: %d", a.status)
	}
}

func TestPutAndInspect(t *testing.T) {
	f, base, _ := newFake(t, fake.Options{})
	old, err := f.Put(fake.Customer{Email: "old@example.com", Metadata: map[string]string{"k": "v"}, CreatedAt: t0.Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Put(fake.Customer{ID: "bad"}); err == nil {
		t.Error("Put with a bad id: nil error")
	}
	newID := call(t, base, "POST", "/v1/customers", `{}`).body["id"].(string)
	cs := f.Customers()
	if len(cs) != 2 || cs[0].ID != newID || cs[1].ID != old.ID {
		t.Fatalf("Customers() = %+v, want newest first", cs)
	}
	got, ok := f.Customer(old.ID)
	if !ok || got.Email != "old@example.com" || got.Metadata["k"] != "v" {
		t.Errorf("Customer(%s) = %+v, %v", old.ID, got, ok)
	}
	got.Metadata["k"] = "changed"
	if again, _ := f.Customer(old.ID); again.Metadata["k"] != "v" {
		t.Error("Customer returned the stored map, not a copy")
	}
	if f.RequestCount("POST", fake.RouteCustomers) != 1 || f.TotalRequests() != 1 {
		t.Errorf("RequestCount %d TotalRequests %d", f.RequestCount("POST", fake.RouteCustomers), f.TotalRequests())
	}
}

func TestConcurrentCreates(t *testing.T) {
	f, base, _ := newFake(t, fake.Options{})
	var wg gosync.WaitGroup
	for range 20 {
		wg.Go(func() {
			req, _ := http.NewRequest("POST", base+"/v1/customers", strings.NewReader(`{}`))
			req.Header.Set("Authorization", "Bearer "+key)
			req.Header.Set("Content-Type", "application/json")
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	if f.CustomerCount() != 20 {
		t.Errorf("CustomerCount = %d, want 20", f.CustomerCount())
	}
}
