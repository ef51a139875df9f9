use crate::config::{S3Config, StorageConfig};
use crate::keys::{self, ObjectKey};
use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use futures::Stream;
use kinora_core::{Error, ErrorCode};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    MultipartUpload, ObjectMeta, ObjectStore, PutPayload, PutPayloadMut, PutResult,
};
use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

/// Size of every multipart part but the last. S3 (and moto) reject non-final parts under
/// 5 MiB, and S3 allows at most 10,000 parts, so this caps one object at about 48 GiB.
const PART_SIZE: usize = 5 * 1024 * 1024;

/// Parts uploaded concurrently by one `put_stream`; bounds its memory to about
/// `(PARTS_IN_FLIGHT + 1) * PART_SIZE`.
const PARTS_IN_FLIGHT: usize = 3;

/// A readiness probe that hangs is as bad as one that fails, and the S3 client retries for
/// minutes by default.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// What [`ObjectStorage`] knows about a stored object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredObject {
    pub key: ObjectKey,
    pub size: u64,
    pub e_tag: Option<String>,
}

/// Handle on the configured backend; cheap to clone and share.
#[derive(Clone)]
pub struct ObjectStorage {
    store: Arc<dyn ObjectStore>,
    backend: &'static str,
}

impl fmt::Debug for ObjectStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectStorage")
            .field("backend", &self.backend)
            .field("store", &format_args!("{}", self.store))
            .finish()
    }
}

impl ObjectStorage {
    /// Builds the backend. Does no network I/O; use [`ObjectStorage::check`] to probe it.
    pub fn open(config: &StorageConfig) -> Result<Self, Error> {
        match config {
            StorageConfig::Filesystem { root } => {
                if root.as_os_str().is_empty() {
                    return Err(Error::new(
                        ErrorCode::Config,
                        "filesystem storage root must not be empty",
                    ));
                }
                std::fs::create_dir_all(root).map_err(|e| {
                    Error::new(
                        ErrorCode::Storage,
                        format!("cannot create storage root {}: {e}", root.display()),
                    )
                })?;
                let store = LocalFileSystem::new_with_prefix(root)
                    .map_err(|e| {
                        Error::new(
                            ErrorCode::Storage,
                            format!("cannot open storage root {}: {e}", root.display()),
                        )
                    })?
                    // Without this every deleted task would leave its empty directories behind.
                    .with_automatic_cleanup(true);
                Ok(Self::from_store(Arc::new(store), "filesystem"))
            }
            StorageConfig::Memory => Ok(Self::from_store(Arc::new(InMemory::new()), "memory")),
            StorageConfig::S3(s3) => Ok(Self::from_store(Arc::new(open_s3(s3)?), "s3")),
        }
    }

    fn from_store(store: Arc<dyn ObjectStore>, backend: &'static str) -> Self {
        Self { store, backend }
    }

