package state

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	stdsync "sync"
)

// maxInParams is the largest IN (...) list one lookup query binds; longer
// id lists are split into chunks of this size.
const maxInParams = 500

// inBuckets are the IN-list sizes that get a prepared statement. A list of
// n ids uses the smallest bucket >= n and repeats its last id to fill it
// (duplicates in IN are harmless), so each query has at most len(inBuckets)
// prepared forms instead of one per length.
var inBuckets = []int{1, 2, 4, 8, 16, 32, 64, 128, 256, maxInParams}

// stmtCache holds prepared statements keyed by query text. A *sql.Stmt on a
// *sql.DB is safe for concurrent use and re-prepares itself per connection.
type stmtCache struct {
	db *sqlDB
	mu stdsync.Mutex
	m  map[string]*sql.Stmt
}

func (c *stmtCache) get(ctx context.Context, query string) (*sql.Stmt, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.m[query]; ok {
		return s, nil
	}
	s, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if c.m == nil {
		c.m = map[string]*sql.Stmt{}
	}
	c.m[query] = s
	return s, nil
}

func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.m {
		_ = s.Close()
	}
	c.m = nil
}

// queryIn runs query, whose "(?)" placeholder list is written as "%s", for
// ids in chunks of at most maxInParams, calling scan for every row.
func (db *DB) queryIn(ctx context.Context, query string, ids []string, scan func(*sql.Rows) error) error {
	args := make([]any, 0, min(len(ids), maxInParams))
	for start := 0; start < len(ids); start += maxInParams {
		chunk := ids[start:min(start+maxInParams, len(ids))]
		n := bucket(len(chunk))
		args = args[:0]
		for _, id := range chunk {
			args = append(args, id)
		}
		for len(args) < n {
			args = append(args, chunk[len(chunk)-1])
		}
		stmt, err := db.stmts.get(ctx, fmt.Sprintf(query, placeholders(n)))
		if err != nil {
			return err
		}
		if err := queryRows(ctx, stmt, args, scan); err != nil {
			return err
		}
	}
	return nil
}

func queryRows(ctx context.Context, stmt *sql.Stmt, args []any, scan func(*sql.Rows) error) error {
	rows, err := stmt.QueryContext(ctx, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

func bucket(n int) int {
	for _, b := range inBuckets {
		if n <= b {
			return b
		}
	}
	return maxInParams
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}
