package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	"gopkg.in/yaml.v3"
)

// Config is the daemon's configuration file. Every key is documented in
// config.example.yaml; keep the two in step.
type Config struct {
	Schedule string         `yaml:"schedule"`
	Listen   string         `yaml:"listen"`
	State    StateConfig    `yaml:"state"`
	Plugipay PlugipayConfig `yaml:"plugipay"`
	CRM      CRMConfig      `yaml:"crm"`
	Sync     SyncConfig     `yaml:"sync"`
	Log      LogConfig      `yaml:"log"`
}

// StateConfig locates the SQLite state database.
type StateConfig struct {
	Path string `yaml:"path"`
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
}

// CRMConfig selects and configures the CRM source.
type CRMConfig struct {
	Type string     `yaml:"type"`
	CSV  *CSVConfig `yaml:"csv"`
}

// CSVConfig configures the CSV source.
type CSVConfig struct {
	Path      string    `yaml:"path"`
	Delimiter string    `yaml:"delimiter"`
	Columns   ColumnMap `yaml:"columns"`
}

// ColumnMap names the source columns that feed each customer field.
type ColumnMap struct {
	ExternalID string            `yaml:"external_id"`
	Email      string            `yaml:"email"`
	Name       string            `yaml:"name"`
	Phone      string            `yaml:"phone"`
	TaxID      string            `yaml:"tax_id"`
	Metadata   map[string]string `yaml:"metadata"`
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
)

// DefaultConfig returns the configuration used for every key a file leaves out.
func DefaultConfig() Config {
	return Config{
		Schedule: DefaultSchedule,
		Listen:   DefaultListen,
		State:    StateConfig{Path: DefaultState},
		Plugipay: PlugipayConfig{Timeout: DefaultTimeout, MaxAttempts: 4, ReadsPerSecond: 100, WritesPerSecond: 20},
		CRM:      CRMConfig{Type: "csv"},
		Sync: SyncConfig{
			Concurrency:     8,
			BatchSize:       500,
			RecordTimeout:   2 * time.Minute,
			RetryMin:        time.Minute,
			RetryMax:        6 * time.Hour,
			Deletion:        "ignore",
			MaxArchiveRatio: 0.05,
		},
		Log: LogConfig{Format: "json", Level: "info"},
	}
}

// ReadConfigFile reads, expands, parses and validates the file at path.
// lookupEnv resolves ${VAR} references and the PLUGIPAY_* fallbacks; pass
// nil to disable expansion.
func ReadConfigFile(path string, lookupEnv func(string) (string, bool)) (Config, error) {
	b, err := os.ReadFile(path)
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
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	if lookupEnv != nil {
		cfg.applyEnvFallbacks(lookupEnv)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// ExpandEnv replaces ${VAR} and ${VAR:-default} in the raw config bytes,
// before YAML parsing, so secrets can stay out of the file. A reference to
// an unset variable without a default is an error naming it. "$${" escapes
// a literal "${". Comment lines are left alone.
func ExpandEnv(b []byte, lookupEnv func(string) (string, bool)) ([]byte, error) {
	const escaped = "\x00escaped-dollar\x00"
	var missing []string
	expand := func(ref string) string {
		m := envRef.FindStringSubmatch(ref)
		if v, ok := lookupEnv(m[1]); ok && v != "" {
			return v
		}
		if m[2] != "" {
			return m[3]
		}
		missing = append(missing, m[1])
		return ""
	}
	lines := strings.SplitAfter(string(b), "\n")
	for i, line := range lines {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue // comments may show ${VAR} syntax without needing VAR
		}
		line = strings.ReplaceAll(line, "$${", escaped)
		lines[i] = envRef.ReplaceAllStringFunc(line, expand)
	}
	s := strings.Join(lines, "")
	if len(missing) > 0 {
		return nil, fmt.Errorf("environment variable %s is not set (referenced as ${%s}); export it or give a default as ${%s:-value}",
			missing[0], missing[0], missing[0])
	}
	return []byte(strings.ReplaceAll(s, escaped, "${")), nil
}

// ParseConfig decodes YAML strictly over DefaultConfig: an unknown or
// misspelt key is an error. It does not validate.
func ParseConfig(r io.Reader) (Config, error) {
	cfg := DefaultConfig()
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("parse: %w", err)
	}
	return cfg, nil
}

// applyEnvFallbacks fills empty Plugipay settings from PLUGIPAY_* variables.
func (c *Config) applyEnvFallbacks(lookupEnv func(string) (string, bool)) {
	for _, f := range []struct {
		dst *string
		env string
	}{
		{&c.Plugipay.BaseURL, "PLUGIPAY_BASE_URL"},
		{&c.Plugipay.KeyID, "PLUGIPAY_KEY_ID"},
		{&c.Plugipay.Secret, "PLUGIPAY_SECRET"},
		{&c.Plugipay.OnBehalfOf, "PLUGIPAY_ON_BEHALF_OF"},
	} {
		if *f.dst == "" {
			if v, ok := lookupEnv(f.env); ok {
				*f.dst = v
			}
		}
	}
	if c.Plugipay.BaseURL == "" {
		c.Plugipay.BaseURL = DefaultBaseURL
	}
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
	if c.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Listen); err != nil {
			return invalid("listen", c.Listen, "must be host:port or :port, e.g. \":9464\"; empty disables the metrics listener")
		}
	}
	if c.State.Path == "" {
		return invalid("state.path", "", "required: the SQLite file that caches what was synced, e.g. /data/plugipay-sync.db")
	}
	if err := c.Plugipay.validate(); err != nil {
		return err
	}
	if err := c.CRM.validate(); err != nil {
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

func (p *PlugipayConfig) validate() error {
	u, err := url.Parse(p.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return invalid("plugipay.base_url", p.BaseURL, "must be an http(s) URL with a host, e.g. https://plugipay.com")
	}
	if u.Scheme == "http" && !p.InsecureHTTP && !isLoopback(u.Hostname()) {
		return invalid("plugipay.base_url", p.BaseURL, "plain http is allowed only for loopback addresses; use https, or set plugipay.insecure_http: true")
	}
	if p.KeyID == "" {
		return invalid("plugipay.key_id", "", "required; set it or the PLUGIPAY_KEY_ID environment variable")
	}
	if p.Secret == "" {
		return invalid("plugipay.secret", "", "required; set PLUGIPAY_SECRET, or reference a variable as secret: ${PLUGIPAY_SECRET}")
	}
	if p.Timeout <= 0 {
		return invalid("plugipay.timeout", p.Timeout.String(), "must be a positive duration, e.g. 30s")
	}
	if p.MaxAttempts < 1 || p.MaxAttempts > 20 {
		return invalid("plugipay.max_attempts", fmt.Sprint(p.MaxAttempts), "must be between 1 (no retries) and 20")
	}
	if p.ReadsPerSecond < 0 {
		return invalid("plugipay.reads_per_second", fmt.Sprint(p.ReadsPerSecond), "must be 0 (no cap) or positive; Plugipay allows 100")
	}
	if p.WritesPerSecond < 0 {
		return invalid("plugipay.writes_per_second", fmt.Sprint(p.WritesPerSecond), "must be 0 (no cap) or positive; Plugipay allows 20")
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (c *CRMConfig) validate() error {
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
	case "":
		return invalid("crm.type", "", "required; supported: csv")
	default:
		return invalid("crm.type", c.Type, "unknown source; supported: csv")
	}
	return nil
}
