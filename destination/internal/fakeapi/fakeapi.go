// Package fakeapi holds the machinery the in-memory fakes of the
// destination APIs (destination/paygate/fake, destination/pin/fake) share:
// fault drawing and injection (Faults, Decision, Drop), the per-key
// fixed-window rate limit (Limiter), request counting (Counter), JSON
// answer writing (WriteJSON), capped body reading (ReadBody) and seeded
// randomness (NewRand, RandString), and route matching (Routes) and
// method checks (Allowed).
//
// It knows no wire format: each fake keeps its own routes, auth and error
// bodies, and passes what differs (the error answer, the content type, the
// alphabet of its ids) as parameters.
package fakeapi

import (
	crand "crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// WriteJSON writes v as JSON with a trailing newline, with status, the
// given Content-Type and a Content-Length. When v does not marshal it
// writes nothing and returns the error, so the caller can answer 500 in
// its own error format instead (only a bug gets there: answers are plain
// data).
func WriteJSON(w http.ResponseWriter, status int, contentType string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
	return nil
}

// ReadBody reads r's body, at most limit bytes. A longer body is an error
// with tooLarge true, so the caller can tell it from a broken connection
// in its own error format. On an error body holds what was read before it
// (at most limit bytes), for a fake that inspects every request.
func ReadBody(r *http.Request, limit int64) (body []byte, tooLarge bool, err error) {
	body, err = io.ReadAll(http.MaxBytesReader(nil, r.Body, limit))
	var tooBig *http.MaxBytesError
	return body, errors.As(err, &tooBig), err
}

// Allowed reports whether method is one of allowed. When it is not, it sets
// the Allow header to the allowed methods, for the 405 the caller answers.
func Allowed(w http.ResponseWriter, method string, allowed ...string) bool {
	for _, m := range allowed {
		if method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(allowed, ", "))
	return false
}

// Routes are the route templates of a fake with one collection and its
// items, as its request counts name them.
type Routes struct {
	// Collection is the collection's path, e.g. "/v1/customers".
	Collection string
	// Item is the template of one item, e.g. "/v1/customers/{id}".
	Item string
	// Other names every other path.
	Other string
}

// Match maps path to its route: Collection for the collection itself,
// Item and the id for one non-empty segment below it, Other otherwise.
func (rt Routes) Match(path string) (route, id string) {
	if path == rt.Collection {
		return rt.Collection, ""
	}
	rest, ok := strings.CutPrefix(path, rt.Collection+"/")
	if !ok || rest == "" || strings.Contains(rest, "/") {
		return rt.Other, ""
	}
	return rt.Item, rest
}

// Counter counts requests by method and route. It is safe for concurrent
// use; the zero value is ready.
type Counter struct {
	mu sync.Mutex
	n  map[string]int // "METHOD route" -> requests
}

// Add counts one request of method on route.
func (c *Counter) Add(method, route string) {
	c.mu.Lock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[method+" "+route]++
	c.mu.Unlock()
}

// Count returns how many requests of method hit route.
func (c *Counter) Count(method, route string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[method+" "+route]
}

// Total returns how many requests were counted.
func (c *Counter) Total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.n {
		n += v
	}
	return n
}

// ResolveSeed returns seed, or a random one from crypto/rand when seed is 0
// (a fake's "no seed given").
func ResolveSeed(seed uint64) uint64 {
	if seed != 0 {
		return seed
	}
	var b [8]byte
	_, _ = crand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:])
}

// NewRand returns a PCG source seeded from seed (ResolveSeed: 0 means
// random), so a given seed gives the same sequence every run. It is not
// safe for concurrent use: the caller guards it.
func NewRand(seed uint64) *rand.Rand {
	s := ResolveSeed(seed)
	return rand.New(rand.NewPCG(s, s^0x9e3779b97f4a7c15))
}

// RandString returns n characters drawn uniformly from alphabet with rng.
func RandString(rng *rand.Rand, alphabet string, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[rng.IntN(len(alphabet))]
	}
	return string(b)
}
