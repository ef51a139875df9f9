//! A mock of the official Kling API (`kling-official.md`), for testing kinora's upstream
//! provider without the real service: HS256 access-key JWTs checked with Kling's codes, the
//! `{code, message, request_id, data}` envelope, create / query / list for every feature,
//! lookups by `external_task_id` in both forms, statuses that advance with time, and results
//! whose URLs serve a real MP4. Latency, task duration and fault rates (5xx, 1302, 1303, hung
//! requests, malformed bodies, an exhausted resource pack) are configurable, and every create
//! is counted per `external_task_id`, so a test can prove a task was never submitted twice.
//! A create with a `callback_url` gets the bare task object posted there at each status
//! change, as Kling does.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::Rng;
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::sync::OnceCell;

/// The features the mock serves, as path segments.
pub const FEATURES: [&str; 6] = [
    "text2video",
    "image2video",
    "omni-video",
    "motion-control",
    "video-extend",
    "multi-image2video",
];

/// Fault rates per create request, each from 0 to 1, drawn in this order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    /// Never answers (the client's timeout decides).
    pub hang: f64,
    /// HTTP 200 with a body that is not JSON.
    pub malformed: f64,
    /// HTTP 500, code 5000, after creating the task: the ambiguous case.
    pub server_error_after_create: f64,
    /// HTTP 500, code 5000, creating nothing.
    pub server_error: f64,
    /// HTTP 429, code 1302 (rate limit).
    pub rate_limited: f64,
    /// HTTP 429, code 1303 (concurrency limit).
    pub over_concurrency: f64,
    /// HTTP 429, code 1102 (resource pack exhausted): the account cannot take tasks.
    pub no_balance: f64,
}

/// How the mock behaves.
#[derive(Clone, Debug, PartialEq)]
pub struct MockConfig {
    pub access_key: String,
    pub secret_key: String,
    /// From create to `succeed`; the first fifth of it the task is `submitted`.
    pub task_duration: Duration,
    /// Each task takes `task_duration` plus a random share of this, so tasks created
    /// together finish spread over it.
    pub task_duration_spread: Duration,
    /// Length of the result video in seconds (the local engine's default when `None`).
    pub result_seconds: Option<u32>,
    /// Added before every answer.
    pub latency: Duration,
    pub faults: Faults,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            access_key: "mock-access-key".to_owned(),
            secret_key: "mock-secret-key".to_owned(),
            task_duration: Duration::from_secs(3),
            task_duration_spread: Duration::ZERO,
            result_seconds: None,
            latency: Duration::ZERO,
            faults: Faults::default(),
        }
    }
}

/// A prompt containing this ends `failed` with a content-review message, as Kling's risk
/// control does.
pub const FAIL_MARKER: &str = "[mock:fail]";

struct MockTask {
    id: String,
    feature: String,
    external_task_id: String,
    created_ms: i64,
    duration_ms: i64,
    fails: bool,
}

#[derive(Default)]
struct Tasks {
    by_id: HashMap<String, MockTask>,
    /// Creation order, for listing newest first.
    order: Vec<String>,
    /// Creates that made a task, per external id.
    submits: HashMap<String, usize>,
    /// Task id per external id.
    by_external: HashMap<String, String>,
    /// The body of the create that made each task, per external id.
    bodies: HashMap<String, Value>,
    /// Queries answered (one task, a list, or a lookup by external id).
    queries: usize,
    /// Create requests that passed authentication, whatever the answer.
    create_requests: usize,
}

struct Shared {
    config: MockConfig,
    /// Posts callbacks.
    http: reqwest::Client,
    base_url: String,
    tasks: Mutex<Tasks>,
    video: OnceCell<Arc<Vec<u8>>>,
}

