-- Money, in integer minor units. An account has a general balance; each of its apps has its
-- own balance and may (allow_general_balance) let the general balance pay what it lacks.
-- Balances only change together with an append-only ledger entry in the same transaction,
-- so the entries of a purse always sum to its balance.
CREATE TABLE account_balances (
    account_id       TEXT PRIMARY KEY REFERENCES accounts(id),
    general_balance  INTEGER NOT NULL DEFAULT 0,
    updated_at       INTEGER NOT NULL
);

CREATE TABLE apps (
    id                     TEXT PRIMARY KEY,
    account_id             TEXT NOT NULL REFERENCES accounts(id),
    name                   TEXT NOT NULL,
    balance                INTEGER NOT NULL DEFAULT 0,
    allow_general_balance  INTEGER NOT NULL DEFAULT 1,
    created_at             INTEGER NOT NULL
);

CREATE INDEX apps_account ON apps (account_id, created_at);

-- kind: credit (+, an operator's top-up or correction), hold (-, a task's price set aside
-- before it is accepted), release (+, what a task did not use, or all of it when it failed).
-- app_id NULL is the account's general balance.
CREATE TABLE ledger_entries (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    app_id      TEXT REFERENCES apps(id),
    task_id     TEXT,
    kind        TEXT NOT NULL,
    amount      INTEGER NOT NULL,
    note        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE INDEX ledger_entries_account ON ledger_entries (account_id, id);

-- A task's charge: what was held from each purse, and how it ended (state: held | captured |
-- released). Capture and release are compare-and-set on state, so each happens once.
CREATE TABLE task_charges (
    task_id       TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES accounts(id),
    app_id        TEXT REFERENCES apps(id),
    held_app      INTEGER NOT NULL,
    held_general  INTEGER NOT NULL,
    state         TEXT NOT NULL,
    captured      INTEGER,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
