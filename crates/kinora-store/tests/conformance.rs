//! One story for the store and its queue, told against SQLite and against PostgreSQL.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kinora_core::time::{Clock, ManualClock, SystemClock};
use kinora_core::{
    AccountId, Dialect, ErrorCode, FailureClass, JobKind, NewTask, Submission, TaskId, TaskKind,
    TaskState,
};
use kinora_store::testing::{self, TestDatabase};
use kinora_store::{
    Admission, CallbackAttempt, CallbackNext, CallbackPhase, CallbackState, ElementCreation,
    ElementImage, HoldOutcome, JobState, KeyLimits, NewAccessKey, NewApiKey, NewCallbackEvent,
    NewElement, NewJob, PriceHold, Purse, ReferenceType, RetryOutcome, Store, SubmitTerms,
    TaskTransition, DELIVER_CALLBACK,
};
use serde_json::json;
use tokio::sync::Mutex;

const START_MS: i64 = 1_800_000_000_000;
const WORK: JobKind = JobKind::from_static("test.work");
const OTHER: JobKind = JobKind::from_static("test.other");

fn manual_clock() -> ManualClock {
    ManualClock::starting_at(START_MS)
}

fn new_task(account: AccountId, external: Option<&str>) -> NewTask {
    NewTask {
        id: TaskId::new(),
        account_id: account,
        dialect: Dialect::Unified,
        kind: TaskKind::Text2Video,
        model: "kling-v2-6".into(),
        request: json!({"prompt": "a red fox in snow", "duration": 5}),
        external_task_id: external.map(str::to_owned),
        callback_url: None,
        submission: None,
    }
}

async fn the_creating_request_is_kept(db: TestDatabase, _clock: ManualClock) {
    let store = db.store;
    let account = store.create_account("a").await.expect("account").id;
    let submission = Submission {
        trace_id: "0a907f69-4ae2-4a08-b34c-ee15c1c47077".into(),
        body: json!({"action": "text2video", "prompt": "a mug", "async": true}),
    };
    let (created, _) = store
        .create_task(
            NewTask {
                submission: Some(submission.clone()),
                ..new_task(account, None)
            },
            submit_job(),
        )
        .await
        .expect("create");
    assert_eq!(created.submission.as_ref(), Some(&submission));
    let read = store
        .get_task(account, created.id)
        .await
        .expect("get")
        .expect("task");
    assert_eq!(read.submission, Some(submission));
    let (bare, _) = store
        .create_task(new_task(account, None), submit_job())
        .await
        .expect("create");
    assert_eq!(bare.submission, None);
    // States of many tasks in one read; unknown ids are left out.
    let mut states = store
        .task_states(&[created.id, TaskId::new(), bare.id])
        .await
        .expect("states");
    states.sort_by_key(|(id, _)| *id);
    let mut wanted = vec![
        (created.id, TaskState::Queued),
        (bare.id, TaskState::Queued),
    ];
    wanted.sort_by_key(|(id, _)| *id);
    assert_eq!(states, wanted);
}

async fn callbacks_are_queued_once_per_phase_and_recorded(db: TestDatabase, clock: ManualClock) {
    let store = db.store;
    let a = store.create_account("a").await.expect("a").id;
    let b = store.create_account("b").await.expect("b").id;
    let (task, _) = store
        .create_task(
            NewTask {
                callback_url: Some("https://example.com/hook".into()),
                ..new_task(a, None)
            },
            submit_job(),
        )
        .await
        .expect("task");
    let event = |phase: CallbackPhase, id: &str| NewCallbackEvent {
        id: id.to_owned(),
        task_id: task.id,
        account_id: a,
        phase,
        url: "https://example.com/hook".into(),
        body: format!("{{\"phase\":\"{}\"}}", phase.as_str()),
    };
    // Once per phase; each with its delivery job.
    assert!(store
        .enqueue_callback_event(event(CallbackPhase::Ended, "msg_2"))
        .await
        .expect("ended"));
    assert!(store
        .enqueue_callback_event(event(CallbackPhase::Processing, "msg_1"))
        .await
        .expect("processing"));
    assert!(!store
        .enqueue_callback_event(event(CallbackPhase::Ended, "msg_3"))
        .await
        .expect("again"));
    let jobs = store
        .claim_jobs("w", &[DELIVER_CALLBACK], 10, Duration::from_secs(30))
        .await
        .expect("claim");
    assert_eq!(jobs.len(), 2);
    // Listed in delivery order, whatever the insertion order.
    let events = store.task_callback_events(task.id).await.expect("events");
    assert_eq!(
        events.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        ["msg_1", "msg_2"]
    );
    assert!(events
        .iter()
        .all(|e| e.state == CallbackState::Pending && e.attempts == 0));
    // Attempts: a failure with a retry time, then a delivery; a repeated record changes nothing.
    let at = clock.now_ms();
    let failed = CallbackAttempt {
        event_id: "msg_1".into(),
        attempt: 1,
        at,
        http_status: Some(500),
        latency_ms: 12,
        error: Some("the receiver answered HTTP 500".into()),
    };
    store
        .record_callback_attempt(failed.clone(), CallbackNext::RetryAt(at + 30_000))
        .await
        .expect("failed attempt");
    let pending = store
        .get_callback_event("msg_1")
        .await
        .expect("get")
        .expect("event");
    assert_eq!(
        (pending.state, pending.attempts, pending.next_attempt_at),
        (CallbackState::Pending, 1, at + 30_000)
    );
    let delivered = CallbackAttempt {
        attempt: 2,
        at: at + 30_000,
        http_status: Some(204),
        error: None,
        ..failed.clone()
    };
    store
        .record_callback_attempt(delivered.clone(), CallbackNext::Delivered)
        .await
        .expect("delivered");
    store
        .record_callback_attempt(failed.clone(), CallbackNext::GiveUp)
        .await
        .expect("a late duplicate");
    let done = store
        .get_callback_event("msg_1")
        .await
        .expect("get")
        .expect("event");
    assert_eq!(
        (done.state, done.attempts, done.finished_at),
        (CallbackState::Delivered, 2, Some(at + 30_000))
    );
    let listed = store
        .list_callback_attempts(a, task.id)
        .await
        .expect("list");
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].1, vec![failed, delivered]);
    assert!(listed[1].1.is_empty());
    assert!(store
        .list_callback_attempts(b, task.id)
        .await
        .expect("other")
        .is_empty());
    // A running task whose processing event is missing is found; once recorded it is not.
    let (quiet, _) = store
        .create_task(
            NewTask {
                callback_url: Some("https://example.com/hook".into()),
                ..new_task(a, None)
            },
            submit_job(),
        )
        .await
        .expect("task");
    store
        .transition_task(quiet.id, TaskTransition::Running)
        .await
        .expect("running");
    clock.advance(Duration::from_secs(60));
    let missing = store
        .tasks_missing_callbacks(clock.now_ms(), 10)
        .await
        .expect("missing");
    assert_eq!(missing.iter().map(|t| t.id).collect::<Vec<_>>(), [quiet.id]);
    store
        .enqueue_callback_event(NewCallbackEvent {
            id: "msg_4".into(),
            task_id: quiet.id,
            phase: CallbackPhase::Processing,
            ..event(CallbackPhase::Processing, "msg_4")
        })
        .await
        .expect("repair");
    assert!(store
        .tasks_missing_callbacks(clock.now_ms(), 10)
        .await
        .expect("missing")
        .is_empty());
    // Webhook secrets: a rotation retires the previous one.
    let first = store
        .add_webhook_secret(a, "sealed-1".into())
        .await
        .expect("first");
    clock.advance(Duration::from_secs(1));
    let second = store
        .add_webhook_secret(a, "sealed-2".into())
        .await
        .expect("second");
    let secrets = store.webhook_secrets(a).await.expect("secrets");
    assert_eq!(
        secrets.iter().map(|s| s.id).collect::<Vec<_>>(),
        [second.id, first.id]
    );
    assert_eq!(
        (secrets[0].retired_at, secrets[1].retired_at),
        (None, Some(second.created_at))
    );
    assert!(store.webhook_secrets(b).await.expect("b").is_empty());
}

fn submit_job() -> JobKind {
    JobKind::SUBMIT_TASK
}

async fn claim_one(store: &dyn Store, owner: &str, lease: Duration) -> Option<kinora_store::Job> {
    let mut jobs = store
        .claim_jobs(owner, &[WORK], 1, lease)
        .await
        .expect("claim");
    jobs.pop()
}

