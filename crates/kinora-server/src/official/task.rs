//! The official task object (§5): statuses in Kling's words, times in milliseconds, result
//! videos as kinora-served URLs with the duration as a string.

use kinora_core::request::ExtendRequest;
use kinora_core::{Task, TaskKind, TaskState};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::billing::admission::{final_charge, units_text};
use crate::files::FileUrls;

/// The `task_status` a client of this dialect sees (§5.2). A task canceled inside kinora has
/// no word of its own here (the API has no cancel), so it shows as failed.
pub fn status(state: TaskState) -> &'static str {
    match state {
        TaskState::Queued | TaskState::Submitted => "submitted",
        TaskState::Running => "processing",
        TaskState::Succeeded => "succeed",
        TaskState::Failed | TaskState::Canceled => "failed",
    }
}

/// The feature path segment that lists tasks of `kind`.
pub fn feature(kind: TaskKind) -> &'static str {
    match kind {
        TaskKind::Text2Video => "text2video",
        TaskKind::Image2Video => "image2video",
        TaskKind::OmniVideo => "omni-video",
        TaskKind::MotionControl => "motion-control",
        TaskKind::VideoExtend => "video-extend",
        TaskKind::MultiImage2Video => "multi-image2video",
    }
}

/// The task kind a feature path segment names.
pub fn kind_of(feature: &str) -> Option<TaskKind> {
    TaskKind::ALL
        .iter()
        .copied()
        .find(|k| self::feature(*k) == feature)
}

/// Seconds as Kling writes them: up to 3 decimals, no trailing zeros (`"5"`, `"5.042"`).
pub fn seconds_text(seconds: f64) -> String {
    let text = format!("{seconds:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The task as the official query endpoints return it.
pub fn task_object(task: &Task, files: &FileUrls) -> Value {
    let mut body = Map::new();
    body.insert("task_id".into(), json!(task.id.to_string()));
    body.insert("task_status".into(), json!(status(task.state)));
    let message = match task.state {
        TaskState::Failed => task
            .failure_message
            .clone()
            .unwrap_or_else(|| "the task failed".to_owned()),
        TaskState::Canceled => "the task was canceled".to_owned(),
        _ => String::new(),
    };
    body.insert("task_status_msg".into(), json!(message));
    let mut info = Map::new();
    info.insert(
        "external_task_id".into(),
        json!(task.external_task_id.clone().unwrap_or_default()),
    );
    if let Some(parent) = parent_video(task, files) {
        info.insert("parent_video".into(), parent);
    }
    body.insert("task_info".into(), Value::Object(info));
    if let Some(enabled) = task
        .request
        .get("watermark")
        .and_then(Value::as_bool)
        .filter(|on| *on)
    {
        body.insert("watermark_info".into(), json!({"enabled": enabled}));
    }
    if let Some(charged) = final_charge(task.state, task.charged) {
        body.insert("final_unit_deduction".into(), json!(units_text(charged)));
    }
    body.insert("created_at".into(), json!(task.created_at));
    body.insert("updated_at".into(), json!(task.updated_at));
    if task.state == TaskState::Succeeded {
        body.insert("task_result".into(), json!({"videos": videos(task, files)}));
    }
    Value::Object(body)
}

/// An extension's source video (§7.5): the video id, its URL and its length.
fn parent_video(task: &Task, files: &FileUrls) -> Option<Value> {
    if task.kind != TaskKind::VideoExtend {
        return None;
    }
    let source = ExtendRequest::deserialize(task.request.get("extend")?).ok()?;
    Some(json!({
        "id": source.source_task_id.to_string(),
        "url": files.output_url(&source.source_task_id, &source.video.key, source.source_finished_at),
        "duration": seconds_text(source.source_frames as f64 / 24.0),
    }))
}

/// The result videos. A task makes one video, and its id is the task's own id, so a
/// `video_id` names the task that made it.
fn videos(task: &Task, files: &FileUrls) -> Vec<Value> {
    let finished = task.finished_at.unwrap_or(task.updated_at);
    let stored = task
        .result
        .as_ref()
        .and_then(|r| r.get("videos"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    stored
        .iter()
        .filter_map(|v| {
            let key = v.get("key")?.as_str()?;
            let frames = v.get("frame_count").and_then(Value::as_u64).unwrap_or(0);
            let mut video = Map::new();
            video.insert("id".into(), json!(task.id.to_string()));
            video.insert(
                "url".into(),
                json!(files.output_url(&task.id, key, finished)),
            );
            if let Some(marked) = v.get("watermark_key").and_then(Value::as_str) {
                video.insert(
                    "watermark_url".into(),
                    json!(files.output_url(&task.id, marked, finished)),
                );
            }
            video.insert("duration".into(), json!(seconds_text(frames as f64 / 24.0)));
            Some(Value::Object(video))
        })
        .take(1)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_written_like_kling() {
        assert_eq!(seconds_text(5.0), "5");
        assert_eq!(seconds_text(121.0 / 24.0), "5.042");
        assert_eq!(seconds_text(5.1), "5.1");
        assert_eq!(seconds_text(10.25), "10.25");
    }

    #[test]
    fn features_and_kinds_map_both_ways() {
        for kind in TaskKind::ALL {
            assert_eq!(kind_of(feature(*kind)), Some(*kind));
        }
        assert_eq!(kind_of("videos"), None);
    }
}
