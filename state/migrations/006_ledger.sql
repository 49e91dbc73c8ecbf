-- 006_ledger: what each confirmed write left on the customer, and a
-- ledger of the writes (issue 18). Neither table has a change_version
-- trigger: they are written in the same transaction as the mapping they
-- belong to, whose own trigger moves the counter, and a ledger row alone
-- (pruning) changes nothing a run's prints depend on.

-- confirmed_records holds the managed fields and owned metadata keys of
-- the content last confirmed for a user, as JSON, with the hash it was
-- confirmed under. verify compares the destination with it; a row whose
-- hash is not the mapping's (a mapping from a cache rebuild, or older than
-- this table) is not compared.
CREATE TABLE confirmed_records (
	external_id TEXT NOT NULL PRIMARY KEY,
	hash        TEXT NOT NULL,
	record      TEXT NOT NULL
) WITHOUT ROWID;

-- audit_log has one row per confirmed write: when, what caused it (a run,
-- sync --external-id, verify, a webhook) and its id, the user and the
-- customer, the operation, the idempotency key and the API's request id,
-- and the fields changed as JSON [{field, old, new, redacted}].
CREATE TABLE audit_log (
	id              INTEGER PRIMARY KEY AUTOINCREMENT,
	at              INTEGER NOT NULL,
	cause           TEXT    NOT NULL,
	cause_id        TEXT    NOT NULL DEFAULT '',
	external_id     TEXT    NOT NULL,
	customer_id     TEXT    NOT NULL,
	op              TEXT    NOT NULL,
	idempotency_key TEXT    NOT NULL DEFAULT '',
	request_id      TEXT    NOT NULL DEFAULT '',
	changes         TEXT    NOT NULL DEFAULT '[]'
);

CREATE INDEX audit_log_external_id ON audit_log (external_id, id);
CREATE INDEX audit_log_at ON audit_log (at);
