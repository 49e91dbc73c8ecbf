package fake

import (
	"fmt"
	"time"
)

// modeStore returns mode's store; it panics on an unknown mode. The caller
// holds s.mu.
func (s *Server) modeStore(mode Mode) *store {
	st, ok := s.modes[mode]
	if !ok {
		panic(fmt.Sprintf("fake: unknown mode %q (want %q or %q)", mode, ModeTest, ModeLive))
	}
	return st
}

// Seed adds c to mode's customers directly, as checkout would have created
// it, and returns it as stored: an empty Token gets a fresh one, a zero
// CreatedAt the server clock; CreatedAt is stored in UTC whole seconds. A
// customer with the same token is replaced. Fields are not validated, so
// tests can seed data the API would refuse. Seeding is not a write
// (WritesExecuted) and no request (CardDataSeen).
func (s *Server) Seed(mode Mode, c Customer) Customer {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.modeStore(mode)
	if c.Token == "" {
		c.Token = s.newToken()
	}
	if c.CreatedAt.IsZero() {
		c.CreatedAt = s.stamp()
	} else {
		c.CreatedAt = c.CreatedAt.UTC().Truncate(time.Second)
	}
	st.put(&c)
	return c
}

// Customers returns mode's customers in list order (created_at, then
// token).
func (s *Server) Customers(mode Mode) []Customer {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.modeStore(mode)
	out := make([]Customer, len(st.ordered))
	for i, c := range st.ordered {
		out[i] = *c
	}
	return out
}

// CustomerCount returns the number of mode's customers.
func (s *Server) CustomerCount(mode Mode) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.modeStore(mode).ordered)
}

// Customer returns mode's customer token, if it exists.
func (s *Server) Customer(mode Mode, token string) (Customer, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.modeStore(mode).byToken[token]
	if !ok {
		return Customer{}, false
	}
	return *c, true
}

// WritesExecuted returns how many creates, updates and deletes executed,
// in both modes (rejected and fault-answered requests excluded; a write
// whose connection was dropped afterwards included).
func (s *Server) WritesExecuted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writes
}

// CardDataSeen reports whether any request so far carried card data (see
// the package doc for what counts), whatever its outcome.
func (s *Server) CardDataSeen() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cardSeen
}

// RequestCount returns how many requests with method hit route
// (RouteCustomers, RouteCustomer or RouteOther), whatever their outcome.
func (s *Server) RequestCount(method, route string) int { return s.requests.Count(method, route) }

// TotalRequests returns how many requests the Server received.
func (s *Server) TotalRequests() int { return s.requests.Total() }

// SetFaults replaces the injected faults. It rejects invalid faults (see
// Faults.Validate) and keeps the current ones.
func (s *Server) SetFaults(f Faults) error {
	if err := f.Validate(); err != nil {
		return fmt.Errorf("fake: %w", err)
	}
	s.faults.set(f)
	return nil
}

// Faults returns the faults currently injected.
func (s *Server) Faults() Faults { return s.faults.get() }

// SetRequestsPerSecond replaces the per-key rate limit; 0 or less
// disables it.
func (s *Server) SetRequestsPerSecond(n int) { s.limiter.SetLimit(n) }
