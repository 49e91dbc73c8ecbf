package fake_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/plugipay-sync/plugipay-sync/destination/pin/fake"
)

// Example seeds a customer as checkout would, renames it with a PUT over
// HTTP and inspects the fake's state.
func Example() {
	srv := fake.New(fake.Options{TestKeys: []string{"sk_test_demo"}, Seed: 1})
	hs := httptest.NewServer(srv)
	defer hs.Close()

	c := srv.Seed(fake.ModeTest, fake.Customer{Email: "ada@example.com", FirstName: "Ada"})

	req, _ := http.NewRequest("PUT", hs.URL+"/1/customers/"+c.Token, strings.NewReader(`{"last_name":"Lovelace"}`))
	req.SetBasicAuth("sk_test_demo", "")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	resp.Body.Close()

	got, _ := srv.Customer(fake.ModeTest, c.Token)
	fmt.Println(resp.StatusCode, got.FirstName, got.LastName, srv.WritesExecuted(), srv.CardDataSeen())
	// Output: 200 Ada Lovelace 1 false
}
