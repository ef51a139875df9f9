//! The official Kling dialect over real HTTP on loopback: access-key JWTs and their error codes,
//! the envelope, and querying and listing tasks in every form the dialect allows.

use std::time::{Duration, Instant};

use common::{official_get as official, official_post as post, png_base64, serve};
use kinora_server::access_keys::{issue_pair, sign_jwt};
use serde_json::{json, Value};

mod common;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn access_key_jwts_are_checked_with_the_official_codes() {
    let server = serve().await;
    let store = &*server.services.store;
    let account = store
        .bootstrap_account()
        .await
        .expect("store")
        .expect("account")
        .id;
    let pair = issue_pair(store, &server.services.secrets, account, None, "ci")
        .await
        .expect("pair");
    let ak = pair.key.access_key.clone();
    let sk = pair.secret_key.clone();
    let path = "/v1/videos/text2video";
    let code = |body: &Value| {
        (
            body["code"].as_i64(),
            body["message"].as_str().map(str::to_owned),
        )
    };

    let good = sign_jwt(&ak, &sk, now() + 1800, Some(now() - 5));
    let (status, body) = official(&server, Some(&good), path).await;
    assert_eq!(
        (status, &body["data"], &body["message"]),
        (200, &json!([]), &json!("SUCCEED"))
    );
    // The same token works on every dialect; API keys work here too.
    assert_eq!(server.get(&good, "/v1/videos/task_0").await.0, 404);
    assert_eq!(official(&server, Some(&server.key), path).await.0, 200);

    let cases: Vec<(Option<String>, i64, &str)> = vec![
        (None, 1001, "Authorization is empty"),
        (Some("not-a-key".into()), 1002, "Authorization is invalid"),
        (
            Some(format!("kin_{}", "A".repeat(43))),
            1002,
            "api key not found",
        ),
        (
            Some(sign_jwt("ak_unknown", &sk, now() + 60, None)),
            1002,
            "api key not found",
        ),
        (
            Some(sign_jwt(&ak, "sk_wrong", now() + 60, None)),
            1002,
            "Authorization is invalid",
        ),
        (
            Some(sign_jwt(&ak, &sk, now() - 31, None)),
            1004,
            "Authorization has expired",
        ),
        (
            // Well past the 30 s leeway, so a slow machine's later request still sees it early.
            Some(sign_jwt(&ak, &sk, now() + 600, Some(now() + 300))),
            1003,
            "Authorization is not yet valid",
        ),
        (
            Some(sign_jwt(&ak, &sk, now() + 2 * 86_400, None)),
            1002,
            "Authorization is invalid",
        ),
    ];
    for (token, want_code, want_message) in cases {
        let (status, body) = official(&server, token.as_deref(), path).await;
        assert_eq!(
            (status, code(&body)),
            (401, (Some(want_code), Some(want_message.to_owned()))),
            "{token:?}"
        );
        assert!(body.get("data").is_none(), "errors omit data: {body}");
    }
    // Within the leeway is still fine; `alg: none` never is.
    let skewed = sign_jwt(&ak, &sk, now() - 10, Some(now() + 10));
    assert_eq!(official(&server, Some(&skewed), path).await.0, 200);
    let unsigned = {
        use base64::Engine;
        let b64 = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let claims = json!({"iss": ak, "exp": now() + 60}).to_string();
        format!(
            "{}.{}.{}",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(&claims),
            b64("x")
        )
    };
    assert_eq!(
        code(&official(&server, Some(&unsigned), path).await.1).0,
        Some(1002)
    );

