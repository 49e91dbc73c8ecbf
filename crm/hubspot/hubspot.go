// Package hubspot is the HubSpot CRM source: contacts read through the CRM
// objects API with a static bearer token (a private-app token or a service
// key). A full read pages the list endpoint (limit=100, the after cursor,
// explicit properties) and then the archived list, whose contacts are
// reported as deleted. An incremental read searches on lastmodifieddate
// (epoch ms, GTE the watermark minus a lookback, ascending, 200 a page),
// starting a new search from the newest timestamp seen before the
// 10,000-result cap of one search query. Requests go through the module's
// one transport (internal/transport): its retry policy, refined by
// HubSpot's policyName (advise), a Retry-After honoured up to one cap, and
// the API metrics with destination "hubspot". See
// shared/spec/crm-sources.md, section 1.
package hubspot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	stdsync "sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/plugipay-sync/plugipay-sync/crm"
	"github.com/plugipay-sync/plugipay-sync/internal/transport"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

var (
	_ sync.PartialSource = (*Source)(nil)
	_ sync.Committer     = (*Source)(nil)
)

// Defaults of Options.
const (
	DefaultBaseURL       = "https://api.hubapi.com"
	DefaultPathPrefix    = "/crm/v3/objects"
	DefaultLookback      = 5 * time.Minute
	DefaultFullScanEvery = 24
	DefaultMaxAttempts   = 5
	// DefaultMaxRetryAfter is the longest Retry-After waited.
	DefaultMaxRetryAfter = transport.DefaultMaxRetryAfter
	// ListPageSize is the list endpoint's maximum page; SearchPageSize the
	// search endpoint's; SearchCap the results one search query reaches.
	ListPageSize   = 100
	SearchPageSize = 200
	SearchCap      = 10000
)

// IDField is the mapping field that reads the contact's id rather than a
// property.
const IDField = "id"

// ErrDailyLimit: HubSpot's daily request budget is spent; the run stops.
var ErrDailyLimit = errors.New("hubspot: daily API limit reached")

// Options configures the source.
type Options struct {
	BaseURL string
	// PathPrefix is /crm/v3/objects (retired in 2027) or a dated prefix
	// such as /crm/objects/2026-09.
	PathPrefix string
	Token      string
	// Fields maps customer fields to contact properties; "id" is the
	// contact id.
	Fields    crm.ColumnMap
	Normalize crm.Normalize
	// Incremental turns on the search-based read; Watermarks must be set.
	Incremental      bool
	Lookback         time.Duration
	FullScanEvery    int
	FullScanInterval time.Duration
	Watermarks       crm.WatermarkStore
	// HTTPClient sends the requests; nil means a client of its own.
	HTTPClient *http.Client
	// Timeout bounds one attempt (default 30 s).
	Timeout time.Duration
	// MaxAttempts per request, retries of 429/423/5xx included.
	MaxAttempts int
	// MaxRetryAfter is the longest Retry-After waited (default 1m); a
	// longer one ends the read at once with the wait in the error.
	MaxRetryAfter time.Duration
	// RequestsPerSecond caps the requests (the transport's Limiter);
	// 0 means no client-side cap: HubSpot's 429s, backed off by
	// policyName, pace the read.
	RequestsPerSecond float64
	// Registerer receives the API metrics (destination "hubspot"); nil
	// records none.
	Registerer prometheus.Registerer
	// Logger receives one line per retry; nil logs nothing.
	Logger *zap.Logger
	// Sleep waits d or until ctx is done; tests replace it.
	Sleep func(ctx context.Context, d time.Duration) error
	Now   func() time.Time
}

// Source streams HubSpot contacts.
type Source struct {
	opts    Options
	t       *transport.Client
	limiter *transport.Limiter
	mapper  *crm.Mapper
	props   []string // properties to request
	mu      stdsync.Mutex
	full    bool // the last finished read was complete
	// pending is the watermark the last finished read prepared.
	pending crm.PendingWatermark
}

