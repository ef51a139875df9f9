-- Upstream channels as operators see them. A channel the upstream refused for its account
-- (no balance, suspended) stays disabled until an operator enables it again; the row is also
-- what concurrent submits to one channel lock while they count its tasks.
CREATE TABLE channel_states (
    channel      TEXT PRIMARY KEY,
    disabled_at  BIGINT,
    reason       TEXT,
    updated_at   BIGINT NOT NULL
);

-- The last task object an upstream pushed to kinora's receiver, read by the task's next poll.
CREATE TABLE upstream_pushes (
    task_id      TEXT PRIMARY KEY REFERENCES tasks(id),
    body         TEXT NOT NULL,
    received_at  BIGINT NOT NULL
);

-- A channel's tasks in flight (queued on it, submitted or running), counted for its limit.
CREATE INDEX tasks_channel_unfinished ON tasks (channel)
    WHERE state IN ('queued', 'submitted', 'running');
