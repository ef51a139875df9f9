//! Result files: the signed URLs every dialect hands out for a task's outputs, and the route
//! that serves them (with HTTP Range) from kinora's own storage, never a provider's.
//!
//! A URL is `{public_url}/v1/files/{task}/{name}?expires={unix s}&signature={hex}` with the
//! signature HMAC-SHA256 over `{task}/{name}/{expires}` under a deployment-wide key kept in the
//! database, so every process signs and verifies alike. `expires` is the task's end plus the
//! retention period, so a task's URLs stay the same for as long as they are valid.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use kinora_core::{Error, TaskId};
use kinora_storage::keys;
use serde::Deserialize;
use serde_json::json;
use sha2::Sha256;

use crate::Services;

/// Output names a URL may name, with their content types.
const SERVED: [(&str, &str); 3] = [
    ("video.mp4", "video/mp4"),
    ("video_watermarked.mp4", "video/mp4"),
    ("cover.jpg", "image/jpeg"),
];
const SIGNING_SECRET: &str = "result-url-signing";

/// Signs and checks result URLs.
#[derive(Clone)]
pub struct FileUrls {
    base: String,
    key: Vec<u8>,
    retention_ms: i64,
}

impl FileUrls {
    /// URLs under `base`, signed with `key`, valid `retention_days` after a task ends.
    pub fn new(base: String, key: &[u8], retention_days: u32) -> Self {
        Self {
            base,
            key: key.to_vec(),
            retention_ms: i64::from(retention_days) * 86_400_000,
        }
    }

    /// Loads (or, on a new deployment, creates) the signing key.
    pub async fn load(
        store: &dyn kinora_store::Store,
        base: String,
        retention_days: u32,
    ) -> Result<Self, Error> {
        let candidate = crate::auth::generate_secret();
        let key = store.server_secret(SIGNING_SECRET, &candidate).await?;
        Ok(Self::new(base, key.as_bytes(), retention_days))
    }

    fn mac(&self, task: &TaskId, name: &str, expires: i64) -> Hmac<Sha256> {
        self.mac_over(&format!("{task}/{name}/{expires}"))
    }

    fn mac_over(&self, message: &str) -> Hmac<Sha256> {
        // HMAC takes keys of any length; the error arm cannot happen.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(message.as_bytes());
        mac
    }

    /// The URL of an element image stored under `key` (`elements/{id}/{name}`). It does not
    /// expire: it is as long-lived as the element, and deleting the element removes the file.
    pub fn element_url(&self, key: &str) -> String {
        let signature = hex(&self.mac_over(key).finalize().into_bytes());
        format!("{}/v1/files/{key}?signature={signature}", self.base)
    }

    /// Whether `signature` is this deployment's for the element image under `key`.
    pub fn verify_element(&self, key: &str, signature: &str) -> bool {
        decode_hex(signature).is_some_and(|bytes| self.mac_over(key).verify_slice(&bytes).is_ok())
    }

    /// The URL of output `name` of a task that ended at `finished_at_ms`.
    pub fn url(&self, task: &TaskId, name: &str, finished_at_ms: i64) -> String {
        let expires = finished_at_ms.saturating_add(self.retention_ms) / 1000;
        let signature = hex(&self.mac(task, name, expires).finalize().into_bytes());
        format!(
            "{}/v1/files/{task}/{name}?expires={expires}&signature={signature}",
            self.base
        )
    }

    /// The URL of the output stored under object key `key` (its last segment is the name).
    pub fn output_url(&self, task: &TaskId, key: &str, finished_at_ms: i64) -> String {
        let name = key.rsplit('/').next().unwrap_or(key);
        self.url(task, name, finished_at_ms)
    }

    /// Whether a signature is this deployment's for the URL and has not expired at `now_ms`.
    pub fn verify(
        &self,
        task: &TaskId,
        name: &str,
        expires: i64,
        signature: &str,
        now_ms: i64,
    ) -> bool {
        if now_ms / 1000 > expires {
            return false;
        }
        let Some(bytes) = decode_hex(signature) else {
            return false;
        };
        self.mac(task, name, expires).verify_slice(&bytes).is_ok()
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

pub fn routes() -> Router<Arc<Services>> {
    Router::new()
        .route("/v1/files/{task}/{name}", get(serve_file))
        .route(
            "/v1/files/elements/{element}/{name}",
            get(serve_element_file),
        )
}

#[derive(Deserialize)]
struct Signed {
    expires: Option<i64>,
    signature: Option<String>,
}

fn refusal(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"error": {"code": code, "message": message, "type": "invalid_request_error", "param": null}});
    (status, Json(body)).into_response()
}

/// Storage did not answer: the server's fault, logged, answered 503.
fn storage_unavailable(key: &kinora_storage::ObjectKey, e: &Error) -> Response {
    tracing::error!(%key, error = %e, "cannot read a result file");
    refusal(
        StatusCode::SERVICE_UNAVAILABLE,
        "service_unavailable",
        "storage is unavailable",
    )
}

fn not_found() -> Response {
    refusal(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such file, or the link has expired",
    )
}

/// One `bytes=` range of a file of `size` bytes, as start..end; `Err` when unsatisfiable,
/// `Ok(None)` when the header is absent or not a single byte range (served whole, as RFC 9110
/// allows).
fn byte_range(header: Option<&HeaderValue>, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = header
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.trim().strip_prefix("bytes="))
    else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((first, last)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (first, last) = (first.trim(), last.trim());
    let range = if first.is_empty() {
        // The last N bytes.
        let n: u64 = last.parse().map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        (size.saturating_sub(n), size)
    } else {
        let start: u64 = first.parse().map_err(|_| ())?;
        let end = if last.is_empty() {
            size
        } else {
            let last: u64 = last.parse().map_err(|_| ())?;
            if last < start {
                return Err(());
            }
            last.saturating_add(1).min(size)
        };
        (start, end)
    };
    if range.0 >= size {
        return Err(());
    }
    Ok(Some(range))
}