    /// `"filesystem"`, `"memory"` or `"s3"`.
    pub fn backend_name(&self) -> &'static str {
        self.backend
    }

    /// Stores `bytes` under `key` in one request, replacing any existing object.
    pub async fn put_bytes(&self, key: &ObjectKey, bytes: Bytes) -> Result<StoredObject, Error> {
        let size = bytes.len() as u64;
        let result = self
            .store
            .put(&path(key)?, PutPayload::from(bytes))
            .await
            .map_err(|e| storage_error("put", key.as_str(), e))?;
        tracing::debug!(backend = self.backend, key = %key, size, "stored object");
        Ok(StoredObject {
            key: key.clone(),
            size,
            e_tag: result.e_tag,
        })
    }

    /// Streams into storage with a multipart upload (object_store's `put_multipart`), never
    /// buffering the whole body: parts of 5 MiB, at most three in flight.
    ///
    /// A body that ends within the first part is sent as a single put instead, which saves
    /// two requests and works for empty bodies on every backend.
    ///
    /// `max_bytes`: if the stream yields more than this, the upload is aborted, nothing is left
    /// behind and an [`ErrorCode::InvalidInput`] error naming the limit is returned. A stream
    /// error aborts the upload the same way and is returned as an [`ErrorCode::Storage`] error
    /// that includes the cause. An existing object under `key` is only replaced on success.
    /// Dropping the future midway (a cancelled request) aborts the upload in the background.
    pub async fn put_stream<S, E>(
        &self,
        key: &ObjectKey,
        stream: S,
        max_bytes: Option<u64>,
    ) -> Result<StoredObject, Error>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: fmt::Display,
    {
        let location = path(key)?;
        let mut stream = std::pin::pin!(stream);
        // The body so far, while it is too small to need a multipart upload.
        let mut head: Vec<Bytes> = Vec::new();
        let mut head_len = 0usize;
        let mut upload: Option<MultipartWriter> = None;
        let mut total: u64 = 0;

        loop {
            // Only the message outlives this statement, so `E` need not be `Send`.
            let next = stream.next().await.map(|r| r.map_err(|e| e.to_string()));
            let chunk = match next {
                None => break,
                Some(Ok(chunk)) => chunk,
                Some(Err(cause)) => {
                    if let Some(upload) = upload {
                        upload.abort().await;
                    }
                    return Err(Error::new(
                        ErrorCode::Storage,
                        format!("upload of {key} failed while reading the body: {cause}"),
                    ));
                }
            };
            total = total.saturating_add(chunk.len() as u64);
            if let Some(limit) = max_bytes {
                if total > limit {
                    if let Some(upload) = upload {
                        upload.abort().await;
                    }
                    return Err(Error::invalid(format!(
                        "upload of {key} exceeds the limit of {limit} bytes"
                    )));
                }
            }

            if let Some(writer) = upload.as_mut() {
                if let Err(e) = writer.write(chunk).await {
                    if let Some(upload) = upload {
                        upload.abort().await;
                    }
                    return Err(e);
                }
                continue;
            }

            head_len += chunk.len();
            head.push(chunk);
            if head_len >= PART_SIZE {
                let started =
                    self.store.put_multipart(&location).await.map_err(|e| {
                        storage_error("starting multipart upload of", key.as_str(), e)
                    })?;
                let mut writer = MultipartWriter::new(started, key);
                for buffered in head.drain(..) {
                    if let Err(e) = writer.write(buffered).await {
                        writer.abort().await;
                        return Err(e);
                    }
                }
                upload = Some(writer);
            }
        }

        let e_tag = match upload {
            Some(writer) => writer.finish().await?.e_tag,
            None => {
                self.store
                    .put(&location, PutPayload::from_iter(head))
                    .await
                    .map_err(|e| storage_error("put", key.as_str(), e))?
                    .e_tag
            }
        };
        tracing::debug!(backend = self.backend, key = %key, size = total, "streamed object");
        Ok(StoredObject {
            key: key.clone(),
            size: total,
            e_tag,
        })
    }

    /// The whole object; [`ErrorCode::NotFound`] if it does not exist.
    pub async fn get_bytes(&self, key: &ObjectKey) -> Result<Bytes, Error> {
        self.store
            .get(&path(key)?)
            .await
            .map_err(|e| read_error("get", key.as_str(), e))?
            .bytes()
            .await
            .map_err(|e| read_error("read", key.as_str(), e))
    }

    /// The object's metadata and a stream of its bytes; [`ErrorCode::NotFound`] if it does not
    /// exist.
    pub async fn get_stream(
        &self,
        key: &ObjectKey,
    ) -> Result<(StoredObject, BoxStream<'static, Result<Bytes, Error>>), Error> {
        let result = self
            .store
            .get(&path(key)?)
            .await
            .map_err(|e| read_error("get", key.as_str(), e))?;
        let object = StoredObject {
            key: key.clone(),
            size: result.meta.size,
            e_tag: result.meta.e_tag.clone(),
        };
        let owned_key = key.to_string();
        let body = result
            .into_stream()
            .map_err(move |e| read_error("read", &owned_key, e))
            .boxed();
        Ok((object, body))
    }

    /// Bytes `range.start..range.end` of the object, for HTTP Range requests.
    ///
    /// The range must be non-empty and start inside the object, else the error is
    /// [`ErrorCode::InvalidInput`]; an end past the object's end is cut to it (every backend
    /// does that). Callers serving HTTP should still clamp against [`ObjectStorage::head`]'s
    /// size first, to answer 416 without a failed request.
    pub async fn get_range(&self, key: &ObjectKey, range: Range<u64>) -> Result<Bytes, Error> {
        if range.start >= range.end {
            return Err(Error::invalid(format!(
                "byte range {}..{} of {key} is empty",
                range.start, range.end
            )));
        }
        let location = path(key)?;
        match self.store.get_range(&location, range.clone()).await {
            Ok(bytes) => Ok(bytes),
            Err(e @ object_store::Error::NotFound { .. }) => {
                Err(read_error("get", key.as_str(), e))
            }
            Err(e) => {
                // Backends word an unsatisfiable range differently (S3 says 416, the others a
                // generic error); ask for the size so callers get one answer everywhere.
                if let Ok(meta) = self.store.head(&location).await {
                    if range.start >= meta.size {
                        return Err(Error::invalid(format!(
                            "byte range {}..{} starts past the end of {key}, which is {} bytes long",
                            range.start, range.end, meta.size
                        )));
                    }
                }
                Err(storage_error("ranged get", key.as_str(), e))
            }
        }
    }

    /// Metadata of the object, `None` if it does not exist.
    pub async fn head(&self, key: &ObjectKey) -> Result<Option<StoredObject>, Error> {
        match self.store.head(&path(key)?).await {
            Ok(meta) => Ok(Some(StoredObject {
                key: key.clone(),
                size: meta.size,
                e_tag: meta.e_tag,
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(storage_error("head", key.as_str(), e)),
        }
    }

    /// Deletes the object; deleting a missing object succeeds.
    pub async fn delete(&self, key: &ObjectKey) -> Result<(), Error> {
        match self.store.delete(&path(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                tracing::debug!(backend = self.backend, key = %key, "deleted object");
                Ok(())
            }
            Err(e) => Err(storage_error("delete", key.as_str(), e)),
        }
    }

    /// Every object under `prefix` (segment-wise: `tasks/a` does not include `tasks/ab/x`),
    /// recursively, sorted by key.
    ///
    /// Objects whose names are not valid keys (put there by something other than kinora) are
    /// skipped with a warning; [`ObjectStorage::delete_prefix`] still removes them.
    pub async fn list(&self, prefix: &ObjectKey) -> Result<Vec<StoredObject>, Error> {
        let mut objects: Vec<StoredObject> = self
            .list_meta(prefix)
            .await?
            .into_iter()
            .filter_map(|meta| match ObjectKey::parse(meta.location.as_ref()) {
                Ok(key) => Some(StoredObject {
                    key,
                    size: meta.size,
                    e_tag: meta.e_tag,
                }),
                Err(e) => {
                    tracing::warn!(backend = self.backend, error = %e, "skipping object with an invalid key");
                    None
                }
            })
            .collect();
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }

    /// Deletes every object under `prefix` and returns how many were deleted.
    pub async fn delete_prefix(&self, prefix: &ObjectKey) -> Result<usize, Error> {
        let locations: Vec<_> = self
            .list_meta(prefix)
            .await?
            .into_iter()
            .map(|meta| Ok(meta.location))
            .collect();
        let mut results = self
            .store
            .delete_stream(futures::stream::iter(locations).boxed());
        let mut deleted = 0usize;
        while let Some(result) = results.next().await {
            match result {
                Ok(_) => deleted += 1,
                // Deleted concurrently by someone else: the goal is reached all the same.
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    return Err(Error::new(
                        ErrorCode::Storage,
                        format!(
                            "delete of prefix {prefix} failed after {deleted} objects: {}",
                            describe(&e)
                        ),
                    ))
                }
            }
        }
        tracing::debug!(backend = self.backend, prefix = %prefix, deleted, "deleted prefix");
        Ok(deleted)
    }

    /// Readiness probe: writes, reads back and deletes a tiny object under `_health/`; any
    /// failed step (or a probe taking longer than ten seconds) is an [`ErrorCode::Storage`]
    /// error, also when the cause was a missing object.
    pub async fn check(&self) -> Result<(), Error> {
        let key = keys::health_probe(&uuid::Uuid::now_v7().simple().to_string());
        let payload = Bytes::from(format!("kinora readiness probe {key}"));
        let probe = async {
            self.put_bytes(&key, payload.clone()).await?;
            let read = self.get_bytes(&key).await;
            // Clean up even when the read failed.
            let deleted = self.delete(&key).await;
            if read? != payload {
                return Err(Error::new(
                    ErrorCode::Storage,
                    format!("{key} read back different bytes than were written"),
                ));
            }
            deleted
        };
        match tokio::time::timeout(CHECK_TIMEOUT, probe).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Error::new(
                ErrorCode::Storage,
                format!("{} storage check failed: {}", self.backend, e.message()),
            )),
            Err(_) => Err(Error::new(
                ErrorCode::Storage,
                format!(
                    "{} storage check did not finish within {}s",
                    self.backend,
                    CHECK_TIMEOUT.as_secs()
                ),
            )),
        }
    }

    async fn list_meta(&self, prefix: &ObjectKey) -> Result<Vec<ObjectMeta>, Error> {
        self.store
            .list(Some(&path(prefix)?))
            .try_collect()
            .await
            .map_err(|e| storage_error("list", prefix.as_str(), e))
    }
}

