package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	stdsync "sync"
	"testing"
	"time"

	"github.com/plugipay-sync/plugipay-sync/plugipay/emulator"
)

// writeAudit sits in front of the emulator and keeps, per external id,
// the name each confirmed write left (in the order the emulator executed
// them), and counts writes of one user that overlapped.
type writeAudit struct {
	emu      *emulator.Server
	mu       stdsync.Mutex
	inflight map[string]int
	overlaps int
	names    map[string][]string
}

func (a *writeAudit) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ext := ""
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/api/v1/customers":
		b, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(b))
		var c struct {
			ExternalID string `json:"externalId"`
		}
		_ = json.Unmarshal(b, &c)
		ext = c.ExternalID
	case r.Method == http.MethodPatch && strings.HasPrefix(r.URL.Path, "/api/v1/customers/"):
		c, _ := a.emu.Customer(strings.TrimPrefix(r.URL.Path, "/api/v1/customers/"))
		ext = c.ExternalID
	}
	if ext == "" {
		a.emu.ServeHTTP(w, r)
		return
	}
	a.mu.Lock()
	a.inflight[ext]++
	if a.inflight[ext] > 1 {
		a.overlaps++
	}
	a.mu.Unlock()
	rec := httptest.NewRecorder()
	a.emu.ServeHTTP(rec, r)
	a.mu.Lock()
	a.inflight[ext]--
	if rec.Code/100 == 2 {
		var env struct {
			Data struct {
				Name string `json:"name"`
			} `json:"data"`
		}
		_ = json.Unmarshal(rec.Body.Bytes(), &env)
		a.names[ext] = append(a.names[ext], env.Data.Name)
	}
	a.mu.Unlock()
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

// TestRealtime_OrderingRandomised is issue 17's ordering acceptance end to
// end: the daemon on a 1 s schedule over the real PostgreSQL, with NOTIFY
// and the trigger API on, while users change at random and triggers
// arrive. No user is written by two requests at once, each user's writes
// carry its CRM versions in order, and at the end every customer equals
// its final row. A minute, in make test-e2e. Under CPU load it used to find
// a run writing an older version right after an event wrote a newer one:
// the event's read was noted as of its start (see
// TestRun_LeavesUserToTargetedReadEndingAfterItsStart in sync/).
func TestRealtime_OrderingRandomised(t *testing.T) {
	if testing.Short() {
		t.Skip("a minute of concurrent changes; skipped with -short")
	}
	dsn := testPostgres(t)
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var b [6]byte
	_, _ = rand.Read(b[:])
	table := "plugipay_rt_order_" + hex.EncodeToString(b[:])
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.Exec(strings.ReplaceAll(q, "{t}", table), args...); err != nil {
			t.Error(err)
		}
	}
	exec(`CREATE TABLE {t} (id TEXT PRIMARY KEY, email TEXT, name TEXT, version INT NOT NULL, updated_at TIMESTAMPTZ NOT NULL DEFAULT now())`)
	t.Cleanup(func() { db.Exec("DROP TABLE " + table) })
	const users = 15
	var ids []string
	for i := range users {
		id := fmt.Sprintf("o%02d", i)
		ids = append(ids, id)
		exec(`INSERT INTO {t} (id, email, name, version) VALUES ($1, $2, 'v000001', 1)`, id, id+"@example.com")
	}

	emu := emulator.New(emulator.Options{Keys: map[string]string{testKeyID: testSecret}})
	audit := &writeAudit{emu: emu, inflight: map[string]int{}, names: map[string][]string{}}
	srv := httptest.NewServer(audit)
	defer srv.Close()
	dir := t.TempDir()
	e := &e2e{t: t, emu: emu, url: srv.URL, dir: dir, config: filepath.Join(dir, "config.yaml"), state: filepath.Join(dir, "state.db")}
	e.writeSourceConfig(`  type: sql
  sql:
    driver: postgres
    dsn: "`+dsn+`"
    table: `+table+`
    columns:
      external_id: id
      email: email
      name: name`, "")
	// The schedule every second: runs overlap the events all along.
	replaceInFile(t, e.config, `schedule: "@every 1h"`, `schedule: "@every 1s"`)
	channel := "plugipay_rt_o_" + hex.EncodeToString(b[:])
	appendFile(t, e.config, realtimeYAML+fmt.Sprintf("  postgres:\n    enabled: true\n    channel: %s\n", channel))
	if code, out, errOut := commandInProcess(t, e.config, "notify-sql", "--install"); code != ExitOK {
		t.Fatalf("notify-sql --install: %d %s %s", code, out, errOut)
	}
	metrics, rt, stop := startRealtimeDaemon(t, e.config)
	eventually(t, "the first run", func() bool { return emu.CustomerCount() == users })

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg stdsync.WaitGroup
	for g := range 3 {
		wg.Go(func() { // CRM changes; NOTIFY announces each
			rng := mrand.New(mrand.NewPCG(uint64(g), 99))
			for ctx.Err() == nil {
				id := ids[rng.IntN(users)]
				exec(`UPDATE {t} SET version = version + 1, name = 'v' || lpad((version + 1)::text, 6, '0'), updated_at = now() WHERE id = $1`, id)
				time.Sleep(time.Duration(rng.IntN(20)) * time.Millisecond)
			}
		})
	}
	wg.Go(func() { // triggers for random users
		rng := mrand.New(mrand.NewPCG(7, 99))
		for ctx.Err() == nil {
			r := call(t, "POST", rt+"/v1/sync", triggerToken, idsBody(ids[rng.IntN(users)], ids[rng.IntN(users)]))
			if r.status != http.StatusAccepted {
				t.Errorf("trigger: %d %s", r.status, r.body)
			}
			time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond)
		}
	})
	wg.Wait()

	// Quiet: a last trigger of everyone settles the event path.
	if r := call(t, "POST", rt+"/v1/sync?wait=30s", triggerToken, idsBody(ids...)); r.status != http.StatusOK {
		t.Fatalf("last trigger: %d %s", r.status, r.body)
	}
	runs := metricValue(t, metrics, `plugipay_sync_runs_total{outcome="success"}`)
	stop()

	audit.mu.Lock()
	defer audit.mu.Unlock()
	if audit.overlaps > 0 {
		t.Errorf("%d writes overlapped another write of the same user", audit.overlaps)
	}
	writes := 0
	for _, id := range ids {
		var want string
		if err := db.QueryRow(strings.ReplaceAll(`SELECT name FROM {t} WHERE id = $1`, "{t}", table), id).Scan(&want); err != nil {
			t.Fatal(err)
		}
		if c, _ := emu.CustomerByExternalID(id); c.Name != want {
			t.Errorf("%s: customer holds %q, the CRM %q", id, c.Name, want)
		}
		names := audit.names[id]
		writes += len(names)
		for i := 1; i < len(names); i++ {
			prev, _ := strconv.Atoi(strings.TrimPrefix(names[i-1], "v"))
			cur, _ := strconv.Atoi(strings.TrimPrefix(names[i], "v"))
			if cur < prev {
				t.Errorf("%s: %s written after %s", id, names[i], names[i-1])
				break
			}
		}
	}
	t.Logf("%v runs, %d writes over %d users", runs, writes, users)
	if runs < 10 || writes < 10*users {
		t.Errorf("too little happened to test anything: %v runs, %d writes", runs, writes)
	}
}

func replaceInFile(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("%s lacks %q", path, old)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(b), old, new, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
}
