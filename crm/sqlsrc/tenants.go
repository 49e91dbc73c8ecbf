package sqlsrc

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// TenantRow is one row of a tenants query: a tenant id and the Plugipay
// account it syncs into.
type TenantRow struct {
	ID      string
	Account string
}

// ReadTenants runs query, a SELECT of two columns (tenant id, Plugipay
// account), on the database and returns its rows in the query's order,
// trimmed; a NULL reads as empty. Platform mode (issue 19) runs it at the
// start of every round, so a merchant added to the CRM is synced without
// a restart. It checks nothing about the values: the caller decides what
// a valid id is.
func ReadTenants(ctx context.Context, driver, dsn, query string) ([]TenantRow, error) {
	d, ok := dialects[driver]
	if !ok {
		return nil, fmt.Errorf("crm: sql: %q is not one of postgres, mysql, sqlite", driver)
	}
	dsn, err := sessionDSN(driver, dsn)
	if err != nil {
		return nil, err
	}
	db, err := sql.Open(d.driverName, dsn)
	if err != nil {
		return nil, fmt.Errorf("crm: sql: %w", err)
	}
	defer db.Close()
	rows, err := db.QueryContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("crm: sql: tenants query: %w", err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, fmt.Errorf("crm: sql: tenants query: %w", err)
	}
	if len(cols) != 2 {
		return nil, fmt.Errorf("crm: sql: tenants query: returns %d columns (%s), want 2: tenant_id, plugipay_account", len(cols), strings.Join(cols, ", "))
	}
	var out []TenantRow
	for rows.Next() {
		var id, acc any
		if err := rows.Scan(&id, &acc); err != nil {
			return nil, fmt.Errorf("crm: sql: tenants query: %w", err)
		}
		out = append(out, TenantRow{ID: strings.TrimSpace(str(keyParam(id))), Account: strings.TrimSpace(str(keyParam(acc)))})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("crm: sql: tenants query: %w", err)
	}
	return out, nil
}
