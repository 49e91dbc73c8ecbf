package fake

import "github.com/plugipay-sync/plugipay-sync/destination/internal/fakeapi"

// Faults describe failures injected into authenticated requests (after
// authentication and the rate limit, before the handler runs); the fields
// and Validate are fakeapi.Faults'. The PayGate fake offers every kind:
//   - Latency is added to every authenticated request.
//   - ErrorRate answers, without executing, 500 internal_error, 502
//     bad_gateway or 503 service_unavailable (503 carries Retry-After);
//     Status fixes which one.
//   - RateLimitRate answers, without executing, 429 rate_limited with
//     Retry-After.
//   - DropRate closes the connection with no answer, without executing.
//   - DropAfterWriteRate applies to writes (POST, PATCH, DELETE): they
//     execute, then the connection is closed with no answer, so the client
//     cannot tell whether the write happened. A write the handler rejects
//     (4xx) is answered normally. Reads are unaffected.
//   - RetryAfter is the Retry-After, in seconds, of injected 429s and
//     503s; 0 sends "Retry-After: 0" (retry at once), which keeps tests
//     fast.
type Faults = fakeapi.Faults

// draw draws one request's faults from the Server's seeded source (the
// one its ids come from, so a seed fixes both in request order).
func (s *Server) draw(write bool) fakeapi.Decision {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults.Draw(s.rng, write)
}
