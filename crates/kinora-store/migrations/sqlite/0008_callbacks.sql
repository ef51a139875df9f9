-- Webhook signing secrets per account, sealed like access-key secrets (the HMAC needs the key
-- itself). A rotation retires the previous secret, which still signs for a window after
-- retired_at.
CREATE TABLE webhook_secrets (
    id                 TEXT PRIMARY KEY,
    account_id         TEXT NOT NULL REFERENCES accounts(id),
    secret_ciphertext  TEXT NOT NULL,
    created_at         INTEGER NOT NULL,
    retired_at         INTEGER
);

CREATE INDEX webhook_secrets_account ON webhook_secrets (account_id, created_at);

-- One callback event per task and phase ('processing', then 'ended'): the body is the
-- dialect's payload as serialised once, signed and sent byte for byte on every attempt.
-- state: pending | delivered | given_up.
CREATE TABLE callback_events (
    id               TEXT PRIMARY KEY,
    task_id          TEXT NOT NULL REFERENCES tasks(id),
    account_id       TEXT NOT NULL REFERENCES accounts(id),
    phase            TEXT NOT NULL,
    url              TEXT NOT NULL,
    body             TEXT NOT NULL,
    state            TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    finished_at      INTEGER,
    UNIQUE (task_id, phase)
);

-- Every delivery attempt, for operators: when, the HTTP status (absent when none came back),
-- how long it took, and the error.
CREATE TABLE callback_attempts (
    event_id     TEXT NOT NULL REFERENCES callback_events(id),
    attempt      INTEGER NOT NULL,
    at           INTEGER NOT NULL,
    http_status  INTEGER,
    latency_ms   INTEGER NOT NULL,
    error        TEXT,
    PRIMARY KEY (event_id, attempt)
);
