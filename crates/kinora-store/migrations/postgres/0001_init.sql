-- Times are Unix milliseconds; ids are UUID strings; JSON documents are TEXT.
CREATE TABLE accounts (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE tasks (
    id                TEXT PRIMARY KEY,
    account_id        TEXT NOT NULL REFERENCES accounts(id),
    dialect           TEXT NOT NULL,
    kind              TEXT NOT NULL,
    model             TEXT NOT NULL,
    state             TEXT NOT NULL,
    request           TEXT NOT NULL,
    external_task_id  TEXT,
    callback_url      TEXT,
    channel           TEXT,
    upstream_task_id  TEXT,
    result            TEXT,
    failure_class     TEXT,
    failure_message   TEXT,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    submitted_at      BIGINT,
    started_at        BIGINT,
    finished_at       BIGINT
);

CREATE UNIQUE INDEX tasks_account_external_task_id
    ON tasks (account_id, external_task_id) WHERE external_task_id IS NOT NULL;
CREATE INDEX tasks_account_id_desc ON tasks (account_id, id DESC);
CREATE INDEX tasks_unfinished ON tasks (state) WHERE state IN ('queued', 'submitted', 'running');

CREATE TABLE jobs (
    id            BIGSERIAL PRIMARY KEY,
    kind          TEXT NOT NULL,
    payload       TEXT NOT NULL,
    task_id       TEXT REFERENCES tasks(id),
    state         TEXT NOT NULL,
    attempts      BIGINT NOT NULL DEFAULT 0,
    max_attempts  BIGINT NOT NULL,
    next_run_at   BIGINT NOT NULL,
    lease_owner   TEXT,
    lease_until   BIGINT,
    last_error    TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL,
    finished_at   BIGINT
);

CREATE INDEX jobs_ready ON jobs (next_run_at, id) WHERE state = 'queued';
CREATE INDEX jobs_leased ON jobs (lease_until) WHERE state = 'running';
CREATE INDEX jobs_task ON jobs (task_id);
