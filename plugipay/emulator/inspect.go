package emulator

import (
	"fmt"
	"net/http"

	"github.com/plugipay-sync/plugipay-sync/plugipay"
)

// CustomerCount returns the number of stored customers.
func (s *Server) CustomerCount() int {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	return len(s.st.byID)
}

// Customers returns every stored customer, oldest first, as the API would
// render them (null fields as "").
func (s *Server) Customers() []plugipay.Customer {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	out := make([]plugipay.Customer, len(s.st.ordered))
	for i, c := range s.st.ordered {
		out[i] = c.public()
	}
	return out
}

// Customer returns the customer with id, if it exists.
func (s *Server) Customer(id string) (plugipay.Customer, bool) {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	c, ok := s.st.byID[id]
	if !ok {
		return plugipay.Customer{}, false
	}
	return c.public(), true
}

// CustomerByExternalID returns the customer holding externalID, if any.
func (s *Server) CustomerByExternalID(externalID string) (plugipay.Customer, bool) {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	id, ok := s.st.byExternal[externalID]
	if !ok {
		return plugipay.Customer{}, false
	}
	return s.st.byID[id].public(), true
}

// WritesExecuted returns how many creates and updates this Server has
// executed (replays, rejected and failed writes excluded).
func (s *Server) WritesExecuted() int {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	return s.st.writes
}

// Replays returns how many writes were answered from the idempotency store.
func (s *Server) Replays() int {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	return s.st.replays
}

// RequestCount returns how many requests with method hit route (RouteCustomers,
// RouteCustomer or RouteOther), whatever their status.
func (s *Server) RequestCount(method, route string) int {
	s.countMu.Lock()
	defer s.countMu.Unlock()
	return s.counts[method+" "+route]
}

// TotalRequests returns how many API requests (not /metrics) were answered.
func (s *Server) TotalRequests() int {
	s.countMu.Lock()
	defer s.countMu.Unlock()
	n := 0
	for _, v := range s.counts {
		n += v
	}
	return n
}

// SetFaults replaces the injected faults at runtime. It rejects invalid
// faults (see Faults.Validate) and keeps the current ones.
func (s *Server) SetFaults(f Faults) error {
	if err := f.Validate(); err != nil {
		return fmt.Errorf("emulator: %w", err)
	}
	s.faults.set(f)
	return nil
}

// Faults returns the faults currently injected.
func (s *Server) Faults() Faults { return s.faults.get() }

// SetRateLimits replaces the per-key read and write limits (requests per
// second, 0 or less disables) at runtime.
func (s *Server) SetRateLimits(read, write int) { s.limiter.set(read, write) }

var _ http.Handler = (*Server)(nil)
