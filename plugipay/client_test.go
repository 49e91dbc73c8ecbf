package plugipay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	testKeyID  = "key_test_1"
	testSecret = "sk_test_5f1c2e_SECRET"
)

// recorded is one request as the test server saw it.
type recorded struct {
	Method, Target string
	Header         http.Header
	Body           []byte
	// SigOK reports whether the signature verified against the raw target
	// and body under testSecret.
	SigOK bool
}

// scriptServer is an httptest server that answers the n-th request with
// script[n] (the last entry repeats) and records every request.
type scriptServer struct {
	*httptest.Server
	mu     sync.Mutex
	reqs   []recorded
	script []http.HandlerFunc
}

func newScriptServer(t *testing.T, script ...http.HandlerFunc) *scriptServer {
	t.Helper()
	s := &scriptServer{script: script}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *scriptServer) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rec := recorded{Method: r.Method, Target: r.RequestURI, Header: r.Header.Clone(), Body: body}
	_, _, sig, ok := ParseAuthorization(r.Header.Get(HeaderAuthorization))
	ts, err := strconv.ParseInt(r.Header.Get(HeaderTimestamp), 10, 64)
	rec.SigOK = ok && err == nil &&
		VerifySignature(testSecret, r.Method, r.RequestURI, ts, body, r.Header.Get(HeaderIdempotencyKey), sig)
	s.mu.Lock()
	n := len(s.reqs)
	s.reqs = append(s.reqs, rec)
	h := s.script[min(n, len(s.script)-1)]
	s.mu.Unlock()
	h(w, r)
}

func (s *scriptServer) requests() []recorded {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]recorded(nil), s.reqs...)
}

// reply writes an envelope-shaped JSON body with the given status.
func reply(status int, body string, headers ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Set(headers[i], headers[i+1])
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

func okCustomer(id string) http.HandlerFunc {
	return reply(200, fmt.Sprintf(`{"data":{"id":%q,"email":"ada@example.com","externalId":"user_1","metadata":{"a":"b"}},"error":null,"meta":{"requestId":"req_ok"}}`, id))
}

func errBody(code, msg, reqID string) string {
	return fmt.Sprintf(`{"data":null,"error":{"code":%q,"message":%q},"meta":{"requestId":%q}}`, code, msg, reqID)
}

// newTestClient returns a client for srv with fast backoff and client-side
// rate limiting off, after applying mod to the options.
func newTestClient(t *testing.T, srv *scriptServer, mod func(*Options)) *Client {
	t.Helper()
	opts := Options{
		BaseURL:    srv.URL,
		KeyID:      testKeyID,
		Secret:     testSecret,
		Timeout:    5 * time.Second,
		MinBackoff: time.Millisecond,
		MaxBackoff: 5 * time.Millisecond,
		ReadRate:   -1,
		WriteRate:  -1,
	}
	if mod != nil {
		mod(&opts)
	}
	c, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

func TestNew(t *testing.T) {
	t.Run("Defaults", func(t *testing.T) {
		c, err := New(Options{KeyID: "k", Secret: "s"})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := c.base.String(), DefaultBaseURL; got != want {
			t.Errorf("base = %q, want %q", got, want)
		}
		if c.timeout != DefaultTimeout || c.maxAttempts != DefaultMaxAttempts {
			t.Errorf("timeout, attempts = %v, %d", c.timeout, c.maxAttempts)
		}
		if got := c.writeLimiter.Limit(); got != DefaultWriteRate {
			t.Errorf("write rate = %v, want %v", got, DefaultWriteRate)
		}
		if got := c.readLimiter.Limit(); got != DefaultReadRate {
			t.Errorf("read rate = %v, want %v", got, DefaultReadRate)
		}
	})
	t.Run("TrailingSlashTrimmed", func(t *testing.T) {
		c, err := New(Options{BaseURL: "http://localhost:8080/", KeyID: "k", Secret: "s"})
		if err != nil {
			t.Fatal(err)
		}
		_, target, _ := c.target(&request{path: "/customers"})
		u, _, _ := c.target(&request{path: "/customers"})
		if got, want := u.String(), "http://localhost:8080/api/v1/customers"; got != want {
			t.Errorf("url = %q, want %q", got, want)
		}
		if target != "/api/v1/customers" {
			t.Errorf("target = %q", target)
		}
	})
	t.Run("FromEnv", func(t *testing.T) {
		t.Setenv(EnvBaseURL, "http://emu:9000/")
		t.Setenv(EnvKeyID, "key_env")
		t.Setenv(EnvSecret, "sec_env")
		t.Setenv(EnvOnBehalfOf, "acc_1")
		o := OptionsFromEnv()
		if o.BaseURL != "http://emu:9000/" || o.KeyID != "key_env" || o.Secret != "sec_env" || o.OnBehalfOf != "acc_1" {
			t.Fatalf("OptionsFromEnv = %+v", o)
		}
		if _, err := New(o); err != nil {
			t.Fatal(err)
		}
	})
	bad := []struct {
		name string
		opts Options
		want string
	}{
		{"BadScheme", Options{BaseURL: "ftp://x", KeyID: "k", Secret: "s"}, "scheme must be http or https"},
		{"NoHost", Options{BaseURL: "http://", KeyID: "k", Secret: "s"}, "missing host"},
		{"NotURL", Options{BaseURL: "://nope", KeyID: "k", Secret: "s"}, "invalid base URL"},
		{"NoKeyID", Options{Secret: "s"}, "key id is required"},
		{"NoSecret", Options{KeyID: "k"}, "secret is required"},
		{"NegativeTimeout", Options{KeyID: "k", Secret: "s", Timeout: -1}, "must not be negative"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New error = %v, want containing %q", err, tc.want)
			}
		})
	}
}

