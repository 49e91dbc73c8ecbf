package emulator

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/plugipay-sync/plugipay-sync/plugipay"
)

// List limits.
const (
	DefaultListLimit = 25
	MaxListLimit     = 100
)

// listQuery is a validated list request.
type listQuery struct {
	limit        int
	desc         bool
	email        string
	externalID   string
	createdAfter *time.Time
	after        *cursor
}

// cursor is the position after the last item of a page. It is bound to the
// filter set through the filter hash F.
type cursor struct {
	V int    `json:"v"`
	T int64  `json:"t"` // createdAt, unix milliseconds
	I string `json:"i"` // customer id
	F string `json:"f"` // filterHash of the query that issued it
}

func (c *cursor) encode() string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string) (*cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	var c cursor
	if err := json.Unmarshal(b, &c); err != nil || c.V != 1 || c.I == "" || c.F == "" {
		return nil, fmt.Errorf("not a cursor issued by this API")
	}
	return &c, nil
}

// filterHash identifies the filter set and order a cursor belongs to.
func (q *listQuery) filterHash() string {
	after := ""
	if q.createdAfter != nil {
		after = strconv.FormatInt(q.createdAfter.UnixNano(), 10)
	}
	sum := sha256.Sum256(fmt.Appendf(nil, "email=%q\nexternalId=%q\ncreatedAfter=%s\ndesc=%t", q.email, q.externalID, after, q.desc))
	return hex.EncodeToString(sum[:8])
}

// parseListQuery validates the raw query strictly: known parameters only,
// each at most once, non-empty.
func (s *Server) parseListQuery(raw string) (*listQuery, error) {
	vals, err := url.ParseQuery(raw)
	if err != nil {
		return nil, invalid("query: malformed: %v", err)
	}
	q := &listQuery{limit: DefaultListLimit, desc: true}
	var rawCursor string
	for name, vs := range vals {
		if len(vs) != 1 {
			return nil, invalid("%s: given more than once", name)
		}
		v := vs[0]
		if v == "" {
			return nil, invalid("%s: must not be empty", name)
		}
		switch name {
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil {
				return nil, invalid("limit: must be an integer (got %q)", truncate(v, 40))
			}
			q.limit = min(max(n, 1), MaxListLimit)
		case "order":
			switch v {
			case "asc":
				q.desc = false
			case "desc":
				q.desc = true
			default:
				return nil, invalid("order: must be asc or desc (got %q)", truncate(v, 40))
			}
		case "email":
			q.email = v
		case "externalId":
			if !s.legacy { // older API versions ignore the filter entirely
				q.externalID = v
			}
		case "createdAfter":
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return nil, invalid("createdAfter: must be an RFC 3339 time (got %q)", truncate(v, 40))
			}
			q.createdAfter = &t
		case "cursor":
			rawCursor = v
		default:
			return nil, invalid("%s: unknown query parameter", name)
		}
	}
	if rawCursor != "" {
		c, err := decodeCursor(rawCursor)
		if err != nil {
			return nil, invalid("cursor: invalid: %v", err)
		}
		if c.F != q.filterHash() {
			return nil, invalid("cursor: was issued for a different filter set or order; restart the listing without a cursor")
		}
		q.after = c
	}
	return q, nil
}

// list answers GET /api/v1/customers. Pages follow a keyset (createdAt, id)
// cursor, so customers created during a walk never shift or repeat items.
func (s *Server) list(st *store, rawQuery string) (result, *page) {
	q, err := s.parseListQuery(rawQuery)
	if err != nil {
		return errResult(http.StatusBadRequest, plugipay.CodeValidation, err.Error()), nil
	}
	match := func(c *record) bool {
		if q.email != "" && (c.Email == nil || *c.Email != q.email) {
			return false
		}
		if q.externalID != "" && (c.ExternalID == nil || *c.ExternalID != q.externalID) {
			return false
		}
		return q.createdAfter == nil || c.CreatedAt.After(*q.createdAfter)
	}

	st.mu.Lock()
	items := make([]*record, 0, q.limit+1)
	ordered := st.ordered
	var pos *record
	if q.after != nil {
		pos = &record{ID: q.after.I, CreatedAt: time.UnixMilli(q.after.T).UTC()}
	}
	if q.desc {
		i := len(ordered) - 1
		if pos != nil {
			// first index whose record is not before pos, minus one
			i = searchPos(ordered, pos) - 1
		}
		for ; i >= 0 && len(items) <= q.limit; i-- {
			if match(ordered[i]) {
				items = append(items, ordered[i].clone())
			}
		}
	} else {
		i := 0
		if pos != nil {
			i = searchPos(ordered, pos)
			if i < len(ordered) && !pos.before(ordered[i]) && !ordered[i].before(pos) {
				i++ // skip the cursor's own item
			}
		}
		for ; i < len(ordered) && len(items) <= q.limit; i++ {
			if match(ordered[i]) {
				items = append(items, ordered[i].clone())
			}
		}
	}
	st.mu.Unlock()

	p := &page{}
	if len(items) > q.limit {
		items = items[:q.limit]
		last := items[len(items)-1]
		c := (&cursor{V: 1, T: last.CreatedAt.UnixMilli(), I: last.ID, F: q.filterHash()}).encode()
		p.cursor, p.hasMore = &c, true
	}
	out := make([]wireCustomer, len(items))
	for i, c := range items {
		out[i] = c.wire()
	}
	return dataResult(http.StatusOK, out), p
}

// searchPos returns the first index in ordered whose record is not before pos.
func searchPos(ordered []*record, pos *record) int {
	i, _ := slices.BinarySearchFunc(ordered, pos, func(a, b *record) int {
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
