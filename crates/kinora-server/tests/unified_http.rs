//! `POST /v1/videos` over real HTTP on loopback against a served kinora: authentication, the
//! error shapes, media staging through the address guard, external ids, and a created task
//! that the built-in engine then renders.

use std::io::Cursor;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use kinora_core::request::GenerationRequest;
use kinora_core::{TaskId, TaskState};
use kinora_server::{auth, Config, Services};
use serde_json::{json, Value};

struct Server {
    base: String,
    key: String,
    services: Arc<Services>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn serve() -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let mut config = Config {
        data_dir: dir.path().join("data"),
        ..Config::default()
    };
    config.server.public_url = base.clone();
    config.queue.poll_interval_ms = 50;
    config.render.threads = 2;
    let services = Services::open(config).await.expect("services");
    let key = auth::bootstrap(&*services.store)
        .await
        .expect("bootstrap")
        .expect("first start")
        .secret;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = services.clone();
    tokio::spawn(async move {
        let _ = kinora_server::serve_on(served, listener, async {
            let _ = stopped.await;
        })
        .await;
    });
    Server {
        base,
        key,
        services,
        stop: Some(stop),
        _dir: dir,
    }
}

impl Server {
    async fn post(&self, key: Option<&str>, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let mut request = reqwest::Client::new()
            .post(format!("{}/v1/videos", self.base))
            .body(body);
        if let Some(key) = key {
            request = request.header("Authorization", format!("Bearer {key}"));
        }
        let response = request.send().await.expect("send");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, key: &str, path: &str) -> (u16, reqwest::header::HeaderMap, Value) {
        let response = reqwest::Client::new()
            .get(format!("{}{path}", self.base))
            .header("Authorization", format!("Bearer {key}"))
            .send()
            .await
            .expect("send");
        let (status, headers) = (response.status().as_u16(), response.headers().clone());
        (
            status,
            headers,
            response.json().await.unwrap_or(Value::Null),
        )
    }

    async fn submit(&self, body: Value) -> (u16, Value) {
        self.post(Some(&self.key), body.to_string()).await
    }
}

fn error_of(body: &Value) -> (&str, Option<&str>) {
    (
        body["error"]["code"].as_str().unwrap_or("<none>"),
        body["error"]["param"].as_str(),
    )
}

