package state_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/plugipay-sync/plugipay-sync/state"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

// TestPostgresPool_StoresStayApart: many stores on one connection keep
// their own rows. (The postgres_shared backend runs every store test on a
// shared pool whose search path holds no store, so a query the
// qualification missed fails there.)
func TestPostgresPool_StoresStayApart(t *testing.T) {
	ctx := context.Background()
	p, err := state.OpenPostgresPool(testPostgresDSN(), 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	const n = 5
	dbs := make([]*state.DB, n)
	for i := range dbs {
		if dbs[i], err = p.Open(ctx, newTestSchema(t)); err != nil {
			t.Fatal(err)
		}
		for j := range i + 1 {
			m := sync.Mapping{ExternalID: fmt.Sprintf("u%d", j), CustomerID: fmt.Sprintf("cus_%d_%d", i, j), Hash: "h"}
			if err := dbs[i].PutMapping(ctx, m); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, db := range dbs {
		got, err := db.MappingCount(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got != int64(i+1) {
			t.Errorf("store %d holds %d mappings, want %d", i, got, i+1)
		}
		ms, err := db.Mappings(ctx, []string{"u0"})
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("cus_%d_0", i); ms["u0"].CustomerID != want {
			t.Errorf("store %d: u0 is %q, want %q", i, ms["u0"].CustomerID, want)
		}
	}
	if s := p.Stats(); s.OpenConnections > 1 {
		t.Errorf("%d connections open, want at most 1", s.OpenConnections)
	}
	// Closing a store leaves the pool to the others.
	if err := dbs[0].Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := dbs[1].MappingCount(ctx); err != nil {
		t.Errorf("after another store closed: %v", err)
	}
}

// TestPostgresPool_Invalid: a pool without connections and a DSN that
// does not parse are refused, without quoting the DSN.
func TestPostgresPool_Invalid(t *testing.T) {
	for _, tc := range []struct {
		name, dsn string
		conns     int
	}{
		{"NoConnections", testPostgresDSN(), 0},
		{"BadDSN", "postgres://u:secret@[::1", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := state.OpenPostgresPool(tc.dsn, tc.conns, 1)
			if err == nil {
				p.Close()
				t.Fatal("opened")
			}
			if want := "secret"; strings.Contains(err.Error(), want) {
				t.Errorf("error quotes the DSN: %v", err)
			}
		})
	}
}
