-- 004_run_counts_destination: two run counts the history did not keep
-- (customers archived, users skipped by the sync mode), and a key-value
-- table of facts about the state file itself. Its first fact is the
-- destination the mappings belong to: a state file made for one payments
-- API must not be used against another, whose customer ids it does not
-- know.
ALTER TABLE runs ADD COLUMN archived INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN skipped INTEGER NOT NULL DEFAULT 0;

CREATE TABLE state_meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
) WITHOUT ROWID;
