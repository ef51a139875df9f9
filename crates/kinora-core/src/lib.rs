//! Canonical kinora types shared by every layer. Nothing here performs I/O.

pub mod billing;
pub mod error;
pub mod ids;
pub mod job;
pub mod request;
pub mod task;

pub use error::{Error, ErrorCode};
pub use ids::{AccountId, TaskId};
pub use job::JobKind;
pub use task::{Dialect, FailureClass, TaskKind, TaskState};
pub mod time;
pub use request::GenerationRequest;
pub use task::{NewTask, Submission, Task};
