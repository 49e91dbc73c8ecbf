package main

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"go.uber.org/zap"

	"github.com/plugipay-sync/plugipay-sync/state"
)

// storeGauges export the size of the state DB's cache and failure queue.
// They are refreshed after every run (cheap COUNTs), not at scrape time,
// so a scrape never waits on SQLite.
type storeGauges struct {
	cache    prometheus.Gauge
	failures *prometheus.GaugeVec
}

func newStoreGauges(reg prometheus.Registerer) *storeGauges {
	f := promauto.With(reg)
	return &storeGauges{
		cache: f.NewGauge(prometheus.GaugeOpts{
			Name: "plugipay_sync_cache_mappings",
			Help: "CRM users mapped to a Plugipay customer in the state DB.",
		}),
		failures: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "plugipay_sync_failure_queue",
			Help: "Records in the failure queue: kind=terminal (rejected until the CRM changes them) or retrying (transient, retried with backoff).",
		}, []string{"kind"}),
	}
}

// refresh reads the counts from the store.
func (g *storeGauges) refresh(ctx context.Context, db *state.DB, log *zap.Logger) {
	if n, err := db.MappingCount(ctx); err == nil {
		g.cache.Set(float64(n))
	} else {
		log.Warn("count mappings for metrics", zap.Error(err))
	}
	if total, terminal, err := db.FailureCount(ctx); err == nil {
		g.failures.WithLabelValues("terminal").Set(float64(terminal))
		g.failures.WithLabelValues("retrying").Set(float64(total - terminal))
	} else {
		log.Warn("count failures for metrics", zap.Error(err))
	}
}
