package emulator

import (
	"slices"
	"strings"
	"sync"
)

// workspaces holds one store per workspace (account id). A store is made
// on first use, so connecting thousands of accounts costs a map entry
// each until a request reaches them.
type workspaces struct {
	mu sync.Mutex
	m  map[string]*store
}

func newWorkspaces() *workspaces { return &workspaces{m: map[string]*store{}} }

// get returns the store of account, making it empty on first use.
func (w *workspaces) get(account string) *store {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := w.m[account]
	if st == nil {
		st = newStore(account)
		w.m[account] = st
	}
	return st
}

// lookup returns the store of account, or nil when none was made.
func (w *workspaces) lookup(account string) *store {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.m[account]
}

// all returns every store, by account id.
func (w *workspaces) all() []*store {
	w.mu.Lock()
	out := make([]*store, 0, len(w.m))
	for _, st := range w.m {
		out = append(out, st)
	}
	w.mu.Unlock()
	slices.SortFunc(out, func(a, b *store) int { return strings.Compare(a.account, b.account) })
	return out
}
