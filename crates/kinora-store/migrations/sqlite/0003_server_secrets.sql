-- Secrets every kinora process of a deployment shares, created once by whichever process
-- needs one first (e.g. the key that signs result URLs).
CREATE TABLE server_secrets (
    name        TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
