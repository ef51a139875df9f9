//! The worker pool and the task pipeline, driven for real on SQLite and PostgreSQL.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kinora_core::time::SystemClock;
use kinora_core::{
    AccountId, Dialect, FailureClass, JobKind, NewTask, TaskId, TaskKind, TaskState,
};
use kinora_providers::scripted::{ScriptedConfig, ScriptedProvider};
use kinora_providers::Providers;
use kinora_server::config::QueueConfig;
use kinora_server::pipeline::{OrphanSweeper, Pipeline};
use kinora_server::worker::{JobContext, JobError, JobHandler, JobOutcome, Workers};
use kinora_storage::{ObjectStorage, StorageConfig};
use kinora_store::testing::TestDatabase;
use kinora_store::{Job, JobState, NewJob, Store};
use serde_json::json;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

const COUNT: JobKind = JobKind::from_static("test.count");

fn fast_queue(concurrency: usize) -> QueueConfig {
    QueueConfig {
        concurrency,
        lease_seconds: 30,
        heartbeat_seconds: 1,
        poll_interval_ms: 50,
        max_attempts: 3,
        retry_base_ms: 10,
        retry_max_seconds: 1,
        sweep_interval_seconds: 1,
    }
}

macro_rules! on_both_backends {
    ($($scenario:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $scenario() {
                    let db = kinora_store::testing::sqlite(std::sync::Arc::new(kinora_core::time::SystemClock)).await;
                    super::$scenario(db).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $scenario() {
                    let name = concat!("postgres::", stringify!($scenario));
                    let clock = std::sync::Arc::new(kinora_core::time::SystemClock);
                    let Some(db) = kinora_store::testing::postgres(name, clock).await else { return };
                    super::$scenario(db).await;
                }
            )+
        }
    };
}

on_both_backends!(
    pool_runs_every_job_exactly_once,
    failing_job_retries_then_dead_letters_and_is_given_up,
    shutdown_releases_unfinished_jobs,
    pipeline_takes_tasks_to_their_end,
    sweeper_fails_orphaned_tasks,
);

/// Counts runs per job id.
struct Counter(Arc<Mutex<HashMap<i64, u32>>>);

#[async_trait]
impl JobHandler for Counter {
    fn kind(&self) -> JobKind {
        COUNT
    }
    async fn run(&self, job: &Job, _: &JobContext) -> Result<JobOutcome, JobError> {
        *self.0.lock().await.entry(job.id).or_default() += 1;
        Ok(JobOutcome::Done)
    }
}

async fn wait_for(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn start(workers: Workers) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let stop = CancellationToken::new();
    let handle = tokio::spawn(workers.run(stop.clone()));
    (stop, handle)
}

async fn pool_runs_every_job_exactly_once(db: TestDatabase) {
    const JOBS: usize = 2000;
    let store = db.store;
    let runs: Arc<Mutex<HashMap<i64, u32>>> = Arc::default();
    let workers = Workers::new(store.clone(), fast_queue(8), Duration::from_secs(5))
        .with_handler(Arc::new(Counter(runs.clone())));
    let (stop, handle) = start(workers);
    // Enqueue while the pool is already running, so wake-ups and claims interleave.
    let enqueue = (0..JOBS).map(|n| {
        let store = store.clone();
        async move {
            store
                .enqueue_job(NewJob::new(COUNT, json!({ "n": n })))
                .await
                .expect("enqueue")
        }
    });
    futures::future::join_all(enqueue).await;
    wait_for("all jobs done", Duration::from_secs(120), async || {
        store.job_counts().await.expect("counts").done == JOBS as u64
    })
    .await;
    stop.cancel();
    handle.await.expect("pool stops");
    let runs = runs.lock().await;
    assert_eq!(runs.len(), JOBS);
    assert!(runs.values().all(|&n| n == 1), "a job ran twice");
}

struct AlwaysFails {
    runs: AtomicU32,
    given_up: Mutex<Vec<(i64, String)>>,
}

#[async_trait]
impl JobHandler for AlwaysFails {
    fn kind(&self) -> JobKind {
        COUNT
    }
    async fn run(&self, _: &Job, _: &JobContext) -> Result<JobOutcome, JobError> {
        let n = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
        Err(JobError::Retry(format!("upstream 5000 on run {n}")))
    }
    async fn given_up(&self, job: &Job, error: &str) {
        self.given_up.lock().await.push((job.id, error.to_owned()));
    }
}

