package main

import (
	"fmt"
	"time"

	"github.com/plugipay-sync/plugipay-sync/sync"
)

// Verify policies (verify.policy).
const (
	VerifyReport = "report"
	VerifyRepair = "repair"
)

// Defaults of the verify and audit sections.
const (
	DefaultVerifyReadShare = 0.5
	// DefaultAuditRetention keeps the ledger for a year and a bit: long
	// enough for a yearly audit of last year's invoices.
	DefaultAuditRetention = 400 * 24 * time.Hour
)

// VerifyConfig tunes verify (the command, sync.verify_schedule and the
// Plugipay webhook endpoint).
type VerifyConfig struct {
	// Policy is report (the default) or repair: whether drift found by the
	// scheduled verify is put back, as verify --repair does.
	Policy string `yaml:"policy"`
	// Missing is what a repairing verify does with a mapped customer the
	// destination no longer lists: report, or recreate.
	Missing string `yaml:"missing"`
	// ReadShare is the share of destination.plugipay.reads_per_second the
	// list walk may use, so it never starves a run's reads.
	ReadShare float64 `yaml:"read_share"`
	// WebhookSecret, when set, makes the daemon take Plugipay's customer
	// events on WebhookPath, verified with this endpoint secret.
	WebhookSecret string `yaml:"webhook_secret"`
}

// AuditConfig tunes the audit ledger.
type AuditConfig struct {
	// Values keeps the old and new values of changed fields; without it
	// the ledger names the fields only.
	Values bool `yaml:"values"`
	// Retention is how long entries are kept; older ones are pruned after
	// each run. 0 keeps them forever.
	Retention time.Duration `yaml:"retention"`
}

func defaultVerifyConfig() VerifyConfig {
	return VerifyConfig{Policy: VerifyReport, Missing: string(sync.MissingReport), ReadShare: DefaultVerifyReadShare}
}

func defaultAuditConfig() AuditConfig { return AuditConfig{Retention: DefaultAuditRetention} }

func (c *Config) validateVerify() error {
	v := c.Verify
	if s := c.Sync.VerifySchedule; s != "" {
		if _, err := CronParser.Parse(s); err != nil {
			return invalid("sync.verify_schedule", s, "not a cron expression (%v); use five fields like \"0 3 * * *\" or \"@every 24h\"; empty turns it off", err)
		}
		if everyTooOften(s) {
			return invalid("sync.verify_schedule", s, "fires more often than once a second; hours are usual")
		}
	}
	switch {
	case v.Policy != VerifyReport && v.Policy != VerifyRepair:
		return invalid("verify.policy", v.Policy, "must be report or repair")
	case !sync.MissingPolicy(v.Missing).Valid():
		return invalid("verify.missing", v.Missing, "must be report or recreate")
	case v.ReadShare <= 0 || v.ReadShare > 1:
		return invalid("verify.read_share", fmt.Sprint(v.ReadShare), "must be greater than 0 and at most 1, e.g. 0.5")
	case v.WebhookSecret != "" && c.Listen == "":
		return invalid("verify.webhook_secret", "(set)", "needs listen: the webhook endpoint is served on the metrics listener")
	case c.Audit.Retention < 0:
		return invalid("audit.retention", c.Audit.Retention.String(), "must not be negative (0 keeps the ledger forever)")
	}
	return nil
}

// verifyPagesPerSecond is the pace of verify's list walk: its share of the
// read cap (each page is one read), unpaced when reads are not capped.
func (c *Config) verifyPagesPerSecond() float64 {
	var rps float64
	switch d := c.Destination; d.Type {
	case DestPayGate:
		if d.PayGate != nil {
			rps = d.PayGate.RequestsPerSecond
		}
	case DestPin:
		if d.Pin != nil {
			rps = d.Pin.RequestsPerSecond
		}
	default:
		rps = c.Plugipay.ReadsPerSecond
	}
	return rps * c.Verify.ReadShare
}
