package emulator

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestFaultErrors(t *testing.T) {
	e := newEnv(t, Options{Faults: Faults{ErrorRate: 1, RetryAfter: 7}, Seed: 1})
	codes := map[int]string{500: "internal_error", 502: "upstream_error", 503: "service_unavailable"}
	seen := map[int]bool{}
	for range 30 {
		r := e.do(req{method: "POST", target: "/api/v1/customers", body: "{}", idem: newIdem()})
		if codes[r.status] == "" || r.code() != codes[r.status] {
			t.Fatalf("got %d %q: %s", r.status, r.code(), r.raw)
		}
		if r.status == 503 && r.header.Get("Retry-After") != "7" {
			t.Fatalf("503 without Retry-After: %v", r.header)
		}
		seen[r.status] = true
	}
	if len(seen) != 3 {
		t.Errorf("statuses seen: %v, want all of 500, 502, 503", seen)
	}
	if e.srv.CustomerCount() != 0 || e.srv.WritesExecuted() != 0 {
		t.Fatal("an injected error executed the write")
	}
}

func TestFaultSeedReproducible(t *testing.T) {
	sequence := func(seed uint64) []int {
		e := newEnv(t, Options{Faults: Faults{ErrorRate: 0.4}, Seed: seed})
		var out []int
		for range 40 {
			out = append(out, e.do(req{method: "GET", target: "/api/v1/customers"}).status)
		}
		return out
	}
	a, b, c := sequence(42), sequence(42), sequence(43)
	if !equalInts(a, b) {
		t.Fatalf("same seed, different faults:\n%v\n%v", a, b)
	}
	if equalInts(a, c) {
		t.Fatalf("different seeds, same faults: %v", a)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestFaultDrop(t *testing.T) {
	e := newEnv(t, Options{Faults: Faults{DropRate: 1}})
	if _, err := e.try(req{method: "POST", target: "/api/v1/customers", body: "{}", idem: "idem_d"}); err == nil {
		t.Fatal("dropped request got an answer")
	}
	if e.srv.CustomerCount() != 0 {
		t.Fatal("a dropped request executed")
	}
	// The handler counts the request after the client has seen the drop.
	waitFor(t, func() bool {
		return testutil.ToFloat64(e.srv.requests.WithLabelValues("POST", RouteCustomers, "dropped")) == 1
	})
	if err := e.srv.SetFaults(Faults{}); err != nil {
		t.Fatal(err)
	}
	expect(t, e.do(req{method: "POST", target: "/api/v1/customers", body: "{}", idem: "idem_d"}), 201, "")
}

func TestFaultExecutedThenTimedOut(t *testing.T) {
	t.Run("HangTimeout", func(t *testing.T) {
		e := newEnv(t, Options{Faults: Faults{TimeoutRate: 1, HangTimeout: 50 * time.Millisecond}})
		body := `{"externalId":"slow"}`
		start := time.Now()
		if _, err := e.try(req{method: "POST", target: "/api/v1/customers", body: body, idem: "idem_slow"}); err == nil {
			t.Fatal("timed-out write got an answer")
		}
		if time.Since(start) < 50*time.Millisecond {
			t.Fatal("connection dropped before the hang timeout")
		}
		if e.srv.CustomerCount() != 1 || e.srv.WritesExecuted() != 1 {
			t.Fatalf("write not executed: %d customers", e.srv.CustomerCount())
		}
		// Reads are never timed out.
		expect(t, e.do(req{method: "GET", target: "/api/v1/customers"}), 200, "")

		if err := e.srv.SetFaults(Faults{}); err != nil {
			t.Fatal(err)
		}
		r := e.do(req{method: "POST", target: "/api/v1/customers", body: body, idem: "idem_slow"})
		expect(t, r, 201, "")
		if r.customer(t)["externalId"] != "slow" || e.srv.Replays() != 1 || e.srv.WritesExecuted() != 1 {
			t.Fatalf("retry was not a replay: %s", r.raw)
		}
	})
	t.Run("ClientGivesUp", func(t *testing.T) {
		e := newEnv(t, Options{Faults: Faults{TimeoutRate: 1}}) // hang up to DefaultHangTimeout
		body := "{}"
		start := time.Now()
		e.http.Client().Timeout = 100 * time.Millisecond // the helper's client gives up
		if _, err := e.try(req{method: "POST", target: "/api/v1/customers", body: body, idem: "idem_gu"}); err == nil {
			t.Fatal("timed-out write got an answer")
		}
		if time.Since(start) > 5*time.Second {
			t.Fatal("the handler did not notice the client giving up")
		}
		if e.srv.CustomerCount() != 1 {
			t.Fatal("write not executed")
		}
	})
}

func TestFaultLatency(t *testing.T) {
	e := newEnv(t, Options{Faults: Faults{Latency: 60 * time.Millisecond, LatencyJitter: 20 * time.Millisecond}})
	start := time.Now()
	expect(t, e.do(req{method: "GET", target: "/api/v1/customers"}), 200, "")
	if d := time.Since(start); d < 60*time.Millisecond {
		t.Fatalf("took %v, want >= 60ms", d)
	}
	if got := e.srv.Faults().Latency; got != 60*time.Millisecond {
		t.Fatalf("Faults().Latency = %v", got)
	}
}

func TestFaultsValidate(t *testing.T) {
	tests := []struct {
		name string
		f    Faults
		ok   bool
	}{
		{"Zero", Faults{}, true},
		{"All", Faults{ErrorRate: 0.2, DropRate: 0.3, TimeoutRate: 0.5, Latency: time.Millisecond}, true},
		{"RateAboveOne", Faults{ErrorRate: 1.1}, false},
		{"Negative", Faults{DropRate: -0.1}, false},
		{"SumAboveOne", Faults{ErrorRate: 0.6, TimeoutRate: 0.6}, false},
		{"NegativeLatency", Faults{Latency: -time.Second}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.f.Validate(); (err == nil) != tt.ok {
				t.Fatalf("Validate = %v, want ok %t", err, tt.ok)
			}
			if _, err := Open(Options{Faults: tt.f}); (err == nil) != tt.ok {
				t.Fatalf("Open = %v, want ok %t", err, tt.ok)
			}
		})
	}
}
