package emulator_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"time"

	"github.com/plugipay-sync/plugipay-sync/plugipay"
	"github.com/plugipay-sync/plugipay-sync/plugipay/emulator"
)

// Example mounts the emulator in an httptest server, creates a customer
// with a signed request and inspects the emulator's state.
func Example() {
	emu := emulator.New(emulator.Options{Keys: map[string]string{"key_demo": "sk_demo_secret"}})
	srv := httptest.NewServer(emu)
	defer srv.Close()

	body := []byte(`{"externalId":"user_1","email":"ada@example.com"}`)
	ts := strconv.FormatInt(time.Now().Unix(), 10)
	sum := sha256.Sum256(body)
	mac := hmac.New(sha256.New, []byte("sk_demo_secret"))
	mac.Write([]byte("POST\n/api/v1/customers\n" + ts + "\n" + hex.EncodeToString(sum[:]) + "\nidem_1"))

	req, _ := http.NewRequest("POST", srv.URL+"/api/v1/customers", bytes.NewReader(body))
	req.Header.Set("Authorization", "Plugipay-HMAC-SHA256 keyId=key_demo, scope=*, signature="+hex.EncodeToString(mac.Sum(nil)))
	req.Header.Set("X-Plugipay-Timestamp", ts)
	req.Header.Set("Idempotency-Key", "idem_1")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()

	c, _ := emu.CustomerByExternalID("user_1")
	fmt.Println(resp.StatusCode, c.Email, emu.WritesExecuted())
	// Output: 201 ada@example.com 1
}

// Example_platform serves two merchant workspaces under one platform key
// and acts for one of them with the SDK (X-Plugipay-On-Behalf-Of).
func Example_platform() {
	emu := emulator.New(emulator.Options{
		PlatformKeys: map[string]emulator.PlatformKey{"key_plat": {Secret: "sk_plat", Accounts: []string{"acc_m1", "acc_m2"}}},
		RequestLog:   1000,
	})
	srv := httptest.NewServer(emu)
	defer srv.Close()

	c, err := plugipay.New(plugipay.Options{BaseURL: srv.URL, KeyID: "key_plat", Secret: "sk_plat", OnBehalfOf: "acc_m1"})
	if err != nil {
		panic(err)
	}
	cus, err := c.Customers.Create(context.Background(), plugipay.CustomerParams{ExternalID: plugipay.String("user_1")}, "idem_1")
	if err != nil {
		panic(err)
	}
	fmt.Println(cus.AccountID, emu.CustomerCountIn("acc_m1"), emu.CustomerCountIn("acc_m2"), len(emu.RequestLog()), len(emu.OverlappingWrites()))
	// Output: acc_m1 1 0 1 0
}
