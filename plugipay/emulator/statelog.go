package emulator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// logLine is one entry of the state log: an executed write (Customer is the
// customer's full new state) and/or a stored idempotent response.
type logLine struct {
	// Account is the workspace of a platform key's write; empty means the
	// server's own (Options.AccountID), as in logs written before
	// platform keys.
	Account  string     `json:"account,omitempty"`
	KeyID    string     `json:"keyId,omitempty"`
	Key      string     `json:"key,omitempty"`
	Idem     *idemEntry `json:"idem,omitempty"`
	Customer *record    `json:"customer,omitempty"`
}

// stateLog is the append-only JSON-lines file behind Options.StatePath.
// Each line is written with one write(2) before the response is sent, so a
// killed process loses no acknowledged write (the page cache survives the
// process; only an OS crash could lose the tail, which Open tolerates).
type stateLog struct {
	// mu serialises appends: writes of different workspaces run under
	// different store locks.
	mu   sync.Mutex
	path string
	f    *os.File
}

// openStateLog replays path into the workspaces of ws (own is the
// account of lines without one), rewrites it compacted (expired
// idempotency entries and superseded customer states dropped) through a
// temporary file and a rename, and opens it for appending.
func openStateLog(path string, ws *workspaces, own string, now time.Time) (*stateLog, error) {
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read state %s: %w", path, err)
	}
	lines := bytes.Split(data, []byte("\n"))
	for i, b := range lines {
		if len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		var l logLine
		if err := json.Unmarshal(b, &l); err != nil {
			if i == len(lines)-1 { // a torn final line from a crash: never acknowledged
				break
			}
			return nil, fmt.Errorf("read state %s: line %d: %w", path, i+1, err)
		}
		acc := l.Account
		if acc == "" {
			acc = own
		}
		st := ws.get(acc)
		if l.Customer != nil {
			st.insert(l.Customer)
			st.loadedTail = true
		}
		if l.Idem != nil && now.Before(l.Idem.Expires) {
			st.putIdem(l.KeyID, l.Key, l.Idem)
		}
	}
	if err := compact(path, ws, own); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open state %s: %w", path, err)
	}
	return &stateLog{path: path, f: f}, nil
}

// compact writes the current state of every workspace to path atomically.
func compact(path string, ws *workspaces, own string) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("compact state %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, st := range ws.all() {
		acc := logAccount(st, own)
		for _, c := range st.ordered {
			if err := enc.Encode(logLine{Account: acc, Customer: c}); err != nil {
				return fmt.Errorf("compact state %s: %w", path, err)
			}
		}
		for keyID, m := range st.idem {
			for key, e := range m {
				if err := enc.Encode(logLine{Account: acc, KeyID: keyID, Key: key, Idem: e}); err != nil {
					return fmt.Errorf("compact state %s: %w", path, err)
				}
			}
		}
	}
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("compact state %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("compact state %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("compact state %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("compact state %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

// logAccount is the Account of st's log lines: empty for the server's own
// workspace, so a plain key's log reads as before platform keys.
func logAccount(st *store, own string) string {
	if st.account == own {
		return ""
	}
	return st.account
}

// append writes one line with a single write call.
func (l *stateLog) append(line logLine) error {
	b, err := json.Marshal(line)
	if err != nil {
		return fmt.Errorf("encode state line: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return fmt.Errorf("append state %s: closed", l.path)
	}
	if _, err := l.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("append state %s: %w", l.path, err)
	}
	return nil
}

func (l *stateLog) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}
