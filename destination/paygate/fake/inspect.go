package fake

import (
	"fmt"
	"maps"
	"strings"
	"time"
)

// CustomerCount returns the number of stored customers.
func (s *Server) CustomerCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byID)
}

// Customers returns every stored customer, newest first (the list order).
func (s *Server) Customers() []Customer {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Customer, 0, len(s.ordered))
	for i := len(s.ordered) - 1; i >= 0; i-- {
		out = append(out, s.ordered[i].clone())
	}
	return out
}

// Customer returns the customer with id, if it exists.
func (s *Server) Customer(id string) (Customer, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.byID[id]
	if !ok {
		return Customer{}, false
	}
	return c.clone(), true
}

// WritesExecuted returns how many creates, updates and deletes the Server
// has executed, including those whose answer a fault dropped; rejected
// writes and injected errors are not counted.
func (s *Server) WritesExecuted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writes
}

// RequestCount returns how many requests with method hit route
// (RouteCustomers, RouteCustomer or RouteOther), whatever their answer.
func (s *Server) RequestCount(method, route string) int { return s.requests.Count(method, route) }

// TotalRequests returns how many requests the Server received.
func (s *Server) TotalRequests() int { return s.requests.Total() }

// Put stores c directly, bypassing the API (test seeding). An empty ID
// gets a fresh one; a zero CreatedAt or UpdatedAt is the server time.
// Putting an existing ID replaces that customer. Put checks the ID prefix
// and the metadata limits, not the other field formats, so tests can seed
// data the API would refuse only where they mean to.
func (s *Server) Put(c Customer) (Customer, error) {
	if c.ID != "" && (!strings.HasPrefix(c.ID, IDPrefix) || len(c.ID) == len(IDPrefix)) {
		return Customer{}, fmt.Errorf("fake: put: id %q must start with %s", c.ID, IDPrefix)
	}
	if len(c.Metadata) > MaxMetadataKeys {
		return Customer{}, fmt.Errorf("fake: put: %d metadata keys, at most %d allowed", len(c.Metadata), MaxMetadataKeys)
	}
	now := s.stamp()
	if c.CreatedAt.IsZero() {
		c.CreatedAt = now
	}
	if c.UpdatedAt.IsZero() {
		c.UpdatedAt = c.CreatedAt
	}
	c.CreatedAt = c.CreatedAt.UTC().Truncate(time.Millisecond)
	c.UpdatedAt = c.UpdatedAt.UTC().Truncate(time.Millisecond)
	c.Metadata = maps.Clone(c.Metadata)
	if c.Metadata == nil {
		c.Metadata = map[string]string{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.ID == "" {
		c.ID = s.newIDLocked()
	} else {
		s.deleteLocked(c.ID)
	}
	stored := c
	s.insertLocked(&stored)
	return stored.clone(), nil
}

// SetFaults replaces the injected faults at runtime. It rejects invalid
// faults (see Faults.Validate) and keeps the current ones.
func (s *Server) SetFaults(f Faults) error {
	if err := f.Validate(); err != nil {
		return fmt.Errorf("fake: %w", err)
	}
	s.mu.Lock()
	s.faults = f
	s.mu.Unlock()
	return nil
}

// Faults returns the faults currently injected.
func (s *Server) Faults() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults
}

// SetRequestsPerSecond replaces the per-key rate limit at runtime; 0
// disables it.
func (s *Server) SetRequestsPerSecond(n int) { s.limiter.SetLimit(n) }
