package emulator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"
	"unicode/utf8"
)

// Field limits the emulator enforces. Lengths count Unicode code points
// except MaxEmailLen, which counts bytes as RFC 5321 does.
const (
	// MaxEmailLen is the longest accepted email address (RFC 5321 path limit).
	MaxEmailLen = 320
	// MaxEmailLocalLen is the longest accepted local part of an email address.
	MaxEmailLocalLen = 64
	// MaxExternalIDLen is the longest accepted externalId.
	MaxExternalIDLen = 255
	// MaxNameLen is the longest accepted name.
	MaxNameLen = 255
	// MaxPhoneLen is the longest accepted phone.
	MaxPhoneLen = 64
	// MaxTaxIDLen is the longest accepted taxId.
	MaxTaxIDLen = 64
	// MaxPaymentTokenIDLen is the longest accepted defaultPaymentTokenId.
	MaxPaymentTokenIDLen = 255
	// MaxMetadataPairs is the most metadata pairs a customer may carry.
	MaxMetadataPairs = 50
	// MaxMetadataKeyLen is the longest metadata key; keys must be non-empty.
	MaxMetadataKeyLen = 40
	// MaxMetadataValueLen is the longest metadata value; "" is allowed.
	MaxMetadataValueLen = 500
	// MaxBodyBytes is the largest request body the emulator reads.
	MaxBodyBytes = 1 << 20
)

// optString is one nullable string field of a create or update body. set is
// false when the field is absent; val is nil when the field is null or "".
type optString struct {
	set bool
	val *string
}

// customerInput is a validated create or update body.
type customerInput struct {
	externalID, email, name, phone, taxID, paymentToken optString
	metadataSet                                         bool
	metadata                                            map[string]string // nil clears
}

// validationError is a 400 validation_error whose message names the field.
type validationError struct{ msg string }

func (e *validationError) Error() string { return e.msg }

func invalid(format string, args ...any) error {
	return &validationError{msg: fmt.Sprintf(format, args...)}
}

// parseCustomerInput decodes and validates a create or update body. It
// rejects anything but one JSON object, duplicate and unknown keys, wrong
// types and out-of-range values, naming the offending field.
func parseCustomerInput(body []byte) (*customerInput, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, invalid("body: must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return nil, invalid("body: must be a JSON object")
	}
	in := &customerInput{}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, invalid("body: malformed JSON: %v", err)
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, invalid("body: malformed JSON: %v", err)
		}
		if seen[key] {
			return nil, invalid("%s: duplicate field", key)
		}
		seen[key] = true
		if err := in.set(key, raw); err != nil {
			return nil, err
		}
	}
	if _, err := dec.Token(); err != nil {
		return nil, invalid("body: malformed JSON: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, invalid("body: unexpected data after the JSON object")
	}
	return in, nil
}

func (in *customerInput) set(key string, raw json.RawMessage) error {
	var dst *optString
	var check func(string) error
	switch key {
	case "externalId":
		dst, check = &in.externalID, lengthCheck(key, MaxExternalIDLen)
	case "email":
		dst, check = &in.email, checkEmail
	case "name":
		dst, check = &in.name, lengthCheck(key, MaxNameLen)
	case "phone":
		dst, check = &in.phone, lengthCheck(key, MaxPhoneLen)
	case "taxId":
		dst, check = &in.taxID, lengthCheck(key, MaxTaxIDLen)
	case "defaultPaymentTokenId":
		dst, check = &in.paymentToken, checkPaymentToken
	case "metadata":
		return in.setMetadata(raw)
	default:
		return invalid("%s: unknown field", key)
	}
	dst.set = true
	if isNull(raw) {
		return nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return invalid("%s: must be a string or null", key)
	}
	if s == "" {
		return nil // the API stores "" as null
	}
	if err := check(s); err != nil {
		return err
	}
	dst.val = &s
	return nil
}

func (in *customerInput) setMetadata(raw json.RawMessage) error {
	in.metadataSet = true
	if isNull(raw) {
		return nil
	}
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return invalid("metadata: must be an object of strings or null")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	if _, err := dec.Token(); err != nil {
		return invalid("metadata: must be an object of strings or null")
	}
	m := map[string]string{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return invalid("metadata: malformed JSON: %v", err)
		}
		k, _ := tok.(string)
		var v any
		if err := dec.Decode(&v); err != nil {
			return invalid("metadata: malformed JSON: %v", err)
		}
		s, ok := v.(string)
		if !ok {
			return invalid("metadata.%s: must be a string", k)
		}
		if _, dup := m[k]; dup {
			return invalid("metadata.%s: duplicate key", k)
		}
		if k == "" || utf8.RuneCountInString(k) > MaxMetadataKeyLen {
			return invalid("metadata: key %q must be 1-%d characters", truncate(k, 50), MaxMetadataKeyLen)
		}
		if utf8.RuneCountInString(s) > MaxMetadataValueLen {
			return invalid("metadata.%s: value must be at most %d characters", k, MaxMetadataValueLen)
		}
		m[k] = s
		if len(m) > MaxMetadataPairs {
			return invalid("metadata: at most %d pairs allowed", MaxMetadataPairs)
		}
	}
	if len(m) > 0 {
		in.metadata = m // an empty object is stored as null
	}
	return nil
}

func isNull(raw json.RawMessage) bool {
	return bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

func lengthCheck(field string, max int) func(string) error {
	return func(s string) error {
		if n := utf8.RuneCountInString(s); n > max {
			return invalid("%s: must be 1-%d characters (got %d)", field, max, n)
		}
		return nil
	}
}

func checkEmail(s string) error {
	if len(s) > MaxEmailLen {
		return invalid("email: must be at most %d characters", MaxEmailLen)
	}
	addr, err := mail.ParseAddress(s)
	if err != nil || addr.Name != "" || addr.Address != s {
		return invalid("email: %q is not a valid email address", truncate(s, 80))
	}
	local, domain, _ := strings.Cut(s, "@")
	if len(local) > MaxEmailLocalLen || domain == "" {
		return invalid("email: %q is not a valid email address", truncate(s, 80))
	}
	return nil
}

func checkPaymentToken(s string) error {
	if !strings.HasPrefix(s, "pt_") || len(s) <= len("pt_") {
		return invalid("defaultPaymentTokenId: must start with pt_")
	}
	if utf8.RuneCountInString(s) > MaxPaymentTokenIDLen {
		return invalid("defaultPaymentTokenId: must be at most %d characters", MaxPaymentTokenIDLen)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
