-- Elements created through the task-based element API: how the element is described
-- (`image_refer` views or a `video_refer` clip, stored as {"key", "source_url"} JSON), the
-- voice bound to it, and the creation task clients query it by (task id, or their own
-- external id, unique per account).
ALTER TABLE elements ADD COLUMN reference_type TEXT NOT NULL DEFAULT 'image_refer';
ALTER TABLE elements ADD COLUMN refer_video TEXT;
ALTER TABLE elements ADD COLUMN voice_id TEXT;
ALTER TABLE elements ADD COLUMN task_id TEXT;
ALTER TABLE elements ADD COLUMN external_task_id TEXT;
ALTER TABLE elements ADD COLUMN callback_url TEXT;

CREATE UNIQUE INDEX elements_task ON elements (task_id);
CREATE UNIQUE INDEX elements_external_task ON elements (account_id, external_task_id);
