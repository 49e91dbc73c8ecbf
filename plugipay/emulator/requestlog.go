package emulator

import (
	"encoding/json"
	"slices"
	"sync"
	"time"
)

// WriteRecord is one write request (POST, PATCH or DELETE on the customer
// routes) as the request log keeps it, for checks that no two clients
// wrote one workspace at once.
type WriteRecord struct {
	// Account is the workspace the request acted for; for a request
	// rejected before that was resolved, the X-Plugipay-On-Behalf-Of it
	// named.
	Account string
	Method  string
	Path    string
	// ExternalID is the body's externalId for a create, the customer's
	// (before the write) for an update; empty when there is none.
	ExternalID string
	// ClientID is the request's User-Agent.
	ClientID string
	// Begin and End are when the handler began and finished, on the real
	// clock (not Options.Now): intervals of real concurrency.
	Begin, End time.Time
	// Status is the HTTP status answered, 0 when the connection was
	// dropped without an answer.
	Status int
	// Handled is true when the request passed authentication, the account
	// check, the rate limit and injected faults, so the workspace's rules
	// ran: executed, replayed from the idempotency store or rejected by
	// them (400, 404, 409).
	Handled bool
}

// Overlap is two handled writes of one workspace, from two client ids,
// whose [Begin, End] intervals intersect. A is the one that began first.
type Overlap struct {
	Account string
	A, B    WriteRecord
}

// requestLog keeps the last max write records in a ring.
type requestLog struct {
	mu       sync.Mutex
	max      int
	recs     []WriteRecord
	next     int // ring position of the next record once full
	evicted  int
	inflight int // begun, not yet added
}

func newRequestLog(max int) *requestLog {
	if max <= 0 {
		return nil
	}
	return &requestLog{max: max}
}

// begin counts a write request entering the handler; add ends it.
func (l *requestLog) begin() {
	l.mu.Lock()
	l.inflight++
	l.mu.Unlock()
}

func (l *requestLog) add(r WriteRecord) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inflight--
	if len(l.recs) < l.max {
		l.recs = append(l.recs, r)
		return
	}
	l.recs[l.next] = r
	l.next = (l.next + 1) % l.max
	l.evicted++
}

// snapshot returns the records oldest first, and how many were evicted.
func (l *requestLog) snapshot() ([]WriteRecord, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]WriteRecord, 0, len(l.recs))
	out = append(out, l.recs[l.next:]...)
	out = append(out, l.recs[:l.next]...)
	return out, l.evicted
}

// RequestLog returns a copy of the request log, oldest first by End: nil
// when Options.RequestLog is 0. Once full, the log keeps the newest
// records; RequestLogEvicted counts the others. A record is added when its
// handler returns, which for a dropped or hung request is after its client
// gave up: wait for InFlightWrites to reach 0 before a final check.
func (s *Server) RequestLog() []WriteRecord {
	if s.reqlog == nil {
		return nil
	}
	recs, _ := s.reqlog.snapshot()
	return recs
}

// RequestLogEvicted returns how many records the bounded log dropped; a
// check over RequestLog is complete only when it is 0.
func (s *Server) RequestLogEvicted() int {
	if s.reqlog == nil {
		return 0
	}
	_, n := s.reqlog.snapshot()
	return n
}

// InFlightWrites returns how many write requests are in a handler and not
// yet in the request log (0 when the log is off).
func (s *Server) InFlightWrites() int {
	if s.reqlog == nil {
		return 0
	}
	s.reqlog.mu.Lock()
	defer s.reqlog.mu.Unlock()
	return s.reqlog.inflight
}

// OverlappingWrites returns FindOverlaps over the request log.
func (s *Server) OverlappingWrites() []Overlap { return FindOverlaps(s.RequestLog()) }

// FindOverlaps returns, per account (sorted by account, then by the first
// write's Begin), every pair of handled writes from two different client
// ids whose [Begin, End] intervals intersect: two clients writing one
// workspace at once. Writes rejected before the workspace's rules ran
// (auth, 403, 429, injected faults) wrote nothing and are ignored.
func FindOverlaps(recs []WriteRecord) []Overlap {
	byAccount := map[string][]WriteRecord{}
	for _, r := range recs {
		if r.Handled {
			byAccount[r.Account] = append(byAccount[r.Account], r)
		}
	}
	accounts := make([]string, 0, len(byAccount))
	for acc := range byAccount {
		accounts = append(accounts, acc)
	}
	slices.Sort(accounts)
	var out []Overlap
	for _, acc := range accounts {
		rs := byAccount[acc]
		slices.SortStableFunc(rs, func(a, b WriteRecord) int { return a.Begin.Compare(b.Begin) })
		// Sweep: active holds the earlier writes that may still reach the
		// current one's Begin.
		var active []WriteRecord
		for _, r := range rs {
			active = slices.DeleteFunc(active, func(a WriteRecord) bool { return a.End.Before(r.Begin) })
			for _, a := range active {
				if a.ClientID != r.ClientID {
					out = append(out, Overlap{Account: acc, A: a, B: r})
				}
			}
			active = append(active, r)
		}
	}
	return out
}

// traceExternalID is the externalId a write record names: the body's for a
// create (read leniently: an invalid body still names what it tried), the
// stored customer's for an update. The caller holds st.mu.
func traceExternalID(st *store, id string, body []byte) string {
	if id != "" {
		if c := st.byID[id]; c != nil && c.ExternalID != nil {
			return *c.ExternalID
		}
		return ""
	}
	var in struct {
		ExternalID *string `json:"externalId"`
	}
	if json.Unmarshal(body, &in) != nil || in.ExternalID == nil {
		return ""
	}
	return *in.ExternalID
}
