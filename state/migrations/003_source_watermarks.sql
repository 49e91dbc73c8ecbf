-- 003_source_watermarks: where an incremental source (SQL, HubSpot) got to,
-- so the next run reads only what changed since, minus an overlap window.
-- One row per source (keyed by a name the source derives from its config,
-- so pointing the daemon at another table starts from scratch).
-- watermark is unix nanoseconds (UTC) of the newest change read by the last
-- complete read; runs_since_full counts incremental reads since the last
-- full scan, which is what catches hard deletes.
CREATE TABLE source_watermarks (
	source          TEXT    PRIMARY KEY,
	watermark       INTEGER NOT NULL,
	runs_since_full INTEGER NOT NULL DEFAULT 0,
	last_full_at    INTEGER NOT NULL DEFAULT 0,
	updated_at      INTEGER NOT NULL
) WITHOUT ROWID;
