package main

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	stdsync "sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"go.uber.org/zap"

	"github.com/plugipay-sync/plugipay-sync/crm"
	"github.com/plugipay-sync/plugipay-sync/crm/hubspot"
	"github.com/plugipay-sync/plugipay-sync/crm/sqlsrc"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

// Outcomes of the realtime endpoints, the "outcome" label of
// plugipay_sync_trigger_requests_total.
const (
	outcomeAccepted     = "accepted"     // 202: queued
	outcomeDone         = "done"         // 200: ?wait and every user synced
	outcomePending      = "pending"      // 202 after ?wait ran out
	outcomeUnauthorized = "unauthorized" // 401: token or signature
	outcomeTooLarge     = "too_large"    // 413
	outcomeBadRequest   = "bad_request"  // 400
	outcomeUnsupported  = "unsupported"  // 409: the source cannot read by id
	outcomeUnavailable  = "unavailable"  // 503: the queue is full
	outcomeNotFound     = "not_found"    // 404: unknown sync id
)

// Endpoints, the "endpoint" label.
const (
	endpointSync     = "sync"
	endpointStatus   = "sync_status"
	endpointRuns     = "runs"
	endpointWebhooks = "hubspot_webhook"
)

// realtime is the daemon's event path (issue 17): the trigger API and the
// HubSpot webhook endpoint on their own listener, the PostgreSQL listener,
// and the queue that syncs what they name through the running reconciler.
type realtime struct {
	triggerAuth
	m        *Main
	cfg      RealtimeConfig
	events   *sync.Events
	rec      func() *sync.Reconciler
	runNow   chan<- struct{}
	verifier *hubspot.WebhookVerifier
	log      *zap.Logger
	pg       pgListener
	// addr is the realtime listener's address once it serves.
	addr atomic.Value
}

func newRealtime(m *Main, rec func() *sync.Reconciler, runNow chan<- struct{}) *realtime {
	cfg := m.cfg.Realtime
	rt := &realtime{m: m, cfg: cfg, rec: rec, runNow: runNow, log: m.log.Named("realtime"),
		triggerAuth: newTriggerAuth(m.reg, cfg.Token, endpointSync, endpointStatus, endpointRuns, endpointWebhooks),
		pg:          newPGListener(m.reg, m.log.Named("realtime")),
	}
	if cfg.HubSpot.ClientSecret != "" {
		rt.verifier = &hubspot.WebhookVerifier{Secret: cfg.HubSpot.ClientSecret}
	}
	rt.events = sync.NewEvents(rec, sync.EventsOptions{Window: cfg.BatchWindow, MaxPending: cfg.MaxPending,
		Registerer: m.reg, Logger: rt.log})
	return rt
}

// start runs the event queue, the PostgreSQL listener and the HTTP
// listener, and returns the function that stops them (after ctx is done:
// the queue lets its batch in flight finish).
func (rt *realtime) start(ctx context.Context) (stop func(), err error) {
	var wg stdsync.WaitGroup
	stopHTTP := func() {}
	if rt.cfg.serves() {
		addr, stop, err := serveRealtimeHTTP(rt.cfg.Listen, rt.handler(), rt.log)
		if err != nil {
			return nil, err
		}
		stopHTTP = stop
		rt.addr.Store(addr)
		rt.log.Info("serving the trigger API and webhooks", zap.String("addr", addr),
			zap.Bool("trigger_api", rt.cfg.Token != ""), zap.Bool("hubspot_webhooks", rt.verifier != nil))
	}
	wg.Go(func() { _ = rt.events.Start(ctx) })
	if rt.cfg.Postgres.Enabled {
		src, err := newSourceWith(rt.m.cfg.CRM, sourceEnv{log: rt.log})
		if err != nil {
			return nil, err
		}
		pg, ok := src.(*sqlsrc.Source)
		if !ok {
			return nil, errors.New("realtime.postgres: the source is not SQL")
		}
		wg.Go(func() { rt.listenPostgres(ctx, pg) })
	}
	return func() {
		stopHTTP()
		wg.Wait()
	}, nil
}

