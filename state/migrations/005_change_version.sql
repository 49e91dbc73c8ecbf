-- 005_change_version: a counter that moves whenever a mapping, a pending
-- write or a failure changes, whoever changes it. A run keeps the prints
-- of the rows it confirmed in a file beside the state DB (issue 13); the
-- file is trusted only at the counter value it was written at, so any
-- other writer (sync --external-id, retry, rebuild-cache, a run that died
-- in its apply phase) makes the next run decode every row again.
-- The same row counts the mappings: COUNT(*) walked the whole table, and
-- every run counts them (a cold start, the identity sample, the gauges),
-- filling the page cache with pages the run does not otherwise read.
CREATE TABLE change_version (
	id       INTEGER PRIMARY KEY CHECK (id = 1),
	version  INTEGER NOT NULL,
	mappings INTEGER NOT NULL
);
INSERT INTO change_version (id, version, mappings) VALUES (1, 0, (SELECT COUNT(*) FROM mappings));

CREATE TRIGGER mappings_insert_version AFTER INSERT ON mappings
BEGIN UPDATE change_version SET version = version + 1, mappings = mappings + 1; END;
CREATE TRIGGER mappings_update_version AFTER UPDATE ON mappings
BEGIN UPDATE change_version SET version = version + 1; END;
CREATE TRIGGER mappings_delete_version AFTER DELETE ON mappings
BEGIN UPDATE change_version SET version = version + 1, mappings = mappings - 1; END;

CREATE TRIGGER pending_insert_version AFTER INSERT ON pending_writes
BEGIN UPDATE change_version SET version = version + 1; END;
CREATE TRIGGER pending_update_version AFTER UPDATE ON pending_writes
BEGIN UPDATE change_version SET version = version + 1; END;
CREATE TRIGGER pending_delete_version AFTER DELETE ON pending_writes
BEGIN UPDATE change_version SET version = version + 1; END;

CREATE TRIGGER failures_insert_version AFTER INSERT ON failures
BEGIN UPDATE change_version SET version = version + 1; END;
CREATE TRIGGER failures_update_version AFTER UPDATE ON failures
BEGIN UPDATE change_version SET version = version + 1; END;
CREATE TRIGGER failures_delete_version AFTER DELETE ON failures
BEGIN UPDATE change_version SET version = version + 1; END;

-- Every run asks for the failures of one code (duplicate marks, unresolved
-- conflicts); without an index each question read the whole table, 52,000
-- rows of known rejects on a hostile export, into the page cache.
CREATE INDEX failures_code ON failures (code, external_id);
