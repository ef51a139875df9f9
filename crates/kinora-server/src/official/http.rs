//! The official dialect's routes (§1): for each feature, query one task and list tasks, at the
//! root and again under `/kling`. Every answer is the envelope; errors omit `data`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use kinora_core::{Task, TaskId, TaskKind};
use serde_json::{json, Value};

use super::error::OfficialError;
use super::extend::{parse_video_extend, refusal};
use super::omni::parse_omni_video;
use super::submit::{
    parse_image2video, parse_motion_control, parse_multi_image2video, parse_text2video,
};
use super::task::{feature, task_object};
use crate::auth::Caller;
use crate::extend;
use crate::http::RequestId;
use crate::unified::error::UnifiedError;
use crate::unified::service::{create_task, submission, submit_permit};
use crate::Services;

type Result<T> = std::result::Result<T, OfficialError>;

/// Prefixes every route is served under: the root, and `/kling` for relays.
pub const MOUNTS: [&str; 2] = ["", "/kling"];

pub fn routes() -> Router<Arc<Services>> {
    let mut router = Router::new();
    for mount in MOUNTS {
        for kind in TaskKind::ALL.iter().copied() {
            let collection = format!("{mount}/v1/videos/{}", feature(kind));
            let list_route = get(
                move |State(services): State<Arc<Services>>,
                      request_id: RequestId,
                      headers: HeaderMap,
                      RawQuery(query): RawQuery| async move {
                    respond(
                        request_id,
                        list(&services, &headers, kind, query.as_deref()).await,
                    )
                },
            );
            let collection_route = list_route.post(
                move |State(services): State<Arc<Services>>,
                      request_id: RequestId,
                      headers: HeaderMap,
                      body: std::result::Result<Bytes, BytesRejection>| async move {
                    respond(
                        request_id,
                        create(&services, request_id, &headers, kind, body).await,
                    )
                },
            );
            router = router
                .route(&collection, collection_route.fallback(method_not_allowed))
                .route(
                    &format!("{collection}/{{id}}"),
                    get(
                        |State(services): State<Arc<Services>>,
                         request_id: RequestId,
                         headers: HeaderMap,
                         Path(id): Path<String>,
                         RawQuery(query): RawQuery| async move {
                            respond(
                                request_id,
                                get_one(&services, &headers, &id, query.as_deref()).await,
                            )
                        },
                    )
                    .fallback(method_not_allowed),
                );
        }
    }
    router
}

pub async fn method_not_allowed(request_id: RequestId) -> Response {
    respond(
        request_id,
        Err(OfficialError::new(1202, "invalid request method")),
    )
}