fn png_base64(width: u32, height: u32) -> String {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
    });
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("png");
    base64::engine::general_purpose::STANDARD.encode(out.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn authentication_and_error_shapes() {
    let server = serve().await;
    let body = json!({"model": "Kling-V2.6", "prompt": "p"}).to_string();
    let (status, missing) = server.post(None, body.clone()).await;
    assert_eq!(
        (status, error_of(&missing)),
        (401, ("missing_api_key", None))
    );
    assert_eq!(missing["error"]["type"], "authentication_error");
    let (status, invalid) = server.post(Some("kin_notakey"), body).await;
    assert_eq!(
        (status, error_of(&invalid)),
        (401, ("invalid_api_key", None))
    );
    let (status, not_json) = server.post(Some(&server.key), "{not json").await;
    assert_eq!((status, error_of(&not_json)), (400, ("invalid_json", None)));
    let (status, model) = server.submit(json!({"model": "sora", "prompt": "p"})).await;
    assert_eq!(
        (status, error_of(&model)),
        (400, ("invalid_model", Some("model")))
    );
    let response = reqwest::Client::new()
        .get(format!("{}/v1/videos", server.base))
        .send()
        .await
        .expect("get");
    assert_eq!(response.status().as_u16(), 405);
    let body: Value = response.json().await.expect("json");
    assert_eq!(error_of(&body), ("method_not_allowed", None));
    // A body over the limit is refused in this dialect's shape.
    let huge = vec![b' '; kinora_server::unified::http::MAX_BODY_BYTES + 1];
    let (status, too_large) = server.post(Some(&server.key), huge).await;
    assert_eq!(
        (status, error_of(&too_large)),
        (413, ("request_too_large", None))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_created_task_is_pending_then_rendered() {
    let server = serve().await;
    let (status, created) = server
        .submit(json!({"model": "kling-v2-6", "prompt": "a lighthouse at dusk", "seconds": 5, "external_task_id": "order-1", "style": "kept"}))
        .await;
    assert_eq!(status, 200, "{created}");
    let id = created["id"].as_str().expect("id");
    assert!(id.starts_with("task_") && id.len() == 37, "{id}");
    assert_eq!(created["status"], "pending");
    assert_eq!(created["model"], "Kling-V2.6");
    assert_eq!(created["error"], Value::Null);
    assert_eq!(created["external_task_id"], "order-1");
    let at = created["created_at"].as_str().expect("created_at");
    assert!(
        at.len() == 27 && at.ends_with("000Z") && at.as_bytes()[10] == b'T',
        "{at}"
    );

    // The external id is unique per account.
    let (status, again) = server
        .submit(json!({"model": "Kling-V2.6", "prompt": "again", "external_task_id": "order-1"}))
        .await;
    assert_eq!(
        (status, error_of(&again)),
        (
            400,
            ("duplicate_external_task_id", Some("external_task_id"))
        )
    );

    // The stored request is the canonical one, unknown parameters kept; the engine renders it.
    let task_id = TaskId::parse_any(id).expect("task id");
    let account = server
        .services
        .store
        .bootstrap_account()
        .await
        .expect("store")
        .expect("account")
        .id;
    let deadline = Instant::now() + Duration::from_secs(120);
    let task = loop {
        let task = server
            .services
            .store
            .get_task(account, task_id)
            .await
            .expect("store")
            .expect("task");
        if task.state.is_terminal() || Instant::now() > deadline {
            break task;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        task.state,
        TaskState::Succeeded,
        "{:?}",
        task.failure_message
    );
    let request: GenerationRequest = serde_json::from_value(task.request).expect("request");
    assert_eq!(
        (request.duration, request.mode.as_deref()),
        (Some(5), Some("std"))
    );
    assert_eq!(request.extra.get("style"), Some(&json!("kept")));
    assert_eq!(task.model, "kling-v2-6");

    // GET by id and by external id: the completed union shape, URLs served by kinora.
    let (status, headers, done) = server.get(&server.key, &format!("/v1/videos/{id}")).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["status"], "completed");
    assert_eq!(done["id"], id);
    assert_eq!(done["model"], "Kling-V2.6");
    assert_eq!(done["provider"], "local");
    assert_eq!(done["external_task_id"], "order-1");
    assert_eq!(done["error"], Value::Null);
    assert_eq!(done["usage"]["seconds"], 5.0);
    assert_eq!(done["usage"]["duration_seconds"], 5.0);
    assert_eq!(done["usage"]["video_count"], 1);
    assert_eq!(done["usage"]["size"], "1280*720");
    assert_eq!(done["usage"]["total_tokens"], 0);
    assert_eq!(done["data"][0]["width"], 1280);
    assert_eq!(done["data"][0]["height"], 720);
    assert_eq!(done["data"][0]["duration"], 5.0);
    assert_eq!(done["video_url"], done["data"][0]["url"]);
    assert!(done["created"].as_i64().unwrap_or(0) * 1000 <= task.finished_at.unwrap_or(0));
    let engine = headers
        .get("x-kinora-engine")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(engine.contains("not an AI generation"), "{engine}");
    let (status, _, by_external) = server
        .get(&server.key, "/v1/videos/order-1?provider=kling")
        .await;
    assert_eq!((status, &by_external["id"]), (200, &done["id"]));
    let hyphenated = format!("/v1/videos/{task_id}");
    assert_eq!(server.get(&server.key, &hyphenated).await.0, 200);

    // The video downloads from kinora, whole and by ranges.
    let url = done["video_url"].as_str().expect("video_url");
    assert!(
        url.starts_with(&format!("{}/v1/files/", server.base)),
        "{url}"
    );
    let video = reqwest::get(url).await.expect("download");
    assert_eq!(video.status().as_u16(), 200);
    assert_eq!(video.headers()["content-type"], "video/mp4");
    let bytes = video.bytes().await.expect("body");
    let info = kinora_media::video::probe_video("video", &bytes)
        .await
        .expect("probe");
    assert_eq!(
        (info.width, info.height, info.duration_ms),
        (1280, 720, 5000)
    );
    let part = reqwest::Client::new()
        .get(url)
        .header("Range", "bytes=100-199")
        .send()
        .await
        .expect("range");
    assert_eq!(part.status().as_u16(), 206);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 100-199/{}", bytes.len()).as_str()
    );
    assert_eq!(part.bytes().await.expect("part"), bytes.slice(100..200));
    let past = reqwest::Client::new()
        .get(url)
        .header("Range", format!("bytes={}-", bytes.len()))
        .send()
        .await
        .expect("range");
    assert_eq!(past.status().as_u16(), 416);
    let cover = reqwest::get(done["data"][0]["cover_url"].as_str().expect("cover"))
        .await
        .expect("cover");
    assert_eq!(cover.headers()["content-type"], "image/jpeg");
    let tampered = url.replace("video.mp4", "cover.jpg");
    assert_eq!(
        reqwest::get(&tampered)
            .await
            .expect("get")
            .status()
            .as_u16(),
        404
    );

    // Unknown ids, and another account's task, are not found.
    let (status, _, unknown) = server.get(&server.key, "/v1/videos/task_0000").await;
    assert_eq!((status, error_of(&unknown).0), (404, "task_not_found"));
    let other = server
        .services
        .store
        .create_account("b")
        .await
        .expect("account b");
    let other_key = auth::issue_key(&*server.services.store, Some(other.id), "b")
        .await
        .expect("key")
        .secret;
    let (status, _, hidden) = server.get(&other_key, &format!("/v1/videos/{id}")).await;
    assert_eq!((status, error_of(&hidden).0), (404, "task_not_found"));
    assert_eq!(server.get(&other_key, "/v1/videos/order-1").await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn media_inputs_are_staged_through_the_address_guard() {
    let server = serve().await;
    // Base64 image: decoded, probed and stored with the task.
    let (status, created) = server
        .submit(json!({"model": "Kling-V2.6", "image": png_base64(640, 360), "prompt": "waves"}))
        .await;
    assert_eq!(status, 200, "{created}");
    // A loopback URL is refused by the guard and named.
    let (status, refused) = server
        .submit(json!({"model": "Kling-V2.6", "image": "http://127.0.0.1:9/start.png"}))
        .await;
    assert_eq!(
        (status, error_of(&refused).0, error_of(&refused).1),
        (400, "invalid_parameter", Some("image"))
    );
    // An image breaking a rule names the rule.
    let (status, small) = server
        .submit(json!({"model": "Kling-V2.6", "image": png_base64(200, 200)}))
        .await;
    assert_eq!((status, error_of(&small).1), (400, Some("image")));
    assert!(
        small["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("300"),
        "{small}"
    );
    // A mask whose aspect ratio differs from the image's.
    let (status, mask) = server
        .submit(json!({"model": "Kling-V2.6", "image": png_base64(640, 360), "static_mask": png_base64(400, 400)}))
        .await;
    assert_eq!(
        (status, error_of(&mask).1),
        (400, Some("static_mask")),
        "{mask}"
    );
    // Callback URLs pass the same guard at submit.
    for url in [
        "http://169.254.169.254/latest",
        "http://127.0.0.1:8080/hook",
    ] {
        let (status, hook) = server
            .submit(json!({"model": "Kling-V2.6", "prompt": "p", "callback_url": url}))
            .await;
        assert_eq!(
            (status, error_of(&hook)),
            (400, ("invalid_parameter", Some("callback_url"))),
            "{url}: {hook}"
        );
    }
    // Elements: none exist yet, so any id is unknown.
    let (status, element) = server
        .submit(json!({"model": "Kling-Video-O1", "prompt": "<<<element_1>>>", "aspect_ratio": "1:1", "element_list": [{"element_id": 146}]}))
        .await;
    assert_eq!(
        (status, error_of(&element).1),
        (400, Some("element_list[0].element_id"))
    );
}
