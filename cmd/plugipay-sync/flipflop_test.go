package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	stdsync "sync"
	"testing"

	"github.com/plugipay-sync/plugipay-sync/plugipay/emulator"
)

// timeoutFirstAttempt executes the first attempt of every write (each new
// Idempotency-Key) in the emulator but never answers it, so the client
// times out on a write that succeeded; later attempts pass through.
func timeoutFirstAttempt(next http.Handler) http.Handler {
	var mu stdsync.Mutex
	seen := map[string]bool{}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get("Idempotency-Key")
		mu.Lock()
		first := key != "" && !seen[key]
		seen[key] = true
		mu.Unlock()
		if !first {
			next.ServeHTTP(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		next.ServeHTTP(httptest.NewRecorder(), r) // executed...
		<-r.Context().Done()                      // ...and never answered
	})
}

// TestFlipFlopNeverReplaysStale changes a user's name A -> B -> A in three
// runs while every write first times out after executing. Each intended
// write has its own key, so the last write is not answered with the
// first one's stale replay: the customer ends as A.
func TestFlipFlopNeverReplaysStale(t *testing.T) {
	emu := emulator.New(emulator.Options{Keys: map[string]string{testKeyID: testSecret}})
	srv := httptest.NewServer(timeoutFirstAttempt(emu))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	e := &e2e{t: t, emu: emu, url: srv.URL, dir: dir,
		state: filepath.Join(dir, "state.db"), config: filepath.Join(dir, "config.yaml")}
	csvPath := filepath.Join(dir, "users.csv")
	e.writeConfig(csvPath, "@every 1h")
	cfg, _ := os.ReadFile(e.config)
	os.WriteFile(e.config, []byte(strings.Replace(string(cfg), "  max_attempts: 2\n", "  max_attempts: 3\n  timeout: 300ms\n", 1)), 0o600)

	// A create, then A -> B -> A as three PATCHes: a key derived from
	// content would make the last PATCH replay the first one's answer and
	// leave the customer as B.
	for i, name := range []string{"Ayu", "Ayu Lestari", "Budi Santoso", "Ayu Lestari"} {
		row := "id,email,full_name,phone,npwp,plan,city,signup_source\nusr_1,ayu@example.co.id," + name + ",,,pro,Bandung,web\n"
		if err := os.WriteFile(csvPath, []byte(row), 0o600); err != nil {
			t.Fatal(err)
		}
		code, out := e.once()
		if code != ExitOK {
			t.Fatalf("write %d (%s): exit %d\n%s", i+1, name, code, out)
		}
		c, ok := e.emu.CustomerByExternalID("usr_1")
		if !ok || c.Name != name {
			t.Fatalf("after write %d the customer is %+v, want name %q", i+1, c, name)
		}
	}
	if e.emu.CustomerCount() != 1 {
		t.Fatalf("%d customers, want 1", e.emu.CustomerCount())
	}
	if e.emu.Replays() != 4 {
		t.Errorf("%d idempotent replays, want 4 (one per timed-out write)", e.emu.Replays())
	}
}
