//! Tenant isolation across every endpoint of every dialect, over real HTTP on loopback.
//!
//! Account A creates, through the API, a finished task in each dialect (with external ids and
//! callbacks where the dialect has them), a custom element through each element API and a
//! task-based element. Account B then names all of it everywhere it can be named: task ids in
//! every rendering, external ids, element ids, element task ids, video ids for extensions,
//! result and element file URLs. Each answer must be that dialect's "not found" (never 403),
//! lists must not hold A's items, and no answer B gets may carry a signed URL, id or account
//! id of A's that B did not send itself. Finally A still sees all of it, so the checks above
//! fail if the ids were simply wrong.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use common::{fixture_server, official_post, png_base64, png_bytes, serve_with, Server};
use kinora_core::TaskId;
use reqwest::Method;
use serde_json::{json, Value};

mod common;

/// The official dialect's feature paths; every one answers for every task of the account.
const FEATURES: [&str; 6] = [
    "text2video",
    "image2video",
    "omni-video",
    "motion-control",
    "video-extend",
    "multi-image2video",
];
/// Where the official dialect is mounted.
const MOUNTS: [&str; 2] = ["", "/kling"];
const ADVANCED: &str = "/v1/general/advanced-custom-elements";
const ADMIN_TOKEN: &str = "isolation-admin-token-of-forty-characters";

/// Sends one request; returns the status and the body as text.
async fn send(
    server: &Server,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> (u16, String) {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    let client = CLIENT.get_or_init(reqwest::Client::new);
    let mut request = client.request(method, format!("{}{path}", server.base));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.expect("send");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

/// A's request: status and JSON body.
async fn as_a(server: &Server, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let (status, text) = send(server, Some(&server.key), method, path, body.as_ref()).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A callback receiver on loopback that answers 200 to everything.
async fn receiver() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let hits = Arc::new(AtomicUsize::new(0));
    let seen = hits.clone();
    let app = axum::Router::new().fallback(move || {
        let seen = seen.clone();
        async move {
            seen.fetch_add(1, Ordering::SeqCst);
            "ok"
        }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, hits)
}

/// One of A's tasks, in both renderings of its id, with its external id if it has one.
#[derive(Clone, Debug)]
struct ATask {
    hyphen: String,
    unified: String,
    external: Option<String>,
}

impl ATask {
    fn new(any_id: &str, external: Option<&str>) -> Self {
        let id = TaskId::parse_any(any_id).expect("a task id");
        Self {
            hyphen: id.to_string(),
            unified: id.to_unified(),
            external: external.map(str::to_owned),
        }
    }

    /// Every name the query endpoints accept for this task.
    fn names(&self) -> Vec<String> {
        let mut names = vec![self.hyphen.clone(), self.unified.clone()];
        names.extend(self.external.clone());
        names
    }
}

/// One of A's elements: its id and the signed URL of its front view.
#[derive(Debug)]
struct AElement {
    api: &'static str,
    id: i64,
    front: String,
}

/// Everything A made.
struct AThings {
    account: String,
    unified: ATask,
    official: ATask,
    ace: ATask,
    elements: Vec<AElement>,
    /// The creation task of the task-based element, and its external id.
    element_task: ATask,
    /// Every signed file URL any of A's answers carried.
    urls: Vec<String>,
}

impl AThings {
    fn tasks(&self) -> [&ATask; 3] {
        [&self.unified, &self.official, &self.ace]
    }

    /// Every name of every video task, and the element task's ids besides.
    fn task_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.tasks().iter().flat_map(|t| t.names()).collect();
        names.push(self.element_task.hyphen.clone());
        names.push(self.element_task.unified.clone());
        names
    }

    /// Texts no answer to B may contain unless B sent them itself: A's task ids, element ids,
    /// account id, and the paths and signatures of A's signed URLs.
    fn secrets(&self) -> Vec<String> {
        let mut secrets = vec![self.account.clone()];
        for task in self.tasks().into_iter().chain([&self.element_task]) {
            secrets.push(task.hyphen.clone());
            secrets.push(task.unified.clone());
        }
        for element in &self.elements {
            secrets.push(element.id.to_string());
        }
        for url in &self.urls {
            let parsed = url::Url::parse(url).expect("url");
            secrets.push(parsed.path().to_owned());
            secrets.extend(
                parsed
                    .query_pairs()
                    .filter(|(k, _)| k == "signature")
                    .map(|(_, v)| v.into_owned()),
            );
        }
        secrets
    }
}

/// Every string in a JSON value that is one of kinora's file URLs.
fn file_urls(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) if s.contains("/v1/files/") => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|v| file_urls(v, out)),
        Value::Object(map) => map.values().for_each(|v| file_urls(v, out)),
        _ => {}
    }
}

