package plugipay

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
)

// Header names and the authorization scheme of Plugipay's HMAC request signing.
const (
	HeaderAuthorization  = "Authorization"
	HeaderTimestamp      = "X-Plugipay-Timestamp"
	HeaderIdempotencyKey = "Idempotency-Key"
	HeaderOnBehalfOf     = "X-Plugipay-On-Behalf-Of"
	AuthScheme           = "Plugipay-HMAC-SHA256"
)

// StringToSign builds the canonical string that Plugipay signs: method, raw
// request target (path plus "?" plus raw query exactly as sent), unix
// timestamp, lowercase hex SHA-256 of the exact body bytes and, only when an
// Idempotency-Key header is sent, the key. Lines are joined by "\n" with no
// trailing newline.
func StringToSign(method, target string, timestamp int64, body []byte, idempotencyKey string) string {
	sum := sha256.Sum256(body)
	parts := []string{
		strings.ToUpper(method),
		target,
		strconv.FormatInt(timestamp, 10),
		hex.EncodeToString(sum[:]),
	}
	if idempotencyKey != "" {
		parts = append(parts, idempotencyKey)
	}
	return strings.Join(parts, "\n")
}

// Sign returns the lowercase hex HMAC-SHA256 of the string to sign under
// secret. Both the client and the emulator use it, so the spec's test vectors
// pin one implementation for both sides.
func Sign(secret, method, target string, timestamp int64, body []byte, idempotencyKey string) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(StringToSign(method, target, timestamp, body, idempotencyKey)))
	return hex.EncodeToString(mac.Sum(nil))
}

// AuthorizationHeader formats the Authorization header value for keyID and a
// signature computed by Sign.
func AuthorizationHeader(keyID, signature string) string {
	return AuthScheme + " keyId=" + keyID + ", scope=*, signature=" + signature
}

// ParseAuthorization splits an Authorization header value into its key id,
// scope and signature. ok is false when the scheme or a part is missing.
func ParseAuthorization(v string) (keyID, scope, signature string, ok bool) {
	rest, found := strings.CutPrefix(v, AuthScheme+" ")
	if !found {
		return "", "", "", false
	}
	for _, part := range strings.Split(rest, ",") {
		k, val, found := strings.Cut(strings.TrimSpace(part), "=")
		if !found {
			return "", "", "", false
		}
		switch k {
		case "keyId":
			keyID = val
		case "scope":
			scope = val
		case "signature":
			signature = val
		}
	}
	return keyID, scope, signature, keyID != "" && signature != ""
}

// VerifySignature reports, in constant time, whether signature is the
// correct signature of the request under secret.
func VerifySignature(secret, method, target string, timestamp int64, body []byte, idempotencyKey, signature string) bool {
	want := Sign(secret, method, target, timestamp, body, idempotencyKey)
	return hmac.Equal([]byte(want), []byte(strings.ToLower(signature)))
}
