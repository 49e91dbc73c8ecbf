package sync

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	stdsync "sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"go.uber.org/zap"
)

// Event sources, the values of the event metrics' "source" label.
const (
	EventSourceAPI      = "api"      // the trigger API, POST /v1/sync
	EventSourcePostgres = "postgres" // LISTEN/NOTIFY
	EventSourceHubSpot  = "hubspot"  // HubSpot webhooks
)

// Reasons an event is dropped, the "reason" label of
// plugipay_sync_events_dropped_total.
const (
	DropQueueFull  = "queue_full"  // more ids waiting than EventsOptions.MaxPending
	DropSyncFailed = "sync_failed" // the batch could not be synced (source down, credentials refused)
	DropShutdown   = "shutdown"    // the daemon stopped before syncing it
)

// Defaults of EventsOptions.
const (
	DefaultEventWindow     = 10 * time.Millisecond
	DefaultEventBatch      = 100
	DefaultEventMaxPending = 10000
	DefaultEventGrace      = 10 * time.Second
	eventTicketsKept       = 1024
)

// ErrQueueFull: the events queue holds MaxPending ids already.
var ErrQueueFull = errors.New("too many changes waiting to be synced; retry later")

// EventsOptions tune Events.
type EventsOptions struct {
	// Window is how long the first event of a batch waits for more, so a
	// burst becomes one targeted read.
	Window time.Duration
	// MaxBatch is the most ids one targeted read asks for (HubSpot's
	// batch read takes 100).
	MaxBatch int
	// MaxPending is the most distinct ids waiting; more are refused
	// (ErrQueueFull) and counted as dropped.
	MaxPending int
	// Grace is how long a batch in flight may finish after a shutdown.
	Grace time.Duration
	// Registerer receives the event metrics; nil registers nowhere.
	Registerer prometheus.Registerer
	Logger     *zap.Logger
	Now        func() time.Time
}

// Events is the event path of issue 17: the trigger API, PostgreSQL
// NOTIFY and HubSpot webhooks submit the external ids of changed users; it
// coalesces them (an id waiting is not queued twice: a burst of triggers
// for one user costs one read and at most one write), batches them for a
// few milliseconds and syncs each batch with Reconciler.SyncIDs, one batch
// at a time. The CRM is read when the batch is synced, never taken from
// the event, so an event that arrives late cannot write an old value.
type Events struct {
	rec  func() *Reconciler
	opts EventsOptions
	log  *zap.Logger
	m    eventMetrics

	mu      stdsync.Mutex
	pending map[string]*waiting
	order   []string // pending ids, oldest first
	wake    chan struct{}
	tickets map[string]*Ticket
	ring    []string // ids of the kept tickets, oldest first
}

type waiting struct {
	received time.Time // of the first event for the id
	source   string    // of that event
	force    bool
	tickets  []*Ticket
}

type eventMetrics struct {
	latency   *prometheus.HistogramVec
	received  *prometheus.CounterVec
	coalesced *prometheus.CounterVec
	dropped   *prometheus.CounterVec
	synced    *prometheus.CounterVec
	pending   prometheus.Gauge
}

// NewEvents returns the event path of the reconciler rec returns (the
// current one: a config reload replaces it).
func NewEvents(rec func() *Reconciler, opts EventsOptions) *Events {
	if opts.Window <= 0 {
		opts.Window = DefaultEventWindow
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = DefaultEventBatch
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = DefaultEventMaxPending
	}
	if opts.Grace <= 0 {
		opts.Grace = DefaultEventGrace
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	f := promauto.With(opts.Registerer)
	e := &Events{rec: rec, opts: opts, log: opts.Logger, pending: map[string]*waiting{},
		wake: make(chan struct{}, 1), tickets: map[string]*Ticket{}}
	e.m = eventMetrics{
		latency: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "plugipay_sync_event_latency_seconds",
			Help:    "Time from an event's arrival (trigger, NOTIFY, webhook) to the destination confirming the write it caused, by event source.",
			Buckets: []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60},
		}, []string{"source"}),
		received: f.NewCounterVec(prometheus.CounterOpts{
			Name: "plugipay_sync_events_received_total",
			Help: "Changed users named by events (one per id), by event source.",
		}, []string{"source"}),
		coalesced: f.NewCounterVec(prometheus.CounterOpts{
			Name: "plugipay_sync_events_coalesced_total",
			Help: "Events for a user already waiting to be synced, merged into its pending sync, by event source.",
		}, []string{"source"}),
		dropped: f.NewCounterVec(prometheus.CounterOpts{
			Name: "plugipay_sync_events_dropped_total",
			Help: "Events not synced (queue_full, sync_failed, shutdown), by event source; the next scheduled run repairs them.",
		}, []string{"source", "reason"}),
		synced: f.NewCounterVec(prometheus.CounterOpts{
			Name: "plugipay_sync_event_syncs_total",
			Help: "Users synced by the event path, by action (created, updated, unchanged, rejected, failed, not_found...).",
		}, []string{"action"}),
		pending: f.NewGauge(prometheus.GaugeOpts{
			Name: "plugipay_sync_events_pending",
			Help: "Users waiting to be synced by the event path.",
		}),
	}
	for _, a := range []string{ActionCreated, ActionUpdated, ActionUnchanged, ActionRecovered, ActionArchived,
		ActionSkipped, ActionRejected, ActionFailed, ActionNotFound} {
		e.m.synced.WithLabelValues(a)
	}
	for _, s := range []string{EventSourceAPI, EventSourcePostgres, EventSourceHubSpot} {
		e.m.latency.WithLabelValues(s)
		e.m.received.WithLabelValues(s)
		e.m.coalesced.WithLabelValues(s)
		for _, r := range []string{DropQueueFull, DropSyncFailed, DropShutdown} {
			e.m.dropped.WithLabelValues(s, r)
		}
	}
	return e
}