/// Waits until a task ends, through the unified dialect; returns its object there.
async fn finished(server: &Server, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, task) = as_a(server, Method::GET, &format!("/v1/videos/{id}"), None).await;
        assert_eq!(status, 200, "{task}");
        let done = matches!(task["status"].as_str(), Some("completed" | "failed"));
        if done || Instant::now() > deadline {
            assert_eq!(task["status"], "completed", "{task}");
            return task;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until every callback event of a task was delivered; returns how many there are.
async fn callbacks_delivered(server: &Server, task: &ATask, wanted: usize) -> usize {
    let path = format!("/kinora/v1/tasks/{}/callbacks", task.unified);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, listed) = as_a(server, Method::GET, &path, None).await;
        assert_eq!(status, 200, "{listed}");
        let events = listed["data"].as_array().cloned().unwrap_or_default();
        let delivered = events.len() >= wanted && events.iter().all(|e| e["state"] == "delivered");
        if delivered || Instant::now() > deadline {
            assert!(delivered, "{task:?}: {listed}");
            return events.len();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A creates its things through the API and waits for its tasks and their callbacks.
async fn create_a_things(server: &Server, hook: &str) -> AThings {
    let key = server.key.clone();
    let (status, created) = server
        .submit(json!({"model": "kling-v2-6", "prompt": "a lighthouse at dusk", "duration": "5", "external_task_id": "a-unified", "callback_url": hook}))
        .await;
    assert_eq!(status, 200, "{created}");
    let unified = ATask::new(created["id"].as_str().expect("id"), Some("a-unified"));

    let (status, created) = official_post(server, &key, "/v1/videos/text2video", json!({"model_name": "kling-v1", "prompt": "a kite over a beach", "duration": "5", "external_task_id": "a-official", "callback_url": hook})).await;
    assert_eq!(status, 200, "{created}");
    let official = ATask::new(
        created["data"]["task_id"].as_str().expect("task_id"),
        Some("a-official"),
    );

    let (status, created) = official_post(server, &key, "/kling/videos", json!({"action": "text2video", "prompt": "a mug on a marble counter", "async": true, "callback_url": hook})).await;
    assert_eq!(status, 200, "{created}");
    let ace = ATask::new(created["task_id"].as_str().expect("task_id"), None);

    // Elements, one through each API, while the tasks render.
    let mut urls = Vec::new();
    let mut elements = Vec::new();
    let (status, created) = as_a(
        server,
        Method::POST,
        "/v1/elements/custom",
        Some(json!({
            "element_name": "A fox",
            "element_description": "A small red fox",
            "element_frontal_image": png_base64(640, 640),
            "element_refer_list": [{"image_url": png_base64(500, 500)}],
            "tag_list": [{"tag_id": "o_103"}],
        })),
    )
    .await;
    assert_eq!(
        (status, created["code"].as_i64()),
        (200, Some(0)),
        "{created}"
    );
    file_urls(&created, &mut urls);
    elements.push(AElement {
        api: "unified",
        id: created["data"]["element_id"].as_i64().expect("element_id"),
        front: created["data"]["element_frontal_image"]
            .as_str()
            .expect("front")
            .to_owned(),
    });
    let (status, created) = official_post(
        server,
        &key,
        "/v1/general/custom-elements",
        json!({
            "element_name": "A official kite",
            "element_description": "A red kite with a long tail",
            "element_frontal_image": png_base64(600, 600),
            "element_refer_list": [{"image_url": png_base64(400, 400)}],
        }),
    )
    .await;
    assert_eq!(
        (status, created["code"].as_i64()),
        (200, Some(0)),
        "{created}"
    );
    file_urls(&created, &mut urls);
    elements.push(AElement {
        api: "official",
        id: created["data"]["element_id"].as_i64().expect("element_id"),
        front: created["data"]["element_frontal_image"]
            .as_str()
            .expect("front")
            .to_owned(),
    });
    let (status, created) = official_post(
        server,
        &key,
        ADVANCED,
        json!({
            "element_name": "A paper crane",
            "element_description": "A folded paper crane",
            "reference_type": "image_refer",
            "element_image_list": {"frontal_image": png_base64(500, 500), "refer_images": [{"image_url": png_base64(400, 400)}]},
            "tag_list": [{"tag_id": "o_104"}],
            "external_task_id": "a-element-task",
        }),
    )
    .await;
    assert_eq!(
        (status, created["data"]["task_status"].as_str()),
        (200, Some("succeed")),
        "{created}"
    );
    let element_task = ATask::new(
        created["data"]["task_id"].as_str().expect("task_id"),
        Some("a-element-task"),
    );
    let (status, task) = as_a(
        server,
        Method::GET,
        &format!("{ADVANCED}/{}", element_task.hyphen),
        None,
    )
    .await;
    assert_eq!(status, 200, "{task}");
    file_urls(&task, &mut urls);
    let element = &task["data"]["task_result"]["elements"][0];
    elements.push(AElement {
        api: "advanced",
        id: element["element_id"].as_i64().expect("element_id"),
        front: element["element_image_list"]["frontal_image"]
            .as_str()
            .expect("front")
            .to_owned(),
    });

    // The tasks end; each dialect's view of them hands out signed URLs.
    for task in [&unified, &official, &ace] {
        let done = finished(server, &task.unified).await;
        file_urls(&done, &mut urls);
        let (status, body) = as_a(
            server,
            Method::GET,
            &format!("/v1/videos/text2video/{}", task.hyphen),
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        file_urls(&body, &mut urls);
        let (status, record) = as_a(
            server,
            Method::POST,
            "/kling/tasks",
            Some(json!({"action": "retrieve", "id": task.hyphen})),
        )
        .await;
        assert_eq!(
            (status, &record["id"]),
            (200, &json!(task.hyphen)),
            "{record}"
        );
        file_urls(&record, &mut urls);
    }
    // Unified and official tasks call back on every change, AceData's once at the end.
    assert_eq!(callbacks_delivered(server, &unified, 2).await, 2);
    assert_eq!(callbacks_delivered(server, &official, 2).await, 2);
    assert_eq!(callbacks_delivered(server, &ace, 1).await, 1);
    urls.sort();
    urls.dedup();
    // Two outputs (video and cover) of three tasks, and at least one image per element.
    assert!(urls.len() >= 6 + 3, "{urls:#?}");

    AThings {
        account: server.account().await.to_string(),
        unified,
        official,
        ace,
        elements,
        element_task,
        urls,
    }
}

/// One request B made, and its answer.
struct Exchange {
    label: String,
    sent: String,
    status: u16,
    answer: String,
}

/// Account B, keeping every exchange for the final leak check.
struct Intruder<'a> {
    server: &'a Server,
    key: String,
    log: Vec<Exchange>,
}

impl Intruder<'_> {
    /// A request with B's key (or none); refuses any 403 on the spot.
    async fn call_with(
        &mut self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let (status, answer) = send(self.server, token, method.clone(), path, body.as_ref()).await;
        let sent = format!(
            "{path} {}",
            body.as_ref().map(Value::to_string).unwrap_or_default()
        );
        let label: String = format!("B {method} {sent}").chars().take(300).collect();
        assert_ne!(
            status, 403,
            "{label}: another account's thing is not found, never forbidden: {answer}"
        );
        let value = serde_json::from_str(&answer).unwrap_or(Value::Null);
        self.log.push(Exchange {
            label,
            sent,
            status,
            answer,
        });
        (status, value)
    }

    async fn get(&mut self, path: &str) -> (u16, Value) {
        let key = self.key.clone();
        self.call_with(Some(&key), Method::GET, path, None).await
    }

    async fn post(&mut self, path: &str, body: Value) -> (u16, Value) {
        let key = self.key.clone();
        self.call_with(Some(&key), Method::POST, path, Some(body))
            .await
    }

    async fn delete(&mut self, path: &str) -> (u16, Value) {
        let key = self.key.clone();
        self.call_with(Some(&key), Method::DELETE, path, None).await
    }

    fn last(&self) -> &str {
        self.log.last().map_or("", |e| e.label.as_str())
    }

    /// No answer carries one of A's secrets that its request did not already hold.
    fn assert_nothing_leaked(&self, secrets: &[String]) {
        assert!(
            self.log.len() > 500,
            "only {} requests made",
            self.log.len()
        );
        for exchange in &self.log {
            for secret in secrets {
                if !exchange.sent.contains(secret.as_str()) {
                    assert!(
                        !exchange.answer.contains(secret.as_str()),
                        "{} (HTTP {}) leaks `{secret}`: {}",
                        exchange.label,
                        exchange.status,
                        exchange.answer
                    );
                }
            }
        }
    }
}

fn unified_error(body: &Value) -> (&str, &str, Option<&str>) {
    (
        body["error"]["type"].as_str().unwrap_or("<none>"),
        body["error"]["code"].as_str().unwrap_or("<none>"),
        body["error"]["param"].as_str(),
    )
}

fn official_error(body: &Value) -> (Option<i64>, &str) {
    (
        body["code"].as_i64(),
        body["message"].as_str().unwrap_or("<none>"),
    )
}

fn ace_error(body: &Value) -> (&Value, Option<&str>, Option<&str>) {
    (
        &body["success"],
        body["error"]["code"].as_str(),
        body["error"]["message"].as_str(),
    )
}

/// GET, list and callbacks of A's tasks, in every dialect and under every name.
async fn tasks_are_not_found(b: &mut Intruder<'_>, a: &AThings) {
    let names = a.task_names();
    for name in &names {
        // Unified: by id in either rendering, by external id, with the provider hint.
        for path in [
            format!("/v1/videos/{name}"),
            format!("/v1/videos/{name}?provider=kling"),
        ] {
            let (status, body) = b.get(&path).await;
            assert_eq!(
                (status, unified_error(&body)),
                (404, ("not_found_error", "task_not_found", None)),
                "{}: {body}",
                b.last()
            );
        }
        // Callbacks of the task.
        let (status, body) = b.get(&format!("/kinora/v1/tasks/{name}/callbacks")).await;
        assert_eq!(
            (status, unified_error(&body).1),
            (404, "task_not_found"),
            "{}: {body}",
            b.last()
        );
        // Official: every feature path and mount, path and collection forms.
        for mount in MOUNTS {
            for feature in FEATURES {
                let collection = format!("{mount}/v1/videos/{feature}");
                for path in [
                    format!("{collection}/{name}"),
                    format!("{collection}/{name}?external_task_id=true"),
                    format!("{collection}?external_task_id={name}"),
                    format!("{collection}?task_id={name}&pageNum=1"),
                ] {
                    let (status, body) = b.get(&path).await;
                    assert_eq!(
                        (status, official_error(&body)),
                        (404, (Some(1203), "task not found")),
                        "{}: {body}",
                        b.last()
                    );
                    assert!(body.get("data").is_none(), "{body}");
                }
            }
        }
        // AceData: an unknown id is an empty object, in each spelling of the request.
        for body in [
            json!({"action": "retrieve", "id": name}),
            json!({"id": name}),
            json!({"action": "retrieve", "task_id": name}),
        ] {
            let (status, record) = b.post("/kling/tasks", body).await;
            assert_eq!((status, &record), (200, &json!({})), "{}", b.last());
        }
    }
    let (status, batch) = b
        .post(
            "/kling/tasks",
            json!({"action": "retrieve_batch", "ids": names}),
        )
        .await;
    assert_eq!(
        (status, batch),
        (200, json!({"items": [], "count": 0})),
        "{}",
        b.last()
    );

    // Lists hold nothing of A's (B has nothing yet).
    let (status, listed) = b.get("/kinora/v1/videos?page_size=500").await;
    assert_eq!((status, &listed["data"]), (200, &json!([])), "{listed}");
    for mount in MOUNTS {
        for feature in FEATURES {
            let (status, listed) = b
                .get(&format!(
                    "{mount}/v1/videos/{feature}?pageNum=1&pageSize=500"
                ))
                .await;
            assert_eq!(
                (status, listed["code"].as_i64(), &listed["data"]),
                (200, Some(0), &json!([])),
                "{}: {listed}",
                b.last()
            );
        }
    }

    // Deleting a task is no method of either dialect, for B as for anyone.
    let (status, body) = b.delete(&format!("/v1/videos/{}", a.unified.unified)).await;
    assert_eq!(
        (status, unified_error(&body).1),
        (405, "method_not_allowed"),
        "{body}"
    );
    for mount in MOUNTS {
        let (status, body) = b
            .delete(&format!(
                "{mount}/v1/videos/text2video/{}",
                a.official.hyphen
            ))
            .await;
        assert_eq!((status, body["code"].as_i64()), (404, Some(1202)), "{body}");
    }

    // An upstream push for A's task without the token kinora gave out is an unknown task.
    for token in ["", "?token=00", "?token=deadbeefdeadbeefdeadbeefdeadbeef"] {
        let path = format!("/kinora/v1/upstream/tasks/{}{token}", a.official.hyphen);
        let (status, body) = b
            .post(
                &path,
                json!({"task_id": a.official.hyphen, "task_status": "failed", "task_status_msg": "forged", "task_info": {"external_task_id": a.official.hyphen}}),
            )
            .await;
        assert_eq!(
            (status, &body),
            (404, &json!({"error": {"message": "unknown task"}})),
            "{}",
            b.last()
        );
    }

    // Metrics are per channel, never per account (the final leak check reads them too).
    let (status, _) = b.get("/metrics").await;
    assert_eq!(status, 200, "{}", b.last());

    // The admin API is the operator's: B's API key opens none of it.
    for path in [
        format!("/kinora/admin/v1/accounts/{}", a.account),
        format!("/kinora/admin/v1/accounts/{}/ledger", a.account),
        format!("/kinora/admin/v1/accounts/{}/keys", a.account),
        "/kinora/admin/v1/accounts".to_owned(),
    ] {
        let (status, body) = b.get(&path).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (401, Some("unauthorized")),
            "{}: {body}",
            b.last()
        );
    }
}

