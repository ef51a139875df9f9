//! The official dialect's element endpoints (§9.1), on the element store the unified dialect
//! shares: create, list custom and preset elements, delete. The element object is the same
//! in both dialects; names may be up to 20 characters here, and images are URLs or raw Base64.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use kinora_media::source::InlinePolicy;
use serde_json::Value;

use super::error::OfficialError;
use super::fields::from_unified;
use super::http::{caller, json_body, parse_page, query_pairs, respond, MOUNTS};
use crate::elements::{self, ElementError};
use crate::http::RequestId;
use crate::unified::elements::{deleted_data, element_object, parse_create_as, parse_delete};
use crate::unified::http::MAX_BODY_BYTES;
use crate::Services;

type Result<T> = std::result::Result<T, OfficialError>;

/// Longest element name in this dialect (official docs).
const MAX_NAME_CHARS: usize = 20;

pub fn routes() -> Router<Arc<Services>> {
    let mut router = Router::new();
    for mount in MOUNTS {
        router = router
            .route(
                &format!("{mount}/v1/general/custom-elements"),
                post(create)
                    .get(list_custom)
                    .fallback(super::http::method_not_allowed),
            )
            .route(
                &format!("{mount}/v1/general/presets-elements"),
                get(list_presets).fallback(super::http::method_not_allowed),
            )
            .route(
                &format!("{mount}/v1/general/delete-elements"),
                post(delete).fallback(super::http::method_not_allowed),
            );
    }
    // Four 10 MB images in Base64 fit.
    router.layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

pub(super) fn element_error(e: ElementError) -> OfficialError {
    match e {
        ElementError::Image { message, .. } => OfficialError::invalid(message),
        ElementError::NotFound(_) => OfficialError::not_found("element not found"),
        ElementError::Preset(_) => OfficialError::invalid("only custom elements can be deleted"),
        ElementError::DuplicateExternalTaskId(message) => OfficialError::invalid(message),
        ElementError::Internal(message) => OfficialError::internal(message),
    }
}

async fn create(
    State(services): State<Arc<Services>>,
    request_id: RequestId,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let caller = caller(&services, &headers).await?;
        let value = json_body(body)?;
        let input = parse_create_as(&value, MAX_NAME_CHARS, InlinePolicy::RawBase64Only)
            .map_err(from_unified)?;
        let element = elements::create_custom(&services, caller.account, input)
            .await
            .map_err(element_error)?;
        Ok(element_object(&element, &services.files))
    }
    .await;
    respond(request_id, result)
}

async fn list(
    services: &Services,
    headers: &HeaderMap,
    presets: bool,
    query: Option<&str>,
) -> Result<Value> {
    let caller = caller(services, headers).await?;
    let (page, size) = parse_page(&query_pairs(query))?;
    let account = (!presets).then_some(caller.account);
    let found = services
        .store
        .list_elements(account, page, size)
        .await
        .map_err(|e| OfficialError::internal(e.message().to_owned()))?;
    Ok(Value::Array(
        found
            .iter()
            .map(|e| element_object(e, &services.files))
            .collect(),
    ))
}

async fn list_custom(
    State(services): State<Arc<Services>>,
    request_id: RequestId,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    respond(
        request_id,
        list(&services, &headers, false, query.as_deref()).await,
    )
}

async fn list_presets(
    State(services): State<Arc<Services>>,
    request_id: RequestId,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    respond(
        request_id,
        list(&services, &headers, true, query.as_deref()).await,
    )
}

async fn delete(
    State(services): State<Arc<Services>>,
    request_id: RequestId,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let caller = caller(&services, &headers).await?;
        let value = json_body(body)?;
        let id = parse_delete(&value)
            .map_err(from_unified)?
            .ok_or_else(|| OfficialError::not_found("element not found"))?;
        elements::delete_custom(&services, caller.account, id)
            .await
            .map_err(element_error)?;
        Ok(deleted_data(uuid::Uuid::now_v7()))
    }
    .await;
    respond(request_id, result)
}