// serveRealtimeHTTP serves h on the realtime listener addr (realtime.listen)
// and returns the address it is bound to and the function that shuts it
// down (in-flight requests get a few seconds). Both modes' trigger APIs
// serve through it.
func serveRealtimeHTTP(addr string, h http.Handler, log *zap.Logger) (bound string, stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("realtime.listen: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second}
	var wg stdsync.WaitGroup
	wg.Go(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("realtime listener stopped", zap.Error(err))
		}
	})
	return ln.Addr().String(), func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			log.Warn("realtime listener shutdown", zap.Error(err))
		}
		wg.Wait()
	}, nil
}

// listenPostgres feeds the queue from LISTEN/NOTIFY until ctx is done.
func (rt *realtime) listenPostgres(ctx context.Context, src *sqlsrc.Source) {
	rt.pg.listen(ctx, src, sqlsrc.ListenOptions{
		Channel: rt.cfg.Postgres.Channel,
		Notify: func(ids []string) {
			if _, err := rt.events.Submit(sync.EventSourcePostgres, ids, false); err != nil {
				rt.log.Warn("changes not queued; the next run syncs them", zap.Int("users", len(ids)), zap.Error(err))
			}
		},
	})
}

// pgListener runs a LISTEN connection (realtime.postgres) with its
// metrics and logs, for both modes: the single workspace's, whose
// notifications are user ids, and platform mode's, whose are tenants.
type pgListener struct {
	up    prometheus.Gauge
	drops prometheus.Counter
	log   *zap.Logger
}

func newPGListener(reg prometheus.Registerer, log *zap.Logger) pgListener {
	f := promauto.With(reg)
	return pgListener{log: log,
		up: f.NewGauge(prometheus.GaugeOpts{
			Name: "plugipay_sync_listener_connected",
			Help: "1 while the PostgreSQL LISTEN connection is up, 0 while it reconnects (and with no listener).",
		}),
		drops: f.NewCounter(prometheus.CounterOpts{
			Name: "plugipay_sync_listener_disconnects_total",
			Help: "PostgreSQL LISTEN connections lost or refused; each reconnect catches up from the database.",
		}),
	}
}

// listen listens with o (its OnConnect and OnDisconnect are the
// listener's) until ctx is done.
func (l pgListener) listen(ctx context.Context, src *sqlsrc.Source, o sqlsrc.ListenOptions) {
	log := l.log.With(zap.String("channel", o.Channel))
	o.OnConnect = func() {
		l.up.Set(1)
		log.Info("listening for changes")
	}
	o.OnDisconnect = func(err error) {
		l.up.Set(0)
		l.drops.Inc()
		log.Warn("listener connection lost; reconnecting and catching up", zap.Error(err))
	}
	if err := src.Listen(ctx, o); err != nil {
		log.Error("listener stopped", zap.Error(err))
	}
	l.up.Set(0)
}

func (rt *realtime) handler() http.Handler {
	mux := http.NewServeMux()
	if rt.cfg.Token != "" {
		mux.HandleFunc("POST /v1/sync", rt.authed(endpointSync, rt.postSync))
		mux.HandleFunc("GET /v1/sync/{id}", rt.authed(endpointStatus, rt.getSync))
		mux.HandleFunc("POST /v1/runs", rt.authed(endpointRuns, rt.postRuns))
	}
	if rt.verifier != nil {
		mux.HandleFunc("POST /v1/webhooks/hubspot", rt.webhook)
	}
	return mux
}

// triggerAuth is what every trigger endpoint shares, in both modes: the
// bearer token check and plugipay_sync_trigger_requests_total.
type triggerAuth struct {
	token    [32]byte // sha256 of the token; compared in constant time
	requests *prometheus.CounterVec
}

// newTriggerAuth registers the request counter on reg, with the
// unauthorized series of each endpoint present from the start (an alert
// on its rate needs the series before the first refusal).
func newTriggerAuth(reg prometheus.Registerer, token string, endpoints ...string) triggerAuth {
	a := triggerAuth{token: sha256.Sum256([]byte(token)),
		requests: promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
			Name: "plugipay_sync_trigger_requests_total",
			Help: "Requests to the realtime endpoints (trigger API, HubSpot webhooks), by endpoint and outcome.",
		}, []string{"endpoint", "outcome"})}
	for _, e := range endpoints {
		a.requests.WithLabelValues(e, outcomeUnauthorized)
	}
	return a
}

