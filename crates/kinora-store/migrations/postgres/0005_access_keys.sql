-- Access-key pairs for the official dialect's JWTs. The access key is public (it is the JWT's
-- issuer); the secret must stay usable for checking HMAC signatures, so it cannot be a one-way
-- hash: it is kept encrypted under a key that lives outside the database (see the server's
-- configuration), so a copy of the database alone does not reveal it.
CREATE TABLE access_keys (
    id                 TEXT PRIMARY KEY,
    account_id         TEXT NOT NULL REFERENCES accounts(id),
    name               TEXT NOT NULL,
    access_key         TEXT NOT NULL UNIQUE,
    secret_ciphertext  TEXT NOT NULL,
    created_at         BIGINT NOT NULL,
    revoked_at         BIGINT
);

CREATE INDEX access_keys_account ON access_keys (account_id, created_at);