/// Runs each named scenario once per backend. PostgreSQL runs only when its URL is set.
macro_rules! on_both_backends {
    ($($scenario:ident($clock:expr)),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $scenario() {
                    let clock = $clock;
                    let db = kinora_store::testing::sqlite(std::sync::Arc::new(clock.clone())).await;
                    super::$scenario(db, clock).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $scenario() {
                    let clock = $clock;
                    let name = concat!("postgres::", stringify!($scenario));
                    let Some(db) = kinora_store::testing::postgres(name, std::sync::Arc::new(clock.clone())).await else {
                        return;
                    };
                    super::$scenario(db, clock).await;
                }
            )+
        }
    };
}

on_both_backends!(
    migrations_are_idempotent(super::manual_clock()),
    task_and_first_job_are_written_together(super::manual_clock()),
    stale_transitions_are_refused(super::manual_clock()),
    external_task_id_is_unique_per_account(super::manual_clock()),
    tasks_are_scoped_by_account(super::manual_clock()),
    expired_lease_makes_job_claimable_again(super::manual_clock()),
    heartbeat_extends_the_lease(super::manual_clock()),
    retry_waits_for_its_backoff(super::manual_clock()),
    dead_letter_after_max_attempts(super::manual_clock()),
    expired_lease_on_last_attempt_dead_letters(super::manual_clock()),
    abort_release_and_reschedule(super::manual_clock()),
    claim_respects_kinds_due_time_and_order(super::manual_clock()),
    follow_up_job_replaces_the_finished_one(super::manual_clock()),
    orphaned_tasks_are_found(super::manual_clock()),
    channels_hold_their_limit_and_stay_disabled_until_enabled(super::manual_clock()),
    concurrent_assignments_never_pass_a_channel_limit(kinora_core::time::SystemClock),
    an_upstream_push_is_kept_and_wakes_the_poll(super::manual_clock()),
    charges_are_held_captured_and_released_with_the_ledger_matching_balances(super::manual_clock()),
    concurrent_holds_never_overdraw(kinora_core::time::SystemClock),
    admission_checks_the_key_limit_then_the_balance(super::manual_clock()),
    a_task_settles_its_charge_when_it_ends(super::manual_clock()),
    concurrent_admissions_never_overdraw_or_pass_the_key_limit(kinora_core::time::SystemClock),
    metering_and_submit_terms(super::manual_clock()),
    bootstrap_happens_once(kinora_core::time::SystemClock),
    server_secrets_are_created_once(super::manual_clock()),
    elements_are_scoped_paged_and_deleted(super::manual_clock()),
    element_tasks_are_found_by_either_id_and_listed(super::manual_clock()),
    the_creating_request_is_kept(super::manual_clock()),
    callbacks_are_queued_once_per_phase_and_recorded(super::manual_clock()),
    access_keys_are_found_revoked_and_scoped(super::manual_clock()),
    api_keys_are_found_by_hash_and_scoped_by_account(super::manual_clock()),
    enqueue_wakes_waiting_workers(kinora_core::time::SystemClock),
    eight_workers_run_two_thousand_jobs_exactly_once(kinora_core::time::SystemClock),
);

fn new_key(name: &str, hash: &str) -> NewApiKey {
    NewApiKey {
        name: name.to_owned(),
        prefix: format!("kin_{}", &hash[..4]),
        secret_hash: hash.to_owned(),
        app_id: None,
    }
}

async fn bootstrap_happens_once(db: TestDatabase, _clock: SystemClock) {
    let store = db.store;
    assert_eq!(
        store.bootstrap_account().await.expect("no account yet"),
        None
    );
    // Eight starts race; exactly one bootstraps.
    let racers = (0..8).map(|k| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .bootstrap("default", new_key("bootstrap", &format!("{k:064x}")))
                .await
                .expect("bootstrap")
        })
    });
    let results = futures::future::join_all(racers).await;
    let won: Vec<_> = results
        .into_iter()
        .filter_map(|r| r.expect("join"))
        .collect();
    assert_eq!(won.len(), 1);
    let (account, key) = &won[0];
    assert_eq!(key.account_id, account.id);
    assert_eq!(
        store.bootstrap_account().await.expect("bootstrap account"),
        Some(account.clone())
    );
    assert_eq!(
        store.list_api_keys(account.id).await.expect("keys"),
        vec![key.clone()]
    );
    // The losers left no accounts behind.
    assert_eq!(
        store
            .bootstrap("again", new_key("late", &"f".repeat(64)))
            .await
            .expect("late bootstrap"),
        None
    );
    assert_eq!(
        store.find_api_key(&"f".repeat(64)).await.expect("find"),
        None
    );
}

fn element(id: i64, account: Option<AccountId>, name: &str) -> NewElement {
    NewElement {
        id,
        account_id: account,
        name: name.to_owned(),
        description: format!("{name} description"),
        frontal_image: ElementImage {
            key: format!("elements/{id}/front.png"),
            source_url: None,
        },
        refer_images: vec![ElementImage {
            key: format!("elements/{id}/side.png"),
            source_url: Some(format!("https://example.com/{id}/side.png")),
        }],
        tags: vec!["o_102".to_owned()],
        reference_type: ReferenceType::ImageRefer,
        refer_video: None,
        voice_id: None,
        creation: None,
    }
}

/// An element created through the task-based API: from a clip, with a voice.
fn element_task(id: i64, account: AccountId, external: Option<&str>) -> NewElement {
    NewElement {
        reference_type: ReferenceType::VideoRefer,
        refer_video: Some(ElementImage {
            key: format!("elements/{id}/refer.mp4"),
            source_url: Some("https://example.com/clip.mp4".to_owned()),
        }),
        voice_id: Some("voice-7".to_owned()),
        creation: Some(ElementCreation {
            task_id: TaskId::new(),
            external_task_id: external.map(str::to_owned),
            callback_url: Some("https://example.com/hook".to_owned()),
        }),
        ..element(id, Some(account), "clip")
    }
}

async fn element_tasks_are_found_by_either_id_and_listed(db: TestDatabase, clock: ManualClock) {
    let store = db.store;
    let a = store.create_account("a").await.expect("a").id;
    let b = store.create_account("b").await.expect("b").id;
    store
        .create_element(element(2_000_000, Some(a), "views"))
        .await
        .expect("plain")
        .expect("stored");
    let mut made = Vec::new();
    for (id, external) in [(2_000_001, Some("el-1")), (2_000_002, None)] {
        clock.advance(Duration::from_millis(10));
        made.push(
            store
                .create_element(element_task(id, a, external))
                .await
                .expect("task")
                .expect("stored"),
        );
    }
    let first = made[0].clone();
    let task_id = first.creation.as_ref().expect("creation").task_id;
    assert_eq!(
        store.get_element_by_task(a, task_id).await.expect("get"),
        Some(first.clone())
    );
    assert_eq!(
        store
            .find_element_by_external_task_id(a, "el-1")
            .await
            .expect("find"),
        Some(first.clone())
    );
    assert_eq!(first.reference_type, ReferenceType::VideoRefer);
    assert_eq!(first.voice_id.as_deref(), Some("voice-7"));
    // Another account sees nothing, and may reuse the external id.
    assert_eq!(
        store.get_element_by_task(b, task_id).await.expect("get"),
        None
    );
    assert_eq!(
        store
            .find_element_by_external_task_id(b, "el-1")
            .await
            .expect("find"),
        None
    );
    assert!(store
        .create_element(element_task(2_000_003, b, Some("el-1")))
        .await
        .expect("b's own")
        .is_some());
    let duplicate = store
        .create_element(element_task(2_000_004, a, Some("el-1")))
        .await
        .expect_err("duplicate external id");
    assert_eq!(duplicate.code(), ErrorCode::DuplicateExternalTaskId);
    // Only elements made by tasks are listed, newest first.
    let listed: Vec<i64> = store
        .list_element_tasks(a, 1, 30)
        .await
        .expect("list")
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(listed, [2_000_002, 2_000_001]);
    assert!(store.delete_element(a, 2_000_001).await.expect("delete"));
    assert_eq!(
        store.get_element_by_task(a, task_id).await.expect("get"),
        None
    );
}

