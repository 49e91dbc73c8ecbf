// Package fake is an in-memory HubSpot CRM contacts API for tests. It
// follows the fake-server checklist of shared/spec/crm-sources.md: bearer
// auth with HubSpot's 401 body, the list endpoint (limit capped at 100,
// comma-separated or repeated properties, string/null values, paging.next
// except on the last page, archived=true returning only archived
// contacts), the search endpoint (EQ/GT/GTE/LT/LTE/BETWEEN on
// lastmodifieddate in epoch ms, one sort in object or string form, limit
// at most 200, total, a numeric after, 400 past 10,000 results, archived
// excluded), rate limits (a ten-second bucket with X-HubSpot-RateLimit-*
// headers on list calls, a search bucket of 5 a second, a daily budget;
// 429 bodies with policyName), and hooks to inject errors (with a Retry-After if asked) and search lag.
// It serves both /crm/v3/objects and dated /crm/objects/YYYY-MM prefixes.
package fake

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	stdsync "sync"
	"time"
)

// SearchCap is the most results one search query pages through.
const SearchCap = 10000

// Contact is one contact the fake holds. Props holds property values; a
// property the server knows but the contact lacks is returned as null.
type Contact struct {
	ID       int
	Props    map[string]string
	Created  time.Time
	Updated  time.Time // lastmodifieddate
	Archived bool
	// mergedInto is the contact this one was merged into (see Merge).
	mergedInto int
}

// Options configure a Server. Zero limits are off.
type Options struct {
	Token string
	// TenSecondMax is the ten-second bucket of non-search calls.
	TenSecondMax int
	// SearchPerSecond is the search bucket (HubSpot: 5).
	SearchPerSecond int
	// DailyMax is the daily budget of all calls.
	DailyMax int
	// SearchLag hides contacts updated less than this long ago from
	// search (HubSpot's index lags its writes).
	SearchLag time.Duration
	// Now is the clock.
	Now func() time.Time
}

// Server is the fake. Use it as an http.Handler.
type Server struct {
	opts Options
	mu   stdsync.Mutex
	// contacts by ID, kept sorted by ID.
	contacts []*Contact
	props    map[string]bool
	// injected are responses served before any real one (status, policy).
	injected []injected
	tenStart time.Time
	tenCount int
	secStart time.Time
	secCount int
	daily    int
	// Requests counts requests by "METHOD path-kind" (list, archived, search).
	requests map[string]int
	// SearchBodies are the search request bodies received, in order.
	searchBodies []SearchRequest
}

type injected struct {
	status     int
	policy     string
	retryAfter string
}

// New returns an empty server knowing the default contact properties.
func New(opts Options) *Server {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{opts: opts, requests: map[string]int{}, props: map[string]bool{}}
	for _, p := range []string{"createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname", "phone", "mobilephone", "company", "country"} {
		s.props[p] = true
	}
	return s
}

// DefineProperty makes a custom property known.
func (s *Server) DefineProperty(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.props[name] = true
}

// Put inserts or replaces c.
func (s *Server) Put(c Contact) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.Created.IsZero() {
		c.Created = c.Updated
	}
	i, found := slices.BinarySearchFunc(s.contacts, c.ID, func(x *Contact, id int) int { return x.ID - id })
	if found {
		s.contacts[i] = &c
		return
	}
	s.contacts = slices.Insert(s.contacts, i, &c)
}

// Archive archives contact id, as DELETE does.
func (s *Server) Archive(id int, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.contacts {
		if c.ID == id {
			c.Archived, c.Updated = true, at
		}
	}
}

// Inject makes the next request answer status; for 429 policy is the
// policyName (TEN_SECONDLY_ROLLING, SECONDLY or DAILY).
func (s *Server) Inject(status int, policy string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.injected = append(s.injected, injected{status: status, policy: policy})
}

// InjectRetryAfter is Inject with a Retry-After header (seconds or an
// HTTP date) on the answer. HubSpot does not document one on a 429, but
// sends it on a 477 (migration in progress), and a proxy in front of it
// may add one: the client must honour it up to its cap.
func (s *Server) InjectRetryAfter(status int, policy, retryAfter string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.injected = append(s.injected, injected{status: status, policy: policy, retryAfter: retryAfter})
}

