package emulator

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/plugipay-sync/plugipay-sync/plugipay"
)

// IdempotencyTTL is how long a stored response is replayed for its key.
const IdempotencyTTL = 24 * time.Hour

// pruneEvery is how many stored idempotent answers pass between sweeps of
// expired ones, which keeps memory bounded in long-running mocks.
const pruneEvery = 1024

// result is one API answer before it is wrapped in an envelope: the HTTP
// status and either data (2xx) or an error body.
type result struct {
	Status int                 `json:"status"`
	Data   json.RawMessage     `json:"data,omitempty"`
	Error  *plugipay.ErrorBody `json:"error,omitempty"`
}

// idemEntry is a stored response for one idempotency key.
type idemEntry struct {
	Method   string    `json:"method"`
	Path     string    `json:"path"`
	BodyHash string    `json:"bodyHash"`
	Result   result    `json:"result"`
	Expires  time.Time `json:"expires"`
}

// store holds one workspace's customers and idempotency keys. One mutex
// serialises every write of the workspace, so an idempotent write is
// checked, executed and recorded atomically; workspaces never share one.
type store struct {
	mu sync.Mutex
	// account is the workspace id (acc_...) reported in accountId and arn.
	account    string
	byID       map[string]*record
	ordered    []*record // by createdAt, then id
	byExternal map[string]string
	lastCreate time.Time
	// entropy is made on the first create: it buffers 4 KiB, which
	// thousands of connected but idle workspaces need not pay for.
	entropy *ulid.MonotonicEntropy
	idem    map[string]map[string]*idemEntry // key id -> idempotency key
	writes  int
	replays int
	puts    int // idempotent answers stored, for pruning
	// loadedTail is set when customers were loaded from the state log and
	// none has been created since: the next id must sort after theirs.
	loadedTail bool
}

func newStore(account string) *store {
	return &store{
		account:    account,
		byID:       map[string]*record{},
		byExternal: map[string]string{},
		idem:       map[string]map[string]*idemEntry{},
	}
}

// newID returns "cus_" plus a ULID for t. The caller holds mu.
func (st *store) newID(t time.Time) (string, error) {
	if st.entropy == nil {
		st.entropy = ulid.Monotonic(rand.Reader, 0)
	}
	id, err := ulid.New(ulid.Timestamp(t), st.entropy)
	if err != nil {
		return "", fmt.Errorf("new customer id: %w", err)
	}
	return "cus_" + id.String(), nil
}

// insert adds or replaces c in every index. The caller holds mu.
func (st *store) insert(c *record) {
	if old, ok := st.byID[c.ID]; ok {
		if old.ExternalID != nil {
			delete(st.byExternal, *old.ExternalID)
		}
		i := st.index(old)
		st.ordered = slices.Delete(st.ordered, i, i+1)
	}
	st.byID[c.ID] = c
	if c.ExternalID != nil {
		st.byExternal[*c.ExternalID] = c.ID
	}
	i := st.index(c)
	st.ordered = slices.Insert(st.ordered, i, c)
	if c.CreatedAt.After(st.lastCreate) {
		st.lastCreate = c.CreatedAt
	}
}

// index is the position of c (or where it would go) in ordered.
func (st *store) index(c *record) int {
	i, _ := slices.BinarySearchFunc(st.ordered, c, func(a, b *record) int {
		switch {
		case a.before(b):
			return -1
		case b.before(a):
			return 1
		}
		return 0
	})
	return i
}

// lookupIdem returns the live entry of key under keyID. The caller holds mu.
func (st *store) lookupIdem(keyID, key string, now time.Time) *idemEntry {
	e := st.idem[keyID][key]
	if e == nil {
		return nil
	}
	if !now.Before(e.Expires) {
		delete(st.idem[keyID], key)
		return nil
	}
	return e
}

// putIdem records e for key under keyID. The caller holds mu.
func (st *store) putIdem(keyID, key string, e *idemEntry) {
	m := st.idem[keyID]
	if m == nil {
		m = map[string]*idemEntry{}
		st.idem[keyID] = m
	}
	m[key] = e
}

// pruneIdem drops expired idempotency entries. The caller holds mu.
func (st *store) pruneIdem(now time.Time) {
	for _, m := range st.idem {
		for k, e := range m {
			if !now.Before(e.Expires) {
				delete(m, k)
			}
		}
	}
}