    // A revoked access key is refused with 1000.
    assert!(store
        .revoke_access_key(account, pair.key.id)
        .await
        .expect("revoke"));
    let (status, body) = official(&server, Some(&good), path).await;
    assert_eq!((status, code(&body).0), (401, Some(1000)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tasks_are_queried_and_listed_in_every_form() {
    let server = serve().await;
    let key = server.key.clone();
    let (status, created) = server
        .submit(json!({"model": "Kling-V2.6", "prompt": "a kite over a beach", "seconds": "5", "external_task_id": "kite-1"}))
        .await;
    assert_eq!(status, 200, "{created}");
    let unified_id = created["id"].as_str().expect("id").to_owned();
    let deadline = Instant::now() + Duration::from_secs(120);
    let (task_id, done) = loop {
        let (status, body) = official(&server, Some(&key), "/v1/videos/text2video/kite-1").await;
        assert_eq!(status, 200, "{body}");
        let data = body["data"].clone();
        let state = data["task_status"].as_str().unwrap_or_default().to_owned();
        assert!(
            ["submitted", "processing", "succeed"].contains(&state.as_str()),
            "{data}"
        );
        if state == "succeed" || Instant::now() > deadline {
            break (
                data["task_id"].as_str().unwrap_or_default().to_owned(),
                data,
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(done["task_status"], "succeed", "{done}");
    assert_eq!(unified_id, format!("task_{}", task_id.replace('-', "")));
    assert_eq!(done["task_status_msg"], "");
    assert_eq!(done["task_info"], json!({"external_task_id": "kite-1"}));
    assert_eq!(done["final_unit_deduction"], "0");
    assert!(done["created_at"].as_i64().unwrap_or(0) > 1_700_000_000_000);
    assert!(done["updated_at"].as_i64() >= done["created_at"].as_i64());
    let video = &done["task_result"]["videos"][0];
    assert_eq!(
        (video["id"].as_str(), video["duration"].as_str()),
        (Some(task_id.as_str()), Some("5"))
    );
    let url = video["url"].as_str().expect("url");
    assert!(url.starts_with(&server.base), "{url}");
    assert_eq!(reqwest::get(url).await.expect("get").status().as_u16(), 200);

    // Every way of naming the task finds the same object, under any feature path and mount.
    for path in [
        format!("/v1/videos/text2video/{task_id}"),
        format!("/v1/videos/omni-video/{unified_id}"),
        format!("/kling/v1/videos/text2video/{task_id}"),
        "/v1/videos/text2video/kite-1?external_task_id=true".to_owned(),
        "/v1/videos/text2video?external_task_id=kite-1".to_owned(),
        format!("/v1/videos/image2video?task_id={task_id}&pageNum=0"),
    ] {
        let (status, body) = official(&server, Some(&key), &path).await;
        assert_eq!(
            (status, &body["data"]["task_id"]),
            (200, &json!(task_id)),
            "{path}: {body}"
        );
    }
    for path in [
        format!("/v1/videos/text2video/{task_id}?external_task_id=true"),
        "/v1/videos/text2video/nope".to_owned(),
        "/v1/videos/text2video?external_task_id=nope".to_owned(),
    ] {
        let (status, body) = official(&server, Some(&key), &path).await;
        assert_eq!(
            (status, body["code"].as_i64()),
            (404, Some(1203)),
            "{path}: {body}"
        );
        assert_eq!(body["message"], "task not found");
    }

    // Lists: this feature's tasks only, newest first, paged.
    let (_, listed) = official(
        &server,
        Some(&key),
        "/v1/videos/text2video?pageNum=1&pageSize=10",
    )
    .await;
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed["data"][0]["task_id"], json!(task_id));
    let (_, other_kind) = official(&server, Some(&key), "/kling/v1/videos/image2video").await;
    assert_eq!(other_kind["data"], json!([]));
    let (_, past) = official(&server, Some(&key), "/v1/videos/text2video?page_num=2").await;
    assert_eq!(past["data"], json!([]));
    let (status, bad) = official(&server, Some(&key), "/v1/videos/text2video?pageSize=501").await;
    assert_eq!((status, bad["code"].as_i64()), (400, Some(1201)));
    let response = reqwest::Client::new()
        .delete(format!("{}/v1/videos/text2video/{task_id}", server.base))
        .header("Authorization", format!("Bearer {key}"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status().as_u16(), 404);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["code"], 1202);

    // Another account sees nothing.
    let other_key = server.other_account_key().await;
    let (status, hidden) = official(
        &server,
        Some(&other_key),
        &format!("/v1/videos/text2video/{task_id}"),
    )
    .await;
    assert_eq!((status, hidden["code"].as_i64()), (404, Some(1203)));
    let (_, theirs) = official(&server, Some(&other_key), "/v1/videos/text2video").await;
    assert_eq!(theirs["data"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn elements_share_one_store_with_the_unified_dialect() {
    let server = serve().await;
    let key = server.key.clone();
    let create = json!({
        "element_name": "Paper crane 2026",
        "element_description": "A folded paper crane",
        "element_frontal_image": png_base64(500, 500),
        "element_refer_list": [{"image_url": png_base64(400, 400)}],
        "tag_list": [{"tag_id": "o_104"}],
    });
    let (status, created) =
        post(&server, &key, "/v1/general/custom-elements", create.clone()).await;
    assert_eq!(
        (status, created["code"].as_i64()),
        (200, Some(0)),
        "{created}"
    );
    let id = created["data"]["element_id"].as_i64().expect("id");
    assert_eq!(created["data"]["element_name"], "Paper crane 2026");
    assert_eq!(created["data"]["owned_by"], "user");

    // Kling's own refusals: a data URI, a name over 20 characters, a bad body.
    let mut data_uri = create.clone();
    data_uri["element_frontal_image"] =
        json!(format!("data:image/png;base64,{}", png_base64(500, 500)));
    let (status, refused) =
        post(&server, &key, "/kling/v1/general/custom-elements", data_uri).await;
    assert_eq!(
        (
            status,
            refused["code"].as_i64(),
            refused["message"].as_str()
        ),
        (
            400,
            Some(1201),
            Some("File is not in a valid base64 format")
        )
    );
    let mut long = create.clone();
    long["element_name"] = json!("x".repeat(21));
    let (status, refused) = post(&server, &key, "/v1/general/custom-elements", long).await;
    assert_eq!((status, refused["code"].as_i64()), (400, Some(1201)));
    let (status, refused) = post(&server, &key, "/v1/general/custom-elements", json!([1])).await;
    assert_eq!((status, refused["code"].as_i64()), (400, Some(1200)));

    // Listed here and by the unified dialect alike; presets too.
    let (_, mine) = official(
        &server,
        Some(&key),
        "/v1/general/custom-elements?pageNum=1&pageSize=10",
    )
    .await;
    assert_eq!(mine["data"][0]["element_id"], id);
    let unified = server.get(&key, "/v1/elements/custom").await.2;
    assert_eq!(unified["data"][0]["element_id"], id);
    let (_, presets) = official(
        &server,
        Some(&key),
        "/v1/general/presets-elements?pageSize=500",
    )
    .await;
    assert!(presets["data"]
        .as_array()
        .is_some_and(|l| l.iter().any(|e| e["element_id"] == 146)));

    // Deleting: presets and foreign elements are refused with the official codes.
    let (status, refused) = post(
        &server,
        &key,
        "/v1/general/delete-elements",
        json!({"element_id": "146"}),
    )
    .await;
    assert_eq!(
        (
            status,
            refused["code"].as_i64(),
            refused["message"].as_str()
        ),
        (400, Some(1201), Some("only custom elements can be deleted"))
    );
    let other_key = server.other_account_key().await;
    let (status, refused) = post(
        &server,
        &other_key,
        "/v1/general/delete-elements",
        json!({"element_id": id}),
    )
    .await;
    assert_eq!((status, refused["code"].as_i64()), (404, Some(1203)));
    let (status, deleted) = post(
        &server,
        &key,
        "/v1/general/delete-elements",
        json!({"element_id": id.to_string()}),
    )
    .await;
    assert_eq!(
        (status, &deleted["data"]["task_status"]),
        (200, &json!("succeed")),
        "{deleted}"
    );
    let (_, after) = official(&server, Some(&key), "/v1/general/custom-elements").await;
    assert_eq!(after["data"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn text2video_create_follows_every_rule_and_renders() {
    let server = serve().await;
    let key = server.key.clone();
    let path = "/v1/videos/text2video";

    let (status, created) = post(&server, &key, path, json!({"model_name": "kling-v2-6", "prompt": "a fox in the snow", "mode": "pro", "duration": "5", "sound": "on", "external_task_id": "fox-1", "style": "kept"})).await;
    assert_eq!(status, 200, "{created}");
    let data = &created["data"];
    assert_eq!(
        (
            data["task_status"].as_str(),
            data["task_status_msg"].as_str()
        ),
        (Some("submitted"), Some(""))
    );
    assert_eq!(data["task_info"], json!({"external_task_id": "fox-1"}));
    assert_eq!(data["created_at"], data["updated_at"]);
    let task_id = data["task_id"].as_str().expect("task_id").to_owned();
    let stored = server
        .services
        .store
        .get_task(
            server.account().await,
            kinora_core::TaskId::parse_any(&task_id).expect("id"),
        )
        .await
        .expect("store")
        .expect("task");
    assert_eq!(
        (stored.model.as_str(), stored.dialect),
        ("kling-v2-6", kinora_core::Dialect::Official)
    );
    assert_eq!(
        stored.request["extra"]["style"], "kept",
        "{}",
        stored.request
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    let done = loop {
        let (_, body) = official(&server, Some(&key), &format!("{path}/{task_id}")).await;
        if body["data"]["task_status"] == "succeed" || Instant::now() > deadline {
            break body["data"].clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(done["task_status"], "succeed", "{done}");
    assert_eq!(done["task_result"]["videos"][0]["duration"], "5");

    // Defaults, the legacy `model` field, lenient spellings; first the spec's own example (§13).
    for body in [
        json!({ "model": "kling-v2-6", "prompt": "A neon city at night", "mode": "pro", "sound": "on", "aspect_ratio": "16:9", "duration": 10, "external_task_id": "order-42" }),
        json!({"prompt": "a lighthouse"}),
        json!({"model": "kling-v2-6", "prompt": "p", "sound": "on", "mode": "pro"}),
        json!({"model_name": "kling-v2-6", "prompt": "p", "cfg_scale": 0.5, "duration": 10}),
        json!({"model_name": "kling-v1", "prompt": "p", "cfg_scale": "0.7", "camera_control": {"type": "simple", "config": {"zoom": 5, "horizontal": 0, "vertical": 0, "pan": 0, "tilt": 0, "roll": 0}}}),
        json!({"prompt": "p", "watermark_info": {"enabled": "true"}, "negative_prompt": ""}),
        json!({"model_name": "kling-v3", "mode": "4k", "duration": "8", "multi_shot": true, "shot_type": "customize", "multi_prompt": [{"index": 2, "prompt": "b", "duration": "3"}, {"index": 1, "prompt": "a", "duration": 5}]}),
        json!({"model_name": "kling-v3", "prompt": "p", "multi_shot": "false", "shot_type": 7, "sound": "on", "voice_list": [{"voice_id": 12}], "duration": 3}),
    ] {
        let (status, answer) = post(&server, &key, path, body.clone()).await;
        assert_eq!(
            (status, answer["code"].as_i64()),
            (200, Some(0)),
            "{body}: {answer}"
        );
    }

    let long = "x".repeat(2501);
    let cases = [
        (
            json!({"model_name": "kling-v9", "prompt": "p"}),
            404,
            1203,
            Some("model_name kling-v9 not found"),
        ),
        (
            json!({"model_name": "kling-v1-5", "prompt": "p"}),
            400,
            1201,
            Some("model(kling-v1-5) is not supported on text2video"),
        ),
        (
            json!({"model_name": "kling-v2-6", "prompt": "p", "mode": "4k"}),
            400,
            1201,
            Some("model/mode(kling-v2-6/4k) is not supported"),
        ),
        (
            json!({"model_name": "kling-v2-6", "prompt": "p", "mode": "pro", "duration": "15"}),
            400,
            1201,
            Some("model/mode/duration(kling-v2-6/pro/15) is not supported"),
        ),
        (
            json!({"prompt": "p", "sound": "on"}),
            400,
            1201,
            Some("model/mode/duration(kling-v1/std/5) is not supported with sound on"),
        ),
        (
            json!({"model_name": "kling-v2-6", "prompt": "p", "cfg_scale": 0.7}),
            400,
            1201,
            Some("model/mode/duration(kling-v2-6/std/5) is not supported with cfg_scale"),
        ),
        (
            json!({"prompt": "p", "mode": "pro", "camera_control": {"type": "simple", "config": {"zoom": 5, "horizontal": 0, "vertical": 0, "pan": 0, "tilt": 0, "roll": 0}}}),
            400,
            1201,
            Some("model/mode/duration(kling-v1/pro/5) is not supported with camera_control"),
        ),
        (
            json!({"model_name": "kling-v2-6", "prompt": "p", "multi_shot": true, "shot_type": "intelligence"}),
            400,
            1201,
            Some("model/mode/duration(kling-v2-6/std/5) is not supported with multi_shot"),
        ),
        (json!({"prompt": "p", "duration": "five"}), 400, 1201, None),
        (
            json!({"negative_prompt": "n"}),
            400,
            1201,
            Some("prompt is required"),
        ),
        (json!({"prompt": long}), 400, 1201, None),
        (
            json!({"prompt": "p", "aspect_ratio": "4:3"}),
            400,
            1201,
            None,
        ),
        (json!({"prompt": "p", "cfg_scale": 2}), 400, 1201, None),
        (
            json!({"prompt": "p", "watermark_info": {}}),
            400,
            1201,
            Some("watermark_info.enabled is required"),
        ),
        (
            json!({"model_name": "kling-v2-6", "mode": "pro", "prompt": "p", "voice_list": [{"voice_id": "v"}]}),
            400,
            1201,
            Some("voice_list needs sound on"),
        ),
        (
            json!({"model_name": "kling-v2-6", "mode": "pro", "sound": "on", "prompt": "<<<voice_2>>>", "voice_list": [{"voice_id": "v"}]}),
            400,
            1201,
            None,
        ),
        (
            json!({"prompt": "p", "camera_control": {"type": "simple", "config": {"zoom": 5, "pan": 5}}}),
            400,
            1201,
            None,
        ),
        (
            json!({"model_name": "kling-v3", "multi_shot": true}),
            400,
            1201,
            Some("shot_type is required when multi_shot is true"),
        ),
        (
            json!({"model_name": "kling-v3", "multi_shot": true, "shot_type": "customize", "multi_prompt": [{"index": 1, "prompt": "a", "duration": "4"}]}),
            400,
            1201,
            Some("the multi_prompt durations add up to 4 s, but duration is 5 s"),
        ),
        (
            json!({"model_name": "kling-v3", "multi_shot": true, "shot_type": "customize", "multi_prompt": [{"index": 1, "prompt": "a", "duration": "3"}, {"index": 1, "prompt": "b", "duration": "2"}]}),
            400,
            1201,
            None,
        ),
        (
            json!({"prompt": "p", "external_task_id": "fox-1"}),
            400,
            1201,
            None,
        ),
        (
            json!({"prompt": "p", "callback_url": "http://127.0.0.1:9/hook"}),
            400,
            1201,
            None,
        ),
        (
            json!({"prompt": "p", "callback_url": "http://169.254.169.254/latest"}),
            400,
            1201,
            None,
        ),
        (json!([1]), 400, 1200, None),
    ];
    for (body, want_status, want_code, want_message) in cases {
        let (status, answer) = post(&server, &key, path, body.clone()).await;
        assert_eq!(
            (status, answer["code"].as_i64()),
            (want_status, Some(want_code)),
            "{body}: {answer}"
        );
        if let Some(message) = want_message {
            assert_eq!(answer["message"], message, "{body}");
        }
        assert!(answer.get("data").is_none(), "{answer}");
    }
    let not_json = reqwest::Client::new()
        .post(format!("{}{path}", server.base))
        .bearer_auth(&key)
        .body("{")
        .send()
        .await
        .expect("send");
    assert_eq!(not_json.status().as_u16(), 400);
    assert_eq!(not_json.json::<Value>().await.expect("json")["code"], 1200);
}
