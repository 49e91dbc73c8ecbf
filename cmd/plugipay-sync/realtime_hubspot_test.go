package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/plugipay-sync/plugipay-sync/crm/hubspot/fake"
	"github.com/plugipay-sync/plugipay-sync/plugipay/emulator"
)

const (
	webhookSecret = "hubspot-client-secret-e2e"
	// webhookURL is the public URL HubSpot signs; the requests reach the
	// daemon on its loopback listener, as behind a proxy.
	webhookURL = "https://sync.example.com/v1/webhooks/hubspot"
)

// TestRealtime_HubSpotWebhook: a signed contact.propertyChange from the
// HubSpot fake leads to one PATCH; a bad signature, a stale timestamp and
// a replayed request are refused (401) and sync nothing; a deletion
// archives the contact's customer.
func TestRealtime_HubSpotWebhook(t *testing.T) {
	e := newE2E(t, filepath.Join(t.TempDir(), "unused.csv"), emulator.Options{})
	hs := fake.New(fake.Options{Token: "pat-e2e"})
	srv := httptest.NewServer(hs)
	defer srv.Close()
	contact := func(id int, email string) fake.Contact {
		return fake.Contact{ID: id, Updated: time.Now(), Props: map[string]string{"email": email, "firstname": "H", "lastname": fmt.Sprint(id)}}
	}
	for i := 1; i <= 5; i++ {
		hs.Put(contact(i, fmt.Sprintf("h%d@example.com", i)))
	}
	e.writeSourceConfig(`  type: hubspot
  hubspot:
    base_url: `+srv.URL+`
    path_prefix: /crm/objects/2026-09
    token: pat-e2e
    fields: {external_id: id, email: email, name_template: "{firstname} {lastname}"}`, "  deletion: archive\n  max_archive_ratio: 1")
	appendFile(t, e.config, fmt.Sprintf("realtime:\n  listen: \"127.0.0.1:0\"\n  hubspot:\n    client_secret: %s\n    webhook_url: %s\n", webhookSecret, webhookURL))
	metrics, rt, _ := startRealtimeDaemon(t, e.config)
	eventually(t, "the first run", func() bool {
		return metricValue(t, metrics, `plugipay_sync_runs_total{outcome="success"}`) == 1
	})
	endpoint := rt + "/v1/webhooks/hubspot"
	send := func(w fake.SignedWebhook) int {
		t.Helper()
		status, err := w.Send(context.Background(), endpoint)
		if err != nil {
			t.Fatal(err)
		}
		return status
	}
	email := func(id string) string {
		c, _ := e.emu.CustomerByExternalID(id)
		return c.Email
	}
	patches := func() int { return e.emu.RequestCount(http.MethodPatch, "/api/v1/customers/{id}") }
	before := patches()

	hs.Put(contact(2, "changed2@example.com"))
	changed := fake.SignWebhook(webhookURL, webhookSecret, time.Now(),
		fake.Webhook{EventID: 1, SubscriptionType: "contact.propertyChange", ObjectID: 2, PropertyName: "email", PropertyValue: "changed2@example.com", OccurredAt: time.Now().UnixMilli()})
	if s := send(changed); s != http.StatusNoContent {
		t.Fatalf("signed webhook: %d", s)
	}
	eventually(t, "the change reaching the emulator", func() bool { return email("2") == "changed2@example.com" })
	if d := patches() - before; d != 1 {
		t.Errorf("%d PATCHes for one propertyChange", d)
	}

	// Contact 3 changes, but every request naming it is refused.
	hs.Put(contact(3, "changed3@example.com"))
	ev3 := fake.Webhook{EventID: 2, SubscriptionType: "contact.propertyChange", ObjectID: 3, PropertyName: "email", OccurredAt: time.Now().UnixMilli()}
	bad := fake.SignWebhook(webhookURL, "not-the-secret", time.Now(), ev3)
	stale := fake.SignWebhook(webhookURL, webhookSecret, time.Now().Add(-6*time.Minute), ev3)
	otherURL := fake.SignWebhook("https://evil.example.com/v1/webhooks/hubspot", webhookSecret, time.Now(), ev3)
	tampered := changed // the first request's signature over another body
	tampered.Body = bytes.Replace(changed.Body, []byte(`"objectId":2`), []byte(`"objectId":3`), 1)
	for name, w := range map[string]fake.SignedWebhook{"bad signature": bad, "stale": stale, "replayed": changed, "other URL": otherURL, "tampered body": tampered} {
		if s := send(w); s != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 401", name, s)
		}
	}
	// A deletion, signed: the customer of contact 4 is archived. It is
	// synced after anything the refused requests could have queued.
	hs.Archive(4, time.Now())
	del := fake.SignWebhook(webhookURL, webhookSecret, time.Now(), fake.Webhook{EventID: 4, SubscriptionType: "contact.deletion", ObjectID: 4, OccurredAt: time.Now().UnixMilli()})
	if s := send(del); s != http.StatusNoContent {
		t.Fatalf("deletion webhook: %d", s)
	}
	eventually(t, "the deletion archiving the customer", func() bool {
		c, _ := e.emu.CustomerByExternalID("4")
		return c.Metadata["archived"] == "true"
	})
	if email("3") != "h3@example.com" {
		t.Errorf("a refused webhook synced contact 3: %q", email("3"))
	}
	if v := metricValue(t, metrics, `plugipay_sync_trigger_requests_total{endpoint="hubspot_webhook",outcome="unauthorized"}`); v != 5 {
		t.Errorf("refused webhooks counted = %v, want 5", v)
	}
}