// New validates opts; it makes no request.
func New(opts Options) (*Source, error) {
	if opts.BaseURL == "" {
		opts.BaseURL = DefaultBaseURL
	}
	if opts.PathPrefix == "" {
		opts.PathPrefix = DefaultPathPrefix
	}
	opts.BaseURL = strings.TrimRight(opts.BaseURL, "/")
	opts.PathPrefix = "/" + strings.Trim(opts.PathPrefix, "/")
	if u, err := url.Parse(opts.BaseURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("crm.hubspot.base_url: %q is not an http(s) URL", opts.BaseURL)
	}
	if opts.Token == "" {
		return nil, errors.New("crm.hubspot.token: required (a private-app token or service key, e.g. token: ${HUBSPOT_TOKEN})")
	}
	if opts.Lookback < 0 {
		return nil, errors.New("crm.hubspot.lookback: must not be negative")
	}
	if opts.Incremental && opts.Watermarks == nil {
		return nil, errors.New("crm.hubspot.incremental: needs a watermark store")
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = DefaultMaxAttempts
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Timeout < 0 || opts.MaxRetryAfter < 0 || opts.RequestsPerSecond < 0 {
		return nil, errors.New("hubspot: Timeout, MaxRetryAfter and RequestsPerSecond must not be negative")
	}
	m, err := transport.NewMetrics(opts.Registerer, metricsDestination)
	if err != nil {
		return nil, fmt.Errorf("hubspot: register metrics: %w", err)
	}
	m.Init([]string{opList, opSearch, opBatchRead}, metricCodes, append(transport.Reasons, transport.ReasonLocked), []string{"all"})
	topts := transport.Options{
		API:           metricsDestination,
		HTTPClient:    opts.HTTPClient,
		Timeout:       opts.Timeout,
		MaxAttempts:   opts.MaxAttempts,
		MinBackoff:    time.Second,
		MaxBackoff:    30 * time.Second,
		MaxRetryAfter: opts.MaxRetryAfter,
		MaxBody:       32 << 20,
		ParseError:    parseError,
		Advise:        advise,
		Code:          metricCode,
		Logger:        opts.Logger,
		Sleep:         opts.Sleep,
		Now:           opts.Now,
	}
	if m != nil {
		topts.Observer = m
	}
	t, err := transport.New(topts)
	if err != nil {
		return nil, fmt.Errorf("hubspot: %w", err)
	}
	var limiter *transport.Limiter
	if opts.RequestsPerSecond > 0 {
		limiter = transport.NewLimiter(transport.LimiterOptions{PerSecond: opts.RequestsPerSecond, Burst: 1})
	}
	mp, err := crm.NewMapper(opts.Fields, opts.Normalize, "crm.hubspot.fields")
	if err != nil {
		return nil, err
	}
	props := []string{"lastmodifieddate"}
	for _, f := range mp.Fields() {
		if f != IDField && f != "lastmodifieddate" {
			props = append(props, f)
		}
	}
	return &Source{opts: opts, t: t, limiter: limiter, mapper: mp, props: props}, nil
}

// WatermarkKey is the key of the source's watermark.
func (s *Source) WatermarkKey() string { return "hubspot:contacts" }

// LastReadComplete reports whether the last finished read was a full
// list read (see sync.PartialSource).
func (s *Source) LastReadComplete() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.full
}

// contact is one result of the list or search endpoints.
type contact struct {
	ID         string             `json:"id"`
	Properties map[string]*string `json:"properties"`
	UpdatedAt  string             `json:"updatedAt"`
	Archived   bool               `json:"archived"`
}

type page struct {
	Total   int       `json:"total"`
	Results []contact `json:"results"`
	Paging  *struct {
		Next *struct {
			After string `json:"after"`
		} `json:"next"`
	} `json:"paging"`
}

func (p *page) next() string {
	if p.Paging == nil || p.Paging.Next == nil {
		return ""
	}
	return p.Paging.Next.After
}

