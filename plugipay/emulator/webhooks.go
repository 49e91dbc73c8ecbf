package emulator

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/plugipay-sync/plugipay-sync/plugipay"
)

// Webhook delivery: like the real API, the emulator POSTs customer events
// to a configured endpoint, signed with the endpoint's secret in
// X-Plugipay-Signature (t=<unix>,v1=<hex HMAC-SHA256(secret, t "." body)>),
// after the write that caused them is stored. Deliveries are made by one
// goroutine in the order of the writes, retried on failure, and never
// block the API.
const (
	// webhookQueue is how many undelivered events are kept; more are
	// dropped (and counted).
	webhookQueue = 10000
	// webhookAttempts is how many times an event is tried.
	webhookAttempts = 3
)

// WebhookStats counts deliveries.
type WebhookStats struct {
	Delivered, Failed, Dropped int
}

type webhookEvent struct {
	url, secret string
	body        []byte
}

type webhooks struct {
	mu     sync.Mutex
	url    string
	secret string
	queue  chan webhookEvent
	stats  WebhookStats
	client *http.Client
	start  sync.Once
	// Sent holds every event body delivered, for tests.
	sent [][]byte
}

// SetWebhook makes the emulator deliver plugipay.customer.created.v1,
// .updated.v1 and .deleted.v1 events to url, signed with secret. An empty
// url stops deliveries.
func (s *Server) SetWebhook(url, secret string) {
	h := &s.hooks
	h.mu.Lock()
	defer h.mu.Unlock()
	h.url, h.secret = url, secret
	h.start.Do(func() {
		h.queue = make(chan webhookEvent, webhookQueue)
		h.client = &http.Client{Timeout: 5 * time.Second}
		go h.deliver(s.now)
	})
}

// WebhookStats returns the delivery counts so far.
func (s *Server) WebhookStats() WebhookStats {
	s.hooks.mu.Lock()
	defer s.hooks.mu.Unlock()
	return s.hooks.stats
}

// WebhookEvents returns the bodies of the events delivered so far.
func (s *Server) WebhookEvents() [][]byte {
	s.hooks.mu.Lock()
	defer s.hooks.mu.Unlock()
	return slices.Clone(s.hooks.sent)
}

// emit queues an event of type typ for customer c (a write just stored).
// The caller may hold st.mu: emit never blocks.
func (s *Server) emit(typ string, c *record) {
	h := &s.hooks
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.url == "" {
		return
	}
	var id [12]byte
	_, _ = rand.Read(id[:])
	obj, err := json.Marshal(c.wire())
	if err != nil {
		return
	}
	body, err := json.Marshal(map[string]any{
		"id": "evt_" + hex.EncodeToString(id[:]), "type": typ, "accountId": c.AccountID,
		"occurredAt": s.now().UTC().Format(time.RFC3339Nano),
		"data":       map[string]json.RawMessage{"object": obj},
	})
	if err != nil {
		return
	}
	select {
	case h.queue <- webhookEvent{url: h.url, secret: h.secret, body: body}:
	default:
		h.stats.Dropped++
	}
}

func (h *webhooks) deliver(now func() time.Time) {
	for ev := range h.queue {
		ok := false
		for attempt := range webhookAttempts {
			if attempt > 0 {
				time.Sleep(time.Duration(attempt) * 100 * time.Millisecond)
			}
			if h.post(ev, now()) {
				ok = true
				break
			}
		}
		h.mu.Lock()
		if ok {
			h.stats.Delivered++
			h.sent = append(h.sent, ev.body)
		} else {
			h.stats.Failed++
		}
		h.mu.Unlock()
	}
}

func (h *webhooks) post(ev webhookEvent, now time.Time) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ev.url, bytes.NewReader(ev.body))
	if err != nil {
		return false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(plugipay.HeaderSignature, plugipay.SignWebhook(ev.secret, now.Unix(), ev.body))
	resp, err := h.client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 300
}

// RemoveCustomer deletes customer id as a dashboard user could (the API
// itself answers DELETE with 409 while money history holds a customer, and
// the sync never deletes), delivering plugipay.customer.deleted.v1. It
// reports whether the customer existed.
func (s *Server) RemoveCustomer(id string) bool {
	st := s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	c, ok := st.byID[id]
	if !ok {
		return false
	}
	delete(st.byID, id)
	if c.ExternalID != nil {
		delete(st.byExternal, *c.ExternalID)
	}
	if i := st.index(c); i < len(st.ordered) && st.ordered[i] == c {
		st.ordered = slices.Delete(st.ordered, i, i+1)
	}
	s.emit(plugipay.EventCustomerDeleted, c)
	return true
}