// Ticket follows the ids of one Submit until each is synced.
type Ticket struct {
	ID       string
	Received time.Time
	mu       stdsync.Mutex
	left     map[string]bool
	results  map[string]IDResult
	done     chan struct{}
}

// Done is closed once every id of the ticket has a result.
func (t *Ticket) Done() <-chan struct{} { return t.done }

// Results returns the results so far, in the order of the ids, and
// whether every id has one.
func (t *Ticket) Results() ([]IDResult, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]IDResult, 0, len(t.results))
	for _, r := range t.results {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b IDResult) int { return cmpString(a.ExternalID, b.ExternalID) })
	return out, len(t.left) == 0
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// settle records id's result; the first result of an id counts.
func (t *Ticket) settle(r IDResult) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.left[r.ExternalID] {
		return
	}
	delete(t.left, r.ExternalID)
	t.results[r.ExternalID] = r
	if len(t.left) == 0 {
		close(t.done)
	}
}

// Submit queues the users ids (external ids) named by an event from
// source. An id already waiting is coalesced with it. force waives the
// backoff of an earlier failure (the trigger API: a caller asked). It
// returns ErrQueueFull, counting the ids as dropped, when they do not fit.
func (e *Events) Submit(source string, ids []string, force bool) (*Ticket, error) {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	now := e.opts.Now()
	t := &Ticket{ID: newTicketID(), Received: now, left: map[string]bool{}, results: map[string]IDResult{}, done: make(chan struct{})}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.m.received.WithLabelValues(source).Add(float64(len(ids)))
	fresh := 0
	for _, id := range ids {
		if e.pending[id] == nil {
			fresh++
		}
	}
	if len(e.pending)+fresh > e.opts.MaxPending {
		e.m.dropped.WithLabelValues(source, DropQueueFull).Add(float64(len(ids)))
		return nil, ErrQueueFull
	}
	for _, id := range ids {
		t.left[id] = true
		w := e.pending[id]
		if w != nil {
			e.m.coalesced.WithLabelValues(source).Inc()
		} else {
			w = &waiting{received: now, source: source}
			e.pending[id] = w
			e.order = append(e.order, id)
		}
		w.force = w.force || force
		w.tickets = append(w.tickets, t)
	}
	if len(ids) == 0 {
		close(t.done)
	}
	e.m.pending.Set(float64(len(e.pending)))
	e.tickets[t.ID] = t
	e.ring = append(e.ring, t.ID)
	if len(e.ring) > eventTicketsKept {
		delete(e.tickets, e.ring[0])
		e.ring = e.ring[1:]
	}
	select {
	case e.wake <- struct{}{}:
	default:
	}
	return t, nil
}

// Ticket returns a recent ticket by id.
func (e *Events) Ticket(id string) (*Ticket, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	t, ok := e.tickets[id]
	return t, ok
}

// Pending returns how many ids wait.
func (e *Events) Pending() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.pending)
}

func newTicketID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "sync_" + hex.EncodeToString(b[:])
}

