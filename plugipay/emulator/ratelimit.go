package emulator

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/plugipay-sync/plugipay-sync/plugipay"
)

// The real API's per-workspace limits, in requests per second.
const (
	DefaultReadRate  = 100
	DefaultWriteRate = 20
)

// Rate-limit response headers.
const (
	HeaderRateLimit     = "X-RateLimit-Limit"
	HeaderRateRemaining = "X-RateLimit-Remaining"
	HeaderRateReset     = "X-RateLimit-Reset"
	HeaderRetryAfter    = "Retry-After"
)

// limiter counts requests per key and class (read or write) in fixed
// windows of one second of the server clock, as the real API does: at most
// limit requests whose timestamps fall in the same unix second.
type limiter struct {
	mu          sync.Mutex
	read, write int
	windows     map[string]*window
}

type window struct {
	sec int64
	n   int
}

func newLimiter(read, write int) *limiter {
	return &limiter{read: read, write: write, windows: map[string]*window{}}
}

func (l *limiter) set(read, write int) {
	l.mu.Lock()
	l.read, l.write = read, write
	l.mu.Unlock()
}

// allow counts one request and sets the X-RateLimit headers on h. It
// returns the 429 to send when the window is full, nil otherwise. A
// disabled limit (0) sets no headers.
func (l *limiter) allow(h http.Header, keyID string, read bool, now time.Time) *result {
	l.mu.Lock()
	defer l.mu.Unlock()
	limit, class := l.write, "w"
	if read {
		limit, class = l.read, "r"
	}
	if limit <= 0 {
		return nil
	}
	sec := now.Unix()
	w := l.windows[keyID+"\x00"+class]
	if w == nil {
		w = &window{}
		l.windows[keyID+"\x00"+class] = w
	}
	if w.sec != sec {
		w.sec, w.n = sec, 0
	}
	reset := sec + 1
	h.Set(HeaderRateLimit, strconv.Itoa(limit))
	h.Set(HeaderRateReset, strconv.FormatInt(reset, 10))
	if w.n >= limit {
		h.Set(HeaderRateRemaining, "0")
		// The window ends at most one second from now; whole seconds, rounded up.
		wait := time.Unix(reset, 0).Sub(now)
		secs := max(int((wait+time.Second-1)/time.Second), 1)
		h.Set(HeaderRetryAfter, strconv.Itoa(secs))
		kind := "write"
		if read {
			kind = "read"
		}
		res := errResult(http.StatusTooManyRequests, plugipay.CodeRateLimited,
			"rate limit of "+strconv.Itoa(limit)+" "+kind+" requests per second exceeded; retry after "+strconv.Itoa(secs)+" s")
		return &res
	}
	w.n++
	h.Set(HeaderRateRemaining, strconv.Itoa(limit-w.n))
	return nil
}
