package emulator

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"mime"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/plugipay-sync/plugipay-sync/plugipay"
)

// MaxIdempotencyKeyLen is the longest accepted Idempotency-Key.
const MaxIdempotencyKeyLen = 255

// HeaderReplayed marks a response replayed from the idempotency store.
const HeaderReplayed = "Idempotent-Replayed"

// write runs a create (id == "") or an update under the idempotency rules:
// a stored answer for the same key, method, path and body hash is replayed
// without executing anything; the same key with anything else is 409
// idempotency_key_reused; otherwise the write executes and its answer is
// stored (and persisted) before it is sent, unless it is a 5xx. rec, when
// the request log is on, learns the externalId and that the workspace's
// rules ran.
func (s *Server) write(w *statusWriter, r *http.Request, st *store, keyID string, body []byte, id string, f fault, rec *WriteRecord) {
	idemKey := r.Header.Get(plugipay.HeaderIdempotencyKey)
	if idemKey == "" {
		s.fail(w, http.StatusBadRequest, plugipay.CodeValidation, plugipay.HeaderIdempotencyKey+": header is required for POST and PATCH")
		return
	}
	if utf8.RuneCountInString(idemKey) > MaxIdempotencyKeyLen {
		s.fail(w, http.StatusBadRequest, plugipay.CodeValidation, fmt.Sprintf("%s: must be at most %d characters", plugipay.HeaderIdempotencyKey, MaxIdempotencyKeyLen))
		return
	}
	if len(body) > 0 {
		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
			s.fail(w, http.StatusBadRequest, plugipay.CodeValidation, "Content-Type: must be application/json when a body is sent")
			return
		}
	}
	sum := sha256.Sum256(body)
	hash := hex.EncodeToString(sum[:])
	now := s.now()

	st.mu.Lock()
	if rec != nil {
		rec.ExternalID, rec.Handled = traceExternalID(st, id, body), true
	}
	var res result
	replayed := false
	if e := st.lookupIdem(keyID, idemKey, now); e != nil {
		if e.Method == r.Method && e.Path == r.URL.Path && e.BodyHash == hash {
			res, replayed = e.Result, true
			st.replays++
		} else {
			res = errResult(http.StatusConflict, plugipay.CodeIdempotencyReused,
				"Idempotency-Key "+strconv.Quote(idemKey)+" was already used with a different request within 24 h")
		}
	} else {
		var changed *record
		if id == "" {
			res, changed = s.create(st, body, now)
		} else {
			res, changed = s.update(st, id, body, now)
		}
		if res.Status < 500 {
			entry := &idemEntry{Method: r.Method, Path: r.URL.Path, BodyHash: hash, Result: res, Expires: now.Add(IdempotencyTTL)}
			if err := s.persist(st, keyID, idemKey, entry, changed); err != nil {
				res = errResult(http.StatusInternalServerError, plugipay.CodeInternal, "persist state: "+err.Error())
			} else {
				if changed != nil {
					if id == "" {
						st.loadedTail = false
					}
					st.insert(changed)
					st.writes++
					typ := plugipay.EventCustomerUpdated
					if id == "" {
						typ = plugipay.EventCustomerCreated
					}
					s.emit(typ, changed)
				}
				st.putIdem(keyID, idemKey, entry)
				if st.puts++; st.puts%pruneEvery == 0 {
					st.pruneIdem(now)
				}
			}
		}
	}
	st.mu.Unlock()

	if f.kind == faultTimeout {
		s.hang(w, r)
		return
	}
	if replayed {
		w.Header().Set(HeaderReplayed, "true")
	}
	s.respond(w, res)
}

// persist appends the write to the state log, if any. The caller holds st.mu.
func (s *Server) persist(st *store, keyID, idemKey string, e *idemEntry, c *record) error {
	if s.log == nil {
		return nil
	}
	return s.log.append(logLine{Account: logAccount(st, s.accountID), KeyID: keyID, Key: idemKey, Idem: e, Customer: c})
}

// stamp returns now at the emulator's millisecond precision, never before
// the newest createdAt, so creation order, createdAt order and id order
// agree even if the clock steps back.
func stamp(st *store, now time.Time) time.Time {
	t := now.UTC().Truncate(time.Millisecond)
	if t.Before(st.lastCreate) {
		t = st.lastCreate
	}
	if st.loadedTail && !t.After(st.lastCreate) {
		// A fresh monotonic entropy source could sort below the loaded ids
		// of the same millisecond.
		t = st.lastCreate.Add(time.Millisecond)
	}
	return t
}

