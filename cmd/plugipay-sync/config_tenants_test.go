package main

import (
	"strings"
	"testing"
)

// platformBase is the smallest valid platform-mode config; cases append
// or replace keys.
const platformBase = `
state:
  path: tenants
destination:
  plugipay:
    key_id: key_1
    secret: ${SECRET}
crm:
  type: sql
  sql:
    driver: sqlite
    dsn: file:crm.db
    table: members
    tenant_column: tenant_id
    columns:
      external_id: id
tenants:
  list:
    - {id: acme, on_behalf_of: acc_acme}
    - {id: globex-2, on_behalf_of: acc_globex}
`

func TestReadConfigFile_Tenants(t *testing.T) {
	t.Run("valid", func(t *testing.T) {
		cfg, err := ReadConfigFile(writeConfig(t, platformBase), env(map[string]string{"SECRET": "sk"}))
		if err != nil {
			t.Fatal(err)
		}
		if !cfg.platform() || cfg.Tenants.Concurrency != DefaultTenantConcurrency || len(cfg.Tenants.List) != 2 {
			t.Fatalf("tenants = %+v", cfg.Tenants)
		}
		if cfg.CRM.SQL.TenantColumn != "tenant_id" {
			t.Fatalf("tenant_column = %q", cfg.CRM.SQL.TenantColumn)
		}
	})
	t.Run("valid on postgres", func(t *testing.T) {
		yaml := strings.Replace(platformBase, "state:\n  path: tenants\n", "state:\n  driver: postgres\n  dsn: postgres://h/db\n", 1) +
			"  run_timeout: 2m\n  rescue_after: 3m\n"
		cfg, err := ReadConfigFile(writeConfig(t, yaml), env(map[string]string{"SECRET": "sk"}))
		if err != nil {
			t.Fatal(err)
		}
		if got := tenantSchema(cfg.State.Schema, "globex-2"); got != "plugipay_sync_globex-2" {
			t.Errorf("tenant schema = %q", got)
		}
		if got := fleetSchema(cfg.State.Schema); got != "plugipay_sync__jobs" {
			t.Errorf("jobs schema = %q", got)
		}
	})
	t.Run("valid with the trigger API", func(t *testing.T) {
		cfg, err := ReadConfigFile(writeConfig(t, platformBase+"realtime:\n  listen: 127.0.0.1:0\n  token: ${TOKEN}\n"),
			env(map[string]string{"SECRET": "sk", "TOKEN": "trg_0123456789abcdef"}))
		if err != nil {
			t.Fatal(err)
		}
		if !cfg.Realtime.serves() || cfg.Realtime.Postgres.Enabled {
			t.Fatalf("realtime = %+v", cfg.Realtime)
		}
	})
	t.Run("valid with LISTEN/NOTIFY", func(t *testing.T) {
		yaml := strings.Replace(platformBase, "driver: sqlite\n    dsn: file:crm.db", "driver: postgres\n    dsn: postgres://h/crm", 1) +
			"realtime:\n  postgres:\n    enabled: true\n    channel: merchants_changed\n"
		cfg, err := ReadConfigFile(writeConfig(t, yaml), env(map[string]string{"SECRET": "sk"}))
		if err != nil {
			t.Fatal(err)
		}
		if !cfg.Realtime.Postgres.Enabled || cfg.Realtime.serves() {
			t.Fatalf("realtime = %+v", cfg.Realtime)
		}
	})
	list := "  list:\n    - {id: acme, on_behalf_of: acc_acme}\n    - {id: globex-2, on_behalf_of: acc_globex}\n"
	tests := []struct{ name, yaml, want string }{
		{"list and query", strings.Replace(platformBase, "tenants:\n", "tenants:\n  query: SELECT a, b FROM m\n", 1),
			"tenants: set list (id and on_behalf_of of each tenant) or query (a SELECT of tenant_id, plugipay_account on the CRM database), exactly one of them"},
		{"neither", strings.Replace(platformBase, list, "  concurrency: 2\n", 1), "tenants: set list"},
		{"query not a select", strings.Replace(platformBase, list, "  query: DELETE FROM merchants\n", 1), "tenants.query: must be a SELECT returning two columns, tenant_id and plugipay_account"},
		{"id with a slash", strings.Replace(platformBase, "id: acme,", "id: ../acme,", 1), `tenants.list[0].id: must be 1 to 48 characters of lowercase letters a-z, digits 0-9, _ and -, starting with a letter or digit (it names the tenant's state file and schema) (got "../acme")`},
		{"id upper case", strings.Replace(platformBase, "id: acme,", "id: Acme,", 1), `tenants.list[0].id: must be 1 to 48 characters`},
		{"duplicated id", strings.Replace(platformBase, "id: globex-2,", "id: acme,", 1), `tenants.list[1].id: duplicated: each tenant once (got "acme")`},
		{"bad account", strings.Replace(platformBase, "on_behalf_of: acc_globex", "on_behalf_of: globex", 1), `tenants.list[1].on_behalf_of: must be the merchant's Plugipay account id, acc_..., which the platform key acts for (got "globex")`},
		{"tenant base url", strings.Replace(platformBase, "on_behalf_of: acc_globex}", "on_behalf_of: acc_globex, base_url: http://api.example.com}", 1), `tenants.list[1].base_url: plain http is allowed only for loopback addresses`},
		{"concurrency", platformBase + "  concurrency: 0\n", `tenants.concurrency: must be between 1 and 256: how many tenants run at once (got "0")`},
		{"no tenant column", strings.Replace(platformBase, "    tenant_column: tenant_id\n", "", 1), "crm.sql.tenant_column: required in platform mode: the column holding the tenant id of each user row (sent as a bound parameter)"},
		{"tenant column with SQL", strings.Replace(platformBase, "tenant_column: tenant_id", "tenant_column: \"tenant_id = 'x' OR 1\"", 1), "crm.sql.tenant_column: must be a plain column name (letters, digits and _)"},
		{"global on_behalf_of", strings.Replace(platformBase, "key_id: key_1", "key_id: key_1\n    on_behalf_of: acc_x", 1), "destination.plugipay.on_behalf_of: leave it empty in platform mode: each tenant gives its own on_behalf_of"},
		{"csv source", platformBase[:strings.Index(platformBase, "crm:")] + "crm:\n  type: csv\n  csv: {path: u.csv, columns: {external_id: id}}\n" + platformBase[strings.Index(platformBase, "tenants:\n  list"):],
			`crm.type: platform mode reads each tenant's users from crm.type: sql with crm.sql.tenant_column (got "csv")`},
		{"metrics tenant id", platformBase + "  metrics_tenants: [ACME]\n", `tenants.metrics_tenants[0]: must be 1 to 48 characters`},
		{"verify schedule", platformBase + "sync:\n  verify_schedule: \"@daily\"\n", "sync.verify_schedule: not supported in platform mode yet; leave it empty"},
		{"tenant column without tenants", platformBase[:strings.Index(platformBase, "tenants:\n  list")], "crm.sql.tenant_column: is for platform mode only; add a tenants: section (list or query) or remove it"},
		{"schema too long for tenants", strings.Replace(platformBase, "state:\n  path: tenants\n", "state:\n  driver: postgres\n  dsn: postgres://h/db\n  schema: plugipay_sync_x\n", 1),
			`state.schema: at most 14 characters in platform mode: each tenant's schema is <state.schema>_<tenant id>, within PostgreSQL's 63 (got "plugipay_sync_x")`},
		{"realtime postgres on sqlite", platformBase + "realtime:\n  postgres:\n    enabled: true\n",
			`realtime.postgres.enabled: needs crm.type: sql with crm.sql.driver: postgres`},
		{"realtime hubspot", platformBase + "realtime:\n  hubspot:\n    client_secret: hs_secret\n    webhook_url: https://sync.example.com/v1/webhooks/hubspot\n",
			"realtime.hubspot.client_secret: not supported in platform mode (its users come from crm.type: sql): remove it"},
		{"trigger token too short", platformBase + "realtime:\n  token: short\n", "realtime.token: must be at least 16 characters"},
		{"negative run timeout", platformBase + "  run_timeout: -1s\n", `tenants.run_timeout: must not be negative (default 10m0s) (got "-1s")`},
		{"rescue not after the run timeout", platformBase + "  run_timeout: 5m\n  rescue_after: 5m\n",
			`tenants.rescue_after: must exceed tenants.run_timeout (5m0s): a run still working must not be taken for dead (got "5m0s")`},
		{"rescue not after the default run timeout", platformBase + "  rescue_after: 1m\n",
			`tenants.rescue_after: must exceed tenants.run_timeout (10m0s)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadConfigFile(writeConfig(t, tt.yaml), env(map[string]string{"SECRET": "sk"}))
			if err == nil {
				t.Fatalf("no error; want %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %q\nwant it to contain %q", err, tt.want)
			}
		})
	}
}
