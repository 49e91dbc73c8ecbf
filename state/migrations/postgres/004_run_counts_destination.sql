-- 004_run_counts_destination (PostgreSQL): two more run counts and the
-- state_meta facts; see the SQLite migration of the same name.
ALTER TABLE runs ADD COLUMN archived BIGINT NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN skipped BIGINT NOT NULL DEFAULT 0;

CREATE TABLE state_meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