// Records reads the contacts: a full list read and the archived list on
// the first run and whenever a full scan is due, otherwise an incremental
// search. A contact whose values fail the checks is a *sync.RecordError
// with Ref "contact <id>"; an HTTP failure that retries cannot fix, a
// mapped property HubSpot does not have, and ctx being done end the stream.
func (s *Source) Records(ctx context.Context) iter.Seq2[sync.Record, error] {
	return func(yield func(sync.Record, error) bool) {
		s.mu.Lock()
		s.full = false
		s.pending.Clear()
		s.mu.Unlock()
		r := &read{s: s, vals: make([]string, len(s.mapper.Fields()))}
		full := true
		if s.opts.Incremental {
			w, ok, err := s.opts.Watermarks.Watermark(ctx, s.WatermarkKey())
			if err != nil {
				yield(sync.Record{}, fmt.Errorf("crm: hubspot: %w", err))
				return
			}
			r.prev = w
			full = !ok || crm.FullScanDue(w, s.opts.FullScanEvery, s.opts.FullScanInterval, s.opts.Now())
		}
		var ok bool
		if full {
			ok = r.list(ctx, false, yield)
		} else {
			var fellBack bool
			ok, fellBack = r.search(ctx, r.prev.At.Add(-s.opts.Lookback), yield)
			if ok && fellBack {
				full = true
				ok = r.list(ctx, false, yield)
			}
		}
		// Archived contacts have no date filter: read them on every run.
		if !ok || !r.list(ctx, true, yield) {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.full = full
		if s.opts.Incremental {
			s.pending.Set(r.prev.Next(r.maxAt, full, s.opts.Now()))
		}
	}
}

// Commit stores the watermark the last complete read prepared (see
// sync.Committer): the reconciler calls it once the run's writes are done.
func (s *Source) Commit(ctx context.Context) error {
	if err := s.pending.Commit(ctx, s.opts.Watermarks, s.WatermarkKey()); err != nil {
		return fmt.Errorf("crm: hubspot: %w", err)
	}
	return nil
}

// read is one Records call.
type read struct {
	s       *Source
	prev    crm.Watermark
	maxAt   time.Time
	vals    []string
	checked bool
}

// list pages the list endpoint (archived: the archived list).
func (r *read) list(ctx context.Context, archived bool, yield func(sync.Record, error) bool) bool {
	s := r.s
	after := ""
	for {
		q := url.Values{}
		q.Set("limit", strconv.Itoa(ListPageSize))
		q.Set("properties", strings.Join(s.props, ","))
		if archived {
			q.Set("archived", "true")
		}
		if after != "" {
			q.Set("after", after)
		}
		var p page
		if err := s.do(ctx, opList, http.MethodGet, "/contacts?"+q.Encode(), nil, &p); err != nil {
			yield(sync.Record{}, err)
			return false
		}
		for _, c := range p.Results {
			if !r.emit(c, archived, yield) {
				return false
			}
		}
		if after = p.next(); after == "" {
			return true
		}
	}
}

// searchBody is the body of one search request.
type searchBody struct {
	FilterGroups []filterGroup `json:"filterGroups"`
	Sorts        []sortRule    `json:"sorts"`
	Properties   []string      `json:"properties"`
	Limit        int           `json:"limit"`
	After        string        `json:"after,omitempty"`
}

type filterGroup struct {
	Filters []filter `json:"filters"`
}

type filter struct {
	PropertyName string `json:"propertyName"`
	Operator     string `json:"operator"`
	Value        string `json:"value"`
}

type sortRule struct {
	PropertyName string `json:"propertyName"`
	Direction    string `json:"direction"`
}

// search reads contacts modified at or after from, ascending. Before one
// query would page past SearchCap it starts a new one from the newest
// lastmodifieddate seen, skipping the contacts already read at that
// timestamp. fellBack reports that one timestamp holds more than a query
// can page through (a bulk edit): the caller reads the full list instead.
func (r *read) search(ctx context.Context, from time.Time, yield func(sync.Record, error) bool) (ok, fellBack bool) {
	s := r.s
	// atFrom are the ids read whose lastmodifieddate equals the newest
	// seen: the next query starts there and returns them again.
	atFrom := map[string]bool{}
	newest := time.Time{}
	for {
		after, read, progressed := 0, 0, false
		for {
			body := searchBody{
				FilterGroups: []filterGroup{{Filters: []filter{{PropertyName: "lastmodifieddate", Operator: "GTE", Value: strconv.FormatInt(from.UnixMilli(), 10)}}}},
				Sorts:        []sortRule{{PropertyName: "lastmodifieddate", Direction: "ASCENDING"}},
				Properties:   s.props,
				Limit:        SearchPageSize,
			}
			if after > 0 {
				body.After = strconv.Itoa(after)
			}
			var p page
			if err := s.do(ctx, opSearch, http.MethodPost, "/contacts/search", body, &p); err != nil {
				yield(sync.Record{}, err)
				return false, false
			}
			for _, c := range p.Results {
				read++
				at := lastModified(c)
				if atFrom[c.ID] && !at.After(newest) {
					continue // read by the previous query
				}
				if at.After(newest) {
					newest = at
					clear(atFrom)
					progressed = true
				}
				atFrom[c.ID] = true
				if !r.emit(c, false, yield) {
					return false, false
				}
			}
			next := p.next()
			if next == "" {
				return true, false
			}
			if after, _ = strconv.Atoi(next); after+SearchPageSize > SearchCap {
				break // the next page would cross the cap: new query
			}
		}
		if !progressed || !newest.After(from) {
			return true, true
		}
		from = newest
	}
}

// lastModified reads a contact's lastmodifieddate (ISO in properties),
// falling back to updatedAt.
func lastModified(c contact) time.Time {
	for _, v := range []*string{c.Properties["lastmodifieddate"], &c.UpdatedAt} {
		if v == nil {
			continue
		}
		if t, err := time.Parse(time.RFC3339Nano, *v); err == nil {
			return t.UTC()
		}
		if ms, err := strconv.ParseInt(*v, 10, 64); err == nil {
			return time.UnixMilli(ms).UTC()
		}
	}
	return time.Time{}
}

// emit yields one contact.
func (r *read) emit(c contact, archived bool, yield func(sync.Record, error) bool) bool {
	s := r.s
	ref := "contact " + c.ID
	if !archived {
		if at := lastModified(c); at.After(r.maxAt) {
			r.maxAt = at
		}
	}
	if !r.checked && !archived {
		// HubSpot ignores properties it does not have; it returns those it
		// has, null when unset. So the first contact shows which exist.
		err := s.mapper.Check(func(f string) bool {
			if f == IDField {
				return true
			}
			_, ok := c.Properties[f]
			return ok
		}, "HubSpot (contact properties)")
		if err != nil {
			yield(sync.Record{}, err)
			return false
		}
		r.checked = true
	}
	for i, f := range s.mapper.Fields() {
		switch v := c.Properties[f]; {
		case f == IDField:
			r.vals[i] = c.ID
		case v == nil:
			r.vals[i] = ""
		default:
			r.vals[i] = *v
		}
	}
	if archived || c.Archived {
		id := strings.TrimSpace(r.vals[0])
		if id == "" {
			return yield(sync.Record{}, &sync.RecordError{Ref: ref, Reason: "archived contact without an externalId"})
		}
		return yield(sync.Record{ExternalID: id, Ref: ref, Deleted: true}, nil)
	}
	rec, rerr := s.mapper.Record(r.vals, ref)
	if rerr != nil {
		return yield(sync.Record{}, rerr)
	}
	return yield(rec, nil)
}

// Error is a failed HubSpot call.
type Error struct {
	Status        int
	Category      string
	Message       string
	PolicyName    string
	CorrelationID string
	// Note says why retrying stopped early, e.g. a Retry-After over the
	// cap.
	Note string
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("hubspot: %d %s: %s", e.Status, e.Category, e.Message)
	if e.CorrelationID != "" {
		msg += " (correlation " + e.CorrelationID + ")"
	}
	if e.Note != "" {
		msg += " (" + e.Note + ")"
	}
	switch e.Status {
	case http.StatusUnauthorized:
		msg += "; check crm.hubspot.token (a private-app token or service key)"
	case http.StatusForbidden:
		msg += "; the token needs the crm.objects.contacts.read scope"
	}
	return msg
}

// Metrics labels: the destination label of HubSpot's calls (a source,
// not a destination, but one more bounded value of the same label), its
// operations, and the closed set of codes metricCode gives.
const (
	metricsDestination = "hubspot"
	opList             = "list"
	opSearch           = "search"
	opBatchRead        = "batch_read" // targeted syncs (byid.go)
)

var metricCodes = []string{"ok", "unauthorized", "not_found", "invalid", "rate_limited", "daily_limit",
	"locked", "server_error", "network_error", "timeout", "canceled", "invalid_response", "other"}

// metricCode names a failed call for the code label.
func metricCode(e *transport.Error) string {
	switch {
	case e.Kind == transport.KindStatus && e.Status == http.StatusTooManyRequests && policyOf(e) == "DAILY":
		return "daily_limit"
	case e.Kind != transport.KindStatus:
		if c := e.Kind.String(); slices.Contains(metricCodes, c) {
			return c
		}
		return "other"
	}
	switch s := e.Status; {
	case s == http.StatusUnauthorized, s == http.StatusForbidden:
		return "unauthorized"
	case s == http.StatusNotFound:
		return "not_found"
	case s == http.StatusBadRequest:
		return "invalid"
	case s == http.StatusTooManyRequests:
		return "rate_limited"
	case s == http.StatusLocked:
		return "locked"
	case s >= 500:
		return "server_error"
	}
	return "other"
}

// errorBody is HubSpot's error answer.
type errorBody struct {
	Message, Category, PolicyName, CorrelationID string
}

func parseErrorBody(body []byte) errorBody {
	var eb errorBody
	_ = json.Unmarshal(body, &eb)
	return eb
}

// parseError gives the transport the category as the code and the
// correlation id as the request id (for the retry log).
func parseError(_ int, _ http.Header, body []byte) (code, message, requestID string) {
	eb := parseErrorBody(body)
	return eb.Category, eb.Message, eb.CorrelationID
}

func policyOf(e *transport.Error) string { return parseErrorBody(e.Body).PolicyName }

// advise refines the transport's policy with HubSpot's guidance (the
// spec, and HubSpot's own Node SDK): a 429 waits 10 s × attempt for the
// ten-second bucket and 1 s × attempt for the search (SECONDLY) bucket,
// and is not retried at all for the DAILY budget; a 423 is retried after
// at least 2 s × attempt, a 477 (migration in progress) as a 5xx; 5xx wait
// 1 s × attempt. A Retry-After, when HubSpot (or a proxy) sends one, wins
// over these waits, up to the cap. Network errors and timeouts take the
// transport's backoff schedule.
func advise(e *transport.Error, n int) transport.Advice {
	if e.Kind != transport.KindStatus {
		return transport.Advice{}
	}
	k := time.Duration(n)
	switch s := e.Status; {
	case s == http.StatusTooManyRequests:
		switch policyOf(e) {
		case "DAILY":
			return transport.Advice{Stop: true, Reason: "daily limit"}
		case "SECONDLY":
			return transport.Advice{Wait: k * time.Second}
		}
		return transport.Advice{Wait: k * 10 * time.Second}
	case s == http.StatusLocked:
		return transport.Advice{Retry: true, Wait: k * 2 * time.Second, Reason: transport.ReasonLocked}
	case s == 477:
		return transport.Advice{Retry: true, Wait: k * time.Second, Reason: transport.ReasonServer}
	case s >= 500:
		return transport.Advice{Wait: k * time.Second}
	}
	return transport.Advice{}
}

// do sends one request through the transport and decodes the JSON answer
// into out. Every HubSpot call is a read (search is a POST that changes
// nothing), so every one may be retried. The transport's error is mapped
// to this package's: an answer to *Error (ErrDailyLimit for the DAILY
// budget), anything else wrapped as it is.
func (s *Source) do(ctx context.Context, op, method, path string, body, out any) error {
	var payload []byte
	h := http.Header{}
	h.Set("Accept", "application/json")
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return err
		}
		h.Set("Content-Type", "application/json")
	}
	req := &transport.Request{
		Op: op, Method: method, URL: s.opts.BaseURL + s.opts.PathPrefix + path, Header: h, Body: payload,
		Idempotent: true,
		Prepare: func(r *http.Request) error {
			r.Header.Set("Authorization", "Bearer "+s.opts.Token)
			return nil
		},
		Check: func(resp *transport.Response) error { return json.Unmarshal(resp.Body, out) },
	}
	if s.limiter != nil {
		req.Limiter, req.Bucket = s.limiter, "all"
	}
	_, err := s.t.Do(ctx, req)
	if err == nil {
		return nil
	}
	var te *transport.Error
	if !errors.As(err, &te) {
		return fmt.Errorf("crm: hubspot: %w", err)
	}
	switch te.Kind {
	case transport.KindStatus:
		eb := parseErrorBody(te.Body)
		herr := &Error{Status: te.Status, Category: eb.Category, Message: eb.Message,
			PolicyName: eb.PolicyName, CorrelationID: eb.CorrelationID, Note: te.Note}
		if te.Status == http.StatusTooManyRequests && eb.PolicyName == "DAILY" {
			return fmt.Errorf("%w: %w", ErrDailyLimit, herr)
		}
		return herr
	case transport.KindResponse:
		return fmt.Errorf("crm: hubspot: decode %s %s: %w", method, strings.SplitN(path, "?", 2)[0], te.Err)
	case transport.KindCanceled:
		return fmt.Errorf("crm: hubspot: %w", te.Err)
	}
	return fmt.Errorf("crm: hubspot: %w", te)
}
