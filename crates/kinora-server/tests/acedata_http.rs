//! The AceData dialect over real HTTP on loopback: its error bodies and codes, every create
//! rule, blocking requests held across real renders (and bounded by their wait limit),
//! asynchronous acknowledgements, and task records looked up one by one and in batches.

use std::time::{Duration, Instant};

use common::{rehost, seed_media_server, serve_with, Server};
use kinora_server::access_keys::{issue_pair, sign_jwt};
use serde_json::{json, Value};

mod common;

async fn server() -> Server {
    serve_with(|config| config.fetch.allow = vec!["127.0.0.1".into()]).await
}

/// Posts to `path`; returns the status and the body, and checks that an acknowledgement's or
/// error's `trace_id` is the response's `x-request-id`.
async fn ace(server: &Server, token: Option<&str>, path: &str, body: &str) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{}{path}", server.base))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = request.send().await.expect("send");
    let status = response.status().as_u16();
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    // Acknowledgements and errors carry this request's trace id (task records carry the
    // creating request's).
    if let (Some(_), Some(trace)) = (body.get("success"), body.get("trace_id")) {
        assert_eq!(trace, &json!(request_id), "{body}");
    }
    (status, body)
}

async fn post(server: &Server, path: &str, body: Value) -> (u16, Value) {
    ace(server, Some(&server.key), path, &body.to_string()).await
}

fn error_of(body: &Value) -> (Option<&str>, Option<&str>) {
    (
        body["error"]["code"].as_str(),
        body["error"]["message"].as_str(),
    )
}

