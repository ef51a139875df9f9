//! `POST /v1/videos` over real HTTP on loopback against a served kinora: authentication, the
//! error shapes, media staging through the address guard, external ids, and a created task
//! that the built-in engine then renders.

use std::time::{Duration, Instant};

use common::{
    fixture_server, png_base64, png_bytes, rehost, seed_media_server, serve, serve_with, Server,
};
use kinora_core::request::GenerationRequest;
use kinora_core::{TaskId, TaskState};
use kinora_server::auth;
use serde_json::{json, Value};

mod common;

fn error_of(body: &Value) -> (&str, Option<&str>) {
    (
        body["error"]["code"].as_str().unwrap_or("<none>"),
        body["error"]["param"].as_str(),
    )
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
    let account = server.account().await;
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
    let other_key = auth::issue_key(&*server.services.store, Some(other.id), None, "b")
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
    // An element id that is neither a preset nor the account's own.
    let (status, element) = server
        .submit(json!({"model": "Kling-Video-O1", "prompt": "<<<element_1>>>", "aspect_ratio": "1:1", "element_list": [{"element_id": 999}]}))
        .await;
    assert_eq!(
        (status, error_of(&element).1),
        (400, Some("element_list[0].element_id"))
    );
}

impl Server {
    async fn elements(
        &self,
        key: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, String, Value) {
        let client = reqwest::Client::new();
        let url = format!("{}{path}", self.base);
        let mut request = if method == "POST" {
            client.post(url)
        } else {
            client.get(url)
        };
        request = request.header("Authorization", format!("Bearer {key}"));
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        let response = request.send().await.expect("send");
        let status = response.status().as_u16();
        let request_id = response
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        (
            status,
            request_id,
            response.json().await.unwrap_or(Value::Null),
        )
    }

