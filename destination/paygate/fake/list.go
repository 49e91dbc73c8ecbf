package fake

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
)

// List limits.
const (
	DefaultListLimit = 10
	MaxListLimit     = 100
)

// listQuery is a validated list request.
type listQuery struct {
	limit         int
	startingAfter string
	endingBefore  string
	email         string
	gte, lte      *int64 // created bounds, unix seconds, inclusive
}

// listAnswer is the body of a list answer.
type listAnswer struct {
	Object  string         `json:"object"`
	Data    []wireCustomer `json:"data"`
	HasMore bool           `json:"has_more"`
	URL     string         `json:"url"`
}

// parseListQuery validates the raw query strictly: known parameters only,
// each at most once and non-empty.
func parseListQuery(raw string) (*listQuery, *ErrorBody) {
	vals, err := url.ParseQuery(raw)
	if err != nil {
		return nil, errBody(CodeParameterInvalid, "malformed query string: "+err.Error())
	}
	q := &listQuery{limit: DefaultListLimit}
	for name, vs := range vals {
		if len(vs) != 1 {
			return nil, errBody(CodeParameterInvalid, name+": given more than once")
		}
		v := vs[0]
		if v == "" {
			return nil, errBody(CodeParameterInvalid, name+": must not be empty")
		}
		switch name {
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > MaxListLimit {
				return nil, errBody(CodeParameterInvalid, "limit: must be an integer from 1 to 100 (got "+strconv.Quote(truncate(v, 40))+")")
			}
			q.limit = n
		case "starting_after":
			q.startingAfter = v
		case "ending_before":
			q.endingBefore = v
		case "email":
			q.email = v
		case "created[gte]", "created[lte]":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, errBody(CodeParameterInvalid, name+": must be a unix timestamp in seconds (got "+strconv.Quote(truncate(v, 40))+")")
			}
			if name == "created[gte]" {
				q.gte = &n
			} else {
				q.lte = &n
			}
		default:
			return nil, errBody(CodeParameterUnknown, "received unknown parameter: "+truncate(name, 50))
		}
	}
	if q.startingAfter != "" && q.endingBefore != "" {
		return nil, errBody(CodeParameterInvalid, "starting_after and ending_before cannot both be given")
	}
	return q, nil
}

func (q *listQuery) match(c *Customer) bool {
	if q.email != "" && c.Email != q.email {
		return false
	}
	// Bounds compare whole seconds, as a unix-seconds filter would on a
	// seconds-resolution created time.
	sec := c.CreatedAt.Unix()
	if q.gte != nil && sec < *q.gte {
		return false
	}
	return q.lte == nil || sec <= *q.lte
}

// list answers GET /v1/customers. Customers come newest first; a cursor is
// the id of a customer, and the page holds the matching customers right
// after (starting_after) or right before (ending_before) it in that order.
func (s *Server) list(rawQuery string) (int, any) {
	q, e := parseListQuery(rawQuery)
	if e != nil {
		return http.StatusBadRequest, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	items := make([]*Customer, 0, q.limit+1)
	switch {
	case q.endingBefore != "":
		// Walk towards newer customers, then put the page newest first.
		c, ok := s.byID[q.endingBefore]
		if !ok {
			return http.StatusBadRequest, cursorMissing("ending_before", q.endingBefore)
		}
		i, _ := slices.BinarySearchFunc(s.ordered, c, compareCustomers)
		for i++; i < len(s.ordered) && len(items) <= q.limit; i++ {
			if q.match(s.ordered[i]) {
				items = append(items, s.ordered[i])
			}
		}
		hasMore := len(items) > q.limit
		items = items[:min(len(items), q.limit)]
		slices.Reverse(items)
		return http.StatusOK, page(items, hasMore)
	default:
		i := len(s.ordered) - 1
		if q.startingAfter != "" {
			c, ok := s.byID[q.startingAfter]
			if !ok {
				return http.StatusBadRequest, cursorMissing("starting_after", q.startingAfter)
			}
			i, _ = slices.BinarySearchFunc(s.ordered, c, compareCustomers)
			i--
		}
		for ; i >= 0 && len(items) <= q.limit; i-- {
			if q.match(s.ordered[i]) {
				items = append(items, s.ordered[i])
			}
		}
		hasMore := len(items) > q.limit
		return http.StatusOK, page(items[:min(len(items), q.limit)], hasMore)
	}
}

func page(items []*Customer, hasMore bool) listAnswer {
	out := listAnswer{Object: "list", Data: make([]wireCustomer, len(items)), HasMore: hasMore, URL: RouteCustomers}
	for i, c := range items {
		out.Data[i] = c.wire()
	}
	return out
}

func cursorMissing(param, id string) *ErrorBody {
	return errBody(CodeResourceMissing, param+": no such customer: '"+truncate(id, 80)+"'")
}
