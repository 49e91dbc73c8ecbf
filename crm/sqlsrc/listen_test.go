package sqlsrc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	stdsync "sync"
	"testing"
	"time"

	"github.com/plugipay-sync/plugipay-sync/crm"
)

// Listen against the real PostgreSQL: the installed trigger notifies
// inserts, updates (old and new id when the id changes) and deletes; a
// listener whose connection is killed (pg_terminate_backend) reconnects
// and its catch-up hands over the change made while it was down.
func TestSource_Listen(t *testing.T) {
	var b backend
	for _, x := range backends(t) {
		if x.driver == Postgres {
			b = x
			break
		}
	}
	b.need(t)
	db, name := table(t, b)
	var buf [4]byte
	_, _ = rand.Read(buf[:])
	app := "plugipay_listen_" + hex.EncodeToString(buf[:])
	sep := "?"
	if strings.Contains(b.dsn, "?") {
		sep = "&"
	}
	b.dsn += sep + "application_name=" + app // the listener's connection, to kill it
	src, err := New(Options{Driver: Postgres, DSN: b.dsn, Table: name, Overlap: time.Second,
		Columns: crm.ColumnMap{ExternalID: "id", Email: "email"}})
	if err != nil {
		t.Fatal(err)
	}
	channel := "plugipay_test_" + hex.EncodeToString(buf[:])
	if err := src.InstallNotify(context.Background(), channel); err != nil {
		t.Fatal(err)
	}
	if err := src.InstallNotify(context.Background(), channel); err != nil {
		t.Fatalf("installing twice: %v", err)
	}
	var (
		mu    stdsync.Mutex
		got   []string
		conns int
	)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- src.Listen(ctx, ListenOptions{Channel: channel, Heartbeat: 200 * time.Millisecond,
			Notify: func(ids []string) {
				mu.Lock()
				got = append(got, ids...)
				mu.Unlock()
			},
			OnConnect: func() { mu.Lock(); conns++; mu.Unlock() },
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			mu.Lock()
			done := ok()
			mu.Unlock()
			if done {
				return
			}
			if time.Now().After(deadline) {
				mu.Lock()
				defer mu.Unlock()
				t.Fatalf("%s: not within 20 s (ids %v, connects %d)", what, got, conns)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	has := func(id string) func() bool { return func() bool { return slices.Contains(got, id) } }
	waitFor("connect", func() bool { return conns == 1 })
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.Exec(fmt.Sprintf(q, name), args...); err != nil {
			t.Fatal(err)
		}
	}
	exec("INSERT INTO %s (id, email, updated_at) VALUES (1, 'a@example.com', now())")
	waitFor("insert", has("1"))
	exec("UPDATE %s SET id = 2 WHERE id = 1")
	waitFor("id change (new)", has("2"))
	mu.Lock()
	got = nil
	mu.Unlock()
	exec("DELETE FROM %s WHERE id = 2")
	waitFor("delete", has("2"))
	exec("INSERT INTO %s (id, email, updated_at) VALUES (3, 'c@example.com', now())")
	waitFor("second insert", has("3"))

	// Kill the listener's connection, change a row while it is down.
	var killed int
	if err := db.QueryRow("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1", app).Scan(&killed); err != nil {
		t.Fatal(err)
	}
	if killed == 0 {
		t.Fatal("no listener connection to kill")
	}
	mu.Lock()
	got = nil
	mu.Unlock()
	exec("UPDATE %s SET email = 'changed@example.com', updated_at = now() WHERE id = 3")
	waitFor("reconnect", func() bool { return conns >= 2 })
	waitFor("the change made while down", has("3"))
}
