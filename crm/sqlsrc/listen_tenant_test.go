package sqlsrc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	stdsync "sync"
	"testing"
	"time"

	"github.com/plugipay-sync/plugipay-sync/crm"
)

// The platform trigger against the real PostgreSQL: each change notifies
// {"t": tenant, "id": id}; an update that moves a row to another tenant
// notifies both tenants, one that changes neither id nor tenant notifies
// once; a delete notifies the old tenant. A CatchUp hook replaces the
// catch-up read (it is called on connect, and nothing is read for it).
func TestSource_ListenTenants(t *testing.T) {
	var b backend
	for _, x := range backends(t) {
		if x.driver == Postgres {
			b = x
			break
		}
	}
	b.need(t)
	db, name := table(t, b)
	exec(t, db, "ALTER TABLE %s ADD COLUMN tenant VARCHAR(64)", name)
	src, err := New(Options{Driver: Postgres, DSN: b.dsn, Table: name, Columns: crm.ColumnMap{ExternalID: "id", Email: "email"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.NotifyTenantSQL("c", "tenant; DROP TABLE x"); err == nil {
		t.Fatal("NotifyTenantSQL took a tenant column that is not a plain name")
	}
	var buf [4]byte
	_, _ = rand.Read(buf[:])
	channel := "plugipay_test_t_" + hex.EncodeToString(buf[:])
	if err := src.InstallNotifyTenant(context.Background(), channel, "tenant"); err != nil {
		t.Fatal(err)
	}
	var (
		mu       stdsync.Mutex
		got      []TenantNotification
		catchUps int
	)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- src.Listen(ctx, ListenOptions{Channel: channel,
			Notify: func(payloads []string) {
				mu.Lock()
				defer mu.Unlock()
				for _, p := range payloads {
					var n TenantNotification
					if err := json.Unmarshal([]byte(p), &n); err != nil {
						t.Errorf("payload %q: %v", p, err)
					}
					got = append(got, n)
				}
			},
			CatchUp: func(context.Context) error { mu.Lock(); catchUps++; mu.Unlock(); return nil },
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	wait := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			mu.Lock()
			d := ok()
			mu.Unlock()
			if d {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 20 s (got %v)", what, got)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	wait("connect", func() bool { return catchUps == 1 })
	n := func(tenant, id string) TenantNotification { return TenantNotification{Tenant: tenant, ExternalID: id} }
	for i, c := range []struct {
		name, sql string
		want      []TenantNotification
	}{
		{"insert", "INSERT INTO %s (id, email, tenant, updated_at) VALUES (1, 'a@example.com', 'acme', now())", []TenantNotification{n("acme", "1")}},
		{"update", "UPDATE %s SET email = 'b@example.com' WHERE id = 1", []TenantNotification{n("acme", "1")}},
		{"move to another tenant", "UPDATE %s SET tenant = 'globex' WHERE id = 1", []TenantNotification{n("globex", "1"), n("acme", "1")}},
		{"no tenant", "INSERT INTO %s (id, email, updated_at) VALUES (2, 'c@example.com', now())", nil},
		{"delete", "DELETE FROM %s WHERE id = 1", []TenantNotification{n("globex", "1")}},
	} {
		marker := fmt.Sprint(100 + i)
		mu.Lock()
		got = nil
		mu.Unlock()
		exec(t, db, c.sql, name)
		// A marker row's notification comes after the statement's, in
		// commit order: then the statement's are all in.
		exec(t, db, "INSERT INTO %s (id, email, tenant, updated_at) VALUES ("+marker+", 'm@example.com', 'marker', now())", name)
		wait(c.name, func() bool { return slices.Contains(got, n("marker", marker)) })
		mu.Lock()
		have := slices.DeleteFunc(slices.Clone(got), func(x TenantNotification) bool { return x.Tenant == "marker" })
		mu.Unlock()
		if !slices.Equal(have, c.want) {
			t.Errorf("%s: notified %v, want %v", c.name, have, c.want)
		}
	}
}
