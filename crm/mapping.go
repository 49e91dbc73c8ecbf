package crm

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/nyaruka/phonenumbers"

	"github.com/plugipay-sync/plugipay-sync/sync"
)

// Normalize says how source values are cleaned before they are checked,
// hashed and sent. Each step can be switched off; DefaultNormalize turns
// on all but the phone step, which needs a region.
type Normalize struct {
	// TrimSpace trims leading and trailing white space from every value.
	TrimSpace bool
	// LowerEmailDomain lower-cases the part of the email after the last
	// "@" (the local part is case-sensitive by RFC 5321 and left alone).
	LowerEmailDomain bool
	// CollapseNameSpace replaces every run of white space inside the name
	// with one space.
	CollapseNameSpace bool
	// PhoneRegion, when set (an ISO 3166 region such as "ID" or "US"),
	// turns phones into E.164 (+628123456789), reading numbers without a
	// country code as numbers of that region. A phone that is not a valid
	// number is rejected with the record.
	PhoneRegion string
	// DropEmptyMetadata leaves metadata keys whose value is empty out of
	// the record instead of sending "".
	DropEmptyMetadata bool
}

// DefaultNormalize is the normalisation applied unless configured.
func DefaultNormalize() Normalize {
	return Normalize{TrimSpace: true, LowerEmailDomain: true, CollapseNameSpace: true, DropEmptyMetadata: true}
}

// Validate checks the phone region.
func (n Normalize) Validate() error {
	if n.PhoneRegion == "" {
		return nil
	}
	if !phonenumbers.GetSupportedRegions()[strings.ToUpper(n.PhoneRegion)] {
		return fmt.Errorf("phone region %q is not a supported ISO 3166 region code (e.g. ID, US, GB)", n.PhoneRegion)
	}
	return nil
}

// email lower-cases the domain of an address.
func (n Normalize) email(v string) string {
	if !n.LowerEmailDomain {
		return v
	}
	if at := strings.LastIndexByte(v, '@'); at >= 0 {
		return v[:at+1] + strings.ToLower(v[at+1:])
	}
	return v
}

// name collapses internal white space.
func (n Normalize) name(v string) string {
	if !n.CollapseNameSpace {
		return v
	}
	return collapseSpace(v)
}

// phone formats v as E.164, or returns the problem.
func (n Normalize) phone(v, column string) (string, string) {
	if n.PhoneRegion == "" || v == "" {
		return v, ""
	}
	num, err := phonenumbers.Parse(v, strings.ToUpper(n.PhoneRegion))
	if err != nil || !phonenumbers.IsValidNumber(num) {
		return "", fmt.Sprintf("phone (column %q) is not a valid phone number for region %s", column, strings.ToUpper(n.PhoneRegion))
	}
	return phonenumbers.Format(num, phonenumbers.E164), ""
}

// Mapper turns the values of one source row into a sync.Record: it applies
// the field mapping, the normalisation and Plugipay's limits. Every source
// adapter but CSV (which predates it, and applies the same rules to names
// and templates in columns.nameOf) builds records through it, so the
// checks and reasons are the same whatever the source.
//
// The adapter asks Fields for the source fields to read, finds each in
// the source (a column, a JSON key, a CRM property; a missing one is a
// configuration error), and calls Record with the values in that order.
type Mapper struct {
	fields                                []string
	externalID, email, name, phone, taxID int // index into fields, -1 unmapped
	tmpl                                  []tmplPart
	metaKeys                              []string // sorted
	metaIdx                               []int
	norm                                  Normalize
	prefix                                string // config key of the mapping, e.g. "crm.sql.columns"
}

// tmplPart is a literal, or (field >= 0) the value of a field.
type tmplPart struct {
	lit   string
	field int
}

