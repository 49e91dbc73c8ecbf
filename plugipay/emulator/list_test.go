package emulator

import (
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// walk lists every page of query and returns the ids and the page count.
func (e *env) walk(query string) (ids []string, pages int) {
	e.t.Helper()
	cursor := ""
	for {
		target := "/api/v1/customers?" + query
		if cursor != "" {
			target += "&cursor=" + url.QueryEscape(cursor)
		}
		r := e.do(req{method: "GET", target: target})
		expect(e.t, r, 200, "")
		pages++
		for _, c := range r.customers(e.t) {
			ids = append(ids, c["id"].(string))
		}
		hasMore, _ := r.env.Meta["hasMore"].(bool)
		cur, isString := r.env.Meta["cursor"].(string)
		if v, present := r.env.Meta["cursor"]; !present || (v != nil && !isString) {
			e.t.Fatalf("meta.cursor must be a string or null: %s", r.raw)
		}
		if !hasMore {
			if cur != "" {
				e.t.Fatalf("cursor without hasMore: %s", r.raw)
			}
			return ids, pages
		}
		if pages > 1000 {
			e.t.Fatal("pagination does not end")
		}
		cursor = cur
	}
}

func TestPagination(t *testing.T) {
	e := newEnv(t, Options{})
	var created []string
	for i := range 250 {
		if i%7 == 0 {
			e.clock.Advance(time.Millisecond) // some createdAt ties, some not
		}
		created = append(created, e.create(fmt.Sprintf(`{"externalId":"u%d"}`, i)))
	}
	for _, order := range []string{"asc", "desc"} {
		t.Run(order, func(t *testing.T) {
			ids, pages := e.walk("limit=100&order=" + order)
			if pages != 3 {
				t.Errorf("pages = %d, want 3", pages)
			}
			want := created
			if order == "desc" {
				want = reversed(created)
			}
			if strings.Join(ids, ",") != strings.Join(want, ",") {
				t.Fatalf("got %d ids, not every customer once in creation order", len(ids))
			}
		})
	}
	t.Run("DefaultIsDescLimit25", func(t *testing.T) {
		r := e.do(req{method: "GET", target: "/api/v1/customers"})
		got := r.customers(t)
		if len(got) != 25 || got[0]["id"] != created[249] || r.env.Meta["hasMore"] != true {
			t.Fatalf("default page: %d items, first %v", len(got), got[0]["id"])
		}
	})
}

func reversed(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[len(s)-1-i] = v
	}
	return out
}

// TestPaginationConcurrentCreates walks both orders while customers are
// being created: every customer that existed before the walk appears
// exactly once.
func TestPaginationConcurrentCreates(t *testing.T) {
	e := newEnv(t, Options{Now: time.Now})
	e.clock.t = time.Now() // signing clock; the server runs on the real one
	before := map[string]bool{}
	for range 120 {
		before[e.create(`{}`)] = true
	}
	for _, order := range []string{"asc", "desc"} {
		t.Run(order, func(t *testing.T) {
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					r, err := e.try(req{method: "POST", target: "/api/v1/customers", body: `{}`, idem: newIdem()})
					if err != nil || r.status != 201 {
						t.Errorf("concurrent create: %v", err)
						return
					}
				}
			})
			ids, _ := e.walk("limit=7&order=" + order)
			close(stop)
			wg.Wait()
			seen := map[string]int{}
			for _, id := range ids {
				seen[id]++
				if seen[id] > 1 {
					t.Fatalf("%s listed twice", id)
				}
			}
			for id := range before {
				if seen[id] != 1 {
					t.Fatalf("%s listed %d times", id, seen[id])
				}
			}
		})
	}
}

