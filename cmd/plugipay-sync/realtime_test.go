package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	stdsync "sync"
	"testing"
	"time"

	"github.com/plugipay-sync/plugipay-sync/plugipay/emulator"
)

const triggerToken = "trg_0123456789abcdef0123456789abcdef"

// startRealtimeDaemon runs the daemon in-process like startDaemon, with
// a realtime listener, and returns the metrics and realtime base URLs.
func startRealtimeDaemon(t *testing.T, config string) (metrics, rt string, stop func() int) {
	t.Helper()
	return startRealtimeDaemonWith(t, config, nil)
}

// startRealtimeDaemonWith is startRealtimeDaemon with setup, if set,
// called on the Main before it runs (a test's hooks).
func startRealtimeDaemonWith(t *testing.T, config string, setup func(*Main)) (metrics, rt string, stop func() int) {
	t.Helper()
	var out, errOut bytes.Buffer
	m := NewMain(&out, &errOut)
	m.LookupEnv = env(map[string]string{"TEST_SECRET": testSecret})
	if setup != nil {
		setup(m)
	}
	addr, rtAddr := make(chan string, 1), make(chan string, 1)
	m.Ready = func(a string) { addr <- a }
	m.RealtimeReady = func(a string) { rtAddr <- a }
	if err := m.ParseFlags([]string{"--config", config}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		code, err := m.Run(ctx)
		if err != nil {
			t.Logf("daemon: %v", err)
		}
		done <- code
	}()
	var once stdsync.Once
	code := -1
	stop = func() int {
		once.Do(func() {
			cancel()
			select {
			case code = <-done:
			case <-time.After(30 * time.Second):
				t.Error("daemon did not stop within 30 s")
			}
		})
		return code
	}
	t.Cleanup(func() { stop() })
	select {
	case a := <-addr:
		metrics = "http://" + a
	case c := <-done:
		done <- c
		t.Fatalf("daemon exited %d:\n%s", c, errOut.String())
	}
	select {
	case a := <-rtAddr:
		rt = "http://" + a
	case <-time.After(10 * time.Second):
		t.Fatal("the realtime listener did not start")
	}
	return metrics, rt, stop
}

