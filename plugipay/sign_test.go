package plugipay

import "testing"

// signatureVectors are the test vectors of ../shared/spec/plugipay-api.md.
var signatureVectors = []struct {
	name, method, target string
	ts                   int64
	body, key, want      string
}{
	{"GET list", "GET", "/api/v1/customers?limit=100", 1767225600, "", "",
		"1313ef4b8314a30348d47dfaf92a2335ee2e6b1f38082df05b70bac084209ea3"},
	{"POST create", "POST", "/api/v1/customers", 1767225600,
		`{"email":"ada@example.com","externalId":"user_19823","name":"Ada Lovelace"}`, "idem_0f8e2d",
		"037b1392036149c2c9f7771f433ff30387c8def4df5b817d536d081af1baec7f"},
	{"PATCH archive", "PATCH", "/api/v1/customers/cus_01HXAB7K3M9N2P5QRS8TVWXY3Z", 1767225601,
		`{"metadata":{"archived":"true"}}`, "idem_9a1b",
		"92d186d0f90890e361fd2ced2dde54a76591563ba16e3ddcb00ff01371d7cd31"},
}

const vectorSecret = "sk_test_5f1c2e"

func TestSign_SpecVectors(t *testing.T) {
	for _, v := range signatureVectors {
		t.Run(v.name, func(t *testing.T) {
			got := Sign(vectorSecret, v.method, v.target, v.ts, []byte(v.body), v.key)
			if got != v.want {
				t.Fatalf("Sign = %s, want %s", got, v.want)
			}
			if !VerifySignature(vectorSecret, v.method, v.target, v.ts, []byte(v.body), v.key, v.want) {
				t.Fatal("VerifySignature rejected the spec's signature")
			}
			if VerifySignature("sk_wrong", v.method, v.target, v.ts, []byte(v.body), v.key, v.want) {
				t.Fatal("VerifySignature accepted a signature under the wrong secret")
			}
		})
	}
}

func TestParseAuthorization(t *testing.T) {
	tests := []struct {
		in              string
		key, scope, sig string
		ok              bool
	}{
		{AuthorizationHeader("key_1", "abc"), "key_1", "*", "abc", true},
		{"Bearer xyz", "", "", "", false},
		{AuthScheme + " keyId=k, scope=*", "", "", "", false},
		{AuthScheme + " garbage", "", "", "", false},
	}
	for _, tt := range tests {
		key, scope, sig, ok := ParseAuthorization(tt.in)
		if ok != tt.ok || (ok && (key != tt.key || scope != tt.scope || sig != tt.sig)) {
			t.Errorf("ParseAuthorization(%q) = %q,%q,%q,%v; want %q,%q,%q,%v", tt.in, key, scope, sig, ok, tt.key, tt.scope, tt.sig, tt.ok)
		}
	}
}