async fn elements_are_scoped_paged_and_deleted(db: TestDatabase, clock: ManualClock) {
    let store = db.store;
    let a = store.create_account("a").await.expect("a").id;
    let b = store.create_account("b").await.expect("b").id;
    let preset = store
        .create_element(element(146, None, "Knight"))
        .await
        .expect("preset")
        .expect("stored");
    assert_eq!(preset.account_id, None);
    assert_eq!(
        store
            .create_element(element(146, None, "Knight"))
            .await
            .expect("again"),
        None,
        "a preset is stored once"
    );
    let mut mine = Vec::new();
    for (k, id) in [1_000_001i64, 1_000_002, 1_000_003].into_iter().enumerate() {
        clock.advance(Duration::from_millis(10));
        mine.push(
            store
                .create_element(element(id, Some(a), &format!("fox{k}")))
                .await
                .expect("custom")
                .expect("stored"),
        );
    }
    assert_eq!(mine[0].refer_images[0].key, "elements/1000001/side.png");
    assert_eq!(
        mine[0].refer_images[0].source_url.as_deref(),
        Some("https://example.com/1000001/side.png")
    );
    assert!(store
        .create_element(element(1_000_001, Some(b), "dup"))
        .await
        .is_err());
    assert!(store
        .create_element(element(1 << 53, Some(b), "big"))
        .await
        .is_err());
    // Newest first, paged; presets apart; each account sees its own.
    let page = |account, page, size| {
        let store = store.clone();
        async move {
            store
                .list_elements(account, page, size)
                .await
                .expect("list")
                .into_iter()
                .map(|e| e.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(page(Some(a), 1, 2).await, [1_000_003, 1_000_002]);
    assert_eq!(page(Some(a), 2, 2).await, [1_000_001]);
    assert!(page(Some(a), 3, 2).await.is_empty());
    assert!(page(Some(b), 1, 30).await.is_empty());
    assert_eq!(page(None, 1, 30).await, [146]);
    // Usable: own customs and presets; another account's is not found.
    assert_eq!(
        store.get_element(a, 1_000_002).await.expect("get"),
        Some(mine[1].clone())
    );
    assert_eq!(store.get_element(b, 146).await.expect("get"), Some(preset));
    assert_eq!(store.get_element(b, 1_000_002).await.expect("get"), None);
    // Deletion: own customs only, once.
    assert!(!store.delete_element(b, 1_000_002).await.expect("delete"));
    assert!(!store.delete_element(a, 146).await.expect("delete"));
    assert!(store.delete_element(a, 1_000_002).await.expect("delete"));
    assert!(!store.delete_element(a, 1_000_002).await.expect("delete"));
    assert_eq!(store.get_element(a, 1_000_002).await.expect("get"), None);
    assert_eq!(page(Some(a), 1, 30).await, [1_000_003, 1_000_001]);
    // An id stays in use for every account, even once its element is deleted.
    assert!(store.element_id_in_use(1_000_002).await.expect("in use"));
    assert!(store.element_id_in_use(146).await.expect("in use"));
    assert!(!store.element_id_in_use(1_000_009).await.expect("in use"));
}

async fn server_secrets_are_created_once(db: TestDatabase, _clock: ManualClock) {
    let store = db.store;
    let first = store
        .server_secret("url-signing", "aaa")
        .await
        .expect("secret");
    assert_eq!(first, "aaa");
    let second = store
        .server_secret("url-signing", "bbb")
        .await
        .expect("secret");
    assert_eq!(second, "aaa", "the first stored value wins");
    assert_eq!(
        store.server_secret("other", "ccc").await.expect("secret"),
        "ccc"
    );
}

async fn api_keys_are_found_by_hash_and_scoped_by_account(db: TestDatabase, clock: ManualClock) {
    let store = db.store;
    let a = store.create_account("a").await.expect("account a");
    let b = store.create_account("b").await.expect("account b");
    let first = store
        .create_api_key(a.id, new_key("ci", &"a".repeat(64)))
        .await
        .expect("key");
    clock.advance(Duration::from_millis(5));
    let second = store
        .create_api_key(a.id, new_key("laptop", &"b".repeat(64)))
        .await
        .expect("key");
    assert_eq!(first.created_at, START_MS);
    assert_eq!(first.revoked_at, None);
    assert_eq!(
        store.find_api_key(&"a".repeat(64)).await.expect("find"),
        Some(first.clone())
    );
    assert_eq!(
        store.find_api_key(&"c".repeat(64)).await.expect("find"),
        None
    );
    // The same secret twice is refused.
    assert!(store
        .create_api_key(b.id, new_key("copy", &"a".repeat(64)))
        .await
        .is_err());
    assert_eq!(
        store.list_api_keys(a.id).await.expect("list"),
        vec![first.clone(), second.clone()]
    );
    assert!(store.list_api_keys(b.id).await.expect("list b").is_empty());
    // Another account cannot revoke it; its own account can, once.
    assert!(!store.revoke_api_key(b.id, first.id).await.expect("revoke"));
    assert!(store.revoke_api_key(a.id, first.id).await.expect("revoke"));
    assert!(!store.revoke_api_key(a.id, first.id).await.expect("revoke"));
    assert_eq!(
        store.find_api_key(&"a".repeat(64)).await.expect("find"),
        None
    );
    let listed = store.list_api_keys(a.id).await.expect("list");
    assert_eq!(listed[0].revoked_at, Some(START_MS + 5));
    assert_eq!(listed[1], second);
}

async fn access_keys_are_found_revoked_and_scoped(db: TestDatabase, _clock: ManualClock) {
    let store = db.store;
    let a = store.create_account("a").await.expect("account");
    let b = store.create_account("b").await.expect("account");
    let new = |ak: &str| NewAccessKey {
        name: "ci".into(),
        access_key: ak.into(),
        secret_ciphertext: format!("sealed-{ak}"),
        app_id: None,
    };
    let key = store
        .create_access_key(a.id, new("AK_one"))
        .await
        .expect("create");
    assert!(
        store.create_access_key(b.id, new("AK_one")).await.is_err(),
        "access keys are unique"
    );
    let found = store
        .find_access_key("AK_one")
        .await
        .expect("find")
        .expect("found");
    assert_eq!(found, key);
    assert_eq!(found.secret_ciphertext, "sealed-AK_one");
    assert_eq!(store.find_access_key("AK_two").await.expect("find"), None);
    assert_eq!(
        store.list_access_keys(a.id).await.expect("list"),
        std::slice::from_ref(&key)
    );
    assert!(store.list_access_keys(b.id).await.expect("list").is_empty());
    assert!(!store.revoke_access_key(b.id, key.id).await.expect("revoke"));
    assert!(store.revoke_access_key(a.id, key.id).await.expect("revoke"));
    assert!(!store.revoke_access_key(a.id, key.id).await.expect("revoke"));
    let revoked = store
        .find_access_key("AK_one")
        .await
        .expect("find")
        .expect("still found");
    assert!(revoked.revoked_at.is_some());
}
async fn migrations_are_idempotent(db: TestDatabase, _clock: ManualClock) {
    db.store.migrate().await.expect("second migrate");
    db.store.ping().await.expect("ping");
}

async fn task_and_first_job_are_written_together(db: TestDatabase, _clock: ManualClock) {
    let store = db.store;
    let account = store.create_account("acme").await.expect("account");
    let (task, job_id) = store
        .create_task(new_task(account.id, Some("ext-1")), submit_job())
        .await
        .expect("create");
    assert_eq!(task.state, TaskState::Queued);
    assert_eq!(task.created_at, START_MS);
    assert_eq!(task.request["prompt"], "a red fox in snow");
    let jobs = store.jobs_for_task(task.id).await.expect("jobs");
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].id, job_id);
    assert_eq!(jobs[0].kind, JobKind::SUBMIT_TASK);
    assert_eq!(jobs[0].state, JobState::Queued);
    assert_eq!(jobs[0].task_id, Some(task.id));
    assert_eq!(jobs[0].payload, json!({ "task_id": task.id }));

    // A failed task insert leaves no job behind: the two writes are one transaction.
    let before = store.job_counts().await.expect("counts");
    let err = store
        .create_task(new_task(account.id, Some("ext-1")), submit_job())
        .await
        .expect_err("duplicate");
    assert_eq!(err.code(), ErrorCode::DuplicateExternalTaskId);
    assert_eq!(store.job_counts().await.expect("counts"), before);

    // A task whose account does not exist is refused.
    assert!(store
        .create_task(new_task(AccountId::new(), None), submit_job())
        .await
        .is_err());
}

async fn stale_transitions_are_refused(db: TestDatabase, clock: ManualClock) {
    let store = db.store;
    let account = store.create_account("acme").await.expect("account");
    let (task, _) = store
        .create_task(new_task(account.id, None), submit_job())
        .await
        .expect("create");

    let succeeded_too_early = store
        .transition_task(
            task.id,
            TaskTransition::Succeeded {
                result: json!({}),
                billed_ms: None,
            },
        )
        .await
        .expect_err("queued cannot succeed");
    assert_eq!(succeeded_too_early.code(), ErrorCode::StaleTransition);

    clock.advance(Duration::from_secs(1));
    let submitted = store
        .transition_task(
            task.id,
            TaskTransition::Submitted {
                channel: "local".into(),
                upstream_task_id: Some("up-1".into()),
            },
        )
        .await
        .expect("submit");
    assert_eq!(submitted.state, TaskState::Submitted);
    assert_eq!(submitted.channel.as_deref(), Some("local"));
    assert_eq!(submitted.upstream_task_id.as_deref(), Some("up-1"));
    assert_eq!(submitted.submitted_at, Some(START_MS + 1000));

    // The same transition twice: the second one is stale (a job that ran twice is harmless).
    let again = store
        .transition_task(
            task.id,
            TaskTransition::Submitted {
                channel: "other".into(),
                upstream_task_id: None,
            },
        )
        .await
        .expect_err("second submit");
    assert_eq!(again.code(), ErrorCode::StaleTransition);

    let running = store
        .transition_task(task.id, TaskTransition::Running)
        .await
        .expect("running");
    assert_eq!(running.state, TaskState::Running);
    let back = store
        .transition_task(
            task.id,
            TaskTransition::Submitted {
                channel: "local".into(),
                upstream_task_id: None,
            },
        )
        .await
        .expect_err("running cannot go back");
    assert_eq!(back.code(), ErrorCode::StaleTransition);

    clock.advance(Duration::from_secs(4));
    let done = store
        .transition_task(
            task.id,
            TaskTransition::Succeeded {
                result: json!({"videos": 1}),
                billed_ms: None,
            },
        )
        .await
        .expect("succeed");
    assert_eq!(done.state, TaskState::Succeeded);
    assert_eq!(done.finished_at, Some(START_MS + 5000));
    assert_eq!(done.result, Some(json!({"videos": 1})));

    for late in [
        TaskTransition::Failed {
            class: FailureClass::Internal,
            message: "late".into(),
        },
        TaskTransition::Canceled {
            message: "late".into(),
        },
        TaskTransition::Running,
    ] {
        let err = store
            .transition_task(task.id, late)
            .await
            .expect_err("terminal is final");
        assert_eq!(err.code(), ErrorCode::StaleTransition);
        assert!(err.message().contains("succeeded"), "{err}");
    }
    let stored = store
        .get_task(account.id, task.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(stored, done, "refused transitions leave the row untouched");

    let missing = store
        .transition_task(TaskId::new(), TaskTransition::Running)
        .await
        .expect_err("missing");
    assert_eq!(missing.code(), ErrorCode::NotFound);

    // Failure records its class and message.
    let (other, _) = store
        .create_task(new_task(account.id, None), submit_job())
        .await
        .expect("create");
    let failed = store
        .transition_task(
            other.id,
            TaskTransition::Failed {
                class: FailureClass::ContentPolicy,
                message: "flagged".into(),
            },
        )
        .await
        .expect("fail from queued");
    assert_eq!(failed.failure_class, Some(FailureClass::ContentPolicy));
    assert_eq!(failed.failure_message.as_deref(), Some("flagged"));
    assert_eq!(
        store.unfinished_task_ids(10).await.expect("unfinished"),
        Vec::<TaskId>::new()
    );
}

async fn external_task_id_is_unique_per_account(db: TestDatabase, _clock: ManualClock) {
    let store = db.store;
    let a = store.create_account("a").await.expect("account");
    let b = store.create_account("b").await.expect("account");
    let (first, _) = store
        .create_task(new_task(a.id, Some("order-7")), submit_job())
        .await
        .expect("first");
    let err = store
        .create_task(new_task(a.id, Some("order-7")), submit_job())
        .await
        .expect_err("reuse in the same account");
    assert_eq!(err.code(), ErrorCode::DuplicateExternalTaskId);
    assert!(err.message().contains("order-7"), "{err}");
    let (other_account, _) = store
        .create_task(new_task(b.id, Some("order-7")), submit_job())
        .await
        .expect("other account");

    // Tasks without an external id never collide.
    store
        .create_task(new_task(a.id, None), submit_job())
        .await
        .expect("no external id");
    store
        .create_task(new_task(a.id, None), submit_job())
        .await
        .expect("no external id");

    let found = store
        .find_task_by_external_id(a.id, "order-7")
        .await
        .expect("find")
        .expect("exists");
    assert_eq!(found.id, first.id);
    let found_b = store
        .find_task_by_external_id(b.id, "order-7")
        .await
        .expect("find")
        .expect("exists");
    assert_eq!(found_b.id, other_account.id);
    assert!(store
        .find_task_by_external_id(a.id, "order-8")
        .await
        .expect("find")
        .is_none());
}

async fn tasks_are_scoped_by_account(db: TestDatabase, _clock: ManualClock) {
    let store = db.store;
    let a = store.create_account("a").await.expect("account");
    let b = store.create_account("b").await.expect("account");
    let (task, _) = store
        .create_task(new_task(a.id, Some("mine")), submit_job())
        .await
        .expect("create");
    assert!(store.get_task(a.id, task.id).await.expect("get").is_some());
    assert!(store.get_task(b.id, task.id).await.expect("get").is_none());
    assert!(store
        .find_task_by_external_id(b.id, "mine")
        .await
        .expect("find")
        .is_none());
    assert_eq!(
        store.get_account(a.id).await.expect("account"),
        Some(a.clone())
    );
    assert_eq!(
        store.unfinished_task_ids(10).await.expect("unfinished"),
        vec![task.id]
    );

    // Lists: the account's own, newest first, paged, by kind.
    let mut omni = new_task(a.id, None);
    omni.kind = TaskKind::OmniVideo;
    let (omni, _) = store.create_task(omni, submit_job()).await.expect("create");
    let ids = |tasks: Vec<kinora_core::Task>| tasks.into_iter().map(|t| t.id).collect::<Vec<_>>();
    let list = |account, kind, page, size| store.list_tasks(account, kind, page, size);
    assert_eq!(
        ids(list(a.id, None, 1, 30).await.expect("list")),
        [omni.id, task.id]
    );
    assert_eq!(ids(list(a.id, None, 2, 1).await.expect("list")), [task.id]);
    assert!(list(a.id, None, 3, 1).await.expect("list").is_empty());
    assert_eq!(
        ids(list(a.id, Some(TaskKind::Text2Video), 1, 30)
            .await
            .expect("list")),
        [task.id]
    );
    assert!(list(b.id, None, 1, 30).await.expect("list").is_empty());
}

async fn expired_lease_makes_job_claimable_again(db: TestDatabase, clock: ManualClock) {
    let store = db.store;
    let id = store
        .enqueue_job(NewJob::new(WORK, json!({"n": 1})))
        .await
        .expect("enqueue");
    let lease = Duration::from_secs(30);
    let job = claim_one(&*store, "worker-a", lease)
        .await
        .expect("a claims");
    assert_eq!(
        (job.id, job.attempts, job.state),
        (id, 1, JobState::Running)
    );
    assert_eq!(job.lease_owner.as_deref(), Some("worker-a"));
    assert_eq!(job.lease_until, Some(START_MS + 30_000));
    assert!(
        claim_one(&*store, "worker-b", lease).await.is_none(),
        "a live lease is exclusive"
    );

    clock.advance(Duration::from_secs(29));
    assert!(claim_one(&*store, "worker-b", lease).await.is_none());
    clock.advance(Duration::from_secs(2));
    let reclaimed = claim_one(&*store, "worker-b", lease)
        .await
        .expect("b reclaims after expiry");
    assert_eq!((reclaimed.id, reclaimed.attempts), (id, 2));
    assert_eq!(reclaimed.lease_owner.as_deref(), Some("worker-b"));

    // The first worker has lost its lease: none of its calls may touch the job.
    for err in [
        store
            .complete_job(id, "worker-a")
            .await
            .expect_err("complete"),
        store
            .heartbeat_job(id, "worker-a", lease)
            .await
            .expect_err("heartbeat"),
        store
            .abort_job(id, "worker-a", "x")
            .await
            .expect_err("abort"),
        store
            .release_job(id, "worker-a")
            .await
            .expect_err("release"),
    ] {
        assert_eq!(err.code(), ErrorCode::LeaseLost);
    }
    assert_eq!(
        store
            .retry_job(id, "worker-a", lease, "x")
            .await
            .expect_err("retry")
            .code(),
        ErrorCode::LeaseLost
    );
    store
        .complete_job(id, "worker-b")
        .await
        .expect("b completes");
    let done = store.get_job(id).await.expect("get").expect("exists");
    assert_eq!(done.state, JobState::Done);
    assert_eq!(done.lease_owner, None);
    clock.advance(Duration::from_secs(3600));
    assert!(
        claim_one(&*store, "worker-c", lease).await.is_none(),
        "done jobs never run again"
    );
}

async fn heartbeat_extends_the_lease(db: TestDatabase, clock: ManualClock) {
    let store = db.store;
    let id = store
        .enqueue_job(NewJob::new(WORK, json!({})))
        .await
        .expect("enqueue");
    let lease = Duration::from_secs(30);
    claim_one(&*store, "a", lease).await.expect("claim");
    clock.advance(Duration::from_secs(20));
    store
        .heartbeat_job(id, "a", lease)
        .await
        .expect("heartbeat");
    clock.advance(Duration::from_secs(20));
    assert!(
        claim_one(&*store, "b", lease).await.is_none(),
        "heartbeat kept the lease"
    );
    clock.advance(Duration::from_secs(11));
    assert!(
        claim_one(&*store, "b", lease).await.is_some(),
        "lease ran out 30 s after the heartbeat"
    );
}

async fn retry_waits_for_its_backoff(db: TestDatabase, clock: ManualClock) {
    let store = db.store;
    let id = store
        .enqueue_job(NewJob::new(WORK, json!({})))
        .await
        .expect("enqueue");
    let lease = Duration::from_secs(60);
    claim_one(&*store, "a", lease).await.expect("claim");
    let outcome = store
        .retry_job(id, "a", Duration::from_secs(10), "upstream 5000")
        .await
        .expect("retry");
    assert_eq!(
        outcome,
        RetryOutcome::Scheduled {
            next_run_at: START_MS + 10_000
        }
    );
    let waiting = store.get_job(id).await.expect("get").expect("exists");
    assert_eq!(waiting.state, JobState::Queued);
    assert_eq!(waiting.last_error.as_deref(), Some("upstream 5000"));
    assert!(claim_one(&*store, "a", lease).await.is_none());
    clock.advance(Duration::from_secs(9));
    assert!(
        claim_one(&*store, "a", lease).await.is_none(),
        "not before next_run_at"
    );
    clock.advance(Duration::from_secs(1));
    let again = claim_one(&*store, "a", lease).await.expect("due now");
    assert_eq!(again.attempts, 2);
}

async fn dead_letter_after_max_attempts(db: TestDatabase, clock: ManualClock) {
    let store = db.store;
    let id = store
        .enqueue_job(NewJob::new(WORK, json!({})).max_attempts(3))
        .await
        .expect("enqueue");
    let lease = Duration::from_secs(60);
    for attempt in 1..=3u32 {
        let job = claim_one(&*store, "a", lease).await.expect("claim");
        assert_eq!(job.attempts, attempt);
        let outcome = store
            .retry_job(id, "a", Duration::from_secs(1), &format!("boom {attempt}"))
            .await
            .expect("retry");
        if attempt < 3 {
            assert!(matches!(outcome, RetryOutcome::Scheduled { .. }));
        } else {
            assert_eq!(outcome, RetryOutcome::DeadLettered);
        }
        clock.advance(Duration::from_secs(2));
    }
    let dead = store.get_job(id).await.expect("get").expect("exists");
    assert_eq!(dead.state, JobState::Dead);
    assert_eq!(dead.last_error.as_deref(), Some("boom 3"));
    assert!(dead.finished_at.is_some());
    clock.advance(Duration::from_secs(3600));
    assert!(
        claim_one(&*store, "a", lease).await.is_none(),
        "dead jobs are not claimed"
    );
    assert_eq!(store.job_counts().await.expect("counts").dead, 1);
}

async fn expired_lease_on_last_attempt_dead_letters(db: TestDatabase, clock: ManualClock) {
    let store = db.store;
    let id = store
        .enqueue_job(NewJob::new(WORK, json!({})).max_attempts(2))
        .await
        .expect("enqueue");
    let lease = Duration::from_secs(10);
    claim_one(&*store, "a", lease).await.expect("first run");
    clock.advance(Duration::from_secs(11));
    let second = claim_one(&*store, "b", lease)
        .await
        .expect("second run after a crash");
    assert_eq!(second.attempts, 2);
    clock.advance(Duration::from_secs(11));
    assert!(
        claim_one(&*store, "c", lease).await.is_none(),
        "no third run"
    );
    let dead = store.get_job(id).await.expect("get").expect("exists");
    assert_eq!(dead.state, JobState::Dead);
    assert!(dead
        .last_error
        .as_deref()
        .unwrap_or_default()
        .contains("lease expired"));
}

async fn abort_release_and_reschedule(db: TestDatabase, clock: ManualClock) {
    let store = db.store;
    let lease = Duration::from_secs(60);
    let aborted = store
        .enqueue_job(NewJob::new(WORK, json!({"n": 1})))
        .await
        .expect("enqueue");
    claim_one(&*store, "a", lease).await.expect("claim");
    store
        .abort_job(aborted, "a", "mask aspect ratio differs from the image")
        .await
        .expect("abort");
    let job = store.get_job(aborted).await.expect("get").expect("exists");
    assert_eq!(job.state, JobState::Aborted);
    assert_eq!(
        job.last_error.as_deref(),
        Some("mask aspect ratio differs from the image")
    );
    assert!(claim_one(&*store, "a", lease).await.is_none());

    let released = store
        .enqueue_job(NewJob::new(WORK, json!({"n": 2})))
        .await
        .expect("enqueue");
    claim_one(&*store, "a", lease).await.expect("claim");
    store.release_job(released, "a").await.expect("release");
    let back = claim_one(&*store, "b", lease)
        .await
        .expect("claimable at once");
    assert_eq!(
        (back.id, back.attempts),
        (released, 1),
        "a release does not count as an attempt"
    );

    store
        .reschedule_job(released, "b", Duration::from_secs(5))
        .await
        .expect("reschedule");
    assert!(claim_one(&*store, "b", lease).await.is_none());
    clock.advance(Duration::from_secs(5));
    let polled = claim_one(&*store, "b", lease).await.expect("due");
    assert_eq!(polled.attempts, 1, "a reschedule starts a fresh step");
}

async fn claim_respects_kinds_due_time_and_order(db: TestDatabase, clock: ManualClock) {
    let store = db.store;
    let lease = Duration::from_secs(600);
    let later = store
        .enqueue_job(NewJob::new(WORK, json!({"n": "later"})).run_at(START_MS + 60_000))
        .await
        .expect("enqueue");
    let first = store
        .enqueue_job(NewJob::new(WORK, json!({"n": 1})))
        .await
        .expect("enqueue");
    let second = store
        .enqueue_job(NewJob::new(WORK, json!({"n": 2})))
        .await
        .expect("enqueue");
    let other = store
        .enqueue_job(NewJob::new(OTHER, json!({})))
        .await
        .expect("enqueue");

    let claimed = store
        .claim_jobs("a", &[WORK], 10, lease)
        .await
        .expect("claim");
    assert_eq!(
        claimed.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![first, second]
    );
    assert_eq!(claimed[0].payload, json!({"n": 1}));
    let others = store
        .claim_jobs("a", &[OTHER], 10, lease)
        .await
        .expect("claim");
    assert_eq!(others.iter().map(|j| j.id).collect::<Vec<_>>(), vec![other]);
    assert!(store
        .claim_jobs("a", &[WORK, OTHER], 10, lease)
        .await
        .expect("claim")
        .is_empty());
    clock.advance(Duration::from_secs(60));
    let due = store
        .claim_jobs("a", &[WORK], 1, lease)
        .await
        .expect("claim");
    assert_eq!(due.iter().map(|j| j.id).collect::<Vec<_>>(), vec![later]);
}

async fn follow_up_job_replaces_the_finished_one(db: TestDatabase, _clock: ManualClock) {
    let store = db.store;
    let lease = Duration::from_secs(60);
    let first = store
        .enqueue_job(NewJob::new(WORK, json!({"step": 1})))
        .await
        .expect("enqueue");
    claim_one(&*store, "a", lease).await.expect("claim");
    let next = store
        .complete_job_and_enqueue(first, "a", NewJob::new(WORK, json!({"step": 2})))
        .await
        .expect("complete and enqueue");
    assert_eq!(
        store.get_job(first).await.expect("get").map(|j| j.state),
        Some(JobState::Done)
    );
    let claimed = claim_one(&*store, "b", lease)
        .await
        .expect("follow-up is runnable");
    assert_eq!(
        (claimed.id, claimed.payload.clone()),
        (next, json!({"step": 2}))
    );
    // Without the lease, neither half happens.
    let err = store
        .complete_job_and_enqueue(first, "a", NewJob::new(WORK, json!({"step": 3})))
        .await
        .expect_err("lease lost");
    assert_eq!(err.code(), ErrorCode::LeaseLost);
    assert_eq!(store.job_counts().await.expect("counts").queued, 0);
}

async fn orphaned_tasks_are_found(db: TestDatabase, _clock: ManualClock) {
    let store = db.store;
    let account = store.create_account("acme").await.expect("account");
    let (alive, _) = store
        .create_task(new_task(account.id, None), submit_job())
        .await
        .expect("create");
    let (orphan, orphan_job) = store
        .create_task(new_task(account.id, None), submit_job())
        .await
        .expect("create");
    let lease = Duration::from_secs(60);
    let claimed = store
        .claim_jobs("a", &[JobKind::SUBMIT_TASK], 10, lease)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 2);
    assert!(
        store
            .orphaned_task_ids(10)
            .await
            .expect("orphans")
            .is_empty(),
        "leased jobs count as alive"
    );
    store
        .abort_job(orphan_job, "a", "gave up")
        .await
        .expect("abort");
    assert_eq!(
        store.orphaned_task_ids(10).await.expect("orphans"),
        vec![orphan.id]
    );
    let _ = alive;
}

async fn channels_hold_their_limit_and_stay_disabled_until_enabled(
    db: TestDatabase,
    _clock: ManualClock,
) {
    let store = db.store;
    let account = store.create_account("acme").await.expect("account").id;
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let (task, _) = store
            .create_task(new_task(account, None), submit_job())
            .await
            .expect("create");
        tasks.push(task.id);
    }
    assert!(store
        .assign_channel(tasks[0], "a", Some(2))
        .await
        .expect("assign"));
    assert!(
        store
            .assign_channel(tasks[0], "a", Some(2))
            .await
            .expect("assign again"),
        "a task does not count against itself"
    );
    assert!(store
        .assign_channel(tasks[1], "a", Some(2))
        .await
        .expect("assign"));
    assert!(
        !store
            .assign_channel(tasks[2], "a", Some(2))
            .await
            .expect("full"),
        "the third task waits"
    );
    assert!(store
        .assign_channel(tasks[2], "b", None)
        .await
        .expect("no limit"));
    let task = store
        .load_task_for_worker(tasks[0])
        .await
        .expect("load")
        .expect("task");
    assert_eq!(task.channel.as_deref(), Some("a"));
    assert_eq!(task.state, TaskState::Queued);

    store.release_channel(tasks[1]).await.expect("release");
    assert!(store
        .assign_channel(tasks[2], "a", Some(2))
        .await
        .expect("room again"));
    store
        .transition_task(
            tasks[0],
            TaskTransition::Failed {
                class: FailureClass::Internal,
                message: "x".into(),
            },
        )
        .await
        .expect("fail");
    assert!(
        !store
            .assign_channel(tasks[0], "a", Some(5))
            .await
            .expect("ended"),
        "an ended task is never assigned"
    );

    assert!(store
        .disable_channel("a", "1102: balance used up")
        .await
        .expect("disable"));
    assert!(!store
        .disable_channel("a", "again")
        .await
        .expect("disable twice"));
    let states = store.channel_states().await.expect("states");
    let a = states.iter().find(|s| s.channel == "a").expect("a listed");
    assert_eq!(a.reason.as_deref(), Some("1102: balance used up"));
    assert!(a.disabled_at.is_some());
    assert_eq!(a.in_flight, 1, "only the queued task assigned to it counts");
    let b = states.iter().find(|s| s.channel == "b").expect("b listed");
    assert_eq!((b.disabled_at, b.in_flight), (None, 0));
    assert!(store.enable_channel("a").await.expect("enable"));
    assert!(!store.enable_channel("a").await.expect("enable twice"));
    assert!(!store.enable_channel("never-seen").await.expect("unknown"));
    let states = store.channel_states().await.expect("states");
    assert!(states.iter().all(|s| s.disabled_at.is_none()));
    assert!(store
        .disabled_channels()
        .await
        .expect("disabled")
        .is_empty());
}