    async fn wait(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let (status, _, task) = self.get(&self.key, &format!("/v1/videos/{id}")).await;
            assert_eq!(status, 200, "{task}");
            let done = matches!(task["status"].as_str(), Some("completed" | "failed"));
            if done || Instant::now() > deadline {
                return task;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn elements_are_created_listed_used_and_deleted() {
    let side = fixture_server(png_bytes(600, 600), "image/png").await;
    let server = serve_with(|config| config.fetch.allow = vec!["127.0.0.1".into()]).await;
    let key = server.key.clone();

    // The preset library: real images served by kinora, the seed's example ids among them.
    let (status, request_id, presets) = server
        .elements(&key, "GET", "/v1/elements/presets?page_size=500", None)
        .await;
    assert_eq!(status, 200, "{presets}");
    assert_eq!(
        (presets["code"].as_i64(), presets["message"].as_str()),
        (Some(0), Some("SUCCEED"))
    );
    assert_eq!(presets["request_id"], request_id.as_str());
    let list = presets["data"].as_array().expect("data");
    let ids: Vec<i64> = list
        .iter()
        .filter_map(|e| e["element_id"].as_i64())
        .collect();
    for wanted in [145, 146, 12345] {
        assert!(ids.contains(&wanted), "{ids:?}");
    }
    assert!(list.iter().all(|e| e["owned_by"] == "kling"));
    let knight = list.iter().find(|e| e["element_id"] == 146).expect("146");
    assert_eq!(
        knight["tag_list"][0],
        json!({"id": "o_102", "name": "character", "description": "人物"})
    );
    let front = knight["element_frontal_image"].as_str().expect("front");
    assert!(
        front.starts_with(&format!("{}/v1/files/elements/146/", server.base)),
        "{front}"
    );
    let picture = reqwest::get(front).await.expect("get");
    assert_eq!(
        (
            picture.status().as_u16(),
            picture.headers()["content-type"].to_str().ok()
        ),
        (200, Some("image/jpeg"))
    );
    let decoded =
        image::load_from_memory(&picture.bytes().await.expect("bytes")).expect("a real image");
    assert!(decoded.width() >= 300 && decoded.height() >= 300);
    let forged = front.replace("signature=", "signature=00");
    assert_eq!(
        reqwest::get(&forged).await.expect("get").status().as_u16(),
        404
    );
    let (_, _, page) = server
        .elements(
            &key,
            "GET",
            "/v1/elements/presets?page_num=2&page_size=3",
            None,
        )
        .await;
    assert_eq!(page["data"].as_array().map(Vec::len), Some(3));
    let (_, _, past) = server
        .elements(&key, "GET", "/v1/elements/presets?page_num=1000", None)
        .await;
    assert_eq!(past["data"], json!([]));
    let (status, _, bad_page) = server
        .elements(&key, "GET", "/v1/elements/presets?page_size=0", None)
        .await;
    assert_eq!(
        (status, error_of(&bad_page)),
        (400, ("invalid_parameter", Some("page_size")))
    );

    // A custom element: Base64 front (echoed as kinora's URL), URL side view (echoed as sent).
    let side_url = format!("{side}/fox-side.png");
    let create = json!({
        "element_name": "Red fox",
        "element_description": "A small red fox with a white-tipped tail",
        "element_frontal_image": png_base64(640, 640),
        "element_refer_list": [{"image_url": side_url}],
        "tag_list": [{"tag_id": "o_103"}],
    });
    let (status, request_id, created) = server
        .elements(&key, "POST", "/v1/elements/custom", Some(create.clone()))
        .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["request_id"], request_id.as_str());
    let element = &created["data"];
    let id = element["element_id"].as_i64().expect("integer id");
    assert!((1 << 40..1 << 53).contains(&id), "{id}");
    assert_eq!(element["owned_by"], "user");
    assert_eq!(
        element["element_refer_list"],
        json!([{"image_url": side_url}])
    );
    assert_eq!(
        element["tag_list"],
        json!([{"id": "o_103", "name": "animal", "description": "动物"}])
    );
    let front = element["element_frontal_image"].as_str().expect("front");
    let stored = reqwest::get(front)
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(stored.as_ref(), png_bytes(640, 640).as_slice());

    // Refused images name their field; nothing is left behind.
    let mut small = create.clone();
    small["element_refer_list"] = json!([{"image_url": png_base64(200, 200)}]);
    let (status, _, refused) = server
        .elements(&key, "POST", "/v1/elements/custom", Some(small))
        .await;
    assert_eq!(
        (status, error_of(&refused)),
        (
            400,
            ("invalid_parameter", Some("element_refer_list[0].image_url"))
        )
    );
    let mut guarded = create.clone();
    guarded["element_frontal_image"] = json!("http://169.254.169.254/latest/front.png");
    let (status, _, refused) = server
        .elements(&key, "POST", "/v1/elements/custom", Some(guarded))
        .await;
    assert_eq!(
        (status, error_of(&refused)),
        (400, ("invalid_parameter", Some("element_frontal_image")))
    );
    let (status, _, _) = server
        .elements(
            "kin_wrong",
            "POST",
            "/v1/elements/custom",
            Some(create.clone()),
        )
        .await;
    assert_eq!(status, 401);

    // Listed for its account only.
    let (_, _, mine) = server
        .elements(&key, "GET", "/v1/elements/custom", None)
        .await;
    assert_eq!(mine["data"].as_array().map(Vec::len), Some(1), "{mine}");
    assert_eq!(mine["data"][0]["element_id"], id);
    let other = server
        .services
        .store
        .create_account("b")
        .await
        .expect("account b");
    let other_key = auth::issue_key(&*server.services.store, Some(other.id), None, "b")
        .await
        .expect("key")
        .secret;
    let (_, _, theirs) = server
        .elements(&other_key, "GET", "/v1/elements/custom", None)
        .await;
    assert_eq!(theirs["data"], json!([]));

    // Usable in omni requests, with a preset, as string or integer ids; not by another account.
    let omni = json!({"model": "Kling-Video-O1", "prompt": "<<<element_1>>> meets <<<element_2>>>", "element_list": [{"element_id": id.to_string()}, {"element_id": 146}], "aspect_ratio": "1:1", "seconds": "3", "mode": "std"});
    let (status, task) = server.submit(omni.clone()).await;
    assert_eq!(status, 200, "{task}");
    let (status, hidden) = server.post(Some(&other_key), omni.to_string()).await;
    assert_eq!(
        (status, error_of(&hidden)),
        (
            400,
            ("invalid_parameter", Some("element_list[0].element_id"))
        )
    );

    // Deleting: not another account's, not a preset; then gone for new requests only.
    let delete = |id: Value| Some(json!({"element_id": id}));
    let (status, _, refused) = server
        .elements(
            &other_key,
            "POST",
            "/v1/elements/delete",
            delete(json!(id.to_string())),
        )
        .await;
    assert_eq!((status, error_of(&refused).0), (404, "element_not_found"));
    let (status, _, refused) = server
        .elements(&key, "POST", "/v1/elements/delete", delete(json!("146")))
        .await;
    assert_eq!((status, error_of(&refused).0), (400, "invalid_parameter"));
    assert_eq!(
        refused["error"]["message"],
        "only custom elements can be deleted"
    );
    let (status, _, deleted) = server
        .elements(
            &key,
            "POST",
            "/v1/elements/delete",
            delete(json!(id.to_string())),
        )
        .await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["data"]["task_status"], "succeed");
    let (status, _, again) = server
        .elements(&key, "POST", "/v1/elements/delete", delete(json!(id)))
        .await;
    assert_eq!((status, error_of(&again).0), (404, "element_not_found"));
    assert_eq!(
        reqwest::get(front).await.expect("get").status().as_u16(),
        404
    );
    let (status, gone) = server.submit(omni).await;
    assert_eq!(
        (status, error_of(&gone)),
        (
            400,
            ("invalid_parameter", Some("element_list[0].element_id"))
        )
    );

    // The task accepted before the deletion still renders, with its own copy of the element.
    let done = server.wait(task["id"].as_str().expect("id")).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["data"][0]["duration"], 3.0);
}

