package sync

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
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
func ContentHash(r Record) string { return contentHash(r, nil) }

// contentHash is ContentHash of r with only the metadata keys f owns (all
// of them when f is nil). It is on the no-op path of every record, so it
// builds the hashed bytes in a stack buffer and hashes them at once
// instead of writing each field to a hash.Hash (issue 7: a []byte
// conversion per field and a sorted key slice per record were a quarter
// of a no-op scan). The bytes are the same as before, so cached hashes
// stay valid.
func contentHash(r Record, f *fields) string {
	var buf [512]byte
	b := buf[:0]
	b = appendField(b, hashVersion)
	b = appendField(b, r.ExternalID)
	b = appendField(b, r.Email)
	b = appendField(b, r.Name)
	b = appendField(b, r.Phone)
	b = appendField(b, r.TaxID)
	var keyBuf [16]string
	keys := keyBuf[:0]
	for k := range r.Metadata {
		if f == nil || f.owns(k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		b = appendField(b, k)
		b = appendField(b, r.Metadata[k])
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// appendField appends s length-prefixed, so that field boundaries cannot
// be forged by the values ("ab","c" and "a","bc" hash differently).
func appendField(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}
