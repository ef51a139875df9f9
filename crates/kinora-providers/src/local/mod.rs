//! The `local` provider: kinora's built-in render engine. It renders on kinora's own CPU, so
//! "submitting" only accepts the task; the render happens on the first poll, and its outputs
//! are in object storage before the poll reports success. A poll that finds the outputs
//! already stored (a crash after rendering) reports them instead of rendering again.
//!
//! The engine is a deterministic procedural renderer for development, tests and demos, not a
//! generative model; every result says so in its `engine` object.

mod spec;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use kinora_core::{ErrorCode, FailureClass, Task};
use kinora_render::engine::{CancelFlag, EnginePool, RenderError};
use kinora_render::{Asset, RenderSpec};
use kinora_storage::{keys, ObjectKey};
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::{Progress, Provider, ProviderContext, ProviderError, Submission};

pub const ENGINE_NAME: &str = "kinora-local";
pub const ENGINE_REVISION: &str = "r2";

pub struct LocalProvider {
    pool: Arc<EnginePool>,
    /// One permit per engine thread: renders queue here instead of oversubscribing the cores.
    slots: Arc<Semaphore>,
}

impl LocalProvider {
    /// An engine with `threads` render threads (the machine's parallelism when `None`).
    pub fn new(threads: Option<usize>) -> Result<Self, kinora_core::Error> {
        let threads = threads.filter(|&t| t > 0).unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        });
        let pool = EnginePool::new(threads)
            .map_err(|e| kinora_core::Error::internal(format!("render engine: {e}")))?;
        Ok(Self {
            pool: Arc::new(pool),
            slots: Arc::new(Semaphore::new(threads)),
        })
    }

    /// The task's render spec, with every input read from storage.
    async fn load_spec(task: &Task, cx: &ProviderContext) -> Result<RenderSpec, ProviderError> {
        let request = spec::request_of(task)?;
        let mut assets = BTreeMap::new();
        for key in spec::media_keys(&request) {
            let object =
                ObjectKey::parse(&key).map_err(|e| spec::invalid(format!("input {key}: {e}")))?;
            let bytes = match cx.storage.get_bytes(&object).await {
                Ok(bytes) => bytes,
                Err(e) if e.code() == ErrorCode::NotFound => {
                    return Err(spec::invalid(format!(
                        "input {key} is no longer in storage"
                    )))
                }
                Err(e) => {
                    return Err(ProviderError::Transient {
                        message: e.to_string(),
                    })
                }
            };
            assets.insert(key, Asset::new(bytes.to_vec()));
        }
        spec::render_spec(task, &request, &assets)
    }

    /// Checks the request's fields without reading its inputs (submit must stay quick).
    fn check_fields(task: &Task) -> Result<(), ProviderError> {
        let request = spec::request_of(task)?;
        // Placeholder bytes: only the fields are checked here; the real inputs are read at
        // render time.
        let assets = spec::media_keys(&request)
            .into_iter()
            .map(|k| (k, Asset::new(Vec::new())))
            .collect();
        spec::render_spec(task, &request, &assets).map(|_| ())
    }

    fn output_key(task: &Task, name: &str) -> Result<ObjectKey, ProviderError> {
        keys::task_output(&task.id, name).map_err(|e| ProviderError::Transient {
            message: e.to_string(),
        })
    }

    /// The result recorded when the render was stored, if it was.
    async fn stored_result(
        &self,
        task: &Task,
        cx: &ProviderContext,
    ) -> Result<Option<Value>, ProviderError> {
        match cx
            .storage
            .get_bytes(&Self::output_key(task, "result.json")?)
            .await
        {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| ProviderError::Transient {
                        message: format!("stored result is unreadable: {e}"),
                    })
            }
            Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(ProviderError::Transient {
                message: e.to_string(),
            }),
        }
    }

    async fn render(&self, task: &Task, cx: &ProviderContext) -> Result<Value, ProviderError> {
        let spec = Self::load_spec(task, cx).await?;
        let _permit = self
            .slots
            .acquire()
            .await
            .map_err(|_| ProviderError::Transient {
                message: "render engine is shutting down".into(),
            })?;
        let cancel = CancelFlag::new();
        let watcher = {
            let cancel = cancel.clone();
            let token = cx.cancel.clone();
            tokio::spawn(async move {
                token.cancelled().await;
                cancel.cancel();
            })
        };
        let pool = self.pool.clone();
        let rendered =
            tokio::task::spawn_blocking(move || kinora_render::render(&spec, &pool, &cancel)).await;
        watcher.abort();
        let output = match rendered {
            Ok(Ok(output)) => output,
            Ok(Err(RenderError::Client(message))) => {
                return Err(ProviderError::Permanent {
                    class: FailureClass::InvalidInput,
                    message,
                })
            }
            Ok(Err(e)) => {
                return Err(ProviderError::Transient {
                    message: e.to_string(),
                })
            }
            Err(e) => {
                return Err(ProviderError::Transient {
                    message: format!("render thread failed: {e}"),
                })
            }
        };
        let store = |name: &'static str, bytes: Vec<u8>| async move {
            let key = Self::output_key(task, name)?;
            cx.storage
                .put_bytes(&key, Bytes::from(bytes))
                .await
                .map_err(|e| ProviderError::Transient {
                    message: e.to_string(),
                })
        };
        let video = store("video.mp4", output.mp4).await?;
        let cover = store("cover.jpg", output.cover_jpeg).await?;
        let watermarked = match output.watermarked_mp4 {
            Some(bytes) => Some(store("video_watermarked.mp4", bytes).await?),
            None => None,
        };
        let meta = output.meta;
        let result = json!({
            "videos": [{
                "key": video.key.as_str(),
                "size": video.size,
                "cover_key": cover.key.as_str(),
                "watermark_key": watermarked.as_ref().map(|w| w.key.as_str()),
                "width": meta.width,
                "height": meta.height,
                "frame_count": meta.frame_count,
                "duration": meta.duration,
                "has_audio": meta.has_audio,
            }],
            "engine": { "name": ENGINE_NAME, "revision": ENGINE_REVISION, "deterministic": true, "identity": meta.identity },
        });
        // Written last: its presence means every output above is complete.
        store("result.json", result.to_string().into_bytes()).await?;
        Ok(result)
    }
}

#[async_trait]
impl Provider for LocalProvider {
    async fn submit(
        &self,
        task: &Task,
        _cx: &ProviderContext,
    ) -> Result<Submission, ProviderError> {
        // Refuse what the engine cannot render before the task counts as submitted.
        Self::check_fields(task)?;
        Ok(Submission {
            upstream_task_id: None,
            first_poll_after: Duration::ZERO,
        })
    }

    fn works_during_poll(&self) -> bool {
        true
    }

    async fn poll(&self, task: &Task, cx: &ProviderContext) -> Result<Progress, ProviderError> {
        if let Some(result) = self.stored_result(task, cx).await? {
            return Ok(Progress::Succeeded { result });
        }
        let result = self.render(task, cx).await?;
        Ok(Progress::Succeeded { result })
    }
}
