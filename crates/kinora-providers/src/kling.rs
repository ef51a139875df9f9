//! The `kling` provider: kinora as a client of the official Kling API (`kling-official.md`
//! §12). It signs HS256 JWTs with the channel's access key (cached, re-minted before expiry
//! and once on an auth refusal), sends the task's canonical request as the official body for
//! its feature with kinora's task id as `external_task_id`, judges every answer by HTTP status,
//! JSON, `code` and `data` together, and stores the result videos in kinora's storage before
//! reporting success.
//!
//! Crash safety: a submit first looks the task up upstream by its `external_task_id`, so a
//! submit that may or may not have reached the upstream (a crash, a timeout, a 5xx) is adopted
//! rather than created twice.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use bytes::{Bytes, BytesMut};
use hmac::{Hmac, Mac};
use kinora_core::request::{GenerationRequest, MediaRef};
use kinora_core::{FailureClass, Task, TaskKind};
use kinora_storage::{keys, ObjectKey};
use serde_json::{json, Map, Value};
use sha2::Sha256;
use tracing::warn;

use crate::{Progress, Provider, ProviderContext, ProviderError, Submission};

/// The documented host for callers outside mainland China.
pub const DEFAULT_BASE_URL: &str = "https://api-singapore.klingai.com";
/// Tokens live this long and are re-minted when less than [`REFRESH_BEFORE_S`] remains.
const TOKEN_LIFETIME_S: i64 = 1800;
const REFRESH_BEFORE_S: i64 = 300;
/// The first poll comes this long after acceptance, later ones at intervals growing by half
/// up to [`MAX_POLL_INTERVAL`] (§12).
const FIRST_POLL: Duration = Duration::from_secs(5);
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(30);
/// A task not polled for this long is no longer counted as one this process follows.
const FOLLOW_WINDOW: Duration = Duration::from_secs(600);
/// Consecutive 1203 answers to a task's query that end it.
const QUERY_MISSES_TO_FAIL: u32 = 3;
/// A busy upstream (1302, 1303, 429) is asked again after this.
const BUSY_RETRY: Duration = Duration::from_secs(1);
/// Largest result video kinora stores.
const MAX_RESULT_BYTES: usize = 1024 * 1024 * 1024;
/// Keys kinora sets in the body itself; unknown client fields never overwrite them.
const RESERVED: [&str; 10] = [
    "model_name",
    "prompt",
    "duration",
    "image",
    "image_tail",
    "image_list",
    "element_list",
    "video_list",
    "callback_url",
    "external_task_id",
];

/// One Kling account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KlingChannel {
    pub base_url: String,
    pub access_key: String,
    pub secret_key: String,
    /// Whether creates ask Kling to push task changes to kinora's receiver.
    pub send_callbacks: bool,
    /// The average rate of task queries the channel keeps to: each followed task's polls are
    /// spaced so that all of them together stay at or below it.
    pub max_queries_per_second: u32,
    /// Queries sent to the channel at the same time.
    pub max_parallel_queries: u32,
}

impl KlingChannel {
    /// An account with §12's defaults: no pushes, 10 queries a second, 8 at a time.
    pub fn new(base_url: &str, access_key: &str, secret_key: &str) -> Self {
        Self {
            base_url: base_url.to_owned(),
            access_key: access_key.to_owned(),
            secret_key: secret_key.to_owned(),
            send_callbacks: false,
            max_queries_per_second: 10,
            max_parallel_queries: 8,
        }
    }
}

pub struct KlingProvider {
    channel: KlingChannel,
    http: reqwest::Client,
    /// The cached token and its expiry (Unix seconds).
    token: Mutex<Option<(String, i64)>>,
    /// Bounds the queries in flight on this channel.
    queries: tokio::sync::Semaphore,
    /// The unfinished tasks this process follows on the channel, with when each was last
    /// submitted or polled: their number spaces the polls.
    followed: Mutex<Followed>,
}

