package sync

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"maps"
	"slices"
)

// hashVersion is mixed into every content hash. Bump it when the meaning of
// a field changes, and every cached hash stops matching: the next run then
// compares each user with the destination once more.
const hashVersion = "v1"

// ContentHash returns a stable hash of the fields a record syncs. Two
// records hash alike exactly when the destination would hold the same
// values for them; metadata key order and an empty versus nil map do not
// matter.
func ContentHash(r Record) string {
	h := sha256.New()
	writeField(h, hashVersion)
	writeField(h, r.ExternalID)
	writeField(h, r.Email)
	writeField(h, r.Name)
	writeField(h, r.Phone)
	writeField(h, r.TaxID)
	keys := slices.Sorted(maps.Keys(r.Metadata))
	for _, k := range keys {
		writeField(h, k)
		writeField(h, r.Metadata[k])
	}
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0]))
}

// writeField writes s length-prefixed, so that field boundaries cannot be
// forged by the values ("ab","c" and "a","bc" hash differently).
func writeField(h hash.Hash, s string) {
	var n [binary.MaxVarintLen64]byte
	h.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
	h.Write([]byte(s))
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}
