package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	stdsync "sync"

	"github.com/plugipay-sync/plugipay-sync/crm"
	"github.com/plugipay-sync/plugipay-sync/state"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

// Seeds of the generated CRM data: the same sizes always give the same
// files, so two runs of the suite compare like with like.
const (
	seed1 = 20261121
	seed2 = 7
)

// columns maps the generated CSV, every field and three metadata keys, as
// the demo config maps the sample export.
var columns = crm.ColumnMap{
	ExternalID: "id", Email: "email", Name: "full_name", Phone: "phone", TaxID: "npwp",
	Metadata: map[string]string{"plan": "plan", "city": "city", "signupSource": "signup_source"},
}

var (
	firstNames = []string{"Budi", "Sri", "Agus", "Dewi", "Wayan", "Nyoman", "Tigor", "Maruli", "Hendra", "Liliana",
		"Muhammad", "Siti", "Aisyah", "Asep", "Euis", "Nguyễn", "Đặng", "Trần", "Zoë", "Jürgen", "Ana", "Kevin"}
	lastNames = []string{"Santoso", "Wibowo", "Simanjuntak", "Siregar", "Halim", "Tanuwidjaja", "Rahman", "Alatas",
		"Sutisna", "Permana", "Thị Hương", "Văn Đức", "Müller", "García", "Artawan", "Kusumawati"}
	plans   = []string{"free", "starter", "pro", "enterprise"}
	cities  = []string{"Jakarta", "Surabaya", "Bandung", "Medan", "Denpasar", "Makassar", "Yogyakarta", "Semarang"}
	sources = []string{"organic", "referral", "ads", "partner", "event"}
)

// changed reports whether user i is one of the 1 in changeEvery users the
// incremental scenario changes.
func changed(i, changeEvery int) bool { return changeEvery > 0 && i%changeEvery == changeEvery/2 }

// externalID is user i's id in the CRM.
func externalID(i int) string { return fmt.Sprintf("usr_%07d", i) }

// writeCSV writes users [from, from+n) to path. With changeEvery > 0 the
// users for which changed is true get a different name: the incremental
// scenario's export. Each row's values come from a generator seeded with
// the row number, so a user has the same values in every file.
func writeCSV(path string, from, n, changeEvery int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	w := csv.NewWriter(bw)
	if err := w.Write([]string{"id", "email", "full_name", "phone", "npwp", "plan", "city", "signup_source"}); err != nil {
		return err
	}
	row := make([]string, 8)
	var pcg rand.PCG
	r := rand.New(&pcg)
	for i := from; i < from+n; i++ {
		pcg.Seed(seed1, seed2+uint64(i))
		first, last := firstNames[r.IntN(len(firstNames))], lastNames[r.IntN(len(lastNames))]
		row[0] = externalID(i)
		row[1] = "user" + strconv.Itoa(i) + "@example.co.id"
		row[2] = first + " " + last
		if changed(i, changeEvery) {
			row[2] += " (renamed)"
		}
		row[3] = ""
		if r.IntN(4) != 0 {
			row[3] = fmt.Sprintf("+62 812-%04d-%04d", r.IntN(10000), r.IntN(10000))
		}
		row[4] = ""
		if r.IntN(5) == 0 {
			row[4] = fmt.Sprintf("%02d.%03d.%03d.%d-%03d.%03d", r.IntN(100), r.IntN(1000), r.IntN(1000), r.IntN(10), r.IntN(1000), r.IntN(1000))
		}
		row[5] = plans[r.IntN(len(plans))]
		row[6] = cities[r.IntN(len(cities))]
		row[7] = sources[r.IntN(len(sources))]
		if err := w.Write(row); err != nil {
			return err
		}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return f.Close()
}

// newSource is the CSV source of path with the suite's columns.
func newSource(path string) (*crm.CSV, error) {
	return crm.NewCSV(crm.CSVOptions{Path: path, Columns: columns})
}

// readRecords returns the good records of path for which keep is true.
func readRecords(ctx context.Context, path string, keep func(sync.Record) bool) ([]sync.Record, error) {
	src, err := newSource(path)
	if err != nil {
		return nil, err
	}
	var out []sync.Record
	for rec, err := range src.Records(ctx) {
		if err != nil {
			return nil, fmt.Errorf("generated data: %w", err)
		}
		if keep(rec) {
			out = append(out, rec)
		}
	}
	return out, nil
}

// warmCache stores a mapping for every record of csvPath with the hash of
// its content, as a run that synced the file would have left it: the
// customer id is taken from ids when present, else a placeholder (such a
// user is unchanged and never costs an API call, so its id is never read).
// It returns how many mappings it stored.
func warmCache(ctx context.Context, db *state.DB, csvPath string, ids map[string]string) (int, error) {
	src, err := newSource(csvPath)
	if err != nil {
		return 0, err
	}
	const batch = 5000
	ms := make([]sync.Mapping, 0, batch)
	n := 0
	flush := func() error {
		if err := db.PutMappings(ctx, ms); err != nil {
			return err
		}
		n += len(ms)
		ms = ms[:0]
		return nil
	}
	for rec, err := range src.Records(ctx) {
		if err != nil {
			return n, fmt.Errorf("generated data: %w", err)
		}
		id, ok := ids[rec.ExternalID]
		if !ok {
			id = "cus_bench" + rec.ExternalID
		}
		ms = append(ms, sync.Mapping{ExternalID: rec.ExternalID, CustomerID: id, Hash: sync.ContentHash(rec)})
		if len(ms) == batch {
			if err := flush(); err != nil {
				return n, err
			}
		}
	}
	return n, flush()
}

// seedCustomers creates a customer for every record through dst with
// concurrency workers and returns externalId -> customer id. It is how the
// suite puts customers in the emulator: through its public API, like any
// other tool would.
func seedCustomers(ctx context.Context, dst sync.Destination, recs []sync.Record, workers int) (map[string]string, error) {
	ids := make(map[string]string, len(recs))
	var mu stdsync.Mutex
	var firstErr error
	next := make(chan sync.Record)
	var wg stdsync.WaitGroup
	for range workers {
		wg.Go(func() {
			for rec := range next {
				c, err := dst.CreateCustomer(ctx, sync.Customer{ExternalID: rec.ExternalID, Email: rec.Email, Name: rec.Name,
					Phone: rec.Phone, TaxID: rec.TaxID, Metadata: rec.Metadata}, sync.NewIdempotencyKey())
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("seed %s: %w", rec.ExternalID, err)
				}
				ids[rec.ExternalID] = c.ID
				mu.Unlock()
			}
		})
	}
	for _, rec := range recs {
		next <- rec
	}
	close(next)
	wg.Wait()
	return ids, firstErr
}
