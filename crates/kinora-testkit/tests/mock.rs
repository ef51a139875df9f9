//! The mock Kling API against its published protocol: JWT codes, the envelope, statuses that
//! advance, results that download as real MP4s, lookups by external id, lists, and each fault.

use std::time::{Duration, Instant};

use kinora_testkit::{mint_jwt, Faults, MockConfig, MockKling, FAIL_MARKER};
use serde_json::{json, Value};

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

async fn mock(config: MockConfig) -> MockKling {
    MockKling::start(config, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("start")
}

fn token(config: &MockConfig) -> String {
    mint_jwt(&config.access_key, &config.secret_key, now_s(), 1800)
}

async fn call(
    mock: &MockKling,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, String) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .expect("client");
    let url = format!("{}{path}", mock.base_url());
    let mut request = if method == "POST" {
        client.post(url)
    } else {
        client.get(url)
    };
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        }
        Err(e) if e.is_timeout() => (0, "timeout".to_owned()),
        Err(e) => (0, e.to_string()),
    }
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_checked_with_klings_codes() {
    let config = MockConfig::default();
    let mock = mock(config.clone()).await;
    let path = "/v1/videos/text2video";
    let cases = [
        (None, 1001),
        (Some("not-a-jwt".to_owned()), 1002),
        (
            Some(mint_jwt("someone-else", &config.secret_key, now_s(), 1800)),
            1002,
        ),
        (
            Some(mint_jwt(&config.access_key, "wrong-secret", now_s(), 1800)),
            1002,
        ),
        (
            Some(mint_jwt(
                &config.access_key,
                &config.secret_key,
                now_s() - 3600,
                1800,
            )),
            1004,
        ),
        (
            Some(mint_jwt(
                &config.access_key,
                &config.secret_key,
                now_s() + 600,
                1800,
            )),
            1003,
        ),
    ];
    for (token, code) in cases {
        let (status, body) = call(&mock, token.as_deref(), "GET", path, None).await;
        let body = json_of(&body);
        assert_eq!(
            (status, body["code"].as_i64()),
            (401, Some(code)),
            "{token:?}: {body}"
        );
        assert!(body["request_id"].as_str().is_some());
    }
    let (status, body) = call(&mock, Some(&token(&config)), "GET", path, None).await;
    assert_eq!((status, json_of(&body)["code"].as_i64()), (200, Some(0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_advances_to_a_downloadable_mp4_and_is_found_by_either_id() {
    let config = MockConfig {
        task_duration: Duration::from_millis(1500),
        ..MockConfig::default()
    };
    let mock = mock(config.clone()).await;
    let token = token(&config);
    let (status, created) = call(
        &mock,
        Some(&token),
        "POST",
        "/v1/videos/image2video",
        Some(
            json!({"model_name": "kling-v1", "image": "aGVsbG8=", "external_task_id": "kinora-1"}),
        ),
    )
    .await;
    let created = json_of(&created);
    assert_eq!(
        (
            status,
            created["code"].as_i64(),
            created["data"]["task_status"].as_str()
        ),
        (200, Some(0), Some("submitted"))
    );
    let id = created["data"]["task_id"]
        .as_str()
        .expect("task_id")
        .to_owned();
    assert_eq!(mock.submits("kinora-1"), 1);

    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let done = loop {
        let (_, body) = call(
            &mock,
            Some(&token),
            "GET",
            &format!("/v1/videos/image2video/{id}"),
            None,
        )
        .await;
        let data = json_of(&body)["data"].clone();
        let status = data["task_status"].as_str().unwrap_or_default().to_owned();
        if seen.last() != Some(&status) {
            seen.push(status.clone());
        }
        if status == "succeed" || Instant::now() > deadline {
            break data;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(seen, ["submitted", "processing", "succeed"]);
    let url = done["task_result"]["videos"][0]["url"]
        .as_str()
        .expect("url");
    let mp4 = reqwest::get(url)
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes");
    let info = kinora_media::video::probe_video("video", &mp4)
        .await
        .expect("a real MP4");
    assert_eq!(info.duration_ms, 5000);

    // Lookups by external id in both forms; the path form by task id; other features miss.
    for path in [
        "/v1/videos/image2video?external_task_id=kinora-1".to_owned(),
        "/v1/videos/image2video/kinora-1".to_owned(),
    ] {
        let (status, body) = call(&mock, Some(&token), "GET", &path, None).await;
        assert_eq!(
            (status, json_of(&body)["data"]["task_id"].as_str()),
            (200, Some(id.as_str())),
            "{path}"
        );
    }
    let (status, body) = call(
        &mock,
        Some(&token),
        "GET",
        &format!("/v1/videos/text2video/{id}"),
        None,
    )
    .await;
    assert_eq!((status, json_of(&body)["code"].as_i64()), (404, Some(1203)));
    let (status, body) = call(
        &mock,
        Some(&token),
        "GET",
        "/v1/videos/image2video?external_task_id=nope",
        None,
    )
    .await;
    assert_eq!((status, json_of(&body)["code"].as_i64()), (404, Some(1203)));
    // A second create with the same external id is refused and not counted.
    let (status, body) = call(
        &mock,
        Some(&token),
        "POST",
        "/v1/videos/image2video",
        Some(json!({"external_task_id": "kinora-1"})),
    )
    .await;
    assert_eq!((status, json_of(&body)["code"].as_i64()), (400, Some(1201)));
    assert_eq!(mock.submits("kinora-1"), 1);
    // Lists: newest first, paged.
    for n in 0..3 {
        call(
            &mock,
            Some(&token),
            "POST",
            "/v1/videos/image2video",
            Some(json!({"external_task_id": format!("more-{n}")})),
        )
        .await;
    }
    let (_, body) = call(
        &mock,
        Some(&token),
        "GET",
        "/v1/videos/image2video?pageNum=1&pageSize=2",
        None,
    )
    .await;
    let page: Vec<String> = json_of(&body)["data"]
        .as_array()
        .expect("array")
        .iter()
        .map(|t| {
            t["task_info"]["external_task_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(page, ["more-2", "more-1"]);
    let (status, body) = call(
        &mock,
        Some(&token),
        "GET",
        "/v1/videos/image2video?pageSize=501",
        None,
    )
    .await;
    assert_eq!((status, json_of(&body)["code"].as_i64()), (400, Some(1201)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_answers_as_configured() {
    let faulty = |faults: Faults| MockConfig {
        faults,
        task_duration: Duration::from_millis(300),
        ..MockConfig::default()
    };
    let body = || Some(json!({"prompt": "p", "external_task_id": "x"}));
    let path = "/v1/videos/text2video";
    for (faults, want_status, want_code, creates) in [
        (
            Faults {
                server_error: 1.0,
                ..Faults::default()
            },
            500,
            Some(5000),
            0,
        ),
        (
            Faults {
                server_error_after_create: 1.0,
                ..Faults::default()
            },
            500,
            Some(5000),
            1,
        ),
        (
            Faults {
                rate_limited: 1.0,
                ..Faults::default()
            },
            429,
            Some(1302),
            0,
        ),
        (
            Faults {
                over_concurrency: 1.0,
                ..Faults::default()
            },
            429,
            Some(1303),
            0,
        ),
        (
            Faults {
                malformed: 1.0,
                ..Faults::default()
            },
            200,
            None,
            0,
        ),
        (
            Faults {
                hang: 1.0,
                ..Faults::default()
            },
            0,
            None,
            0,
        ),
    ] {
        let config = faulty(faults.clone());
        let mock = mock(config.clone()).await;
        let (status, text) = call(&mock, Some(&token(&config)), "POST", path, body()).await;
        assert_eq!(status, want_status, "{faults:?}: {text}");
        assert_eq!(
            json_of(&text)["code"].as_i64(),
            want_code,
            "{faults:?}: {text}"
        );
        assert_eq!(mock.submits("x"), creates, "{faults:?}");
    }
    // A task whose prompt carries the marker fails with Kling's risk-control message.
    let config = faulty(Faults::default());
    let mock = mock(config.clone()).await;
    let token = token(&config);
    let (_, created) = call(
        &mock,
        Some(&token),
        "POST",
        path,
        Some(json!({"prompt": format!("a {FAIL_MARKER} b")})),
    )
    .await;
    let id = json_of(&created)["data"]["task_id"]
        .as_str()
        .expect("id")
        .to_owned();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (_, body) = call(&mock, Some(&token), "GET", &format!("{path}/{id}"), None).await;
    let data = json_of(&body)["data"].clone();
    assert_eq!(data["task_status"], "failed");
    assert_eq!(
        data["task_status_msg"],
        "Failure to pass the risk control system"
    );
}
