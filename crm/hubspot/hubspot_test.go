package hubspot_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	stdsync "sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/plugipay-sync/plugipay-sync/crm"
	"github.com/plugipay-sync/plugipay-sync/crm/hubspot"
	"github.com/plugipay-sync/plugipay-sync/crm/hubspot/fake"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

const token = "pat-na1-test"

var t0 = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

// clock is a fake clock the fake server reads and the adapter's Sleep
// advances, recording each wait.
type clock struct {
	mu     stdsync.Mutex
	now    time.Time
	sleeps []time.Duration
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Sleep(_ context.Context, d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sleeps = append(c.sleeps, d)
	c.now = c.now.Add(d)
	return nil
}

type memWatermarks struct {
	mu stdsync.Mutex
	m  map[string]crm.Watermark
}

func (w *memWatermarks) Watermark(_ context.Context, k string) (crm.Watermark, bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	v, ok := w.m[k]
	return v, ok, nil
}

func (w *memWatermarks) SetWatermark(_ context.Context, k string, v crm.Watermark) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil {
		w.m = map[string]crm.Watermark{}
	}
	w.m[k] = v
	return nil
}

type env struct {
	fake  *fake.Server
	clock *clock
	wm    *memWatermarks
	url   string
}

func newEnv(t *testing.T, opts fake.Options) *env {
	t.Helper()
	c := &clock{now: t0.Add(30 * 24 * time.Hour)}
	opts.Token = token
	opts.Now = c.Now
	f := fake.New(opts)
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return &env{fake: f, clock: c, wm: &memWatermarks{}, url: srv.URL}
}