async fn failing_job_retries_then_dead_letters_and_is_given_up(db: TestDatabase) {
    let store = db.store;
    let handler = Arc::new(AlwaysFails {
        runs: AtomicU32::new(0),
        given_up: Mutex::default(),
    });
    let workers = Workers::new(store.clone(), fast_queue(2), Duration::from_secs(5))
        .with_handler(handler.clone());
    let (stop, handle) = start(workers);
    let id = store
        .enqueue_job(NewJob::new(COUNT, json!({})).max_attempts(3))
        .await
        .expect("enqueue");
    wait_for("dead letter", Duration::from_secs(30), async || {
        store
            .get_job(id)
            .await
            .expect("get")
            .is_some_and(|j| j.state == JobState::Dead)
    })
    .await;
    wait_for("given_up", Duration::from_secs(5), async || {
        !handler.given_up.lock().await.is_empty()
    })
    .await;
    stop.cancel();
    handle.await.expect("pool stops");
    assert_eq!(
        handler.runs.load(Ordering::SeqCst),
        3,
        "max_attempts runs, no more"
    );
    let job = store.get_job(id).await.expect("get").expect("exists");
    assert_eq!(job.last_error.as_deref(), Some("upstream 5000 on run 3"));
    assert_eq!(
        *handler.given_up.lock().await,
        vec![(id, "upstream 5000 on run 3".to_owned())]
    );
}

/// Runs until told to stop.
struct Endless;

#[async_trait]
impl JobHandler for Endless {
    fn kind(&self) -> JobKind {
        COUNT
    }
    async fn run(&self, _: &Job, cx: &JobContext) -> Result<JobOutcome, JobError> {
        cx.cancel.cancelled().await;
        Err(JobError::Retry("stopped".into()))
    }
}

async fn shutdown_releases_unfinished_jobs(db: TestDatabase) {
    let store = db.store;
    let workers = Workers::new(store.clone(), fast_queue(4), Duration::from_millis(300))
        .with_handler(Arc::new(Endless));
    let (stop, handle) = start(workers);
    let ids = [
        store
            .enqueue_job(NewJob::new(COUNT, json!({"n": 1})))
            .await
            .expect("enqueue"),
        store
            .enqueue_job(NewJob::new(COUNT, json!({"n": 2})))
            .await
            .expect("enqueue"),
    ];
    wait_for("both leased", Duration::from_secs(10), async || {
        store.job_counts().await.expect("counts").running == 2
    })
    .await;
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .expect("stops after the grace period")
        .expect("join");
    for id in ids {
        let job = store.get_job(id).await.expect("get").expect("exists");
        assert_eq!(job.state, JobState::Queued, "released, not left leased");
        assert_eq!(job.lease_owner, None);
        assert_eq!(job.attempts, 0, "a release is not an attempt");
    }
}

fn new_task(account: AccountId, model: &str, prompt: &str) -> NewTask {
    NewTask {
        id: TaskId::new(),
        account_id: account,
        dialect: Dialect::Official,
        kind: TaskKind::Text2Video,
        model: model.into(),
        request: json!({ "prompt": prompt }),
        external_task_id: None,
        callback_url: None,
        submission: None,
    }
}

fn pipeline(store: Arc<dyn Store>, storage: ObjectStorage) -> Arc<Pipeline> {
    let mut providers = Providers::new();
    let script = ScriptedConfig {
        submit_delay_ms: 20,
        running_polls: 1,
        poll_interval_ms: 20,
    };
    providers.add_channel("scripted", Arc::new(ScriptedProvider::new(script)));
    providers.route("kling-v2-6", vec!["scripted".into()]);
    Arc::new(Pipeline {
        outbox: test_outbox(store.clone()),
        store,
        storage,
        providers: Arc::new(providers),
        clock: Arc::new(SystemClock),
        events: Default::default(),
        receiver: None,
        disabled: Default::default(),
    })
}

fn workers_for(pipeline: &Arc<Pipeline>, store: Arc<dyn Store>) -> Workers {
    let mut workers = Workers::new(store, fast_queue(4), Duration::from_secs(5))
        .with_sweeper(Arc::new(OrphanSweeper(pipeline.clone())));
    for handler in pipeline.handlers() {
        workers = workers.with_handler(handler);
    }
    workers
}

