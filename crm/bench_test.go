package crm_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/plugipay-sync/plugipay-sync/crm"
)

// BenchmarkCSV reads a generated file of 100,000 users with every field
// and three metadata columns mapped, and reports rows/s.
func BenchmarkCSV(b *testing.B) {
	const rows = 100_000
	path := filepath.Join(b.TempDir(), "users.csv")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "id,email,full_name,phone,npwp,plan,city,signup_source")
	for i := range rows {
		fmt.Fprintf(w, "usr_%06d,user.%d@example.co.id,\"Đặng Thị Hương %d\",+62 812-%04d-%04d,12.345.678.9-012.%03d,pro,Jakarta,organic\n",
			i, i, i, i%10000, i%9999, i%1000)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	f.Close()
	src, err := crm.NewCSV(crm.CSVOptions{Path: path, Columns: sampleColumns})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		for _, err := range src.Records(context.Background()) {
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		if n != rows {
			b.Fatalf("read %d rows, want %d", n, rows)
		}
	}
	b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}