func (e *env) source(t *testing.T, mod func(*hubspot.Options)) *hubspot.Source {
	t.Helper()
	o := hubspot.Options{
		BaseURL: e.url, Token: token, PathPrefix: "/crm/objects/2026-09",
		Fields: crm.ColumnMap{ExternalID: "id", Email: "email", NameTemplate: "{firstname} {lastname}", Phone: "phone",
			Metadata: map[string]string{"country": "country"}},
		Normalize: crm.DefaultNormalize(), Watermarks: e.wm, Sleep: e.clock.Sleep, Now: e.clock.Now,
		Incremental: true, Lookback: time.Minute, FullScanEvery: 100,
	}
	if mod != nil {
		mod(&o)
	}
	src, err := hubspot.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func put(f *fake.Server, id int, updated time.Time) {
	f.Put(fake.Contact{ID: id, Updated: updated, Props: map[string]string{
		"email": fmt.Sprintf("c%d@Example.com", id), "firstname": "C", "lastname": fmt.Sprint(id)}})
}

// readAll returns the records by external id (counting repeats), the
// deleted ids and the fatal error.
func readAll(src sync.Source) (got map[string]int, deleted []string, bad []string, err error) {
	got = map[string]int{}
	for rec, e := range src.Records(context.Background()) {
		var re *sync.RecordError
		switch {
		case errors.As(e, &re):
			bad = append(bad, re.Error())
		case e != nil:
			return got, deleted, bad, e
		case rec.Deleted:
			deleted = append(deleted, rec.ExternalID)
		default:
			got[rec.ExternalID]++
		}
	}
	// The reconciler commits the watermark after a run's writes.
	return got, deleted, bad, src.(sync.Committer).Commit(context.Background())
}

func TestSource_FullReadPaging(t *testing.T) {
	e := newEnv(t, fake.Options{})
	for i := 1; i <= 250; i++ {
		put(e.fake, i, t0.Add(time.Duration(i)*time.Second))
	}
	e.fake.Put(fake.Contact{ID: 251, Updated: t0, Props: map[string]string{"email": "not an email"}})
	e.fake.Archive(7, t0.Add(time.Hour))
	e.fake.Archive(8, t0.Add(time.Hour))
	src := e.source(t, nil)
	got, deleted, bad, err := readAll(src)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 248 || got["1"] != 1 || got["250"] != 1 {
		t.Fatalf("read %d contacts, want 248 once each", len(got))
	}
	if strings.Join(deleted, ",") != "7,8" {
		t.Errorf("deleted = %v, want [7 8] from archived=true", deleted)
	}
	if len(bad) != 1 || !strings.Contains(bad[0], "contact 251") || !strings.Contains(bad[0], "invalid email") {
		t.Errorf("rejected = %q", bad)
	}
	if n := e.fake.Requests("list"); n != 3 {
		t.Errorf("list requests = %d, want 3 (100 + 100 + 49)", n)
	}
	if n := e.fake.Requests("archived"); n != 1 {
		t.Errorf("archived requests = %d, want 1", n)
	}
	if !src.LastReadComplete() {
		t.Error("LastReadComplete = false after a full read")
	}
}

func TestSource_Record(t *testing.T) {
	e := newEnv(t, fake.Options{})
	e.fake.Put(fake.Contact{ID: 512, Updated: t0, Props: map[string]string{
		"email": " Ada@Example.COM", "firstname": "Ada ", "lastname": " Lovelace", "phone": "+62 812-3456-7890", "country": ""}})
	src := e.source(t, func(o *hubspot.Options) { o.Normalize.PhoneRegion = "ID" })
	for rec, err := range src.Records(context.Background()) {
		if err != nil {
			t.Fatal(err)
		}
		if rec.ExternalID != "512" || rec.Email != "Ada@example.com" || rec.Name != "Ada Lovelace" || rec.Phone != "+6281234567890" || rec.Metadata != nil {
			t.Fatalf("record = %+v", rec)
		}
	}
}

func TestSource_IncrementalAcrossSearchCap(t *testing.T) {
	e := newEnv(t, fake.Options{SearchPerSecond: 5})
	const n = 10700
	for i := 1; i <= n; i++ {
		put(e.fake, i, t0)
	}
	src := e.source(t, nil)
	if got, _, _, err := readAll(src); err != nil || len(got) != n {
		t.Fatalf("run 1 read %d, %v; want %d", len(got), err, n)
	}
	wm, _, _ := e.wm.Watermark(context.Background(), src.WatermarkKey())
	if !wm.At.Equal(t0) {
		t.Fatalf("watermark = %s, want %s", wm.At, t0)
	}
	// 10,500 contacts change, two per millisecond, so a restarted search
	// begins inside a millisecond it partly read.
	base := t0.Add(time.Hour)
	for i := 1; i <= 10500; i++ {
		put(e.fake, i, base.Add(time.Duration(i/2)*time.Millisecond))
	}
	got, _, _, err := readAll(src)
	if err != nil {
		t.Fatal(err)
	}
	// The lookback (1 minute below t0) re-reads the 200 unchanged contacts too.
	if len(got) != n {
		t.Errorf("run 2 read %d distinct contacts, want %d", len(got), n)
	}
	for id, c := range got {
		if c != 1 {
			t.Errorf("contact %s read %d times", id, c)
		}
	}
	reqs := e.fake.SearchRequests()
	restarts := 0
	for _, r := range reqs {
		if r.After == "" {
			restarts++
		}
	}
	if restarts < 2 {
		t.Errorf("%d search queries, want a new one before the 10,000 cap", restarts)
	}
	if src.LastReadComplete() {
		t.Error("LastReadComplete = true after an incremental read")
	}
	wm, _, _ = e.wm.Watermark(context.Background(), src.WatermarkKey())
	if want := base.Add(5250 * time.Millisecond); !wm.At.Equal(want) || wm.RunsSinceFull != 1 {
		t.Errorf("watermark = %+v, want At %s after one incremental run", wm, want)
	}
	// The search bucket (5 a second) was hit and waited out by 1 s × attempt.
	if len(e.clock.sleeps) == 0 || e.clock.sleeps[0] != time.Second {
		t.Errorf("sleeps = %v; want the SECONDLY policy honoured with 1 s", e.clock.sleeps)
	}
}

func TestSource_RateLimits(t *testing.T) {
	t.Run("TenSecondly", func(t *testing.T) {
		e := newEnv(t, fake.Options{TenSecondMax: 2})
		for i := 1; i <= 300; i++ {
			put(e.fake, i, t0)
		}
		got, _, _, err := readAll(e.source(t, nil))
		if err != nil || len(got) != 300 {
			t.Fatalf("read %d, %v", len(got), err)
		}
		if len(e.clock.sleeps) == 0 || e.clock.sleeps[0] != 10*time.Second {
			t.Fatalf("sleeps = %v; want 10 s for TEN_SECONDLY_ROLLING", e.clock.sleeps)
		}
	})
	t.Run("InjectedEachPolicy", func(t *testing.T) {
		for _, tt := range []struct {
			policy string
			want   time.Duration
		}{{"TEN_SECONDLY_ROLLING", 10 * time.Second}, {"SECONDLY", time.Second}} {
			e := newEnv(t, fake.Options{})
			put(e.fake, 1, t0)
			e.fake.Inject(429, tt.policy)
			e.fake.Inject(429, tt.policy)
			got, _, _, err := readAll(e.source(t, nil))
			if err != nil || len(got) != 1 {
				t.Fatalf("%s: read %d, %v", tt.policy, len(got), err)
			}
			if want := []time.Duration{tt.want, 2 * tt.want}; fmt.Sprint(e.clock.sleeps) != fmt.Sprint(want) {
				t.Errorf("%s: sleeps = %v, want %v", tt.policy, e.clock.sleeps, want)
			}
		}
	})
	t.Run("Daily", func(t *testing.T) {
		e := newEnv(t, fake.Options{DailyMax: 1})
		for i := 1; i <= 150; i++ {
			put(e.fake, i, t0)
		}
		_, _, _, err := readAll(e.source(t, nil))
		if !errors.Is(err, hubspot.ErrDailyLimit) || !strings.Contains(err.Error(), "daily limit") {
			t.Fatalf("err = %v; want ErrDailyLimit", err)
		}
		if len(e.clock.sleeps) != 0 || e.fake.Requests("list") != 2 {
			t.Errorf("sleeps %v, list requests %d; want no retry of a DAILY 429", e.clock.sleeps, e.fake.Requests("list"))
		}
	})
	t.Run("ServerError", func(t *testing.T) {
		e := newEnv(t, fake.Options{})
		put(e.fake, 1, t0)
		e.fake.Inject(503, "")
		e.fake.Inject(423, "")
		if got, _, _, err := readAll(e.source(t, nil)); err != nil || len(got) != 1 {
			t.Fatalf("read %d, %v", len(got), err)
		}
	})
}

// TestSource_RetryAfter checks that HubSpot's calls honour a Retry-After
// (seconds or an HTTP date) through the shared transport, over the
// policyName's wait, and give up at once past the cap (before the shared
// transport, the source ignored it).
func TestSource_RetryAfter(t *testing.T) {
	for _, tt := range []struct {
		name       string
		status     int
		policy     string
		retryAfter func(now time.Time) string
		sleeps     []time.Duration // nil: the read fails at once
	}{
		{"SecondsOverThePolicy", 429, "TEN_SECONDLY_ROLLING", func(time.Time) string { return "3" }, []time.Duration{3 * time.Second}},
		{"HTTPDate", 429, "SECONDLY", func(now time.Time) string { return now.Add(7 * time.Second).Format(http.TimeFormat) }, []time.Duration{7 * time.Second}},
		{"MigrationInProgress", 477, "", func(time.Time) string { return "20" }, []time.Duration{20 * time.Second}},
		{"ServiceUnavailable", 503, "", func(time.Time) string { return "5" }, []time.Duration{5 * time.Second}},
		{"AtTheCap", 429, "TEN_SECONDLY_ROLLING", func(time.Time) string { return "60" }, []time.Duration{time.Minute}},
		{"OverTheCap", 429, "TEN_SECONDLY_ROLLING", func(time.Time) string { return "3600" }, nil},
		{"DateOverTheCap", 503, "", func(now time.Time) string { return now.Add(2 * time.Hour).Format(http.TimeFormat) }, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, fake.Options{})
			put(e.fake, 1, t0)
			e.fake.InjectRetryAfter(tt.status, tt.policy, tt.retryAfter(e.clock.Now()))
			got, _, _, err := readAll(e.source(t, func(o *hubspot.Options) { o.Incremental, o.Watermarks = false, nil }))
			if tt.sleeps == nil {
				var herr *hubspot.Error
				if !errors.As(err, &herr) || herr.Status != tt.status || !strings.Contains(err.Error(), "is more than the 1m0s this client waits") {
					t.Fatalf("err = %v; want the %d naming the cap", err, tt.status)
				}
				if len(e.clock.sleeps) != 0 || e.fake.Requests("list") != 1 {
					t.Errorf("sleeps %v, list requests %d; want no wait and no retry", e.clock.sleeps, e.fake.Requests("list"))
				}
				return
			}
			if err != nil || len(got) != 1 {
				t.Fatalf("read %d, %v", len(got), err)
			}
			if fmt.Sprint(e.clock.sleeps) != fmt.Sprint(tt.sleeps) {
				t.Errorf("sleeps = %v, want %v (the Retry-After)", e.clock.sleeps, tt.sleeps)
			}
		})
	}
	t.Run("OwnCap", func(t *testing.T) {
		e := newEnv(t, fake.Options{})
		put(e.fake, 1, t0)
		e.fake.InjectRetryAfter(429, "SECONDLY", "30")
		_, _, _, err := readAll(e.source(t, func(o *hubspot.Options) {
			o.Incremental, o.Watermarks, o.MaxRetryAfter = false, nil, 10*time.Second
		}))
		if err == nil || !strings.Contains(err.Error(), "Retry-After 30s is more than the 10s this client waits") {
			t.Fatalf("err = %v; want the 10 s cap", err)
		}
	})
}