async fn concurrent_assignments_never_pass_a_channel_limit(db: TestDatabase, _clock: SystemClock) {
    let store = db.store;
    let account = store.create_account("acme").await.expect("account").id;
    let mut handles = Vec::new();
    for _ in 0..40 {
        let (task, _) = store
            .create_task(new_task(account, None), submit_job())
            .await
            .expect("create");
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            store
                .assign_channel(task.id, "limited", Some(5))
                .await
                .expect("assign")
        }));
    }
    let mut assigned = 0;
    for handle in handles {
        if handle.await.expect("join") {
            assigned += 1;
        }
    }
    assert_eq!(assigned, 5);
    let states = store.channel_states().await.expect("states");
    assert_eq!(states[0].in_flight, 5);
}

async fn an_upstream_push_is_kept_and_wakes_the_poll(db: TestDatabase, clock: ManualClock) {
    let store = db.store;
    let account = store.create_account("acme").await.expect("account").id;
    let (task, _) = store
        .create_task(new_task(account, None), JobKind::POLL_TASK)
        .await
        .expect("create");
    let owner = "worker";
    let lease = Duration::from_secs(60);
    let claimed = store
        .claim_jobs(owner, &[JobKind::POLL_TASK], 1, lease)
        .await
        .expect("claim");
    store
        .reschedule_job(claimed[0].id, owner, Duration::from_secs(30))
        .await
        .expect("reschedule");
    assert!(store
        .claim_jobs(owner, &[JobKind::POLL_TASK], 1, lease)
        .await
        .expect("claim")
        .is_empty());
    assert_eq!(store.take_upstream_push(task.id).await.expect("push"), None);
    store
        .record_upstream_push(task.id, &json!({"task_status": "processing"}))
        .await
        .expect("push");
    store
        .record_upstream_push(task.id, &json!({"task_status": "succeed"}))
        .await
        .expect("push again");
    assert_eq!(
        store.take_upstream_push(task.id).await.expect("push"),
        Some(json!({"task_status": "succeed"})),
        "the latest push wins"
    );
    assert_eq!(
        store.take_upstream_push(task.id).await.expect("push"),
        None,
        "a push is read once"
    );
    let woken = store
        .claim_jobs(owner, &[JobKind::POLL_TASK], 1, lease)
        .await
        .expect("claim");
    assert_eq!(
        woken.len(),
        1,
        "the poll is due at once, without the clock moving"
    );
    let _ = clock;
}