func TestSigning(t *testing.T) {
	srv := newScriptServer(t, okCustomer("cus_1"))
	c := newTestClient(t, srv, func(o *Options) {
		o.BaseURL = srv.URL + "/" // trailing slash is trimmed
		o.OnBehalfOf = "acc_merchant"
	})
	ctx := context.Background()
	if _, err := c.Customers.Get(ctx, "cus_1"); err != nil {
		t.Fatal(err)
	}
	params := CustomerParams{Email: String("ada@example.com"), ExternalID: String("user_19823"), Name: String("Ada Lovelace")}
	if _, err := c.Customers.Create(ctx, params, "idem_0f8e2d"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Customers.Update(ctx, "cus_1", CustomerParams{Metadata: map[string]string{"archived": "true"}}, "idem_9a1b"); err != nil {
		t.Fatal(err)
	}

	reqs := srv.requests()
	want := []struct {
		method, target, body, key string
	}{
		{"GET", "/api/v1/customers/cus_1", "", ""},
		{"POST", "/api/v1/customers", `{"email":"ada@example.com","externalId":"user_19823","name":"Ada Lovelace"}`, "idem_0f8e2d"},
		{"PATCH", "/api/v1/customers/cus_1", `{"metadata":{"archived":"true"}}`, "idem_9a1b"},
	}
	if len(reqs) != len(want) {
		t.Fatalf("got %d requests, want %d", len(reqs), len(want))
	}
	for i, w := range want {
		r := reqs[i]
		t.Run(w.method, func(t *testing.T) {
			if r.Method != w.method || r.Target != w.target || string(r.Body) != w.body {
				t.Errorf("request = %s %s %q, want %s %s %q", r.Method, r.Target, r.Body, w.method, w.target, w.body)
			}
			if !r.SigOK {
				t.Errorf("signature does not verify; Authorization = %q", r.Header.Get(HeaderAuthorization))
			}
			if got := r.Header.Get(HeaderIdempotencyKey); got != w.key {
				t.Errorf("Idempotency-Key = %q, want %q", got, w.key)
			}
			auth := r.Header.Get(HeaderAuthorization)
			if !strings.HasPrefix(auth, "Plugipay-HMAC-SHA256 keyId="+testKeyID+", scope=*, signature=") {
				t.Errorf("Authorization = %q", auth)
			}
			if strings.Contains(auth, testSecret) {
				t.Errorf("Authorization carries the secret")
			}
			if got := r.Header.Get("Accept"); got != "application/json" {
				t.Errorf("Accept = %q", got)
			}
			wantCT := ""
			if w.body != "" {
				wantCT = "application/json"
			}
			if got := r.Header.Get("Content-Type"); got != wantCT {
				t.Errorf("Content-Type = %q, want %q", got, wantCT)
			}
			if got := r.Header.Get(HeaderOnBehalfOf); got != "acc_merchant" {
				t.Errorf("On-Behalf-Of = %q", got)
			}
			ts, err := strconv.ParseInt(r.Header.Get(HeaderTimestamp), 10, 64)
			if err != nil || time.Since(time.Unix(ts, 0)).Abs() > time.Minute {
				t.Errorf("timestamp = %q", r.Header.Get(HeaderTimestamp))
			}
		})
	}
}

func TestSigning_NoOnBehalfOfByDefault(t *testing.T) {
	srv := newScriptServer(t, okCustomer("cus_1"))
	c := newTestClient(t, srv, nil)
	if _, err := c.Customers.Get(context.Background(), "cus_1"); err != nil {
		t.Fatal(err)
	}
	if h := srv.requests()[0].Header; h.Get(HeaderOnBehalfOf) != "" || h.Get(HeaderIdempotencyKey) != "" {
		t.Errorf("unexpected headers: %v", h)
	}
}

// A replica names itself in the User-Agent (the emulator's request log
// tells replicas apart by it); by default every client says plugipay-sync.
func TestUserAgent(t *testing.T) {
	for _, tc := range []struct{ set, want string }{
		{"", DefaultUserAgent},
		{"plugipay-sync/replica-2", "plugipay-sync/replica-2"},
	} {
		srv := newScriptServer(t, okCustomer("cus_1"))
		c := newTestClient(t, srv, func(o *Options) { o.UserAgent = tc.set })
		if _, err := c.Customers.Get(context.Background(), "cus_1"); err != nil {
			t.Fatal(err)
		}
		if got := srv.requests()[0].Header.Get("User-Agent"); got != tc.want {
			t.Errorf("UserAgent %q: sent %q, want %q", tc.set, got, tc.want)
		}
	}
}

func TestDecodeEnvelope(t *testing.T) {
	html := "<html><body>" + strings.Repeat("Bad Gateway ", 40) + "</body></html>"
	tests := []struct {
		name      string
		status    int
		body      string
		wantErr   error
		wantCode  string
		wantReqID string
		wantMsg   string
	}{
		{"OK", 200, `{"data":{"id":"cus_1"},"error":null,"meta":{"requestId":"req_1"}}`, nil, "", "", ""},
		{"ErrorEnvelopeOn2xx", 200, errBody("validation_error", "bad email", "req_2"), ErrValidation, "validation_error", "req_2", "bad email"},
		{"UnknownCodeOn2xx", 200, errBody("weird", "hm", "req_3"), ErrAPI, "weird", "req_3", "hm"},
		{"4xxWithoutCode", 404, `{"data":null,"error":{"message":"gone"},"meta":{"requestId":"req_4"}}`, ErrNotFound, CodeUnknown, "req_4", "gone"},
		{"4xxNullError", 400, `{"data":null,"error":null,"meta":{"requestId":"req_5"}}`, ErrValidation, CodeUnknown, "req_5", "Bad Request"},
		{"HTMLBody", 502, html, ErrInvalidResponse, CodeInvalidResponse, "", html[:200]},
		{"EmptyBody", 200, "", ErrInvalidResponse, CodeInvalidResponse, "", "not a JSON envelope"},
		{"409Idempotency", 409, errBody("idempotency_mismatch", "x", "r"), ErrIdempotency, "idempotency_mismatch", "r", "x"},
		{"409OtherCode", 409, errBody("rate_limited", "x", "r"), ErrConflict, "rate_limited", "r", "x"},
		{"503AnyCode", 503, errBody("validation_error", "x", "r"), ErrServer, "validation_error", "r", "x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env, e := decodeEnvelope(tc.status, []byte(tc.body))
			if tc.wantErr == nil {
				if e != nil || env == nil {
					t.Fatalf("decodeEnvelope = %v, %v", env, e)
				}
				return
			}
			if e == nil {
				t.Fatal("decodeEnvelope returned no error")
			}
			if !errors.Is(e, tc.wantErr) {
				t.Errorf("kind = %v, want %v", e.Err, tc.wantErr)
			}
			if e.Code != tc.wantCode || e.RequestID != tc.wantReqID || e.StatusCode != tc.status {
				t.Errorf("code, request id, status = %q, %q, %d; want %q, %q, %d",
					e.Code, e.RequestID, e.StatusCode, tc.wantCode, tc.wantReqID, tc.status)
			}
			if !strings.Contains(e.Message, tc.wantMsg) {
				t.Errorf("message = %q, want containing %q", e.Message, tc.wantMsg)
			}
			if tc.wantErr == ErrInvalidResponse && strings.Contains(e.Message, html[:201]) {
				t.Errorf("message keeps more than 200 bytes: %q", e.Message)
			}
		})
	}
}