// Requests returns how many requests of kind ("list", "archived",
// "search") were served (errors included).
func (s *Server) Requests(kind string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[kind]
}

// SearchRequests returns the search bodies received.
func (s *Server) SearchRequests() []SearchRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.searchBodies)
}

var pathRE = regexp.MustCompile(`^/crm/(?:v3/objects|objects/\d{4}-\d{2})/contacts(/search)?$`)

// ServeHTTP implements the API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if batchRE.MatchString(r.URL.Path) {
		s.serveBatchRead(w, r)
		return
	}
	m := pathRE.FindStringSubmatch(r.URL.Path)
	if m == nil {
		writeError(w, http.StatusNotFound, "OBJECT_NOT_FOUND", "unknown path "+r.URL.Path, nil)
		return
	}
	search := m[1] != ""
	kind := "list"
	switch {
	case search:
		kind = "search"
	case r.URL.Query().Get("archived") == "true":
		kind = "archived"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests[kind]++
	if search && r.Method != http.MethodPost || !search && r.Method != http.MethodGet {
		writeError(w, http.StatusMethodNotAllowed, "VALIDATION_ERROR", "method not allowed", nil)
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+s.opts.Token || s.opts.Token == "" {
		writeError(w, http.StatusUnauthorized, "INVALID_AUTHENTICATION",
			"Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview", nil)
		return
	}
	if len(s.injected) > 0 {
		in := s.injected[0]
		s.injected = s.injected[1:]
		if in.retryAfter != "" {
			w.Header().Set("Retry-After", in.retryAfter)
		}
		if in.status == http.StatusTooManyRequests {
			s.rateLimited(w, in.policy)
			return
		}
		writeError(w, in.status, "INTERNAL_ERROR", "injected failure", nil)
		return
	}
	if !s.allow(w, search) {
		return
	}
	if search {
		s.search(w, r)
		return
	}
	s.list(w, r, kind == "archived")
}

// allow applies the rate limits and sets the headers.
func (s *Server) allow(w http.ResponseWriter, search bool) bool {
	now := s.opts.Now()
	if s.opts.DailyMax > 0 {
		if s.daily >= s.opts.DailyMax {
			s.rateLimited(w, "DAILY")
			return false
		}
		s.daily++
	}
	if search {
		if s.opts.SearchPerSecond > 0 {
			if now.Sub(s.secStart) >= time.Second {
				s.secStart, s.secCount = now, 0
			}
			if s.secCount >= s.opts.SearchPerSecond {
				s.rateLimited(w, "SECONDLY")
				return false
			}
			s.secCount++
		}
		return true // search responses carry no rate-limit headers
	}
	if s.opts.TenSecondMax > 0 {
		if now.Sub(s.tenStart) >= 10*time.Second {
			s.tenStart, s.tenCount = now, 0
		}
		h := w.Header()
		h.Set("X-HubSpot-RateLimit-Interval-Milliseconds", "10000")
		h.Set("X-HubSpot-RateLimit-Max", strconv.Itoa(s.opts.TenSecondMax))
		if s.tenCount >= s.opts.TenSecondMax {
			h.Set("X-HubSpot-RateLimit-Remaining", "0")
			s.rateLimited(w, "TEN_SECONDLY_ROLLING")
			return false
		}
		s.tenCount++
		h.Set("X-HubSpot-RateLimit-Remaining", strconv.Itoa(s.opts.TenSecondMax-s.tenCount))
	}
	if s.opts.DailyMax > 0 {
		w.Header().Set("X-HubSpot-RateLimit-Daily", strconv.Itoa(s.opts.DailyMax))
		w.Header().Set("X-HubSpot-RateLimit-Daily-Remaining", strconv.Itoa(s.opts.DailyMax-s.daily))
	}
	return true
}

func (s *Server) rateLimited(w http.ResponseWriter, policy string) {
	msg := "You have reached your ten_secondly_rolling limit."
	switch policy {
	case "SECONDLY":
		msg = "You have reached your secondly limit."
	case "DAILY":
		msg = "You have reached your daily limit."
	}
	writeError(w, http.StatusTooManyRequests, "RATE_LIMITS", msg, map[string]any{"errorType": "RATE_LIMIT", "policyName": policy})
}

func writeError(w http.ResponseWriter, status int, category, msg string, extra map[string]any) {
	body := map[string]any{"status": "error", "message": msg, "correlationId": "c0ffee00-0000-4000-8000-" + fmt.Sprintf("%012d", status), "category": category}
	for k, v := range extra {
		body[k] = v
	}
	w.Header().Set("Content-Type", "application/json;charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}

// object renders c with the requested properties.
func (s *Server) object(c *Contact, props []string) map[string]any {
	p := map[string]any{}
	for _, name := range props {
		if !s.props[name] {
			continue // unknown properties are silently ignored
		}
		switch name {
		case "hs_object_id":
			p[name] = strconv.Itoa(c.ID)
		case "lastmodifieddate":
			p[name] = c.Updated.UTC().Format("2006-01-02T15:04:05.000Z")
		case "createdate":
			p[name] = c.Created.UTC().Format("2006-01-02T15:04:05.000Z")
		default:
			if v, ok := c.Props[name]; ok {
				p[name] = v
			} else {
				p[name] = nil
			}
		}
	}
	o := map[string]any{"id": strconv.Itoa(c.ID), "properties": p,
		"createdAt": c.Created.UTC().Format(time.RFC3339Nano), "updatedAt": c.Updated.UTC().Format(time.RFC3339Nano), "archived": c.Archived}
	if c.Archived {
		o["archivedAt"] = c.Updated.UTC().Format(time.RFC3339Nano)
	}
	return o
}

// defaultProps are returned when a request names none.
var defaultProps = []string{"createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"}

func (s *Server) list(w http.ResponseWriter, r *http.Request, archived bool) {
	q := r.URL.Query()
	limit := 10
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "limit must be a positive integer", nil)
			return
		}
		limit = min(n, 100)
	}
	var props []string
	for _, v := range q["properties"] {
		for p := range strings.SplitSeq(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				props = append(props, p)
			}
		}
	}
	if props == nil {
		props = defaultProps
	}
	after := 0
	if v := q.Get("after"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "invalid after", nil)
			return
		}
		after = n
	}
	var results []map[string]any
	next, lastID := "", 0
	for _, c := range s.contacts {
		if c.ID <= after || c.Archived != archived || c.mergedInto != 0 {
			continue
		}
		if len(results) == limit {
			next = strconv.Itoa(lastID)
			break
		}
		results = append(results, s.object(c, props))
		lastID = c.ID
	}
	body := map[string]any{"results": nonNil(results)}
	if next != "" {
		link := "https://api.hubapi.com" + r.URL.Path + "?after=" + next
		body["paging"] = map[string]any{"next": map[string]any{"after": next, "link": link}}
	}
	writeJSON(w, body)
}

