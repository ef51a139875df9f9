//! Turning task status changes into callback events: which changes a dialect reports, and its
//! payload, serialised once so every attempt signs and sends the same bytes.
//!
//! Reported changes: the unified and official dialects report work starting (`processing`)
//! and the end (`completed`/`succeed` or `failed`); the AceData dialect reports the end only.
//! The initial `pending`/`submitted` is never reported.

use std::sync::Arc;

use kinora_core::{Dialect, Task, TaskState};
use kinora_store::{CallbackPhase, NewCallbackEvent, Store};
use serde_json::Value;
use tracing::warn;

use super::signing::message_id;
use crate::files::FileUrls;

/// Records callback events for tasks that change.
pub struct Outbox {
    store: Arc<dyn Store>,
    files: FileUrls,
}

/// The phase a task's state reports in its dialect, if any.
pub fn phase(dialect: Dialect, state: TaskState) -> Option<CallbackPhase> {
    match (dialect, state) {
        (_, TaskState::Queued | TaskState::Submitted) => None,
        (Dialect::AceData, TaskState::Running) => None,
        (_, TaskState::Running) => Some(CallbackPhase::Processing),
        (_, TaskState::Succeeded | TaskState::Failed | TaskState::Canceled) => {
            Some(CallbackPhase::Ended)
        }
    }
}

/// What the task's dialect sends for its current state.
pub fn payload(task: &Task, files: &FileUrls) -> Value {
    match task.dialect {
        Dialect::Unified => crate::unified::task::task_body(task, files),
        Dialect::Official => crate::official::task::task_object(task, files),
        Dialect::AceData => {
            let trace_id = crate::acedata::record::trace_id(task);
            let mut body = crate::acedata::record::final_body(task, files)
                .unwrap_or_else(|| serde_json::json!({}));
            body["trace_id"] = Value::String(trace_id);
            body
        }
    }
}

impl Outbox {
    pub fn new(store: Arc<dyn Store>, files: FileUrls) -> Self {
        Self { store, files }
    }

    /// Records the event the task's current state calls for, once per phase. A failure is
    /// logged: the repair sweep records it later.
    pub async fn record(&self, task: &Task) {
        let (Some(url), Some(phase)) = (&task.callback_url, phase(task.dialect, task.state)) else {
            return;
        };
        let event = NewCallbackEvent {
            id: message_id(),
            task_id: task.id,
            account_id: task.account_id,
            phase,
            url: url.clone(),
            body: payload(task, &self.files).to_string(),
        };
        if let Err(e) = self.store.enqueue_callback_event(event).await {
            warn!(task = %task.id, error = %e, "could not record a callback; the sweep will");
        }
    }

    /// Records the events a crash between a task's change and its event left out.
    pub async fn repair(&self, now_ms: i64) {
        // Changes younger than this are left to the worker that is making them.
        const SETTLE_MS: i64 = 10_000;
        match self
            .store
            .tasks_missing_callbacks(now_ms - SETTLE_MS, 100)
            .await
        {
            Ok(tasks) => {
                for task in tasks {
                    self.record(&task).await;
                }
            }
            Err(e) => warn!(error = %e, "could not look for missing callbacks"),
        }
    }
}
