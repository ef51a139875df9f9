//! The HTTP surface. Handlers extract, call one function, and render.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::Services;

pub fn router(services: Arc<Services>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(crate::unified::http::routes())
        .merge(crate::unified::elements::routes())
        .merge(crate::official::http::routes())
        .merge(crate::official::elements::routes())
        .merge(crate::official::advanced_elements::routes())
        .merge(crate::acedata::http::routes())
        .merge(crate::callbacks::http::routes())
        .merge(crate::files::routes())
        .merge(crate::upstream_push::routes())
        .merge(crate::channels::routes())
        .merge(crate::admin::http::routes())
        .layer(axum::middleware::from_fn(with_request_id))
        .with_state(services)
}

/// The id of one request: sent back as `x-request-id`, and in the bodies of dialects that
/// carry a `request_id`, so both name the same request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestId(uuid::Uuid);

impl RequestId {
    fn fresh() -> Self {
        Self(uuid::Builder::from_random_bytes(rand::random()).into_uuid())
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // Outside the router's middleware (a handler mounted elsewhere) a fresh id still works.
        Ok(parts
            .extensions
            .get::<RequestId>()
            .copied()
            .unwrap_or_else(RequestId::fresh))
    }
}

/// Gives every request an id (a UUIDv4) that handlers can read and every response carries as
/// `x-request-id`, for correlating a client's report with the server's logs; and names the
/// charset of JSON bodies (always UTF-8).
async fn with_request_id(mut request: Request, next: Next) -> Response {
    let id = RequestId::fresh();
    request.extensions_mut().insert(id);
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if let Ok(value) = axum::http::HeaderValue::from_str(&id.to_string()) {
        headers.insert("x-request-id", value);
    }
    if headers.get(axum::http::header::CONTENT_TYPE)
        == Some(&axum::http::HeaderValue::from_static("application/json"))
    {
        headers.insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json; charset=utf-8"),
        );
    }
    response
}

/// The process is alive and serving HTTP.
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// The database and object storage both answer.
async fn readyz(State(services): State<Arc<Services>>) -> Response {
    let (database, storage) = tokio::join!(services.store.ping(), services.storage.check());
    let describe = |r: &Result<(), kinora_core::Error>| match r {
        Ok(()) => json!({ "status": "ok" }),
        Err(e) => json!({ "status": "error", "error": e.to_string() }),
    };
    let ready = database.is_ok() && storage.is_ok();
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "database": describe(&database),
        "storage": describe(&storage),
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Adds `Retry-After` (whole seconds) to a refusal that tells the client to come back.
pub fn set_retry_after(response: &mut Response, seconds: Option<u64>) {
    if let Some(seconds) = seconds {
        response
            .headers_mut()
            .insert(axum::http::header::RETRY_AFTER, seconds.into());
    }
}