#[derive(Default)]
struct Followed {
    tasks: HashMap<kinora_core::TaskId, Instant>,
    pruned_at: Option<Instant>,
}

/// An upstream answer judged: `Ok(data)` only for HTTP 200 with JSON, `code` 0 and `data`.
#[derive(Debug)]
enum Answer {
    Data(Value),
    /// A Kling error code with its message and HTTP status.
    Refused {
        http: u16,
        code: i64,
        message: String,
    },
    /// No usable answer: network error, timeout, 5xx without a code, a body that is not JSON.
    Broken(String),
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The official feature path of a task kind.
pub fn feature(kind: TaskKind) -> &'static str {
    match kind {
        TaskKind::Text2Video => "text2video",
        TaskKind::Image2Video => "image2video",
        TaskKind::OmniVideo => "omni-video",
        TaskKind::MotionControl => "motion-control",
        TaskKind::VideoExtend => "video-extend",
        TaskKind::MultiImage2Video => "multi-image2video",
    }
}

fn transient(message: impl Into<String>) -> ProviderError {
    ProviderError::Transient {
        message: message.into(),
    }
}

fn permanent(class: FailureClass, message: impl Into<String>) -> ProviderError {
    ProviderError::Permanent {
        class,
        message: message.into(),
    }
}

impl KlingProvider {
    pub fn new(channel: KlingChannel) -> Result<Self, kinora_core::Error> {
        Self::with_timeout(channel, Duration::from_secs(60))
    }

