package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/plugipay-sync/plugipay-sync/plugipay/emulator"
)

// badInputGood are the good users every bad-input case carries beside its
// bad input: none of them may be lost.
var badInputGood = []string{"good_1", "good_2", "good_3"}

const badHeader = "id,email,full_name,phone,npwp,plan,city,signup_source\n"

func goodRows() string {
	var b strings.Builder
	for i, id := range badInputGood {
		fmt.Fprintf(&b, "%s,g%d@example.co.id,Good %d,,,pro,Bandung,web\n", id, i, i)
	}
	return b.String()
}

// badEnv is one bad-input case's world: a CSV, a config, an emulator.
type badEnv struct {
	t       *testing.T
	dir     string
	csv     string
	state   string
	config  string
	emu     *emulator.Server
	url     string // the base URL the config names
	columns string // the crm.csv.columns block
	extra   string // appended to the config
	secret  string // ${TEST_SECRET}'s value; "" leaves it unset
	sched   string
	saved   string // what a setup replaced, for its fix to put back
}

func newBadEnv(t *testing.T) *badEnv {
	t.Helper()
	dir := t.TempDir()
	emu := emulator.New(emulator.Options{Keys: map[string]string{testKeyID: testSecret}})
	srv := httptest.NewServer(emu)
	t.Cleanup(srv.Close)
	b := &badEnv{t: t, dir: dir, csv: filepath.Join(dir, "users.csv"), state: filepath.Join(dir, "state.db"),
		config: filepath.Join(dir, "config.yaml"), emu: emu, url: srv.URL, secret: testSecret, sched: "@every 1h",
		columns: "{external_id: id, email: email, name: full_name, metadata: {plan: plan, city: city}}"}
	b.writeCSV(badHeader + goodRows())
	return b
}

func (b *badEnv) writeCSV(s string) {
	b.t.Helper()
	if err := os.WriteFile(b.csv, []byte(s), 0o600); err != nil {
		b.t.Fatal(err)
	}
}

func (b *badEnv) writeConfig() {
	b.t.Helper()
	cfg := fmt.Sprintf(`schedule: %q
listen: ""
state:
  path: %s
plugipay:
  base_url: %s
  key_id: %s
  secret: ${TEST_SECRET}
  reads_per_second: 0
  writes_per_second: 0
  timeout: 2s
  max_attempts: 2
crm:
  type: csv
  csv:
    path: %s
    columns: %s
sync:
  concurrency: 2
  retry_min: 1ms
  retry_max: 1ms
log:
  level: warn
%s`, b.sched, b.state, b.url, testKeyID, b.csv, b.columns, b.extra)
	if err := os.WriteFile(b.config, []byte(cfg), 0o600); err != nil {
		b.t.Fatal(err)
	}
}

// once writes the config and runs plugipay-sync --once in-process,
// returning its exit code and everything it printed (summary, error and
// logs), which must never carry the secret.
func (b *badEnv) once() (int, string) {
	b.t.Helper()
	b.writeConfig()
	var out, errOut bytes.Buffer
	m := NewMain(&out, &errOut)
	vars := map[string]string{}
	if b.secret != "" {
		vars["TEST_SECRET"] = b.secret
	}
	m.LookupEnv = env(vars)
	if err := m.ParseFlags([]string{"--config", b.config, "--once"}); err != nil {
		b.t.Fatal(err)
	}
	code, err := m.Run(context.Background())
	if err != nil {
		fmt.Fprintf(&out, "error: %v\n", err)
	}
	all := out.String() + errOut.String()
	if strings.Contains(all, testSecret) {
		b.t.Fatalf("the secret appeared in the output:\n%s", all)
	}
	return code, all
}

// assertGoodSynced checks that every good user exists exactly once, with
// its CRM fields.
func (b *badEnv) assertGoodSynced() {
	b.t.Helper()
	for i, id := range badInputGood {
		c, ok := b.emu.CustomerByExternalID(id)
		if !ok {
			b.t.Errorf("good user %s was not synced", id)
			continue
		}
		if c.Email != fmt.Sprintf("g%d@example.co.id", i) || c.Name != fmt.Sprintf("Good %d", i) {
			b.t.Errorf("good user %s synced as %+v", id, c)
		}
	}
	seen := map[string]bool{}
	for _, c := range b.emu.Customers() {
		if seen[c.ExternalID] {
			b.t.Errorf("duplicate customer for %q", c.ExternalID)
		}
		seen[c.ExternalID] = true
	}
}

