//! `GET /kinora/v1/tasks/{task_id}/callbacks`: a task's callback events and every delivery
//! attempt, for operators and integrators debugging their receivers. A kinora extension in the
//! unified dialect's error shape; any dialect's task id works, another account's is not found.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::routing::get;
use axum::{Json, Router};
use kinora_core::TaskId;
use kinora_store::{CallbackAttempt, CallbackEvent};
use serde_json::{json, Value};

use crate::unified::error::UnifiedError;
use crate::Services;

pub fn routes() -> Router<Arc<Services>> {
    Router::new().route("/kinora/v1/tasks/{task_id}/callbacks", get(list))
}

/// One event with its attempts, as the API and the CLI show it.
pub fn event_json(event: &CallbackEvent, attempts: &[CallbackAttempt]) -> Value {
    json!({
        "webhook_id": event.id,
        "phase": event.phase.as_str(),
        "state": event.state.as_str(),
        "url": event.url,
        "attempts_made": event.attempts,
        "next_attempt_at": (event.state == kinora_store::CallbackState::Pending).then_some(event.next_attempt_at),
        "created_at": event.created_at,
        "finished_at": event.finished_at,
        "attempts": attempts.iter().map(|a| json!({
            "attempt": a.attempt,
            "at": a.at,
            "http_status": a.http_status,
            "latency_ms": a.latency_ms,
            "error": a.error,
        })).collect::<Vec<_>>(),
    })
}

async fn list(
    State(services): State<Arc<Services>>,
    headers: HeaderMap,
    Path(task_id): Path<String>,
) -> Result<Json<Value>, UnifiedError> {
    let caller = services
        .authenticate(headers.get(header::AUTHORIZATION))
        .await
        .map_err(|e| UnifiedError::internal(e.message().to_owned()))?
        .map_err(UnifiedError::from)?;
    let store_error = |e: kinora_core::Error| UnifiedError::internal(e.message().to_owned());
    let id = TaskId::parse_any(&task_id).ok_or_else(|| UnifiedError::task_not_found(&task_id))?;
    services
        .store
        .get_task(caller.account, id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| UnifiedError::task_not_found(&task_id))?;
    let events = services
        .store
        .list_callback_attempts(caller.account, id)
        .await
        .map_err(store_error)?;
    let data: Vec<Value> = events
        .iter()
        .map(|(event, attempts)| event_json(event, attempts))
        .collect();
    Ok(Json(
        json!({"object": "list", "task_id": id.to_string(), "data": data}),
    ))
}