/// A running mock; stops when dropped.
pub struct MockKling {
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for MockKling {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl MockKling {
    /// Serves on `addr` (port 0 picks one).
    pub async fn start(config: MockConfig, addr: SocketAddr) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let base_url = format!("http://{}", listener.local_addr()?);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(std::io::Error::other)?;
        let shared = Arc::new(Shared {
            config,
            http,
            base_url,
            tasks: Mutex::default(),
            video: OnceCell::new(),
        });
        let app = router(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { shared, server })
    }

    pub fn base_url(&self) -> &str {
        &self.shared.base_url
    }

    /// How many creates made a task for `external_task_id`.
    pub fn submits(&self, external_task_id: &str) -> usize {
        self.shared
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .submits
            .get(external_task_id)
            .copied()
            .unwrap_or(0)
    }

    /// When the task created for `external_task_id` ends (Unix ms), if it exists.
    pub fn finishes_at(&self, external_task_id: &str) -> Option<i64> {
        let tasks = self
            .shared
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let id = tasks.by_external.get(external_task_id)?;
        tasks.by_id.get(id).map(|t| t.created_ms + t.duration_ms)
    }

    /// The create body that made the task for `external_task_id`.
    pub fn create_body(&self, external_task_id: &str) -> Option<Value> {
        self.shared
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .bodies
            .get(external_task_id)
            .cloned()
    }

    /// How many authenticated create requests the mock received, refused ones included.
    pub fn create_requests(&self) -> usize {
        self.shared
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .create_requests
    }

    /// How many queries (task, list, lookup) the mock has answered.
    pub fn queries(&self) -> usize {
        self.shared
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .queries
    }

    /// How many tasks exist.
    pub fn task_count(&self) -> usize {
        self.shared
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_id
            .len()
    }
}

/// A JWT as the official docs mint it, for tests that call the mock directly.
pub fn mint_jwt(access_key: &str, secret_key: &str, now_s: i64, lifetime_s: i64) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(
        json!({"iss": access_key, "exp": now_s + lifetime_s, "nbf": now_s - 5}).to_string(),
    );
    let signing_input = format!("{header}.{claims}");
    let signature = hmac_sha256(secret_key.as_bytes(), signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(message);
            mac.finalize().into_bytes().to_vec()
        }
        // HMAC takes keys of any length.
        Err(_) => Vec::new(),
    }
}

fn router(shared: Arc<Shared>) -> Router {
    let mut router = Router::new().route("/files/{task_id}/video.mp4", get(video));
    for feature in FEATURES {
        router = router
            .route(
                &format!("/v1/videos/{feature}"),
                get(move |state, headers, query| list(state, headers, query, feature))
                    .post(move |state, headers, body| create(state, headers, body, feature)),
            )
            .route(&format!("/v1/videos/{feature}/{{id}}"), get(query_one));
    }
    router.with_state(shared)
}

/// A Kling error answer.
fn error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        Json(json!({"code": code, "message": message, "request_id": uuid::Uuid::now_v7().to_string()})),
    )
        .into_response()
}

fn success(data: Value) -> Response {
    Json(json!({"code": 0, "message": "SUCCEED", "request_id": uuid::Uuid::now_v7().to_string(), "data": data}))
        .into_response()
}

/// Checks the bearer JWT as the official service does (§3.3 of the dialect's spec).
/// Why a token is refused: Kling's code and message (always HTTP 401).
type AuthRefusal = (u32, &'static str);

fn authenticate(config: &MockConfig, headers: &HeaderMap) -> Result<(), AuthRefusal> {
    let unauthorized = |code, message| Err((code, message));
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return unauthorized(1001, "Authorization is empty");
    };
    let Some(token) = value.strip_prefix("Bearer ") else {
        return unauthorized(1002, "Authorization is invalid");
    };
    let parts: Vec<&str> = token.split('.').collect();
    let [head, claims, signature] = parts.as_slice() else {
        return unauthorized(1002, "Authorization is invalid");
    };
    let decode = |part: &str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    };
    let (Some(head), Some(claims)) = (decode(head), decode(claims)) else {
        return unauthorized(1002, "Authorization is invalid");
    };
    if head["alg"] != "HS256" {
        return unauthorized(1002, "Authorization is invalid");
    }
    if claims["iss"] != config.access_key.as_str() {
        return unauthorized(1002, "api key not found");
    }
    let expected = hmac_sha256(
        config.secret_key.as_bytes(),
        format!("{}.{}", parts[0], parts[1]).as_bytes(),
    );
    if URL_SAFE_NO_PAD.decode(signature).ok().as_deref() != Some(expected.as_slice()) {
        return unauthorized(1002, "Authorization is invalid");
    }
    let now = now_ms() / 1000;
    if claims["exp"].as_i64().is_none_or(|exp| exp < now) {
        return unauthorized(1004, "Authorization has expired");
    }
    if claims["nbf"].as_i64().is_some_and(|nbf| nbf > now) {
        return unauthorized(1003, "Authorization is not yet valid");
    }
    Ok(())
}

/// The fault a create meets, if any.
enum Fault {
    Hang,
    Malformed,
    ServerErrorAfterCreate,
    ServerError,
    RateLimited,
    OverConcurrency,
    NoBalance,
}