func TestListFilters(t *testing.T) {
	e := newEnv(t, Options{})
	a := e.create(`{"externalId":"ext_a","email":"ada@example.com"}`)
	e.clock.Advance(time.Second)
	b := e.create(`{"externalId":"ext_b","email":"ada@example.com"}`)
	e.clock.Advance(time.Second)
	c := e.create(`{"externalId":"ext_c","email":"Ada@example.com"}`)
	e.create(`{}`)

	tests := []struct {
		name, query string
		want        []string
	}{
		{"Email", "email=ada%40example.com", []string{b, a}},
		{"EmailCaseSensitive", "email=Ada@example.com", []string{c}},
		{"EmailAsc", "email=ada@example.com&order=asc", []string{a, b}},
		{"ExternalID", "externalId=ext_b", []string{b}},
		{"ExternalIDMissing", "externalId=ext_z", nil},
		{"EmailAndExternalID", "email=ada@example.com&externalId=ext_c", nil},
		{"CreatedAfter", "createdAfter=2026-01-01T00:00:00Z&order=asc&email=ada@example.com", []string{b}},
		{"CreatedAfterOffset", "createdAfter=2026-01-01T07:00:01%2B07:00&email=Ada@example.com", []string{c}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ids, _ := e.walk(tt.query)
			if strings.Join(ids, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("got %v, want %v", ids, tt.want)
			}
		})
	}

	bad := []struct{ name, query, field string }{
		{"LimitNotInteger", "limit=ten", "limit"},
		{"LimitEmpty", "limit=", "limit"},
		{"LimitTwice", "limit=1&limit=2", "limit"},
		{"BadOrder", "order=up", "order"},
		{"BadCreatedAfter", "createdAfter=yesterday", "createdAfter"},
		{"UnknownParam", "page=2", "page"},
		{"GarbageCursor", "cursor=xyz", "cursor"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(req{method: "GET", target: "/api/v1/customers?" + tt.query})
			expect(t, r, 400, "validation_error")
			if !strings.Contains(r.env.Error.Message, tt.field) {
				t.Errorf("message %q does not name %q", r.env.Error.Message, tt.field)
			}
		})
	}

	t.Run("Legacy", func(t *testing.T) {
		l := newEnv(t, Options{Legacy: true})
		l.create(`{"externalId":"x1"}`)
		l.create(`{"externalId":"x2"}`)
		ids, _ := l.walk("externalId=x1")
		if len(ids) != 2 {
			t.Fatalf("legacy list returned %d, want both customers", len(ids))
		}
	})
}

func TestLimitClamping(t *testing.T) {
	e := newEnv(t, Options{})
	for range 105 {
		e.create(`{}`)
	}
	tests := []struct {
		limit string
		want  int
	}{
		{"0", 1}, {"-3", 1}, {"1", 1}, {"100", 100}, {"101", 100}, {"100000", 100}, {"", 25},
	}
	for _, tt := range tests {
		t.Run("limit="+tt.limit, func(t *testing.T) {
			target := "/api/v1/customers"
			if tt.limit != "" {
				target += "?limit=" + tt.limit
			}
			r := e.do(req{method: "GET", target: target})
			expect(t, r, 200, "")
			if got := len(r.customers(t)); got != tt.want {
				t.Fatalf("got %d items, want %d", got, tt.want)
			}
		})
	}
}

func TestCursorBoundToFilters(t *testing.T) {
	e := newEnv(t, Options{})
	for range 5 {
		e.create(`{"email":"a@b.co"}`)
	}
	r := e.do(req{method: "GET", target: "/api/v1/customers?limit=2&email=a@b.co"})
	cur := url.QueryEscape(r.env.Meta["cursor"].(string))
	tests := []struct {
		name, query string
		ok          bool
	}{
		{"SameFilters", "limit=2&email=a@b.co&cursor=" + cur, true},
		{"OtherLimit", "limit=3&email=a@b.co&cursor=" + cur, true},
		{"NoFilter", "limit=2&cursor=" + cur, false},
		{"OtherEmail", "limit=2&email=x@b.co&cursor=" + cur, false},
		{"AddedExternalID", "limit=2&email=a@b.co&externalId=e&cursor=" + cur, false},
		{"OtherOrder", "limit=2&email=a@b.co&order=asc&cursor=" + cur, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(req{method: "GET", target: "/api/v1/customers?" + tt.query})
			if tt.ok {
				expect(t, r, 200, "")
				return
			}
			expect(t, r, 400, "validation_error")
		})
	}
}