// TestSource_Metrics checks that HubSpot is observed like every API the
// module speaks: the shared metrics with destination "hubspot".
func TestSource_Metrics(t *testing.T) {
	e := newEnv(t, fake.Options{})
	for i := 1; i <= 150; i++ {
		put(e.fake, i, t0)
	}
	e.fake.Inject(429, "TEN_SECONDLY_ROLLING")
	reg := prometheus.NewPedanticRegistry()
	if _, _, _, err := readAll(e.source(t, func(o *hubspot.Options) { o.Registerer = reg })); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP plugipay_sync_api_retries_total Destination API attempts retried, by destination and reason.
# TYPE plugipay_sync_api_retries_total counter
plugipay_sync_api_retries_total{destination="hubspot",reason="locked"} 0
plugipay_sync_api_retries_total{destination="hubspot",reason="network_error"} 0
plugipay_sync_api_retries_total{destination="hubspot",reason="rate_limited"} 1
plugipay_sync_api_retries_total{destination="hubspot",reason="server_error"} 0
plugipay_sync_api_retries_total{destination="hubspot",reason="timeout"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "plugipay_sync_api_retries_total"); err != nil {
		t.Error(err)
	}
	// Two list pages and the archived list, each counted once.
	if got := requests(t, reg, "list", "ok"); got != 3 {
		t.Errorf("requests{op=list,code=ok} = %v, want 3", got)
	}
}

