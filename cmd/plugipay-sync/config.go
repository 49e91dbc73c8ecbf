package main

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/robfig/cron/v3"
	"go.yaml.in/yaml/v3"

	"github.com/plugipay-sync/plugipay-sync/crm"
	"github.com/plugipay-sync/plugipay-sync/crm/hubspot"
	"github.com/plugipay-sync/plugipay-sync/crm/sqlsrc"
	"github.com/plugipay-sync/plugipay-sync/destination/paygate"
	"github.com/plugipay-sync/plugipay-sync/destination/pin"
	plugipaydest "github.com/plugipay-sync/plugipay-sync/destination/plugipay"
	"github.com/plugipay-sync/plugipay-sync/state"
	"github.com/plugipay-sync/plugipay-sync/sync"
)

// Config is the daemon's configuration file. Every key is documented in
// config.example.yaml; keep the two in step.
type Config struct {
	Schedule string      `yaml:"schedule"`
	Listen   string      `yaml:"listen"`
	State    StateConfig `yaml:"state"`
	// Plugipay is the old place of destination.plugipay, read for one
	// more release with a deprecation warning. After ParseConfig it holds
	// the Plugipay settings from wherever the file gave them.
	Plugipay PlugipayConfig `yaml:"plugipay"`
	// Destination selects the payments API; Plugipay (the plugipay
	// section) unless it says otherwise.
	Destination DestinationConfig `yaml:"destination"`
	CRM         CRMConfig         `yaml:"crm"`
	Sync        SyncConfig        `yaml:"sync"`
	Health      HealthConfig      `yaml:"health"`
	Log         LogConfig         `yaml:"log"`
	Verify      VerifyConfig      `yaml:"verify"`
	Audit       AuditConfig       `yaml:"audit"`
	// Realtime is the event path (issue 17); see config_realtime.go.
	Realtime RealtimeConfig `yaml:"realtime"`
	// Tenants, if present, is platform mode (issue 19); see
	// config_tenants.go.
	Tenants *TenantsConfig `yaml:"tenants"`

	// Deprecations are warnings about keys that still work but will not
	// (the program logs them at start; check-config prints them).
	Deprecations []string `yaml:"-"`
	// plugipayKey is where the Plugipay settings came from, for errors.
	plugipayKey string
}

// HealthConfig tunes /readyz.
type HealthConfig struct {
	// StaleAfterRuns: /readyz turns not ready when no run has succeeded
	// for this many schedule intervals (a run still making progress, as a
	// long backfill does, keeps it ready). 0 turns the check off.
	StaleAfterRuns int `yaml:"stale_after_runs"`
}

// StateConfig locates the state store: a SQLite file (the default, for
// one machine) or a schema in PostgreSQL (replicas sharing the work).
type StateConfig struct {
	// Driver is StateDriverSQLite or StateDriverPostgres.
	Driver string `yaml:"driver"`
	// Path is the SQLite file (driver sqlite).
	Path string `yaml:"path"`
	// DSN is the PostgreSQL connection string (driver postgres); empty
	// falls back to the file DSNFile names, then to PLUGIPAY_STATE_DSN
	// (or PLUGIPAY_STATE_DSN_FILE).
	DSN     string `yaml:"dsn"`
	DSNFile string `yaml:"dsn_file"`
	// Schema is the PostgreSQL schema holding the tables (driver
	// postgres), created if missing.
	Schema string `yaml:"schema"`
	// MaxConns bounds the PostgreSQL connections that the state of all
	// tenants shares in one platform-mode process (driver postgres).
	MaxConns int `yaml:"max_conns"`
}

// DefaultStateMaxConns is state.max_conns's default: a run holds one of
// them only for a statement or a short transaction, so a few serve tens
// of tenants writing at 20/s each.
const DefaultStateMaxConns = 8

// State drivers.
const (
	StateDriverSQLite   = "sqlite"
	StateDriverPostgres = "postgres"
)

// String names the store for messages: the file, or the schema (the DSN
// is a secret and is left out).
func (s StateConfig) String() string {
	if s.Postgres() {
		return "postgres schema " + s.Schema
	}
	return s.Path
}

// Postgres reports whether the state lives in PostgreSQL.
func (s StateConfig) Postgres() bool { return s.Driver == StateDriverPostgres }

// resolveDSN fills an empty state.dsn of the postgres driver from the file
// state.dsn_file names, else from PLUGIPAY_STATE_DSN (or its _FILE
// variant) when lookupEnv is given.
func (s *StateConfig) resolveDSN(lookupEnv func(string) (string, bool)) error {
	if !s.Postgres() {
		return nil
	}
	if s.DSN != "" && s.DSNFile != "" {
		return invalid("state.dsn_file", s.DSNFile, "give the connection string once: state.dsn or state.dsn_file, not both")
	}
	if s.DSN != "" {
		return nil
	}
	if s.DSNFile != "" {
		b, err := os.ReadFile(s.DSNFile)
		if err != nil {
			var pe *os.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return invalid("state.dsn_file", s.DSNFile, "cannot read it: %v", err)
		}
		s.DSN = strings.TrimSpace(string(b))
		return nil
	}
	if lookupEnv == nil {
		return nil
	}
	v, _, err := resolveEnv(lookupEnv, "PLUGIPAY_STATE_DSN")
	s.DSN = v
	return err
}

