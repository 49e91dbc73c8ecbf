package emulator

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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
	testKeyID  = "key_test"
	testSecret = "sk_test_secret"
)

// testClock is a settable clock for Options.Now.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is a test fixture: an emulator behind a real HTTP server.
type env struct {
	t     *testing.T
	srv   *Server
	http  *httptest.Server
	clock *testClock
}

func newEnv(t *testing.T, opts Options) *env {
	t.Helper()
	clock := &testClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	if opts.Keys == nil {
		opts.Keys = map[string]string{testKeyID: testSecret}
	}
	if opts.Now == nil {
		opts.Now = clock.Now
	}
	srv, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	hs := httptest.NewServer(srv)
	t.Cleanup(func() {
		hs.Close()
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return &env{t: t, srv: srv, http: hs, clock: clock}
}

// req is one signed request to build. Zero fields take defaults: key
// testKeyID/testSecret, scope "*", timestamp from the env clock.
type req struct {
	method, target, body, idem string
	keyID, secret, scope       string
	ts                         string // X-Plugipay-Timestamp; "-" omits the header
	signature                  string // overrides the computed signature
	sendTarget                 string // request target actually sent, if different
	contentType                string // overrides application/json; "-" omits it
	onBehalfOf                 string // X-Plugipay-On-Behalf-Of, when set
	userAgent                  string // User-Agent, when set
}

// sign is the test's own signer, independent of package plugipay.
func sign(secret, method, target, ts string, body []byte, idem string) string {
	sum := sha256.Sum256(body)
	parts := []string{method, target, ts, hex.EncodeToString(sum[:])}
	if idem != "" {
		parts = append(parts, idem)
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(strings.Join(parts, "\n")))
	return hex.EncodeToString(m.Sum(nil))
}

// response is a decoded answer.
type response struct {
	status int
	header http.Header
	raw    []byte
	env    struct {
		Data  json.RawMessage `json:"data"`
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
			DocURL  string `json:"docUrl"`
		} `json:"error"`
		Meta map[string]any `json:"meta"`
	}
}

func (r *response) code() string {
	if r.env.Error == nil {
		return ""
	}
	return r.env.Error.Code
}

func (r *response) customer(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.env.Data, &m); err != nil {
		t.Fatalf("data is not a customer object: %v: %s", err, r.raw)
	}
	return m
}

func (r *response) customers(t *testing.T) []map[string]any {
	t.Helper()
	var m []map[string]any
	if err := json.Unmarshal(r.env.Data, &m); err != nil {
		t.Fatalf("data is not a list: %v: %s", err, r.raw)
	}
	return m
}

func (e *env) do(q req) *response {
	e.t.Helper()
	r, err := e.try(q)
	if err != nil {
		e.t.Fatalf("%s %s: %v", q.method, q.target, err)
	}
	return r
}

func (e *env) try(q req) (*response, error) {
	if q.keyID == "" {
		q.keyID = testKeyID
	}
	if q.secret == "" {
		q.secret = testSecret
	}
	if q.scope == "" {
		q.scope = "*"
	}
	ts := q.ts
	if ts == "" {
		ts = strconv.FormatInt(e.clock.Now().Unix(), 10)
	}
	sig := q.signature
	if sig == "" {
		sig = sign(q.secret, q.method, q.target, ts, []byte(q.body), q.idem)
	}
	target := q.target
	if q.sendTarget != "" {
		target = q.sendTarget
	}
	var body io.Reader
	if q.body != "" {
		body = bytes.NewReader([]byte(q.body))
	}
	hr, err := http.NewRequest(q.method, e.http.URL+target, body)
	if err != nil {
		return nil, fmt.Errorf("new request: %w", err)
	}
	hr.Header.Set("Authorization", fmt.Sprintf("Plugipay-HMAC-SHA256 keyId=%s, scope=%s, signature=%s", q.keyID, q.scope, sig))
	if ts != "-" {
		hr.Header.Set("X-Plugipay-Timestamp", ts)
	}
	hr.Header.Set("Accept", "application/json")
	switch {
	case q.contentType == "-":
	case q.contentType != "":
		hr.Header.Set("Content-Type", q.contentType)
	case q.body != "":
		hr.Header.Set("Content-Type", "application/json")
	}
	if q.idem != "" {
		hr.Header.Set("Idempotency-Key", q.idem)
	}
	if q.onBehalfOf != "" {
		hr.Header.Set("X-Plugipay-On-Behalf-Of", q.onBehalfOf)
	}
	if q.userAgent != "" {
		hr.Header.Set("User-Agent", q.userAgent)
	}
	resp, err := e.http.Client().Do(hr)
	if err != nil {
		return nil, fmt.Errorf("do: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	out := &response{status: resp.StatusCode, header: resp.Header, raw: raw}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		return out, fmt.Errorf("Content-Type = %q, want application/json; body %s", ct, raw)
	}
	if err := json.Unmarshal(raw, &out.env); err != nil {
		return out, fmt.Errorf("body is not an envelope: %w: %s", err, raw)
	}
	return out, nil
}

func newIdem() string { return "idem_" + rand.Text() }

// create makes a customer from body and returns its id.
func (e *env) create(body string) string {
	e.t.Helper()
	r := e.do(req{method: "POST", target: "/api/v1/customers", body: body, idem: newIdem()})
	if r.status != http.StatusCreated {
		e.t.Fatalf("create %s: status %d: %s", body, r.status, r.raw)
	}
	return r.customer(e.t)["id"].(string)
}

func expect(t *testing.T, r *response, status int, code string) {
	t.Helper()
	if r.status != status || r.code() != code {
		t.Fatalf("got %d %q, want %d %q: %s", r.status, r.code(), status, code, r.raw)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// waitFor polls cond for up to five seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
