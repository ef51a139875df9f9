//! Every image and video a request names passes through here before a task is accepted:
//! fetched through one address guard or decoded from Base64, stored with the task, probed
//! from its headers, and checked against the rules of its field.

mod error;
pub mod fetch;
pub mod guard;
pub mod image;
pub mod range;
pub mod source;
pub mod stage;
pub mod video;

pub use error::{MediaError, MediaErrorKind};
