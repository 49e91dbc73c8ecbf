package sync_test

import (
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/plugipay-sync/plugipay-sync/sync"
)

// Per-record lines are sampled at info and all written at debug, while the
// run summary is always written.
func TestRun_RecordLogSampling(t *testing.T) {
	for _, tt := range []struct {
		level      zapcore.Level
		minRecords int
		maxRecords int
	}{
		{zapcore.InfoLevel, 10, 60}, // 10 a second, then every 100th: a slow machine may span a few seconds
		{zapcore.DebugLevel, 300, 300},
	} {
		t.Run(tt.level.String(), func(t *testing.T) {
			h := newHarness(t)
			core, logs := observer.New(tt.level)
			r := sync.New(users(300), h.dst, h.store, sync.Options{Logger: zap.New(core), Now: h.clk.Now})
			if _, err := r.Run(t.Context()); err != nil {
				t.Fatal(err)
			}
			n := logs.FilterMessage("record synced").Len()
			if n < tt.minRecords || n > tt.maxRecords {
				t.Errorf("%d per-record lines, want %d..%d", n, tt.minRecords, tt.maxRecords)
			}
			if logs.FilterMessage("run finished").Len() != 1 {
				t.Error("no run summary line")
			}
			for _, e := range logs.FilterMessage("record synced").All() {
				if !strings.HasPrefix(e.ContextMap()["external_id"].(string), "usr_") {
					t.Fatalf("record line without external_id: %v", e.ContextMap())
				}
			}
		})
	}
}