// NewMapper validates m. prefix is the mapping's config key, used in
// error messages ("crm.sql.columns").
func NewMapper(m ColumnMap, norm Normalize, prefix string) (*Mapper, error) {
	if err := norm.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", prefix, err)
	}
	mp := &Mapper{norm: norm, prefix: prefix, name: -1}
	add := func(f string) int {
		f = strings.TrimSpace(f)
		if f == "" {
			return -1
		}
		if i := slices.Index(mp.fields, f); i >= 0 {
			return i
		}
		mp.fields = append(mp.fields, f)
		return len(mp.fields) - 1
	}
	if strings.TrimSpace(m.ExternalID) == "" {
		return nil, fmt.Errorf("%s.external_id: required", prefix)
	}
	mp.externalID = add(m.ExternalID)
	mp.email = add(m.Email)
	switch {
	case m.Name != "" && m.NameTemplate != "":
		return nil, fmt.Errorf("%s: set name or name_template, not both", prefix)
	case m.NameTemplate != "":
		parts, err := parseTemplate(m.NameTemplate)
		if err != nil {
			return nil, fmt.Errorf("%s.name_template: %w", prefix, err)
		}
		for _, p := range parts {
			if p.field >= 0 {
				p.field = add(p.lit)
				p.lit = ""
			}
			mp.tmpl = append(mp.tmpl, p)
		}
	default:
		mp.name = add(m.Name)
	}
	mp.phone = add(m.Phone)
	mp.taxID = add(m.TaxID)
	mp.metaKeys = slices.Sorted(maps.Keys(m.Metadata))
	if len(mp.metaKeys) > MaxMetadataPairs {
		return nil, fmt.Errorf("%s.metadata: %d keys, Plugipay allows at most %d", prefix, len(mp.metaKeys), MaxMetadataPairs)
	}
	for _, k := range mp.metaKeys {
		if k == "" {
			return nil, fmt.Errorf("%s.metadata: empty metadata key", prefix)
		}
		i := add(m.Metadata[k])
		if i < 0 {
			return nil, fmt.Errorf("%s.metadata.%s: empty source field", prefix, k)
		}
		mp.metaIdx = append(mp.metaIdx, i)
	}
	return mp, nil
}

// parseTemplate splits "{first_name} {last_name}" into literals and field
// references; a part with field 0 carries the field name in lit.
func parseTemplate(s string) ([]tmplPart, error) {
	var parts []tmplPart
	for s != "" {
		open := strings.IndexByte(s, '{')
		if open < 0 {
			parts = append(parts, tmplPart{lit: s, field: -1})
			break
		}
		if open > 0 {
			parts = append(parts, tmplPart{lit: s[:open], field: -1})
		}
		end := strings.IndexByte(s[open:], '}')
		if end < 0 {
			return nil, fmt.Errorf("unclosed { in %q", s)
		}
		name := strings.TrimSpace(s[open+1 : open+end])
		if name == "" {
			return nil, errors.New("empty {} in the template")
		}
		parts = append(parts, tmplPart{lit: name, field: 0})
		s = s[open+end+1:]
	}
	if !slices.ContainsFunc(parts, func(p tmplPart) bool { return p.field >= 0 }) {
		return nil, errors.New(`no {field} in the template; write e.g. "{first_name} {last_name}"`)
	}
	return parts, nil
}

// MapperVersion names the checks and the normalisation of Record. It is
// part of the print seed of a source that maps with a Mapper (the SQL
// source): bump it when either changes, so that every row is validated
// again on the next run.
const MapperVersion = "mapper-v1"

// Fields returns the source fields the mapping reads, in the order Record
// wants their values. The caller must not change it.
func (mp *Mapper) Fields() []string { return mp.fields }

// ExternalIDField is the index in Fields of the field the external id is
// read from (a record's ExternalID is that value, trimmed).
func (mp *Mapper) ExternalIDField() int { return mp.externalID }

// Check reports the first mapped field that the source does not have,
// as a configuration error naming it. has looks a field up.
func (mp *Mapper) Check(has func(field string) bool, where string) error {
	for _, f := range mp.fields {
		if !has(f) {
			return fmt.Errorf("%s: field %q is mapped but %s has no such field", mp.prefix, f, where)
		}
	}
	return nil
}

