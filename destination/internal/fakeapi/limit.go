package fakeapi

import (
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Limiter is a per-key request rate limit counted in fixed one-second
// windows of a fake's clock. It is safe for concurrent use.
type Limiter struct {
	mu      sync.Mutex
	limit   int
	windows map[string]*window
}

// window counts one key's requests in one second.
type window struct {
	sec int64
	n   int
}

// NewLimiter returns a Limiter of limit requests per second and key; 0 or
// less disables it.
func NewLimiter(limit int) *Limiter {
	return &Limiter{limit: limit, windows: map[string]*window{}}
}

// SetLimit replaces the limit; 0 or less disables it.
func (l *Limiter) SetLimit(limit int) {
	l.mu.Lock()
	l.limit = limit
	l.mu.Unlock()
}

// Limit returns the current limit.
func (l *Limiter) Limit() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.limit
}

// Allow counts one request of key at now and reports whether it is within
// the limit. When key's window is full the request is not counted: Allow
// sets Retry-After on w to the whole seconds (at least 1) until the window
// ends, calls fail with the limit and that wait for the fake's own 429
// answer, and returns false.
func (l *Limiter) Allow(w http.ResponseWriter, key string, now time.Time, fail func(limit, retryAfter int)) bool {
	l.mu.Lock()
	limit := l.limit
	if limit <= 0 {
		l.mu.Unlock()
		return true
	}
	sec := now.Unix()
	win := l.windows[key]
	if win == nil {
		win = &window{}
		l.windows[key] = win
	}
	if win.sec != sec {
		win.sec, win.n = sec, 0
	}
	full := win.n >= limit
	if !full {
		win.n++
	}
	l.mu.Unlock()
	if !full {
		return true
	}
	wait := time.Unix(sec+1, 0).Sub(now)
	secs := max(int((wait+time.Second-1)/time.Second), 1)
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	fail(limit, secs)
	return false
}