async fn serve_file(
    State(services): State<Arc<Services>>,
    Path((task, name)): Path<(String, String)>,
    Query(signed): Query<Signed>,
    headers: HeaderMap,
) -> Response {
    let (Some(task_id), Some((_, content_type))) = (
        TaskId::parse_any(&task),
        SERVED.iter().find(|(n, _)| *n == name),
    ) else {
        return not_found();
    };
    let (Some(expires), Some(signature)) = (signed.expires, signed.signature) else {
        return not_found();
    };
    if !services.files.verify(
        &task_id,
        &name,
        expires,
        &signature,
        services.clock.now_ms(),
    ) {
        return not_found();
    }
    let Ok(key) = keys::task_output(&task_id, &name) else {
        return not_found();
    };
    serve_object(&services, &key, content_type, &headers).await
}

/// An element image, by the signed URL [`FileUrls::element_url`] made.
async fn serve_element_file(
    State(services): State<Arc<Services>>,
    Path((element, name)): Path<(i64, String)>,
    Query(signed): Query<Signed>,
    headers: HeaderMap,
) -> Response {
    let content_type = match name.rsplit_once('.') {
        Some((_, "jpg")) => "image/jpeg",
        Some((_, "png")) => "image/png",
        _ => return not_found(),
    };
    let Ok(key) = keys::element_file(element, &name) else {
        return not_found();
    };
    match signed.signature {
        Some(signature) if services.files.verify_element(key.as_str(), &signature) => {
            serve_object(&services, &key, content_type, &headers).await
        }
        _ => not_found(),
    }
}

/// A stored object, whole or by one byte range.
async fn serve_object(
    services: &Services,
    key: &keys::ObjectKey,
    content_type: &'static str,
    headers: &HeaderMap,
) -> Response {
    let object = match services.storage.head(key).await {
        Ok(Some(object)) => object,
        Ok(None) => return not_found(),
        Err(e) => return storage_unavailable(key, &e),
    };
    let size = object.size;
    let common = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (header::ACCEPT_RANGES, HeaderValue::from_static("bytes")),
    ];
    match byte_range(headers.get(header::RANGE), size) {
        Err(()) => {
            let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            response
        }
        Ok(Some((start, end))) => match services.storage.get_range(key, start..end).await {
            Ok(bytes) => {
                let range = format!("bytes {start}-{}/{size}", end - 1);
                let mut response = (StatusCode::PARTIAL_CONTENT, common, bytes).into_response();
                if let Ok(v) = HeaderValue::from_str(&range) {
                    response.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                response
            }
            Err(e) => storage_unavailable(key, &e),
        },
        Ok(None) => match services.storage.get_stream(key).await {
            Ok((_, stream)) => {
                let mut response =
                    (StatusCode::OK, common, Body::from_stream(stream)).into_response();
                response
                    .headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(size));
                response
            }
            Err(e) => storage_unavailable(key, &e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls() -> FileUrls {
        FileUrls {
            base: "https://k.example".into(),
            key: b"secret".to_vec(),
            retention_ms: 30 * 86_400_000,
        }
    }

    #[test]
    fn signed_urls_verify_until_they_expire() {
        let u = urls();
        let task = TaskId::new();
        let url = u.url(&task, "video.mp4", 1_000_000);
        let expires = (1_000_000 + 30 * 86_400_000) / 1000;
        assert!(url.starts_with(&format!(
            "https://k.example/v1/files/{task}/video.mp4?expires={expires}&signature="
        )));
        let signature = url.rsplit('=').next().unwrap_or_default();
        assert!(u.verify(&task, "video.mp4", expires, signature, 1_000_000));
        assert!(!u.verify(&task, "cover.jpg", expires, signature, 1_000_000));
        assert!(!u.verify(&task, "video.mp4", expires + 1, signature, 1_000_000));
        assert!(!u.verify(&TaskId::new(), "video.mp4", expires, signature, 1_000_000));
        assert!(!u.verify(&task, "video.mp4", expires, signature, (expires + 1) * 1000));
        assert!(!u.verify(&task, "video.mp4", expires, "zz", 0));
    }

    #[test]
    fn ranges() {
        let h = |v: &str| HeaderValue::from_str(v).ok();
        assert_eq!(byte_range(None, 100), Ok(None));
        assert_eq!(byte_range(h("bytes=0-9").as_ref(), 100), Ok(Some((0, 10))));
        assert_eq!(
            byte_range(h("bytes=90-").as_ref(), 100),
            Ok(Some((90, 100)))
        );
        assert_eq!(
            byte_range(h("bytes=-10").as_ref(), 100),
            Ok(Some((90, 100)))
        );
        assert_eq!(
            byte_range(h("bytes=50-500").as_ref(), 100),
            Ok(Some((50, 100)))
        );
        assert_eq!(byte_range(h("bytes=100-").as_ref(), 100), Err(()));
        assert_eq!(byte_range(h("bytes=9-3").as_ref(), 100), Err(()));
        assert_eq!(byte_range(h("bytes=0-1,5-6").as_ref(), 100), Ok(None));
        assert_eq!(byte_range(h("items=0-1").as_ref(), 100), Ok(None));
    }
}