/// B cannot extend A's videos, nor wait on them through a blocking AceData request.
async fn videos_cannot_be_extended(b: &mut Intruder<'_>, a: &AThings) {
    let video_ids: Vec<String> = a
        .tasks()
        .iter()
        .flat_map(|t| [t.hyphen.clone(), t.unified.clone()])
        .collect();
    for video_id in &video_ids {
        for mount in MOUNTS {
            let (status, body) = b
                .post(
                    &format!("{mount}/v1/videos/video-extend"),
                    json!({"video_id": video_id, "prompt": "and on"}),
                )
                .await;
            assert_eq!(
                (status, official_error(&body)),
                (400, (Some(1201), "video_id is invalid")),
                "{}: {body}",
                b.last()
            );
        }
        let (status, body) = b
            .post(
                "/kling/videos",
                json!({"action": "extend", "video_id": video_id, "async": true}),
            )
            .await;
        assert_eq!(
            (status, ace_error(&body)),
            (
                400,
                (
                    &json!(false),
                    Some("bad_request"),
                    Some("video_id is invalid")
                )
            ),
            "{}: {body}",
            b.last()
        );
    }
    // Blocking: refused at once, never held open on A's task.
    let started = Instant::now();
    let (status, body) = b
        .post(
            "/kling/videos",
            json!({"action": "extend", "video_id": a.ace.hyphen, "timeout": 30}),
        )
        .await;
    assert_eq!(
        (status, ace_error(&body).2),
        (400, Some("video_id is invalid")),
        "{body}"
    );
    assert!(body.get("task_id").is_none(), "{body}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// B cannot list, delete or use A's elements, nor read their creation tasks.
async fn elements_are_not_found(b: &mut Intruder<'_>, a: &AThings) {
    // Lists: the custom ones are empty, the preset ones hold only presets.
    let (status, mine) = b.get("/v1/elements/custom?page_size=500").await;
    assert_eq!((status, &mine["data"]), (200, &json!([])), "{mine}");
    let (status, presets) = b.get("/v1/elements/presets?page_size=500").await;
    assert_eq!(status, 200, "{presets}");
    let presets = presets["data"].as_array().cloned().unwrap_or_default();
    assert!(presets.len() >= 8, "{presets:?}");
    assert!(presets.iter().all(|e| e["owned_by"] == "kling"));
    for mount in MOUNTS {
        for path in [
            format!("{mount}/v1/general/custom-elements?pageNum=1&pageSize=500"),
            format!("{mount}{ADVANCED}?pageNum=1&pageSize=500"),
        ] {
            let (status, listed) = b.get(&path).await;
            assert_eq!(
                (status, &listed["data"]),
                (200, &json!([])),
                "{}: {listed}",
                b.last()
            );
        }
        let (status, presets) = b
            .get(&format!("{mount}/v1/general/presets-elements?pageSize=500"))
            .await;
        assert_eq!(status, 200, "{presets}");
        assert!(presets["data"]
            .as_array()
            .is_some_and(|l| l.len() >= 8 && l.iter().all(|e| e["owned_by"] == "kling")));
        let (status, presets) = b
            .get(&format!(
                "{mount}/v1/general/advanced-presets-elements?pageSize=500"
            ))
            .await;
        assert_eq!(status, 200, "{presets}");
        assert!(presets["data"].as_array().is_some_and(|l| l.len() >= 8
            && l.iter()
                .all(|t| t["task_result"]["elements"][0]["owned_by"] == "kling")));
    }

    // The task-based element's creation task, under every name and form.
    let task = &a.element_task;
    for mount in MOUNTS {
        let base = format!("{mount}{ADVANCED}");
        let mut paths = vec![
            format!("{base}/{}", task.hyphen),
            format!("{base}/{}", task.unified),
            format!("{base}/a-element-task"),
            format!("{base}/a-element-task?external_task_id=true"),
            format!("{base}?external_task_id=a-element-task"),
            format!("{base}?task_id={}", task.hyphen),
            format!("{base}?task_id=a-element-task"),
        ];
        paths.extend(a.elements.iter().map(|e| format!("{base}/{}", e.id)));
        for path in paths {
            let (status, body) = b.get(&path).await;
            assert_eq!(
                (status, official_error(&body)),
                (404, (Some(1203), "task not found")),
                "{}: {body}",
                b.last()
            );
        }
        let (status, body) = b.delete(&format!("{base}/{}", task.hyphen)).await;
        assert_eq!((status, body["code"].as_i64()), (404, Some(1202)), "{body}");
    }

    for element in &a.elements {
        let id = element.id;
        let what = element.api;
        // Deleting, in both dialects, the id as a string and as an integer.
        for value in [json!(id.to_string()), json!(id)] {
            let (status, body) = b
                .post("/v1/elements/delete", json!({"element_id": value}))
                .await;
            assert_eq!(
                (status, unified_error(&body)),
                (404, ("not_found_error", "element_not_found", None)),
                "{what}: {body}"
            );
            for mount in MOUNTS {
                let (status, body) = b
                    .post(
                        &format!("{mount}/v1/general/delete-elements"),
                        json!({"element_id": value}),
                    )
                    .await;
                assert_eq!(
                    (status, official_error(&body)),
                    (404, (Some(1203), "element not found")),
                    "{what}: {body}"
                );
            }
        }

        // Using it in a request: refused as an element that does not exist.
        let unknown =
            format!("no element {id} exists among the presets and this account's elements");
        let (status, body) = b
            .post(
                "/v1/videos",
                json!({"model": "Kling-Video-O1", "prompt": "<<<element_1>>> walks", "aspect_ratio": "1:1", "seconds": "3", "element_list": [{"element_id": id.to_string()}]}),
            )
            .await;
        assert_eq!(
            (status, unified_error(&body)),
            (
                400,
                (
                    "invalid_request_error",
                    "invalid_parameter",
                    Some("element_list[0].element_id")
                )
            ),
            "{what}: {body}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(&unknown)),
            "{body}"
        );
        let (status, body) = b
            .post(
                "/v1/videos",
                json!({"model": "Kling-Video-O1", "prompt": "<<<element_1>>> meets <<<element_2>>>", "aspect_ratio": "1:1", "element_list": [{"element_id": 146}, {"element_id": id}]}),
            )
            .await;
        assert_eq!(
            (status, unified_error(&body).2),
            (400, Some("element_list[1].element_id")),
            "{what}: {body}"
        );
        for mount in MOUNTS {
            for (feature, request) in [
                (
                    "omni-video",
                    json!({"prompt": "<<<element_1>>> walks", "aspect_ratio": "16:9", "element_list": [{"element_id": id}]}),
                ),
                (
                    "image2video",
                    json!({"model_name": "kling-v3", "image": png_base64(640, 360), "duration": "3", "element_list": [{"element_id": id.to_string()}]}),
                ),
            ] {
                let (status, body) = b
                    .post(&format!("{mount}/v1/videos/{feature}"), request)
                    .await;
                let (code, message) = official_error(&body);
                assert_eq!(
                    (status, code),
                    (400, Some(1201)),
                    "{what} {feature}: {body}"
                );
                assert!(
                    message.contains("element_list[0].element_id") && message.contains(&unknown),
                    "{what} {feature}: {body}"
                );
            }
        }
        let (status, body) = b
            .post(
                "/kling/videos",
                json!({"action": "text2video", "model": "kling-o1", "prompt": "<<<element_1>>> walks", "aspect_ratio": "1:1", "element_list": [{"element_id": id}], "async": true}),
            )
            .await;
        let (success, code, message) = ace_error(&body);
        assert_eq!(
            (status, success, code),
            (400, &json!(false), Some("bad_request")),
            "{what}: {body}"
        );
        assert!(
            message
                .is_some_and(|m| m.contains("element_list[0].element_id") && m.contains(&unknown)),
            "{what}: {body}"
        );
        assert!(body.get("task_id").is_none(), "{body}");
    }
}

/// Result and element files: B gets no signed URL of A's anywhere (checked over every answer at
/// the end), and URLs without A's signature are refused, with or without B's key.
async fn files_are_refused(b: &mut Intruder<'_>, a: &AThings, pictures: &str) {
    let not_found = json!({"error": {"code": "not_found", "message": "no such file, or the link has expired", "type": "invalid_request_error", "param": null}});
    let video = a
        .urls
        .iter()
        .find(|u| u.contains(&format!("/v1/files/{}/video.mp4", a.unified.hyphen)))
        .expect("A's unified video URL")
        .clone();
    let parsed = url::Url::parse(&video).expect("url");
    let query = |name: &str| {
        parsed
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .expect("query parameter")
    };
    let (expires, signature) = (query("expires"), query("signature"));
    let flipped = {
        let mut chars: Vec<char> = signature.chars().collect();
        if let Some(last) = chars.last_mut() {
            *last = if *last == '0' { '1' } else { '0' };
        }
        chars.into_iter().collect::<String>()
    };
    let later: i64 = expires.parse::<i64>().expect("expires") + 1;
    let mut paths = Vec::new();
    for task in a.tasks() {
        for name in ["video.mp4", "cover.jpg", "video_watermarked.mp4"] {
            let file = format!("/v1/files/{}/{name}", task.hyphen);
            paths.push(file.clone());
            paths.push(format!("{file}?expires={expires}"));
            paths.push(format!("{file}?signature={signature}"));
            paths.push(format!("{file}?expires={expires}&signature="));
            paths.push(format!("{file}?expires={expires}&signature={flipped}"));
            paths.push(format!("/v1/files/{}/{name}", task.unified));
        }
        // The unified video's signature on the other tasks' outputs.
        if task.hyphen != a.unified.hyphen {
            paths.push(format!(
                "/v1/files/{}/video.mp4?expires={expires}&signature={signature}",
                task.hyphen
            ));
        }
    }
    let own = format!("/v1/files/{}/", a.unified.hyphen);
    paths.push(format!(
        "{own}cover.jpg?expires={expires}&signature={signature}"
    ));
    paths.push(format!(
        "{own}video.mp4?expires={later}&signature={signature}"
    ));
    // Element images: no signature, a tampered one, another element's.
    let signatures: Vec<String> = a
        .elements
        .iter()
        .map(|e| {
            url::Url::parse(&e.front)
                .expect("front url")
                .query_pairs()
                .find(|(k, _)| k == "signature")
                .map(|(_, v)| v.into_owned())
                .expect("element signature")
        })
        .collect();
    for (i, element) in a.elements.iter().enumerate() {
        let path = url::Url::parse(&element.front)
            .expect("front url")
            .path()
            .to_owned();
        let other = &signatures[(i + 1) % signatures.len()];
        paths.push(path.clone());
        paths.push(format!("{path}?signature="));
        paths.push(format!("{path}?signature={other}"));
        paths.push(format!("{path}?signature={}0", signatures[i]));
        for name in ["front.jpg", "front.png", "refer_1.jpg", "refer_1.png"] {
            paths.push(format!("/v1/files/elements/{}/{name}", element.id));
        }
    }
    let key = b.key.clone();
    for path in &paths {
        for token in [Some(key.as_str()), None] {
            let (status, body) = b.call_with(token, Method::GET, path, None).await;
            assert_eq!((status, &body), (404, &not_found), "{}", b.last());
        }
    }

    // Nor can B have kinora fetch them for it as inputs of its own requests.
    let unsigned_video = format!("{}/v1/files/{}/video.mp4", b.server.base, a.official.hyphen);
    let unsigned_front = format!(
        "{}{}",
        b.server.base,
        url::Url::parse(&a.elements[0].front)
            .expect("front url")
            .path()
    );
    let (status, body) = b
        .post(
            "/kling/motion",
            json!({"image_url": format!("{pictures}/person.png"), "video_url": unsigned_video, "character_orientation": "video", "mode": "std", "async": true}),
        )
        .await;
    let (_, code, message) = ace_error(&body);
    assert_eq!((status, code), (400, Some("bad_request")), "{body}");
    assert!(message.is_some_and(|m| m.contains("video_url")), "{body}");
    let (status, body) = b
        .post(
            "/v1/videos",
            json!({"model": "Kling-V2.6", "prompt": "p", "image": unsigned_front}),
        )
        .await;
    assert_eq!(
        (status, unified_error(&body).2),
        (400, Some("image")),
        "{body}"
    );
    let (status, body) = b
        .post(
            "/v1/videos/image2video",
            json!({"image": unsigned_front, "prompt": "p"}),
        )
        .await;
    assert_eq!((status, body["code"].as_i64()), (400, Some(1201)), "{body}");
}

/// B may reuse A's external ids (they are per account), and then finds only its own things.
async fn external_ids_are_per_account(b: &mut Intruder<'_>, a: &AThings) -> (ATask, ATask) {
    let (status, created) = b
        .post(
            "/v1/videos",
            json!({"model": "Kling-Video-O1", "prompt": "b's own clip", "aspect_ratio": "1:1", "seconds": "5", "external_task_id": "a-unified"}),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let mine = ATask::new(created["id"].as_str().expect("id"), Some("a-unified"));
    let (status, created) = b
        .post(
            ADVANCED,
            json!({
                "element_name": "B's crane",
                "element_description": "Another folded crane",
                "reference_type": "image_refer",
                "element_image_list": {"frontal_image": png_base64(450, 450), "refer_images": [{"image_url": png_base64(400, 400)}]},
                "external_task_id": "a-element-task",
            }),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let my_element = ATask::new(
        created["data"]["task_id"].as_str().expect("task_id"),
        Some("a-element-task"),
    );
    assert_ne!(my_element.hyphen, a.element_task.hyphen);

    let (status, found) = b.get("/v1/videos/a-unified").await;
    assert_eq!(
        (status, &found["id"]),
        (200, &json!(mine.unified)),
        "{found}"
    );
    for mount in MOUNTS {
        for path in [
            format!("{mount}/v1/videos/text2video/a-unified"),
            format!("{mount}/v1/videos/omni-video?external_task_id=a-unified"),
        ] {
            let (status, found) = b.get(&path).await;
            assert_eq!(
                (status, &found["data"]["task_id"]),
                (200, &json!(mine.hyphen)),
                "{found}"
            );
        }
        let (status, found) = b.get(&format!("{mount}{ADVANCED}/a-element-task")).await;
        assert_eq!(
            (status, &found["data"]["task_id"]),
            (200, &json!(my_element.hyphen)),
            "{found}"
        );
        let (status, listed) = b.get(&format!("{mount}{ADVANCED}")).await;
        assert_eq!(status, 200, "{listed}");
        let ids: Vec<&Value> = listed["data"]
            .as_array()
            .expect("array")
            .iter()
            .map(|t| &t["task_id"])
            .collect();
        assert_eq!(ids, [&json!(my_element.hyphen)], "{listed}");
    }
    let (status, record) = b
        .post(
            "/kling/tasks",
            json!({"action": "retrieve", "id": "a-unified"}),
        )
        .await;
    assert_eq!(
        (status, &record["id"]),
        (200, &json!(mine.hyphen)),
        "{record}"
    );
    // B's lists hold exactly B's things; a batch of everyone's ids finds only B's task.
    let (_, listed) = b.get("/kinora/v1/videos").await;
    let ids: Vec<&Value> = listed["data"]
        .as_array()
        .expect("array")
        .iter()
        .map(|t| &t["id"])
        .collect();
    assert_eq!(ids, [&json!(mine.unified)], "{listed}");
    let (_, listed) = b.get("/v1/elements/custom").await;
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1), "{listed}");
    // (Not `a-unified`: that name is B's own task now.)
    let mut ids: Vec<String> = a
        .task_names()
        .into_iter()
        .filter(|name| name != "a-unified")
        .collect();
    ids.push(mine.hyphen.clone());
    let (status, batch) = b
        .post(
            "/kling/tasks",
            json!({"action": "retrieve_batch", "ids": ids}),
        )
        .await;
    assert_eq!((status, &batch["count"]), (200, &json!(1)), "{batch}");
    assert_eq!(batch["items"][0]["id"], json!(mine.hyphen));
    (mine, my_element)
}

/// A still sees, lists, downloads and uses all its own things; B's attempts changed nothing.
async fn a_still_has_everything(server: &Server, a: &AThings, b_things: &(ATask, ATask)) {
    for task in a.tasks() {
        for name in task.names() {
            let (status, found) =
                as_a(server, Method::GET, &format!("/v1/videos/{name}"), None).await;
            assert_eq!(
                (status, &found["id"], &found["status"]),
                (200, &json!(task.unified), &json!("completed")),
                "{name}: {found}"
            );
            for mount in MOUNTS {
                for path in [
                    format!("{mount}/v1/videos/video-extend/{name}"),
                    format!("{mount}/v1/videos/multi-image2video?task_id={name}"),
                ] {
                    let (status, found) = as_a(server, Method::GET, &path, None).await;
                    assert_eq!(
                        (
                            status,
                            &found["data"]["task_id"],
                            &found["data"]["task_status"]
                        ),
                        (200, &json!(task.hyphen), &json!("succeed")),
                        "{path}: {found}"
                    );
                }
            }
            let (status, record) = as_a(
                server,
                Method::POST,
                "/kling/tasks",
                Some(json!({"id": name})),
            )
            .await;
            assert_eq!(
                (status, &record["id"]),
                (200, &json!(task.hyphen)),
                "{record}"
            );
            assert_eq!(record["user_id"], json!(a.account));
        }
        for id in [&task.hyphen, &task.unified] {
            let (status, listed) = as_a(
                server,
                Method::GET,
                &format!("/kinora/v1/tasks/{id}/callbacks"),
                None,
            )
            .await;
            assert_eq!(status, 200, "{listed}");
            assert!(
                listed["data"].as_array().is_some_and(|e| !e.is_empty()),
                "{listed}"
            );
        }
    }
    let (_, listed) = as_a(server, Method::GET, "/kinora/v1/videos", None).await;
    let ids: Vec<&Value> = listed["data"]
        .as_array()
        .expect("array")
        .iter()
        .map(|t| &t["id"])
        .collect();
    for task in a.tasks() {
        assert!(ids.contains(&&json!(task.unified)), "{listed}");
    }
    assert!(!ids.contains(&&json!(b_things.0.unified)), "{listed}");
    let (_, listed) = as_a(server, Method::GET, "/v1/videos/text2video", None).await;
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(3), "{listed}");
    let (status, batch) = as_a(
        server,
        Method::POST,
        "/kling/tasks",
        Some(json!({"action": "retrieve_batch", "ids": [a.unified.hyphen, a.official.hyphen, a.ace.hyphen, b_things.0.hyphen]})),
    )
    .await;
    assert_eq!((status, &batch["count"]), (200, &json!(3)), "{batch}");
    // The external ids B reused are still A's for A.
    let (_, found) = as_a(server, Method::GET, "/v1/videos/a-unified", None).await;
    assert_eq!(found["id"], json!(a.unified.unified));
    let (_, found) = as_a(
        server,
        Method::GET,
        &format!("{ADVANCED}?external_task_id=a-element-task"),
        None,
    )
    .await;
    assert_eq!(found["data"]["task_id"], json!(a.element_task.hyphen));

    // Every element survived B's deletes, in every list, with its images.
    let element_ids: Vec<i64> = a.elements.iter().map(|e| e.id).collect();
    for path in [
        "/v1/elements/custom",
        "/v1/general/custom-elements",
        "/kling/v1/general/custom-elements",
    ] {
        let (_, listed) = as_a(server, Method::GET, path, None).await;
        let mut listed: Vec<i64> = listed["data"]
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|e| e["element_id"].as_i64())
            .collect();
        listed.sort_unstable();
        let mut wanted = element_ids.clone();
        wanted.sort_unstable();
        assert_eq!(listed, wanted, "{path}");
    }
    for path in [
        format!("{ADVANCED}/{}", a.element_task.hyphen),
        format!("/kling{ADVANCED}/a-element-task?external_task_id=true"),
    ] {
        let (status, found) = as_a(server, Method::GET, &path, None).await;
        assert_eq!(
            (
                status,
                &found["data"]["task_result"]["elements"][0]["element_id"]
            ),
            (200, &json!(a.elements[2].id)),
            "{found}"
        );
    }
    for url in &a.urls {
        let response = reqwest::get(url).await.expect("get");
        assert_eq!(response.status().as_u16(), 200, "{url}");
    }

    // The same requests B was refused are accepted for A: its elements in an omni request, its
    // videos extended in both dialects that extend.
    let (status, created) = server
        .submit(json!({"model": "Kling-Video-O1", "prompt": "<<<element_1>>>, <<<element_2>>> and <<<element_3>>>", "aspect_ratio": "1:1", "seconds": "3", "element_list": element_ids.iter().map(|id| json!({"element_id": id})).collect::<Vec<_>>()}))
        .await;
    assert_eq!(status, 200, "{created}");
    let (status, created) = official_post(
        server,
        &server.key,
        "/v1/videos/video-extend",
        json!({"video_id": a.official.hyphen}),
    )
    .await;
    assert_eq!(
        (status, created["data"]["task_status"].as_str()),
        (200, Some("submitted")),
        "{created}"
    );
    let (status, created) = official_post(
        server,
        &server.key,
        "/kling/videos",
        json!({"action": "extend", "video_id": a.ace.hyphen, "async": true}),
    )
    .await;
    assert_eq!(
        (status, &created["success"]),
        (200, &json!(true)),
        "{created}"
    );
    // A's own element deletes work (so B's were refused for the right reason).
    let (status, deleted) = as_a(
        server,
        Method::POST,
        "/v1/elements/delete",
        Some(json!({"element_id": a.elements[0].id})),
    )
    .await;
    assert_eq!(
        (status, &deleted["data"]["task_status"]),
        (200, &json!("succeed")),
        "{deleted}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_account_cannot_see_list_wait_on_download_or_delete_anything() {
    let (hook, hits) = receiver().await;
    let pictures = fixture_server(png_bytes(640, 640), "image/png").await;
    let server = serve_with(|config| {
        config.fetch.allow = vec!["127.0.0.1".into()];
        config.admin.token = ADMIN_TOKEN.into();
    })
    .await;
    let a = create_a_things(&server, &hook).await;
    let callbacks_before = hits.load(Ordering::SeqCst);
    assert_eq!(callbacks_before, 5);

    let mut b = Intruder {
        server: &server,
        key: server.other_account_key().await,
        log: Vec::new(),
    };
    tasks_are_not_found(&mut b, &a).await;
    videos_cannot_be_extended(&mut b, &a).await;
    elements_are_not_found(&mut b, &a).await;
    files_are_refused(&mut b, &a, &pictures).await;
    let b_things = external_ids_are_per_account(&mut b, &a).await;
    b.assert_nothing_leaked(&a.secrets());
    // None of B's requests made A's tasks call back again.
    assert_eq!(hits.load(Ordering::SeqCst), callbacks_before);

    a_still_has_everything(&server, &a, &b_things).await;
}
