//! A kinora server routing a model to a Kling channel: the task runs on the mock Kling API and
//! its result video is stored by kinora, whatever dialect asked for it.

use std::time::{Duration, Instant};

use common::serve_with;
use kinora_server::config::{ChannelConfig, ChannelKind};
use kinora_testkit::{MockConfig, MockKling};
use serde_json::json;

mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_routed_model_runs_on_the_kling_channel() {
    let mock_config = MockConfig {
        task_duration: Duration::from_millis(500),
        ..MockConfig::default()
    };
    let mock = MockKling::start(mock_config.clone(), "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("mock");
    let base_url = mock.base_url().to_owned();
    let server = serve_with(move |config| {
        config.channels = vec![ChannelConfig {
            name: "mock-kling".into(),
            kind: ChannelKind::Kling,
            base_url,
            access_key: mock_config.access_key.clone(),
            secret_key: mock_config.secret_key.clone(),
        }];
        config.routes.insert(
            "kling-v2-6".into(),
            vec!["mock-kling".into(), "local".into()],
        );
    })
    .await;
    let (status, created) = server
        .submit(json!({"model": "Kling-V2.6", "prompt": "rendered upstream"}))
        .await;
    assert_eq!(status, 200, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    let done = loop {
        let (_, _, task) = server.get(&server.key, &format!("/v1/videos/{id}")).await;
        if matches!(task["status"].as_str(), Some("completed" | "failed"))
            || Instant::now() > deadline
        {
            break task;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(done["status"], "completed", "{done}");
    let task_id = kinora_core::TaskId::parse_any(&id).expect("id");
    assert_eq!(
        mock.submits(&task_id.to_string()),
        1,
        "submitted once, with our id"
    );
    let stored = server
        .services
        .store
        .load_task_for_worker(task_id)
        .await
        .expect("store")
        .expect("task");
    assert_eq!(stored.channel.as_deref(), Some("mock-kling"));
    // The video URL is kinora's own, serving the stored copy.
    let url = done["video_url"].as_str().expect("video_url");
    assert!(url.starts_with(&server.base), "{url}");
    let bytes = reqwest::get(url)
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes");
    let info = kinora_media::video::probe_video("video", &bytes)
        .await
        .expect("a real MP4");
    assert_eq!(info.duration_ms, 5000);
}
