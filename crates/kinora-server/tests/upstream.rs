//! A kinora server routing models to Kling channels on the mock Kling API: a task runs
//! upstream and its video is stored by kinora; a failing channel hands its tasks to the next
//! one; a channel whose account cannot pay is disabled until an operator enables it; a
//! channel's task limit holds; pushes from the upstream finish tasks without polling; and a
//! restart after a submit that may have reached the upstream adopts the upstream task instead
//! of paying for it twice.

use std::time::{Duration, Instant};

use common::{serve_with, Server};
use kinora_core::{AccountId, Dialect, JobKind, NewTask, TaskId, TaskKind, TaskState};
use kinora_server::config::{ChannelConfig, ChannelKind};
use kinora_server::{Config, Services};
use kinora_testkit::{Faults, MockConfig, MockKling};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

mod common;

async fn start_mock(faults: Faults, task_duration: Duration) -> MockKling {
    let config = MockConfig {
        task_duration,
        faults,
        ..MockConfig::default()
    };
    MockKling::start(config, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("mock")
}

fn channel(name: &str, mock: &MockKling) -> ChannelConfig {
    let defaults = MockConfig::default();
    ChannelConfig {
        name: name.into(),
        base_url: mock.base_url().to_owned(),
        access_key: defaults.access_key,
        secret_key: defaults.secret_key,
        ..ChannelConfig::default()
    }
}

/// A server with `channels`, `model` routed to `route`, and quick job retries.
async fn serve_routed(channels: Vec<ChannelConfig>, model: &str, route: &[&str]) -> Server {
    let model = model.to_owned();
    let route: Vec<String> = route.iter().map(|c| (*c).to_owned()).collect();
    serve_with(move |config| {
        config.queue.retry_base_ms = 50;
        config.channels = channels;
        config.routes.insert(model, route);
    })
    .await
}

/// Polls the unified API until the task ends (or a minute passes).
async fn until_done(server: &Server, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, _, task) = server.get(&server.key, &format!("/v1/videos/{id}")).await;
        if matches!(task["status"].as_str(), Some("completed" | "failed"))
            || Instant::now() > deadline
        {
            return task;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn submit(server: &Server, prompt: &str) -> (String, TaskId) {
    let (status, created) = server
        .submit(json!({"model": "kling-v2-6", "prompt": prompt}))
        .await;
    assert_eq!(status, 200, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let task_id = TaskId::parse_any(&id).expect("id");
    (id, task_id)
}

async fn channel_of(server: &Server, id: TaskId) -> Option<String> {
    server
        .services
        .store
        .load_task_for_worker(id)
        .await
        .expect("store")
        .expect("task")
        .channel
}

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
            ..ChannelConfig::default()
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_channel_hands_the_task_to_the_next_one() {
    let broken = start_mock(
        Faults {
            server_error: 1.0,
            ..Faults::default()
        },
        Duration::from_millis(300),
    )
    .await;
    let healthy = start_mock(Faults::default(), Duration::from_millis(300)).await;
    let (a, b) = (channel("a", &broken), channel("b", &healthy));
    let a = ChannelConfig {
        priority: 10,
        failover_after_attempts: 2,
        ..a
    };
    let server = serve_routed(vec![a, b], "kling-v2-6", &["b", "a"]).await;
    let (id, task_id) = submit(&server, "fails over").await;
    let done = until_done(&server, &id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        broken.create_requests(),
        2,
        "the higher priority channel is tried first, failover_after_attempts times"
    );
    assert_eq!(broken.task_count(), 0);
    assert_eq!(healthy.submits(&task_id.to_string()), 1);
    assert_eq!(channel_of(&server, task_id).await.as_deref(), Some("b"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ambiguous_create_is_adopted_on_retry_not_paid_twice() {
    let mock = start_mock(
        Faults {
            server_error_after_create: 1.0,
            ..Faults::default()
        },
        Duration::from_millis(300),
    )
    .await;
    let only = channel("only", &mock);
    let server = serve_routed(vec![only], "kling-v2-6", &["only"]).await;
    let (id, task_id) = submit(&server, "ambiguous").await;
    let done = until_done(&server, &id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        mock.create_requests(),
        1,
        "the retry looked it up and adopted it"
    );
    assert_eq!(mock.submits(&task_id.to_string()), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_account_that_cannot_pay_disables_its_channel_until_enabled() {
    let broke = start_mock(
        Faults {
            no_balance: 1.0,
            ..Faults::default()
        },
        Duration::from_millis(300),
    )
    .await;
    let healthy = start_mock(Faults::default(), Duration::from_millis(300)).await;
    let (a, b) = (channel("a", &broke), channel("b", &healthy));
    let a = ChannelConfig { priority: 10, ..a };
    let server = serve_routed(vec![a, b], "kling-v2-6", &["a", "b"]).await;
    let (first, first_id) = submit(&server, "first").await;
    assert_eq!(until_done(&server, &first).await["status"], "completed");
    assert_eq!(channel_of(&server, first_id).await.as_deref(), Some("b"));
    assert_eq!(broke.create_requests(), 1);

    let states = server
        .services
        .store
        .channel_states()
        .await
        .expect("states");
    let a = states.iter().find(|s| s.channel == "a").expect("a");
    assert!(a.disabled_at.is_some());
    assert!(
        a.reason.as_deref().is_some_and(|r| r.contains("1102")),
        "{a:?}"
    );
    let metrics = reqwest::get(format!("{}/metrics", server.base))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("kinora_channel_disabled{channel=\"a\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kinora_channel_disabled{channel=\"b\"} 0"),
        "{metrics}"
    );

    // A disabled channel is not asked again.
    let (second, _) = submit(&server, "second").await;
    assert_eq!(until_done(&server, &second).await["status"], "completed");
    assert_eq!(broke.create_requests(), 1);

    // Enabled again, it is tried first again (and disabled again, by the same account).
    assert!(server
        .services
        .store
        .enable_channel("a")
        .await
        .expect("enable"));
    let (third, _) = submit(&server, "third").await;
    assert_eq!(until_done(&server, &third).await["status"], "completed");
    assert_eq!(broke.create_requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_channel_makes_tasks_wait_their_turn() {
    // The upstream also refuses half of the creates with 1303: that is waiting, not failing.
    let mock = start_mock(
        Faults {
            over_concurrency: 0.5,
            ..Faults::default()
        },
        Duration::from_millis(400),
    )
    .await;
    let limited = channel("limited", &mock);
    let limited = ChannelConfig {
        max_in_flight: 2,
        ..limited
    };
    let server = serve_routed(vec![limited], "kling-v2-6", &["limited"]).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(submit(&server, &format!("task {n}")).await.0);
    }
    let mut most = 0;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let states = server
            .services
            .store
            .channel_states()
            .await
            .expect("states");
        let busy = states
            .iter()
            .find(|s| s.channel == "limited")
            .map_or(0, |s| s.in_flight);
        most = most.max(busy);
        if busy == 0 && mock.task_count() == 5 {
            break;
        }
        assert!(Instant::now() < deadline, "tasks never finished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(most <= 2, "the channel held {most} tasks at once");
    for id in &ids {
        assert_eq!(until_done(&server, id).await["status"], "completed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upstream_pushes_finish_tasks_without_polling() {
    let mock = start_mock(Faults::default(), Duration::from_millis(800)).await;
    let pushing = channel("pushing", &mock);
    let pushing = ChannelConfig {
        send_callbacks: true,
        ..pushing
    };
    let server = serve_routed(vec![pushing], "kling-v2-6", &["pushing"]).await;
    let started = Instant::now();
    let (id, task_id) = submit(&server, "pushed").await;
    let done = until_done(&server, &id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "finished by the push, before the first poll (5 s): {:?}",
        started.elapsed()
    );
    assert_eq!(mock.queries(), 0, "no poll was needed");
    let body = mock.create_body(&task_id.to_string()).expect("body");
    let url = body["callback_url"].as_str().expect("callback_url");
    assert!(url.starts_with(&format!(
        "{}/kinora/v1/upstream/tasks/{task_id}?token=",
        server.base
    )));

    // A push without the right token is refused and changes nothing.
    let forged = url.replace("token=", "token=00");
    let answer = reqwest::Client::new()
        .post(&forged)
        .json(&json!({"task_id": "x", "task_status": "failed", "task_info": {"external_task_id": task_id.to_string()}}))
        .send()
        .await
        .expect("post");
    assert_eq!(answer.status(), 404);
    let other = TaskId::new();
    let answer = reqwest::Client::new()
        .post(url.replace(&task_id.to_string(), &other.to_string()))
        .json(&json!({}))
        .send()
        .await
        .expect("post");
    assert_eq!(
        answer.status(),
        404,
        "a token is good for its own task only"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_after_an_unrecorded_submit_adopts_the_upstream_task() {
    let mock = start_mock(Faults::default(), Duration::from_millis(300)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config {
        data_dir: dir.path().join("data"),
        ..Config::default()
    };
    config.queue.poll_interval_ms = 50;
    config.channels = vec![channel("kling", &mock)];
    config
        .routes
        .insert("kling-v2-6".into(), vec!["kling".into()]);

    // What a process that crashed mid-submit leaves: the task queued on its channel, its job
    // waiting, and the upstream task created with kinora's id.
    let services = Services::open(config.clone()).await.expect("services");
    let account: AccountId = services
        .store
        .create_account("acme")
        .await
        .expect("account")
        .id;
    let task_id = TaskId::new();
    services
        .store
        .create_task(
            NewTask {
                id: task_id,
                account_id: account,
                dialect: Dialect::Unified,
                kind: TaskKind::Text2Video,
                model: "kling-v2-6".into(),
                request: json!({"prompt": "before the crash", "duration": 5}),
                external_task_id: None,
                callback_url: None,
                submission: None,
            },
            JobKind::SUBMIT_TASK,
        )
        .await
        .expect("task");
    assert!(services
        .store
        .assign_channel(task_id, "kling", None)
        .await
        .expect("assign"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let token = kinora_testkit::mint_jwt(
        &MockConfig::default().access_key,
        &MockConfig::default().secret_key,
        now,
        600,
    );
    let created = reqwest::Client::new()
        .post(format!("{}/v1/videos/text2video", mock.base_url()))
        .bearer_auth(token)
        .json(&json!({"model_name": "kling-v2-6", "prompt": "before the crash", "external_task_id": task_id.to_string()}))
        .send()
        .await
        .expect("create")
        .json::<Value>()
        .await
        .expect("json");
    assert_eq!(created["code"], 0, "{created}");
    drop(services);

    // The restarted process.
    let services = Services::open(config).await.expect("services");
    let stop = CancellationToken::new();
    let workers = tokio::spawn(services.workers().run(stop.clone()));
    let deadline = Instant::now() + Duration::from_secs(60);
    let task = loop {
        let task = services
            .store
            .load_task_for_worker(task_id)
            .await
            .expect("load")
            .expect("task");
        if task.state.is_terminal() || Instant::now() > deadline {
            break task;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    stop.cancel();
    let _ = workers.await;
    assert_eq!(
        task.state,
        TaskState::Succeeded,
        "{:?}",
        task.failure_message
    );
    assert_eq!(
        mock.submits(&task_id.to_string()),
        1,
        "adopted, not submitted again"
    );
    assert_eq!(mock.create_requests(), 1);
    assert_eq!(
        task.upstream_task_id.as_deref(),
        created["data"]["task_id"].as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_extension_runs_on_the_channel_that_made_its_source() {
    let mock = start_mock(Faults::default(), Duration::from_millis(300)).await;
    let kling = channel("kling", &mock);
    // The source model runs upstream; extensions are routed locally by default, yet must
    // follow their source.
    let server = serve_routed(vec![kling], "kling-v1-6", &["kling"]).await;
    let finished = |id: String| {
        let server = &server;
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let (_, body) = common::official_get(
                    server,
                    Some(&server.key),
                    &format!("/v1/videos/text2video/{id}"),
                )
                .await;
                let (_, extension) = common::official_get(
                    server,
                    Some(&server.key),
                    &format!("/v1/videos/video-extend/{id}"),
                )
                .await;
                for task in [&body["data"], &extension["data"]] {
                    if matches!(task["task_status"].as_str(), Some("succeed" | "failed")) {
                        return task.clone();
                    }
                }
                assert!(Instant::now() < deadline, "{body} {extension}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let (status, created) = common::official_post(
        &server,
        &server.key,
        "/v1/videos/text2video",
        json!({"model_name": "kling-v1-6", "prompt": "a boat at dawn"}),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let source = finished(created["data"]["task_id"].as_str().expect("id").to_owned()).await;
    assert_eq!(source["task_status"], "succeed", "{source}");
    let video_id = source["task_result"]["videos"][0]["id"]
        .as_str()
        .expect("video id");
    let source_id = TaskId::parse_any(source["task_id"].as_str().expect("id")).expect("id");

    let (status, created) = common::official_post(
        &server,
        &server.key,
        "/v1/videos/video-extend",
        json!({"video_id": video_id, "prompt": "the boat drifts on"}),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let extension = finished(created["data"]["task_id"].as_str().expect("id").to_owned()).await;
    assert_eq!(extension["task_status"], "succeed", "{extension}");
    let extension_id = TaskId::parse_any(extension["task_id"].as_str().expect("id")).expect("id");
    assert_eq!(
        channel_of(&server, extension_id).await.as_deref(),
        Some("kling")
    );
    let body = mock
        .create_body(&extension_id.to_string())
        .expect("sent upstream");
    assert_eq!(
        body["video_id"],
        format!("video-{}", channel_of_upstream(&server, source_id).await),
        "the upstream's own id of the source video: {body}"
    );
}

async fn channel_of_upstream(server: &Server, id: TaskId) -> String {
    server
        .services
        .store
        .load_task_for_worker(id)
        .await
        .expect("store")
        .expect("task")
        .upstream_task_id
        .expect("upstream id")
}
