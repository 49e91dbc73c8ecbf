-- 002_seen_in_run: which external ids a run read from the source, so that
-- after a complete run the mappings it did not see (users gone from the
-- CRM) can be archived. Written per source batch, only with
-- sync.deletion: archive; a run's rows are deleted when it finishes.
CREATE TABLE seen_in_run (
	run_id      INTEGER NOT NULL,
	external_id TEXT    NOT NULL,
	PRIMARY KEY (run_id, external_id)
) WITHOUT ROWID;
