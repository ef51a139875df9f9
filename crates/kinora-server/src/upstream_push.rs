//! kinora's receiver for upstream callbacks: a channel with `send_callbacks` gives Kling the
//! URL `{public_url}/kinora/v1/upstream/tasks/{task}?token={hmac}` as `callback_url`, and
//! Kling posts the task object there whenever its status changes.
//!
//! Kling does not sign its callbacks, so the URL carries the proof: the token is an
//! HMAC-SHA256 of the task id under a deployment-wide key kept in the database, known only to
//! kinora and to the upstream it gave the URL to. A verified `processing` push moves the task
//! to running on the spot; any other push is kept for the task and makes its poll due at
//! once, and the poll reads it instead of asking the upstream. Polling stays
//! the fallback: a lost push only delays a task until its next scheduled poll.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use kinora_core::{Error, ErrorCode, TaskId, TaskState};
use kinora_store::TaskTransition;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::Sha256;
use tracing::{info, warn};

use crate::callbacks::outbox::Outbox;
use crate::Services;

const PUSH_SECRET: &str = "upstream-push-token";
/// Largest push body read: a task object with a few result URLs is a few KiB.
const MAX_PUSH_BYTES: usize = 256 * 1024;

/// Makes and checks the receiver URLs given to upstreams.
#[derive(Clone)]
pub struct UpstreamReceiver {
    base: String,
    key: Vec<u8>,
}

impl UpstreamReceiver {
    pub fn new(base: String, key: &[u8]) -> Self {
        Self {
            base,
            key: key.to_vec(),
        }
    }

    /// Loads (or, on a new deployment, creates) the token key.
    pub async fn load(store: &dyn kinora_store::Store, base: String) -> Result<Self, Error> {
        let candidate = crate::auth::generate_secret();
        let key = store.server_secret(PUSH_SECRET, &candidate).await?;
        Ok(Self::new(base, key.as_bytes()))
    }

    fn mac(&self, task: &TaskId) -> Hmac<Sha256> {
        // HMAC takes keys of any length; the error arm cannot happen.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        mac.update(format!("upstream-push/{task}").as_bytes());
        mac
    }

    /// The URL an upstream posts `task`'s changes to.
    pub fn url_for(&self, task: &TaskId) -> String {
        let token = crate::files::hex(&self.mac(task).finalize().into_bytes());
        format!(
            "{}/kinora/v1/upstream/tasks/{task}?token={token}",
            self.base
        )
    }

    /// Whether `token` is the one [`Self::url_for`] gave out for `task` (constant time).
    pub fn verify(&self, task: &TaskId, token: &str) -> bool {
        let Some(bytes) = crate::files::decode_hex(token) else {
            return false;
        };
        self.mac(task).verify_slice(&bytes).is_ok()
    }
}

pub fn routes() -> Router<Arc<Services>> {
    Router::new().route("/kinora/v1/upstream/tasks/{task_id}", post(receive))
}

#[derive(Deserialize)]
struct PushQuery {
    #[serde(default)]
    token: String,
}

fn status_of(error: &Error) -> StatusCode {
    StatusCode::from_u16(error.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"error": {"message": message}}))).into_response()
}

async fn receive(
    State(services): State<Arc<Services>>,
    Path(task_id): Path<String>,
    Query(query): Query<PushQuery>,
    body: Bytes,
) -> Response {
    let Some(task_id) = TaskId::parse_any(&task_id) else {
        return refuse(StatusCode::NOT_FOUND, "unknown task");
    };
    // Unverified callers learn nothing, not even whether the task exists.
    if !services.upstream_receiver.verify(&task_id, &query.token) {
        warn!(task = %task_id, "refused an upstream push with a wrong token");
        return refuse(StatusCode::NOT_FOUND, "unknown task");
    }
    if body.len() > MAX_PUSH_BYTES {
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, "the body is too large");
    }
    let Ok(pushed) = serde_json::from_slice::<Value>(&body) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the body is not a JSON task object",
        );
    };
    let task = match services.store.load_task_for_worker(task_id).await {
        Ok(Some(task)) => task,
        Ok(None) => return refuse(StatusCode::NOT_FOUND, "unknown task"),
        Err(e) => return refuse(status_of(&e), e.message()),
    };
    let names_task = pushed["task_info"]["external_task_id"].as_str() == Some(&task.id.to_string());
    if !names_task {
        return refuse(
            StatusCode::BAD_REQUEST,
            "task_info.external_task_id does not name this task",
        );
    }
    if task.state.is_terminal() {
        return (StatusCode::OK, Json(json!({"received": true}))).into_response();
    }
    // Work started: that is the whole news, applied here rather than by waking a poll.
    if pushed["task_status"] == "processing" {
        if task.state == TaskState::Submitted {
            return match services
                .store
                .transition_task(task.id, TaskTransition::Running)
                .await
            {
                Ok(changed) => {
                    services.task_events.announce(task.id);
                    Outbox::new(services.store.clone(), services.files.clone())
                        .record(&changed)
                        .await;
                    (StatusCode::OK, Json(json!({"received": true}))).into_response()
                }
                Err(e) if e.code() == ErrorCode::StaleTransition => {
                    (StatusCode::OK, Json(json!({"received": true}))).into_response()
                }
                Err(e) => refuse(status_of(&e), e.message()),
            };
        }
        return (StatusCode::OK, Json(json!({"received": true}))).into_response();
    }
    match services.store.record_upstream_push(task.id, &pushed).await {
        Ok(()) => {
            info!(task = %task.id, status = ?pushed.get("task_status"), "upstream pushed a task change");
            (StatusCode::OK, Json(json!({"received": true}))).into_response()
        }
        // The upstream retries a push that was not accepted.
        Err(e) => refuse(status_of(&e), e.message()),
    }
}