// plugipayAnswering is a Plugipay stand-in answering every request with
// status, content type and body, as a broken deployment or a proxy in
// front of Plugipay would.
func plugipayAnswering(t *testing.T, status int, contentType, body string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.WriteHeader(status)
		fmt.Fprint(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// badCase is one row of the bad-input matrix: setup makes the input bad;
// the run must exit with code and print every string of want (the
// summary, the error, and the log line of a rejected record, which is
// what the user sees of it). When fix is set the
// case stopped the run: fix repairs the input and a second run must sync
// the good users. Either way nothing else may be lost.
type badCase struct {
	name  string
	setup func(*badEnv)
	code  int
	want  []string
	fix   func(*badEnv)
	check func(*badEnv)
}

func badInputCases() []badCase {
	bad := func(rows string) func(*badEnv) {
		return func(b *badEnv) { b.writeCSV(badHeader + goodRows() + rows) }
	}
	restoreCSV := func(b *badEnv) { b.writeCSV(badHeader + goodRows()) }
	// restoreURL points the config back at the emulator, whose URL the
	// setup kept in extra.
	restoreURL := func(b *badEnv) { b.url = b.saved }
	return []badCase{
		// The CSV file.
		{name: "CSV/UnbalancedQuote", setup: bad(`bad_q,"q@example.co.id,Q,,,pro,Bandung,web` + "\n"), code: ExitPartial,
			want: []string{"created 3", "rejected 1", `"ref":"line 5"`, `"reason":"CSV syntax error at line 5, column 44: extraneous or missing \" in quoted-field"`}},
		{name: "CSV/WrongColumnCount", setup: func(b *badEnv) {
			b.writeCSV(badHeader + "bad_cols,c@example.co.id\n" + goodRows() + "bad_more,m@example.co.id,M,,,pro,Bandung,web,extra\n")
		}, code: ExitPartial, want: []string{"created 3", "rejected 2", `"external_id":"bad_cols","reason":"has 2 fields, header has 8"`,
			`"external_id":"bad_more","reason":"has 9 fields, header has 8"`}},
		{name: "CSV/BOM", setup: func(b *badEnv) { b.writeCSV("\uFEFF" + badHeader + goodRows()) }, code: ExitOK,
			want: []string{"read 3  created 3  updated 0  unchanged 0  recovered 0  rejected 0  failed 0"}},
		{name: "CSV/NonUTF8", setup: bad("bad_utf8,u@example.co.id,Na\xffme,,,pro,Bandung,web\n"), code: ExitPartial,
			want: []string{"created 3", "rejected 1", `"external_id":"bad_utf8","reason":"name (column \"full_name\") is not valid UTF-8"`}},
		{name: "CSV/Empty", setup: func(b *badEnv) { b.writeCSV("") }, fix: restoreCSV, code: ExitTransient,
			want: []string{"run 1: failed", "read 0  created 0", "users.csv: empty file, want a header row"}},
		{name: "CSV/HeaderOnly", setup: func(b *badEnv) { b.writeCSV(badHeader) }, fix: restoreCSV, code: ExitOK,
			want: []string{"run 1: success", "read 0  created 0"}},

		// Records.
		{name: "Record/EmptyExternalID", setup: bad(",e@example.co.id,Empty Id,,,pro,Bandung,web\n"), code: ExitPartial,
			want: []string{"created 3", "rejected 1", `"ref":"line 5","external_id":"","reason":"missing externalId (column \"id\" is empty)"`}},
		{name: "Record/DuplicateExternalID", setup: bad("dup_1,d1@example.co.id,Dup One,,,pro,Bandung,web\ndup_1,d2@example.co.id,Dup Two,,,pro,Bandung,web\n"),
			code: ExitPartial, want: []string{"created 3", "rejected 2",
				`"ref":"line 5","external_id":"dup_1","reason":"duplicate externalId (also at line 6); none of its rows is synced until the source has one"`,
				`"ref":"line 6","external_id":"dup_1","reason":"duplicate externalId (also at line 5); none of its rows is synced until the source has one"`},
			check: func(b *badEnv) {
				if _, ok := b.emu.CustomerByExternalID("dup_1"); ok {
					b.t.Error("a duplicated externalId was synced")
				}
			}},
		{name: "Record/InvalidEmail", setup: bad("bad_email,not-an-email,Bad Email,,,pro,Bandung,web\n"), code: ExitPartial,
			want: []string{"created 3", "rejected 1", `"external_id":"bad_email","reason":"invalid email: missing '@' or angle-addr"`}},
		{name: "Record/LongName", setup: bad("bad_name,n@example.co.id," + strings.Repeat("a", 10<<10) + ",,,pro,Bandung,web\n"), code: ExitPartial,
			want: []string{"created 3", "rejected 1", `"external_id":"bad_name","reason":"name (column \"full_name\") is 10240 characters, Plugipay allows at most 255"`}},
		{name: "Record/SixtyMetadataKeys", setup: func(b *badEnv) {
			var cols, header, full, empty []string
			for i := range 60 {
				cols = append(cols, fmt.Sprintf("k%02d: m%02d", i, i))
				header = append(header, fmt.Sprintf("m%02d", i))
				full = append(full, "v")
				empty = append(empty, "")
			}
			b.columns = "{external_id: id, email: email, name: full_name, metadata: {" + strings.Join(cols, ", ") + "}}"
			var csv strings.Builder
			csv.WriteString("id,email,full_name," + strings.Join(header, ",") + "\n")
			for i, id := range badInputGood {
				fmt.Fprintf(&csv, "%s,g%d@example.co.id,Good %d,%s\n", id, i, i, strings.Join(empty, ","))
			}
			fmt.Fprintf(&csv, "bad_meta,m@example.co.id,Meta,%s\n", strings.Join(full, ","))
			b.writeCSV(csv.String())
		}, code: ExitPartial, want: []string{"created 3", "rejected 1", `"external_id":"bad_meta","reason":"has 60 metadata values, Plugipay allows at most 50"`}},
		{name: "Record/ControlCharacters", setup: bad("bad_ctl,c@example.co.id,Bad\x07Name\x1b[31m,,,pro,Bandung,web\n"), code: ExitPartial,
			want: []string{"created 3", "rejected 1", `"external_id":"bad_ctl","reason":"name (column \"full_name\") contains control character U+0007"`}},

		// The config and the state DB: the run stops before reading
		// anything; once fixed, the next run syncs every good user.
		{name: "Config/UnknownKey", setup: func(b *badEnv) { b.extra = "sync_typo: 1\n" }, fix: func(b *badEnv) { b.extra = "" },
			code: ExitConfig, want: []string{"config.yaml: parse: yaml: unmarshal errors:\n  line 24: field sync_typo not found in type main.Config"}},
		{name: "Config/MissingSecret", setup: func(b *badEnv) { b.secret = "" }, fix: func(b *badEnv) { b.secret = testSecret },
			code: ExitConfig, want: []string{"config.yaml: environment variable TEST_SECRET is not set (referenced as ${TEST_SECRET}); export it or give a default as ${TEST_SECRET:-value}"}},
		{name: "Config/BadCron", setup: func(b *badEnv) { b.sched = "*/5 * * *" }, fix: func(b *badEnv) { b.sched = "@every 1h" },
			code: ExitConfig, want: []string{`schedule: not a cron expression (expected exactly 5 fields, found 4: [*/5 * * *]); use five fields like "*/5 * * * *" or "@every 5m" (got "*/5 * * *")`}},
		{name: "Config/NonURLBaseURL", setup: func(b *badEnv) { b.url, b.saved = "plugipay.com/api", b.url }, fix: func(b *badEnv) { b.url = b.saved },
			code: ExitConfig, want: []string{`plugipay.base_url: must be an http(s) URL with a host, e.g. https://plugipay.com (got "plugipay.com/api")`}},
		{name: "Config/UnreachableHost", setup: func(b *badEnv) { b.url, b.saved = "http://127.0.0.1:1", b.url }, fix: func(b *badEnv) { b.url = b.saved },
			code: ExitTransient, want: []string{`error: prove the credentials: the destination is unreachable or failing: network_error: Get "http://127.0.0.1:1/api/v1/customers?[query omitted]": dial tcp 127.0.0.1:1: connect: connection refused`}},
		{name: "Config/StateDirNotWritable", setup: func(b *badEnv) {
			// A path under a regular file: no directory can be made
			// there, even by root, whom chmod 0500 would not stop.
			blocker := filepath.Join(b.dir, "blocker")
			if err := os.WriteFile(blocker, nil, 0o600); err != nil {
				b.t.Fatal(err)
			}
			b.saved, b.state = b.state, filepath.Join(blocker, "sub", "state.db")
		}, fix: func(b *badEnv) { b.state = b.saved },
			code: ExitFailed, want: []string{"state.path ", "blocker/sub/state.db: mkdir ", "/blocker: not a directory"}},
		{name: "Config/CorruptStateDB", setup: func(b *badEnv) {
			if err := os.WriteFile(b.state, bytes.Repeat([]byte("not a database "), 400), 0o600); err != nil {
				b.t.Fatal(err)
			}
		}, fix: func(b *badEnv) {
			got, err := os.ReadFile(b.state)
			if err != nil || !bytes.Equal(got, bytes.Repeat([]byte("not a database "), 400)) {
				b.t.Errorf("the corrupt state file was changed (%v); it must be left for the operator", err)
			}
			os.Remove(b.state)
		}, code: ExitFailed, want: []string{"state.path: state: open ", "file is not a database"}},
		{name: "Config/NewerSchemaStateDB", setup: func(b *badEnv) {
			code, out := b.once()
			if code != ExitOK {
				b.t.Fatalf("setup run exit %d:\n%s", code, out)
			}
			db := openRaw(b.t, b.state)
			defer db.Close()
			if _, err := db.Exec(`INSERT INTO migrations (name, applied_at) VALUES ('999_from_the_future.sql', 0)`); err != nil {
				b.t.Fatal(err)
			}
			b.writeCSV(badHeader + goodRows() + "new_1,n@example.co.id,New,,,pro,Bandung,web\n")
		}, fix: func(b *badEnv) {
			if _, ok := b.emu.CustomerByExternalID("new_1"); ok {
				b.t.Error("a binary older than the state DB synced a user")
			}
			b.t.Skip("the fix is upgrading the binary")
		}, code: ExitFailed, want: []string{"state.path: state: open ", "state.db: state DB schema version 999 is newer than this binary supports (", "); upgrade plugipay-sync"}},

		// Plugipay, or what stands in front of it, answering wrongly:
		// the run fails without writing and the next one against the real
		// API syncs everything.
		{name: "Plugipay/401", setup: func(b *badEnv) {
			b.url, b.saved = plugipayAnswering(b.t, 401, "application/json", `{"error":{"code":"invalid_key","message":"unknown API key id"},"meta":{"requestId":"req_401"}}`), b.url
		}, fix: restoreURL, code: ExitConfig, want: []string{"error: prove the credentials: 401 invalid_key: unknown API key id (request req_401)"}},
		{name: "Plugipay/403", setup: func(b *badEnv) {
			b.url, b.saved = plugipayAnswering(b.t, 403, "application/json", `{"error":{"code":"forbidden","message":"key lacks customers:read"},"meta":{"requestId":"req_403"}}`), b.url
		}, fix: restoreURL, code: ExitConfig, want: []string{"error: prove the credentials: 403 forbidden: key lacks customers:read (request req_403)"}},
		{name: "Plugipay/NonJSON", setup: func(b *badEnv) {
			b.url, b.saved = plugipayAnswering(b.t, 200, "text/plain", "OK"), b.url
		}, fix: restoreURL, code: ExitTransient, want: []string{`error: prove the credentials: the destination is unreachable or failing: 200 invalid_response: response body is not a JSON envelope (HTTP 200): "OK"`}},
		{name: "Plugipay/ErrorEnvelopeWith200", setup: func(b *badEnv) {
			b.url, b.saved = plugipayAnswering(b.t, 200, "application/json", `{"data":null,"error":{"code":"internal_error","message":"database unavailable"},"meta":{"requestId":"req_200"}}`), b.url
		}, fix: restoreURL, code: ExitTransient, want: []string{"error: prove the credentials: the destination is unreachable or failing: 200 internal_error: database unavailable (request req_200)"}},
		{name: "Plugipay/ProxyHTMLPage", setup: func(b *badEnv) {
			b.url, b.saved = plugipayAnswering(b.t, 502, "text/html", "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>"), b.url
		}, fix: restoreURL, code: ExitTransient, want: []string{`error: prove the credentials: the destination is unreachable or failing: 502 invalid_response: response body is not a JSON envelope (HTTP 502): "<html><head><title>502 Bad Gateway</title>`}},
	}
}

// TestBadInput is issue 8 item 3: every kind of bad input gives the user
// one exact error, and loses nothing else.
func TestBadInput(t *testing.T) {
	for _, tc := range badInputCases() {
		t.Run(tc.name, func(t *testing.T) {
			b := newBadEnv(t)
			tc.setup(b)
			code, out := b.once()
			if code != tc.code {
				t.Errorf("exit %d, want %d", code, tc.code)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q", w)
				}
			}
			if t.Failed() {
				t.Fatalf("output:\n%s", out)
			}
			if tc.check != nil {
				tc.check(b)
			}
			if tc.fix == nil {
				b.assertGoodSynced()
				return
			}
			if n := b.emu.CustomerCount(); n != 0 && !strings.HasPrefix(tc.name, "Config/NewerSchema") {
				t.Errorf("the stopped run left %d customers", n)
			}
			tc.fix(b)
			if code, out := b.once(); code != ExitOK {
				t.Fatalf("after the fix: exit %d:\n%s", code, out)
			}
			b.assertGoodSynced()
		})
	}
}
