package plugipay_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/plugipay-sync/plugipay-sync/plugipay"
	"github.com/plugipay-sync/plugipay-sync/plugipay/emulator"
)

// TestEmulator_FaultyWrites runs 60 concurrent create-then-archive writes
// through the real client against the emulator with 40% injected faults
// (5xx, dropped connections, writes executed but never answered) and its
// real rate limits. Idempotency keys fixed before the retry loop must keep
// every write executed at most once. Slow (~15 s), hence the build tag:
//
//	go test -race -tags integration -run Emulator ./plugipay/
func TestEmulator_FaultyWrites(t *testing.T) {
	const n = 60
	emu := emulator.New(emulator.Options{
		Keys:     map[string]string{"key_1": "sec_1"},
		ReadRate: 100, WriteRate: 20, Seed: 7,
		Faults: emulator.Faults{ErrorRate: 0.2, DropRate: 0.1, TimeoutRate: 0.1, HangTimeout: 2 * time.Second},
	})
	srv := httptest.NewServer(emu)
	defer srv.Close()
	c, err := plugipay.New(plugipay.Options{
		BaseURL: srv.URL + "/", KeyID: "key_1", Secret: "sec_1",
		Timeout: 300 * time.Millisecond, MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		MaxAttempts: 10,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		created  = map[string]bool{} // customer id -> archived
		failures []error
	)
	for i := range n {
		wg.Go(func() {
			key := fmt.Sprintf("idem_c%d", i)
			cus, err := c.Customers.Create(ctx, plugipay.CustomerParams{
				ExternalID: plugipay.String(fmt.Sprintf("user_%d", i)),
				Email:      plugipay.String(fmt.Sprintf("u%d@example.com", i)),
			}, key)
			archived := false
			if err == nil {
				_, err = c.Customers.Update(ctx, cus.ID, plugipay.CustomerParams{
					Metadata: map[string]string{"archived": "true"},
				}, fmt.Sprintf("idem_u%d", i))
				archived = err == nil
			}
			mu.Lock()
			defer mu.Unlock()
			if cus != nil {
				created[cus.ID] = archived
			}
			if err != nil {
				failures = append(failures, err)
			}
		})
	}
	wg.Wait()
	for _, err := range failures {
		// Only retryable kinds may survive, and only by exhausting attempts.
		if !errors.Is(err, plugipay.ErrServer) && !errors.Is(err, plugipay.ErrNetwork) &&
			!errors.Is(err, plugipay.ErrTimeout) && !errors.Is(err, plugipay.ErrRateLimited) {
			t.Errorf("unexpected failure: %v", err)
		}
	}
	if got := emu.WritesExecuted(); got > 2*n {
		t.Errorf("writes executed = %d, want at most %d (a retry executed twice)", got, 2*n)
	}
	if got := emu.CustomerCount(); got > n || got < len(created) {
		t.Errorf("customers = %d, want between %d and %d", got, len(created), n)
	}

	emu.SetFaults(emulator.Faults{})
	listed := 0
	for cus, err := range c.Customers.ListAll(ctx, plugipay.ListParams{Limit: 7, Order: "asc"}) {
		if err != nil {
			t.Fatal(err)
		}
		listed++
		if archived, ok := created[cus.ID]; ok && archived && cus.Metadata["archived"] != "true" {
			t.Errorf("customer %s not archived", cus.ID)
		}
	}
	if listed != emu.CustomerCount() {
		t.Errorf("listed %d, emulator holds %d", listed, emu.CustomerCount())
	}
	t.Logf("failures: %v", failures)
	t.Logf("created %d, failures %d, writes executed %d, replays %d", len(created), len(failures), emu.WritesExecuted(), emu.Replays())

	t.Run("Errors", func(t *testing.T) {
		_, err := c.Customers.Create(ctx, plugipay.CustomerParams{ExternalID: plugipay.String("user_1")}, "idem_dup")
		if !errors.Is(err, plugipay.ErrConflict) {
			t.Errorf("duplicate externalId: %v", err)
		}
		_, err = c.Customers.Create(ctx, plugipay.CustomerParams{ExternalID: plugipay.String("user_other")}, "idem_c1")
		if !errors.Is(err, plugipay.ErrIdempotency) {
			t.Errorf("reused key: %v", err)
		}
		if _, err = c.Customers.Get(ctx, "cus_01HXAB7K3M9N2P5QRS8TVWXY3Z"); !errors.Is(err, plugipay.ErrNotFound) {
			t.Errorf("missing id: %v", err)
		}
		if _, err = c.Customers.Create(ctx, plugipay.CustomerParams{Email: plugipay.String("not an email")}, ""); !errors.Is(err, plugipay.ErrValidation) {
			t.Errorf("bad email: %v", err)
		}
		bad, err := plugipay.New(plugipay.Options{BaseURL: srv.URL, KeyID: "key_1", Secret: "wrong"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bad.Customers.Get(ctx, "cus_x"); !errors.Is(err, plugipay.ErrAuth) {
			t.Errorf("wrong secret: %v", err)
		}
		page, err := c.Customers.List(ctx, plugipay.ListParams{ExternalID: "user_5"})
		if err != nil || len(page.Data) > 1 || (len(page.Data) == 1 && page.Data[0].ExternalID != "user_5") {
			t.Errorf("list by externalId = %+v, %v", page, err)
		}
	})
}
