-- 005_change_version (PostgreSQL): the counter that moves whenever a
-- mapping, a pending write or a failure changes, and the count of
-- mappings; see the SQLite migration of the same name.
--
-- SQLite's triggers run per row. Here they run per statement, over the
-- statement's transition table: one UPDATE of the counter row per
-- statement instead of one per row (a rebuild inserting a million
-- mappings would otherwise leave a million dead versions of that row).
-- The version moves by one per statement that changed rows, the mapping
-- count by the rows inserted or deleted; a statement that changed no row
-- moves nothing, as on SQLite. An upsert fires the INSERT trigger for the
-- rows it inserted and the UPDATE trigger for those it updated.
CREATE TABLE change_version (
	id       INTEGER PRIMARY KEY CHECK (id = 1),
	version  BIGINT NOT NULL,
	mappings BIGINT NOT NULL
);
INSERT INTO change_version (id, version, mappings) VALUES (1, 0, (SELECT COUNT(*) FROM mappings));

-- SET search_path FROM CURRENT pins the function to this schema, whatever
-- the session's search_path when a trigger fires.
CREATE FUNCTION change_version_bump() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
DECLARE
	n bigint;
BEGIN
	IF TG_OP = 'DELETE' THEN
		SELECT count(*) INTO n FROM old_rows;
	ELSE
		SELECT count(*) INTO n FROM new_rows;
	END IF;
	IF n > 0 THEN
		UPDATE change_version SET version = version + 1,
			mappings = mappings + CASE
				WHEN TG_TABLE_NAME <> 'mappings' THEN 0
				WHEN TG_OP = 'INSERT' THEN n
				WHEN TG_OP = 'DELETE' THEN -n
				ELSE 0 END;
	END IF;
	RETURN NULL;
END
$$;

CREATE TRIGGER mappings_insert_version AFTER INSERT ON mappings
REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION change_version_bump();
CREATE TRIGGER mappings_update_version AFTER UPDATE ON mappings
REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION change_version_bump();
CREATE TRIGGER mappings_delete_version AFTER DELETE ON mappings
REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION change_version_bump();

CREATE TRIGGER pending_insert_version AFTER INSERT ON pending_writes
REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION change_version_bump();
CREATE TRIGGER pending_update_version AFTER UPDATE ON pending_writes
REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION change_version_bump();
CREATE TRIGGER pending_delete_version AFTER DELETE ON pending_writes
REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION change_version_bump();

CREATE TRIGGER failures_insert_version AFTER INSERT ON failures
REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION change_version_bump();
CREATE TRIGGER failures_update_version AFTER UPDATE ON failures
REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION change_version_bump();
CREATE TRIGGER failures_delete_version AFTER DELETE ON failures
REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION change_version_bump();

CREATE INDEX failures_code ON failures (code, external_id);