/// The sum of a purse's ledger entries, which must equal its balance.
async fn ledger_sum(store: &dyn Store, account: AccountId, purse: Purse) -> i64 {
    store
        .ledger(account, purse)
        .await
        .expect("ledger")
        .iter()
        .map(|e| e.amount)
        .sum()
}

async fn app_balance(store: &dyn Store, account: AccountId, app: uuid::Uuid) -> i64 {
    store
        .list_apps(account)
        .await
        .expect("apps")
        .into_iter()
        .find(|a| a.id == app)
        .expect("app")
        .balance
}

async fn charges_are_held_captured_and_released_with_the_ledger_matching_balances(
    db: TestDatabase,
    _clock: ManualClock,
) {
    let store = db.store;
    let account = store.create_account("acme").await.expect("account").id;
    let other = store.create_account("other").await.expect("account").id;
    let app = store
        .create_app(account, "web", true)
        .await
        .expect("app")
        .id;
    let strict = store
        .create_app(account, "strict", false)
        .await
        .expect("app")
        .id;
    assert_eq!(store.general_balance(account).await.expect("general"), 0);
    assert_eq!(
        store
            .credit(account, Purse::App(app), 100, "top-up")
            .await
            .expect("credit"),
        100
    );
    assert_eq!(
        store
            .credit(account, Purse::General, 500, "top-up")
            .await
            .expect("credit"),
        500
    );
    assert_eq!(
        store
            .credit(account, Purse::App(strict), 40, "top-up")
            .await
            .expect("credit"),
        40
    );
    let refused = store
        .credit(account, Purse::General, -501, "too much")
        .await;
    assert_eq!(refused.map_err(|e| e.code()), Err(ErrorCode::InvalidInput));
    let foreign = store.credit(other, Purse::App(app), 10, "not theirs").await;
    assert_eq!(foreign.map_err(|e| e.code()), Err(ErrorCode::NotFound));

    // The app pays first, the general balance the rest.
    let first = TaskId::new();
    assert_eq!(
        store
            .hold_charge(first, account, Purse::App(app), 150)
            .await
            .expect("hold"),
        HoldOutcome::Held {
            from_app: 100,
            from_general: 50
        }
    );
    assert_eq!(
        store
            .hold_charge(first, account, Purse::App(app), 150)
            .await
            .expect("again"),
        HoldOutcome::Held {
            from_app: 100,
            from_general: 50
        },
        "once per task"
    );
    assert_eq!(app_balance(&*store, account, app).await, 0);
    assert_eq!(store.general_balance(account).await.expect("general"), 450);
    // Succeeded with 120 of 150 used: 30 back, to the general balance first.
    assert!(store.capture_charge(first, 120).await.expect("capture"));
    assert!(
        !store.capture_charge(first, 120).await.expect("twice"),
        "captured once"
    );
    assert!(!store.release_charge(first).await.expect("after capture"));
    assert_eq!(store.general_balance(account).await.expect("general"), 480);
    assert_eq!(app_balance(&*store, account, app).await, 0);

    // A strict app cannot use the general balance: refused, nothing moves.
    let second = TaskId::new();
    assert_eq!(
        store
            .hold_charge(second, account, Purse::App(strict), 50)
            .await
            .expect("hold"),
        HoldOutcome::Insufficient { available: 40 }
    );
    assert_eq!(app_balance(&*store, account, strict).await, 40);
    // A failed task gets everything back.
    let third = TaskId::new();
    assert!(matches!(
        store
            .hold_charge(third, account, Purse::App(strict), 40)
            .await
            .expect("hold"),
        HoldOutcome::Held {
            from_app: 40,
            from_general: 0
        }
    ));
    assert!(store.release_charge(third).await.expect("release"));
    assert!(!store.release_charge(third).await.expect("twice"));
    assert_eq!(app_balance(&*store, account, strict).await, 40);
    // The general balance alone, and a capture above the hold keeps only the hold.
    let fourth = TaskId::new();
    assert!(matches!(
        store
            .hold_charge(fourth, account, Purse::General, 80)
            .await
            .expect("hold"),
        HoldOutcome::Held {
            from_app: 0,
            from_general: 80
        }
    ));
    assert!(store.capture_charge(fourth, 1_000).await.expect("capture"));
    assert_eq!(store.general_balance(account).await.expect("general"), 400);

    for purse in [Purse::General, Purse::App(app), Purse::App(strict)] {
        let balance = match purse {
            Purse::General => store.general_balance(account).await.expect("general"),
            Purse::App(id) => app_balance(&*store, account, id).await,
        };
        assert_eq!(
            ledger_sum(&*store, account, purse).await,
            balance,
            "{purse:?}"
        );
    }
    let kinds: Vec<String> = store
        .ledger(account, Purse::General)
        .await
        .expect("ledger")
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, ["credit", "hold", "release", "hold"]);
    assert!(store
        .ledger(other, Purse::General)
        .await
        .expect("ledger")
        .is_empty());
}