func nonNil(r []map[string]any) []map[string]any {
	if r == nil {
		return []map[string]any{}
	}
	return r
}

func writeJSON(w http.ResponseWriter, body any) {
	w.Header().Set("Content-Type", "application/json;charset=utf-8")
	_ = json.NewEncoder(w).Encode(body)
}

// SearchRequest is the body of a search call.
type SearchRequest struct {
	FilterGroups []struct {
		Filters []Filter `json:"filters"`
	} `json:"filterGroups"`
	Sorts      []json.RawMessage `json:"sorts"`
	Properties []string          `json:"properties"`
	Limit      int               `json:"limit"`
	After      string            `json:"after"`
}

// Filter is one search filter.
type Filter struct {
	PropertyName string `json:"propertyName"`
	Operator     string `json:"operator"`
	Value        string `json:"value"`
	HighValue    string `json:"highValue"`
}

func (s *Server) search(w http.ResponseWriter, r *http.Request) {
	var req SearchRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "Invalid input JSON: "+err.Error(), nil)
		return
	}
	s.searchBodies = append(s.searchBodies, req)
	if len(req.Sorts) > 1 {
		writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "only one sort is allowed", nil)
		return
	}
	desc := false
	sortProp := "hs_object_id"
	if len(req.Sorts) == 1 {
		var obj struct{ PropertyName, Direction string }
		var str string
		switch {
		case json.Unmarshal(req.Sorts[0], &obj) == nil && obj.PropertyName != "":
			sortProp, desc = obj.PropertyName, obj.Direction == "DESCENDING"
		case json.Unmarshal(req.Sorts[0], &str) == nil && str != "":
			sortProp, desc = strings.TrimPrefix(str, "-"), strings.HasPrefix(str, "-")
		default:
			writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "invalid sort", nil)
			return
		}
	}
	if sortProp != "lastmodifieddate" && sortProp != "hs_object_id" {
		writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "the fake sorts by lastmodifieddate or hs_object_id only", nil)
		return
	}
	limit := req.Limit
	if limit == 0 {
		limit = 10
	}
	if limit < 1 || limit > 200 {
		writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "limit must be between 1 and 200", nil)
		return
	}
	after := 0
	if req.After != "" {
		n, err := strconv.Atoi(req.After)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", "after must be numeric", nil)
			return
		}
		after = n
	}
	if after+limit > SearchCap {
		writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", fmt.Sprintf("paging beyond %d results is not supported", SearchCap), nil)
		return
	}
	now := s.opts.Now()
	var hits []*Contact
	for _, c := range s.contacts {
		if c.Archived || (s.opts.SearchLag > 0 && now.Sub(c.Updated) < s.opts.SearchLag) {
			continue
		}
		ok, err := matches(c, req)
		if err != nil {
			writeError(w, http.StatusBadRequest, "VALIDATION_ERROR", err.Error(), nil)
			return
		}
		if ok {
			hits = append(hits, c)
		}
	}
	if sortProp == "lastmodifieddate" {
		slices.SortStableFunc(hits, func(a, b *Contact) int { return a.Updated.Compare(b.Updated) })
	}
	if desc {
		slices.Reverse(hits)
	}
	props := req.Properties
	if props == nil {
		props = defaultProps
	}
	var results []map[string]any
	for _, c := range hits[min(after, len(hits)):min(after+limit, len(hits))] {
		results = append(results, s.object(c, props))
	}
	body := map[string]any{"total": len(hits), "results": nonNil(results)}
	if after+limit < len(hits) {
		body["paging"] = map[string]any{"next": map[string]any{"after": strconv.Itoa(after + limit)}}
	}
	writeJSON(w, body)
}