func TestErrorKinds(t *testing.T) {
	tests := []struct {
		name     string
		status   int
		code     string
		wantKind error
	}{
		{"InvalidSignature", 401, CodeInvalidSignature, ErrAuth},
		{"InvalidKey", 401, CodeInvalidKey, ErrAuth},
		{"TimestampSkew", 401, CodeTimestampSkew, ErrAuth},
		{"InvalidTimestamp", 401, CodeInvalidTimestamp, ErrAuth},
		{"Scope", 403, CodeInsufficientScope, ErrScope},
		{"Validation", 400, CodeValidation, ErrValidation},
		{"NotFound", 404, CodeNotFound, ErrNotFound},
		{"Conflict", 409, CodeConflict, ErrConflict},
		{"IdempotencyReused", 409, CodeIdempotencyReused, ErrIdempotency},
		{"IdempotencyMismatch", 409, CodeIdempotencyMismatch, ErrIdempotency},
		{"RateLimited", 429, CodeRateLimited, ErrRateLimited},
		{"Internal", 500, CodeInternal, ErrServer},
		{"Upstream", 502, CodeUpstream, ErrServer},
		{"Unavailable", 503, CodeServiceUnavailable, ErrServer},
		{"MethodNotAllowed", 405, CodeMethodNotAllowed, ErrAPI},
	}
	allKinds := []error{ErrAuth, ErrScope, ErrValidation, ErrNotFound, ErrConflict, ErrIdempotency,
		ErrRateLimited, ErrServer, ErrNetwork, ErrTimeout, ErrCanceled, ErrInvalidResponse, ErrAPI}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newScriptServer(t, reply(tc.status, errBody(tc.code, "it failed "+testSecret, "req_"+tc.code)))
			c := newTestClient(t, srv, func(o *Options) { o.MaxAttempts = 1 })
			_, err := c.Customers.Get(context.Background(), "cus_1")
			if !errors.Is(err, tc.wantKind) {
				t.Fatalf("err = %v, want kind %v", err, tc.wantKind)
			}
			for _, k := range allKinds {
				if k != tc.wantKind && errors.Is(err, k) {
					t.Errorf("err also matches %v", k)
				}
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("err %T is not *Error", err)
			}
			if e.StatusCode != tc.status || e.Code != tc.code || e.RequestID != "req_"+tc.code || e.Op != "get customer" {
				t.Errorf("Error = %+v", e)
			}
			if strings.Contains(err.Error(), testSecret) {
				t.Errorf("Error() leaks the secret: %s", err)
			}
			if !strings.Contains(err.Error(), "[REDACTED]") || !strings.Contains(err.Error(), "req_"+tc.code) {
				t.Errorf("Error() = %s", err)
			}
		})
	}
}

