//! The AceData dialect's routes (§1): create (blocking or asynchronous), look up tasks, and the
//! answers for Kling endpoints AceData has and kinora does not. Every body carries the request's
//! `trace_id`, which is also its `x-request-id`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use axum::{Json, Router};
use kinora_core::{Dialect, Task, TaskId, TaskState};
use serde_json::{json, Value};

use super::error::AceError;
use super::record::{failure_error, final_body, task_record};
use super::submit::{from_official, parse_motion, parse_videos, AceSubmit, Delivery};
use crate::auth::Caller;
use crate::extend;
use crate::http::RequestId;
use crate::official::extend::refusal;
use crate::unified::error::UnifiedError;
use crate::unified::service::{create_task, submission, submit_permit};
use crate::unified::submit::ParsedSubmit;
use crate::Services;
use kinora_store::SubmitTerms;

type Result<T> = std::result::Result<T, AceError>;

/// Bodies are small: media are URLs here.
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Most ids one `retrieve_batch` looks up.
const MAX_BATCH_IDS: usize = 100;
/// AceData's Kling endpoints that kinora does not provide (§1).
const NOT_IMPLEMENTED: [&str; 4] = ["lip-sync", "talking-photo", "elements", "voices"];

pub fn routes() -> Router<Arc<Services>> {
    Router::new()
        .route("/kling/videos", post(videos).fallback(no_api))
        .route("/kling/motion", post(motion).fallback(no_api))
        .route("/kling/tasks", post(tasks).fallback(no_api))
        .route("/kling/{*rest}", any(unknown))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// Renders a result with the request's trace id.
fn respond(trace_id: RequestId, result: Result<(StatusCode, Value)>) -> Response {
    match result {
        Ok((status, body)) => (status, Json(body)).into_response(),
        Err(e) => {
            let mut response = (e.status, Json(e.body(trace_id))).into_response();
            crate::http::set_retry_after(&mut response, e.retry_after);
            response
        }
    }
}

async fn no_api(trace_id: RequestId) -> Response {
    respond(
        trace_id,
        Err(AceError::new(
            "no_api",
            "API does not exist, please make sure url is correct.",
        )),
    )
}

async fn unknown(trace_id: RequestId, Path(rest): Path<String>) -> Response {
    let first = rest.split('/').next().unwrap_or_default();
    if NOT_IMPLEMENTED.contains(&first) {
        return respond(
            trace_id,
            Err(AceError::new(
                "api_not_implemented",
                "The API is not implemented.",
            )),
        );
    }
    no_api(trace_id).await
}

async fn caller(services: &Services, headers: &HeaderMap) -> Result<Caller> {
    if let Some(accept) = headers.get(header::ACCEPT) {
        let ok = accept.to_str().is_ok_and(|a| {
            a.split(',').any(|part| {
                let media = part.split(';').next().unwrap_or_default().trim();
                media == "application/json" || media == "*/*"
            })
        });
        if !ok {
            return Err(AceError::bad_request("accept must be application/json"));
        }
    }
    services
        .authenticate(headers.get(header::AUTHORIZATION))
        .await
        .map_err(|e| AceError::internal(e.message().to_owned()))?
        .map_err(AceError::from)
}

fn json_body(body: std::result::Result<Bytes, BytesRejection>) -> Result<Value> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AceError::bad_request(format!(
                "the request body is larger than {MAX_BODY_BYTES} bytes"
            ))
        } else {
            AceError::bad_request(format!("the request body could not be read: {rejection}"))
        }
    })?;
    serde_json::from_slice(&body)
        .map_err(|e| AceError::bad_request(format!("the request body is not JSON: {e}")))
}

/// A refusal from the shared create service in this dialect's codes.
fn service_error(e: UnifiedError) -> AceError {
    AceError::from_unified(e)
}

async fn videos(
    State(services): State<Arc<Services>>,
    trace_id: RequestId,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let caller = caller(&services, &headers).await?;
        let permit = submit_permit(&services, caller)
            .await
            .map_err(service_error)?;
        let value = json_body(body)?;
        let (submit, delivery) = parse_videos(&value, &services.capabilities)?;
        let parsed = match submit {
            AceSubmit::Plan(parsed) => *parsed,
            AceSubmit::Extend(fields) => {
                let source = extend::find_source(
                    &services,
                    caller.account,
                    &fields.video_id,
                    services.clock.now_ms(),
                )
                .await
                .map_err(|e| from_official(refusal(e)))?;
                fields
                    .plan(source, &services.capabilities)
                    .map_err(from_official)?
            }
        };
        create_and_answer(
            &services, caller, permit, parsed, &value, delivery, trace_id,
        )
        .await
    }
    .await;
    respond(trace_id, result)
}

async fn motion(
    State(services): State<Arc<Services>>,
    trace_id: RequestId,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let caller = caller(&services, &headers).await?;
        let permit = submit_permit(&services, caller)
            .await
            .map_err(service_error)?;
        let value = json_body(body)?;
        let (parsed, delivery) = parse_motion(&value, &services.capabilities)?;
        create_and_answer(
            &services, caller, permit, parsed, &value, delivery, trace_id,
        )
        .await
    }
    .await;
    respond(trace_id, result)
}