// validate checks the state section for its driver.
func (s StateConfig) validate() error {
	switch s.Driver {
	case StateDriverSQLite:
		if s.Path == "" {
			return invalid("state.path", "", "required: the SQLite file that caches what was synced, e.g. /data/plugipay-sync.db")
		}
		if s.DSN != "" || s.DSNFile != "" {
			return invalid("state.dsn", "", "is for state.driver: postgres; remove it, or set state.driver: postgres to keep the state in PostgreSQL")
		}
	case StateDriverPostgres:
		if s.DSN == "" {
			return invalid("state.dsn", "", "required with state.driver postgres: a connection string such as postgres://sync@db:5432/plugipay?sslmode=verify-full; set state.dsn, state.dsn_file, or PLUGIPAY_STATE_DSN")
		}
		if _, err := pgx.ParseConfig(s.DSN); err != nil {
			// The value is a secret: never echoed, nor pgx's message.
			return invalid("state.dsn", "", "not a PostgreSQL connection string; use postgres://user@host:5432/db?sslmode=... or key=value pairs")
		}
		if err := state.ValidSchema(s.Schema); err != nil {
			return invalid("state.schema", s.Schema, "%v; use a name such as %s", err, state.DefaultSchema)
		}
		if s.MaxConns < 2 {
			return invalid("state.max_conns", strconv.Itoa(s.MaxConns), "must be at least 2 (a streaming read and a write at once); the default is %d", DefaultStateMaxConns)
		}
	default:
		return invalid("state.driver", s.Driver, "must be sqlite (a file on one machine, the default) or postgres (a schema replicas share)")
	}
	return nil
}

// PlugipayConfig is how to reach the Plugipay API. Empty credentials fall
// back to the PLUGIPAY_* environment variables.
type PlugipayConfig struct {
	BaseURL     string        `yaml:"base_url"`
	KeyID       string        `yaml:"key_id"`
	Secret      string        `yaml:"secret"`
	OnBehalfOf  string        `yaml:"on_behalf_of"`
	Timeout     time.Duration `yaml:"timeout"`
	MaxAttempts int           `yaml:"max_attempts"`
	// ReadsPerSecond and WritesPerSecond cap the client's request rate
	// (Plugipay allows 100 and 20 per workspace); 0 turns the cap off.
	ReadsPerSecond  float64 `yaml:"reads_per_second"`
	WritesPerSecond float64 `yaml:"writes_per_second"`
	InsecureHTTP    bool    `yaml:"insecure_http"`
	// MaxRetryAfter is the longest Retry-After the client waits; a longer
	// one fails the call at once.
	MaxRetryAfter time.Duration `yaml:"max_retry_after"`
}

// Destination types.
const (
	DestPlugipay = "plugipay"
	DestPayGate  = "paygate"
	DestPin      = "pin"
)

// DestinationConfig selects the destination and configures it, each type
// in its own section here.
type DestinationConfig struct {
	Type     string          `yaml:"type"`
	Plugipay *PlugipayConfig `yaml:"plugipay"`
	PayGate  *PayGateConfig  `yaml:"paygate"`
	Pin      *PinConfig      `yaml:"pin"`
}

// APIConfig are the connection settings every non-Plugipay destination
// shares.
type APIConfig struct {
	BaseURL           string        `yaml:"base_url"`
	SecretKey         string        `yaml:"secret_key"`
	Timeout           time.Duration `yaml:"timeout"`
	MaxAttempts       int           `yaml:"max_attempts"`
	RequestsPerSecond float64       `yaml:"requests_per_second"`
	InsecureHTTP      bool          `yaml:"insecure_http"`
	MaxRetryAfter     time.Duration `yaml:"max_retry_after"`
}

// PayGateConfig configures a PayGate-style API.
type PayGateConfig struct {
	APIConfig `yaml:",inline"`
	// ExternalIDKey is the metadata key that holds the CRM user id.
	ExternalIDKey string `yaml:"external_id_key"`
}

// UnmarshalYAML decodes over the defaults (see SQLConfig.UnmarshalYAML).
func (c *PayGateConfig) UnmarshalYAML(unmarshal func(any) error) error {
	type plain PayGateConfig
	p := plain{APIConfig: defaultAPIConfig(paygate.DefaultRequestsPerSecond), ExternalIDKey: paygate.DefaultExternalIDKey}
	if err := unmarshal(&p); err != nil {
		return err
	}
	*c = PayGateConfig(p)
	return nil
}

// PinConfig configures a Pin-style API.
type PinConfig struct {
	APIConfig `yaml:",inline"`
	// Environment is test or live, the key's mode.
	Environment string `yaml:"environment"`
}

// UnmarshalYAML decodes over the defaults (see SQLConfig.UnmarshalYAML).
func (c *PinConfig) UnmarshalYAML(unmarshal func(any) error) error {
	type plain PinConfig
	p := plain{APIConfig: defaultAPIConfig(pin.DefaultRequestsPerSecond), Environment: "test"}
	if err := unmarshal(&p); err != nil {
		return err
	}
	*c = PinConfig(p)
	return nil
}

