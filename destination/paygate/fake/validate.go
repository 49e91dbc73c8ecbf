package fake

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Field limits. Lengths count Unicode code points except MaxEmailLen,
// which counts bytes as RFC 5321 does.
const (
	MaxEmailLen         = 320
	MaxNameLen          = 256
	MaxPhoneLen         = 40
	MaxMetadataKeys     = 50
	MaxMetadataKeyLen   = 40
	MaxMetadataValueLen = 500
)

// optString is one string field of a body: set when present, val "" when
// null or "" (no value).
type optString struct {
	set bool
	val string
}

// input is a validated create or update body.
type input struct {
	email, name, phone optString
	// metadataClear: metadata was null or "". metadata holds the keys the
	// body sets; a "" value removes the key.
	metadataClear bool
	metadata      map[string]string
}

func itoa(n int) string { return strconv.Itoa(n) }

// parseInput decodes and validates a create or update body: one JSON
// object, no duplicate or unknown keys, the right types and sizes.
func parseInput(body []byte) (*input, *ErrorBody) {
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return nil, errBody(CodeInvalidJSON, "request body must be a JSON object")
	}
	in := &input{}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, errBody(CodeInvalidJSON, "malformed JSON: "+err.Error())
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, errBody(CodeInvalidJSON, "malformed JSON: "+err.Error())
		}
		if seen[key] {
			return nil, errBody(CodeInvalidJSON, "duplicate field "+strconv.Quote(truncate(key, 50)))
		}
		seen[key] = true
		if e := in.set(key, raw); e != nil {
			return nil, e
		}
	}
	if _, err := dec.Token(); err != nil {
		return nil, errBody(CodeInvalidJSON, "malformed JSON: "+err.Error())
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errBody(CodeInvalidJSON, "unexpected data after the JSON object")
	}
	return in, nil
}

func (in *input) set(key string, raw json.RawMessage) *ErrorBody {
	var dst *optString
	var check func(string) *ErrorBody
	switch key {
	case "email":
		dst, check = &in.email, checkEmail
	case "name":
		dst, check = &in.name, lengthCheck(key, MaxNameLen)
	case "phone":
		dst, check = &in.phone, lengthCheck(key, MaxPhoneLen)
	case "metadata":
		return in.setMetadata(raw)
	default:
		return errBody(CodeParameterUnknown, "received unknown parameter: "+truncate(key, 50))
	}
	dst.set = true
	if isNull(raw) {
		return nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return errBody(CodeParameterInvalidType, key+": must be a string or null")
	}
	if s == "" {
		return nil
	}
	if e := check(s); e != nil {
		return e
	}
	dst.val = s
	return nil
}

func (in *input) setMetadata(raw json.RawMessage) *ErrorBody {
	trimmed := bytes.TrimSpace(raw)
	if isNull(trimmed) || bytes.Equal(trimmed, []byte(`""`)) {
		in.metadataClear = true
		return nil
	}
	if trimmed[0] != '{' {
		return errBody(CodeParameterInvalidType, "metadata: must be an object of strings, null or \"\"")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	if _, err := dec.Token(); err != nil {
		return errBody(CodeInvalidJSON, "metadata: malformed JSON: "+err.Error())
	}
	m := map[string]string{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return errBody(CodeInvalidJSON, "metadata: malformed JSON: "+err.Error())
		}
		k, _ := tok.(string)
		var v any
		if err := dec.Decode(&v); err != nil {
			return errBody(CodeInvalidJSON, "metadata: malformed JSON: "+err.Error())
		}
		s, ok := v.(string)
		if !ok {
			return errBody(CodeParameterInvalidType, "metadata["+truncate(k, 50)+"]: must be a string")
		}
		if _, dup := m[k]; dup {
			return errBody(CodeInvalidJSON, "metadata: duplicate key "+strconv.Quote(truncate(k, 50)))
		}
		if k == "" || utf8.RuneCountInString(k) > MaxMetadataKeyLen {
			return errBody(CodeParameterInvalid, fmt.Sprintf("metadata: key %q must be 1-%d characters", truncate(k, 50), MaxMetadataKeyLen))
		}
		if utf8.RuneCountInString(s) > MaxMetadataValueLen {
			return errBody(CodeParameterInvalid, fmt.Sprintf("metadata[%s]: value must be at most %d characters", k, MaxMetadataValueLen))
		}
		m[k] = s
		if len(m) > MaxMetadataKeys {
			return errBody(CodeParameterInvalid, fmt.Sprintf("metadata: at most %d keys allowed", MaxMetadataKeys))
		}
	}
	in.metadata = m
	return nil
}

func isNull(raw []byte) bool {
	return bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

func lengthCheck(field string, limit int) func(string) *ErrorBody {
	return func(s string) *ErrorBody {
		if n := utf8.RuneCountInString(s); n > limit {
			return errBody(CodeParameterInvalid, fmt.Sprintf("%s: must be at most %d characters (got %d)", field, limit, n))
		}
		return nil
	}
}

func checkEmail(s string) *ErrorBody {
	if len(s) > MaxEmailLen {
		return errBody(CodeEmailInvalid, fmt.Sprintf("email: must be at most %d bytes", MaxEmailLen))
	}
	addr, err := mail.ParseAddress(s)
	local, domain, _ := strings.Cut(s, "@")
	if err != nil || addr.Name != "" || addr.Address != s || len(local) > 64 || !strings.Contains(domain, ".") {
		return errBody(CodeEmailInvalid, fmt.Sprintf("email: %q is not a valid email address", truncate(s, 80)))
	}
	return nil
}
