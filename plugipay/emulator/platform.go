package emulator

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/plugipay-sync/plugipay-sync/plugipay"
)

// MaxAccountIDLen bounds an account id named in X-Plugipay-On-Behalf-Of.
const MaxAccountIDLen = 64

// PlatformKey is a platform key's secret and the merchant workspaces it is
// connected to. A request signed with it acts for the workspace named in
// X-Plugipay-On-Behalf-Of (spec "Platform keys"); without that header it
// acts for the platform's own workspace, Options.AccountID.
type PlatformKey struct {
	Secret string
	// Accounts are the connected merchant workspaces (acc_...). A list of
	// thousands is cheap: each costs a map entry until a request reaches
	// it.
	Accounts []string
	// AutoConnect connects any well-formed acc_ id on first use, creating
	// its workspace empty, so a test with thousands of tenants need not
	// list them. An account removed with Disconnect stays disconnected.
	AutoConnect bool
}

// keyring holds the plain and the platform keys. Both can change at run
// time (RevokeKey, Connect, Disconnect), hence the lock.
type keyring struct {
	mu       sync.RWMutex
	plain    map[string]string // key id -> secret
	platform map[string]*platformKey
}

type platformKey struct {
	secret string
	auto   bool
	// connected holds the accounts the key may act for; disconnected
	// those removed by Disconnect, which AutoConnect must not bring back.
	connected    map[string]struct{}
	disconnected map[string]struct{}
}

func newKeyring(plain map[string]string, platform map[string]PlatformKey) (*keyring, error) {
	k := &keyring{plain: map[string]string{}, platform: map[string]*platformKey{}}
	for id, secret := range plain {
		k.plain[id] = secret
	}
	for id, pk := range platform {
		if _, dup := k.plain[id]; dup {
			return nil, fmt.Errorf("platform key %q: also in Keys", id)
		}
		if pk.Secret == "" {
			return nil, fmt.Errorf("platform key %q: empty secret", id)
		}
		p := &platformKey{secret: pk.Secret, auto: pk.AutoConnect,
			connected: make(map[string]struct{}, len(pk.Accounts)), disconnected: map[string]struct{}{}}
		for _, acc := range pk.Accounts {
			if err := CheckAccountID(acc); err != nil {
				return nil, fmt.Errorf("platform key %q: %w", id, err)
			}
			p.connected[acc] = struct{}{}
		}
		k.platform[id] = p
	}
	return k, nil
}

// secret returns the secret of a live key, plain or platform.
func (k *keyring) secret(keyID string) (string, bool) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if s, ok := k.plain[keyID]; ok {
		return s, true
	}
	if p, ok := k.platform[keyID]; ok {
		return p.secret, true
	}
	return "", false
}

// mayActFor reports whether keyID may act for account, auto-connecting it
// when the key allows that. Every key may name its own workspace (own); a
// plain key no other.
func (k *keyring) mayActFor(keyID, account, own string) bool {
	if account == own {
		return true
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	p, ok := k.platform[keyID]
	if !ok {
		return false
	}
	if _, ok := p.connected[account]; ok {
		return true
	}
	if _, gone := p.disconnected[account]; p.auto && !gone {
		p.connected[account] = struct{}{}
		return true
	}
	return false
}

// CheckAccountID accepts "acc_" followed by 1 to MaxAccountIDLen-4 ASCII
// letters, digits, "_" or "-": the account ids X-Plugipay-On-Behalf-Of
// and PlatformKey.Accounts take.
func CheckAccountID(acc string) error {
	rest, ok := strings.CutPrefix(acc, "acc_")
	if !ok || rest == "" || len(acc) > MaxAccountIDLen {
		return fmt.Errorf("account id %s: want acc_ followed by 1 to %d letters, digits, _ or -", strconv.Quote(truncate(acc, 80)), MaxAccountIDLen-4)
	}
	for _, c := range rest {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("account id %s: want acc_ followed by 1 to %d letters, digits, _ or -", strconv.Quote(truncate(acc, 80)), MaxAccountIDLen-4)
		}
	}
	return nil
}

// account resolves the workspace a request signed with keyID acts for:
// the one named by X-Plugipay-On-Behalf-Of, or the server's own workspace
// without the header. It is the one place that answers 403
// insufficient_scope for an account the key is not connected to, which the
// spec marks as the emulator's assumption (the seeds do not state it).
func (s *Server) account(keyID, onBehalfOf string) (string, *result) {
	if onBehalfOf == "" {
		return s.accountID, nil
	}
	if err := CheckAccountID(onBehalfOf); err != nil {
		res := errResult(http.StatusBadRequest, plugipay.CodeValidation, plugipay.HeaderOnBehalfOf+": "+err.Error())
		return "", &res
	}
	if !s.keys.mayActFor(keyID, onBehalfOf, s.accountID) {
		res := errResult(http.StatusForbidden, plugipay.CodeInsufficientScope,
			"key "+strconv.Quote(keyID)+" is not connected to account "+strconv.Quote(onBehalfOf))
		return "", &res
	}
	return onBehalfOf, nil
}

// Connect connects accounts to platform key keyID (undoing a Disconnect).
func (s *Server) Connect(keyID string, accounts ...string) error {
	for _, acc := range accounts {
		if err := CheckAccountID(acc); err != nil {
			return fmt.Errorf("emulator: connect: %w", err)
		}
	}
	k := s.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	p, ok := k.platform[keyID]
	if !ok {
		return fmt.Errorf("emulator: connect: no platform key %q", keyID)
	}
	for _, acc := range accounts {
		p.connected[acc] = struct{}{}
		delete(p.disconnected, acc)
	}
	return nil
}

// Disconnect disconnects account from platform key keyID, as a merchant
// revoking the platform's access does: the key's requests for it then
// answer 403 insufficient_scope, even with AutoConnect. The workspace and
// its customers stay. It reports whether the account was connected.
func (s *Server) Disconnect(keyID, account string) bool {
	k := s.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	p, ok := k.platform[keyID]
	if !ok {
		return false
	}
	_, was := p.connected[account]
	delete(p.connected, account)
	p.disconnected[account] = struct{}{}
	return was
}

// RevokeKey removes key keyID, plain or platform: its requests then answer
// 401 invalid_key. It reports whether the key existed.
func (s *Server) RevokeKey(keyID string) bool {
	k := s.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	_, plain := k.plain[keyID]
	_, platform := k.platform[keyID]
	delete(k.plain, keyID)
	delete(k.platform, keyID)
	return plain || platform
}

// ConnectedAccounts returns the accounts platform key keyID is connected
// to (auto-connected ones included), sorted.
func (s *Server) ConnectedAccounts(keyID string) []string {
	k := s.keys
	k.mu.RLock()
	defer k.mu.RUnlock()
	p, ok := k.platform[keyID]
	if !ok {
		return nil
	}
	out := make([]string, 0, len(p.connected))
	for acc := range p.connected {
		out = append(out, acc)
	}
	slices.Sort(out)
	return out
}
