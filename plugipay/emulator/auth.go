package emulator

import (
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/plugipay-sync/plugipay-sync/plugipay"
)

// Customer scopes a key may carry besides "*". The write scope covers both
// create and update.
const (
	ScopeAll            = "*"
	ScopeCustomerAll    = "plugipay:customer:*"
	ScopeCustomerRead   = "plugipay:customer:read"
	ScopeCustomerCreate = "plugipay:customer:create"
	ScopeCustomerWrite  = "plugipay:customer:write"
)

// authenticate reads the body and checks the request's signature, in the
// real API's order: key, timestamp, signature, scope. It returns the raw
// body and the key id, or the error result to send.
func (s *Server) authenticate(r *http.Request) (body []byte, keyID string, res *result) {
	fail := func(status int, code, msg string) ([]byte, string, *result) {
		e := errResult(status, code, msg)
		return nil, "", &e
	}
	authz := r.Header.Get(plugipay.HeaderAuthorization)
	keyID, scope, sig, ok := plugipay.ParseAuthorization(authz)
	// Strict form: exactly "<scheme> keyId=K, scope=S, signature=X" with
	// ", " separators, in that order, nothing else.
	if ok && authz != plugipay.AuthScheme+" keyId="+keyID+", scope="+scope+", signature="+sig {
		ok = false
	}
	if !ok {
		return fail(http.StatusUnauthorized, plugipay.CodeInvalidKey, "missing or malformed Authorization header (want "+plugipay.AuthScheme+" keyId=..., scope=*, signature=...)")
	}
	secret, known := s.keys.secret(keyID)
	if !known {
		return fail(http.StatusUnauthorized, plugipay.CodeInvalidKey, "unknown API key "+strconv.Quote(keyID))
	}
	tsText := r.Header.Get(plugipay.HeaderTimestamp)
	ts, err := parseTimestamp(tsText)
	if err != nil {
		return fail(http.StatusUnauthorized, plugipay.CodeInvalidTimestamp, plugipay.HeaderTimestamp+": "+err.Error())
	}
	now := s.now().Unix()
	if d := now - ts; d > int64(MaxSkew.Seconds()) || d < -int64(MaxSkew.Seconds()) {
		return fail(http.StatusUnauthorized, plugipay.CodeTimestampSkew,
			plugipay.HeaderTimestamp+" "+tsText+" is more than 300 s from the server clock "+strconv.FormatInt(now, 10))
	}
	body, err = io.ReadAll(http.MaxBytesReader(nil, r.Body, MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return fail(http.StatusRequestEntityTooLarge, plugipay.CodeValidation, "body: larger than "+strconv.Itoa(MaxBodyBytes)+" bytes")
		}
		return fail(http.StatusBadRequest, plugipay.CodeValidation, "body: read: "+err.Error())
	}
	idemKey := r.Header.Get(plugipay.HeaderIdempotencyKey)
	if !plugipay.VerifySignature(secret, r.Method, r.RequestURI, ts, body, idemKey, sig) {
		return fail(http.StatusUnauthorized, plugipay.CodeInvalidSignature,
			"signature does not match the request (signed: method, raw request target, timestamp, body SHA-256, Idempotency-Key when sent)")
	}
	if !scopeAllows(scope, r.Method) {
		return fail(http.StatusForbidden, plugipay.CodeInsufficientScope, "scope "+strconv.Quote(scope)+" does not allow "+r.Method+" on customers")
	}
	return body, keyID, nil
}

// parseTimestamp accepts unix seconds as plain decimal digits only.
func parseTimestamp(v string) (int64, error) {
	if v == "" {
		return 0, errors.New("missing")
	}
	if len(v) > 12 {
		return 0, errors.New("malformed: want unix seconds")
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, errors.New("malformed: want unix seconds")
		}
	}
	ts, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, errors.New("malformed: want unix seconds")
	}
	return ts, nil
}

func scopeAllows(scope, method string) bool {
	switch scope {
	case ScopeAll, ScopeCustomerAll:
		return true
	case ScopeCustomerRead:
		return method == http.MethodGet
	case ScopeCustomerCreate:
		return method == http.MethodPost
	case ScopeCustomerWrite:
		return method == http.MethodPost || method == http.MethodPatch
	}
	return false
}