// requests returns the value of plugipay_sync_api_requests_total for
// destination hubspot, op and code; the series must exist.
func requests(t *testing.T, reg *prometheus.Registry, op, code string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "plugipay_sync_api_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			if l["destination"] == "hubspot" && l["op"] == op && l["code"] == code {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no series op=%s code=%s", op, code)
	return 0
}

func TestSource_BadToken(t *testing.T) {
	e := newEnv(t, fake.Options{})
	put(e.fake, 1, t0)
	_, _, _, err := readAll(e.source(t, func(o *hubspot.Options) { o.Token = "pat-wrong" }))
	var herr *hubspot.Error
	if !errors.As(err, &herr) || herr.Status != 401 || herr.Category != "INVALID_AUTHENTICATION" ||
		!strings.Contains(err.Error(), "check crm.hubspot.token") {
		t.Fatalf("err = %v; want a 401 naming the config key", err)
	}
	if strings.Contains(err.Error(), "pat-wrong") {
		t.Fatal("the token appeared in the error")
	}
	if e.fake.Requests("list") != 1 {
		t.Errorf("list requests = %d, want 1 (a 401 is not retried)", e.fake.Requests("list"))
	}
}

func TestSource_LegacyPrefixAndMissingProperty(t *testing.T) {
	e := newEnv(t, fake.Options{})
	put(e.fake, 1, t0)
	src := e.source(t, func(o *hubspot.Options) {
		o.PathPrefix = "/crm/v3/objects"
		o.Fields.TaxID = "npwp" // not a HubSpot property
	})
	_, _, _, err := readAll(src)
	if err == nil || !strings.Contains(err.Error(), `crm.hubspot.fields: field "npwp" is mapped but HubSpot`) {
		t.Fatalf("err = %v; want the missing property named", err)
	}
	e.fake.DefineProperty("npwp")
	if got, _, _, err := readAll(src); err != nil || len(got) != 1 {
		t.Fatalf("after defining npwp: read %d, %v", len(got), err)
	}
}

// TestSource_SearchLag: a contact updated just before a run is not yet in
// the search index (HubSpot's lag); the next run's lookback finds it.
func TestSource_SearchLag(t *testing.T) {
	e := newEnv(t, fake.Options{SearchLag: 30 * time.Second})
	now := e.clock.Now()
	put(e.fake, 1, now.Add(-time.Hour))
	put(e.fake, 2, now.Add(-time.Hour))
	src := e.source(t, nil)
	if got, _, _, err := readAll(src); err != nil || len(got) != 2 {
		t.Fatalf("run 1 read %d, %v", len(got), err)
	}
	put(e.fake, 1, now.Add(-2*time.Hour)) // an old change: outside the lookback
	put(e.fake, 2, now.Add(-10*time.Second))
	got, _, _, err := readAll(src)
	if err != nil || got["2"] != 0 {
		t.Fatalf("run 2 = %v, %v; contact 2 should still be hidden by the search lag", got, err)
	}
	_ = e.clock.Sleep(context.Background(), time.Minute)
	got, _, _, err = readAll(src)
	if err != nil || got["2"] != 1 {
		t.Fatalf("run 3 = %v, %v; want contact 2 found once the index caught up, inside the lookback", got, err)
	}
}
