//! The unified task object (§8.3, §8.4): statuses, and the completed body as the union of the
//! seed's two completion shapes, with every URL a signed kinora URL.

use kinora_core::time::iso8601_micros;
use kinora_core::{Task, TaskState};
use serde_json::{json, Map, Value};

use crate::files::FileUrls;

/// The status a client of this dialect sees.
pub fn status(state: TaskState) -> &'static str {
    match state {
        TaskState::Queued | TaskState::Submitted => "pending",
        TaskState::Running => "processing",
        TaskState::Succeeded => "completed",
        TaskState::Failed | TaskState::Canceled => "failed",
    }
}

/// The canonical unified name of a task's model; another dialect's model shows as stored.
pub fn model_name(model: &str) -> &str {
    match model {
        "kling-v2-6" => "Kling-V2.6",
        "kling-video-o1" => "Kling-Video-O1",
        other => other,
    }
}

/// The task as `GET /v1/videos/{task_id}` returns it.
pub fn task_body(task: &Task, files: &FileUrls) -> Value {
    let mut body = Map::new();
    body.insert("id".into(), json!(task.id.to_unified()));
    body.insert("status".into(), json!(status(task.state)));
    body.insert("created_at".into(), json!(iso8601_micros(task.created_at)));
    body.insert("model".into(), json!(model_name(&task.model)));
    let error = match task.state {
        TaskState::Failed => Some(
            task.failure_message
                .clone()
                .unwrap_or_else(|| "the task failed".to_owned()),
        ),
        TaskState::Canceled => Some("the task was canceled".to_owned()),
        _ => None,
    };
    body.insert("error".into(), json!(error));
    if let Some(id) = &task.external_task_id {
        body.insert("external_task_id".into(), json!(id));
    }
    if let Some(channel) = &task.channel {
        body.insert("provider".into(), json!(channel));
    }
    if task.state == TaskState::Succeeded {
        completed_fields(task, files, &mut body);
    }
    Value::Object(body)
}

fn completed_fields(task: &Task, files: &FileUrls, body: &mut Map<String, Value>) {
    let finished = task.finished_at.unwrap_or(task.updated_at);
    let videos = task
        .result
        .as_ref()
        .and_then(|r| r.get("videos"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let data: Vec<Value> = videos
        .iter()
        .filter_map(|v| {
            let key = v.get("key")?.as_str()?;
            let mut item = Map::new();
            item.insert(
                "url".into(),
                json!(files.output_url(&task.id, key, finished)),
            );
            let frames = v.get("frame_count").and_then(Value::as_u64).unwrap_or(0);
            item.insert("duration".into(), json!(frames as f64 / 24.0));
            for side in ["width", "height"] {
                if let Some(n) = v.get(side).and_then(Value::as_u64) {
                    item.insert(side.into(), json!(n));
                }
            }
            if let Some(cover) = v.get("cover_key").and_then(Value::as_str) {
                item.insert(
                    "cover_url".into(),
                    json!(files.output_url(&task.id, cover, finished)),
                );
            }
            Some(Value::Object(item))
        })
        .collect();
    let seconds: f64 = data
        .iter()
        .filter_map(|d| d.get("duration").and_then(Value::as_f64))
        .sum();
    body.insert("completed_at".into(), json!(iso8601_micros(finished)));
    if let Some(url) = data.first().and_then(|d| d.get("url")) {
        body.insert("video_url".into(), url.clone());
    }
    let mut usage = json!({
        "seconds": seconds,
        "duration_seconds": seconds,
        "video_count": data.len(),
        "total_tokens": 0,
        "input_tokens": 0,
        "output_tokens": 0,
    });
    if let (Some(first), Some(usage)) = (data.first(), usage.as_object_mut()) {
        if let (Some(w), Some(h)) = (first.get("width"), first.get("height")) {
            usage.insert("size".into(), json!(format!("{w}*{h}")));
        }
    }
    body.insert("usage".into(), usage);
    body.insert("created".into(), json!(finished / 1000));
    body.insert("data".into(), Value::Array(data));
}

/// Whether the result came from the built-in engine, and how it describes itself.
pub fn engine_note(task: &Task) -> Option<String> {
    let engine = task.result.as_ref()?.get("engine")?;
    let name = engine.get("name")?.as_str()?;
    let revision = engine.get("revision")?.as_str().unwrap_or("");
    Some(format!(
        "{name} {revision}; deterministic procedural render, not an AI generation"
    ))
}