fn draw_fault(faults: &Faults) -> Option<Fault> {
    let mut rng = rand::rng();
    let mut hit = |rate: f64| rate > 0.0 && rng.random::<f64>() < rate;
    if hit(faults.hang) {
        Some(Fault::Hang)
    } else if hit(faults.malformed) {
        Some(Fault::Malformed)
    } else if hit(faults.server_error_after_create) {
        Some(Fault::ServerErrorAfterCreate)
    } else if hit(faults.server_error) {
        Some(Fault::ServerError)
    } else if hit(faults.rate_limited) {
        Some(Fault::RateLimited)
    } else if hit(faults.over_concurrency) {
        Some(Fault::OverConcurrency)
    } else if hit(faults.no_balance) {
        Some(Fault::NoBalance)
    } else {
        None
    }
}

async fn create(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
    feature: &'static str,
) -> Response {
    tokio::time::sleep(shared.config.latency).await;
    if let Err((code, message)) = authenticate(&shared.config, &headers) {
        return error(StatusCode::UNAUTHORIZED, code, message);
    }
    shared
        .tasks
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .create_requests += 1;
    let fault = draw_fault(&shared.config.faults);
    match fault {
        Some(Fault::Hang) => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return error(StatusCode::GATEWAY_TIMEOUT, 5002, "timeout");
        }
        Some(Fault::Malformed) => {
            return (StatusCode::OK, "<html><body>upstream hiccup</body></html>").into_response()
        }
        Some(Fault::ServerError) => {
            return error(StatusCode::INTERNAL_SERVER_ERROR, 5000, "internal error")
        }
        Some(Fault::RateLimited) => {
            return error(
                StatusCode::TOO_MANY_REQUESTS,
                1302,
                "request rate limit exceeded",
            )
        }
        Some(Fault::OverConcurrency) => {
            return error(
                StatusCode::TOO_MANY_REQUESTS,
                1303,
                "parallel task limit exceeded",
            )
        }
        Some(Fault::NoBalance) => {
            return error(
                StatusCode::TOO_MANY_REQUESTS,
                1102,
                "resource pack exhausted or expired",
            )
        }
        Some(Fault::ServerErrorAfterCreate) | None => {}
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            1200,
            "request body is not valid JSON",
        );
    };
    let external = request["external_task_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let prompt = request["prompt"].as_str().unwrap_or_default();
    let callback_url = request["callback_url"].as_str().map(str::to_owned);
    let spread = shared.config.task_duration_spread.as_millis() as f64;
    let duration_ms = i64::try_from(shared.config.task_duration.as_millis()).unwrap_or(i64::MAX)
        + (rand::rng().random::<f64>() * spread) as i64;
    let (task, id) = {
        let mut tasks = shared.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        if !external.is_empty() && tasks.by_external.contains_key(&external) {
            return error(
                StatusCode::BAD_REQUEST,
                1201,
                "external_task_id already exists",
            );
        }
        let task = MockTask {
            id: uuid::Uuid::now_v7().to_string(),
            feature: feature.to_owned(),
            external_task_id: external.clone(),
            created_ms: now_ms(),
            duration_ms,
            fails: prompt.contains(FAIL_MARKER),
        };
        let data = json!({
            "task_id": task.id,
            "task_status": "submitted",
            "task_info": {"external_task_id": task.external_task_id},
            "created_at": task.created_ms,
            "updated_at": task.created_ms,
        });
        *tasks.submits.entry(external.clone()).or_default() += 1;
        if !external.is_empty() {
            tasks.by_external.insert(external.clone(), task.id.clone());
            tasks.bodies.insert(external, request.clone());
        }
        let id = task.id.clone();
        tasks.order.push(task.id.clone());
        tasks.by_id.insert(task.id.clone(), task);
        (data, id)
    };
    if let Some(url) = callback_url {
        tokio::spawn(post_changes(shared.clone(), id, duration_ms, url));
    }
    if matches!(fault, Some(Fault::ServerErrorAfterCreate)) {
        return error(StatusCode::INTERNAL_SERVER_ERROR, 5000, "internal error");
    }
    success(task)
}