async fn concurrent_holds_never_overdraw(db: TestDatabase, _clock: SystemClock) {
    let store = db.store;
    let account = store.create_account("acme").await.expect("account").id;
    let app = store
        .create_app(account, "web", true)
        .await
        .expect("app")
        .id;
    store
        .credit(account, Purse::App(app), 1_000, "top-up")
        .await
        .expect("credit");
    store
        .credit(account, Purse::General, 500, "top-up")
        .await
        .expect("credit");
    let mut handles = Vec::new();
    for _ in 0..100 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            store
                .hold_charge(TaskId::new(), account, Purse::App(app), 30)
                .await
                .expect("hold")
        }));
    }
    let mut held = 0;
    for handle in handles {
        if matches!(handle.await.expect("join"), HoldOutcome::Held { .. }) {
            held += 1;
        }
    }
    assert_eq!(held, 50, "1,500 buys exactly 50 holds of 30");
    assert_eq!(app_balance(&*store, account, app).await, 0);
    assert_eq!(store.general_balance(account).await.expect("general"), 0);
    assert_eq!(ledger_sum(&*store, account, Purse::App(app)).await, 0);
    assert_eq!(ledger_sum(&*store, account, Purse::General).await, 0);
}

fn hold(purse: Purse, price: i64) -> PriceHold {
    PriceHold {
        purse,
        per_second: price / 5,
        price,
    }
}

