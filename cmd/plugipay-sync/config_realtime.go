package main

import (
	"fmt"
	"net"
	"net/url"
	"time"

	"github.com/plugipay-sync/plugipay-sync/crm/hubspot"
	"github.com/plugipay-sync/plugipay-sync/crm/sqlsrc"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

// RealtimeConfig configures the event path of issue 17: the trigger API,
// PostgreSQL LISTEN/NOTIFY and HubSpot webhooks. Each is off unless
// configured; the scheduled run keeps running beside them.
type RealtimeConfig struct {
	// Listen is the address of the trigger API and the webhook endpoint,
	// apart from the metrics listener; loopback unless exposed on purpose.
	Listen string `yaml:"listen"`
	// Token is the bearer token of POST /v1/sync and /v1/runs; empty
	// (and no PLUGIPAY_SYNC_TRIGGER_TOKEN[_FILE]) turns the API off.
	Token string `yaml:"token"`
	// MaxIDs is the most external ids one request may name; MaxBodyBytes
	// the largest body read (413 beyond either).
	MaxIDs       int   `yaml:"max_ids"`
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// MaxWait caps ?wait=.
	MaxWait time.Duration `yaml:"max_wait"`
	// BatchWindow is how long the first event of a batch waits for more;
	// MaxPending the most users waiting (more are refused, 503).
	BatchWindow time.Duration          `yaml:"batch_window"`
	MaxPending  int                    `yaml:"max_pending"`
	Postgres    RealtimePostgresConfig `yaml:"postgres"`
	HubSpot     RealtimeHubSpotConfig  `yaml:"hubspot"`
}

// RealtimePostgresConfig turns on LISTEN/NOTIFY (crm.sql with postgres).
type RealtimePostgresConfig struct {
	Enabled bool   `yaml:"enabled"`
	Channel string `yaml:"channel"`
}

// RealtimeHubSpotConfig turns on the HubSpot webhook endpoint
// (POST /v1/webhooks/hubspot).
type RealtimeHubSpotConfig struct {
	// ClientSecret is the HubSpot app's client secret, the key of the v3
	// signature; empty (and no HUBSPOT_CLIENT_SECRET[_FILE]) turns the
	// endpoint off.
	ClientSecret string `yaml:"client_secret"`
	// WebhookURL is the public URL HubSpot calls (the target URL of the
	// app's subscription), which it signs; a proxy in front changes the
	// URL the daemon sees.
	WebhookURL string `yaml:"webhook_url"`
}

// Defaults of the realtime section.
const (
	DefaultRealtimeListen = "127.0.0.1:9465"
	DefaultMaxIDs         = 1000
	DefaultMaxBodyBytes   = 256 << 10
	DefaultMaxWait        = time.Minute
)

func defaultRealtimeConfig() RealtimeConfig {
	return RealtimeConfig{Listen: DefaultRealtimeListen, MaxIDs: DefaultMaxIDs, MaxBodyBytes: DefaultMaxBodyBytes,
		MaxWait: DefaultMaxWait, BatchWindow: sync.DefaultEventWindow, MaxPending: sync.DefaultEventMaxPending,
		Postgres: RealtimePostgresConfig{Channel: sqlsrc.DefaultChannel}}
}

// on reports whether any part of the event path is configured.
func (c RealtimeConfig) on() bool {
	return c.Token != "" || c.Postgres.Enabled || c.HubSpot.ClientSecret != ""
}

// serves reports whether the realtime listener is needed.
func (c RealtimeConfig) serves() bool { return c.Token != "" || c.HubSpot.ClientSecret != "" }

// validate checks the section; platform is whether the config is in
// platform mode (tenants:), which has the trigger API and LISTEN/NOTIFY.
func (c RealtimeConfig) validate(crmCfg CRMConfig, platform bool) error {
	if platform {
		if c.HubSpot.ClientSecret != "" {
			return invalid("realtime.hubspot.client_secret", "", "not supported in platform mode (its users come from crm.type: sql): remove it")
		}
	}
	if c.serves() {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			return invalid("realtime.listen", c.Listen, "must be host:port, e.g. %q (loopback)", DefaultRealtimeListen)
		}
	}
	switch {
	case c.Token != "" && len(c.Token) < 16:
		return invalid("realtime.token", "", "must be at least 16 characters (e.g. openssl rand -hex 32)")
	case c.MaxIDs < 1 || c.MaxIDs > 100000:
		return invalid("realtime.max_ids", fmt.Sprint(c.MaxIDs), "must be between 1 and 100000")
	case c.MaxBodyBytes < 1024:
		return invalid("realtime.max_body_bytes", fmt.Sprint(c.MaxBodyBytes), "must be at least 1024")
	case c.MaxWait <= 0:
		return invalid("realtime.max_wait", c.MaxWait.String(), "must be a positive duration, e.g. 1m")
	case c.BatchWindow <= 0 || c.BatchWindow > 10*time.Second:
		return invalid("realtime.batch_window", c.BatchWindow.String(), "must be greater than 0 and at most 10s, e.g. 10ms")
	case c.MaxPending < 1:
		return invalid("realtime.max_pending", fmt.Sprint(c.MaxPending), "must be at least 1")
	}
	if c.Postgres.Enabled {
		if crmCfg.Type != "sql" || crmCfg.SQL == nil || crmCfg.SQL.Driver != sqlsrc.Postgres {
			return invalid("realtime.postgres.enabled", "true", "needs crm.type: sql with crm.sql.driver: postgres (MariaDB/MySQL: a short schedule with crm.sql.incremental: true instead)")
		}
		if c.Postgres.Channel == "" {
			return invalid("realtime.postgres.channel", "", "required, e.g. %s", sqlsrc.DefaultChannel)
		}
	}
	if c.HubSpot.ClientSecret != "" {
		if crmCfg.Type != "hubspot" || crmCfg.HubSpot == nil {
			return invalid("realtime.hubspot.client_secret", "", "needs crm.type: hubspot")
		}
		if crmCfg.HubSpot.Fields.ExternalID != hubspot.IDField {
			return invalid("realtime.hubspot.client_secret", "", "webhooks name contacts by id: needs crm.hubspot.fields.external_id: id")
		}
		u, err := url.Parse(c.HubSpot.WebhookURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return invalid("realtime.hubspot.webhook_url", c.HubSpot.WebhookURL, "required with a client secret: the public URL HubSpot calls, which it signs, e.g. https://sync.example.com/v1/webhooks/hubspot")
		}
	}
	return nil
}
