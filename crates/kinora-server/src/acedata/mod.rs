//! The AceData-style dialect (`/kling/videos`, `/kling/motion`, `/kling/tasks`): flat bodies,
//! blocking or asynchronous creation, task records with float-second times, and string error
//! codes in `{success, error, trace_id}` bodies.

pub mod error;
pub mod http;
pub mod record;
pub mod submit;
