//! What a provider is to kinora's workers: something that accepts a task, reports progress,
//! and leaves the outputs in kinora's own object storage before it says "succeeded".

pub mod kling;
pub mod local;
mod registry;
#[cfg(feature = "scripted")]
pub mod scripted;

use std::time::Duration;

use async_trait::async_trait;
use kinora_core::{FailureClass, Task};
use kinora_storage::ObjectStorage;
use tokio_util::sync::CancellationToken;

pub use registry::{Channel, ChannelSettings, Providers};

/// What a provider gets besides the task.
#[derive(Clone)]
pub struct ProviderContext {
    pub storage: ObjectStorage,
    /// Set when the worker must stop (shutdown, lost lease); long work checks it.
    pub cancel: CancellationToken,
    /// True when no earlier submit of this task can have reached the provider (the first
    /// run of its first submit), so an upstream lookup before creating can be skipped.
    pub first_submit: bool,
    /// The task object the upstream last pushed to kinora's receiver, if any: fresher than
    /// the last poll, and verified when it was received.
    pub pushed: Option<serde_json::Value>,
    /// Where the upstream may push task changes, when the receiver is enabled.
    pub upstream_callback_url: Option<String>,
    /// Which run of the current step this is, from 1; failed runs in a row count up, a step
    /// that made progress starts again at 1.
    pub attempt: u32,
}

impl ProviderContext {
    pub fn new(storage: ObjectStorage, cancel: CancellationToken) -> Self {
        Self {
            storage,
            cancel,
            first_submit: false,
            pushed: None,
            upstream_callback_url: None,
            attempt: 1,
        }
    }
}

/// A provider accepted the task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submission {
    /// The provider's own id for the task, if it has one.
    pub upstream_task_id: Option<String>,
    /// When to ask for progress first.
    pub first_poll_after: Duration,
}

/// Where a submitted task stands.
#[derive(Clone, Debug, PartialEq)]
pub enum Progress {
    /// Accepted, not started.
    Pending,
    Running,
    /// Outputs are stored; `result` describes them (object keys, media facts).
    Succeeded {
        result: serde_json::Value,
    },
    Failed {
        class: FailureClass,
        message: String,
    },
}

/// Why a provider call did not give an answer. The variant decides what the worker does.
#[derive(Clone, Debug, PartialEq)]
pub enum ProviderError {
    /// The provider is at its concurrency limit: the task waits its turn; not a failure.
    Busy { retry_after: Duration },
    /// Worth retrying with backoff (timeouts, 5xx, lost connections).
    Transient { message: String },
    /// The channel itself cannot take tasks (its upstream account has no balance, is
    /// suspended, or refuses the credentials): the channel is disabled until an operator
    /// enables it, and the task moves to the route's next channel.
    ChannelUnusable { message: String },
    /// Retrying cannot help: the task fails with this class and message.
    Permanent {
        class: FailureClass,
        message: String,
    },
}

/// One upstream (or the local engine) that can run tasks.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// Hands the task over. Must be safe to call again for the same task after a crash:
    /// providers look the task up by its id before creating it twice.
    async fn submit(&self, task: &Task, cx: &ProviderContext) -> Result<Submission, ProviderError>;

    /// Reports progress; on success the outputs are already in `cx.storage`.
    async fn poll(&self, task: &Task, cx: &ProviderContext) -> Result<Progress, ProviderError>;

    /// Whether the work itself happens inside `poll` (a local renderer) rather than upstream,
    /// so the task is running from the moment a poll starts.
    fn works_during_poll(&self) -> bool {
        false
    }

    /// Whether the provider's upstream pushes task changes to kinora's receiver, so a poll
    /// should look for a pushed task object first.
    fn takes_pushes(&self) -> bool {
        false
    }

    /// How long to wait before the next poll of a task submitted `age` ago: young tasks are
    /// polled often, old ones less (a quarter of the age, between 2 and 30 s).
    fn next_poll_delay(&self, _task: &Task, age: Duration) -> Duration {
        (age / 4).clamp(Duration::from_secs(2), Duration::from_secs(30))
    }
}

impl std::fmt::Display for ProviderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Busy { retry_after } => write!(f, "provider busy, retry after {retry_after:?}"),
            Self::Transient { message } => write!(f, "transient provider error: {message}"),
            Self::ChannelUnusable { message } => write!(f, "channel unusable: {message}"),
            Self::Permanent { class, message } => write!(f, "{class}: {message}"),
        }
    }
}

impl std::error::Error for ProviderError {}
