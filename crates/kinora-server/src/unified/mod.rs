//! The unified dialect (`/v1/videos`, `/v1/elements/*`): its error body, its field
//! conventions and the checks of `POST /v1/videos`.

pub mod elements;
pub mod error;
pub mod fields;
pub mod http;
pub(crate) mod omni;
pub mod service;
pub mod submit;
pub mod task;
