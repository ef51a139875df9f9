//! The HTTP surface. Handlers extract, call one function, and render.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
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
        .merge(crate::files::routes())
        .layer(axum::middleware::map_response(with_request_id))
        .with_state(services)
}

/// Tags every response with a fresh `x-request-id` (a UUIDv4), for correlating a client's
/// report with the server's logs, and names the charset of JSON bodies (always UTF-8).
async fn with_request_id(mut response: Response) -> Response {
    let id = uuid::Builder::from_random_bytes(rand::random()).into_uuid();
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
