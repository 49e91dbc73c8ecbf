package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plugipay-sync/plugipay-sync/plugipay"
	"github.com/plugipay-sync/plugipay-sync/plugipay/emulator"
)

const testWebhookSecret = "whsec_e2e_test"

// metricText scrapes one series' value from /metrics ("" when absent).
func metricText(t *testing.T, base, series string) string {
	t.Helper()
	for _, line := range strings.Split(get(t, base+"/metrics"), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			return v
		}
	}
	return ""
}

// waitFor polls cond every 20 ms for up to d.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cond()
}

// TestWebhook_RepairsWithinSeconds: the emulator delivers its customer
// events to the daemon. An edit made through the API is repaired within
// 2 s under verify.policy: repair; the event of the sync's own PATCH is
// recognised and causes no other write; a forged or stale signature is
// refused.
func TestWebhook_RepairsWithinSeconds(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the daemon with webhook deliveries; runs in make test-e2e")
	}
	const users = 30
	dir := t.TempDir()
	e := newE2E(t, writeUsers(t, filepath.Join(dir, "u.csv"), users), emulator.Options{})
	b, _ := os.ReadFile(e.config)
	cfg := string(b) + fmt.Sprintf("verify:\n  policy: repair\n  webhook_secret: %s\n", testWebhookSecret)
	if err := os.WriteFile(e.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	base, _ := startDaemon(t, e)
	if !waitFor(10*time.Second, func() bool {
		return metricText(t, base, "plugipay_sync_run_in_progress") == "0" && e.emu.CustomerCount() == users
	}) {
		t.Fatal("the first run did not finish")
	}
	e.emu.SetWebhook(base+WebhookPath, testWebhookSecret)

	// An edit behind the sync's back.
	cus, _ := e.emu.CustomerByExternalID("usr_00003")
	patches := e.requests().patches
	start := time.Now()
	if _, err := newTestClient(t, e).Customers.Update(context.Background(), cus.ID,
		plugipay.CustomerParams{Email: plugipay.String("edited@dashboard.example"), Name: plugipay.String("Edited")}, ""); err != nil {
		t.Fatal(err)
	}
	if !waitFor(2*time.Second, func() bool {
		c, _ := e.emu.CustomerByExternalID("usr_00003")
		return c.Email == "user3@example.co.id" && c.Name == "Pengguna 3"
	}) {
		c, _ := e.emu.CustomerByExternalID("usr_00003")
		t.Fatalf("not repaired within 2 s: %+v", c)
	}
	t.Logf("repaired %s after the edit", time.Since(start).Round(time.Millisecond))

	// The repair's own event arrives and is recognised: no further write.
	if !waitFor(3*time.Second, func() bool {
		return metricText(t, base, `plugipay_sync_webhook_events_total{outcome="in_sync"}`) == "1"
	}) {
		t.Errorf("the repair's own event was not recognised: in_sync = %q", metricText(t, base, `plugipay_sync_webhook_events_total{outcome="in_sync"}`))
	}
	time.Sleep(300 * time.Millisecond)
	if got := e.requests().patches - patches; got != 2 {
		t.Errorf("%d PATCHes after the edit, want 2 (the edit and one repair)", got)
	}
	if got := metricText(t, base, `plugipay_sync_webhook_events_total{outcome="repaired"}`); got != "1" {
		t.Errorf("repaired = %q, want 1", got)
	}
	if st := e.emu.WebhookStats(); st.Delivered != 2 || st.Failed != 0 {
		t.Errorf("deliveries %+v, want 2 delivered", st)
	}

	// The ledger names the webhook as the cause.
	code, out := e.command("history", "--external-id", "usr_00003", "--output", "json", "--state", e.state)
	if es := decodeAudit(t, out); code != ExitOK || len(es) != 2 || es[1].Op != "repair" || es[1].Cause != "webhook" || !strings.HasPrefix(es[1].CauseID, "evt_") {
		t.Errorf("history exit %d:\n%s", code, out)
	}

	// Forged and stale deliveries are refused before anything is read.
	body := []byte(`{"id":"evt_forged","type":"plugipay.customer.updated.v1","data":{"object":{"id":"` + cus.ID + `","externalId":"usr_00003","email":"x@evil.example"}}}`)
	for name, sig := range map[string]string{
		"forged": plugipay.SignWebhook("whsec_wrong", time.Now().Unix(), body),
		"stale":  plugipay.SignWebhook(testWebhookSecret, time.Now().Add(-10*time.Minute).Unix(), body),
		"none":   "",
	} {
		req, _ := http.NewRequest(http.MethodPost, base+WebhookPath, bytes.NewReader(body))
		req.Header.Set(plugipay.HeaderSignature, sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s signature: %s, want 401", name, resp.Status)
		}
	}
	if got := metricText(t, base, `plugipay_sync_webhook_events_total{outcome="refused"}`); got != "3" {
		t.Errorf("refused = %q, want 3", got)
	}
}