fn succeed_billing(billed_ms: Option<u64>) -> TaskTransition {
    TaskTransition::Succeeded {
        result: json!({}),
        billed_ms,
    }
}

fn fail_with(message: &str) -> TaskTransition {
    TaskTransition::Failed {
        class: FailureClass::Internal,
        message: message.into(),
    }
}

async fn admission_checks_the_key_limit_then_the_balance(db: TestDatabase, _clock: ManualClock) {
    let store = db.store;
    let account = store.create_account("acme").await.expect("account").id;
    let key = uuid::Uuid::now_v7();
    store
        .credit(account, Purse::General, 250, "top-up")
        .await
        .expect("credit");
    let admission = Admission {
        key_id: Some(key),
        max_in_flight: Some(2),
        charge: Some(hold(Purse::General, 100)),
    };
    let first = store
        .admit_task(new_task(account, Some("a")), submit_job(), admission)
        .await
        .expect("first");
    store
        .admit_task(new_task(account, None), submit_job(), admission)
        .await
        .expect("second");
    // The external id is checked before the limit, the limit before the balance.
    let duplicate = store
        .admit_task(new_task(account, Some("a")), submit_job(), admission)
        .await
        .map_err(|e| e.code());
    assert_eq!(duplicate.err(), Some(ErrorCode::DuplicateExternalTaskId));
    let over = store
        .admit_task(new_task(account, Some("c")), submit_job(), admission)
        .await
        .map_err(|e| e.code());
    assert_eq!(over.err(), Some(ErrorCode::ConcurrencyLimit));
    assert!(
        store
            .find_task_by_external_id(account, "c")
            .await
            .expect("find")
            .is_none(),
        "a refused task is not created"
    );
    // Another key of the account has its own limit; the balance (50 left) refuses it.
    let other_key = Admission {
        key_id: Some(uuid::Uuid::now_v7()),
        ..admission
    };
    let poor = store
        .admit_task(new_task(account, Some("d")), submit_job(), other_key)
        .await
        .map_err(|e| e.code());
    assert_eq!(poor.err(), Some(ErrorCode::InsufficientBalance));
    assert_eq!(store.general_balance(account).await.expect("general"), 50);
    // A finished task frees its place.
    store
        .transition_task(first.0.id, fail_with("x"))
        .await
        .expect("fail");
    assert_eq!(store.general_balance(account).await.expect("general"), 150);
    store
        .admit_task(new_task(account, Some("e")), submit_job(), admission)
        .await
        .expect("room again");
    // Unmetered and unlimited: no hold, no count.
    store
        .admit_task(new_task(account, None), submit_job(), Admission::default())
        .await
        .expect("free");
    assert_eq!(store.general_balance(account).await.expect("general"), 50);
    assert_eq!(ledger_sum(&*store, account, Purse::General).await, 50);
}

async fn a_task_settles_its_charge_when_it_ends(db: TestDatabase, _clock: ManualClock) {
    let store = db.store;
    let account = store.create_account("acme").await.expect("account").id;
    let app = store
        .create_app(account, "web", true)
        .await
        .expect("app")
        .id;
    store
        .credit(account, Purse::App(app), 1_000, "top-up")
        .await
        .expect("credit");
    let admit = |price: i64| Admission {
        key_id: None,
        max_in_flight: None,
        charge: Some(PriceHold {
            purse: Purse::App(app),
            per_second: 100,
            price,
        }),
    };
    let run = |id: TaskId| {
        let store = store.clone();
        async move {
            store
                .transition_task(
                    id,
                    TaskTransition::Submitted {
                        channel: "local".into(),
                        upstream_task_id: None,
                    },
                )
                .await
                .expect("submitted");
        }
    };
    // 5 s held at 100 a second; 4.2 s came out: 420 kept, 80 back.
    let (done, _) = store
        .admit_task(new_task(account, None), submit_job(), admit(500))
        .await
        .expect("admit");
    assert_eq!(app_balance(&*store, account, app).await, 500);
    run(done.id).await;
    let succeeded = store
        .transition_task(done.id, succeed_billing(Some(4_200)))
        .await
        .expect("succeed");
    assert_eq!(succeeded.charged, Some(420));
    assert_eq!(app_balance(&*store, account, app).await, 580);
    let read = store
        .get_task(account, done.id)
        .await
        .expect("get")
        .expect("task");
    assert_eq!(read.charged, Some(420));

    // A failed task is refunded in full and shows a charge of 0.
    let (failed, _) = store
        .admit_task(new_task(account, None), submit_job(), admit(300))
        .await
        .expect("admit");
    let failed = store
        .transition_task(failed.id, fail_with("x"))
        .await
        .expect("fail");
    assert_eq!(failed.charged, Some(0));
    assert_eq!(app_balance(&*store, account, app).await, 580);

    // A crash after a capture and before the task's update: the repeat keeps the capture,
    // neither charging twice nor losing it.
    let (crashed, _) = store
        .admit_task(new_task(account, None), submit_job(), admit(500))
        .await
        .expect("admit");
    run(crashed.id).await;
    assert!(store
        .capture_charge(crashed.id, 350)
        .await
        .expect("capture"));
    assert_eq!(app_balance(&*store, account, app).await, 230);
    let after = store
        .transition_task(crashed.id, succeed_billing(Some(5_000)))
        .await
        .expect("succeed");
    assert_eq!(after.charged, Some(350));
    assert_eq!(app_balance(&*store, account, app).await, 230);
    // A stale transition settles nothing.
    let late = store
        .transition_task(crashed.id, fail_with("late"))
        .await
        .map_err(|e| e.code());
    assert_eq!(late.err(), Some(ErrorCode::StaleTransition));
    assert_eq!(app_balance(&*store, account, app).await, 230);
    assert_eq!(ledger_sum(&*store, account, Purse::App(app)).await, 230);
    // Unmetered tasks carry no charge.
    let (free, _) = store
        .create_task(new_task(account, None), submit_job())
        .await
        .expect("free");
    let free = store
        .transition_task(
            free.id,
            TaskTransition::Canceled {
                message: "x".into(),
            },
        )
        .await
        .expect("cancel");
    assert_eq!(free.charged, None);
    // A hold without a rate is a fixed price: a success keeps all of it.
    let (fixed, _) = store
        .create_task(new_task(account, None), submit_job())
        .await
        .expect("task");
    store
        .hold_charge(fixed.id, account, Purse::App(app), 100)
        .await
        .expect("hold");
    run(fixed.id).await;
    let fixed = store
        .transition_task(fixed.id, succeed_billing(Some(1)))
        .await
        .expect("succeed");
    assert_eq!(fixed.charged, Some(100));
    assert_eq!(ledger_sum(&*store, account, Purse::App(app)).await, 130);
}

