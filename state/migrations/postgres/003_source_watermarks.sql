-- 003_source_watermarks (PostgreSQL): where an incremental source got to;
-- see the SQLite migration of the same name.
CREATE TABLE source_watermarks (
	source          TEXT   PRIMARY KEY,
	watermark       BIGINT NOT NULL,
	runs_since_full BIGINT NOT NULL DEFAULT 0,
	last_full_at    BIGINT NOT NULL DEFAULT 0,
	updated_at      BIGINT NOT NULL
);
