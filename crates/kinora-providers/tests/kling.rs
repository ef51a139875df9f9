//! The `kling` provider against the mock Kling API, one case per fault kind: the happy path to
//! a stored MP4, the ambiguous 5xx that must not submit twice, busy answers, broken answers,
//! hung requests, refusals, and failed tasks.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kinora_core::{AccountId, Dialect, FailureClass, Task, TaskId, TaskKind, TaskState};
use kinora_providers::kling::{KlingChannel, KlingProvider};
use kinora_providers::{Progress, Provider, ProviderContext, ProviderError};
use kinora_storage::{ObjectKey, ObjectStorage, StorageConfig};
use kinora_testkit::{Faults, MockConfig, MockKling, FAIL_MARKER};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

async fn mock(faults: Faults) -> (MockKling, MockConfig) {
    let config = MockConfig {
        task_duration: Duration::from_millis(600),
        faults,
        ..MockConfig::default()
    };
    let mock = MockKling::start(config.clone(), "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("mock");
    (mock, config)
}

fn provider(mock: &MockKling, config: &MockConfig) -> KlingProvider {
    KlingProvider::with_timeout(
        KlingChannel::new(mock.base_url(), &config.access_key, &config.secret_key),
        Duration::from_secs(2),
    )
    .expect("provider")
}

fn context() -> ProviderContext {
    ProviderContext::new(
        ObjectStorage::open(&StorageConfig::Memory).expect("storage"),
        CancellationToken::new(),
    )
}

fn task(prompt: &str) -> Task {
    Task {
        id: TaskId::new(),
        account_id: AccountId::new(),
        dialect: Dialect::Official,
        kind: TaskKind::Text2Video,
        model: "kling-v2-6".into(),
        state: TaskState::Queued,
        request: json!({"prompt": prompt, "mode": "std", "duration": 5, "aspect_ratio": "16:9"}),
        external_task_id: None,
        callback_url: None,
        channel: None,
        upstream_task_id: None,
        result: None,
        failure_class: None,
        failure_message: None,
        created_at: 0,
        updated_at: 0,
        submitted_at: None,
        started_at: None,
        finished_at: None,
        submission: None,
        charged: None,
    }
}

/// Polls until the task ends; returns the last progress and every distinct one seen.
async fn poll_to_end(
    provider: &KlingProvider,
    task: &Task,
    cx: &ProviderContext,
) -> (Progress, usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut polls = 0;
    loop {
        polls += 1;
        let progress = provider.poll(task, cx).await.expect("poll");
        if matches!(
            progress,
            Progress::Succeeded { .. } | Progress::Failed { .. }
        ) || Instant::now() > deadline
        {
            return (progress, polls);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_runs_upstream_and_its_video_is_stored() {
    let (mock, config) = mock(Faults::default()).await;
    let provider = provider(&mock, &config);
    let cx = context();
    let mut task = task("a fox in the snow");
    let submission = provider.submit(&task, &cx).await.expect("submit");
    assert_eq!(
        mock.submits(&task.id.to_string()),
        1,
        "our task id is the external id"
    );
    task.upstream_task_id = submission.upstream_task_id;
    let (progress, polls) = poll_to_end(&provider, &task, &cx).await;
    assert!(polls > 1, "it was pending or running first");
    let Progress::Succeeded { result } = progress else {
        panic!("{progress:?}");
    };
    let key = ObjectKey::parse(result["videos"][0]["key"].as_str().expect("key")).expect("key");
    let stored = cx.storage.get_bytes(&key).await.expect("stored");
    let info = kinora_media::video::probe_video("video", &stored)
        .await
        .expect("MP4");
    assert_eq!(info.duration_ms, 5000);
    assert_eq!(result["videos"][0]["frame_count"], 120);
    // Submitting again (a crashed worker's retry) adopts the upstream task.
    let again = provider.submit(&task, &cx).await.expect("resubmit");
    assert_eq!(again.upstream_task_id, task.upstream_task_id);
    assert_eq!(mock.submits(&task.id.to_string()), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ambiguous_failure_is_looked_up_not_submitted_twice() {
    let (mock, config) = mock(Faults {
        server_error_after_create: 1.0,
        ..Faults::default()
    })
    .await;
    let provider = provider(&mock, &config);
    let cx = context();
    let task = task("ambiguous");
    let first = provider.submit(&task, &cx).await;
    assert!(
        matches!(first, Err(ProviderError::Transient { .. })),
        "{first:?}"
    );
    let second = provider.submit(&task, &cx).await.expect("adopted");
    assert!(second.upstream_task_id.is_some());
    assert_eq!(mock.submits(&task.id.to_string()), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fault_is_classified() {
    for (faults, expect) in [
        (
            Faults {
                rate_limited: 1.0,
                ..Faults::default()
            },
            "busy",
        ),
        (
            Faults {
                over_concurrency: 1.0,
                ..Faults::default()
            },
            "busy",
        ),
        (
            Faults {
                server_error: 1.0,
                ..Faults::default()
            },
            "transient",
        ),
        (
            Faults {
                malformed: 1.0,
                ..Faults::default()
            },
            "transient",
        ),
        (
            Faults {
                hang: 1.0,
                ..Faults::default()
            },
            "transient",
        ),
        (
            Faults {
                no_balance: 1.0,
                ..Faults::default()
            },
            "unusable",
        ),
    ] {
        let (mock, config) = mock(faults.clone()).await;
        let provider = provider(&mock, &config);
        let task = task("p");
        let outcome = provider.submit(&task, &context()).await;
        let kind = match &outcome {
            Err(ProviderError::Busy { .. }) => "busy",
            Err(ProviderError::Transient { .. }) => "transient",
            Err(ProviderError::Permanent { .. }) => "permanent",
            Err(ProviderError::ChannelUnusable { .. }) => "unusable",
            Ok(_) => "accepted",
        };
        assert_eq!(kind, expect, "{faults:?}: {outcome:?}");
        assert_eq!(mock.submits(&task.id.to_string()), 0, "{faults:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_failed_tasks_end_the_task_with_the_upstream_message() {
    let (mock, config) = mock(Faults::default()).await;
    // A wrong secret: every call is refused; a re-minted token does not help.
    let wrong = KlingProvider::with_timeout(
        KlingChannel::new(mock.base_url(), &config.access_key, "not-the-secret"),
        Duration::from_secs(2),
    )
    .expect("provider");
    let outcome = wrong.submit(&task("p"), &context()).await;
    assert!(
        matches!(&outcome, Err(ProviderError::ChannelUnusable { message }) if message.contains("1002")),
        "{outcome:?}"
    );
    // A task the upstream's review rejects fails as a content-policy failure.
    let provider = provider(&mock, &config);
    let cx = context();
    let mut rejected = task(&format!("a {FAIL_MARKER} prompt"));
    rejected.upstream_task_id = provider
        .submit(&rejected, &cx)
        .await
        .expect("submit")
        .upstream_task_id;
    let (progress, _) = poll_to_end(&provider, &rejected, &cx).await;
    assert_eq!(
        progress,
        Progress::Failed {
            class: FailureClass::ContentPolicy,
            message: "Failure to pass the risk control system".into()
        }
    );
}

/// A receiver for the mock's callbacks: every posted body, in order.
async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let store = received.clone();
    let app = axum::Router::new().route(
        "/push",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let store = store.clone();
            async move {
                store.lock().expect("lock").push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/push", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_changes_replace_queries_and_a_fresh_submit_skips_the_lookup() {
    let (mock, config) = mock(Faults::default()).await;
    let (url, received) = receiver().await;
    let mut channel = KlingChannel::new(mock.base_url(), &config.access_key, &config.secret_key);
    channel.send_callbacks = true;
    let provider = KlingProvider::with_timeout(channel, Duration::from_secs(2)).expect("provider");
    let mut cx = context();
    cx.first_submit = true;
    cx.upstream_callback_url = Some(url.clone());
    let mut task = task("pushed");
    let submission = provider.submit(&task, &cx).await.expect("submit");
    assert_eq!(mock.queries(), 0, "a first submit is not looked up first");
    let body = mock.create_body(&task.id.to_string()).expect("body");
    assert_eq!(body["callback_url"], url.as_str());
    task.upstream_task_id = submission.upstream_task_id.clone();

    // The mock posts `processing`, then `succeed`.
    let deadline = Instant::now() + Duration::from_secs(15);
    let ended = loop {
        let last = received.lock().expect("lock").last().cloned();
        if let Some(last) = last.filter(|l| l["task_status"] == "succeed") {
            break last;
        }
        assert!(Instant::now() < deadline, "no push arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let statuses: Vec<Value> = received
        .lock()
        .expect("lock")
        .iter()
        .map(|b| b["task_status"].clone())
        .collect();
    assert_eq!(statuses, [json!("processing"), json!("succeed")]);
    assert_eq!(ended["task_info"]["external_task_id"], task.id.to_string());

    // A push about another task is not believed: the poll asks the upstream.
    let mut stranger = ended.clone();
    stranger["task_id"] = json!("someone-else");
    cx.pushed = Some(stranger);
    let queries = mock.queries();
    let progress = provider.poll(&task, &cx).await.expect("poll");
    assert!(matches!(progress, Progress::Succeeded { .. }));
    assert_eq!(mock.queries(), queries + 1);

    // The task's own push is used as is: no query.
    cx.pushed = Some(ended);
    let progress = provider.poll(&task, &cx).await.expect("poll");
    let Progress::Succeeded { result } = progress else {
        panic!("{progress:?}");
    };
    assert_eq!(mock.queries(), queries + 1, "the push answered the poll");
    assert_eq!(
        result["upstream"]["task_id"].as_str(),
        task.upstream_task_id.as_deref()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polls_start_at_five_seconds_grow_by_half_and_share_the_query_rate() {
    let (mock, config) = mock(Faults::default()).await;
    let mut channel = KlingChannel::new(mock.base_url(), &config.access_key, &config.secret_key);
    channel.max_queries_per_second = 2;
    let provider = KlingProvider::with_timeout(channel, Duration::from_secs(2)).expect("provider");
    let cx = context();
    let one = task("one");
    let secs = |age: u64| {
        provider
            .next_poll_delay(&one, Duration::from_secs(age))
            .as_secs_f64()
    };
    assert_eq!(secs(0), 5.0);
    assert_eq!(secs(15), 7.5);
    assert_eq!(secs(40), 20.0);
    assert_eq!(secs(3600), 30.0, "capped");
    // 100 followed tasks at 2 queries a second: each is polled every 50 s at most.
    for n in 0..100 {
        provider
            .submit(&task(&format!("t{n}")), &cx)
            .await
            .expect("submit");
    }
    assert_eq!(secs(0), 50.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_extension_names_the_upstream_video_and_inherits_the_rest() {
    let (mock, config) = mock(Faults::default()).await;
    let provider = provider(&mock, &config);
    let cx = context();
    let mut extension = task("the boat drifts on");
    extension.kind = TaskKind::VideoExtend;
    extension.request = json!({
        "prompt": "the boat drifts on",
        "mode": "pro",
        "duration": 5,
        "extend": {
            "source_task_id": TaskId::new(),
            "video": {"key": "tasks/x/outputs/video.mp4"},
            "source_channel": "kling-a",
            "source_upstream_video_id": "video-123",
        },
    });
    provider.submit(&extension, &cx).await.expect("submit");
    let body = mock.create_body(&extension.id.to_string()).expect("body");
    assert_eq!(body["video_id"], "video-123");
    assert_eq!(body["prompt"], "the boat drifts on");
    for inherited in ["model_name", "mode", "duration"] {
        assert!(
            body.get(inherited).is_none(),
            "{inherited} is inherited: {body}"
        );
    }
    // A source the local engine made has no upstream video: refused, clearly.
    let mut local = extension.clone();
    local.id = TaskId::new();
    local.request["extend"]["source_upstream_video_id"] = Value::Null;
    let refused = provider.submit(&local, &cx).await;
    assert!(
        matches!(&refused, Err(ProviderError::Permanent { message, .. }) if message.contains("extends only its own videos")),
        "{refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_the_upstream_lost_fails_after_three_misses_in_a_row() {
    let (mock, config) = mock(Faults::default()).await;
    let provider = provider(&mock, &config);
    let mut lost = task("lost");
    lost.upstream_task_id = Some("never-created".into());
    let mut cx = context();
    for attempt in 1..=2 {
        cx.attempt = attempt;
        let outcome = provider.poll(&lost, &cx).await;
        assert!(
            matches!(&outcome, Err(ProviderError::Transient { .. })),
            "miss {attempt}: {outcome:?}"
        );
    }
    cx.attempt = 3;
    let outcome = provider.poll(&lost, &cx).await;
    assert!(
        matches!(
            &outcome,
            Err(ProviderError::Permanent {
                class: FailureClass::UpstreamError,
                ..
            })
        ),
        "{outcome:?}"
    );
}
