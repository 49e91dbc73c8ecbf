package fake

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/mail"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Field limits. Lengths count Unicode code points, except MaxEmailLen,
// which counts bytes.
const (
	// MaxEmailLen is the longest accepted email address.
	MaxEmailLen = 254
	// MaxNameLen is the longest accepted first_name or last_name.
	MaxNameLen = 255
	// MaxCardFieldLen is the longest accepted card name, address field or
	// card_token.
	MaxCardFieldLen = 255
)

// optString is one string field of a body: set when present.
type optString struct {
	set bool
	val string
}

// input is a validated create or update body. Card data is validated and
// dropped: the fake stores no card.
type input struct {
	email, firstName, lastName optString
}

func (in input) apply(c *Customer) {
	if in.email.set {
		c.Email = in.email.val
	}
	if in.firstName.set {
		c.FirstName = in.firstName.val
	}
	if in.lastName.set {
		c.LastName = in.lastName.val
	}
}

// parseInput decodes and validates a create (create true) or update body;
// now is the server clock, for the card expiry.
// ok is false when res is the error answer to send.
func parseInput(r *http.Request, body []byte, create bool, now time.Time) (in input, res result, ok bool) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return in, errResult(http.StatusBadRequest, CodeBadRequest, "Content-Type must be application/json"), false
	}
	fields, err := decodeObject(body)
	if err != nil {
		return in, errResult(http.StatusBadRequest, CodeBadRequest, err.Error()), false
	}
	var msgs []Message
	add := func(param, code, msg string) { msgs = append(msgs, Message{Param: param, Code: code, Message: msg}) }
	str := func(key string, raw json.RawMessage) (string, bool) {
		var v string
		if isNull(raw) || json.Unmarshal(raw, &v) != nil {
			add(key, key+"_invalid", key+" must be a string")
			return "", false
		}
		return v, true
	}
	var card json.RawMessage
	var cardToken optString
	present := map[string]bool{}
	for _, f := range fields {
		present[f.key] = true
		switch f.key {
		case "email":
			if v, good := str(f.key, f.raw); good {
				in.email = optString{true, v}
				checkEmail(v, add)
			}
		case "first_name", "last_name":
			if v, good := str(f.key, f.raw); good {
				if f.key == "first_name" {
					in.firstName = optString{true, v}
				} else {
					in.lastName = optString{true, v}
				}
				checkText(f.key, v, MaxNameLen, add)
			}
		case "card", "card_token":
			if !create {
				add(f.key, f.key+"_unknown", f.key+" cannot be changed through a customer update")
				continue
			}
			if f.key == "card" {
				card = f.raw
				continue
			}
			if v, good := str(f.key, f.raw); good {
				cardToken = optString{true, v}
				if !strings.HasPrefix(v, "card_") || len(v) == len("card_") || utf8.RuneCountInString(v) > MaxCardFieldLen {
					add(f.key, "card_token_invalid", "card_token must be a card token (card_...)")
				}
			}
		default:
			add(f.key, f.key+"_unknown", f.key+" is not a known parameter")
		}
	}
	if create && !present["email"] {
		add("email", "email_missing", "email is required")
	}
	if card != nil && cardToken.set {
		add("card_token", "card_token_invalid", "give a card or a card_token, not both")
	}
	if card != nil {
		checkCard(card, now.UTC(), add)
	}
	if len(msgs) > 0 {
		return in, invalidResource(msgs), false
	}
	return in, result{}, true
}

type field struct {
	key string
	raw json.RawMessage
}

// decodeObject splits body, which must be exactly one JSON object without
// duplicate keys, into its fields in order.
func decodeObject(body []byte) ([]field, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return nil, errors.New("body must be a JSON object")
	}
	var out []field
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, errors.New("malformed JSON body")
		}
		key, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, errors.New("malformed JSON body")
		}
		if seen[key] {
			return nil, errors.New("duplicate field " + strconv.Quote(key))
		}
		seen[key] = true
		out = append(out, field{key, raw})
	}
	if _, err := dec.Token(); err != nil {
		return nil, errors.New("malformed JSON body")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("unexpected data after the JSON object")
	}
	return out, nil
}

func isNull(raw json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(raw), []byte("null")) }

type addFunc func(param, code, msg string)

func checkEmail(s string, add addFunc) {
	if s == "" {
		add("email", "email_invalid", "email cannot be blank")
		return
	}
	if len(s) > MaxEmailLen {
		add("email", "email_invalid", "email must be at most "+strconv.Itoa(MaxEmailLen)+" bytes")
		return
	}
	addr, err := mail.ParseAddress(s)
	local, domain, _ := strings.Cut(s, "@")
	if err != nil || addr.Name != "" || addr.Address != s || len(local) > 64 || !strings.Contains(domain, ".") {
		add("email", "email_invalid", "email is not formatted properly")
	}
}