    /// A provider whose every call is bounded by `timeout` (downloads included).
    pub fn with_timeout(
        channel: KlingChannel,
        timeout: Duration,
    ) -> Result<Self, kinora_core::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10).min(timeout))
            .timeout(timeout)
            .build()
            .map_err(|e| kinora_core::Error::internal(format!("Kling HTTP client: {e}")))?;
        let parallel = usize::try_from(channel.max_parallel_queries.max(1)).unwrap_or(1);
        Ok(Self {
            channel,
            http,
            token: Mutex::new(None),
            queries: tokio::sync::Semaphore::new(parallel),
            followed: Mutex::default(),
        })
    }

    /// Notes that `task` is followed (or, when `ended`, no longer) and returns how many are.
    fn follow(&self, task: kinora_core::TaskId, ended: bool) -> usize {
        let mut followed = self
            .followed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if ended {
            followed.tasks.remove(&task);
        } else {
            followed.tasks.insert(task, now);
        }
        // Tasks polled by another process or abandoned stop counting after a while.
        if followed
            .pruned_at
            .is_none_or(|at| now.duration_since(at) > Duration::from_secs(60))
        {
            followed
                .tasks
                .retain(|_, seen| now.duration_since(*seen) < FOLLOW_WINDOW);
            followed.pruned_at = Some(now);
        }
        followed.tasks.len()
    }

    /// The shortest spacing between two polls of one task that keeps `followed` tasks at or
    /// below the channel's query rate.
    fn fair_poll_spacing(&self, followed: usize) -> Duration {
        match self.channel.max_queries_per_second {
            0 => Duration::ZERO,
            rate => Duration::from_secs_f64(followed as f64 / f64::from(rate)),
        }
    }

    /// The bearer token: the cached one while more than [`REFRESH_BEFORE_S`] remain.
    fn token(&self, fresh: bool) -> String {
        let now = now_s();
        let mut cached = self
            .token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !fresh {
            if let Some((token, exp)) = cached.as_ref() {
                if exp - now > REFRESH_BEFORE_S {
                    return token.clone();
                }
            }
        }
        let token = mint_jwt(
            &self.channel.access_key,
            &self.channel.secret_key,
            now,
            TOKEN_LIFETIME_S,
        );
        *cached = Some((token.clone(), now + TOKEN_LIFETIME_S));
        token
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        fresh: bool,
    ) -> Answer {
        let url = format!("{}{path}", self.channel.base_url.trim_end_matches('/'));
        let mut request = self
            .http
            .request(method, url)
            .bearer_auth(self.token(fresh));
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) if e.is_timeout() => return Answer::Broken(format!("{path}: timed out")),
            Err(e) => return Answer::Broken(format!("{path}: {e}")),
        };
        let http = response.status().as_u16();
        let text = match response.text().await {
            Ok(text) => text,
            Err(e) => return Answer::Broken(format!("{path}: reading the answer failed: {e}")),
        };
        let Ok(parsed) = serde_json::from_str::<Value>(&text) else {
            return Answer::Broken(format!("{path}: HTTP {http} with a body that is not JSON"));
        };
        let code = parsed.get("code").and_then(Value::as_i64);
        let message = parsed
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        match (http, code, parsed.get("data")) {
            (200, Some(0), Some(data)) if !data.is_null() => Answer::Data(data.clone()),
            (_, Some(code), _) if code != 0 => {
                if let Some(id) = parsed.get("request_id").and_then(Value::as_str) {
                    warn!(path, code, request_id = id, %message, "Kling refused a call");
                }
                Answer::Refused {
                    http,
                    code,
                    message,
                }
            }
            _ => Answer::Broken(format!("{path}: HTTP {http} without a usable envelope")),
        }
    }

    /// One call, re-minting the token once on 1003/1004.
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Answer {
        let answer = self.send(method.clone(), path, body, false).await;
        match answer {
            Answer::Refused {
                code: 1003 | 1004, ..
            } => self.send(method, path, body, true).await,
            other => other,
        }
    }

    /// The upstream task kinora created for `task`, if any: the collection form, then the
    /// path form (§12).
    async fn find_upstream(&self, task: &Task) -> Result<Option<Value>, ProviderError> {
        let feature = feature(task.kind);
        let collection = format!("/v1/videos/{feature}?external_task_id={}", task.id);
        match self.call(reqwest::Method::GET, &collection, None).await {
            Answer::Data(data) if data.get("task_id").is_some() => return Ok(Some(data)),
            Answer::Data(Value::Array(items)) => {
                return Ok(items
                    .into_iter()
                    .find(|t| t["task_info"]["external_task_id"] == task.id.to_string()))
            }
            Answer::Refused { code: 1203, .. } | Answer::Data(_) => {}
            other => return Err(classify(other, "look up")),
        }
        let path = format!("/v1/videos/{feature}/{}", task.id);
        match self.call(reqwest::Method::GET, &path, None).await {
            Answer::Data(data) => Ok(Some(data)),
            Answer::Refused { code: 1203, .. } => Ok(None),
            other => Err(classify(other, "look up")),
        }
    }

    /// The official body for the task's feature.
    async fn body(&self, task: &Task, cx: &ProviderContext) -> Result<Value, ProviderError> {
        let request = GenerationRequest::from_value(&task.request).map_err(|e| {
            permanent(
                FailureClass::InvalidInput,
                format!("the stored request cannot be sent: {e}"),
            )
        })?;
        let mut body = Map::new();
        for (key, value) in &request.extra {
            if !RESERVED.contains(&key.as_str()) {
                body.insert(key.clone(), value.clone());
            }
        }
        body.insert("model_name".into(), json!(task.model));
        body.insert("external_task_id".into(), json!(task.id.to_string()));
        if !request.prompt.is_empty() {
            body.insert("prompt".into(), json!(request.prompt));
        }
        if let Some(negative) = &request.negative_prompt {
            body.insert("negative_prompt".into(), json!(negative));
        }
        if let Some(cfg) = request.cfg_scale {
            body.insert("cfg_scale".into(), json!(cfg));
        }
        if let Some(mode) = &request.mode {
            body.insert("mode".into(), json!(mode));
        }
        if let Some(aspect) = &request.aspect_ratio {
            body.insert("aspect_ratio".into(), json!(aspect));
        }
        if let Some(seconds) = request.duration {
            body.insert("duration".into(), json!(seconds.to_string()));
        }
        if request.sound {
            body.insert("sound".into(), json!("on"));
        }
        if !request.voice_ids.is_empty() {
            let voices: Vec<Value> = request
                .voice_ids
                .iter()
                .map(|v| json!({"voice_id": v}))
                .collect();
            body.insert("voice_list".into(), Value::Array(voices));
        }
        if let Some(camera) = &request.camera_control {
            body.insert("camera_control".into(), json!(camera));
        }
        if let Some(shots) = &request.multi_shot {
            body.insert("multi_shot".into(), json!(true));
            body.insert("shot_type".into(), json!(shots.shot_type));
            if !shots.multi_prompt.is_empty() {
                let items: Vec<Value> = shots
                    .multi_prompt
                    .iter()
                    .map(|s| json!({"index": s.index, "prompt": s.prompt, "duration": s.duration.to_string()}))
                    .collect();
                body.insert("multi_prompt".into(), Value::Array(items));
            }
        }
        if request.watermark {
            body.insert("watermark_info".into(), json!({"enabled": true}));
        }
        if !request.elements.is_empty() {
            let ids: Vec<Value> = request
                .elements
                .iter()
                .map(|e| json!({"element_id": e.element_id}))
                .collect();
            body.insert("element_list".into(), Value::Array(ids));
        }
        match task.kind {
            TaskKind::Image2Video => {
                if let Some(m) = &request.image {
                    body.insert("image".into(), json!(base64_of(cx, m).await?));
                }
                if let Some(m) = &request.image_tail {
                    body.insert("image_tail".into(), json!(base64_of(cx, m).await?));
                }
                if let Some(m) = &request.static_mask {
                    body.insert("static_mask".into(), json!(base64_of(cx, m).await?));
                }
                let mut masks = Vec::new();
                for mask in &request.dynamic_masks {
                    masks.push(json!({"mask": base64_of(cx, &mask.mask).await?, "trajectories": mask.trajectories.iter().map(|p| json!({"x": p.x as i64, "y": p.y as i64})).collect::<Vec<_>>()}));
                }
                if !masks.is_empty() {
                    body.insert("dynamic_masks".into(), Value::Array(masks));
                }
                // The output follows the image; image2video takes no aspect ratio.
                body.remove("aspect_ratio");
            }
            TaskKind::MultiImage2Video => {
                let mut list = Vec::new();
                for m in &request.reference_images {
                    list.push(json!({"image": base64_of(cx, m).await?}));
                }
                body.insert("image_list".into(), Value::Array(list));
            }
            TaskKind::OmniVideo => {
                let mut list = Vec::new();
                if let Some(m) = &request.image {
                    list.push(json!({"image_url": base64_of(cx, m).await?, "type": "first_frame"}));
                }
                if let Some(m) = &request.image_tail {
                    list.push(json!({"image_url": base64_of(cx, m).await?, "type": "end_frame"}));
                }
                for m in &request.reference_images {
                    list.push(json!({"image_url": base64_of(cx, m).await?}));
                }
                if !list.is_empty() {
                    body.insert("image_list".into(), Value::Array(list));
                }
                if let Some(video) = &request.video_reference {
                    let url = original_video_url(task).ok_or_else(|| {
                        permanent(
                            FailureClass::InvalidInput,
                            "the reference video has no URL the upstream can fetch",
                        )
                    })?;
                    body.insert(
                        "video_list".into(),
                        json!([{"video_url": url, "refer_type": video.refer_type, "keep_original_sound": if video.keep_original_sound { "yes" } else { "no" }}]),
                    );
                }
            }
            TaskKind::MotionControl => {
                let motion = request.motion_control.as_ref().ok_or_else(|| {
                    permanent(
                        FailureClass::InvalidInput,
                        "motion control without its inputs",
                    )
                })?;
                body.insert(
                    "image_url".into(),
                    json!(base64_of(cx, &motion.image).await?),
                );
                let url = original_video_url(task).ok_or_else(|| {
                    permanent(
                        FailureClass::InvalidInput,
                        "the motion reference video has no URL the upstream can fetch",
                    )
                })?;
                body.insert("video_url".into(), json!(url));
                body.insert(
                    "character_orientation".into(),
                    json!(motion.character_orientation),
                );
                body.insert(
                    "keep_original_sound".into(),
                    json!(if motion.keep_original_sound {
                        "yes"
                    } else {
                        "no"
                    }),
                );
                body.remove("duration");
                body.remove("aspect_ratio");
            }
            TaskKind::VideoExtend => {
                let video_id = request
                    .extend
                    .as_ref()
                    .and_then(|e| e.source_upstream_video_id.clone())
                    .ok_or_else(|| {
                        permanent(
                            FailureClass::InvalidInput,
                            "the source video was not made by this Kling channel, and Kling \
                             extends only its own videos",
                        )
                    })?;
                body.insert("video_id".into(), json!(video_id));
                // Model, mode and length come from the source video.
                for inherited in ["model_name", "mode", "duration", "aspect_ratio", "sound"] {
                    body.remove(inherited);
                }
            }
            TaskKind::Text2Video => {}
        }
        Ok(Value::Object(body))
    }
}

