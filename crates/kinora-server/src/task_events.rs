//! Wake-ups for requests that wait on a task (the AceData dialect's blocking mode). A waiter
//! registers the task it waits for and sleeps on a watch channel: it holds no thread and no
//! database connection. Workers in this process announce every state change they make. Tasks
//! that workers in other processes move are noticed by one sweep that reads the states of all
//! waited-on tasks in a single query every [`TaskEvents::sweep_interval`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use kinora_core::{TaskId, TaskState};
use kinora_store::Store;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// One watched task: a version counter bumped on every announced change, and how many
/// waiters hold it.
struct Entry {
    changes: watch::Sender<u64>,
    waiters: usize,
    /// The state last seen by the sweep, so it announces only real changes.
    last_seen: Option<TaskState>,
}

/// The registry of waited-on tasks.
#[derive(Default)]
pub struct TaskEvents {
    entries: Mutex<HashMap<TaskId, Entry>>,
}

/// A registration; dropping it unregisters.
pub struct TaskWatch {
    events: Arc<TaskEvents>,
    task: TaskId,
    changes: watch::Receiver<u64>,
}

impl TaskWatch {
    /// Resolves at the next announced change after the watch was made (or after the last
    /// call), so a change between registering and reading the task is never missed.
    pub async fn changed(&mut self) {
        if self.changes.changed().await.is_err() {
            // The sender lives as long as any watch of the task, so this does not happen;
            // never spin if it does.
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for TaskWatch {
    fn drop(&mut self) {
        let mut entries = self
            .events
            .entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = entries.get_mut(&self.task) {
            entry.waiters = entry.waiters.saturating_sub(1);
            if entry.waiters == 0 {
                entries.remove(&self.task);
            }
        }
    }
}

impl TaskEvents {
    /// How often the sweep reads the states of waited-on tasks.
    pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

    /// Registers interest in `task`.
    pub fn watch(self: &Arc<Self>, task: TaskId) -> TaskWatch {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.entry(task).or_insert_with(|| Entry {
            changes: watch::channel(0).0,
            waiters: 0,
            last_seen: None,
        });
        entry.waiters += 1;
        TaskWatch {
            events: self.clone(),
            task,
            changes: entry.changes.subscribe(),
        }
    }

    /// Announces that `task` changed; a no-op when nobody waits for it.
    pub fn announce(&self, task: TaskId) {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = entries.get(&task) {
            entry.changes.send_modify(|version| *version += 1);
        }
    }

    /// How many tasks are waited on.
    pub fn watched(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn watched_ids(&self) -> Vec<TaskId> {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .copied()
            .collect()
    }

    /// Announces the tasks whose state differs from what the last sweep saw.
    async fn sweep_once(&self, store: &dyn Store) {
        let ids = self.watched_ids();
        if ids.is_empty() {
            return;
        }
        let states = match store.task_states(&ids).await {
            Ok(states) => states,
            Err(e) => {
                warn!(error = %e, "could not read the states of waited-on tasks");
                return;
            }
        };
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        for (id, state) in states {
            if let Some(entry) = entries.get_mut(&id) {
                // A first sighting wakes too: the task may have moved between the waiter's own
                // read and this sweep; a waiter that finds nothing new waits again.
                if entry.last_seen != Some(state) {
                    entry.changes.send_modify(|version| *version += 1);
                }
                entry.last_seen = Some(state);
            }
        }
    }

    /// Runs the sweep until `stop` is cancelled.
    pub async fn sweep(self: Arc<Self>, store: Arc<dyn Store>, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(Self::SWEEP_INTERVAL) => {}
            }
            self.sweep_once(&*store).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_change_announced_after_watching_wakes_the_waiter() {
        let events = Arc::new(TaskEvents::default());
        let task = TaskId::new();
        let mut watch = events.watch(task);
        events.announce(task);
        tokio::time::timeout(Duration::from_secs(1), watch.changed())
            .await
            .expect("woken");
        // Another task's change does not wake it.
        events.announce(TaskId::new());
        assert!(
            tokio::time::timeout(Duration::from_millis(50), watch.changed())
                .await
                .is_err()
        );
        assert_eq!(events.watched(), 1);
        drop(watch);
        assert_eq!(events.watched(), 0);
    }
}
