-- Metering: a metered account's tasks are priced and their price held before they are
-- accepted; an unmetered one's are free. Accounts start unmetered at this layer; operators'
-- commands meter the accounts they create, and a credit turns metering on. The bootstrap
-- account stays unmetered until then, so a fresh install works with no setup.
ALTER TABLE accounts ADD COLUMN metered BIGINT NOT NULL DEFAULT 0;
UPDATE accounts SET metered = 1 WHERE id IN (SELECT account_id FROM ledger_entries);

-- Per-key limits an app sets for its keys; NULL takes the server's default.
ALTER TABLE apps ADD COLUMN submits_per_second BIGINT;
ALTER TABLE apps ADD COLUMN max_in_flight BIGINT;

-- A key may belong to an app, whose balance (and limits) its tasks use; without one, the
-- account's general balance pays.
ALTER TABLE api_keys ADD COLUMN app_id TEXT REFERENCES apps(id);
ALTER TABLE access_keys ADD COLUMN app_id TEXT REFERENCES apps(id);

-- The key that created a task (an API key's or an access key's id), for its in-flight limit,
-- and what the task finally cost.
ALTER TABLE tasks ADD COLUMN key_id TEXT;
ALTER TABLE tasks ADD COLUMN charged BIGINT;
CREATE INDEX tasks_key_unfinished ON tasks (key_id) WHERE state IN ('queued', 'submitted', 'running');

-- The per-second price a charge was held at, so the capture prices the actual output with
-- the rate the client was quoted.
ALTER TABLE task_charges ADD COLUMN per_second BIGINT NOT NULL DEFAULT 0;