func TestErrorKinds_ClientSide(t *testing.T) {
	t.Run("Network", func(t *testing.T) {
		srv := newScriptServer(t, okCustomer("cus_1"))
		url := srv.URL
		srv.Close()
		c := newTestClient(t, srv, func(o *Options) { o.BaseURL = url; o.MaxAttempts = 1 })
		_, err := c.Customers.Get(context.Background(), "cus_1")
		var e *Error
		if !errors.Is(err, ErrNetwork) || !errors.As(err, &e) || e.Code != CodeNetwork || e.StatusCode != 0 {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("Timeout", func(t *testing.T) {
		release := make(chan struct{})
		defer close(release)
		srv := newScriptServer(t, func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-release:
			}
		})
		c := newTestClient(t, srv, func(o *Options) { o.Timeout = 50 * time.Millisecond; o.MaxAttempts = 1 })
		_, err := c.Customers.Get(context.Background(), "cus_1")
		var e *Error
		if !errors.Is(err, ErrTimeout) || !errors.As(err, &e) || e.Code != CodeTimeout || e.StatusCode != 0 {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("Canceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		srv := newScriptServer(t, func(w http.ResponseWriter, r *http.Request) {
			cancel()
			<-r.Context().Done()
		})
		c := newTestClient(t, srv, nil)
		_, err := c.Customers.Get(ctx, "cus_1")
		var e *Error
		if !errors.Is(err, ErrCanceled) || !errors.Is(err, context.Canceled) || !errors.As(err, &e) || e.Code != CodeCanceled {
			t.Fatalf("err = %v", err)
		}
		if n := len(srv.requests()); n != 1 {
			t.Errorf("attempts = %d, want 1", n)
		}
	})
	t.Run("CanceledBeforeStart", func(t *testing.T) {
		srv := newScriptServer(t, okCustomer("cus_1"))
		c := newTestClient(t, srv, nil)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := c.Customers.Get(ctx, "cus_1")
		if !errors.Is(err, ErrCanceled) || !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("NetworkMessageOmitsQuery", func(t *testing.T) {
		srv := newScriptServer(t, okCustomer("cus_1"))
		url := srv.URL
		srv.Close()
		c := newTestClient(t, srv, func(o *Options) { o.BaseURL = url; o.MaxAttempts = 1 })
		_, err := c.Customers.List(context.Background(), ListParams{Email: "ada@example.com"})
		if !errors.Is(err, ErrNetwork) {
			t.Fatalf("err = %v", err)
		}
		t.Log(err)
		if msg := err.Error(); strings.Contains(msg, "ada") || !strings.Contains(msg, "/api/v1/customers?[query omitted]") {
			t.Errorf("Error() = %s", msg)
		}
	})
	t.Run("RedirectNotFollowed", func(t *testing.T) {
		srv := newScriptServer(t, func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		})
		c := newTestClient(t, srv, nil)
		_, err := c.Customers.Create(context.Background(), CustomerParams{}, "idem_1")
		var e *Error
		if !errors.Is(err, ErrInvalidResponse) || !errors.As(err, &e) || e.StatusCode != http.StatusFound {
			t.Fatalf("err = %v", err)
		}
		if n := len(srv.requests()); n != 1 {
			t.Errorf("requests = %d, want 1", n)
		}
	})
	t.Run("MissingID", func(t *testing.T) {
		srv := newScriptServer(t, okCustomer("cus_1"))
		c := newTestClient(t, srv, nil)
		if _, err := c.Customers.Get(context.Background(), ""); !errors.Is(err, ErrValidation) {
			t.Fatalf("err = %v", err)
		}
		if n := len(srv.requests()); n != 0 {
			t.Errorf("requests = %d, want 0", n)
		}
	})
	t.Run("NoData", func(t *testing.T) {
		srv := newScriptServer(t, reply(200, `{"data":null,"error":null,"meta":{"requestId":"req_n"}}`))
		c := newTestClient(t, srv, nil)
		_, err := c.Customers.Get(context.Background(), "cus_1")
		var e *Error
		if !errors.Is(err, ErrInvalidResponse) || !errors.As(err, &e) || e.RequestID != "req_n" {
			t.Fatalf("err = %v", err)
		}
	})
}