/// Posts the task object to `url` when it starts processing and when it ends, as Kling's
/// callbacks do; a failed post is tried twice more.
async fn post_changes(shared: Arc<Shared>, id: String, duration_ms: i64, url: String) {
    let millis = |ms: i64| Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    for wait in [duration_ms / 5, duration_ms - duration_ms / 5] {
        tokio::time::sleep(millis(wait)).await;
        let object = {
            let tasks = shared.tasks.lock().unwrap_or_else(PoisonError::into_inner);
            match tasks.by_id.get(&id) {
                Some(task) => task_object(&shared, task),
                None => return,
            }
        };
        for _ in 0..3 {
            let sent = shared.http.post(&url).json(&object).send().await;
            if sent.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// The task object at this moment: statuses advance with time.
fn task_object(shared: &Shared, task: &MockTask) -> Value {
    let duration_ms = task.duration_ms;
    let elapsed = now_ms() - task.created_ms;
    let (status, updated) = if elapsed < duration_ms / 5 {
        ("submitted", task.created_ms)
    } else if elapsed < duration_ms {
        ("processing", task.created_ms + duration_ms / 5)
    } else if task.fails {
        ("failed", task.created_ms + duration_ms)
    } else {
        ("succeed", task.created_ms + duration_ms)
    };
    let mut object = json!({
        "task_id": task.id,
        "task_status": status,
        "task_status_msg": if status == "failed" { "Failure to pass the risk control system" } else { "" },
        "task_info": {"external_task_id": task.external_task_id},
        "created_at": task.created_ms,
        "updated_at": updated,
    });
    if status == "succeed" {
        object["final_unit_deduction"] = json!("1");
        object["task_result"] = json!({"videos": [{
            "id": format!("video-{}", task.id),
            "url": format!("{}/files/{}/video.mp4", shared.base_url, task.id),
            "duration": "5",
        }]});
    }
    object
}

fn find<'a>(tasks: &'a Tasks, feature: &str, id: &str) -> Option<&'a MockTask> {
    tasks
        .by_id
        .get(id)
        .or_else(|| tasks.by_external.get(id).and_then(|id| tasks.by_id.get(id)))
        .filter(|t| t.feature == feature)
}

fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, 1203, "task not found")
}

async fn query_one(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    uri: axum::http::Uri,
) -> Response {
    tokio::time::sleep(shared.config.latency).await;
    if let Err((code, message)) = authenticate(&shared.config, &headers) {
        return error(StatusCode::UNAUTHORIZED, code, message);
    }
    let feature = uri
        .path()
        .trim_start_matches("/v1/videos/")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let mut tasks = shared.tasks.lock().unwrap_or_else(PoisonError::into_inner);
    tasks.queries += 1;
    match find(&tasks, &feature, &id) {
        Some(task) => success(task_object(&shared, task)),
        None => not_found(),
    }
}

async fn list(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    feature: &'static str,
) -> Response {
    tokio::time::sleep(shared.config.latency).await;
    if let Err((code, message)) = authenticate(&shared.config, &headers) {
        return error(StatusCode::UNAUTHORIZED, code, message);
    }
    let pairs: Vec<(String, String)> = url_pairs(query.as_deref().unwrap_or_default());
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let mut tasks = shared.tasks.lock().unwrap_or_else(PoisonError::into_inner);
    tasks.queries += 1;
    if let Some(external) = get("external_task_id") {
        return match find(&tasks, feature, &external) {
            Some(task) if task.external_task_id == external => success(task_object(&shared, task)),
            _ => not_found(),
        };
    }
    let number = |name: &str, default: usize, max: usize| {
        get(name)
            .map(|v| v.parse::<usize>().ok().filter(|n| (1..=max).contains(n)))
            .unwrap_or(Some(default))
    };
    let (Some(page), Some(size)) = (number("pageNum", 1, 1000), number("pageSize", 30, 500)) else {
        return error(
            StatusCode::BAD_REQUEST,
            1201,
            "pageNum or pageSize is out of range",
        );
    };
    let listed: Vec<Value> = tasks
        .order
        .iter()
        .rev()
        .filter_map(|id| tasks.by_id.get(id))
        .filter(|t| t.feature == feature)
        .skip((page - 1) * size)
        .take(size)
        .map(|t| task_object(&shared, t))
        .collect();
    success(Value::Array(listed))
}

/// `a=1&b=2` as pairs (values are plain ids and numbers here).
fn url_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The result video: a real 5 s MP4 from kinora's local engine, rendered once.
async fn video(State(shared): State<Arc<Shared>>, Path(task_id): Path<String>) -> Response {
    let known = shared
        .tasks
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .by_id
        .contains_key(&task_id);
    if !known {
        return StatusCode::NOT_FOUND.into_response();
    }
    let rendered = shared
        .video
        .get_or_try_init(|| async {
            let seconds = shared.config.result_seconds;
            tokio::task::spawn_blocking(move || {
                let pool = kinora_render::engine::EnginePool::new(2)?;
                let mut spec =
                    kinora_render::RenderSpec::text2video("a result of the mock Kling API");
                spec.duration_s = seconds;
                kinora_render::render(&spec, &pool, &kinora_render::CancelFlag::new())
                    .map(|output| Arc::new(output.mp4))
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
        })
        .await;
    match rendered {
        Ok(mp4) => ([(header::CONTENT_TYPE, "video/mp4")], mp4.as_ref().clone()).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e).into_response(),
    }
}
