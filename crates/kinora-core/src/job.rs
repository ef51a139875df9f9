use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The name of a job type in the durable queue. Payloads are small JSON documents owned by the
/// handler of the kind; the queue itself never looks inside them.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobKind(Cow<'static, str>);

impl JobKind {
    /// Hand a queued task to its provider.
    pub const SUBMIT_TASK: JobKind = JobKind(Cow::Borrowed("task.submit"));
    /// Ask the provider how a submitted task is doing.
    pub const POLL_TASK: JobKind = JobKind(Cow::Borrowed("task.poll"));

    pub const fn from_static(name: &'static str) -> Self {
        Self(Cow::Borrowed(name))
    }

    pub fn new(name: impl Into<String>) -> Self {
        Self(Cow::Owned(name.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JobKind({})", self.0)
    }
}

/// Payload of the task pipeline's jobs: which task to work on, and for a submit, the
/// channels it already failed over from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskJobPayload {
    pub task_id: crate::TaskId,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skip_channels: Vec<String>,
}
