//! Object storage for kinora: task inputs and outputs on the local filesystem, in memory or in
//! an S3-compatible bucket, behind one API and one key layout ([`keys`]).
//!
//! Every fallible function returns [`kinora_core::Error`]: a missing object is
//! [`ErrorCode::NotFound`](kinora_core::ErrorCode::NotFound), a rejected key or an oversized
//! upload is `InvalidInput`, a bad configuration is `Config`, and anything the backend got wrong
//! is `Storage`, naming the key and the cause.

mod config;
pub mod keys;
mod storage;

pub use config::{S3Config, StorageConfig};
pub use keys::ObjectKey;
pub use storage::{ObjectStorage, StoredObject};