// authed checks the bearer token in constant time; a missing, malformed
// or wrong token gets the same 401.
func (a triggerAuth) authed(endpoint string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		sum := sha256.Sum256([]byte(got))
		if subtle.ConstantTimeCompare(sum[:], a.token[:]) != 1 || !ok {
			a.requests.WithLabelValues(endpoint, outcomeUnauthorized).Inc()
			w.Header().Set("WWW-Authenticate", `Bearer realm="plugipay-sync"`)
			writeJSON(w, http.StatusUnauthorized, apiError{"unauthorized"})
			return
		}
		h(w, r)
	}
}

type apiError struct {
	Error string `json:"error"`
}

// syncRequest is the body of POST /v1/sync. The externalIds and
// the project's snake_case external_ids are both read.
type syncRequest struct {
	ExternalIDs  []string `json:"externalIds"`
	ExternalIDs2 []string `json:"external_ids"`
}

// syncResponse is the answer of POST /v1/sync and GET /v1/sync/{id}.
type syncResponse struct {
	ID      string       `json:"id"`
	Status  string       `json:"status"` // accepted, pending, done
	Results []syncResult `json:"results,omitempty"`
}

type syncResult struct {
	ExternalID string `json:"external_id"`
	// Outcome: created, updated, unchanged, recovered, archived, skipped,
	// rejected, failed, not_found.
	Outcome    string `json:"outcome"`
	CustomerID string `json:"customer_id,omitempty"`
	Reason     string `json:"reason,omitempty"`
}

// readBody reads at most max bytes; too is true when the body is larger.
func readBody(w http.ResponseWriter, r *http.Request, max int64) (b []byte, tooLarge bool, err error) {
	if r.ContentLength > max {
		return nil, true, nil
	}
	b, err = io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, true, nil
	}
	return b, false, err
}

func (rt *realtime) postSync(w http.ResponseWriter, r *http.Request) {
	fail := func(status int, outcome, msg string) {
		rt.requests.WithLabelValues(endpointSync, outcome).Inc()
		writeJSON(w, status, apiError{msg})
	}
	b, tooLarge, err := readBody(w, r, rt.cfg.MaxBodyBytes)
	switch {
	case tooLarge:
		fail(http.StatusRequestEntityTooLarge, outcomeTooLarge, fmt.Sprintf("the body is larger than %d bytes", rt.cfg.MaxBodyBytes))
		return
	case err != nil:
		fail(http.StatusBadRequest, outcomeBadRequest, "cannot read the body")
		return
	}
	var req syncRequest
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		fail(http.StatusBadRequest, outcomeBadRequest, `the body must be {"externalIds": ["..."]}`)
		return
	}
	ids := append(req.ExternalIDs, req.ExternalIDs2...)
	var wait time.Duration
	if v := r.URL.Query().Get("wait"); v != "" {
		if wait, err = time.ParseDuration(v); err != nil || wait < 0 {
			fail(http.StatusBadRequest, outcomeBadRequest, "wait must be a duration, e.g. 30s")
			return
		}
		wait = min(wait, rt.cfg.MaxWait)
	}
	switch {
	case len(ids) == 0:
		fail(http.StatusBadRequest, outcomeBadRequest, "externalIds is empty")
		return
	case len(ids) > rt.cfg.MaxIDs:
		fail(http.StatusRequestEntityTooLarge, outcomeTooLarge, fmt.Sprintf("at most %d externalIds a request", rt.cfg.MaxIDs))
		return
	}
	for _, id := range ids {
		if strings.TrimSpace(id) != id || id == "" || !utf8.ValidString(id) || utf8.RuneCountInString(id) > crm.MaxExternalIDLen {
			fail(http.StatusBadRequest, outcomeBadRequest, fmt.Sprintf("every externalId must be 1 to %d characters without surrounding spaces", crm.MaxExternalIDLen))
			return
		}
	}
	if !rt.rec().CanSyncIDs() {
		fail(http.StatusConflict, outcomeUnsupported, sync.ErrNoTargetedRead.Error()+": POST /v1/runs")
		return
	}
	t, err := rt.events.Submit(sync.EventSourceAPI, ids, true)
	if err != nil {
		w.Header().Set("Retry-After", "5")
		fail(http.StatusServiceUnavailable, outcomeUnavailable, err.Error())
		return
	}
	if wait == 0 {
		rt.requests.WithLabelValues(endpointSync, outcomeAccepted).Inc()
		writeJSON(w, http.StatusAccepted, syncResponse{ID: t.ID, Status: "accepted"})
		return
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-t.Done():
	case <-timer.C:
	case <-r.Context().Done():
	}
	rt.answer(w, endpointSync, t)
}

