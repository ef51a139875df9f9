-- API keys. Only the SHA-256 of each secret is kept: secrets are 256-bit random strings, so
-- a fast unsalted hash cannot be reversed, and it lets a request find its key by index.
CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    account_id   TEXT NOT NULL REFERENCES accounts(id),
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    secret_hash  TEXT NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    revoked_at   INTEGER
);

CREATE INDEX api_keys_account ON api_keys (account_id, created_at);

-- One row, written with the account and key the first start creates, so that exactly one
-- process ever bootstraps a database.
CREATE TABLE bootstrap (
    singleton   INTEGER PRIMARY KEY CHECK (singleton = 1),
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    created_at  INTEGER NOT NULL
);
