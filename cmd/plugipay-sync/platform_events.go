package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	stdsync "sync"

	"go.uber.org/zap"

	"github.com/plugipay-sync/plugipay-sync/crm/sqlsrc"
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
	enqueue enqueueFunc
	log     *zap.Logger
}

// enqueueFunc asks for tenant t's run and says how (a trigger status):
// through River on PostgreSQL state, in this process on SQLite. It is the
// one action of every event in platform mode.
type enqueueFunc func(ctx context.Context, t Tenant) (string, error)

// startEvents starts platform mode's event path: the trigger API on
// realtime.listen when realtime.token is set, and the LISTEN connection
// when realtime.postgres is enabled. It returns the function that stops
// them, to call once ctx is done.
func (p *Platform) startEvents(ctx context.Context, enqueue enqueueFunc) (stop func(), err error) {
	m := p.m
	cfg := m.cfg.Realtime
	log := m.log.Named("realtime")
	stopAPI := func() {}
	if cfg.Token != "" {
		tt := &tenantTriggers{triggerAuth: newTriggerAuth(m.reg, cfg.Token, endpointTenantRuns), p: p,
			maxBody: cfg.MaxBodyBytes, enqueue: enqueue, log: log}
		mux := http.NewServeMux()
		mux.HandleFunc("POST /v1/tenants/{id}/runs", tt.authed(endpointTenantRuns, tt.postRuns))
		addr, stop, err := serveRealtimeHTTP(cfg.Listen, mux, log)
		if err != nil {
			return nil, err
		}
		stopAPI = stop
		log.Info("serving the tenants' trigger API", zap.String("addr", addr))
		if m.RealtimeReady != nil {
			m.RealtimeReady(addr)
		}
	}
	var wg stdsync.WaitGroup
	if cfg.Postgres.Enabled {
		src, err := sharedSource(m.cfg.CRM, sourceEnv{log: log})
		if err != nil {
			stopAPI()
			return nil, withExit(ExitConfig, err)
		}
		pg := newPGListener(m.reg, log)
		wg.Go(func() { p.listenTenants(ctx, src, pg, enqueue) })
	}
	return func() {
		stopAPI()
		wg.Wait()
	}, nil
}

// sharedSource is the CRM source over every tenant's rows, for what is
// about the shared table rather than one tenant's users: the notify
// trigger and its listener. It must never be read for users.
func sharedSource(cfg CRMConfig, env sourceEnv) (*sqlsrc.Source, error) {
	if cfg.Type != "sql" || cfg.SQL == nil {
		return nil, errors.New("crm.type: LISTEN/NOTIFY needs crm.type: sql with driver postgres")
	}
	s := *cfg.SQL
	s.TenantColumn, s.tenant = "", ""
	cfg.SQL = &s
	src, err := newSourceWith(cfg, env)
	if err != nil {
		return nil, err
	}
	pg, ok := src.(*sqlsrc.Source)
	if !ok {
		return nil, errors.New("crm.type: LISTEN/NOTIFY needs crm.type: sql with driver postgres")
	}
	return pg, nil
}

// listenTenants is platform mode's LISTEN (realtime.postgres), on the
// trigger of notify-sql, whose payloads name the tenant of each changed
// row: each batch of notifications (realtime.batch_window) asks for one
// run of each tenant it names. NOTIFY is lost while nobody listens, so
// after a reconnect every tenant is asked for: what changed meanwhile is
// in some tenant, and the run of a tenant that did not change writes
// nothing. The first connect does not: the daemon's first round (River's
// schedule on start, on PostgreSQL) runs every tenant then anyway.
func (p *Platform) listenTenants(ctx context.Context, src *sqlsrc.Source, pg pgListener, enqueue enqueueFunc) {
	cfg := p.m.cfg.Realtime
	connected := false
	pg.listen(ctx, src, sqlsrc.ListenOptions{
		Channel: cfg.Postgres.Channel,
		Window:  cfg.BatchWindow,
		Notify:  func(payloads []string) { p.notified(ctx, payloads, enqueue) },
		CatchUp: func(ctx context.Context) error {
			if !connected {
				connected = true
				return nil
			}
			ts, err := p.Tenants(ctx)
			if err != nil {
				return err
			}
			for _, t := range ts {
				if _, err := enqueue(ctx, t); err != nil {
					return fmt.Errorf("tenant %s: %w", t.ID, err)
				}
			}
			pg.log.Info("caught up: every tenant's run asked for", zap.Int("tenants", len(ts)))
			return nil
		},
	})
}

// notified asks for one run of each tenant the notifications' payloads
// name. A payload that is not the platform trigger's, or names no current
// tenant, is counted in the log and left: the schedule syncs the rest.
func (p *Platform) notified(ctx context.Context, payloads []string, enqueue enqueueFunc) {
	log := p.m.log.Named("realtime")
	tenants := map[string]bool{}
	bad := 0
	for _, pl := range payloads {
		var n sqlsrc.TenantNotification
		if err := json.Unmarshal([]byte(pl), &n); err != nil || checkTenantID(n.Tenant) != nil {
			bad++
			continue
		}
		tenants[n.Tenant] = true
	}
	if bad > 0 {
		log.Warn("notifications left out: not the platform trigger's {\"t\": tenant, \"id\": id} (run notify-sql --install again?)", zap.Int("notifications", bad))
	}
	for id := range tenants {
		t, err := p.lookup(ctx, id)
		if err != nil {
			log.Warn("a notification's tenant left out", zap.String(LogKeyTenant, id), zap.Error(err))
			continue
		}
		if _, err := enqueue(ctx, t); err != nil {
			log.Warn("a notified tenant's run not enqueued; the next period runs it", zap.String(LogKeyTenant, id), zap.Error(err))
		}
	}
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