/// Looks a task up until its record has a `response`.
async fn record_when_done(server: &Server, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let (status, record) = post(
            server,
            "/kling/tasks",
            json!({"action": "retrieve", "id": id}),
        )
        .await;
        assert_eq!(status, 200, "{record}");
        if record.get("response").is_some() || Instant::now() > deadline {
            return record;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn errors_have_the_dialects_codes_and_statuses() {
    let server = server().await;
    let body = json!({"action": "text2video", "prompt": "p", "async": true}).to_string();
    let (status, missing) = ace(&server, None, "/kling/videos", &body).await;
    assert_eq!(
        (status, error_of(&missing)),
        (
            400,
            (
                Some("no_token"),
                Some("No token specified for the request.")
            )
        )
    );
    assert_eq!(missing["success"], false);
    let (status, wrong) = ace(&server, Some("kin_nope"), "/kling/videos", &body).await;
    assert_eq!(
        (status, error_of(&wrong)),
        (
            401,
            (
                Some("invalid_token"),
                Some("The specified token is invalid or wrong.")
            )
        )
    );
    // An access-key JWT works here too, and an expired one has its own code.
    let account = server.account().await;
    let pair = issue_pair(
        &*server.services.store,
        &server.services.secrets,
        account,
        None,
        "ace",
    )
    .await
    .expect("pair");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    let fresh = sign_jwt(&pair.key.access_key, &pair.secret_key, now + 600, None);
    let (status, accepted) = ace(&server, Some(&fresh), "/kling/videos", &body).await;
    assert_eq!(status, 200, "{accepted}");
    let stale = sign_jwt(&pair.key.access_key, &pair.secret_key, now - 120, None);
    let (status, expired) = ace(&server, Some(&stale), "/kling/videos", &body).await;
    assert_eq!(
        (status, error_of(&expired)),
        (401, (Some("token_expired"), Some("token expired.")))
    );
    let (status, bad_json) = ace(&server, Some(&server.key), "/kling/videos", "{").await;
    assert_eq!((status, error_of(&bad_json).0), (400, Some("bad_request")));
    // Paths: AceData's endpoints kinora lacks, unknown ones, wrong methods.
    let (status, lip) = post(&server, "/kling/lip-sync", json!({})).await;
    assert_eq!(
        (status, error_of(&lip)),
        (
            400,
            (
                Some("api_not_implemented"),
                Some("The API is not implemented.")
            )
        )
    );
    let (status, none) = post(&server, "/kling/nothing-here", json!({})).await;
    assert_eq!(
        (status, error_of(&none)),
        (
            404,
            (
                Some("no_api"),
                Some("API does not exist, please make sure url is correct.")
            )
        )
    );
    let get = reqwest::Client::new()
        .get(format!("{}/kling/videos", server.base))
        .send()
        .await
        .expect("get");
    assert_eq!(get.status().as_u16(), 404);
    // The official dialect under /kling/v1 is untouched.
    let (status, _, official) = server.get(&server.key, "/kling/v1/videos/text2video").await;
    assert_eq!((status, official["code"].as_i64()), (200, Some(0)));
    // `accept` may only ask for JSON.
    let refused = reqwest::Client::new()
        .post(format!("{}/kling/videos", server.base))
        .bearer_auth(&server.key)
        .header("accept", "text/html")
        .body(body.clone())
        .send()
        .await
        .expect("send");
    assert_eq!(refused.status().as_u16(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_create_rule_is_checked_before_a_task_exists() {
    let server = server().await;
    let videos = "/kling/videos";
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"prompt": "p"}),
            "action is required: text2video, image2video or extend",
        ),
        (
            json!({"action": "paint", "prompt": "p"}),
            "action must be one of text2video, image2video, extend, not `paint`",
        ),
        (
            json!({"action": "text2video", "model": "kling-v3-turbo", "prompt": "p"}),
            "model is invalid.",
        ),
        (json!({"action": "text2video"}), "prompt is required"),
        (
            json!({"action": "text2video", "prompt": "p", "negative_prompt": "n".repeat(201)}),
            "negative_prompt must be at most 200 characters",
        ),
        (
            json!({"action": "text2video", "prompt": "p", "camera_control": {"type": "simple", "config": {"zoom": 2}}}),
            "camera_control.config.zoom must be a number from -1 to 1, not 2",
        ),
        (
            json!({"action": "text2video", "prompt": "p", "camera_control": "not json"}),
            "camera_control must be a JSON object, or a string holding one",
        ),
        (
            json!({"action": "text2video", "prompt": "p", "camera_control": {"type": "simple", "config": {"zoom": 0.5, "pan": 0.5}}}),
            "camera_control of type simple needs exactly one non-zero axis, got pan, zoom",
        ),
        (
            json!({"action": "text2video", "prompt": "p", "start_image_url": "https://e.com/a.jpg"}),
            "start_image_url is only allowed with action image2video",
        ),
        (
            json!({"action": "text2video", "prompt": "p", "video_id": "x"}),
            "video_id is only allowed with action extend",
        ),
        (
            json!({"action": "image2video", "prompt": "p"}),
            "start_image_url is required for action image2video",
        ),
        (
            json!({"action": "image2video", "prompt": "p", "start_image_url": "aGVsbG8="}),
            "start_image_url must be an absolute http:// or https:// URL",
        ),
        (
            json!({"action": "image2video", "prompt": "p", "start_image_url": "https://e.com/a.jpg", "end_image_url": "https://e.com/b.jpg", "duration": 10}),
            "duration must be 5 when end_image_url is given",
        ),
        (
            json!({"action": "text2video", "prompt": "p", "duration": 7}),
            "model/mode/duration(kling-v1/std/7) is not supported",
        ),
        (
            json!({"action": "text2video", "prompt": "p", "mode": "4k"}),
            "model/mode(kling-v1/4k) is not supported",
        ),
        (
            json!({"action": "text2video", "prompt": "p", "aspect_ratio": "4:3"}),
            "aspect_ratio must be one of 16:9, 9:16, 1:1, not `4:3`",
        ),
        (
            json!({"action": "text2video", "prompt": "p", "cfg_scale": "high"}),
            "cfg_scale must be a number from 0 to 1, not `high`",
        ),
        (
            json!({"action": "text2video", "prompt": "p", "model": "kling-v2-6", "cfg_scale": 0.7}),
            "model/mode/duration(kling-v2-6/std/5) is not supported with cfg_scale",
        ),
        (
            json!({"action": "text2video", "prompt": "p", "image_list": [{"image_url": "https://e.com/a.jpg"}]}),
            "image_list needs an omni model (kling-video-o1 or kling-v3-omni)",
        ),
        (
            json!({"action": "text2video", "prompt": "p", "video_list": [{"video_url": "https://e.com/a.mp4"}]}),
            "video_list needs an omni model (kling-video-o1 or kling-v3-omni)",
        ),
        (
            json!({"action": "text2video", "prompt": "p", "element_list": [{"element_id": 146}]}),
            "element_list needs an omni model, or kling-v3 with action image2video",
        ),
        (
            json!({"action": "text2video", "prompt": "p", "voice_list": [{"voice_id": "v"}]}),
            "voice_list needs model kling-v2-6 or kling-v3",
        ),
        (
            json!({"action": "text2video", "prompt": "p", "model": "kling-v2-6", "mode": "pro", "voice_list": [{"voice_id": "v"}]}),
            "voice_list needs sound on",
        ),
        (
            json!({"action": "text2video", "prompt": "p", "model": "kling-v2-6", "generate_audio": true}),
            "model/mode/duration(kling-v2-6/std/5) is not supported with sound on",
        ),
        (
            json!({"action": "text2video", "prompt": "p", "model": "kling-o1", "negative_prompt": "n"}),
            "negative_prompt is not supported by omni models",
        ),
        (
            json!({"action": "text2video", "prompt": "p", "model": "kling-o1", "cfg_scale": 0.5}),
            "cfg_scale is not supported by omni models",
        ),
        (
            json!({"action": "text2video", "prompt": "p", "model": "kling-o1", "camera_control": {"type": "down_back"}}),
            "camera_control is not supported by omni models",
        ),
        (
            json!({"action": "text2video", "prompt": "p", "model": "kling-o1", "video_list": [{"video_url": "https://e.com/a.mp4", "refer_type": "feature"}], "generate_audio": true}),
            "model/mode/duration(kling-video-o1/std/5) is not supported with sound on",
        ),
        (
            json!({"action": "text2video", "prompt": "p", "model": "kling-o1", "video_list": [{"video_url": "https://e.com/a.mp4"}, {"video_url": "https://e.com/b.mp4"}]}),
            "video_list holds at most 1 video, got 2",
        ),
        (
            json!({"action": "image2video", "prompt": "p", "model": "kling-o1", "start_image_url": "https://e.com/a.jpg", "video_list": [{"video_url": "https://e.com/a.mp4"}]}),
            "a video edit (refer_type base) cannot have a first or last frame",
        ),
        (
            json!({"action": "text2video", "prompt": "p", "model": "kling-o1", "image_list": [{"image_url": "https://e.com/a.jpg", "type": "end_frame"}]}),
            "an end frame alone is not supported: it needs a first frame",
        ),
        (
            json!({"action": "text2video", "prompt": "p", "model": "kling-o1", "image_list": [{"image_url": "https://e.com/a.jpg"}, {"image_url": "https://e.com/b.jpg"}, {"image_url": "https://e.com/c.jpg"}], "element_list": [{"element_id": 141}, {"element_id": 142}], "video_list": [{"video_url": "https://e.com/a.mp4", "refer_type": "feature"}]}),
            "images plus elements may be at most 4 with a reference video, got 3 + 2",
        ),
        (
            json!({"action": "extend"}),
            "video_id is required for action extend",
        ),
        (
            json!({"action": "extend", "video_id": "019559e3-be2f-79e0-b1a2-b3c4d5e6f708"}),
            "video_id is invalid",
        ),
        (
            json!({"action": "text2video", "prompt": "p", "async": "maybe"}),
            "async must be true or false, not `maybe`",
        ),
        (
            json!({"action": "text2video", "prompt": "p", "timeout": 0}),
            "timeout must be a whole number of seconds, at least 1, not 0",
        ),
        (
            json!({"action": "text2video", "prompt": "p", "callback_url": "ftp://e.com/hook"}),
            "callback_url must be an absolute http:// or https:// URL",
        ),
        (
            json!({"action": "text2video", "prompt": "p", "callback_url": "http://169.254.169.254/latest"}),
            "callback_url",
        ),
        (
            json!({"action": "text2video", "prompt": "p", "model": "kling-o1", "aspect_ratio": "1:1", "element_list": [{"element_id": 9_999_999}]}),
            "element_list[0].element_id",
        ),
    ];
    for (body, wanted) in cases {
        let (status, answer) = post(&server, videos, body.clone()).await;
        let (code, message) = error_of(&answer);
        assert_eq!(
            (status, code),
            (400, Some("bad_request")),
            "{body}: {answer}"
        );
        assert!(
            message.unwrap_or_default().contains(wanted),
            "{body}: {answer}"
        );
        assert!(answer.get("task_id").is_none(), "{answer}");
    }
    let motion = json!({"image_url": "https://e.com/p.jpg", "video_url": "https://e.com/d.mp4", "character_orientation": "video", "mode": "std"});
    let without = |key: &str| {
        let mut b = motion.clone();
        if let Some(o) = b.as_object_mut() {
            o.remove(key);
        }
        b
    };
    let with = |key: &str, value: Value| {
        let mut b = motion.clone();
        b[key] = value;
        b
    };
    for (body, wanted) in [
        (without("image_url"), "image_url is required"),
        (without("video_url"), "video_url is required"),
        (without("mode"), "mode is required: std or pro"),
        (
            without("character_orientation"),
            "character_orientation is required: image or video",
        ),
        (with("mode", json!("4k")), "mode must be one of std, pro"),
        (
            with("keep_original_sound", json!("maybe")),
            "keep_original_sound must be one of yes, no",
        ),
        (
            with("video_url", json!("ZGFuY2U=")),
            "video_url must be an absolute http:// or https:// URL",
        ),
        (
            with("model", json!("kling-v1")),
            "model(kling-v1) is not supported on motion-control",
        ),
        (with("prompt", json!("x".repeat(2501))), "2500"),
        (
            with("video_url", json!("http://127.0.0.2:9/d.mp4")),
            "video_url",
        ),
    ] {
        let (status, answer) = post(&server, "/kling/motion", body.clone()).await;
        let (code, message) = error_of(&answer);
        assert_eq!(
            (status, code),
            (400, Some("bad_request")),
            "{body}: {answer}"
        );
        assert!(
            message.unwrap_or_default().contains(wanted),
            "{body}: {answer}"
        );
    }
    // Nothing above created a task.
    let account = server.account().await;
    let tasks = server
        .services
        .store
        .list_tasks(account, None, 1, 10)
        .await
        .expect("list");
    assert!(tasks.is_empty(), "{tasks:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blocking_requests_wait_for_the_render_and_async_ones_answer_at_once() {
    let server = server().await;
    // Blocking (seed 003's example as published): held open across the render, then the
    // success body.
    let example = json!({ "action": "text2video", "model": "kling-v1", "mode": "std", "prompt": "White ceramic mug on a glossy marble counter in morning light; the camera circles it once", "duration": 5, "aspect_ratio": "16:9" });
    let started = Instant::now();
    let (status, done) = post(&server, "/kling/videos", example.clone()).await;
    assert_eq!(status, 200, "{done}");
    assert!(
        started.elapsed() > Duration::from_millis(300),
        "it waited for the render"
    );
    assert_eq!(
        (&done["success"], &done["state"], &done["duration"]),
        (&json!(true), &json!("succeed"), &json!("5"))
    );
    assert_eq!(done["video_id"], done["task_id"]);
    let video = reqwest::get(done["video_url"].as_str().expect("url"))
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes");
    let info = kinora_media::video::probe_video("video", &video)
        .await
        .expect("a real MP4");
    assert_eq!(
        (info.width, info.height, info.duration_ms),
        (1280, 720, 5000)
    );

    // Its record: float-second times, the request as sent, the response.
    let record = record_when_done(&server, done["task_id"].as_str().expect("id")).await;
    assert_eq!(record["type"], "videos");
    assert_eq!(record["request"], example);
    assert_eq!(record["response"], done);
    let created = record["created_at"].as_f64().expect("created_at");
    let started_at = record["started_at"].as_f64().expect("started_at");
    let finished = record["finished_at"].as_f64().expect("finished_at");
    assert!(
        created > 1.7e9 && created <= started_at && started_at <= finished,
        "{record}"
    );
    let elapsed = record["elapsed"].as_f64().expect("elapsed");
    assert!(
        (elapsed - (finished - started_at)).abs() < 0.002,
        "{record}"
    );
    assert!(record["user_id"].as_str().is_some_and(|u| u.len() == 36));

    // A wait shorter than the render: 504 with the task id; the task keeps running.
    let (status, late) = post(&server, "/kling/videos", json!({"action": "text2video", "model": "kling-v1", "mode": "pro", "prompt": "a long slow pan over a city", "duration": 10, "timeout": 1})).await;
    assert_eq!(
        (status, error_of(&late).0),
        (504, Some("timeout")),
        "{late}"
    );
    let late_id = late["task_id"].as_str().expect("task_id").to_owned();
    let late_record = record_when_done(&server, &late_id).await;
    assert_eq!(late_record["response"]["success"], true, "{late_record}");
    assert_eq!(late_record["response"]["duration"], "10");

    // A client that goes away neither cancels nor loses its task.
    let gone = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("client")
        .post(format!("{}/kling/videos", server.base))
        .bearer_auth(&server.key)
        .body(json!({"action": "text2video", "prompt": "the client leaves early"}).to_string())
        .send()
        .await;
    assert!(gone.is_err(), "the client timed out");
    let account = server.account().await;
    let newest = server
        .services
        .store
        .list_tasks(account, None, 1, 1)
        .await
        .expect("list")
        .pop()
        .expect("a task");
    assert_eq!(newest.request["prompt"], "the client leaves early");
    let left = record_when_done(&server, &newest.id.to_string()).await;
    assert_eq!(left["response"]["success"], true, "{left}");

    // Asynchronous: the acknowledgement at once, then the record.
    let (status, ack) = post(
        &server,
        "/kling/videos",
        json!({"action": "text2video", "prompt": "a quick one", "async": "true"}),
    )
    .await;
    assert_eq!(status, 200, "{ack}");
    assert_eq!(
        ack.as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>()),
        Some(vec![
            "success".to_owned(),
            "task_id".to_owned(),
            "trace_id".to_owned()
        ])
    );
    let id = ack["task_id"].as_str().expect("task_id").to_owned();
    let (_, pending) = post(&server, "/kling/tasks", json!({"id": id})).await;
    assert_eq!(pending["trace_id"], ack["trace_id"]);
    let finished = record_when_done(&server, &id).await;
    assert_eq!(finished["response"]["success"], true, "{finished}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_example_runs_and_tasks_are_looked_up_in_every_form() {
    let server = server().await;
    // The reference clip the examples' videos stand for, made by the engine.
    let (status, clip) = post(&server, "/kling/videos", json!({"action": "text2video", "prompt": "a dancer on a stage", "mode": "pro", "duration": 5})).await;
    assert_eq!(status, 200, "{clip}");
    let clip_bytes = reqwest::get(clip["video_url"].as_str().expect("url"))
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes")
        .to_vec();
    let media = seed_media_server(clip_bytes).await;

    // A callback receiver on loopback (allow-listed) for the examples that carry one.
    let receiver = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hooks = format!("http://{}", receiver.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(receiver, axum::Router::new().fallback(|| async { "ok" })).await;
    });
    let examples = [
        json!({ "action": "image2video", "model": "kling-v1", "prompt": "The door slowly opens", "start_image_url": "https://example.com/closed.jpg", "end_image_url": "https://example.com/open.jpg", "duration": 5, "callback_url": "https://example.com/hooks/kling" }),
        json!({ "action": "text2video", "model": "kling-v1", "mode": "std", "prompt": "A lighthouse at dusk", "duration": 5, "camera_control": { "type": "simple", "config": { "horizontal": 0, "vertical": 0, "pan": 0, "tilt": 0, "roll": 0, "zoom": 0.6 } } }),
        json!({ "action": "text2video", "model": "kling-o1", "prompt": "Follow the camera work of <<<video_1>>>: <<<element_1>>> walks through Tokyo", "element_list": [ { "element_id": "146" } ], "video_list": [ { "video_url": "https://example.com/ref.mp4", "refer_type": "feature" } ], "mode": "pro", "aspect_ratio": "1:1", "duration": 5, "async": true }),
        json!({ "action": "extend", "video_id": clip["video_id"], "prompt": "The camera keeps pulling back", "async": true }),
        json!({ "action": "text2video", "mode": "std", "model": "kling-v1", "prompt": "White ceramic coffee mug on glossy marble countertop with morning window light.", "duration": 5, "cfg_scale": "0.5", "aspect_ratio": "16:9", "camera_control": "{\"type\": \"forward_up\"}", "async": true }),
    ];
    let motion = json!({ "image_url": "https://example.com/person.jpg", "video_url": "https://example.com/dance.mp4", "character_orientation": "video", "mode": "pro", "keep_original_sound": "yes", "prompt": "Dancing on a stage", "callback_url": "https://example.com/hooks/motion" });
    let mut ids = Vec::new();
    for mut example in examples
        .into_iter()
        .map(|e| ("/kling/videos", e))
        .chain([("/kling/motion", motion)])
    {
        rehost(&mut example.1, &media);
        if let Some(hook) = example.1.get_mut("callback_url") {
            *hook = json!(format!("{hooks}/hook"));
        }
        let (status, ack) = post(&server, example.0, example.1.clone()).await;
        assert_eq!(status, 200, "{}: {ack}", example.1);
        assert_eq!(ack["success"], true);
        ids.push((
            example,
            ack["task_id"].as_str().expect("task_id").to_owned(),
        ));
    }
    for ((path, body), id) in &ids {
        let record = record_when_done(&server, id).await;
        assert_eq!(record["response"]["success"], true, "{body}: {record}");
        assert_eq!(
            record["type"],
            if *path == "/kling/motion" {
                "motion"
            } else {
                "videos"
            }
        );
        assert_eq!(&record["request"], body);
    }
    // The extension continues the clip: 5 s more.
    let extended = &ids[3].1;
    let record = record_when_done(&server, extended).await;
    assert_eq!(record["response"]["duration"], "10", "{record}");

    // Lookups: the unified form of an id, a task of another dialect by external id, unknown
    // ids, batches.
    let (status, created) = server
        .submit(json!({"model": "Kling-V2.6", "prompt": "from the unified dialect", "external_task_id": "uni-1"}))
        .await;
    assert_eq!(status, 200, "{created}");
    let unified_id = created["id"].as_str().expect("id").to_owned();
    let (_, by_external) = post(
        &server,
        "/kling/tasks",
        json!({"action": "retrieve", "id": "uni-1"}),
    )
    .await;
    let (_, by_unified) = post(
        &server,
        "/kling/tasks",
        json!({"action": "retrieve", "task_id": unified_id}),
    )
    .await;
    assert_eq!(by_external["id"], by_unified["id"]);
    assert_eq!(by_external["request"]["prompt"], "from the unified dialect");
    let (status, unknown) = post(
        &server,
        "/kling/tasks",
        json!({"action": "retrieve", "id": "019559de-e765-74d5-a6f7-08192a3b4c5d"}),
    )
    .await;
    assert_eq!((status, unknown), (200, json!({})));
    let (status, batch) = post(
        &server,
        "/kling/tasks",
        json!({"action": "retrieve_batch", "ids": [ids[0].1, "nope", ids[1].1]}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(batch["count"], 2);
    assert_eq!(batch["items"][0]["id"], json!(ids[0].1));
    assert_eq!(batch["items"][1]["id"], json!(ids[1].1));
    let (_, empty) = post(
        &server,
        "/kling/tasks",
        json!({"action": "retrieve_batch", "ids": ["nope"]}),
    )
    .await;
    assert_eq!(empty, json!({"items": [], "count": 0}));
    let too_many: Vec<String> = (0..101).map(|n| n.to_string()).collect();
    for (body, wanted) in [
        (
            json!({"action": "retrieve"}),
            "id is required for action retrieve",
        ),
        (
            json!({"action": "retrieve_batch"}),
            "ids is required for action retrieve_batch",
        ),
        (
            json!({"action": "retrieve_batch", "ids": too_many}),
            "ids holds at most 100 task ids, got 101",
        ),
        (
            json!({"action": "delete", "id": "x"}),
            "action must be retrieve or retrieve_batch",
        ),
    ] {
        let (status, answer) = post(&server, "/kling/tasks", body.clone()).await;
        assert_eq!(
            (status, error_of(&answer).0),
            (400, Some("bad_request")),
            "{body}"
        );
        assert!(
            error_of(&answer).1.unwrap_or_default().contains(wanted),
            "{answer}"
        );
    }
    // Another account sees none of it.
    let other_key = server.other_account_key().await;
    let (_, hidden) = ace(
        &server,
        Some(&other_key),
        "/kling/tasks",
        &json!({"action": "retrieve", "id": ids[0].1}).to_string(),
    )
    .await;
    assert_eq!(hidden, json!({}));
    let (_, extend_theirs) = ace(
        &server,
        Some(&other_key),
        "/kling/videos",
        &json!({"action": "extend", "video_id": clip["video_id"], "async": true}).to_string(),
    )
    .await;
    assert_eq!(error_of(&extend_theirs).1, Some("video_id is invalid"));
}
