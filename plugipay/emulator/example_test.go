package emulator_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"time"

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