async fn pipeline_takes_tasks_to_their_end(db: TestDatabase) {
    let store = db.store;
    let storage = ObjectStorage::open(&StorageConfig::Memory).expect("storage");
    let pipeline = pipeline(store.clone(), storage.clone());
    let (stop, handle) = start(workers_for(&pipeline, store.clone()));
    let account = store.create_account("acme").await.expect("account");
    let submit = || JobKind::SUBMIT_TASK;
    let (ok, _) = store
        .create_task(
            new_task(account.id, "kling-v2-6", "a lighthouse at dawn"),
            submit(),
        )
        .await
        .expect("task");
    let (refused, _) = store
        .create_task(
            new_task(account.id, "kling-v2-6", "fail: prompt flagged"),
            submit(),
        )
        .await
        .expect("task");
    let (unrouted, _) = store
        .create_task(new_task(account.id, "kling-v9", "anything"), submit())
        .await
        .expect("task");

    wait_for("all tasks finished", Duration::from_secs(30), async || {
        store
            .unfinished_task_ids(10)
            .await
            .expect("unfinished")
            .is_empty()
    })
    .await;
    stop.cancel();
    handle.await.expect("pool stops");

    let ok = store
        .get_task(account.id, ok.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(ok.state, TaskState::Succeeded);
    assert_eq!(ok.channel.as_deref(), Some("scripted"));
    assert_eq!(ok.upstream_task_id, Some(format!("scripted-{}", ok.id)));
    assert!(
        ok.submitted_at.is_some() && ok.started_at.is_some() && ok.finished_at.is_some(),
        "{ok:?}"
    );
    let key = ok
        .result
        .as_ref()
        .and_then(|r| r["videos"][0]["key"].as_str())
        .expect("output key");
    assert!(
        key.starts_with(&format!("tasks/{}/outputs/", ok.id)),
        "{key}"
    );
    let output = storage
        .get_bytes(&kinora_storage::ObjectKey::parse(key).expect("key"))
        .await
        .expect("stored output");
    assert!(String::from_utf8_lossy(&output).contains(&ok.id.to_string()));

    let refused = store
        .get_task(account.id, refused.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(refused.state, TaskState::Failed);
    assert_eq!(refused.failure_class, Some(FailureClass::ContentPolicy));
    assert_eq!(refused.failure_message.as_deref(), Some("prompt flagged"));

    let unrouted = store
        .get_task(account.id, unrouted.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(unrouted.state, TaskState::Failed);
    assert_eq!(
        unrouted.failure_message.as_deref(),
        Some("no channel serves model `kling-v9`")
    );

    let counts = store.job_counts().await.expect("counts");
    assert_eq!(
        (counts.queued, counts.running, counts.dead, counts.aborted),
        (0, 0, 0, 0),
        "{counts:?}"
    );
}

async fn sweeper_fails_orphaned_tasks(db: TestDatabase) {
    let store = db.store;
    let storage = ObjectStorage::open(&StorageConfig::Memory).expect("storage");
    let pipeline = pipeline(store.clone(), storage);
    let account = store.create_account("acme").await.expect("account");
    // A job that never reached its handler's `given_up` (say, its lease expired on the last attempt).
    let first = JobKind::SUBMIT_TASK;
    let (task, job) = store
        .create_task(new_task(account.id, "kling-v2-6", "x"), first)
        .await
        .expect("task");
    store
        .claim_jobs("gone", &[JobKind::SUBMIT_TASK], 1, Duration::from_secs(60))
        .await
        .expect("claim");
    store
        .abort_job(job, "gone", "process died")
        .await
        .expect("abort");

    let (stop, handle) = start(workers_for(&pipeline, store.clone()));
    wait_for("orphan failed", Duration::from_secs(10), async || {
        store
            .get_task(account.id, task.id)
            .await
            .expect("get")
            .is_some_and(|t| t.state == TaskState::Failed)
    })
    .await;
    stop.cancel();
    handle.await.expect("pool stops");
    let task = store
        .get_task(account.id, task.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(task.failure_class, Some(FailureClass::Internal));
}

/// An outbox whose result URLs point nowhere in particular: these tasks have no callbacks.
fn test_outbox(
    store: Arc<dyn kinora_store::Store>,
) -> Arc<kinora_server::callbacks::outbox::Outbox> {
    Arc::new(kinora_server::callbacks::outbox::Outbox::new(
        store,
        kinora_server::files::FileUrls::new("http://127.0.0.1".into(), b"test-key", 30),
    ))
}