// checkText rejects over-long values and control characters.
func checkText(param, s string, max int, add addFunc) {
	if n := utf8.RuneCountInString(s); n > max {
		add(param, param+"_invalid", param+" must be at most "+strconv.Itoa(max)+" characters (got "+strconv.Itoa(n)+")")
		return
	}
	if strings.ContainsFunc(s, unicode.IsControl) {
		add(param, param+"_invalid", param+" must not contain control characters")
	}
}

// checkCard validates a card object minimally: required fields, the Luhn
// check, expiry not in the past, a 3-4 digit cvc. Messages never repeat
// the number.
func checkCard(raw json.RawMessage, now time.Time, add addFunc) {
	fields, err := decodeObject(raw)
	if err != nil || isNull(raw) {
		add("card", "card_invalid", "card must be an object")
		return
	}
	var month, year int
	have := map[string]bool{}
	for _, f := range fields {
		param := "card[" + f.key + "]"
		code := "card_" + f.key + "_invalid"
		have[f.key] = true
		switch f.key {
		case "number":
			var v string
			if json.Unmarshal(f.raw, &v) != nil || !luhn(v) {
				add(param, code, "card number is not a valid card number")
			}
		case "cvc":
			v, ok := digits(f.raw)
			if !ok || len(v) < 3 || len(v) > 4 {
				add(param, code, "cvc must be 3 or 4 digits")
			}
		case "expiry_month":
			v, ok := digits(f.raw)
			if month, _ = strconv.Atoi(v); !ok || len(v) > 2 || month < 1 || month > 12 {
				add(param, code, "expiry_month must be 1 to 12")
				month = 0
			}
		case "expiry_year":
			v, ok := digits(f.raw)
			if year, _ = strconv.Atoi(v); !ok || len(v) != 4 {
				add(param, code, "expiry_year must be a four-digit year")
				year = 0
			}
		case "name", "address_line1", "address_line2", "address_city", "address_postcode", "address_state", "address_country":
			var v string
			if isNull(f.raw) || json.Unmarshal(f.raw, &v) != nil {
				add(param, code, f.key+" must be a string")
				continue
			}
			if f.key == "name" && v == "" {
				add(param, code, "card name cannot be blank")
			}
			checkText(param, v, MaxCardFieldLen, add)
		default:
			add(param, "card_"+f.key+"_unknown", f.key+" is not a known card parameter")
		}
	}
	for _, k := range []string{"number", "expiry_month", "expiry_year", "cvc", "name"} {
		if !have[k] {
			add("card["+k+"]", "card_"+k+"_missing", k+" is required")
		}
	}
	if month != 0 && year != 0 && year*12+month < now.Year()*12+int(now.Month()) {
		add("card[expiry_month]", "card_expired", "card has expired")
	}
}

// digits returns a JSON string of digits, or a JSON non-negative integer,
// as its decimal digits.
func digits(raw json.RawMessage) (string, bool) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		var n json.Number
		if json.Unmarshal(raw, &n) != nil {
			return "", false
		}
		s = n.String()
	}
	if s == "" {
		return "", false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return "", false
		}
	}
	return s, true
}

// luhn reports whether s is 12 to 19 digits passing the Luhn check.
func luhn(s string) bool {
	if len(s) < 12 || len(s) > 19 {
		return false
	}
	sum := 0
	for i := range len(s) {
		c := s[len(s)-1-i]
		if c < '0' || c > '9' {
			return false
		}
		d := int(c - '0')
		if i%2 == 1 {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return sum%10 == 0
}

// cardKeys are the field names that mark card data.
var cardKeys = map[string]bool{"card": true, "card_token": true, "number": true, "cvc": true, "expiry_month": true, "expiry_year": true}

func isCardKey(k string) bool {
	k = strings.ToLower(k)
	return cardKeys[k] || strings.HasPrefix(k, "card[") || strings.HasPrefix(k, "card.")
}

// carriesCard reports whether a request carries card data: a card field
// name in the query or anywhere in a JSON or form body, or a run of 12-19
// digits passing the Luhn check anywhere in the URL or the body.
func carriesCard(u *url.URL, body []byte) bool {
	for k := range u.Query() {
		if isCardKey(k) {
			return true
		}
	}
	if hasPAN(u.RawPath+u.Path+"?"+u.RawQuery) || hasPAN(string(body)) {
		return true
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return false
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if dec.Decode(&v) == nil {
		return jsonHasCardKey(v)
	}
	if q, err := url.ParseQuery(string(body)); err == nil {
		for k := range q {
			if isCardKey(k) {
				return true
			}
		}
	}
	return false
}

func jsonHasCardKey(v any) bool {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if isCardKey(k) || jsonHasCardKey(e) {
				return true
			}
		}
	case []any:
		for _, e := range v {
			if jsonHasCardKey(e) {
				return true
			}
		}
	}
	return false
}

// hasPAN reports a maximal run of 12-19 ASCII digits passing the Luhn check.
func hasPAN(s string) bool {
	start := -1
	for i := 0; i <= len(s); i++ {
		if i < len(s) && s[i] >= '0' && s[i] <= '9' {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 && luhn(s[start:i]) {
			return true
		}
		start = -1
	}
	return false
}
