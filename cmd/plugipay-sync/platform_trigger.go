package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"go.uber.org/zap"
)

// endpointTenantRuns is platform mode's trigger endpoint, the "endpoint"
// label of plugipay_sync_trigger_requests_total.
const endpointTenantRuns = "tenant_runs"

// tenantRunResponse is the answer of POST /v1/tenants/{id}/runs.
type tenantRunResponse struct {
	Tenant string `json:"tenant"`
	// Status is triggerEnqueued, triggerStarted or triggerFollowUp.
	Status string `json:"status"`
}

// tenantTriggers is platform mode's trigger API (issue 19): an event in
// the SaaS (a member changed) asks for its tenant's run. The run is the
// tenant's ordinary run, full or incremental, through the same decision
// as a scheduled one, so a trigger names a tenant, not users.
type tenantTriggers struct {
	triggerAuth
	p       *Platform
	maxBody int64
	// enqueue asks for tenant t's run and says how (a trigger status):
	// through River on PostgreSQL state, in this process on SQLite.
	enqueue func(ctx context.Context, t Tenant) (string, error)
	log     *zap.Logger
}

// startTriggers serves the trigger API on realtime.listen when
// realtime.token is set, and returns the function that stops it; without a
// token it serves nothing.
func (p *Platform) startTriggers(enqueue func(ctx context.Context, t Tenant) (string, error)) (stop func(), err error) {
	m := p.m
	cfg := m.cfg.Realtime
	if cfg.Token == "" {
		return func() {}, nil
	}
	tt := &tenantTriggers{triggerAuth: newTriggerAuth(m.reg, cfg.Token, endpointTenantRuns), p: p,
		maxBody: cfg.MaxBodyBytes, enqueue: enqueue, log: m.log.Named("realtime")}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/tenants/{id}/runs", tt.authed(endpointTenantRuns, tt.postRuns))
	addr, stop, err := serveRealtimeHTTP(cfg.Listen, mux, tt.log)
	if err != nil {
		return nil, withExit(ExitConfig, err)
	}
	tt.log.Info("serving the tenants' trigger API", zap.String("addr", addr))
	if m.RealtimeReady != nil {
		m.RealtimeReady(addr)
	}
	return stop, nil
}

// postRuns asks for a run of the tenant in the path. The body, if any, is
// read (bounded) and ignored.
func (tt *tenantTriggers) postRuns(w http.ResponseWriter, r *http.Request) {
	fail := func(status int, outcome, msg string) {
		tt.requests.WithLabelValues(endpointTenantRuns, outcome).Inc()
		writeJSON(w, status, apiError{msg})
	}
	_, tooLarge, err := readBody(w, r, tt.maxBody)
	switch {
	case tooLarge:
		fail(http.StatusRequestEntityTooLarge, outcomeTooLarge, fmt.Sprintf("the body is larger than %d bytes", tt.maxBody))
		return
	case err != nil:
		fail(http.StatusBadRequest, outcomeBadRequest, "cannot read the body")
		return
	}
	id := r.PathValue("id")
	if err := checkTenantID(id); err != nil {
		fail(http.StatusBadRequest, outcomeBadRequest, "the tenant id "+err.Error())
		return
	}
	t, err := tt.p.lookup(r.Context(), id)
	switch {
	case errors.Is(err, ErrUnknownTenant):
		fail(http.StatusNotFound, outcomeNotFound, fmt.Sprintf("no tenant %q in tenants.list or tenants.query", id))
		return
	case err != nil:
		tt.log.Error("trigger: list the tenants", zap.String(LogKeyTenant, id), zap.Error(err))
		w.Header().Set("Retry-After", "5")
		fail(http.StatusServiceUnavailable, outcomeUnavailable, "the tenants cannot be listed now; try again")
		return
	}
	status, err := tt.enqueue(r.Context(), t)
	if err != nil {
		tt.log.Error("trigger: enqueue the tenant's run", zap.String(LogKeyTenant, id), zap.Error(err))
		w.Header().Set("Retry-After", "5")
		fail(http.StatusServiceUnavailable, outcomeUnavailable, "the run cannot be enqueued now; try again")
		return
	}
	tt.requests.WithLabelValues(endpointTenantRuns, outcomeAccepted).Inc()
	writeJSON(w, http.StatusAccepted, tenantRunResponse{Tenant: id, Status: status})
}
