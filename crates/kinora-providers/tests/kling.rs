//! The `kling` provider against the mock Kling API, one case per fault kind: the happy path to
//! a stored MP4, the ambiguous 5xx that must not submit twice, busy answers, broken answers,
//! hung requests, refusals, and failed tasks.

use std::time::{Duration, Instant};

use kinora_core::{AccountId, Dialect, FailureClass, Task, TaskId, TaskKind, TaskState};
use kinora_providers::kling::{KlingChannel, KlingProvider};
use kinora_providers::{Progress, Provider, ProviderContext, ProviderError};
use kinora_storage::{ObjectKey, ObjectStorage, StorageConfig};
use kinora_testkit::{Faults, MockConfig, MockKling, FAIL_MARKER};
use serde_json::json;
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
        KlingChannel {
            base_url: mock.base_url().to_owned(),
            access_key: config.access_key.clone(),
            secret_key: config.secret_key.clone(),
        },
        Duration::from_secs(2),
    )
    .expect("provider")
}

fn context() -> ProviderContext {
    ProviderContext {
        storage: ObjectStorage::open(&StorageConfig::Memory).expect("storage"),
        cancel: CancellationToken::new(),
    }
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
    ] {
        let (mock, config) = mock(faults.clone()).await;
        let provider = provider(&mock, &config);
        let task = task("p");
        let outcome = provider.submit(&task, &context()).await;
        let kind = match &outcome {
            Err(ProviderError::Busy { .. }) => "busy",
            Err(ProviderError::Transient { .. }) => "transient",
            Err(ProviderError::Permanent { .. }) => "permanent",
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
        KlingChannel {
            base_url: mock.base_url().to_owned(),
            access_key: config.access_key.clone(),
            secret_key: "not-the-secret".into(),
        },
        Duration::from_secs(2),
    )
    .expect("provider");
    let outcome = wrong.submit(&task("p"), &context()).await;
    assert!(
        matches!(&outcome, Err(ProviderError::Transient { message }) if message.contains("1002")),
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