/// Every example request body of the unified dialect's source document, as published, run
/// through the built-in engine. Its media URLs point at hosts a test cannot reach, so each is
/// re-hosted on a loopback server (path and query kept) that the test config allows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_seed_example_renders_a_real_mp4() {
    let server = serve_with(|config| config.fetch.allow = vec!["127.0.0.1".into()]).await;
    // The reference clip the examples' videos stand for: 5 s of 1080p with a soundtrack.
    let (status, clip_task) = server
        .submit(json!({"model": "Kling-V2.6", "prompt": "a dancer on a stage", "sound": "on", "mode": "pro", "aspect_ratio": "16:9", "seconds": "5"}))
        .await;
    assert_eq!(status, 200, "{clip_task}");
    let clip_task = server.wait(clip_task["id"].as_str().expect("id")).await;
    let clip = reqwest::get(clip_task["video_url"].as_str().expect("url"))
        .await
        .expect("download")
        .bytes()
        .await
        .expect("bytes")
        .to_vec();
    let media = seed_media_server(clip).await;

    let examples = [
        json!({"model": "Kling-V2.6", "prompt": "一只可爱的猫咪在花园里玩耍,阳光明媚", "mode": "pro", "aspect_ratio": "16:9", "seconds": "5"}),
        json!({"model": "Kling-V2.6", "prompt": "海浪拍打沙滩,海鸥在天空飞翔", "sound": "on", "mode": "pro", "aspect_ratio": "16:9", "seconds": "5"}),
        json!({"model": "Kling-V2.6", "prompt": "城市夜景,霓虹灯闪烁", "mode": "pro", "aspect_ratio": "16:9", "seconds": "5", "camera_control": {"type": "simple", "config": {"zoom": 5, "horizontal": 0, "vertical": 0, "pan": 0, "tilt": 0, "roll": 0}}}),
        json!({"model": "Kling-V2.6", "prompt": "森林中的小溪", "mode": "std", "aspect_ratio": "1:1", "seconds": "5", "camera_control": {"type": "forward_up"}}),
        json!({"model": "Kling-V2.6", "image": "https://example.com/start.jpg", "prompt": "画面中的人物开始跳舞", "mode": "pro", "seconds": "5"}),
        json!({"model": "Kling-V2.6", "image": "https://example.com/start.jpg", "image_tail": "https://example.com/end.jpg", "prompt": "人物从站立变为坐下", "mode": "pro", "seconds": "5"}),
        json!({"model": "Kling-V2.6", "image": "https://example.com/person.jpg", "prompt": "男人<<<voice_1>>>说:'你好,世界'", "sound": "on", "voice_list": [{"voice_id": "voice_123"}], "mode": "pro", "seconds": "5"}),
        json!({"model": "Kling-V2.6", "image": "https://example.com/scene.jpg", "prompt": "画面中的物体开始移动", "mode": "pro", "seconds": "5", "static_mask": "https://example.com/static_mask.png", "dynamic_masks": [{"mask": "https://example.com/dynamic_mask.png", "trajectories": [{"x": 100, "y": 200}, {"x": 300, "y": 400}]}]}),
        json!({"model": "Kling-V2.6", "image": "https://example.com/landscape.jpg", "prompt": "美丽的风景", "mode": "pro", "seconds": "5", "camera_control": {"type": "simple", "config": {"zoom": 5, "horizontal": 0, "vertical": 0, "pan": 0, "tilt": 0, "roll": 0}}}),
        json!({"model": "Kling-V2.6", "action_control": true, "image_url": "https://example.com/person.jpg", "video_url": "https://example.com/dance.mp4", "mode": "pro", "character_orientation": "video"}),
        json!({"model": "Kling-V2.6", "action_control": true, "image_url": "https://example.com/person.jpg", "video_url": "https://example.com/dance.mp4", "mode": "pro", "character_orientation": "video", "prompt": "在舞台上表演", "keep_original_sound": "yes"}),
        json!({"model": "Kling-V2.6", "action_control": true, "image_url": "https://example.com/person.jpg", "video_url": "https://example.com/action.mp4", "mode": "std", "character_orientation": "image", "keep_original_sound": "no"}),
        json!({"model": "Kling-Video-O1", "prompt": "一个宇航员在月球上行走,背景是地球", "mode": "pro", "aspect_ratio": "16:9", "seconds": "5"}),
        json!({"model": "Kling-Video-O1", "prompt": "让花被风吹动", "first_frame_url": "http://wanx.alicdn.com/material/20250318/stylization_all_1.jpeg", "seconds": 5}),
        json!({"model": "Kling-Video-O1", "prompt": "<<<image_1>>>在东京街头漫步,偶遇<<<element_1>>>和<<<element_2>>>", "reference_images": ["https://p4-kling.klingai.com/bs2/upload-ylab-stunt/kling/element/%E5%88%BA%E5%AE%A2-%E5%85%B6%E4%BB%96%E5%8F%82%E8%80%831.jpg?x-kcdn-pid=112452"], "element_list": [{"element_id": "146"}, {"element_id": "145"}], "mode": "pro", "aspect_ratio": "1:1", "seconds": "5"}),
        json!({"model": "Kling-Video-O1", "prompt": "给<<<video_1>>>中的女孩,拿上<<<image_1>>>中的花", "reference_images": ["http://wanx.alicdn.com/material/20250318/stylization_all_1.jpeg"], "video_list": [{"video_url": "https://cdn.wanx.aliyuncs.com/static/demo-wan26/vace.mp4", "refer_type": "base", "keep_original_sound": "yes"}], "mode": "pro"}),
        json!({"model": "Kling-Video-O1", "prompt": "参考<<<video_1>>>的运镜方式,生成一段视频:<<<element_1>>>在东京街头漫步", "element_list": [{"element_id": "12345"}], "video_list": [{"video_url": "https://cdn.wanx.aliyuncs.com/static/demo-wan26/vace.mp4", "refer_type": "feature"}], "mode": "pro", "aspect_ratio": "1:1", "seconds": "5"}),
        json!({"model": "Kling-Video-O1", "prompt": "基于<<<video_1>>>,生成下一个镜头", "video_list": [{"video_url": "https://cdn.wanx.aliyuncs.com/static/demo-wan26/vace.mp4", "refer_type": "feature", "keep_original_sound": "yes"}], "mode": "pro"}),
    ];
    let mut ids = Vec::new();
    for mut example in examples {
        rehost(&mut example, &media);
        let (status, created) = server.submit(example.clone()).await;
        assert_eq!(status, 200, "{example}: {created}");
        ids.push((example, created["id"].as_str().expect("id").to_owned()));
    }
    for (example, id) in ids {
        let done = server.wait(&id).await;
        assert_eq!(done["status"], "completed", "{example}: {done}");
        let url = done["video_url"].as_str().expect("video_url");
        let bytes = reqwest::get(url)
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes");
        let info = kinora_media::video::probe_video("video", &bytes)
            .await
            .expect("a real MP4");
        // Every example asks for (or, from its 5 s reference clip, keeps) five seconds.
        assert_eq!(info.duration_ms, 5000, "{example}");
        assert_eq!(
            (info.width, info.height),
            (
                done["data"][0]["width"].as_u64().unwrap_or(0) as u32,
                done["data"][0]["height"].as_u64().unwrap_or(0) as u32
            ),
            "{example}"
        );
        let keeps_sound = example["keep_original_sound"] == "yes"
            || example["video_list"][0]["keep_original_sound"] == "yes"
            || example["sound"] == "on";
        if keeps_sound {
            assert!(info.has_audio, "{example}");
        }
    }
}
