//! A request waiting on a task wakes when the task changes, also when the change is made by a
//! worker in another process: the sweep reads every waited-on task's state in one query.

use std::sync::Arc;
use std::time::Duration;

use kinora_core::time::SystemClock;
use kinora_core::{AccountId, Dialect, JobKind, NewTask, TaskId, TaskKind, TaskState};
use kinora_server::task_events::TaskEvents;
use kinora_store::{Store, TaskTransition};
use serde_json::json;
use tokio_util::sync::CancellationToken;

async fn parked_task(store: &dyn Store, account: AccountId) -> TaskId {
    let (task, _) = store
        .create_task(
            NewTask {
                id: TaskId::new(),
                account_id: account,
                dialect: Dialect::AceData,
                kind: TaskKind::Text2Video,
                model: "kling-v1".into(),
                request: json!({"prompt": "p"}),
                external_task_id: None,
                callback_url: None,
                submission: None,
            },
            JobKind::new("test.parked"),
        )
        .await
        .expect("task");
    task.id
}

#[tokio::test]
async fn a_change_made_elsewhere_wakes_the_waiter() {
    let db = kinora_store::testing::sqlite(Arc::new(SystemClock)).await;
    let store = db.store.clone();
    let account = store.create_account("a").await.expect("account").id;
    let watched = parked_task(&*store, account).await;
    let others: Vec<TaskId> =
        futures::future::join_all((0..3).map(|_| parked_task(&*store, account))).await;
    assert_eq!(
        store.task_states(&others).await.expect("states").len(),
        3,
        "one query reads them all"
    );

    let events = Arc::new(TaskEvents::default());
    let mut watch = events.watch(watched);
    let stop = CancellationToken::new();
    let sweep = tokio::spawn(events.clone().sweep(store.clone(), stop.clone()));
    // The first sweep reports what it finds; the waiter reads the task and waits again.
    tokio::time::timeout(Duration::from_secs(5), watch.changed())
        .await
        .expect("first sighting");
    // Changed by "another process": straight through the store, not announced here.
    store
        .transition_task(
            watched,
            TaskTransition::Failed {
                class: kinora_core::FailureClass::Internal,
                message: "stopped elsewhere".into(),
            },
        )
        .await
        .expect("transition");
    tokio::time::timeout(TaskEvents::SWEEP_INTERVAL * 3, watch.changed())
        .await
        .expect("woken by the sweep");
    let states = store.task_states(&[watched]).await.expect("states");
    assert_eq!(states, vec![(watched, TaskState::Failed)]);
    // Nothing changes now, so nothing wakes it.
    assert!(
        tokio::time::timeout(TaskEvents::SWEEP_INTERVAL * 2, watch.changed())
            .await
            .is_err()
    );
    stop.cancel();
    sweep.await.expect("sweep ends");
}
