package crm

import (
	"bytes"
	"context"
	"testing"

	"github.com/plugipay-sync/plugipay-sync/sync"
)

// FuzzJSONL feeds arbitrary bytes to the JSON Lines reader, with the same
// stream contract as FuzzCSV.
func FuzzJSONL(f *testing.F) {
	for _, s := range []string{
		`{"id":"u1","email":"a@b.co","name":"Ada","phone":null,"tax":null,"plan":"pro"}` + "\n",
		`{"id":"u1","email":"a@b.co","name":"Ada","phone":null,"tax":null,"plan":"pro"}` + "\n" + `{"id":"u2"` + "\n",
		"\uFEFF" + `{"id":"u1","email":"a@b.co","name":"Ada","phone":null,"tax":null,"plan":"pro"}`,
		`[1,2,3]` + "\n" + `"x"` + "\n" + `null`,
		`{"id":"","email":"a@b.co","name":"\u0000","phone":null,"tax":null,"plan":{"x":1}}`,
		`{"id":1e400,"email":"a@b.co","name":"Ada","phone":null,"tax":null,"plan":"pro"}`,
		"",
		"\n\n\r\n",
		`{"id":"u\xff","email":"a@b.co","name":"Ada","phone":null,"tax":null,"plan":"pro"}`,
	} {
		f.Add([]byte(s))
	}
	src, err := NewJSONL(JSONLOptions{Path: "fuzz.jsonl", Fields: fuzzColumns, MaxLineBytes: 4096})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkStream(t, func(ctx context.Context, yield func(sync.Record, error) bool) {
			src.stream(ctx, bytes.NewReader(data), yield)
		})
	})
}
