package emulator

import (
	"strconv"
	"testing"
	"time"
)

func TestRateLimit(t *testing.T) {
	e := newEnv(t, Options{ReadRate: 3, WriteRate: 2, Keys: map[string]string{testKeyID: testSecret, "key_b": "sk_b"}})
	e.clock.Advance(500 * time.Millisecond) // mid-window
	reset := strconv.FormatInt(e.clock.Now().Unix()+1, 10)
	get := req{method: "GET", target: "/api/v1/customers"}

	for i, want := range []string{"2", "1", "0"} {
		r := e.do(get)
		expect(t, r, 200, "")
		if r.header.Get("X-RateLimit-Limit") != "3" || r.header.Get("X-RateLimit-Remaining") != want || r.header.Get("X-RateLimit-Reset") != reset {
			t.Fatalf("read %d headers: %v", i, r.header)
		}
	}
	r := e.do(get)
	expect(t, r, 429, "rate_limited")
	if r.header.Get("Retry-After") != "1" || r.header.Get("X-RateLimit-Remaining") != "0" {
		t.Fatalf("429 headers: %v", r.header)
	}

	// Writes have their own bucket; a limited write executes nothing.
	for range 2 {
		expect(t, e.do(req{method: "POST", target: "/api/v1/customers", body: "{}", idem: newIdem()}), 201, "")
	}
	r = e.do(req{method: "POST", target: "/api/v1/customers", body: "{}", idem: "idem_limited"})
	expect(t, r, 429, "rate_limited")
	if e.srv.CustomerCount() != 2 {
		t.Fatalf("CustomerCount = %d, want 2", e.srv.CustomerCount())
	}

	// Another key has its own buckets.
	expect(t, e.do(req{method: "GET", target: "/api/v1/customers", keyID: "key_b", secret: "sk_b"}), 200, "")

	// The next second opens a new window, and the limited key was not stored.
	e.clock.Advance(time.Second)
	expect(t, e.do(get), 200, "")
	expect(t, e.do(req{method: "POST", target: "/api/v1/customers", body: "{}", idem: "idem_limited"}), 201, "")
	if e.srv.Replays() != 0 {
		t.Fatal("a rate-limited write was stored for replay")
	}

	e.srv.SetRateLimits(0, 0)
	r = e.do(get)
	if r.header.Get("X-RateLimit-Limit") != "" {
		t.Fatalf("disabled limit still sets headers: %v", r.header)
	}
}

func TestRateLimitDisabledByDefault(t *testing.T) {
	e := newEnv(t, Options{})
	for range 150 {
		expect(t, e.do(req{method: "GET", target: "/api/v1/customers"}), 200, "")
	}
}
