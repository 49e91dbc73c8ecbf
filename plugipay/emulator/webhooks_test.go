package emulator

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/plugipay-sync/plugipay-sync/plugipay"
)

// TestWebhooks: executed writes and a removal are delivered in order,
// signed so that plugipay.VerifyWebhook accepts them; a replayed write
// delivers nothing; a failing endpoint is retried.
func TestWebhooks(t *testing.T) {
	const secret = "whsec_emu"
	var (
		mu    sync.Mutex
		types []string
		fails = 1 // the first delivery fails once
	)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ev, err := plugipay.ParseWebhook(body, r.Header.Get(plugipay.HeaderSignature), secret, time.Now(), 0)
		if err != nil {
			t.Errorf("delivery does not verify: %v", err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if fails > 0 {
			fails--
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		c, _ := ev.Customer()
		types = append(types, ev.Type+" "+c.Name)
	}))
	defer recv.Close()
	// The emulator's clock is the signing clock: keep it the real one.
	e := newEnv(t, Options{Now: time.Now})
	e.srv.SetWebhook(recv.URL, secret)

	ts := func() string { return strconv.FormatInt(time.Now().Unix(), 10) }
	key := newIdem()
	r := e.do(req{method: "POST", target: "/api/v1/customers", body: `{"externalId":"u1","name":"A"}`, idem: key, ts: ts()})
	id := r.customer(t)["id"].(string)
	e.do(req{method: "POST", target: "/api/v1/customers", body: `{"externalId":"u1","name":"A"}`, idem: key, ts: ts()}) // replayed
	e.do(req{method: "PATCH", target: "/api/v1/customers/" + id, body: `{"name":"B"}`, idem: newIdem(), ts: ts()})
	if !e.srv.RemoveCustomer(id) || e.srv.RemoveCustomer(id) {
		t.Fatal("RemoveCustomer did not remove the customer exactly once")
	}
	if e.srv.CustomerCount() != 0 {
		t.Fatalf("%d customers after the removal", e.srv.CustomerCount())
	}
	want := []string{plugipay.EventCustomerCreated + " A", plugipay.EventCustomerUpdated + " B", plugipay.EventCustomerDeleted + " B"}
	deadline := time.Now().Add(3 * time.Second)
	for {
		mu.Lock()
		got := append([]string(nil), types...)
		mu.Unlock()
		if len(got) >= len(want) || time.Now().After(deadline) {
			b, _ := json.Marshal(got)
			if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
				t.Fatalf("delivered %s, want %v", b, want)
			}
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The receiver sees a delivery before the emulator counts it (the
	// count follows the answer): wait for the count too.
	st := e.srv.WebhookStats()
	for st.Delivered < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		st = e.srv.WebhookStats()
	}
	if st.Delivered != 3 || st.Failed != 0 || st.Dropped != 0 {
		t.Errorf("stats %+v", st)
	}
}