func defaultAPIConfig(rps float64) APIConfig {
	return APIConfig{Timeout: DefaultTimeout, MaxAttempts: 4, RequestsPerSecond: rps, MaxRetryAfter: DefaultMaxRetryAfter}
}

// CRMConfig selects and configures the CRM source.
type CRMConfig struct {
	Type      string          `yaml:"type"`
	Normalize NormalizeConfig `yaml:"normalize"`
	CSV       *CSVConfig      `yaml:"csv"`
	JSONL     *JSONLConfig    `yaml:"jsonl"`
	SQL       *SQLConfig      `yaml:"sql"`
	HubSpot   *HubSpotConfig  `yaml:"hubspot"`
}

// HubSpotConfig configures the HubSpot contacts source.
type HubSpotConfig struct {
	BaseURL          string        `yaml:"base_url"`
	PathPrefix       string        `yaml:"path_prefix"`
	Token            string        `yaml:"token"`
	Incremental      bool          `yaml:"incremental"`
	Lookback         time.Duration `yaml:"lookback"`
	FullScanEvery    int           `yaml:"full_scan_every"`
	FullScanInterval time.Duration `yaml:"full_scan_interval"`
	Fields           ColumnMap     `yaml:"fields"`
}

// UnmarshalYAML decodes over the defaults (see SQLConfig.UnmarshalYAML).
func (c *HubSpotConfig) UnmarshalYAML(unmarshal func(any) error) error {
	type plain HubSpotConfig
	p := plain{BaseURL: hubspot.DefaultBaseURL, PathPrefix: hubspot.DefaultPathPrefix,
		Lookback: hubspot.DefaultLookback, FullScanEvery: hubspot.DefaultFullScanEvery}
	if err := unmarshal(&p); err != nil {
		return err
	}
	*c = HubSpotConfig(p)
	return nil
}

// NormalizeConfig switches the normalisation applied to every source
// value before it is checked, hashed and sent.
type NormalizeConfig struct {
	TrimSpace         bool   `yaml:"trim_space"`
	LowerEmailDomain  bool   `yaml:"lower_email_domain"`
	CollapseNameSpace bool   `yaml:"collapse_name_space"`
	PhoneRegion       string `yaml:"phone_region"`
	DropEmptyMetadata bool   `yaml:"drop_empty_metadata"`
}

// JSONLConfig configures the JSON Lines source.
type JSONLConfig struct {
	Path         string    `yaml:"path"`
	MaxLineBytes int       `yaml:"max_line_bytes"`
	Fields       ColumnMap `yaml:"fields"`
}

// SQLConfig configures the SQL source.
type SQLConfig struct {
	Driver           string        `yaml:"driver"`
	DSN              string        `yaml:"dsn"`
	Table            string        `yaml:"table"`
	Query            string        `yaml:"query"`
	IDColumn         string        `yaml:"id_column"`
	UpdatedAtColumn  string        `yaml:"updated_at_column"`
	DeletedColumn    string        `yaml:"deleted_column"`
	PageSize         int           `yaml:"page_size"`
	Incremental      bool          `yaml:"incremental"`
	Overlap          time.Duration `yaml:"overlap"`
	FullScanEvery    int           `yaml:"full_scan_every"`
	FullScanInterval time.Duration `yaml:"full_scan_interval"`
	Columns          ColumnMap     `yaml:"columns"`
	// TenantColumn (platform mode) holds each row's tenant id: a tenant's
	// reads see only its rows (see tenantConfig).
	TenantColumn string `yaml:"tenant_column"`
	// tenant is the tenant a per-tenant copy of the config is bound to.
	tenant string
}

// UnmarshalYAML decodes over the defaults, so a key left out keeps its
// default and an explicit 0 stays 0. (The func form keeps the decoder's
// strict KnownFields.)
func (c *SQLConfig) UnmarshalYAML(unmarshal func(any) error) error {
	type plain SQLConfig
	p := plain{IDColumn: "id", UpdatedAtColumn: "updated_at", PageSize: sqlsrc.DefaultPageSize,
		Overlap: sqlsrc.DefaultOverlap, FullScanEvery: sqlsrc.DefaultFullScanEvery}
	if err := unmarshal(&p); err != nil {
		return err
	}
	*c = SQLConfig(p)
	return nil
}

// CSVConfig configures the CSV source.
type CSVConfig struct {
	Path      string    `yaml:"path"`
	Delimiter string    `yaml:"delimiter"`
	Columns   ColumnMap `yaml:"columns"`
}

// ColumnMap names the source columns that feed each customer field.
type ColumnMap struct {
	ExternalID string `yaml:"external_id"`
	Email      string `yaml:"email"`
	Name       string `yaml:"name"`
	// NameTemplate joins several fields instead, e.g. "{first_name} {last_name}".
	NameTemplate string            `yaml:"name_template"`
	Phone        string            `yaml:"phone"`
	TaxID        string            `yaml:"tax_id"`
	Metadata     map[string]string `yaml:"metadata"`
}

