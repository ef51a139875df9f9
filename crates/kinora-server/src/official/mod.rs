//! The official Kling dialect (legacy `model_name` design): `/v1/videos/{feature}` endpoints
//! in the `{code, message, request_id, data}` envelope, with Kling's own error codes.

pub mod advanced_elements;
pub mod capabilities;
pub mod elements;
pub mod error;
pub mod extend;
mod fields;
pub mod http;
pub mod omni;
pub mod submit;
pub mod task;
