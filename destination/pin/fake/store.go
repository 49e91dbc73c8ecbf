package fake

import (
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/plugipay-sync/plugipay-sync/destination/internal/fakeapi"
)

// tokenAlphabet is the URL-safe alphabet of the 22 characters after
// "cust_".
const tokenAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// tokenLen is the number of random characters of a token.
const tokenLen = 22

// idGen mints customer tokens from a seeded source. The Server's mutex
// guards it.
type idGen struct{ rng *rand.Rand }

// newIDGen seeds its own stream (not the fault source's), so turning
// faults on does not change the tokens.
func newIDGen(seed uint64) *idGen {
	return &idGen{rng: rand.New(rand.NewPCG(fakeapi.ResolveSeed(seed), 0x5bd1e995))}
}

func (g *idGen) next() string {
	return "cust_" + fakeapi.RandString(g.rng, tokenAlphabet, tokenLen)
}

// store is one mode's customers. The Server's mutex guards it.
type store struct {
	byToken map[string]*Customer
	ordered []*Customer // by CreatedAt, then Token
}

func newStore() *store { return &store{byToken: map[string]*Customer{}} }

func less(a, b *Customer) int {
	if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
		return c
	}
	return strings.Compare(a.Token, b.Token)
}

// put adds c, replacing a customer with the same token.
func (st *store) put(c *Customer) {
	st.remove(c.Token)
	i, _ := slices.BinarySearchFunc(st.ordered, c, less)
	st.ordered = slices.Insert(st.ordered, i, c)
	st.byToken[c.Token] = c
}

func (st *store) remove(token string) bool {
	old, ok := st.byToken[token]
	if !ok {
		return false
	}
	i, found := slices.BinarySearchFunc(st.ordered, old, less)
	if found {
		st.ordered = slices.Delete(st.ordered, i, i+1)
	}
	delete(st.byToken, token)
	return true
}

// stamp is now as the API stores it: UTC, whole seconds.
func (s *Server) stamp() time.Time { return s.now().UTC().Truncate(time.Second) }

// newToken returns a token unused in every mode. The caller holds s.mu.
func (s *Server) newToken() string {
	for {
		t := s.ids.next()
		if _, used := s.modes[ModeTest].byToken[t]; used {
			continue
		}
		if _, used := s.modes[ModeLive].byToken[t]; used {
			continue
		}
		return t
	}
}

// list answers GET /1/customers?page=N.
func (s *Server) list(mode Mode, r *http.Request) result {
	page := 1
	query, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return errResult(http.StatusBadRequest, CodeBadRequest, "malformed query string")
	}
	for k, vs := range query {
		if k != "page" {
			return errResult(http.StatusBadRequest, CodeBadRequest, "unknown query parameter "+strconv.Quote(k)+"; only page is accepted")
		}
		if len(vs) != 1 {
			return errResult(http.StatusBadRequest, CodeBadRequest, "page: give it once")
		}
		n, ok := parsePage(vs[0])
		if !ok {
			return errResult(http.StatusBadRequest, CodeBadRequest, "page: must be an integer from 1 to "+strconv.Itoa(MaxPage)+" (got "+strconv.Quote(truncate(vs[0], 20))+")")
		}
		page = n
	}
	s.mu.Lock()
	st := s.modes[mode]
	total := len(st.ordered)
	items := []Customer{}
	if lo := (page - 1) * PerPage; lo < total {
		for _, c := range st.ordered[lo:min(lo+PerPage, total)] {
			items = append(items, *c)
		}
	}
	s.mu.Unlock()

	pages := (total + PerPage - 1) / PerPage
	p := &Pagination{Current: page, PerPage: PerPage, Count: total, Pages: pages}
	if page < pages {
		p.Next = ptr(page + 1)
	}
	if page > 1 {
		p.Previous = ptr(page - 1)
	}
	return result{status: http.StatusOK, body: wrapped{Response: items, Status: http.StatusOK, Count: ptr(total), Pagination: p}}
}

// parsePage accepts plain decimal digits 1..MaxPage.
func parsePage(v string) (int, bool) {
	if v == "" || len(v) > 7 {
		return 0, false
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > MaxPage {
		return 0, false
	}
	return n, true
}

// create answers POST /1/customers.
func (s *Server) create(mode Mode, r *http.Request, body []byte) result {
	in, res, ok := parseInput(r, body, true, s.now())
	if !ok {
		return res
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := &Customer{Token: s.newToken(), CreatedAt: s.stamp()}
	in.apply(c)
	s.modes[mode].put(c)
	s.writes++
	return result{status: http.StatusCreated, body: wrapped{Response: *c, Status: http.StatusCreated}, executed: true}
}

// get answers GET /1/customers/{token}.
func (s *Server) get(mode Mode, token string) result {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.modes[mode].byToken[token]
	if !ok {
		return notFound(token)
	}
	return okResult(http.StatusOK, *c)
}

// update answers PUT /1/customers/{token}. An unknown token is 404 before
// the body is looked at.
func (s *Server) update(mode Mode, token string, r *http.Request, body []byte) result {
	s.mu.Lock()
	_, exists := s.modes[mode].byToken[token]
	s.mu.Unlock()
	if !exists {
		return notFound(token)
	}
	in, res, ok := parseInput(r, body, false, s.now())
	if !ok {
		return res
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	old, ok := s.modes[mode].byToken[token]
	if !ok { // deleted meanwhile
		return notFound(token)
	}
	c := *old
	in.apply(&c)
	s.modes[mode].put(&c)
	s.writes++
	return result{status: http.StatusOK, body: wrapped{Response: c, Status: http.StatusOK}, executed: true}
}

// delete answers DELETE /1/customers/{token}: 204 with no body.
func (s *Server) delete(mode Mode, token string) result {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.modes[mode].remove(token) {
		return notFound(token)
	}
	s.writes++
	return result{status: http.StatusNoContent, executed: true}
}

func ptr[T any](v T) *T { return &v }

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