/// `POST /v1/videos/{feature}` (§6.1, §7): the body is checked in the order of §6.1 and the
/// task created; `data` is the fresh task.
async fn create(
    services: &Services,
    request_id: RequestId,
    headers: &HeaderMap,
    kind: TaskKind,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Value> {
    let caller = caller(services, headers).await?;
    let permit = submit_permit(services, caller)
        .await
        .map_err(service_error)?;
    let value = json_body(body)?;
    let table = &services.capabilities;
    let parsed = match kind {
        TaskKind::Text2Video => parse_text2video(&value, table)?,
        TaskKind::Image2Video => parse_image2video(&value, table)?,
        TaskKind::MultiImage2Video => parse_multi_image2video(&value, table)?,
        TaskKind::OmniVideo => parse_omni_video(&value, table)?,
        TaskKind::MotionControl => parse_motion_control(&value, table)?,
        TaskKind::VideoExtend => {
            let fields = parse_video_extend(&value)?;
            let source = extend::find_source(
                services,
                caller.account,
                &fields.video_id,
                services.clock.now_ms(),
            )
            .await
            .map_err(refusal)?;
            fields.plan(source, table)?
        }
    };
    let task = create_task(
        services,
        caller,
        permit,
        parsed,
        submission(request_id, &value),
    )
    .await
    .map_err(service_error)?;
    Ok(created_data(&task))
}

/// A request body as JSON; anything unreadable or not JSON is 1200.
pub fn json_body(body: std::result::Result<Bytes, BytesRejection>) -> Result<Value> {
    let body = body.map_err(|e| {
        OfficialError::new(1200, format!("the request body could not be read: {e}"))
    })?;
    serde_json::from_slice(&body)
        .map_err(|e| OfficialError::new(1200, format!("the request body is not JSON: {e}")))
}

/// A refusal from the shared create service in this dialect's codes.
fn service_error(e: UnifiedError) -> OfficialError {
    OfficialError::from_unified(e)
}

/// The create response's `data` (§6.1): the fresh task.
pub fn created_data(task: &Task) -> Value {
    json!({
        "task_id": task.id.to_string(),
        "task_status": "submitted",
        "task_status_msg": "",
        "task_info": {"external_task_id": task.external_task_id.clone().unwrap_or_default()},
        "created_at": task.created_at,
        "updated_at": task.updated_at,
    })
}

/// Renders a result in the envelope.
pub fn respond(request_id: RequestId, result: Result<Value>) -> Response {
    match result {
        Ok(data) => Json(envelope(request_id, data)).into_response(),
        Err(e) => {
            let mut response = (e.status, Json(e.body(request_id))).into_response();
            crate::http::set_retry_after(&mut response, e.retry_after);
            response
        }
    }
}

/// The success envelope (§4).
pub fn envelope(request_id: impl std::fmt::Display, data: Value) -> Value {
    json!({"code": 0, "message": "SUCCEED", "request_id": request_id.to_string(), "data": data})
}

pub async fn caller(services: &Services, headers: &HeaderMap) -> Result<Caller> {
    services
        .authenticate(headers.get(header::AUTHORIZATION))
        .await
        .map_err(|e| OfficialError::internal(e.message().to_owned()))?
        .map_err(OfficialError::from)
}

fn server_error(e: kinora_core::Error) -> OfficialError {
    OfficialError::internal(e.message().to_owned())
}

fn task_not_found() -> OfficialError {
    OfficialError::not_found("task not found")
}

/// A task of the caller by task id (any dialect's rendering) or, failing that, by external id;
/// only by external id when `external_only`.
async fn find(services: &Services, caller: Caller, id: &str, external_only: bool) -> Result<Task> {
    if !external_only {
        if let Some(task_id) = TaskId::parse_any(id) {
            if let Some(task) = services
                .store
                .get_task(caller.account, task_id)
                .await
                .map_err(server_error)?
            {
                return Ok(task);
            }
        }
    }
    services
        .store
        .find_task_by_external_id(caller.account, id)
        .await
        .map_err(server_error)?
        .ok_or_else(task_not_found)
}

pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// `GET /v1/videos/{feature}/{id}` (§6.2, §6.3): the task in `data`, whichever feature path
/// it is asked under.
async fn get_one(
    services: &Services,
    headers: &HeaderMap,
    id: &str,
    query: Option<&str>,
) -> Result<Value> {
    let caller = caller(services, headers).await?;
    let external_only = query_pairs(query)
        .iter()
        .any(|(k, v)| k == "external_task_id" && v.eq_ignore_ascii_case("true"));
    let task = find(services, caller, id, external_only).await?;
    Ok(task_object(&task, &services.files))
}

/// `pageNum` (1–1000, default 1) and `pageSize` (1–500, default 30), or their snake-case
/// aliases (§6.4).
pub fn parse_page(pairs: &[(String, String)]) -> Result<(u32, u32)> {
    let (mut page, mut size) = (1, 30);
    for (key, value) in pairs {
        let (slot, max, name) = match key.as_str() {
            "pageNum" | "page_num" => (&mut page, 1000, "pageNum"),
            "pageSize" | "page_size" => (&mut size, 500, "pageSize"),
            _ => continue,
        };
        *slot = value
            .parse::<u32>()
            .ok()
            .filter(|v| (1..=max).contains(v))
            .ok_or_else(|| {
                OfficialError::invalid(format!(
                    "{name} must be an integer from 1 to {max}, not `{value}`"
                ))
            })?;
    }
    Ok((page, size))
}

/// `GET /v1/videos/{feature}` (§6.4): the account's tasks of the feature's kind, newest first,
/// as a bare array; or, with `external_task_id=` or `task_id=`, that one task (§6.3).
async fn list(
    services: &Services,
    headers: &HeaderMap,
    kind: TaskKind,
    query: Option<&str>,
) -> Result<Value> {
    let caller = caller(services, headers).await?;
    let pairs = query_pairs(query);
    let lookup = |name: &str| {
        pairs
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.clone())
    };
    if let Some(external) = lookup("external_task_id") {
        let task = find(services, caller, &external, true).await?;
        return Ok(task_object(&task, &services.files));
    }
    if let Some(id) = lookup("task_id") {
        let task = find(services, caller, &id, false).await?;
        return Ok(task_object(&task, &services.files));
    }
    let (page, size) = parse_page(&pairs)?;
    let tasks = services
        .store
        .list_tasks(caller.account, Some(kind), page, size)
        .await
        .map_err(server_error)?;
    Ok(Value::Array(
        tasks
            .iter()
            .map(|t| task_object(t, &services.files))
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(q: &str) -> Vec<(String, String)> {
        query_pairs(Some(q))
    }

    #[test]
    fn paging_defaults_aliases_and_bounds() {
        assert_eq!(parse_page(&pairs("")).expect("default"), (1, 30));
        assert_eq!(
            parse_page(&pairs("pageNum=1000&pageSize=500")).expect("max"),
            (1000, 500)
        );
        assert_eq!(
            parse_page(&pairs("page_num=2&page_size=5")).expect("aliases"),
            (2, 5)
        );
        for bad in [
            "pageNum=0",
            "pageNum=1001",
            "pageSize=0",
            "pageSize=501",
            "pageSize=x",
        ] {
            let e = parse_page(&pairs(bad)).expect_err(bad);
            assert_eq!((e.code, e.status.as_u16()), (1201, 400), "{bad}");
        }
    }
}
