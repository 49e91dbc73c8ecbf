package emulator

import (
	"testing"
)

// TestFaultRateLimit checks the RateLimitRate fault: a 429 rate_limited
// with Retry-After, on reads and writes alike, that executes nothing.
func TestFaultRateLimit(t *testing.T) {
	e := newEnv(t, Options{Faults: Faults{RateLimitRate: 1, RetryAfter: 3}, Seed: 1})
	for _, r := range []req{
		{method: "POST", target: "/api/v1/customers", body: `{"externalId":"u1"}`, idem: newIdem()},
		{method: "GET", target: "/api/v1/customers"},
	} {
		got := e.do(r)
		if got.status != 429 || got.code() != "rate_limited" {
			t.Fatalf("%s: got %d %q: %s", r.method, got.status, got.code(), got.raw)
		}
		if ra := got.header.Get("Retry-After"); ra != "3" {
			t.Fatalf("%s: Retry-After %q, want 3", r.method, ra)
		}
	}
	if e.srv.CustomerCount() != 0 || e.srv.WritesExecuted() != 0 {
		t.Fatal("an injected 429 executed the write")
	}

	// Its share of a seeded sequence is close to the rate.
	e = newEnv(t, Options{Faults: Faults{RateLimitRate: 0.25, ErrorRate: 0.25}, Seed: 7})
	limited, errored := 0, 0
	const n = 400
	for range n {
		switch got := e.do(req{method: "GET", target: "/api/v1/customers"}); {
		case got.status == 429:
			limited++
			if got.header.Get("Retry-After") != "1" {
				t.Fatalf("429 Retry-After %q, want the default 1", got.header.Get("Retry-After"))
			}
		case got.status >= 500:
			errored++
		}
	}
	if limited < n/8 || limited > n*3/8 || errored < n/8 || errored > n*3/8 {
		t.Errorf("of %d requests %d were rate limited and %d errored; want about %d each", n, limited, errored, n/4)
	}

	if err := (Faults{RateLimitRate: 0.6, ErrorRate: 0.6}).Validate(); err == nil {
		t.Error("Validate accepted RateLimitRate + ErrorRate > 1")
	}
	if err := (Faults{RateLimitRate: -0.1}).Validate(); err == nil {
		t.Error("Validate accepted a negative RateLimitRate")
	}
}