/// The client's own URL of the task's video input, from the request it sent (videos are
/// URL-only in every dialect).
fn original_video_url(task: &Task) -> Option<String> {
    let body = &task.submission.as_ref()?.body;
    [
        body.get("video_url"),
        body.get("video_list")
            .and_then(|v| v.get(0))
            .and_then(|v| v.get("video_url")),
    ]
    .into_iter()
    .flatten()
    .find_map(|v| v.as_str().map(str::to_owned))
}

/// A stored input as raw Base64 (no `data:` prefix), the form that always reaches Kling.
async fn base64_of(cx: &ProviderContext, media: &MediaRef) -> Result<String, ProviderError> {
    let key = ObjectKey::parse(&media.key).map_err(|e| {
        permanent(
            FailureClass::InvalidInput,
            format!("input {}: {e}", media.key),
        )
    })?;
    let bytes = cx
        .storage
        .get_bytes(&key)
        .await
        .map_err(|e| transient(format!("input {}: {e}", media.key)))?;
    Ok(STANDARD.encode(bytes))
}

/// A JWT as the official docs mint it: `iss` the access key, `nbf` 5 s back.
pub fn mint_jwt(access_key: &str, secret_key: &str, now_s: i64, lifetime_s: i64) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(
        json!({"iss": access_key, "exp": now_s + lifetime_s, "nbf": now_s - 5}).to_string(),
    );
    let input = format!("{header}.{claims}");
    let signature = match Hmac::<Sha256>::new_from_slice(secret_key.as_bytes()) {
        Ok(mut mac) => {
            mac.update(input.as_bytes());
            mac.finalize().into_bytes().to_vec()
        }
        // HMAC takes keys of any length.
        Err(_) => Vec::new(),
    };
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// What an answer that is not data means for the task (§12's table).
fn classify(answer: Answer, what: &str) -> ProviderError {
    match answer {
        Answer::Data(_) => transient(format!("{what}: unexpected data")),
        Answer::Broken(message) => transient(format!("{what}: {message}")),
        Answer::Refused {
            http,
            code,
            message,
        } => match code {
            1302 | 1303 => ProviderError::Busy {
                retry_after: BUSY_RETRY,
            },
            _ if http == 429 && !(1100..=1103).contains(&code) => ProviderError::Busy {
                retry_after: BUSY_RETRY,
            },
            1301 => permanent(FailureClass::ContentPolicy, message),
            1200 | 1201 | 1203 | 1300 | 1304 => permanent(FailureClass::InvalidInput, message),
            1100..=1103 => ProviderError::ChannelUnusable {
                message: format!("the Kling account cannot take tasks ({code}): {message}"),
            },
            // 1003 and 1004 were already answered with a fresh token once.
            1000..=1004 => ProviderError::ChannelUnusable {
                message: format!("Kling refused the channel's credentials ({code}): {message}"),
            },
            _ => transient(format!("{what}: Kling answered {code}: {message}")),
        },
    }
}

