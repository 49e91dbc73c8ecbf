package fake_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/plugipay-sync/plugipay-sync/destination/paygate/fake"
)

// Example mounts the fake in an httptest server, creates a customer and
// inspects the fake's state.
func Example() {
	f := fake.New(fake.Options{Keys: []string{"sk_test_demo"}})
	srv := httptest.NewServer(f)
	defer srv.Close()

	req, _ := http.NewRequest("POST", srv.URL+"/v1/customers",
		strings.NewReader(`{"email":"ada@example.com","metadata":{"crm_user_id":"u1"}}`))
	req.Header.Set("Authorization", "Bearer sk_test_demo")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	c := f.Customers()[0]
	fmt.Println(resp.StatusCode, c.Email, c.Metadata["crm_user_id"], f.WritesExecuted())
	// Output: 200 ada@example.com u1 1
}