// SyncConfig tunes the reconciler.
type SyncConfig struct {
	Concurrency   int           `yaml:"concurrency"`
	BatchSize     int           `yaml:"batch_size"`
	RecordTimeout time.Duration `yaml:"record_timeout"`
	RetryMin      time.Duration `yaml:"retry_min"`
	RetryMax      time.Duration `yaml:"retry_max"`
	// Deletion is what happens to the customer of a user gone from the
	// CRM: ignore, or archive (metadata.archived = "true").
	Deletion string `yaml:"deletion"`
	// MaxArchiveRatio is the largest share of known customers one run may
	// archive; more is refused unless --allow-mass-archive is given.
	MaxArchiveRatio float64 `yaml:"max_archive_ratio"`
	// Mode is upsert, update-only or create-only; empty means upsert
	// where the destination can create customers, update-only elsewhere.
	Mode string `yaml:"mode"`
	// BreakAfter is how many writes in a row may fail transiently before
	// the run stops early (the circuit breaker).
	BreakAfter int `yaml:"break_after"`
	// VerifySchedule, when set, is when the daemon verifies the
	// destination against what it last confirmed (see VerifyConfig).
	VerifySchedule string `yaml:"verify_schedule"`
}

// LogConfig configures logging.
type LogConfig struct {
	Format string `yaml:"format"`
	Level  string `yaml:"level"`
}

// Defaults of the configuration.
const (
	DefaultSchedule = "@every 5m"
	DefaultListen   = ":9464"
	DefaultState    = "plugipay-sync.db"
	DefaultBaseURL  = "https://plugipay.com"
	DefaultTimeout  = 30 * time.Second
	// DefaultMaxRetryAfter is the longest Retry-After any API client
	// waits: a server asking for more fails the call at once.
	DefaultMaxRetryAfter = time.Minute
	// DefaultStaleAfterRuns is health.stale_after_runs.
	DefaultStaleAfterRuns = 3
)

// DefaultConfig returns the configuration used for every key a file leaves out.
func DefaultConfig() Config {
	return Config{
		Schedule:    DefaultSchedule,
		Listen:      DefaultListen,
		State:       StateConfig{Driver: StateDriverSQLite, Path: DefaultState, Schema: state.DefaultSchema, MaxConns: DefaultStateMaxConns},
		Plugipay:    defaultPlugipayConfig(),
		Destination: DestinationConfig{Type: DestPlugipay},
		CRM: CRMConfig{Type: "csv", Normalize: NormalizeConfig{
			TrimSpace: true, LowerEmailDomain: true, CollapseNameSpace: true, DropEmptyMetadata: true,
		}},
		Sync: SyncConfig{
			Concurrency:     8,
			BatchSize:       500,
			RecordTimeout:   2 * time.Minute,
			RetryMin:        time.Minute,
			RetryMax:        6 * time.Hour,
			Deletion:        "ignore",
			MaxArchiveRatio: 0.05,
			BreakAfter:      sync.DefaultBreakAfter,
		},
		Health:   HealthConfig{StaleAfterRuns: DefaultStaleAfterRuns},
		Log:      LogConfig{Format: "json", Level: "info"},
		Verify:   defaultVerifyConfig(),
		Audit:    defaultAuditConfig(),
		Realtime: defaultRealtimeConfig(),
	}
}

// ReadConfigFile reads, expands, parses and validates the file at path.
// lookupEnv resolves ${VAR} references and the PLUGIPAY_* fallbacks; pass
// nil to disable expansion.
func ReadConfigFile(path string, lookupEnv func(string) (string, bool)) (_ Config, err error) {
	defer func() { err = redactConfigSecrets(err, path, lookupEnv) }()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return Config{}, fmt.Errorf("read config: %w; name the config file with --config FILE (config.example.yaml documents every key)", err)
	}
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	if lookupEnv != nil {
		if b, err = ExpandEnv(b, lookupEnv); err != nil {
			return Config{}, fmt.Errorf("config %s: %w", path, err)
		}
	}
	cfg, err := ParseConfig(bytes.NewReader(b))
	if err != nil {
		if bytes.Contains(b, []byte("${")) && strings.Contains(err.Error(), "did not find expected") {
			err = fmt.Errorf("%w (a ${VAR} inside [...] or {...} must be quoted: \"${VAR}\")", err)
		}
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	if lookupEnv != nil {
		if err := cfg.applyEnvFallbacks(lookupEnv); err != nil {
			return Config{}, fmt.Errorf("config %s: %w", path, err)
		}
	}
	if err := cfg.State.resolveDSN(lookupEnv); err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig decodes YAML strictly over DefaultConfig: an unknown or
// misspelt key is an error. It does not validate.
func ParseConfig(r io.Reader) (Config, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return Config{}, fmt.Errorf("parse: %w", err)
	}
	cfg := DefaultConfig()
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("parse: %w", err)
	}
	// Which of the two Plugipay sections the file has.
	var top map[string]yaml.Node
	_ = yaml.Unmarshal(b, &top)
	_, oldPlace := top["plugipay"]
	cfg.plugipayKey = "plugipay"
	switch {
	case cfg.Destination.Plugipay != nil && oldPlace:
		return Config{}, errors.New("plugipay and destination.plugipay: give the Plugipay settings once, under destination.plugipay (the top-level plugipay is the old place)")
	case cfg.Destination.Plugipay != nil:
		cfg.Plugipay, cfg.plugipayKey = *cfg.Destination.Plugipay, "destination.plugipay"
	case oldPlace:
		cfg.Deprecations = append(cfg.Deprecations,
			"plugipay: the top-level plugipay section is deprecated and read for one more release; move it under destination: as destination.plugipay")
	}
	return cfg, nil
}