// create validates body and builds the new customer. The caller holds st.mu
// and inserts the returned record once it is persisted.
func (s *Server) create(st *store, body []byte, now time.Time) (result, *record) {
	in, res := parseOrFail(body)
	if in == nil {
		return res, nil
	}
	if in.externalID.val != nil {
		if _, used := st.byExternal[*in.externalID.val]; used {
			return conflict(*in.externalID.val), nil
		}
	}
	t := stamp(st, now)
	id, err := st.newID(t)
	if err != nil {
		return errResult(http.StatusInternalServerError, plugipay.CodeInternal, err.Error()), nil
	}
	c := &record{ID: id, ARN: arn(st.account, id), AccountID: st.account, CreatedAt: t, UpdatedAt: t}
	in.apply(c)
	return dataResult(http.StatusCreated, c.wire()), c
}

// update validates body and builds the changed customer. The caller holds
// st.mu and inserts the returned record once it is persisted.
func (s *Server) update(st *store, id string, body []byte, now time.Time) (result, *record) {
	old, ok := st.byID[id]
	if !ok {
		return notFound(id), nil
	}
	in, res := parseOrFail(body)
	if in == nil {
		return res, nil
	}
	if in.externalID.val != nil {
		if owner, used := st.byExternal[*in.externalID.val]; used && owner != id {
			return conflict(*in.externalID.val), nil
		}
	}
	c := old.clone()
	in.apply(c)
	if !sameRecord(c, old) {
		t := now.UTC().Truncate(time.Millisecond)
		if t.Before(c.CreatedAt) {
			t = c.CreatedAt
		}
		c.UpdatedAt = t
	}
	return dataResult(http.StatusOK, c.wire()), c
}

func parseOrFail(body []byte) (*customerInput, result) {
	in, err := parseCustomerInput(body)
	if err != nil {
		var ve *validationError
		if errors.As(err, &ve) {
			return nil, errResult(http.StatusBadRequest, plugipay.CodeValidation, ve.msg)
		}
		return nil, errResult(http.StatusBadRequest, plugipay.CodeValidation, err.Error())
	}
	return in, result{}
}

func (in *customerInput) apply(c *record) {
	for _, f := range []struct {
		in  optString
		dst **string
	}{
		{in.externalID, &c.ExternalID},
		{in.email, &c.Email},
		{in.name, &c.Name},
		{in.phone, &c.Phone},
		{in.taxID, &c.TaxID},
		{in.paymentToken, &c.DefaultPaymentTokenID},
	} {
		if f.in.set {
			*f.dst = f.in.val
		}
	}
	if in.metadataSet {
		c.Metadata = maps.Clone(in.metadata)
	}
}

func sameRecord(a, b *record) bool {
	eq := func(x, y *string) bool { return (x == nil) == (y == nil) && (x == nil || *x == *y) }
	return eq(a.ExternalID, b.ExternalID) && eq(a.Email, b.Email) && eq(a.Name, b.Name) &&
		eq(a.Phone, b.Phone) && eq(a.TaxID, b.TaxID) && eq(a.DefaultPaymentTokenID, b.DefaultPaymentTokenID) &&
		maps.Equal(a.Metadata, b.Metadata)
}

func arn(account, id string) string {
	return "arn:plugipay:customer:" + account + ":" + id
}

func conflict(externalID string) result {
	return errResult(http.StatusConflict, plugipay.CodeConflict, "externalId "+strconv.Quote(externalID)+" is already used by another customer")
}

func notFound(id string) result {
	return errResult(http.StatusNotFound, plugipay.CodeNotFound, "no such customer: "+strconv.Quote(id))
}

// get answers GET /api/v1/customers/{id} in st's workspace: another
// workspace's id is not found there, as the spec requires.
func (s *Server) get(st *store, id string) result {
	st.mu.Lock()
	defer st.mu.Unlock()
	c, ok := st.byID[id]
	if !ok {
		return notFound(id)
	}
	return dataResult(http.StatusOK, c.wire())
}