fn open_s3(config: &S3Config) -> Result<object_store::aws::AmazonS3, Error> {
    let config_error = |msg: String| Error::new(ErrorCode::Config, msg);
    if config.bucket.trim().is_empty() {
        return Err(config_error("s3 storage needs a bucket".into()));
    }
    let mut builder = match (&config.access_key_id, &config.secret_access_key) {
        (Some(id), Some(secret)) => AmazonS3Builder::new()
            .with_access_key_id(id)
            .with_secret_access_key(secret),
        (None, None) => AmazonS3Builder::from_env(),
        _ => {
            return Err(config_error(
                "s3 storage needs both access_key_id and secret_access_key, or neither".into(),
            ))
        }
    };
    let region = if config.region.trim().is_empty() {
        "us-east-1"
    } else {
        config.region.trim()
    };
    builder = builder
        .with_bucket_name(&config.bucket)
        .with_region(region)
        .with_allow_http(config.allow_http)
        .with_virtual_hosted_style_request(config.virtual_hosted_style);
    if let Some(endpoint) = &config.endpoint {
        let endpoint = endpoint.trim_end_matches('/');
        if endpoint.starts_with("http://") {
            if !config.allow_http {
                return Err(config_error(format!(
                    "s3 endpoint {endpoint} is plain http; set allow_http to use it"
                )));
            }
        } else if !endpoint.starts_with("https://") {
            return Err(config_error(format!(
                "s3 endpoint {endpoint:?} must start with http:// or https://"
            )));
        }
        builder = builder.with_endpoint(endpoint);
    }
    builder
        .build()
        .map_err(|e| config_error(format!("invalid s3 storage configuration: {e}")))
}

