package main

import (
	"cmp"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// TenantsConfig is platform mode (issue 19): one process syncs many
// merchant workspaces, each tenant's users (the CRM rows whose
// crm.sql.tenant_column holds its id) into its own Plugipay workspace
// through the platform key's on_behalf_of. Absent, the program serves one
// workspace as before.
type TenantsConfig struct {
	// List names the tenants; Query reads them from the CRM database
	// instead (two columns: tenant id, Plugipay account), again at the
	// start of every round. Set one.
	List  []TenantConfig `yaml:"list"`
	Query string         `yaml:"query"`
	// Concurrency is how many tenants run at once (the worker pool).
	Concurrency int `yaml:"concurrency"`
	// MetricsTenants get per-tenant series even while healthy; every
	// other tenant has them only while failing (bounded cardinality).
	MetricsTenants []string `yaml:"metrics_tenants"`
	// RunTimeout bounds one tenant's run when replicas share the tenants
	// (state.driver postgres): a longer backfill goes on in the next job
	// from where it stopped. RescueAfter is how long a run whose replica
	// died is left before another replica takes it over; it must exceed
	// RunTimeout, since a working run must not be taken for dead.
	RunTimeout  time.Duration `yaml:"run_timeout"`
	RescueAfter time.Duration `yaml:"rescue_after"`
}

// Defaults of the replicas' job timing (tenants.run_timeout, rescue_after).
const (
	DefaultTenantRunTimeout  = 10 * time.Minute
	DefaultTenantRescueAfter = DefaultTenantRunTimeout + time.Minute
)

// maxTenantSchemaBase is the longest state.schema of platform mode on
// PostgreSQL: a tenant's schema is <state.schema>_<tenant id>, and the
// longest tenant id (48) must still fit PostgreSQL's 63-byte names.
const maxTenantSchemaBase = 63 - 1 - 48

// tenantSchema is the PostgreSQL schema of tenant id's state.
func tenantSchema(base, id string) string { return base + "_" + id }

// fleetSchema is the PostgreSQL schema of the replicas' job queue (River's
// tables), beside the tenants' schemas; no tenant's can be it, since a
// tenant id never starts with "_".
func fleetSchema(base string) string { return base + "__jobs" }

// TenantConfig is one tenant of tenants.list.
type TenantConfig struct {
	ID         string `yaml:"id"`
	OnBehalfOf string `yaml:"on_behalf_of"`
	// BaseURL, if set, replaces destination.plugipay.base_url for this
	// tenant (a regional endpoint, or a test emulator per account).
	BaseURL string `yaml:"base_url"`
}

// DefaultTenantConcurrency is tenants.concurrency: Plugipay's limits are
// per workspace, so tenants parallelise; a handful keeps one process's
// CPU and CRM connections in check.
const DefaultTenantConcurrency = 4

// UnmarshalYAML decodes over the defaults (see SQLConfig.UnmarshalYAML).
func (c *TenantsConfig) UnmarshalYAML(unmarshal func(any) error) error {
	type plain TenantsConfig
	p := plain{Concurrency: DefaultTenantConcurrency}
	if err := unmarshal(&p); err != nil {
		return err
	}
	*c = TenantsConfig(p)
	return nil
}

// tenantIDRE is what a tenant id may be: it names the tenant's state file
// (<state.path>/<id>.db) and, with a PostgreSQL store, its schema, so it
// holds no path separator, dot, space or quote, and no upper case (which
// file systems and PostgreSQL fold differently).
var tenantIDRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,47}$`)

// tenantIDRule says tenantIDRE in words, for errors.
const tenantIDRule = "must be 1 to 48 characters of lowercase letters a-z, digits 0-9, _ and -, starting with a letter or digit (it names the tenant's state file and schema)"

// checkTenantID is the one check of a tenant id, for the config and for
// the rows of tenants.query.
func checkTenantID(id string) error {
	if !tenantIDRE.MatchString(id) {
		return fmt.Errorf("%s", tenantIDRule)
	}
	return nil
}

// checkAccount checks a tenant's Plugipay account id.
func checkAccount(acc string) error {
	if !strings.HasPrefix(acc, "acc_") || len(acc) < 5 || strings.ContainsAny(acc, " \t\r\n") {
		return fmt.Errorf("must be the merchant's Plugipay account id, acc_..., which the platform key acts for")
	}
	return nil
}

// platform reports whether the config is in platform mode.
func (c *Config) platform() bool { return c.Tenants != nil }

// validateTenants checks platform mode against the rest of the config:
// the users come from a SQL source bound to each tenant, the destination
// is Plugipay (on_behalf_of), and state.path is a directory of per-tenant
// state files.
func (c *Config) validateTenants() error {
	if !c.platform() {
		if s := c.CRM.SQL; c.CRM.Type == "sql" && s != nil && s.TenantColumn != "" {
			return invalid("crm.sql.tenant_column", s.TenantColumn, "is for platform mode only; add a tenants: section (list or query) or remove it")
		}
		return nil
	}
	t := c.Tenants
	switch {
	case (len(t.List) == 0) == (t.Query == ""):
		return invalid("tenants", "", "set list (id and on_behalf_of of each tenant) or query (a SELECT of tenant_id, plugipay_account on the CRM database), exactly one of them")
	case t.Concurrency < 1 || t.Concurrency > 256:
		return invalid("tenants.concurrency", fmt.Sprint(t.Concurrency), "must be between 1 and 256: how many tenants run at once")
	case c.Destination.Type != DestPlugipay:
		return invalid("destination.type", c.Destination.Type, "platform mode (tenants:) needs plugipay: each tenant is a merchant workspace reached with on_behalf_of")
	case c.Plugipay.OnBehalfOf != "":
		return invalid(c.plugipayKey+".on_behalf_of", c.Plugipay.OnBehalfOf, "leave it empty in platform mode: each tenant gives its own on_behalf_of")
	case c.CRM.Type != "sql" || c.CRM.SQL == nil:
		return invalid("crm.type", c.CRM.Type, "platform mode reads each tenant's users from crm.type: sql with crm.sql.tenant_column")
	case c.CRM.SQL.TenantColumn == "":
		return invalid("crm.sql.tenant_column", "", "required in platform mode: the column holding the tenant id of each user row (sent as a bound parameter)")
	case !columnName.MatchString(c.CRM.SQL.TenantColumn):
		return invalid("crm.sql.tenant_column", c.CRM.SQL.TenantColumn, "must be a plain column name (letters, digits and _)")
	case c.Sync.VerifySchedule != "":
		return invalid("sync.verify_schedule", c.Sync.VerifySchedule, "not supported in platform mode yet; leave it empty")
	case c.State.Postgres() && len(c.State.Schema) > maxTenantSchemaBase:
		return invalid("state.schema", c.State.Schema, "at most %d characters in platform mode: each tenant's schema is <state.schema>_<tenant id>, within PostgreSQL's 63", maxTenantSchemaBase)
	case t.RunTimeout < 0:
		return invalid("tenants.run_timeout", t.RunTimeout.String(), "must not be negative (default %s)", DefaultTenantRunTimeout)
	case t.RescueAfter != 0 && t.RescueAfter <= cmp.Or(t.RunTimeout, DefaultTenantRunTimeout):
		return invalid("tenants.rescue_after", t.RescueAfter.String(), "must exceed tenants.run_timeout (%s): a run still working must not be taken for dead", cmp.Or(t.RunTimeout, DefaultTenantRunTimeout))
	}
	if t.Query != "" && !strings.HasPrefix(strings.ToUpper(strings.TrimSpace(t.Query)), "SELECT") {
		return invalid("tenants.query", "", "must be a SELECT returning two columns, tenant_id and plugipay_account")
	}
	seen := map[string]bool{}
	for i, tc := range t.List {
		key := fmt.Sprintf("tenants.list[%d]", i)
		if err := checkTenantID(tc.ID); err != nil {
			return invalid(key+".id", tc.ID, "%v", err)
		}
		if seen[tc.ID] {
			return invalid(key+".id", tc.ID, "duplicated: each tenant once")
		}
		seen[tc.ID] = true
		if err := checkAccount(tc.OnBehalfOf); err != nil {
			return invalid(key+".on_behalf_of", tc.OnBehalfOf, "%v", err)
		}
		if tc.BaseURL != "" {
			p := c.Plugipay
			p.BaseURL = tc.BaseURL
			if err := p.validate(key); err != nil {
				return err
			}
		}
	}
	for i, id := range t.MetricsTenants {
		if err := checkTenantID(id); err != nil {
			return invalid(fmt.Sprintf("tenants.metrics_tenants[%d]", i), id, "%v", err)
		}
	}
	return nil
}

var columnName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
