-- 002_seen_in_run (PostgreSQL): which external ids a run read from the
-- source; see the SQLite migration of the same name.
CREATE TABLE seen_in_run (
	run_id      BIGINT NOT NULL,
	external_id TEXT COLLATE "C" NOT NULL,
	PRIMARY KEY (run_id, external_id)
);
