-- How a task was asked for: the id of the HTTP request that created it (AceData's trace_id,
-- the x-request-id header) and the body that request carried, as JSON text, with long inline
-- media replaced by a note of their length. Task records of the AceData dialect echo both.
ALTER TABLE tasks ADD COLUMN trace_id TEXT;
ALTER TABLE tasks ADD COLUMN submitted_body TEXT;
