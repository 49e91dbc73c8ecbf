package emulator

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestStatePersistence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.jsonl")
	e := newEnv(t, Options{StatePath: path})
	a := e.create(`{"externalId":"a","metadata":{"k":"v"}}`)
	for range 20 {
		e.create(`{}`)
	}
	r := e.do(req{method: "PATCH", target: "/api/v1/customers/" + a, body: `{"name":"Ada","metadata":null}`, idem: "idem_patch"})
	expect(t, r, 200, "")
	expect(t, e.do(req{method: "POST", target: "/api/v1/customers", body: `{"externalId":"a"}`, idem: "idem_conflict"}), 409, "conflict")
	want := e.srv.Customers()

	// No Close: as after a SIGKILL, only what was written before each
	// response exists.
	e2 := newEnv(t, Options{StatePath: path})
	if got := e2.srv.Customers(); !reflect.DeepEqual(got, want) {
		t.Fatalf("reloaded customers differ:\n%+v\n%+v", got, want)
	}
	// Idempotent answers survive, successes and 4xx alike.
	r2 := e2.do(req{method: "PATCH", target: "/api/v1/customers/" + a, body: `{"name":"Ada","metadata":null}`, idem: "idem_patch"})
	if r2.status != 200 || string(r2.env.Data) != string(r.env.Data) {
		t.Fatalf("replay after reload: %s", r2.raw)
	}
	expect(t, e2.do(req{method: "POST", target: "/api/v1/customers", body: `{"externalId":"a"}`, idem: "idem_conflict"}), 409, "conflict")
	if e2.srv.Replays() != 2 || e2.srv.WritesExecuted() != 0 {
		t.Fatalf("replays %d writes %d, want 2 and 0", e2.srv.Replays(), e2.srv.WritesExecuted())
	}
	// The externalId index survives.
	expect(t, e2.do(req{method: "POST", target: "/api/v1/customers", body: `{"externalId":"a"}`, idem: newIdem()}), 409, "conflict")
	// A customer created after the reload, at the same clock, sorts last.
	n := e2.create(`{}`)
	ids, _ := e2.walk("limit=100&order=asc")
	if len(ids) != 22 || ids[21] != n {
		t.Fatalf("new customer not last after reload: %d ids", len(ids))
	}
}

func TestStateCompactionAndTornTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.jsonl")
	e := newEnv(t, Options{StatePath: path})
	id := e.create(`{}`)
	for i := range 5 {
		e.clock.Advance(time.Second)
		r := e.do(req{method: "PATCH", target: "/api/v1/customers/" + id, body: `{"name":"n` + string(rune('0'+i)) + `"}`, idem: newIdem()})
		expect(t, r, 200, "")
	}
	// A torn final line, as a crash mid-write would leave.
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(`{"customer":{"id":"cus_`); err != nil {
		t.Fatal(err)
	}
	f.Close()

	e2 := newEnv(t, Options{StatePath: path})
	if c, ok := e2.srv.Customer(id); !ok || c.Name != "n4" {
		t.Fatalf("reloaded %+v", c)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// One customer line plus six idempotency entries.
	if lines := bytes.Count(b, []byte("\n")); lines != 7 {
		t.Fatalf("compacted log has %d lines, want 7:\n%s", lines, b)
	}
}

func TestStateCorrupt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.jsonl")
	if err := os.WriteFile(path, []byte("not json\n{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Open(Options{StatePath: path})
	if err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("err = %v, want a line 1 error", err)
	}
}
