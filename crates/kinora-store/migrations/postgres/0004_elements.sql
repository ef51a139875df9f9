-- Elements (reusable subjects for omni requests): an account's custom ones, and the built-in
-- presets (no account). Ids stay below 2^53 so JavaScript clients read them exactly. Images
-- are JSON: {"key": object key in kinora's storage, "source_url": the URL it came from, if any}
-- for the frontal image, an array of those for the other views; tags a JSON array of tag ids.
CREATE TABLE elements (
    id             BIGINT PRIMARY KEY,
    account_id     TEXT REFERENCES accounts(id),
    name           TEXT NOT NULL,
    description    TEXT NOT NULL,
    frontal_image  TEXT NOT NULL,
    refer_images   TEXT NOT NULL,
    tags           TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    deleted_at     BIGINT
);

CREATE INDEX elements_account ON elements (account_id, created_at, id);