// UnmarshalYAML decodes over the defaults (see SQLConfig.UnmarshalYAML), so
// destination.plugipay gets them like the old top-level section.
func (c *PlugipayConfig) UnmarshalYAML(unmarshal func(any) error) error {
	type plain PlugipayConfig
	p := plain(defaultPlugipayConfig())
	if err := unmarshal(&p); err != nil {
		return err
	}
	*c = PlugipayConfig(p)
	return nil
}

func defaultPlugipayConfig() PlugipayConfig {
	return PlugipayConfig{Timeout: DefaultTimeout, MaxAttempts: 4, ReadsPerSecond: 100, WritesPerSecond: 20,
		MaxRetryAfter: DefaultMaxRetryAfter}
}

// applyEnvFallbacks fills empty credentials from their conventional
// variables (PLUGIPAY_*, PAYGATE_SECRET_KEY, PIN_SECRET_KEY, HUBSPOT_TOKEN),
// or from the file their *_FILE variant names.
func (c *Config) applyEnvFallbacks(lookupEnv func(string) (string, bool)) error {
	fallbacks := []struct {
		dst *string
		env string
	}{
		{&c.Plugipay.BaseURL, "PLUGIPAY_BASE_URL"},
		{&c.Plugipay.KeyID, "PLUGIPAY_KEY_ID"},
		{&c.Plugipay.Secret, "PLUGIPAY_SECRET"},
		{&c.Plugipay.OnBehalfOf, "PLUGIPAY_ON_BEHALF_OF"},
	}
	if d := c.Destination.PayGate; d != nil {
		fallbacks = append(fallbacks, struct {
			dst *string
			env string
		}{&d.SecretKey, "PAYGATE_SECRET_KEY"})
	}
	if d := c.Destination.Pin; d != nil {
		fallbacks = append(fallbacks, struct {
			dst *string
			env string
		}{&d.SecretKey, "PIN_SECRET_KEY"})
	}
	if h := c.CRM.HubSpot; h != nil {
		fallbacks = append(fallbacks, struct {
			dst *string
			env string
		}{&h.Token, "HUBSPOT_TOKEN"})
	}
	fallbacks = append(fallbacks, []struct {
		dst *string
		env string
	}{{&c.Realtime.Token, "PLUGIPAY_SYNC_TRIGGER_TOKEN"}, {&c.Realtime.HubSpot.ClientSecret, "HUBSPOT_CLIENT_SECRET"}}...)
	for _, f := range fallbacks {
		if *f.dst != "" {
			continue
		}
		v, _, err := resolveEnv(lookupEnv, f.env)
		if err != nil {
			return err
		}
		*f.dst = v
	}
	if c.Plugipay.BaseURL == "" {
		c.Plugipay.BaseURL = DefaultBaseURL
	}
	return nil
}

// ValidationError is a config value that cannot work: it names the key, the
// value (never a secret's) and the fix.
type ValidationError struct {
	Field string
	Value string
	Err   error
}

func (e *ValidationError) Error() string {
	if e.Value != "" {
		return fmt.Sprintf("%s: %v (got %q)", e.Field, e.Err, e.Value)
	}
	return fmt.Sprintf("%s: %v", e.Field, e.Err)
}

func (e *ValidationError) Unwrap() error { return e.Err }

func invalid(field, value, format string, args ...any) error {
	return &ValidationError{Field: field, Value: value, Err: fmt.Errorf(format, args...)}
}

// CronParser parses the schedule: five standard fields or a descriptor
// such as "@every 5m" or "@hourly".
var CronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Validate checks every key and returns the first problem, naming the key
// and how to fix it.
func (c *Config) Validate() error {
	if _, err := CronParser.Parse(c.Schedule); err != nil {
		return invalid("schedule", c.Schedule, "not a cron expression (%v); use five fields like \"*/5 * * * *\" or \"@every 5m\"", err)
	}
	if everyTooOften(c.Schedule) {
		return invalid("schedule", c.Schedule, "fires more often than once a second; use at least \"@every 1s\" (minutes are usual)")
	}
	if iv, _ := scheduleInterval(c.Schedule, time.Now()); iv == 0 {
		return invalid("schedule", c.Schedule, "never fires (no such date in the next five years); check the day-of-month and month fields")
	}
	if c.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			return invalid("listen", c.Listen, "must be host:port or :port, e.g. \":9464\"; empty disables the metrics listener")
		}
	}
	if err := c.State.validate(); err != nil {
		return err
	}
	if err := c.validateDestination(); err != nil {
		return err
	}
	if err := c.CRM.validate(); err != nil {
		return err
	}
	if err := c.Realtime.validate(c.CRM, c.platform()); err != nil {
		return err
	}
	if err := c.validateTenants(); err != nil {
		return err
	}
	s := c.Sync
	switch {
	case s.Concurrency < 1 || s.Concurrency > 64:
		return invalid("sync.concurrency", fmt.Sprint(s.Concurrency), "must be between 1 and 64")
	case s.BatchSize < 1 || s.BatchSize > 10000:
		return invalid("sync.batch_size", fmt.Sprint(s.BatchSize), "must be between 1 and 10000")
	case s.RecordTimeout <= 0:
		return invalid("sync.record_timeout", s.RecordTimeout.String(), "must be a positive duration, e.g. 2m")
	case s.RetryMin <= 0:
		return invalid("sync.retry_min", s.RetryMin.String(), "must be a positive duration, e.g. 1m")
	case s.RetryMax < s.RetryMin:
		return invalid("sync.retry_max", s.RetryMax.String(), "must be at least sync.retry_min (%s)", s.RetryMin)
	case s.Deletion != "ignore" && s.Deletion != "archive":
		return invalid("sync.deletion", s.Deletion, "must be ignore or archive")
	case s.MaxArchiveRatio <= 0 || s.MaxArchiveRatio > 1:
		return invalid("sync.max_archive_ratio", fmt.Sprint(s.MaxArchiveRatio), "must be greater than 0 and at most 1, e.g. 0.05 for 5%%")
	case s.BreakAfter < 1:
		return invalid("sync.break_after", fmt.Sprint(s.BreakAfter), "must be at least 1: how many writes in a row may fail before the run stops early")
	case c.Health.StaleAfterRuns < 0:
		return invalid("health.stale_after_runs", fmt.Sprint(c.Health.StaleAfterRuns), "must not be negative (0 turns the check off)")
	}
	if err := c.validateVerify(); err != nil {
		return err
	}
	switch c.Log.Format {
	case "json", "console":
	default:
		return invalid("log.format", c.Log.Format, "must be json or console")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return invalid("log.level", c.Log.Level, "must be debug, info, warn or error")
	}
	return nil
}

