//! The bodies this dialect shows a task in: the success body (§6.1), the failure body (§6.3
//! with the task), and the task record of `/kling/tasks` (§7.2), for tasks of any dialect.

use kinora_core::{Task, TaskKind, TaskState};
use serde_json::{json, Map, Value};

use super::error::AceError;
use crate::files::FileUrls;
use crate::official::task::seconds_text;

/// Frame rate of stored results.
const FPS: f64 = 24.0;

/// Unix milliseconds as float seconds, rounded to milliseconds.
pub fn seconds(ms: i64) -> Value {
    json!(ms as f64 / 1000.0)
}

/// The success body of a succeeded task (§6.1); `None` while it has no stored video.
pub fn success_body(task: &Task, files: &FileUrls) -> Option<Value> {
    let video = task
        .result
        .as_ref()?
        .get("videos")?
        .as_array()?
        .first()?
        .clone();
    let key = video.get("key")?.as_str()?;
    let frames = video
        .get("frame_count")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let finished = task.finished_at.unwrap_or(task.updated_at);
    Some(json!({
        "success": true,
        "task_id": task.id.to_string(),
        "video_id": task.id.to_string(),
        "video_url": files.output_url(&task.id, key, finished),
        "duration": seconds_text(frames as f64 / FPS),
        "state": "succeed",
    }))
}

/// The refusal a failed (or canceled) task answers with.
pub fn failure_error(task: &Task) -> AceError {
    let message = match task.state {
        TaskState::Canceled => "the task was canceled".to_owned(),
        _ => task
            .failure_message
            .clone()
            .unwrap_or_else(|| "the task failed".to_owned()),
    };
    AceError::for_failure(task.failure_class, &message).with_task(task.id)
}

/// The trace id of the request that created the task (empty for tasks made before kinora
/// kept it).
pub fn trace_id(task: &Task) -> String {
    task.submission
        .as_ref()
        .map(|s| s.trace_id.clone())
        .unwrap_or_default()
}

/// The final body of an ended task: success, or the failure body with `task_id` and
/// `trace_id`.
pub fn final_body(task: &Task, files: &FileUrls) -> Option<Value> {
    match task.state {
        TaskState::Succeeded => success_body(task, files),
        TaskState::Failed | TaskState::Canceled => Some(failure_error(task).body(trace_id(task))),
        _ => None,
    }
}

/// The task record (§7.2).
pub fn task_record(task: &Task, files: &FileUrls) -> Value {
    let mut record = Map::new();
    record.insert("id".into(), json!(task.id.to_string()));
    let kind = match task.kind {
        TaskKind::MotionControl => "motion",
        _ => "videos",
    };
    record.insert("type".into(), json!(kind));
    record.insert("created_at".into(), seconds(task.created_at));
    if let Some(started) = task.submitted_at {
        record.insert("started_at".into(), seconds(started));
    }
    let terminal = task.state.is_terminal();
    let finished = task.finished_at.filter(|_| terminal);
    if let Some(finished) = finished {
        record.insert("finished_at".into(), seconds(finished));
        let from = task.submitted_at.unwrap_or(task.created_at);
        record.insert("elapsed".into(), seconds(finished.saturating_sub(from)));
    }
    record.insert("trace_id".into(), json!(trace_id(task)));
    record.insert("user_id".into(), json!(task.account_id.to_string()));
    record.insert(
        "request".into(),
        task.submission
            .as_ref()
            .map(|s| s.body.clone())
            .unwrap_or_else(|| json!({})),
    );
    if terminal {
        if let Some(response) = final_body(task, files) {
            record.insert("response".into(), response);
        }
    }
    Value::Object(record)
}
