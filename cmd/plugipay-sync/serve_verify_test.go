package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/plugipay-sync/plugipay-sync/plugipay"
	"github.com/plugipay-sync/plugipay-sync/plugipay/emulator"
)

// TestDaemon_VerifySchedule: the daemon verifies on sync.verify_schedule
// and, with verify.policy: repair, puts an edit made behind its back
// right; the drift gauge and the last success say so.
func TestDaemon_VerifySchedule(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the daemon for seconds; runs in make test-e2e")
	}
	dir := t.TempDir()
	e := newE2E(t, writeUsers(t, filepath.Join(dir, "u.csv"), 20), emulator.Options{})
	b, _ := os.ReadFile(e.config)
	cfg := strings.Replace(string(b), "sync:\n", "sync:\n  verify_schedule: \"@every 1s\"\n", 1) + "verify:\n  policy: repair\n"
	if err := os.WriteFile(e.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	base, _ := startDaemon(t, e)
	if !waitFor(10*time.Second, func() bool {
		return metricText(t, base, "plugipay_sync_run_in_progress") == "0" && e.emu.CustomerCount() == 20
	}) {
		t.Fatal("the first run did not finish")
	}
	cus, _ := e.emu.CustomerByExternalID("usr_00007")
	if _, err := newTestClient(t, e).Customers.Update(context.Background(), cus.ID,
		plugipay.CustomerParams{Name: plugipay.String("Edited")}, ""); err != nil {
		t.Fatal(err)
	}
	if !waitFor(5*time.Second, func() bool {
		c, _ := e.emu.CustomerByExternalID("usr_00007")
		return c.Name == "Pengguna 7"
	}) {
		t.Fatal("the scheduled verify did not repair the edit within 5 s")
	}
	if !waitFor(3*time.Second, func() bool {
		return metricText(t, base, `plugipay_sync_verify_repairs_total{outcome="repaired"}`) == "1"
	}) {
		t.Errorf("repairs = %q, want 1", metricText(t, base, `plugipay_sync_verify_repairs_total{outcome="repaired"}`))
	}
	if v := metricText(t, base, "plugipay_sync_verify_last_success_timestamp_seconds"); v == "" || v == "0" {
		t.Errorf("verify last success = %q", v)
	}
}
