//! The unified dialect's routes. Handlers extract, call one function and render; every
//! refusal is a [`UnifiedError`].

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::Path;
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kinora_core::time::iso8601_micros;
use kinora_core::Task;
use serde_json::{json, Value};

use super::elements::parse_page;
use super::error::UnifiedError;
use super::service::{create_task, submission, submit_permit};
use super::submit::parse_submit;
use super::task::{engine_note, model_name, task_body};
use crate::auth::Caller;
use crate::files::FileUrls;
use crate::http::RequestId;
use crate::Services;

/// Largest `POST /v1/videos` body: seven 10 MB images in Base64 fit (§3).
pub const MAX_BODY_BYTES: usize = 100 * 1024 * 1024;

pub fn routes() -> Router<Arc<Services>> {
    Router::new()
        .route(
            "/v1/videos",
            post(create_video).fallback(method_not_allowed),
        )
        .route(
            "/v1/videos/{task_id}",
            get(get_video).fallback(method_not_allowed),
        )
        .route(LIST_PATH, get(list_videos).fallback(method_not_allowed))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// kinora's own listing of an account's tasks in the unified shape: the dialect defines none
/// (`GET /v1/videos` is 405 by its spec), and the CLI's `video list` needs one. It lives
/// outside `/v1` so it can never collide with a dialect's paths.
pub const LIST_PATH: &str = "/kinora/v1/videos";

/// `GET /kinora/v1/videos?page_num&page_size`: newest first, every dialect's tasks.
async fn list_videos(
    State(services): State<Arc<Services>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, UnifiedError> {
    let caller = caller(&services, &headers).await?;
    let (page, size) = parse_page(query.as_deref())?;
    let tasks = services
        .store
        .list_tasks(caller.account, None, page, size)
        .await
        .map_err(|e| UnifiedError::internal(e.message().to_owned()))?;
    Ok(Json(list_body(&tasks, &services.files, page, size)))
}

/// The list response: the task objects of GET, with the page asked for.
pub fn list_body(tasks: &[Task], files: &FileUrls, page: u32, size: u32) -> Value {
    let data: Vec<Value> = tasks.iter().map(|t| task_body(t, files)).collect();
    json!({"object": "list", "data": data, "page_num": page, "page_size": size})
}

async fn caller(services: &Services, headers: &HeaderMap) -> Result<Caller, UnifiedError> {
    services
        .authenticate(headers.get(header::AUTHORIZATION))
        .await
        .map_err(|e| UnifiedError::internal(e.message().to_owned()))?
        .map_err(UnifiedError::from)
}

/// `POST /v1/videos`: checks in the order of §7.1, then creates the task.
async fn create_video(
    State(services): State<Arc<Services>>,
    request_id: RequestId,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, UnifiedError> {
    let caller = caller(&services, &headers).await?;
    let permit = submit_permit(&services, caller).await?;
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            UnifiedError::request_too_large(MAX_BODY_BYTES)
        } else {
            UnifiedError::invalid_json(format!("the request body could not be read: {rejection}"))
        }
    })?;
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| UnifiedError::invalid_json(format!("the request body is not JSON: {e}")))?;
    let parsed = parse_submit(&value)?;
    let task = create_task(
        &services,
        caller,
        permit,
        parsed,
        submission(request_id, &value),
    )
    .await?;
    Ok(Json(created_body(&task)))
}

/// The create response (§8.1): the task in status `pending`.
pub fn created_body(task: &Task) -> Value {
    let mut body = json!({
        "id": task.id.to_unified(),
        "status": "pending",
        "created_at": iso8601_micros(task.created_at),
        "model": model_name(&task.model),
        "error": null,
    });
    if let (Some(id), Some(object)) = (&task.external_task_id, body.as_object_mut()) {
        object.insert("external_task_id".to_owned(), json!(id));
    }
    body
}

/// `GET /v1/videos/{task_id}` (§8.2): by task id in any dialect's rendering, then by the
/// caller's external id; `provider` is accepted and only a hint.
async fn get_video(
    State(services): State<Arc<Services>>,
    Path(task_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, UnifiedError> {
    let caller = caller(&services, &headers).await?;
    let store = &services.store;
    let server = |e: kinora_core::Error| UnifiedError::internal(e.message().to_owned());
    let by_id = match kinora_core::TaskId::parse_any(&task_id) {
        Some(id) => store.get_task(caller.account, id).await.map_err(server)?,
        None => None,
    };
    let task = match by_id {
        Some(task) => task,
        None => store
            .find_task_by_external_id(caller.account, &task_id)
            .await
            .map_err(server)?
            .ok_or_else(|| UnifiedError::task_not_found(&task_id))?,
    };
    let mut response = Json(task_body(&task, &services.files)).into_response();
    if let Some(note) = engine_note(&task).and_then(|n| HeaderValue::from_str(&n).ok()) {
        response.headers_mut().insert(ENGINE_HEADER, note);
    }
    Ok(response)
}

/// Names the engine on results of the built-in renderer, so no client mistakes them for AI
/// generations.
pub const ENGINE_HEADER: &str = "x-kinora-engine";

async fn method_not_allowed() -> Response {
    UnifiedError::method_not_allowed().into_response()
}