// validateDestination checks the chosen destination's section and the
// sync mode against what that destination allows.
func (c *Config) validateDestination() error {
	d := c.Destination
	var caps sync.Capabilities
	switch d.Type {
	case DestPlugipay:
		if err := c.Plugipay.validate(cmp.Or(c.plugipayKey, "plugipay")); err != nil {
			return err
		}
		caps = (*plugipaydest.Destination)(nil).Capabilities()
	case DestPayGate:
		if d.PayGate == nil {
			return invalid("destination.paygate", "", "required with destination.type: paygate (base_url, secret_key)")
		}
		if err := d.PayGate.validate("destination.paygate", "sk_test_... or sk_live_...", "PAYGATE_SECRET_KEY"); err != nil {
			return err
		}
		if !strings.HasPrefix(d.PayGate.SecretKey, "sk_test_") && !strings.HasPrefix(d.PayGate.SecretKey, "sk_live_") {
			return invalid("destination.paygate.secret_key", "", "must be a PayGate secret key, sk_test_... or sk_live_...")
		}
		if k := d.PayGate.ExternalIDKey; k == "" || len(k) > 40 {
			return invalid("destination.paygate.external_id_key", k, "must be a metadata key of 1 to 40 characters, e.g. crm_user_id")
		}
		if cols, ok := c.CRM.mapping(); ok {
			if _, clash := cols.Metadata[d.PayGate.ExternalIDKey]; clash {
				return invalid("destination.paygate.external_id_key", d.PayGate.ExternalIDKey, "is also a metadata key the CRM mapping fills; the sync keeps the CRM user id there, so rename one of them")
			}
		}
		caps = (*paygate.Destination)(nil).Capabilities()
	case DestPin:
		if d.Pin == nil {
			return invalid("destination.pin", "", "required with destination.type: pin (base_url, secret_key)")
		}
		if err := d.Pin.validate("destination.pin", "the account's secret API key", "PIN_SECRET_KEY"); err != nil {
			return err
		}
		if d.Pin.Environment != "test" && d.Pin.Environment != "live" {
			return invalid("destination.pin.environment", d.Pin.Environment, "must be test or live, the mode of the secret key")
		}
		caps = (*pin.Pin)(nil).Capabilities()
	default:
		return invalid("destination.type", d.Type, "must be plugipay, paygate or pin")
	}
	mode := c.Sync.mode(caps)
	if err := sync.CheckMode(mode, caps); err != nil {
		return invalid("sync.mode", c.Sync.Mode, "%v (destination %s)", err, d.Type)
	}
	if c.Sync.Deletion == sync.DeletionArchive && !caps.Metadata {
		return invalid("sync.deletion", c.Sync.Deletion, "destination %s has no metadata to mark archived customers in; use ignore", d.Type)
	}
	return nil
}

// mode is the sync mode for a destination with caps: the configured one,
// or by default upsert where the destination can create, else update-only.
func (s SyncConfig) mode(caps sync.Capabilities) string {
	switch {
	case s.Mode != "":
		return s.Mode
	case caps.Create:
		return sync.ModeUpsert
	}
	return sync.ModeUpdateOnly
}

