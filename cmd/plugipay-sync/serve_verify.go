package main

import (
	"context"
	"fmt"
	stdsync "sync"
	"sync/atomic"
	"time"

	"github.com/robfig/cron/v3"
	"go.uber.org/zap"

	"github.com/plugipay-sync/plugipay-sync/sync"
)

// AuditPruneSchedule is how often the daemon prunes the audit ledger to
// audit.retention.
const AuditPruneSchedule = "@every 1h"

// addMaintenance schedules the daemon's jobs beside its runs: a verify on
// sync.verify_schedule, and the audit ledger's pruning. A verify takes
// runMu as a run does (one writer at a time in the process, so a repair
// never races a run's write of the same user) and skips its tick while a
// run is going.
func (m *Main) addMaintenance(ctx context.Context, c *cron.Cron, runMu *stdsync.Mutex, runs *runGroup, rec *atomic.Pointer[sync.Reconciler]) error {
	if s := m.cfg.Sync.VerifySchedule; s != "" {
		o := m.verifyOptions(false) // a reload does not change it: m.cfg is the serve loop's
		verify := func() {
			if ctx.Err() != nil || !runs.enter() {
				return
			}
			defer runs.exit()
			if !runMu.TryLock() {
				m.log.Info("skipping a verify tick: a run is going")
				return
			}
			defer runMu.Unlock()
			if _, err := rec.Load().Verify(ctx, o); err != nil && ctx.Err() == nil {
				m.log.Error("verify failed", zap.Error(explain(err)))
			}
			m.gauge.refresh(context.WithoutCancel(ctx), m.store, m.log)
		}
		if _, err := c.AddFunc(s, verify); err != nil {
			return fmt.Errorf("sync.verify_schedule: %w", err)
		}
		m.log.Info("verify scheduled", zap.String("verify_schedule", s), zap.String("policy", m.cfg.Verify.Policy))
	}
	ret := m.cfg.Audit.Retention
	prune := func() {
		if ret > 0 && ctx.Err() == nil {
			n, err := m.store.PruneAudit(ctx, time.Now().Add(-ret))
			switch {
			case err != nil:
				m.log.Warn("audit ledger pruning failed", zap.Error(err))
			case n > 0:
				m.log.Info("audit ledger pruned", zap.Int64("entries", n), zap.Duration("retention", ret))
			}
		}
	}
	if _, err := c.AddFunc(AuditPruneSchedule, prune); err != nil {
		return err
	}
	prune()
	return nil
}