/// Our key rules are stricter than `Path`'s, so this only fails on a bug.
fn path(key: &ObjectKey) -> Result<Path, Error> {
    Path::parse(key.as_str())
        .map_err(|e| Error::internal(format!("object key {key} is not a valid path: {e}")))
}

/// For reads, where "not found" means the object is missing.
fn read_error(op: &str, key: &str, err: object_store::Error) -> Error {
    match err {
        object_store::Error::NotFound { .. } => Error::not_found(format!("object {key} not found")),
        other => storage_error(op, key, other),
    }
}

/// For everything else: a 404 on a write or a list means the bucket is missing, which is a
/// broken backend rather than a missing object.
fn storage_error(op: &str, key: &str, err: object_store::Error) -> Error {
    Error::new(
        ErrorCode::Storage,
        format!("{op} {key} failed: {}", describe(&err)),
    )
}

/// The error with its whole source chain; object_store's top-level messages often omit the
/// part that says what actually went wrong (connection refused, HTTP status).
fn describe(err: &object_store::Error) -> String {
    let mut message = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// Drives one multipart upload: cuts the body into [`PART_SIZE`] parts, keeps at most
/// [`PARTS_IN_FLIGHT`] of them uploading, and aborts the upload on every way out but a
/// successful `finish`, including being dropped. (object_store's `WriteMultipart` is not used
/// because it drops the upload without aborting it when a part fails during `finish`, which on
/// S3 leaves the uploaded parts stored, and billed, until a lifecycle rule removes them.)
struct MultipartWriter {
    /// `None` once completed or aborted.
    upload: Option<Box<dyn MultipartUpload>>,
    buffer: PutPayloadMut,
    parts: JoinSet<object_store::Result<()>>,
    key: String,
}

impl MultipartWriter {
    fn new(upload: Box<dyn MultipartUpload>, key: &ObjectKey) -> Self {
        Self {
            upload: Some(upload),
            buffer: PutPayloadMut::new(),
            parts: JoinSet::new(),
            key: key.to_string(),
        }
    }

    /// Adds `chunk` to the body, sending each part as it fills up.
    async fn write(&mut self, mut chunk: Bytes) -> Result<(), Error> {
        while !chunk.is_empty() {
            let room = PART_SIZE - self.buffer.content_length();
            if chunk.len() < room {
                self.buffer.push(chunk);
                return Ok(());
            }
            self.buffer.push(chunk.split_to(room));
            let part = std::mem::take(&mut self.buffer).freeze();
            self.send(part).await?;
        }
        Ok(())
    }

    async fn send(&mut self, part: PutPayload) -> Result<(), Error> {
        self.wait_for_parts(PARTS_IN_FLIGHT - 1).await?;
        let Some(upload) = self.upload.as_mut() else {
            return Err(self.failed("multipart upload of", "the upload was already closed"));
        };
        // Part numbers are assigned here, in call order, whatever order the uploads finish in.
        self.parts.spawn(upload.put_part(part));
        Ok(())
    }

    async fn wait_for_parts(&mut self, max_in_flight: usize) -> Result<(), Error> {
        while self.parts.len() > max_in_flight {
            match self.parts.join_next().await {
                None | Some(Ok(Ok(()))) => {}
                Some(Ok(Err(e))) => return Err(storage_error("uploading a part of", &self.key, e)),
                Some(Err(e)) => {
                    return Err(self.failed("uploading a part of", &e.to_string()));
                }
            }
        }
        Ok(())
    }

    /// Sends the last part and completes the upload; aborts it if anything fails.
    async fn finish(mut self) -> Result<PutResult, Error> {
        match self.complete().await {
            Ok(result) => Ok(result),
            Err(e) => {
                self.abort_now().await;
                Err(e)
            }
        }
    }

    async fn complete(&mut self) -> Result<PutResult, Error> {
        if !self.buffer.is_empty() {
            let part = std::mem::take(&mut self.buffer).freeze();
            self.send(part).await?;
        }
        self.wait_for_parts(0).await?;
        let Some(upload) = self.upload.as_mut() else {
            return Err(self.failed(
                "completing multipart upload of",
                "the upload was already closed",
            ));
        };
        let result = upload
            .complete()
            .await
            .map_err(|e| storage_error("completing multipart upload of", &self.key, e))?;
        self.upload = None;
        Ok(result)
    }

    /// Aborts and waits for it, so nothing is left behind by the time the caller sees the
    /// error.
    async fn abort(mut self) {
        self.abort_now().await;
    }

    async fn abort_now(&mut self) {
        self.parts.shutdown().await;
        if let Some(mut upload) = self.upload.take() {
            if let Err(e) = upload.abort().await {
                tracing::warn!(key = %self.key, error = %describe(&e), "aborting multipart upload failed");
            }
        }
    }

    fn failed(&self, op: &str, cause: &str) -> Error {
        Error::new(
            ErrorCode::Storage,
            format!("{op} {} failed: {cause}", self.key),
        )
    }
}

impl Drop for MultipartWriter {
    fn drop(&mut self) {
        let Some(mut upload) = self.upload.take() else {
            return;
        };
        // Dropped unfinished: the request carrying the body was cancelled. Dropping `parts`
        // cancels the part uploads; the abort has to run on its own task.
        let key = std::mem::take(&mut self.key);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(e) = upload.abort().await {
                        tracing::warn!(key, error = %describe(&e), "aborting a cancelled upload failed");
                    }
                });
            }
            Err(_) => tracing::warn!(key, "cancelled upload left unaborted: no runtime"),
        }
    }
}
