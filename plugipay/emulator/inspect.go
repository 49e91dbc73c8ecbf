package emulator

import (
	"fmt"
	"net/http"

	"github.com/plugipay-sync/plugipay-sync/plugipay"
)

// CustomerCount returns the number of customers of the server's own
// workspace (Options.AccountID).
func (s *Server) CustomerCount() int { return s.CustomerCountIn(s.accountID) }

// Customers returns every customer of the server's own workspace, oldest
// first, as the API would render them (null fields as "").
func (s *Server) Customers() []plugipay.Customer { return s.CustomersIn(s.accountID) }

// Customer returns the customer with id in the server's own workspace.
func (s *Server) Customer(id string) (plugipay.Customer, bool) { return s.CustomerIn(s.accountID, id) }

// CustomerByExternalID returns the customer of the server's own workspace
// holding externalID, if any.
func (s *Server) CustomerByExternalID(externalID string) (plugipay.Customer, bool) {
	return s.CustomerByExternalIDIn(s.accountID, externalID)
}

// inspect runs f on account's store under its lock; it makes no store for
// an account never used, and then does not call f.
func (s *Server) inspect(account string, f func(st *store)) {
	st := s.ws.lookup(account)
	if st == nil {
		return
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	f(st)
}

// CustomerCountIn returns the number of customers of workspace account.
func (s *Server) CustomerCountIn(account string) int {
	n := 0
	s.inspect(account, func(st *store) { n = len(st.byID) })
	return n
}

// CustomersIn returns every customer of workspace account, oldest first,
// as the API would render them (null fields as "").
func (s *Server) CustomersIn(account string) []plugipay.Customer {
	var out []plugipay.Customer
	s.inspect(account, func(st *store) {
		out = make([]plugipay.Customer, len(st.ordered))
		for i, c := range st.ordered {
			out[i] = c.public()
		}
	})
	return out
}

// CustomerIn returns the customer with id in workspace account, if it
// exists there.
func (s *Server) CustomerIn(account, id string) (plugipay.Customer, bool) {
	var out plugipay.Customer
	ok := false
	s.inspect(account, func(st *store) {
		if c := st.byID[id]; c != nil {
			out, ok = c.public(), true
		}
	})
	return out, ok
}

// CustomerByExternalIDIn returns the customer of workspace account holding
// externalID, if any.
func (s *Server) CustomerByExternalIDIn(account, externalID string) (plugipay.Customer, bool) {
	var out plugipay.Customer
	ok := false
	s.inspect(account, func(st *store) {
		if id, used := st.byExternal[externalID]; used {
			out, ok = st.byID[id].public(), true
		}
	})
	return out, ok
}

// CustomerCounts returns the number of customers of every workspace that
// has any, by account id: with CustomersIn, what a check that each
// tenant's users exist in its own workspace and nowhere else needs.
func (s *Server) CustomerCounts() map[string]int {
	out := map[string]int{}
	for _, st := range s.ws.all() {
		st.mu.Lock()
		if n := len(st.byID); n > 0 {
			out[st.account] = n
		}
		st.mu.Unlock()
	}
	return out
}

// Accounts returns the ids of every workspace a request or the state file
// has reached, sorted (the server's own included).
func (s *Server) Accounts() []string {
	all := s.ws.all()
	out := make([]string, len(all))
	for i, st := range all {
		out[i] = st.account
	}
	return out
}

// WritesExecuted returns how many creates and updates this Server has
// executed in every workspace (replays, rejected and failed writes
// excluded).
func (s *Server) WritesExecuted() int {
	n := 0
	for _, st := range s.ws.all() {
		st.mu.Lock()
		n += st.writes
		st.mu.Unlock()
	}
	return n
}

// WritesExecutedIn returns how many creates and updates were executed in
// workspace account.
func (s *Server) WritesExecutedIn(account string) int {
	n := 0
	s.inspect(account, func(st *store) { n = st.writes })
	return n
}

// Replays returns how many writes were answered from the idempotency
// stores of every workspace.
func (s *Server) Replays() int {
	n := 0
	for _, st := range s.ws.all() {
		st.mu.Lock()
		n += st.replays
		st.mu.Unlock()
	}
	return n
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

// SetRateLimits replaces the per-key (and, for platform keys, per-workspace) read and write limits (requests per
// second, 0 or less disables) at runtime.
func (s *Server) SetRateLimits(read, write int) { s.limiter.set(read, write) }

var _ http.Handler = (*Server)(nil)
