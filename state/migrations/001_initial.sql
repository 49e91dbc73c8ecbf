-- 001_initial: the cache of mappings, the pending writes that pin
-- idempotency keys, the failures kept until a record syncs, and run history.
-- Timestamps are unix nanoseconds (UTC); 0 means "not set".

-- mappings ties a CRM user (external id) to its Plugipay customer. WITHOUT
-- ROWID so a lookup by external id is a single B-tree search.
CREATE TABLE mappings (
	external_id TEXT    NOT NULL PRIMARY KEY,
	customer_id TEXT    NOT NULL,
	hash        TEXT    NOT NULL DEFAULT '',
	synced_at   INTEGER NOT NULL,
	created_at  INTEGER NOT NULL,
	updated_at  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE INDEX mappings_customer_id ON mappings (customer_id);

-- pending_writes holds at most one intended write per user, recorded before
-- its first attempt so every retry sends the same idempotency key.
CREATE TABLE pending_writes (
	external_id     TEXT    NOT NULL PRIMARY KEY,
	op              TEXT    NOT NULL CHECK (op IN ('create', 'update')),
	customer_id     TEXT    NOT NULL DEFAULT '',
	hash            TEXT    NOT NULL DEFAULT '',
	idempotency_key TEXT    NOT NULL,
	created_at      INTEGER NOT NULL
) WITHOUT ROWID;

-- failures holds records the last run could not sync, until they sync.
CREATE TABLE failures (
	external_id     TEXT    NOT NULL PRIMARY KEY,
	hash            TEXT    NOT NULL DEFAULT '',
	terminal        INTEGER NOT NULL DEFAULT 0,
	attempts        INTEGER NOT NULL DEFAULT 0,
	code            TEXT    NOT NULL DEFAULT '',
	message         TEXT    NOT NULL DEFAULT '',
	request_id      TEXT    NOT NULL DEFAULT '',
	next_attempt_at INTEGER NOT NULL DEFAULT 0,
	updated_at      INTEGER NOT NULL
) WITHOUT ROWID;

-- runs is the history of reconciler runs. finished_at is NULL while a run
-- is going on, and stays NULL when its process died (outcome 'aborted').
CREATE TABLE runs (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	started_at  INTEGER NOT NULL,
	finished_at INTEGER,
	outcome     TEXT    NOT NULL DEFAULT '',
	error       TEXT    NOT NULL DEFAULT '',
	read        INTEGER NOT NULL DEFAULT 0,
	created     INTEGER NOT NULL DEFAULT 0,
	updated     INTEGER NOT NULL DEFAULT 0,
	unchanged   INTEGER NOT NULL DEFAULT 0,
	recovered   INTEGER NOT NULL DEFAULT 0,
	rejected    INTEGER NOT NULL DEFAULT 0,
	failed      INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX runs_unfinished ON runs (id) WHERE finished_at IS NULL;
