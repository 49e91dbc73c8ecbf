package emulator

import (
	"testing"
	"time"
)

func TestPruneIdem(t *testing.T) {
	st := newStore(DefaultAccountID)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	st.putIdem("k", "old", &idemEntry{Expires: now})
	st.putIdem("k", "live", &idemEntry{Expires: now.Add(time.Second)})
	st.pruneIdem(now)
	if _, ok := st.idem["k"]["old"]; ok {
		t.Error("expired entry kept")
	}
	if st.lookupIdem("k", "live", now) == nil {
		t.Error("live entry dropped")
	}
	if st.lookupIdem("k", "live", now.Add(time.Second)) != nil {
		t.Error("entry replayed at its expiry")
	}
}
