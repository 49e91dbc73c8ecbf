package crm

import (
	"fmt"
	"net/mail"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/plugipay-sync/plugipay-sync/sync"
)

// Plugipay's limits on customer fields, in characters (see
// shared/spec/plugipay-api.md, "The customer object"). A record over a
// limit is rejected here, with the line, rather than by the API.
const (
	MaxExternalIDLen = 255
	MaxEmailLen      = 320
	MaxNameLen       = 255
	MaxPhoneLen      = 64
	MaxTaxIDLen      = 64
	MaxMetadataPairs = 50
)

// record builds the Record of one CSV row, or the RecordError listing
// every problem with it.
func (c *columns) record(row []string, headerLen, line int) (sync.Record, *sync.RecordError) {
	ref := "line " + strconv.Itoa(line)
	if len(row) != headerLen {
		rerr := &sync.RecordError{Ref: ref, Reason: fmt.Sprintf("has %d fields, header has %d", len(row), headerLen)}
		if c.externalID < len(row) {
			if id := strings.TrimSpace(row[c.externalID]); utf8.ValidString(id) {
				rerr.ExternalID = id
			}
		}
		return sync.Record{}, rerr
	}

	var problems []string
	field := func(idx int, key string, max int) string {
		if idx < 0 {
			return ""
		}
		v := strings.TrimSpace(row[idx])
		if p := checkValue(v, key, c.names[idx], max); p != "" {
			problems = append(problems, p)
			return ""
		}
		return v
	}
	rec := sync.Record{Ref: ref}
	rec.ExternalID = field(c.externalID, "externalId", MaxExternalIDLen)
	if rec.ExternalID == "" && len(problems) == 0 {
		problems = append(problems, fmt.Sprintf("missing externalId (column %q is empty)", c.names[c.externalID]))
	}
	rec.Email = field(c.email, "email", MaxEmailLen)
	if rec.Email != "" {
		if p := checkEmail(rec.Email); p != "" {
			problems = append(problems, p)
		}
	}
	rec.Name = c.nameOf(row, &problems)
	rec.Phone = field(c.phone, "phone", MaxPhoneLen)
	rec.TaxID = field(c.taxID, "taxId", MaxTaxIDLen)
	for i, key := range c.metaKeys {
		v := field(c.metaIdx[i], c.metaLabels[i], 0)
		if v == "" {
			continue
		}
		if rec.Metadata == nil {
			rec.Metadata = make(map[string]string, len(c.metaKeys))
		}
		rec.Metadata[key] = v
	}
	if len(rec.Metadata) > MaxMetadataPairs {
		problems = append(problems, fmt.Sprintf("has %d metadata values, Plugipay allows at most %d", len(rec.Metadata), MaxMetadataPairs))
	}

	if len(problems) > 0 {
		id := rec.ExternalID
		if id == "" && c.externalID < len(row) {
			// An id that failed its own checks is still worth showing if it
			// prints safely.
			if raw := strings.TrimSpace(row[c.externalID]); utf8.ValidString(raw) && !hasControl(raw) && utf8.RuneCountInString(raw) <= MaxExternalIDLen {
				id = raw
			}
		}
		return sync.Record{}, &sync.RecordError{Ref: ref, ExternalID: id, Reason: strings.Join(problems, "; ")}
	}
	return rec, nil
}

// nameOf builds the name of a CSV row: from one column or from the name
// template. White space is collapsed before the name is checked (always
// for a template, with collapseName for a column), so a newline inside a
// quoted name becomes a space rather than a rejected control character;
// control characters that remain are rejected.
func (c *columns) nameOf(row []string, problems *[]string) string {
	value := func(idx int, collapse bool) (string, bool) {
		v := strings.TrimSpace(row[idx])
		if collapse {
			v = collapseSpace(v)
		}
		if p := checkValue(v, "name", c.names[idx], 0); p != "" {
			*problems = append(*problems, p)
			return "", false
		}
		return v, true
	}
	if c.nameTmpl == nil {
		if c.name < 0 {
			return ""
		}
		v, ok := value(c.name, c.collapseName)
		if n := utf8.RuneCountInString(v); ok && n > MaxNameLen {
			*problems = append(*problems, fmt.Sprintf("name (column %q) is %d characters, Plugipay allows at most %d", c.names[c.name], n, MaxNameLen))
			return ""
		}
		return v
	}
	var b strings.Builder
	for _, p := range c.nameTmpl {
		if p.field < 0 {
			b.WriteString(p.lit)
			continue
		}
		v, _ := value(p.field, true)
		b.WriteString(v)
	}
	// A template always collapses: "{first} {last}" with no first name
	// must not start with a space.
	name := collapseSpace(b.String())
	if n := utf8.RuneCountInString(name); n > MaxNameLen {
		*problems = append(*problems, fmt.Sprintf("name (template) is %d characters, Plugipay allows at most %d", n, MaxNameLen))
		return ""
	}
	return name
}

// collapseSpace replaces every run of white space in v (spaces, tabs,
// newlines) with one space and trims it. A value with nothing to collapse,
// most of them, is returned as it is, without allocating.
func collapseSpace(v string) string {
	space := true // at the start, a space would be leading
	for _, r := range v {
		switch {
		case r == ' ' && !space:
			space = true
		case unicode.IsSpace(r):
			return strings.Join(strings.Fields(v), " ")
		default:
			space = false
		}
	}
	if space && v != "" {
		return strings.Join(strings.Fields(v), " ") // a trailing space
	}
	return v
}

// checkValue checks one trimmed value against the rules every field
// shares: valid UTF-8, no control characters, at most max characters (0:
// no limit). It returns the problem, or "".
func checkValue(v, key, column string, max int) string {
	if !utf8.ValidString(v) {
		return fmt.Sprintf("%s (column %q) is not valid UTF-8", key, column)
	}
	if r, ok := firstControl(v); ok {
		return fmt.Sprintf("%s (column %q) contains control character %U", key, column, r)
	}
	if max > 0 {
		if n := utf8.RuneCountInString(v); n > max {
			return fmt.Sprintf("%s (column %q) is %d characters, Plugipay allows at most %d", key, column, n, max)
		}
	}
	return ""
}

// checkEmail accepts a bare address only: "ada@example.com", not
// "Ada <ada@example.com>". The reason leaves the value out: it is personal
// data and ends up in logs; the line number points at it.
func checkEmail(email string) string {
	addr, err := mail.ParseAddress(email)
	if err != nil {
		return "invalid email: " + strings.TrimPrefix(err.Error(), "mail: ")
	}
	if addr.Name != "" || addr.Address != email {
		return "invalid email: want a bare address like name@example.com"
	}
	return ""
}

func firstControl(s string) (rune, bool) {
	for _, r := range s {
		if unicode.IsControl(r) {
			return r, true
		}
	}
	return 0, false
}

func hasControl(s string) bool {
	_, ok := firstControl(s)
	return ok
}
