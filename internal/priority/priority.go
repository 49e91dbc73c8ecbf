// Package priority marks a request's context with the lane it belongs to,
// so a transport that shares one write budget between a backfill and the
// real-time path can serve the real-time path first (issue 17's "priority
// lane"). It is the seam only: the context is marked on the event path
// (sync.Reconciler.SyncIDs); no transport reads it yet (the HTTP transport
// is being rewritten; wire it there with priority.From(req.Context())).
// It imports nothing of the project, so a transport may import it.
package priority

import "context"

// Lane is the priority of a request.
type Lane int

// Lanes, lowest first. The zero value is Background: a context nobody
// marked is a run's.
const (
	// Background: the scheduled run, a backfill.
	Background Lane = iota
	// Event: a targeted sync caused by a CRM change (trigger API,
	// PostgreSQL NOTIFY, HubSpot webhook); a user is waiting for it.
	Event
)

func (l Lane) String() string {
	if l == Event {
		return "event"
	}
	return "background"
}

type key struct{}

// With returns ctx marked with lane l.
func With(ctx context.Context, l Lane) context.Context {
	return context.WithValue(ctx, key{}, l)
}

// From returns the lane ctx is marked with; Background when unmarked.
func From(ctx context.Context) Lane {
	l, _ := ctx.Value(key{}).(Lane)
	return l
}