// metricValue returns the value of the sample line starting with series
// on the metrics page (0 when absent).
func metricValue(t *testing.T, base, series string) float64 {
	t.Helper()
	for line := range strings.SplitSeq(get(t, base+"/metrics"), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	return 0
}

// eventually polls ok until it holds, failing after a generous bound.
func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30 s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type apiResponse struct {
	status int
	body   []byte
}

func call(t *testing.T, method, url, token string, body []byte) apiResponse {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return apiResponse{resp.StatusCode, b}
}

func idsBody(ids ...string) []byte {
	b, _ := json.Marshal(map[string][]string{"externalIds": ids})
	return b
}

// sqliteCRM creates a users table in a SQLite file under dir with n users.
func sqliteCRM(t *testing.T, dir string, n int) (path string, exec func(string, ...any)) {
	t.Helper()
	path = filepath.Join(dir, "crm.db")
	db, err := sql.Open("sqlite3", path+"?_journal_mode=WAL")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	exec = func(q string, args ...any) {
		t.Helper()
		if _, err := db.Exec(q, args...); err != nil {
			t.Fatal(err)
		}
	}
	exec(`CREATE TABLE users (id TEXT PRIMARY KEY, email TEXT, name TEXT, updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)`)
	for i := 1; i <= n; i++ {
		exec(`INSERT INTO users (id, email, name) VALUES (?, ?, ?)`, fmt.Sprintf("u%02d", i), fmt.Sprintf("user%d@example.com", i), fmt.Sprintf("User %d", i))
	}
	return path, exec
}

const realtimeYAML = `realtime:
  listen: "127.0.0.1:0"
  token: ` + triggerToken + `
  max_ids: 50
  max_body_bytes: 4096
`

// TestRealtime_TriggerAPI runs the daemon over a SQLite CRM with the
// schedule an hour away and drives POST /v1/sync: bad tokens 401, an
// oversized body 413, ?wait reports each user's exact outcome, a burst of
// 1,000 triggers for 10 users writes each changed user once, POST
// /v1/runs runs the full sync.
func TestRealtime_TriggerAPI(t *testing.T) {
	e := newE2E(t, filepath.Join(t.TempDir(), "unused.csv"), emulator.Options{})
	crmPath, exec := sqliteCRM(t, e.dir, 10)
	e.writeSourceConfig(`  type: sql
  sql:
    driver: sqlite
    dsn: `+crmPath+`
    table: users
    columns:
      external_id: id
      email: email
      name: name`, "")
	appendFile(t, e.config, realtimeYAML)
	metrics, rt, _ := startRealtimeDaemon(t, e.config)
	eventually(t, "the first run", func() bool {
		return metricValue(t, metrics, `plugipay_sync_runs_total{outcome="success"}`) == 1
	})
	if n := e.emu.CustomerCount(); n != 10 {
		t.Fatalf("%d customers after the first run, want 10", n)
	}

	t.Run("Unauthorized", func(t *testing.T) {
		var bodies []string
		for _, token := range []string{"", "wrong-token-0123456789", triggerToken + "x", strings.ToUpper(triggerToken)} {
			r := call(t, "POST", rt+"/v1/sync", token, idsBody("u01"))
			if r.status != http.StatusUnauthorized {
				t.Fatalf("token %q: %d %s", token, r.status, r.body)
			}
			bodies = append(bodies, string(r.body))
		}
		for _, b := range bodies[1:] {
			if b != bodies[0] {
				t.Errorf("401 bodies differ (%q, %q): they must not say what was wrong", bodies[0], b)
			}
		}
	})

	t.Run("TooLarge", func(t *testing.T) {
		big := idsBody(strings.Repeat("x", 5000))
		if r := call(t, "POST", rt+"/v1/sync", triggerToken, big); r.status != http.StatusRequestEntityTooLarge {
			t.Errorf("oversized body: %d %s", r.status, r.body)
		}
		var many []string
		for i := range 51 {
			many = append(many, fmt.Sprint(i))
		}
		if r := call(t, "POST", rt+"/v1/sync", triggerToken, idsBody(many...)); r.status != http.StatusRequestEntityTooLarge {
			t.Errorf("51 ids: %d %s", r.status, r.body)
		}
		if r := call(t, "POST", rt+"/v1/sync", triggerToken, []byte(`{"externalIds": "u01"}`)); r.status != http.StatusBadRequest {
			t.Errorf("malformed body: %d %s", r.status, r.body)
		}
	})

	t.Run("WaitOutcomes", func(t *testing.T) {
		exec(`UPDATE users SET email = 'changed1@example.com', updated_at = CURRENT_TIMESTAMP WHERE id = 'u01'`)
		exec(`INSERT INTO users (id, email, name) VALUES ('u99', 'new@example.com', 'New User')`)
		exec(`INSERT INTO users (id, email, name) VALUES ('bad', 'not-an-email', 'Bad Row')`)
		r := call(t, "POST", rt+"/v1/sync?wait=30s", triggerToken, idsBody("u01", "u02", "u99", "bad", "nobody"))
		if r.status != http.StatusOK {
			t.Fatalf("%d %s", r.status, r.body)
		}
		var got struct {
			ID      string `json:"id"`
			Status  string `json:"status"`
			Results []struct {
				ExternalID string `json:"external_id"`
				Outcome    string `json:"outcome"`
				CustomerID string `json:"customer_id"`
				Reason     string `json:"reason"`
			} `json:"results"`
		}
		if err := json.Unmarshal(r.body, &got); err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"u01": "updated", "u02": "unchanged", "u99": "created", "bad": "rejected", "nobody": "not_found"}
		if got.Status != "done" || len(got.Results) != len(want) || got.ID == "" {
			t.Fatalf("response %s", r.body)
		}
		for _, res := range got.Results {
			if res.Outcome != want[res.ExternalID] {
				t.Errorf("%s: %s (%s), want %s", res.ExternalID, res.Outcome, res.Reason, want[res.ExternalID])
			}
			if res.ExternalID == "bad" && !strings.Contains(res.Reason, "email") {
				t.Errorf("rejected without the reason: %q", res.Reason)
			}
		}
		if c, _ := e.emu.CustomerByExternalID("u01"); c.Email != "changed1@example.com" {
			t.Errorf("u01 email = %q", c.Email)
		}
		if r := call(t, "GET", rt+"/v1/sync/"+got.ID, triggerToken, nil); r.status != http.StatusOK || !strings.Contains(string(r.body), `"done"`) {
			t.Errorf("GET /v1/sync/%s: %d %s", got.ID, r.status, r.body)
		}
	})

	t.Run("Burst", func(t *testing.T) {
		for i := 2; i <= 4; i++ {
			exec(`UPDATE users SET name = ?, updated_at = CURRENT_TIMESTAMP WHERE id = ?`, fmt.Sprintf("Renamed %d", i), fmt.Sprintf("u%02d", i))
		}
		patches := e.emu.RequestCount(http.MethodPatch, "/api/v1/customers/{id}")
		posts := e.emu.RequestCount(http.MethodPost, "/api/v1/customers")
		var wg stdsync.WaitGroup
		for g := range 10 {
			wg.Go(func() {
				for i := range 100 {
					r := call(t, "POST", rt+"/v1/sync", triggerToken, idsBody(fmt.Sprintf("u%02d", (g+i)%10+1)))
					if r.status != http.StatusAccepted {
						t.Errorf("trigger: %d %s", r.status, r.body)
						return
					}
				}
			})
		}
		wg.Wait()
		// A last trigger waits behind the burst: the queue is one batch
		// at a time, oldest first.
		var all []string
		for i := 1; i <= 10; i++ {
			all = append(all, fmt.Sprintf("u%02d", i))
		}
		if r := call(t, "POST", rt+"/v1/sync?wait=30s", triggerToken, idsBody(all...)); r.status != http.StatusOK {
			t.Fatalf("%d %s", r.status, r.body)
		}
		if d := e.emu.RequestCount(http.MethodPatch, "/api/v1/customers/{id}") - patches; d != 3 {
			t.Errorf("%d PATCHes for 1,000 triggers of 10 users, 3 of them changed; want 3", d)
		}
		if d := e.emu.RequestCount(http.MethodPost, "/api/v1/customers") - posts; d != 0 {
			t.Errorf("%d creates", d)
		}
		if c, _ := e.emu.CustomerByExternalID("u03"); c.Name != "Renamed 3" {
			t.Errorf("u03 name = %q", c.Name)
		}
		if v := metricValue(t, metrics, `plugipay_sync_events_received_total{source="api"}`); v < 1010 {
			t.Errorf("events received = %v", v)
		}
		if v := metricValue(t, metrics, `plugipay_sync_events_coalesced_total{source="api"}`); v == 0 {
			t.Error("no event coalesced")
		}
		if v := metricValue(t, metrics, `plugipay_sync_event_latency_seconds_count{source="api"}`); v != 5 {
			t.Errorf("latency observations = %v, want one per confirmed write (u01, u99, the 3 renamed)", v)
		}
	})

	t.Run("Runs", func(t *testing.T) {
		if r := call(t, "POST", rt+"/v1/runs", triggerToken, nil); r.status != http.StatusAccepted {
			t.Fatalf("%d %s", r.status, r.body)
		}
		eventually(t, "the requested run", func() bool {
			return metricValue(t, metrics, `plugipay_sync_runs_total{outcome="partial"}`)+metricValue(t, metrics, `plugipay_sync_runs_total{outcome="success"}`) == 2
		})
	})

	body := get(t, metrics+"/metrics")
	for _, want := range []string{
		`plugipay_sync_trigger_requests_total{endpoint="sync",outcome="unauthorized"} 4`,
		`plugipay_sync_trigger_requests_total{endpoint="sync",outcome="too_large"} 2`,
		`plugipay_sync_events_dropped_total{reason="queue_full",source="api"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if regexp.MustCompile(`@example\.com|User \d`).MatchString(body) {
		t.Error("/metrics carries an email or a name")
	}
}

// A file source cannot read a user by id: the trigger API says so and
// points at POST /v1/runs.
func TestRealtime_FileSourceUnsupported(t *testing.T) {
	dir := t.TempDir()
	e := newE2E(t, writeUsers(t, filepath.Join(dir, "u.csv"), 3), emulator.Options{})
	appendFile(t, e.config, realtimeYAML)
	_, rt, _ := startRealtimeDaemon(t, e.config)
	r := call(t, "POST", rt+"/v1/sync", triggerToken, idsBody("1"))
	if r.status != http.StatusConflict || !strings.Contains(string(r.body), "/v1/runs") {
		t.Fatalf("%d %s", r.status, r.body)
	}
}

func appendFile(t *testing.T, path, text string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}
