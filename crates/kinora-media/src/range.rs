//! Random access to a stored or in-memory file, so containers whose index sits at the end
//! (an MP4's `moov` after `mdat`) are probed without reading the whole file.

use async_trait::async_trait;
use bytes::Bytes;
use kinora_storage::{ObjectKey, ObjectStorage};

/// A file that can be read at any offset.
#[async_trait]
pub trait RangeRead: Send + Sync {
    /// Total size in bytes.
    fn len(&self) -> u64;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Up to `len` bytes starting at `offset` (fewer only at the end of the file).
    async fn read_at(&self, offset: u64, len: u64) -> Result<Bytes, kinora_core::Error>;
}

#[async_trait]
impl RangeRead for Bytes {
    fn len(&self) -> u64 {
        Bytes::len(self) as u64
    }

    async fn read_at(&self, offset: u64, len: u64) -> Result<Bytes, kinora_core::Error> {
        let size = Bytes::len(self);
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(size);
        let end = start
            .saturating_add(usize::try_from(len).unwrap_or(usize::MAX))
            .min(size);
        Ok(self.slice(start..end))
    }
}

/// An object in kinora's object storage, read by ranges.
pub struct StoredFile {
    storage: ObjectStorage,
    key: ObjectKey,
    size: u64,
}

impl StoredFile {
    pub async fn open(storage: ObjectStorage, key: ObjectKey) -> Result<Self, kinora_core::Error> {
        let size = storage
            .head(&key)
            .await?
            .ok_or_else(|| kinora_core::Error::not_found(format!("object {key} does not exist")))?
            .size;
        Ok(Self { storage, key, size })
    }
}

#[async_trait]
impl RangeRead for StoredFile {
    fn len(&self) -> u64 {
        self.size
    }

    async fn read_at(&self, offset: u64, len: u64) -> Result<Bytes, kinora_core::Error> {
        if offset >= self.size || len == 0 {
            return Ok(Bytes::new());
        }
        let end = offset.saturating_add(len).min(self.size);
        self.storage.get_range(&self.key, offset..end).await
    }
}