#[async_trait]
impl Provider for KlingProvider {
    async fn submit(&self, task: &Task, cx: &ProviderContext) -> Result<Submission, ProviderError> {
        // A submit that may have reached the upstream before (crash, timeout, 5xx) is adopted.
        if !cx.first_submit {
            if let Some(existing) = self.find_upstream(task).await? {
                if let Some(id) = existing.get("task_id").and_then(Value::as_str) {
                    let followed = self.follow(task.id, false);
                    return Ok(Submission {
                        upstream_task_id: Some(id.to_owned()),
                        first_poll_after: FIRST_POLL.max(self.fair_poll_spacing(followed)),
                    });
                }
            }
        }
        let mut body = self.body(task, cx).await?;
        if let (true, Some(url), Value::Object(fields)) = (
            self.channel.send_callbacks,
            &cx.upstream_callback_url,
            &mut body,
        ) {
            fields.insert("callback_url".into(), json!(url));
        }
        let path = format!("/v1/videos/{}", feature(task.kind));
        match self.call(reqwest::Method::POST, &path, Some(&body)).await {
            Answer::Data(data) => {
                let id = data
                    .get("task_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| transient("create: the answer has no task_id"))?;
                let followed = self.follow(task.id, false);
                Ok(Submission {
                    upstream_task_id: Some(id.to_owned()),
                    first_poll_after: FIRST_POLL.max(self.fair_poll_spacing(followed)),
                })
            }
            other => Err(classify(other, "create")),
        }
    }

    async fn poll(&self, task: &Task, cx: &ProviderContext) -> Result<Progress, ProviderError> {
        let upstream = task
            .upstream_task_id
            .clone()
            .ok_or_else(|| transient("the task has no upstream id yet"))?;
        // A push names the task by both ids; one that does not is not about this task.
        let pushed = cx.pushed.clone().filter(|p| {
            p.get("task_id").and_then(Value::as_str) == Some(upstream.as_str())
                && p["task_info"]["external_task_id"].as_str() == Some(&task.id.to_string())
        });
        let data = match pushed {
            Some(data) => data,
            None => {
                let path = format!("/v1/videos/{}/{upstream}", feature(task.kind));
                let _slot = self
                    .queries
                    .acquire()
                    .await
                    .map_err(|_| transient("the channel is shutting down"))?;
                match self.call(reqwest::Method::GET, &path, None).await {
                    Answer::Data(data) => data,
                    // An upstream that lost a task it accepted may find it again; three
                    // misses in a row end it (§12).
                    Answer::Refused {
                        code: 1203,
                        message,
                        ..
                    } => {
                        return Err(if cx.attempt >= QUERY_MISSES_TO_FAIL {
                            permanent(
                                FailureClass::UpstreamError,
                                format!("the upstream no longer knows the task: {message}"),
                            )
                        } else {
                            transient(format!(
                                "query: the upstream did not find the task: {message}"
                            ))
                        })
                    }
                    other => return Err(classify(other, "query")),
                }
            }
        };
        let progress = self.progress(task, &data, cx).await;
        let ended = matches!(
            progress,
            Ok(Progress::Succeeded { .. } | Progress::Failed { .. })
                | Err(ProviderError::Permanent { .. })
        );
        self.follow(task.id, ended);
        progress
    }

    fn takes_pushes(&self) -> bool {
        self.channel.send_callbacks
    }

    fn next_poll_delay(&self, _task: &Task, age: Duration) -> Duration {
        let followed = self
            .followed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .tasks
            .len()
            .max(1);
        // Growing by half each time: the next interval is half the age, from 5 s to 30 s.
        let schedule = (age / 2).clamp(FIRST_POLL, MAX_POLL_INTERVAL);
        schedule.max(self.fair_poll_spacing(followed))
    }
}

impl KlingProvider {
    /// What an upstream task object says about the task.
    async fn progress(
        &self,
        task: &Task,
        data: &Value,
        cx: &ProviderContext,
    ) -> Result<Progress, ProviderError> {
        match data.get("task_status").and_then(Value::as_str) {
            Some("submitted") => Ok(Progress::Pending),
            Some("processing") => Ok(Progress::Running),
            Some("failed") => {
                let message = data
                    .get("task_status_msg")
                    .and_then(Value::as_str)
                    .filter(|m| !m.is_empty())
                    .unwrap_or("the upstream task failed")
                    .to_owned();
                let class = if message.to_ascii_lowercase().contains("risk") {
                    FailureClass::ContentPolicy
                } else {
                    FailureClass::UpstreamError
                };
                Ok(Progress::Failed { class, message })
            }
            Some("succeed") => self.store_results(task, data, cx).await,
            other => {
                warn!(task = %task.id, status = ?other, "unknown Kling task status; polling on");
                Ok(Progress::Running)
            }
        }
    }
}

impl KlingProvider {
    /// Downloads every result video into the task's outputs; success only once all are stored.
    async fn store_results(
        &self,
        task: &Task,
        data: &Value,
        cx: &ProviderContext,
    ) -> Result<Progress, ProviderError> {
        let videos = data["task_result"]["videos"]
            .as_array()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| transient("the succeeded task lists no videos"))?;
        let video = &videos[0];
        let url = video["url"]
            .as_str()
            .ok_or_else(|| transient("the result video has no URL"))?;
        let bytes = self.download(url).await?;
        let info = kinora_media::video::probe_video("video", &bytes)
            .await
            .map_err(|e| transient(format!("the result video is not a usable MP4: {e}")))?;
        let key = keys::task_output(&task.id, "video.mp4").map_err(|e| transient(e.to_string()))?;
        let stored = cx
            .storage
            .put_bytes(&key, bytes)
            .await
            .map_err(|e| transient(e.to_string()))?;
        let watermark_key = match video["watermark_url"].as_str() {
            Some(marked) => {
                let bytes = self.download(marked).await?;
                let key = keys::task_output(&task.id, "video_watermarked.mp4")
                    .map_err(|e| transient(e.to_string()))?;
                cx.storage
                    .put_bytes(&key, bytes)
                    .await
                    .map_err(|e| transient(e.to_string()))?;
                Some(key.into_string())
            }
            None => None,
        };
        Ok(Progress::Succeeded {
            result: json!({
                "videos": [{
                    "key": stored.key.as_str(),
                    "size": stored.size,
                    "watermark_key": watermark_key,
                    "width": info.width,
                    "height": info.height,
                    "frame_count": (info.duration_ms as f64 * 24.0 / 1000.0).round() as u64,
                    "duration": video["duration"],
                    "has_audio": info.has_audio,
                    "upstream_video_id": video["id"],
                }],
                "upstream": {"task_id": data["task_id"], "final_unit_deduction": data["final_unit_deduction"]},
            }),
        })
    }

    /// A result video, streamed with a size cap; empty or unreadable is a retryable failure.
    async fn download(&self, url: &str) -> Result<Bytes, ProviderError> {
        let mut response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| transient(format!("downloading the result: {e}")))?;
        if !response.status().is_success() {
            return Err(transient(format!(
                "downloading the result: HTTP {}",
                response.status().as_u16()
            )));
        }
        let mut body = BytesMut::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| transient(format!("downloading the result: {e}")))?
        {
            if body.len() + chunk.len() > MAX_RESULT_BYTES {
                return Err(permanent(
                    FailureClass::UpstreamError,
                    "the result video is larger than kinora stores",
                ));
            }
            body.extend_from_slice(&chunk);
        }
        if body.is_empty() {
            return Err(transient("downloading the result: the body was empty"));
        }
        Ok(body.freeze())
    }
}