func (a *APIConfig) validate(section, keyHint, keyEnv string) error {
	u, err := url.Parse(a.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return invalid(section+".base_url", a.BaseURL, "must be the API's http(s) URL with a host, e.g. https://api.example.com/v1")
	}
	if u.Scheme == "http" && !a.InsecureHTTP && !isLoopback(u.Hostname()) {
		return invalid(section+".base_url", a.BaseURL, "plain http is allowed only for loopback addresses; use https, or set %s.insecure_http: true", section)
	}
	if a.SecretKey == "" {
		return invalid(section+".secret_key", "", "required: %s; set %s, or reference a variable as secret_key: ${%s}", keyHint, keyEnv, keyEnv)
	}
	if a.Timeout <= 0 {
		return invalid(section+".timeout", a.Timeout.String(), "must be a positive duration, e.g. 30s")
	}
	if a.MaxAttempts < 1 || a.MaxAttempts > 20 {
		return invalid(section+".max_attempts", fmt.Sprint(a.MaxAttempts), "must be between 1 (no retries) and 20")
	}
	if a.RequestsPerSecond < 0 {
		return invalid(section+".requests_per_second", fmt.Sprint(a.RequestsPerSecond), "must be 0 (no cap) or positive")
	}
	return validMaxRetryAfter(section+".max_retry_after", a.MaxRetryAfter)
}

// validMaxRetryAfter checks a max_retry_after key: long enough for a
// server's usual rate-limit window, short enough that a worker is never
// parked for hours.
func validMaxRetryAfter(key string, d time.Duration) error {
	if d < time.Second || d > time.Hour {
		return invalid(key, d.String(), "must be between 1s and 1h, e.g. 1m: the longest Retry-After waited; a server asking for more fails the call at once")
	}
	return nil
}