// answer writes a ticket's state: 200 with every result once done, else
// 202 with those so far.
func (rt *realtime) answer(w http.ResponseWriter, endpoint string, t *sync.Ticket) {
	res, done := t.Results()
	out := syncResponse{ID: t.ID, Status: "pending"}
	for _, r := range res {
		out.Results = append(out.Results, syncResult{ExternalID: r.ExternalID, Outcome: r.Action, CustomerID: r.CustomerID, Reason: r.Reason})
	}
	status, outcome := http.StatusAccepted, outcomePending
	if done {
		out.Status, status, outcome = "done", http.StatusOK, outcomeDone
	}
	rt.requests.WithLabelValues(endpoint, outcome).Inc()
	writeJSON(w, status, out)
}

func (rt *realtime) getSync(w http.ResponseWriter, r *http.Request) {
	t, ok := rt.events.Ticket(r.PathValue("id"))
	if !ok {
		rt.requests.WithLabelValues(endpointStatus, outcomeNotFound).Inc()
		writeJSON(w, http.StatusNotFound, apiError{"no such sync (only the last 1024 are kept)"})
		return
	}
	rt.answer(w, endpointStatus, t)
}

// postRuns asks for a full run now; a request while one is asked for
// already is the same request.
func (rt *realtime) postRuns(w http.ResponseWriter, r *http.Request) {
	status := "requested"
	select {
	case rt.runNow <- struct{}{}:
	default:
		status = "already requested"
	}
	rt.requests.WithLabelValues(endpointRuns, outcomeAccepted).Inc()
	writeJSON(w, http.StatusAccepted, map[string]string{"status": status})
}

// webhook takes a HubSpot webhook request: verified (v3 signature, the
// 5-minute window, no replay), its contact ids queued, answered at once
// (HubSpot retries slow answers).
func (rt *realtime) webhook(w http.ResponseWriter, r *http.Request) {
	count := func(o string) { rt.requests.WithLabelValues(endpointWebhooks, o).Inc() }
	b, tooLarge, err := readBody(w, r, rt.cfg.MaxBodyBytes)
	switch {
	case tooLarge:
		count(outcomeTooLarge)
		writeJSON(w, http.StatusRequestEntityTooLarge, apiError{"body too large"})
		return
	case err != nil:
		count(outcomeBadRequest)
		writeJSON(w, http.StatusBadRequest, apiError{"cannot read the body"})
		return
	}
	uri := rt.cfg.HubSpot.WebhookURL
	if r.URL.RawQuery != "" {
		uri += "?" + r.URL.RawQuery
	}
	if err := rt.verifier.Verify(r.Method, uri, b, r.Header.Get(hubspot.HeaderSignatureV3), r.Header.Get(hubspot.HeaderTimestamp)); err != nil {
		count(outcomeUnauthorized)
		rt.log.Warn("webhook refused", zap.Error(err))
		writeJSON(w, http.StatusUnauthorized, apiError{"unauthorized"})
		return
	}
	ids, err := hubspot.ParseWebhook(b)
	if err != nil {
		count(outcomeBadRequest)
		writeJSON(w, http.StatusBadRequest, apiError{err.Error()})
		return
	}
	if len(ids) > 0 {
		if _, err := rt.events.Submit(sync.EventSourceHubSpot, ids, false); err != nil {
			count(outcomeUnavailable)
			w.Header().Set("Retry-After", "5")
			writeJSON(w, http.StatusServiceUnavailable, apiError{err.Error()})
			return
		}
	}
	count(outcomeAccepted)
	w.WriteHeader(http.StatusNoContent)
}
