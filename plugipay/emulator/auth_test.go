package emulator

import (
	"net/http"
	"strconv"
	"testing"
	"time"
)

// TestSignatureVectors sends the spec's three vectors verbatim (signature
// included) and checks the verifier accepts each.
func TestSignatureVectors(t *testing.T) {
	vectors := []struct {
		name, method, target, body, idem, sig string
		ts                                    int64
		wantStatus                            int
		wantCode                              string
	}{
		{"GET", "GET", "/api/v1/customers?limit=100", "", "", "1313ef4b8314a30348d47dfaf92a2335ee2e6b1f38082df05b70bac084209ea3", 1767225600, 200, ""},
		{"POST", "POST", "/api/v1/customers", `{"email":"ada@example.com","externalId":"user_19823","name":"Ada Lovelace"}`, "idem_0f8e2d", "037b1392036149c2c9f7771f433ff30387c8def4df5b817d536d081af1baec7f", 1767225600, 201, ""},
		// The customer does not exist: a 404 proves authentication passed.
		{"PATCH", "PATCH", "/api/v1/customers/cus_01HXAB7K3M9N2P5QRS8TVWXY3Z", `{"metadata":{"archived":"true"}}`, "idem_9a1b", "92d186d0f90890e361fd2ced2dde54a76591563ba16e3ddcb00ff01371d7cd31", 1767225601, 404, "not_found"},
	}
	for _, v := range vectors {
		t.Run(v.name, func(t *testing.T) {
			e := newEnv(t, Options{Keys: map[string]string{"key_vec": "sk_test_5f1c2e"}})
			e.clock.t = time.Unix(v.ts, 0)
			if got := sign("sk_test_5f1c2e", v.method, v.target, strconv.FormatInt(v.ts, 10), []byte(v.body), v.idem); got != v.sig {
				t.Fatalf("test signer = %s, want %s", got, v.sig)
			}
			r := e.do(req{method: v.method, target: v.target, body: v.body, idem: v.idem, keyID: "key_vec", ts: strconv.FormatInt(v.ts, 10), signature: v.sig})
			expect(t, r, v.wantStatus, v.wantCode)
		})
	}
}

func TestAuthFailures(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	ts := func(d int64) string { return strconv.FormatInt(now+d, 10) }
	tests := []struct {
		name       string
		q          req
		wantStatus int
		wantCode   string
	}{
		{"OK", req{}, 200, ""},
		{"SkewEdgePast", req{ts: ts(-300)}, 200, ""},
		{"SkewEdgeFuture", req{ts: ts(300)}, 200, ""},
		{"WrongSignature", req{signature: "00" + sign(testSecret, "GET", "/api/v1/customers", ts(0), nil, "")[2:]}, 401, "invalid_signature"},
		{"WrongSecret", req{secret: "sk_other"}, 401, "invalid_signature"},
		{"OldTimestamp", req{ts: ts(-301)}, 401, "timestamp_skew"},
		{"FutureTimestamp", req{ts: ts(301)}, 401, "timestamp_skew"},
		{"MissingTimestamp", req{ts: "-"}, 401, "invalid_timestamp"},
		{"MalformedTimestamp", req{ts: "12.5"}, 401, "invalid_timestamp"},
		{"SignedTimestampNotSent", req{ts: "+" + ts(0)}, 401, "invalid_timestamp"},
		{"UnknownKey", req{keyID: "key_nope"}, 401, "invalid_key"},
		{"TargetDiffers", req{target: "/api/v1/customers?limit=5", sendTarget: "/api/v1/customers?limit=6"}, 401, "invalid_signature"},
		{"QueryOrderAsSigned", req{target: "/api/v1/customers?order=asc&limit=5"}, 200, ""},
		{"IdempotencyKeyNotSigned", req{method: "POST", body: "{}", idem: "idem_x", signature: sign(testSecret, "POST", "/api/v1/customers", ts(0), []byte("{}"), "")}, 401, "invalid_signature"},
		{"ReadScopeCanRead", req{scope: "plugipay:customer:read"}, 200, ""},
		{"ReadScopeCannotWrite", req{method: "POST", body: "{}", idem: "idem_s", scope: "plugipay:customer:read"}, 403, "insufficient_scope"},
		{"OtherScope", req{scope: "plugipay:invoice:read"}, 403, "insufficient_scope"},
		{"WriteScopeCanCreate", req{method: "POST", body: "{}", idem: "idem_w", scope: "plugipay:customer:write"}, 201, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, Options{})
			if tt.q.method == "" {
				tt.q.method = "GET"
			}
			if tt.q.target == "" {
				tt.q.target = "/api/v1/customers"
			}
			expect(t, e.do(tt.q), tt.wantStatus, tt.wantCode)
		})
	}

	t.Run("MissingAuthorization", func(t *testing.T) {
		e := newEnv(t, Options{})
		resp, err := http.Get(e.http.URL + "/api/v1/customers")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Fatalf("status = %d, want 401", resp.StatusCode)
		}
	})

	t.Run("NonCanonicalAuthorization", func(t *testing.T) {
		e := newEnv(t, Options{})
		ts := strconv.FormatInt(e.clock.Now().Unix(), 10)
		sig := sign(testSecret, "GET", "/api/v1/customers", ts, nil, "")
		for _, v := range []string{
			"Plugipay-HMAC-SHA256 keyId=" + testKeyID + ",scope=*,signature=" + sig,
			"Plugipay-HMAC-SHA256 signature=" + sig + ", keyId=" + testKeyID + ", scope=*",
			"Plugipay-HMAC-SHA256 keyId=" + testKeyID + ", signature=" + sig,
			"plugipay-hmac-sha256 keyId=" + testKeyID + ", scope=*, signature=" + sig,
		} {
			hr, _ := http.NewRequest("GET", e.http.URL+"/api/v1/customers", nil)
			hr.Header.Set("Authorization", v)
			hr.Header.Set("X-Plugipay-Timestamp", ts)
			resp, err := http.DefaultClient.Do(hr)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 401 {
				t.Errorf("%q: status %d, want 401", v, resp.StatusCode)
			}
		}
	})

	t.Run("TamperedBody", func(t *testing.T) {
		e := newEnv(t, Options{})
		sig := sign(testSecret, "POST", "/api/v1/customers", ts(0), []byte(`{"name":"A"}`), "idem_t")
		r := e.do(req{method: "POST", target: "/api/v1/customers", body: `{"name":"B"}`, idem: "idem_t", signature: sig})
		expect(t, r, 401, "invalid_signature")
		if got := e.srv.CustomerCount(); got != 0 {
			t.Fatalf("CustomerCount = %d, want 0", got)
		}
	})
}