async fn concurrent_admissions_never_overdraw_or_pass_the_key_limit(
    db: TestDatabase,
    _clock: SystemClock,
) {
    let store = db.store;
    let account = store.create_account("acme").await.expect("account").id;
    store
        .credit(account, Purse::General, 3_000, "top-up")
        .await
        .expect("credit");
    let key = uuid::Uuid::now_v7();
    let admission = Admission {
        key_id: Some(key),
        max_in_flight: Some(40),
        charge: Some(hold(Purse::General, 100)),
    };
    let mut handles = Vec::new();
    for _ in 0..100 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            store
                .admit_task(new_task(account, None), submit_job(), admission)
                .await
                .map_err(|e| e.code())
        }));
    }
    let (mut admitted, mut over, mut poor) = (0, 0, 0);
    for handle in handles {
        match handle.await.expect("join") {
            Ok(_) => admitted += 1,
            Err(ErrorCode::ConcurrencyLimit) => over += 1,
            Err(ErrorCode::InsufficientBalance) => poor += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(admitted, 30, "3,000 pays for 30 tasks of 100");
    assert_eq!(over + poor, 70);
    assert_eq!(store.general_balance(account).await.expect("general"), 0);
    assert_eq!(ledger_sum(&*store, account, Purse::General).await, 0);

    // With money to spare, the key's limit is what stops them.
    store
        .credit(account, Purse::General, 100_000, "top-up")
        .await
        .expect("credit");
    let mut handles = Vec::new();
    for _ in 0..100 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            store
                .admit_task(new_task(account, None), submit_job(), admission)
                .await
                .is_ok()
        }));
    }
    let mut more = 0;
    for handle in handles {
        if handle.await.expect("join") {
            more += 1;
        }
    }
    assert_eq!(more, 10, "30 were in flight, the limit is 40");
}

async fn metering_and_submit_terms(db: TestDatabase, _clock: ManualClock) {
    let store = db.store;
    let account = store.create_account("acme").await.expect("account");
    assert!(!account.metered);
    let app = store
        .create_app(account.id, "web", true)
        .await
        .expect("app");
    let terms = store.submit_terms(account.id, None).await.expect("terms");
    assert_eq!(
        terms,
        SubmitTerms {
            metered: false,
            limits: KeyLimits::default()
        }
    );
    let limits = KeyLimits {
        submits_per_second: Some(2),
        max_in_flight: Some(5),
    };
    assert!(store
        .set_app_limits(account.id, app.id, limits)
        .await
        .expect("limits"));
    let other = store.create_account("other").await.expect("account").id;
    assert!(!store
        .set_app_limits(other, app.id, limits)
        .await
        .expect("foreign app"));
    assert_eq!(
        store
            .submit_terms(account.id, Some(app.id))
            .await
            .expect("terms")
            .limits,
        limits
    );
    assert_eq!(
        store
            .submit_terms(other, Some(app.id))
            .await
            .expect("terms")
            .limits,
        KeyLimits::default(),
        "another account's app sets nothing"
    );
    assert_eq!(
        store.list_apps(account.id).await.expect("apps")[0].limits,
        limits
    );
    // A credit turns metering on; an operator can turn it off again.
    store
        .credit(account.id, Purse::App(app.id), 10, "top-up")
        .await
        .expect("credit");
    assert!(
        store
            .submit_terms(account.id, None)
            .await
            .expect("terms")
            .metered
    );
    assert!(store.set_metering(account.id, false).await.expect("off"));
    assert!(
        !store
            .get_account(account.id)
            .await
            .expect("get")
            .expect("account")
            .metered
    );
    assert!(!store
        .set_metering(AccountId::new(), true)
        .await
        .expect("unknown"));
    let missing = store.submit_terms(AccountId::new(), None).await;
    assert_eq!(
        missing.map_err(|e| e.code()).err(),
        Some(ErrorCode::NotFound)
    );
    let names: Vec<String> = store
        .list_accounts()
        .await
        .expect("list")
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert_eq!(names, ["acme", "other"]);
    // Keys name their app, which must be the account's own.
    let key = store
        .create_api_key(
            account.id,
            NewApiKey {
                app_id: Some(app.id),
                ..new_key("app key", "aa11aa11aa11")
            },
        )
        .await
        .expect("key");
    assert_eq!(key.app_id, Some(app.id));
    assert_eq!(
        store
            .find_api_key("aa11aa11aa11")
            .await
            .expect("find")
            .and_then(|k| k.app_id),
        Some(app.id)
    );
    let foreign = store
        .create_api_key(
            other,
            NewApiKey {
                app_id: Some(app.id),
                ..new_key("stolen", "bb22bb22bb22")
            },
        )
        .await
        .map_err(|e| e.code());
    assert_eq!(foreign.err(), Some(ErrorCode::NotFound));
}

async fn enqueue_wakes_waiting_workers(db: TestDatabase, _clock: SystemClock) {
    // A second store on the same database stands for another process.
    let other = kinora_store::connect(
        &kinora_store::StoreOptions::new(&db.url),
        Arc::new(SystemClock),
    )
    .await
    .expect("second store");
    let local_wakeups = db.store.job_wakeups();
    let local = local_wakeups.notified();
    tokio::pin!(local);
    local.as_mut().enable();
    let remote_wakeups = other.job_wakeups();
    let remote = remote_wakeups.notified();
    tokio::pin!(remote);
    remote.as_mut().enable();

    db.store
        .enqueue_job(NewJob::new(WORK, json!({})))
        .await
        .expect("enqueue");
    tokio::time::timeout(Duration::from_secs(5), local)
        .await
        .expect("same-process wake-up");
    if db.store.backend() == kinora_store::Backend::Postgres {
        tokio::time::timeout(Duration::from_secs(5), remote)
            .await
            .expect("LISTEN/NOTIFY wake-up");
    }
}

async fn eight_workers_run_two_thousand_jobs_exactly_once(db: TestDatabase, _clock: SystemClock) {
    const JOBS: usize = 2000;
    const WORKERS: usize = 8;
    let store = db.store;
    let enqueue = (0..JOBS).map(|n| {
        let store = store.clone();
        async move {
            store
                .enqueue_job(NewJob::new(WORK, json!({ "n": n })))
                .await
                .expect("enqueue")
        }
    });
    let ids: Vec<_> = futures::future::join_all(enqueue).await;
    assert_eq!(ids.len(), JOBS);

    let runs: Arc<Mutex<HashMap<i64, u32>>> = Arc::default();
    let workers = (0..WORKERS).map(|w| {
        let store = store.clone();
        let runs = runs.clone();
        tokio::spawn(async move {
            let owner = format!("worker-{w}");
            loop {
                let jobs = store
                    .claim_jobs(&owner, &[WORK], 4, Duration::from_secs(300))
                    .await
                    .expect("claim");
                if jobs.is_empty() {
                    break;
                }
                for job in jobs {
                    *runs.lock().await.entry(job.id).or_default() += 1;
                    store.complete_job(job.id, &owner).await.expect("complete");
                }
            }
        })
    });
    for worker in futures::future::join_all(workers).await {
        worker.expect("worker task");
    }
    let runs = runs.lock().await;
    assert_eq!(runs.len(), JOBS, "every job ran");
    assert!(runs.values().all(|&n| n == 1), "no job ran twice");
    let counts = store.job_counts().await.expect("counts");
    assert_eq!(
        (counts.done, counts.queued, counts.running),
        (JOBS as u64, 0, 0)
    );
}

#[test]
fn manual_clock_moves_only_when_told() {
    let clock = manual_clock();
    assert_eq!(clock.now_ms(), START_MS);
    clock.advance(Duration::from_millis(1500));
    assert_eq!(clock.now_ms(), START_MS + 1500);
    let _ = testing::POSTGRES_URL_VAR;
}
