package transport

import "context"

// Lane is the priority of a request. Event-driven writes (issue 17: the
// trigger API, PostgreSQL NOTIFY, HubSpot webhooks) share a workspace's
// write budget with a backfill but leave first: a user who just signed up
// is waiting for them, nobody is waiting for the backfill's next row.
type Lane int

// Lanes, lowest first. The zero value is LaneBackground: a context nobody
// marked is a run's.
const (
	// LaneBackground: the scheduled run, a backfill.
	LaneBackground Lane = iota
	// LaneEvent: a targeted sync caused by a CRM change.
	LaneEvent
)

func (l Lane) String() string {
	if l == LaneEvent {
		return "event"
	}
	return "background"
}

type laneKey struct{}

// WithLane returns ctx marked with lane l. The reconciler, which imports
// nothing of the module, marks the event path through Options.MarkEvent.
func WithLane(ctx context.Context, l Lane) context.Context {
	return context.WithValue(ctx, laneKey{}, l)
}

// LaneFrom returns the lane ctx is marked with; LaneBackground when
// unmarked.
func LaneFrom(ctx context.Context) Lane {
	l, _ := ctx.Value(laneKey{}).(Lane)
	return l
}