// Record builds the record of one source row from vals (in Fields order;
// a missing value is ""), or the RecordError listing every problem.
func (mp *Mapper) Record(vals []string, ref string) (sync.Record, *sync.RecordError) {
	var problems []string
	// collapse: white space runs inside the value become one space before
	// it is checked (names: a newline or tab is not a control character to
	// reject once collapsing is on).
	getValue := func(idx int, key string, max int, collapse bool) string {
		if idx < 0 {
			return ""
		}
		v := vals[idx]
		if mp.norm.TrimSpace {
			v = strings.TrimSpace(v)
		}
		if collapse {
			v = collapseSpace(v)
		}
		if p := checkValue(v, key, mp.fields[idx], max); p != "" {
			problems = append(problems, p)
			return ""
		}
		return v
	}
	get := func(idx int, key string, max int) string { return getValue(idx, key, max, false) }
	rec := sync.Record{Ref: ref}
	rec.ExternalID = get(mp.externalID, "externalId", MaxExternalIDLen)
	if rec.ExternalID == "" && len(problems) == 0 {
		problems = append(problems, fmt.Sprintf("missing externalId (field %q is empty)", mp.fields[mp.externalID]))
	}
	if rec.Email = mp.norm.email(get(mp.email, "email", MaxEmailLen)); rec.Email != "" {
		if p := checkEmail(rec.Email); p != "" {
			problems = append(problems, p)
		}
	}
	if mp.tmpl != nil {
		var b strings.Builder
		for _, p := range mp.tmpl {
			if p.field < 0 {
				b.WriteString(p.lit)
				continue
			}
			b.WriteString(getValue(p.field, "name", 0, true))
		}
		// A template always collapses: "{first} {last}" with no first
		// name must not start with a space.
		rec.Name = collapseSpace(b.String())
		if n := utf8.RuneCountInString(rec.Name); n > MaxNameLen {
			problems = append(problems, fmt.Sprintf("name (template) is %d characters, Plugipay allows at most %d", n, MaxNameLen))
		}
	} else if mp.name >= 0 {
		rec.Name = mp.norm.name(getValue(mp.name, "name", 0, mp.norm.CollapseNameSpace))
		if n := utf8.RuneCountInString(rec.Name); n > MaxNameLen {
			problems = append(problems, fmt.Sprintf("name (column %q) is %d characters, Plugipay allows at most %d", mp.fields[mp.name], n, MaxNameLen))
		}
	}
	if phone := get(mp.phone, "phone", 0); phone != "" {
		v, p := mp.norm.phone(phone, mp.fields[mp.phone])
		switch {
		case p != "":
			problems = append(problems, p)
		case utf8.RuneCountInString(v) > MaxPhoneLen:
			problems = append(problems, fmt.Sprintf("phone (column %q) is %d characters, Plugipay allows at most %d", mp.fields[mp.phone], utf8.RuneCountInString(v), MaxPhoneLen))
		default:
			rec.Phone = v
		}
	}
	rec.TaxID = get(mp.taxID, "taxId", MaxTaxIDLen)
	for i, key := range mp.metaKeys {
		v := get(mp.metaIdx[i], "metadata."+key, 0)
		if v == "" && mp.norm.DropEmptyMetadata {
			continue
		}
		if rec.Metadata == nil {
			rec.Metadata = make(map[string]string, len(mp.metaKeys))
		}
		rec.Metadata[key] = v
	}
	if len(problems) > 0 {
		id := rec.ExternalID
		if id == "" {
			if raw := strings.TrimSpace(vals[mp.externalID]); utf8.ValidString(raw) && !hasControl(raw) && utf8.RuneCountInString(raw) <= MaxExternalIDLen {
				id = raw
			}
		}
		return sync.Record{}, &sync.RecordError{Ref: ref, ExternalID: id, Reason: strings.Join(problems, "; ")}
	}
	return rec, nil
}

// Apply normalises a record another builder made (the CSV source): email
// domain, name white space and phone (read from phoneColumn, for the
// message). It returns the problem, or "".
func (n Normalize) Apply(rec *sync.Record, phoneColumn string) string {
	rec.Email = n.email(rec.Email)
	rec.Name = n.name(rec.Name)
	v, p := n.phone(rec.Phone, phoneColumn)
	if p != "" {
		return p
	}
	rec.Phone = v
	return ""
}