// matches applies the filter groups (ORed; filters ANDed).
func matches(c *Contact, req SearchRequest) (bool, error) {
	if len(req.FilterGroups) == 0 {
		return true, nil
	}
	for _, g := range req.FilterGroups {
		all := true
		for _, f := range g.Filters {
			if f.PropertyName != "lastmodifieddate" {
				return false, fmt.Errorf("the fake filters on lastmodifieddate only, not %q", f.PropertyName)
			}
			v, err := strconv.ParseInt(f.Value, 10, 64)
			if err != nil {
				return false, fmt.Errorf("lastmodifieddate filter value %q is not epoch milliseconds", f.Value)
			}
			ms := c.Updated.UnixMilli()
			var ok bool
			switch f.Operator {
			case "EQ":
				ok = ms == v
			case "GT":
				ok = ms > v
			case "GTE":
				ok = ms >= v
			case "LT":
				ok = ms < v
			case "LTE":
				ok = ms <= v
			case "BETWEEN":
				hi, err := strconv.ParseInt(f.HighValue, 10, 64)
				if err != nil {
					return false, fmt.Errorf("BETWEEN needs highValue in epoch milliseconds")
				}
				ok = ms >= v && ms <= hi
			default:
				return false, fmt.Errorf("operator %q not supported by the fake", f.Operator)
			}
			all = all && ok
		}
		if all {
			return true, nil
		}
	}
	return false, nil
}
