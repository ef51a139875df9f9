//! Extending an earlier video (dialect-neutral): a `video_id` names a video kinora produced for
//! the same account, and the extension continues its stored MP4. A video id is the id of the
//! task that made it, in any dialect's rendering.

use kinora_core::request::{ExtendRequest, MediaRef};
use kinora_core::{AccountId, Task, TaskId, TaskKind, TaskState};
use serde_json::Value;

use crate::Services;

/// How long after its task finished a video can still be extended.
pub const SOURCE_MAX_AGE_MS: i64 = 30 * 86_400_000;
/// The longest an extended video may become, and what one extension adds.
pub const MAX_TOTAL_SECONDS: f64 = 180.0;
pub const EXTENSION_SECONDS: f64 = 5.0;
/// The engine's frame rate, which stored frame counts are at.
const FPS: f64 = 24.0;
/// The task kinds whose videos can be extended.
const EXTENDABLE: [TaskKind; 3] = [
    TaskKind::Text2Video,
    TaskKind::Image2Video,
    TaskKind::VideoExtend,
];

/// Why a `video_id` cannot be extended.
#[derive(Clone, Debug, PartialEq)]
pub enum ExtendRefusal {
    /// Unknown, another account's, not finished, not a kind that extends, or too old: the
    /// caller learns no more than that (tenant isolation).
    Invalid,
    /// One more extension would pass the total limit; the source's length in seconds.
    TooLong(f64),
    Internal(String),
}

/// A video that can be extended, with what its extension inherits.
#[derive(Clone, Debug)]
pub struct ExtendSource {
    pub task: Task,
    pub request: ExtendRequest,
}

impl ExtendSource {
    pub fn seconds(&self) -> f64 {
        self.request.source_frames as f64 / FPS
    }

    /// The source's `mode`, which the extension keeps.
    pub fn mode(&self) -> Option<String> {
        self.task
            .request
            .get("mode")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }
}

/// Finds the video `video_id` names among `account`'s results at `now_ms`.
pub async fn find_source(
    services: &Services,
    account: AccountId,
    video_id: &str,
    now_ms: i64,
) -> Result<ExtendSource, ExtendRefusal> {
    let id = TaskId::parse_any(video_id.trim()).ok_or(ExtendRefusal::Invalid)?;
    let task = services
        .store
        .get_task(account, id)
        .await
        .map_err(|e| ExtendRefusal::Internal(e.message().to_owned()))?
        .ok_or(ExtendRefusal::Invalid)?;
    if task.state != TaskState::Succeeded || !EXTENDABLE.contains(&task.kind) {
        return Err(ExtendRefusal::Invalid);
    }
    let finished = task.finished_at.unwrap_or(task.updated_at);
    if now_ms.saturating_sub(finished) > SOURCE_MAX_AGE_MS {
        return Err(ExtendRefusal::Invalid);
    }
    let video = task
        .result
        .as_ref()
        .and_then(|r| r.get("videos"))
        .and_then(Value::as_array)
        .and_then(|v| v.first())
        .ok_or(ExtendRefusal::Invalid)?;
    let key = video
        .get("key")
        .and_then(Value::as_str)
        .ok_or(ExtendRefusal::Invalid)?;
    let frames = video
        .get("frame_count")
        .and_then(Value::as_u64)
        .ok_or(ExtendRefusal::Invalid)?;
    let seconds = frames as f64 / FPS;
    if seconds + EXTENSION_SECONDS > MAX_TOTAL_SECONDS {
        return Err(ExtendRefusal::TooLong(seconds));
    }
    let request = ExtendRequest {
        source_task_id: task.id,
        video: MediaRef::new(key),
        source_frames: frames,
        source_finished_at: finished,
        source_channel: task.channel.clone(),
        source_upstream_video_id: video
            .get("upstream_video_id")
            .and_then(Value::as_str)
            .map(str::to_owned),
    };
    Ok(ExtendSource { task, request })
}