// validate checks the Plugipay settings; key is where the file gave them
// (destination.plugipay, or the old top-level plugipay), for the errors.
func (p *PlugipayConfig) validate(key string) error {
	u, err := url.Parse(p.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return invalid(key+".base_url", p.BaseURL, "must be an http(s) URL with a host, e.g. https://plugipay.com")
	}
	if u.Scheme == "http" && !p.InsecureHTTP && !isLoopback(u.Hostname()) {
		return invalid(key+".base_url", p.BaseURL, "plain http is allowed only for loopback addresses; use https, or set %s.insecure_http: true", key)
	}
	if p.KeyID == "" {
		return invalid(key+".key_id", "", "required; set it or the PLUGIPAY_KEY_ID environment variable")
	}
	if p.Secret == "" {
		return invalid(key+".secret", "", "required; set PLUGIPAY_SECRET, or reference a variable as secret: ${PLUGIPAY_SECRET}")
	}
	if p.Timeout <= 0 {
		return invalid(key+".timeout", p.Timeout.String(), "must be a positive duration, e.g. 30s")
	}
	if p.MaxAttempts < 1 || p.MaxAttempts > 20 {
		return invalid(key+".max_attempts", fmt.Sprint(p.MaxAttempts), "must be between 1 (no retries) and 20")
	}
	if p.ReadsPerSecond < 0 {
		return invalid(key+".reads_per_second", fmt.Sprint(p.ReadsPerSecond), "must be 0 (no cap) or positive; Plugipay allows 100")
	}
	if p.WritesPerSecond < 0 {
		return invalid(key+".writes_per_second", fmt.Sprint(p.WritesPerSecond), "must be 0 (no cap) or positive; Plugipay allows 20")
	}
	return validMaxRetryAfter(key+".max_retry_after", p.MaxRetryAfter)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (c *CRMConfig) validate() error {
	if err := c.Normalize.options().Validate(); err != nil {
		return invalid("crm.normalize.phone_region", c.Normalize.PhoneRegion, "must be an ISO 3166 region code such as ID, US or GB, or empty to leave phones as they are")
	}
	switch c.Type {
	case "csv":
		if c.CSV == nil || c.CSV.Path == "" {
			return invalid("crm.csv.path", "", "required with crm.type csv: the CSV export to read")
		}
		if len([]rune(c.CSV.Delimiter)) > 1 {
			return invalid("crm.csv.delimiter", c.CSV.Delimiter, "must be a single character, e.g. \",\" or \";\"")
		}
		if c.CSV.Columns.ExternalID == "" {
			return invalid("crm.csv.columns.external_id", "", "required: the column holding the CRM's user id")
		}
		if m := c.CSV.Columns; m.NameTemplate != "" {
			if err := (ColumnMap{ExternalID: m.ExternalID, Name: m.Name, NameTemplate: m.NameTemplate}).validate("crm.csv.columns", "column"); err != nil {
				return err
			}
		}
	case "jsonl":
		if c.JSONL == nil || c.JSONL.Path == "" {
			return invalid("crm.jsonl.path", "", "required with crm.type jsonl: the JSON Lines file to read")
		}
		if c.JSONL.MaxLineBytes < 0 {
			return invalid("crm.jsonl.max_line_bytes", fmt.Sprint(c.JSONL.MaxLineBytes), "must be 0 (default 16 MiB) or positive")
		}
		return c.JSONL.Fields.validate("crm.jsonl.fields", "JSON key")
	case "sql":
		s := c.SQL
		if s == nil || s.Driver == "" {
			return invalid("crm.sql.driver", "", "required with crm.type sql: postgres, mysql (also MariaDB) or sqlite")
		}
		switch {
		case s.Driver != sqlsrc.Postgres && s.Driver != sqlsrc.MySQL && s.Driver != sqlsrc.SQLite:
			return invalid("crm.sql.driver", s.Driver, "must be postgres, mysql (also MariaDB) or sqlite")
		case s.DSN == "":
			return invalid("crm.sql.dsn", "", "required: the connection string, e.g. dsn: ${CRM_DATABASE_URL}")
		case (s.Table == "") == (s.Query == ""):
			return invalid("crm.sql.table", s.Table, "set table (a table name) or query (a SELECT), exactly one of them")
		case s.IDColumn == "":
			return invalid("crm.sql.id_column", "", "required: the unique id column of the keyset, e.g. id")
		case s.UpdatedAtColumn == "":
			return invalid("crm.sql.updated_at_column", "", "required: the last-modified column of the keyset, e.g. updated_at")
		case s.PageSize < 1 || s.PageSize > 100000:
			return invalid("crm.sql.page_size", fmt.Sprint(s.PageSize), "must be between 1 and 100000")
		case s.Overlap < 0:
			return invalid("crm.sql.overlap", s.Overlap.String(), "must not be negative; it is re-read below the watermark to catch rows committed late")
		case s.FullScanEvery < 0:
			return invalid("crm.sql.full_scan_every", fmt.Sprint(s.FullScanEvery), "must be 0 (never by count) or a number of runs")
		case s.FullScanInterval < 0:
			return invalid("crm.sql.full_scan_interval", s.FullScanInterval.String(), "must be 0 (never by age) or a duration such as 24h")
		case s.Incremental && s.FullScanEvery == 0 && s.FullScanInterval == 0:
			return invalid("crm.sql.full_scan_every", "0", "with incremental: true set full_scan_every or full_scan_interval, or hard-deleted rows are never noticed")
		}
		return s.Columns.validate("crm.sql.columns", "column")
	case "hubspot":
		h := c.HubSpot
		if h == nil || h.Token == "" {
			return invalid("crm.hubspot.token", "", "required with crm.type hubspot: a private-app token or service key; set HUBSPOT_TOKEN or write token: ${HUBSPOT_TOKEN}")
		}
		u, err := url.Parse(h.BaseURL)
		switch {
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			return invalid("crm.hubspot.base_url", h.BaseURL, "must be an http(s) URL, e.g. %s", hubspot.DefaultBaseURL)
		case u.Scheme == "http" && !isLoopback(u.Hostname()):
			return invalid("crm.hubspot.base_url", h.BaseURL, "plain http would send the token in the clear; use https (http is allowed for loopback test servers only)")
		case !hubspotPrefix.MatchString(h.PathPrefix):
			return invalid("crm.hubspot.path_prefix", h.PathPrefix, "must be /crm/v3/objects or a dated prefix such as /crm/objects/2026-09")
		case h.Lookback < 0:
			return invalid("crm.hubspot.lookback", h.Lookback.String(), "must not be negative; search results lag writes by seconds, so keep a few minutes")
		case h.FullScanEvery < 0:
			return invalid("crm.hubspot.full_scan_every", fmt.Sprint(h.FullScanEvery), "must be 0 (never by count) or a number of runs")
		case h.FullScanInterval < 0:
			return invalid("crm.hubspot.full_scan_interval", h.FullScanInterval.String(), "must be 0 (never by age) or a duration such as 24h")
		case h.Incremental && h.FullScanEvery == 0 && h.FullScanInterval == 0:
			return invalid("crm.hubspot.full_scan_every", "0", "with incremental: true set full_scan_every or full_scan_interval, or contacts deleted for good are never noticed")
		}
		return h.Fields.validate("crm.hubspot.fields", "property")
	case "":
		return invalid("crm.type", "", "required; supported: "+supportedSources)
	default:
		return invalid("crm.type", c.Type, "unknown source; supported: "+supportedSources)
	}
	return nil
}

// supportedSources lists the crm.type values.
const supportedSources = "csv, jsonl, sql, hubspot"

var hubspotPrefix = regexp.MustCompile(`^/crm/(v3/objects|objects/\d{4}-\d{2})/?$`)

// validate checks a field mapping of a source other than CSV.
func (m ColumnMap) validate(key, what string) error {
	if m.ExternalID == "" {
		return invalid(key+".external_id", "", "required: the %s holding the CRM's user id", what)
	}
	if m.Name != "" && m.NameTemplate != "" {
		return invalid(key+".name_template", m.NameTemplate, "set name or name_template, not both")
	}
	if _, err := crm.NewMapper(m.crm(), crm.Normalize{}, key); err != nil {
		field, msg, _ := strings.Cut(err.Error(), ": ")
		return &ValidationError{Field: field, Err: errors.New(msg)}
	}
	return nil
}

// crm converts the mapping to the adapters' type.
func (m ColumnMap) crm() crm.ColumnMap {
	return crm.ColumnMap{ExternalID: m.ExternalID, Email: m.Email, Name: m.Name, NameTemplate: m.NameTemplate,
		Phone: m.Phone, TaxID: m.TaxID, Metadata: m.Metadata}
}

// options converts the switches to the adapters' type.
func (n NormalizeConfig) options() crm.Normalize {
	return crm.Normalize{TrimSpace: n.TrimSpace, LowerEmailDomain: n.LowerEmailDomain,
		CollapseNameSpace: n.CollapseNameSpace, PhoneRegion: n.PhoneRegion, DropEmptyMetadata: n.DropEmptyMetadata}
}