/// Creates the task in this dialect, then answers: the acknowledgement at once, or the final
/// body once the task ends.
async fn create_and_answer(
    services: &Services,
    caller: Caller,
    permit: SubmitTerms,
    mut parsed: ParsedSubmit,
    body: &Value,
    delivery: Delivery,
    trace_id: RequestId,
) -> Result<(StatusCode, Value)> {
    parsed.dialect = Dialect::AceData;
    let task = create_task(services, caller, permit, parsed, submission(trace_id, body))
        .await
        .map_err(service_error)?;
    if delivery.asynchronous {
        return Ok((
            StatusCode::OK,
            json!({"success": true, "task_id": task.id.to_string(), "trace_id": trace_id.to_string()}),
        ));
    }
    let limit = services.config.acedata.sync_max_wait_seconds;
    let wait = Duration::from_secs(delivery.timeout_seconds.map_or(limit, |t| t.min(limit)));
    wait_for_end(services, caller, task.id, wait).await
}

/// Waits until the task ends, `wait` passes or the server stops. The waiter is registered
/// before the task is read, so no change can slip between the read and the wait; dropping
/// this future (the client went away) leaves the task running.
async fn wait_for_end(
    services: &Services,
    caller: Caller,
    id: TaskId,
    wait: Duration,
) -> Result<(StatusCode, Value)> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut watch = services.task_events.watch(id);
    loop {
        let task = services
            .store
            .get_task(caller.account, id)
            .await
            .map_err(|e| AceError::internal(e.message().to_owned()).with_task(id))?
            .ok_or_else(|| AceError::internal(format!("task {id} disappeared")).with_task(id))?;
        if task.state.is_terminal() {
            return ended(services, &task);
        }
        tokio::select! {
            () = watch.changed() => {}
            () = tokio::time::sleep_until(deadline) => {
                return Err(AceError::new(
                    "timeout",
                    format!(
                        "the task did not end within {} s; it keeps running: query it with \
                         POST /kling/tasks",
                        wait.as_secs()
                    ),
                )
                .with_task(id));
            }
            () = services.stopping.cancelled() => {
                return Err(AceError::new(
                    "timeout",
                    "the server is shutting down; the task keeps running: query it with \
                     POST /kling/tasks",
                )
                .with_task(id));
            }
        }
    }
}

fn ended(services: &Services, task: &Task) -> Result<(StatusCode, Value)> {
    match task.state {
        TaskState::Succeeded => final_body(task, &services.files)
            .map(|body| (StatusCode::OK, body))
            .ok_or_else(|| {
                AceError::internal("the task succeeded without a stored video").with_task(task.id)
            }),
        _ => Err(failure_error(task)),
    }
}

/// `POST /kling/tasks` (§7).
async fn tasks(
    State(services): State<Arc<Services>>,
    trace_id: RequestId,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let caller = caller(&services, &headers).await?;
        let value = json_body(body)?;
        let body = value
            .as_object()
            .ok_or_else(|| AceError::bad_request("the request body must be a JSON object"))?;
        let text = |key: &str| {
            body.get(key)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        match body.get("action").filter(|v| !v.is_null()) {
            None => retrieve(&services, caller, text("id").or_else(|| text("task_id"))).await,
            Some(Value::String(a)) if a == "retrieve" => {
                retrieve(&services, caller, text("id").or_else(|| text("task_id"))).await
            }
            Some(Value::String(a)) if a == "retrieve_batch" => {
                retrieve_batch(&services, caller, body.get("ids")).await
            }
            Some(other) => Err(AceError::bad_request(format!(
                "action must be retrieve or retrieve_batch, not {other}"
            ))),
        }
    }
    .await;
    respond(trace_id, result)
}

/// A task of the caller by id in any dialect's rendering, or by external id.
async fn find(services: &Services, caller: Caller, id: &str) -> Result<Option<Task>> {
    let store_error = |e: kinora_core::Error| AceError::internal(e.message().to_owned());
    if let Some(task_id) = TaskId::parse_any(id) {
        if let Some(task) = services
            .store
            .get_task(caller.account, task_id)
            .await
            .map_err(store_error)?
        {
            return Ok(Some(task));
        }
    }
    services
        .store
        .find_task_by_external_id(caller.account, id)
        .await
        .map_err(store_error)
}

async fn retrieve(
    services: &Services,
    caller: Caller,
    id: Option<&str>,
) -> Result<(StatusCode, Value)> {
    let id = id.ok_or_else(|| AceError::bad_request("id is required for action retrieve"))?;
    let record = find(services, caller, id)
        .await?
        .map(|task| task_record(&task, &services.files))
        // An unknown id answers an empty object (official docs).
        .unwrap_or_else(|| json!({}));
    Ok((StatusCode::OK, record))
}

async fn retrieve_batch(
    services: &Services,
    caller: Caller,
    ids: Option<&Value>,
) -> Result<(StatusCode, Value)> {
    let ids = match ids {
        Some(Value::Array(items)) if !items.is_empty() => items,
        _ => {
            return Err(AceError::bad_request(format!(
                "ids is required for action retrieve_batch: 1-{MAX_BATCH_IDS} task ids"
            )))
        }
    };
    if ids.len() > MAX_BATCH_IDS {
        return Err(AceError::bad_request(format!(
            "ids holds at most {MAX_BATCH_IDS} task ids, got {}",
            ids.len()
        )));
    }
    let mut items = Vec::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        let id = id
            .as_str()
            .ok_or_else(|| AceError::bad_request(format!("ids[{i}] must be a string")))?;
        if let Some(task) = find(services, caller, id).await? {
            items.push(task_record(&task, &services.files));
        }
    }
    let count = items.len();
    Ok((StatusCode::OK, json!({"items": items, "count": count})))
}
