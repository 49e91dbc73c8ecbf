package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	stdsync "sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"go.uber.org/zap"

	"github.com/plugipay-sync/plugipay-sync/plugipay"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

// Plugipay webhooks (issue 18): with verify.webhook_secret set, the daemon
// takes plugipay.customer.updated.v1 and .deleted.v1 events on
// WebhookPath of its listener, verifies X-Plugipay-Signature, and checks
// (with verify.policy: repair, repairs) just that customer within seconds,
// instead of waiting for the next scheduled verify.
const (
	// WebhookPath is where Plugipay is to deliver events.
	WebhookPath = "/webhooks/plugipay"
	// webhookMaxBody bounds an event's body.
	webhookMaxBody = 1 << 20
	// webhookQueueLen is how many verified events may wait; a full queue
	// answers 503, and Plugipay delivers again later.
	webhookQueueLen = 1000
)

// Outcomes of a webhook delivery beyond VerifyCustomer's.
const (
	webhookRefused   = "refused"    // bad or stale signature, or not an event
	webhookIgnored   = "ignored"    // an event type the sync does not act on
	webhookQueueFull = "queue_full" // answered 503
)

func newWebhookMetrics(reg prometheus.Registerer) map[string]prometheus.Counter {
	v := promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
		Name: "plugipay_sync_webhook_events_total",
		Help: "Plugipay webhook deliveries by outcome: refused, ignored, queue_full, or what checking the customer found (in_sync, unknown, pending, unverifiable, drifted, missing, repaired, recreated, skipped, failed).",
	}, []string{"outcome"})
	out := map[string]prometheus.Counter{}
	for _, o := range []string{webhookRefused, webhookIgnored, webhookQueueFull,
		sync.CheckInSync, sync.CheckUnknown, sync.CheckPending, sync.CheckUnverifiable, sync.CheckDrifted, sync.CheckMissing,
		sync.RepairRepaired, sync.RepairRecreated, sync.RepairSkipped, sync.RepairFailed} {
		out[o] = v.WithLabelValues(o)
	}
	return out
}

// webhookReceiver verifies deliveries and hands their customers to one
// worker, which checks each under the daemon's run lock.
type webhookReceiver struct {
	secret  string
	queue   chan sync.CustomerEvent
	metrics map[string]prometheus.Counter
	log     *zap.Logger
	now     func() time.Time
}

func (h *webhookReceiver) count(outcome string) {
	if c, ok := h.metrics[outcome]; ok {
		c.Inc()
	}
}

// ServeHTTP verifies the signature over the raw body before reading
// anything from it, and answers 202 once the event is queued.
func (h *webhookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, webhookMaxBody))
	if err != nil {
		h.count(webhookRefused)
		http.Error(w, "body too large or unreadable", http.StatusRequestEntityTooLarge)
		return
	}
	ev, err := plugipay.ParseWebhook(body, r.Header.Get(plugipay.HeaderSignature), h.secret, h.now(), 0)
	if err != nil {
		h.count(webhookRefused)
		// The reason, never the body or the header: they are the attacker's.
		reason := "invalid"
		switch {
		case errors.Is(err, plugipay.ErrWebhookTimestamp):
			reason = "stale timestamp"
		case errors.Is(err, plugipay.ErrWebhookSignature):
			reason = "bad signature"
		}
		h.log.Warn("webhook refused", zap.String("reason", reason))
		http.Error(w, "webhook refused: "+reason, http.StatusUnauthorized)
		return
	}
	deleted := false
	switch ev.Type {
	case plugipay.EventCustomerUpdated:
	case plugipay.EventCustomerDeleted:
		deleted = true
	default:
		h.count(webhookIgnored)
		w.WriteHeader(http.StatusOK)
		return
	}
	c, err := ev.Customer()
	if err != nil || c.ID == "" {
		h.count(webhookRefused)
		http.Error(w, "event has no customer", http.StatusBadRequest)
		return
	}
	sc := sync.Customer{ID: c.ID, ExternalID: c.ExternalID, Email: c.Email, Name: c.Name, Phone: c.Phone, TaxID: c.TaxID, Metadata: c.Metadata}
	select {
	case h.queue <- sync.CustomerEvent{ID: ev.ID, CustomerID: c.ID, ExternalID: c.ExternalID, Deleted: deleted, Customer: &sc}:
		w.WriteHeader(http.StatusAccepted)
	default:
		h.count(webhookQueueFull)
		http.Error(w, "busy; deliver again later", http.StatusServiceUnavailable)
	}
}

// startWebhooks starts the receiver's worker, when verify.webhook_secret
// is set, and makes the listener route WebhookPath to it. The worker takes
// runMu for each customer, so a check never races a run's write of the
// same user (during a long run, events wait for it), and stops with ctx.
func (m *Main) startWebhooks(ctx context.Context, runMu *stdsync.Mutex, runs *runGroup, rec *atomic.Pointer[sync.Reconciler]) {
	if m.cfg.Verify.WebhookSecret == "" {
		return
	}
	h := &webhookReceiver{secret: m.cfg.Verify.WebhookSecret, queue: make(chan sync.CustomerEvent, webhookQueueLen),
		metrics: m.webhookMetrics, log: m.log.Named("webhook"), now: time.Now}
	o := m.verifyOptions(false)
	runs.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case ev := <-h.queue:
				runMu.Lock()
				out, err := rec.Load().VerifyCustomer(ctx, ev, o)
				runMu.Unlock()
				if err != nil {
					out = sync.RepairFailed
					h.log.Warn("checking a customer after a webhook failed", zap.String("event_id", ev.ID), zap.Error(explain(err)))
				}
				h.count(out)
				h.log.Debug("webhook", zap.String("event_id", ev.ID), zap.String("customer_id", ev.CustomerID), zap.String("outcome", out))
			}
		}
	})
	m.webhook.Store(h)
	m.log.Info("receiving Plugipay webhooks", zap.String("path", WebhookPath), zap.String("policy", m.cfg.Verify.Policy))
}

// serveWebhook routes a delivery to the receiver, once it is started.
func (m *Main) serveWebhook(w http.ResponseWriter, r *http.Request) {
	h := m.webhook.Load()
	if h == nil {
		http.Error(w, "webhooks are not enabled (verify.webhook_secret)", http.StatusNotFound)
		return
	}
	h.ServeHTTP(w, r)
}