// Start syncs the submitted ids until ctx is done, then lets the batch in
// flight finish (within Grace) and drops what still waits.
func (e *Events) Start(ctx context.Context) error {
	work, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancel(nil)
	stop := context.AfterFunc(ctx, func() {
		t := time.NewTimer(e.opts.Grace)
		defer t.Stop()
		select {
		case <-t.C:
			cancel(fmt.Errorf("the event path's shutdown grace of %s ran out", e.opts.Grace))
		case <-work.Done():
		}
	})
	defer stop()
	for {
		select {
		case <-ctx.Done():
			e.dropAll()
			return nil
		case <-e.wake:
		}
		// Let a burst gather into one batch.
		t := time.NewTimer(e.opts.Window)
		select {
		case <-ctx.Done():
			t.Stop()
			e.dropAll()
			return nil
		case <-t.C:
		}
		for ctx.Err() == nil {
			batch := e.take()
			if len(batch) == 0 {
				break
			}
			e.process(work, batch)
		}
	}
}

// take removes up to MaxBatch of the oldest waiting ids from the queue: an
// event for one of them from now on queues it again, to be read after
// this batch's read.
func (e *Events) take() map[string]*waiting {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := min(len(e.order), e.opts.MaxBatch)
	batch := make(map[string]*waiting, n)
	for _, id := range e.order[:n] {
		batch[id] = e.pending[id]
		delete(e.pending, id)
	}
	e.order = e.order[n:]
	if len(e.order) == 0 {
		e.order = nil
	}
	e.m.pending.Set(float64(len(e.pending)))
	return batch
}

// process syncs one batch and settles its tickets.
func (e *Events) process(ctx context.Context, batch map[string]*waiting) {
	var forced, plain []string
	for id, w := range batch {
		if w.force {
			forced = append(forced, id)
		} else {
			plain = append(plain, id)
		}
	}
	for _, g := range []struct {
		ids   []string
		force bool
	}{{forced, true}, {plain, false}} {
		if len(g.ids) == 0 {
			continue
		}
		results, err := e.rec().SyncIDs(ctx, g.ids, g.force)
		now := e.opts.Now()
		if err != nil && len(results) == 0 {
			e.log.Error("event batch not synced; the next run syncs it", zap.Int("users", len(g.ids)), zap.Error(err))
			reason := err.Error()
			for _, id := range g.ids {
				w := batch[id]
				e.m.dropped.WithLabelValues(w.source, DropSyncFailed).Inc()
				e.finish(w, IDResult{ExternalID: id, Action: ActionFailed, Reason: reason})
			}
			continue
		}
		if err != nil {
			e.log.Error("event batch stopped", zap.Int("users", len(g.ids)), zap.Error(err))
		}
		for _, r := range results {
			w := batch[r.ExternalID]
			if w == nil {
				continue
			}
			e.m.synced.WithLabelValues(r.Action).Inc()
			if r.Wrote {
				e.m.latency.WithLabelValues(w.source).Observe(now.Sub(w.received).Seconds())
			}
			e.finish(w, r)
		}
	}
}

func (e *Events) finish(w *waiting, r IDResult) {
	for _, t := range w.tickets {
		t.settle(r)
	}
}

// dropAll counts what still waits as dropped at shutdown and settles its
// tickets.
func (e *Events) dropAll() {
	e.mu.Lock()
	batch := e.pending
	e.pending, e.order = map[string]*waiting{}, nil
	e.m.pending.Set(0)
	e.mu.Unlock()
	for id, w := range batch {
		e.m.dropped.WithLabelValues(w.source, DropShutdown).Inc()
		e.finish(w, IDResult{ExternalID: id, Action: ActionFailed, Reason: "the daemon stopped before syncing it; the next run syncs it"})
	}
}

// CanSyncIDs reports whether the source can read users by id (see
// IDReader); without it the event path cannot act and a full run is the
// way.
func (r *Reconciler) CanSyncIDs() bool {
	_, ok := r.src.(IDReader)
	return ok
}

// EventMetrics exposes the event path's counters to tests.
type EventMetrics struct{ m *eventMetrics }

// Metrics returns the event path's counters.
func (e *Events) Metrics() EventMetrics { return EventMetrics{&e.m} }

// Received is plugipay_sync_events_received_total{source}.
func (m EventMetrics) Received(source string) prometheus.Collector {
	return m.m.received.WithLabelValues(source)
}

// Coalesced is plugipay_sync_events_coalesced_total{source}.
func (m EventMetrics) Coalesced(source string) prometheus.Collector {
	return m.m.coalesced.WithLabelValues(source)
}

// Dropped is plugipay_sync_events_dropped_total{source,reason}.
func (m EventMetrics) Dropped(source, reason string) prometheus.Collector {
	return m.m.dropped.WithLabelValues(source, reason)
}
