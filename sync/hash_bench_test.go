package sync

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"maps"
	"slices"
	"testing"
)

// streamedHash is ContentHash as it was before issue 7 made it build its
// bytes in a buffer: every cached hash in a state DB was made this way, so
// the two must agree exactly.
func streamedHash(r Record) string {
	h := sha256.New()
	write := func(h hash.Hash, s string) {
		var n [binary.MaxVarintLen64]byte
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
		h.Write([]byte(s))
	}
	write(h, hashVersion)
	write(h, r.ExternalID)
	write(h, r.Email)
	write(h, r.Name)
	write(h, r.Phone)
	write(h, r.TaxID)
	for _, k := range slices.Sorted(maps.Keys(r.Metadata)) {
		write(h, k)
		write(h, r.Metadata[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}

func hashRecords() []Record {
	long := string(make([]byte, 600)) // longer than the stack buffer
	many := map[string]string{}
	for i := range 40 { // more keys than the stack key buffer
		many[fmt.Sprintf("k%02d", i)] = fmt.Sprint(i)
	}
	return []Record{
		{},
		{ExternalID: "usr_1", Email: "a@example.com", Name: "Đặng Thị Hương", Phone: "+62 812", TaxID: "12.345",
			Metadata: map[string]string{"plan": "pro", "city": "Jakarta", "signupSource": "ads"}},
		{ExternalID: "usr_2", Name: long, Metadata: many},
		{ExternalID: "usr_3", Metadata: map[string]string{}},
	}
}

func TestContentHash_SameBytesAsBefore(t *testing.T) {
	for i, r := range hashRecords() {
		if got, want := ContentHash(r), streamedHash(r); got != want {
			t.Errorf("record %d: ContentHash = %s, want %s", i, got, want)
		}
	}
}

func TestFieldsHash_IsHashOfProjection(t *testing.T) {
	for _, m := range []*Managed{nil, {Name: true, MetadataKeys: []string{"plan", "k07"}}, {Email: true, Phone: true, TaxID: true}} {
		f := newFields(m)
		for i, r := range hashRecords() {
			if got, want := f.hash(r), streamedHash(f.project(r)); got != want {
				t.Errorf("managed %+v, record %d: hash = %s, want %s", m, i, got, want)
			}
		}
	}
}

// BenchmarkFieldsHash is the hash of one record on the no-op path.
func BenchmarkFieldsHash(b *testing.B) {
	r := hashRecords()[1]
	f := newFields(nil)
	b.ReportAllocs()
	for b.Loop() {
		_ = f.hash(r)
	}
}
