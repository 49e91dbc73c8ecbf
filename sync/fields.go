package sync

import (
	"maps"
	"slices"
)

// Managed says which customer fields the sync owns. Fields it does not own
// are never sent and never compared, so values other tools set survive;
// metadata keys it does not own are kept when it rewrites the metadata map
// (issue 4, field ownership).
type Managed struct {
	Email, Name, Phone, TaxID bool
	// MetadataKeys are the metadata keys the sync owns.
	MetadataKeys []string
}

// AllFields manages every field and every metadata key; it is what a nil
// Options.Managed means.
var AllFields = Managed{Email: true, Name: true, Phone: true, TaxID: true}

// fields is a Managed ready for lookups. allMetadata is set for the nil
// Options.Managed: every metadata key is owned.
type fields struct {
	Managed
	allMetadata bool
	keys        map[string]bool
}

func newFields(m *Managed) fields {
	if m == nil {
		return fields{Managed: AllFields, allMetadata: true}
	}
	f := fields{Managed: *m, keys: map[string]bool{}}
	for _, k := range m.MetadataKeys {
		f.keys[k] = true
	}
	return f
}

// withKey returns f owning key too.
func (f fields) withKey(key string) fields {
	if f.allMetadata || f.keys[key] {
		return f
	}
	g := f
	g.keys = maps.Clone(f.keys)
	g.keys[key] = true
	g.MetadataKeys = append(slices.Clone(f.MetadataKeys), key)
	return g
}

// within returns f reduced to the fields the destination has: a field it
// lacks is neither sent nor compared, so it never shows as a change.
func (f fields) within(c Capabilities) fields {
	g := f
	g.Phone = f.Phone && c.Phone
	g.TaxID = f.TaxID && c.TaxID
	if !c.Metadata {
		g.allMetadata, g.keys, g.MetadataKeys = false, map[string]bool{}, nil
	}
	return g
}

func (f fields) owns(key string) bool { return f.allMetadata || f.keys[key] }

// owned returns the owned keys of m, nil when there are none.
func (f fields) owned(m map[string]string) map[string]string {
	var out map[string]string
	for k, v := range m {
		if f.owns(k) {
			if out == nil {
				out = map[string]string{}
			}
			out[k] = v
		}
	}
	return out
}

// project returns r reduced to the managed fields: what the sync compares
// and hashes.
func (f fields) project(r Record) Record {
	p := f.scalars(r)
	p.Ref, p.Metadata = r.Ref, f.owned(r.Metadata)
	return p
}

// scalars returns the external id and the managed string fields of r.
func (f fields) scalars(r Record) Record {
	p := Record{ExternalID: r.ExternalID}
	if f.Email {
		p.Email = r.Email
	}
	if f.Name {
		p.Name = r.Name
	}
	if f.Phone {
		p.Phone = r.Phone
	}
	if f.TaxID {
		p.TaxID = r.TaxID
	}
	return p
}

// hash is ContentHash of the managed part of r, that is of f.project(r),
// without building the projected record.
func (f fields) hash(r Record) string {
	p := f.scalars(r)
	p.Metadata = r.Metadata
	if f.allMetadata {
		return contentHash(p, nil)
	}
	return contentHash(p, &f)
}

// diff returns the patch that makes cur hold want's managed fields, merging
// want's owned metadata into cur's metadata so foreign keys are preserved.
// It is empty when cur already holds them.
func (f fields) diff(cur Customer, want Record) Patch {
	var p Patch
	set := func(on bool, have, w string, dst **string) {
		if on && have != w {
			*dst = &w
		}
	}
	set(f.Email, cur.Email, want.Email, &p.Email)
	set(f.Name, cur.Name, want.Name, &p.Name)
	set(f.Phone, cur.Phone, want.Phone, &p.Phone)
	set(f.TaxID, cur.TaxID, want.TaxID, &p.TaxID)
	wantOwned := f.owned(want.Metadata)
	if !maps.Equal(nonNil(f.owned(cur.Metadata)), nonNil(wantOwned)) {
		merged := map[string]string{}
		for k, v := range cur.Metadata {
			if !f.owns(k) {
				merged[k] = v
			}
		}
		maps.Copy(merged, wantOwned)
		p.Metadata, p.SetMetadata = merged, true
		for k := range cur.Metadata {
			if _, kept := merged[k]; !kept {
				p.MetadataUnset = append(p.MetadataUnset, k)
			}
		}
		slices.Sort(p.MetadataUnset)
	}
	return p
}

// fromCustomer is the record a destination customer holds.
func fromCustomer(c Customer) Record {
	return Record{ExternalID: c.ExternalID, Email: c.Email, Name: c.Name, Phone: c.Phone, TaxID: c.TaxID, Metadata: c.Metadata}
}

// toCreate is the customer to create for r: its managed fields only.
func (f fields) toCreate(r Record) Customer {
	p := f.project(r)
	return Customer{ExternalID: p.ExternalID, Email: p.Email, Name: p.Name, Phone: p.Phone, TaxID: p.TaxID, Metadata: p.Metadata}
}
