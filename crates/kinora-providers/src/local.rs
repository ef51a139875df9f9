//! The `local` provider: kinora's built-in render engine. It renders on kinora's own CPU, so
//! "submitting" only accepts the task; the render happens on the first poll, and its outputs
//! are in object storage before the poll reports success. A poll that finds the outputs
//! already stored (a crash after rendering) reports them instead of rendering again.
//!
//! The engine is a deterministic procedural renderer for development, tests and demos, not a
//! generative model; every result says so in its `engine` object.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use kinora_core::{ErrorCode, FailureClass, Task, TaskKind};
use kinora_render::engine::{CancelFlag, EnginePool, RenderError};
use kinora_render::plan::{Aspect, Mode};
use kinora_render::RenderSpec;
use kinora_storage::{keys, ObjectKey};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::{Progress, Provider, ProviderContext, ProviderError, Submission};

pub const ENGINE_NAME: &str = "kinora-local";
pub const ENGINE_REVISION: &str = "r1";

/// The canonical text2video request as the local engine reads it from a task.
#[derive(Debug, Deserialize)]
struct Text2VideoRequest {
    prompt: String,
    #[serde(default)]
    negative_prompt: Option<String>,
    #[serde(default)]
    cfg_scale: Option<f64>,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    aspect_ratio: Option<String>,
    #[serde(default)]
    duration: Option<Value>,
    #[serde(default)]
    sound: Option<String>,
    #[serde(default)]
    voice_ids: Vec<String>,
}

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

    fn spec(task: &Task) -> Result<RenderSpec, ProviderError> {
        let invalid = |message: String| ProviderError::Permanent {
            class: FailureClass::InvalidInput,
            message,
        };
        if task.kind != TaskKind::Text2Video {
            return Err(invalid(format!(
                "{} is not supported by the local engine yet",
                task.kind
            )));
        }
        let request: Text2VideoRequest = serde_json::from_value(task.request.clone())
            .map_err(|e| invalid(format!("the stored request cannot be rendered: {e}")))?;
        let mut spec = RenderSpec::text2video(request.prompt);
        spec.model_name = task.model.clone();
        spec.negative_prompt = request.negative_prompt.unwrap_or_default();
        spec.cfg_scale = request.cfg_scale;
        if let Some(mode) = request.mode.as_deref() {
            spec.mode = Mode::parse(mode)
                .ok_or_else(|| invalid(format!("mode `{mode}` is not one of std, pro, 4k")))?;
        }
        if let Some(aspect) = request.aspect_ratio.as_deref() {
            spec.aspect = Aspect::parse(aspect).ok_or_else(|| {
                invalid(format!(
                    "aspect_ratio `{aspect}` is not one of 16:9, 9:16, 1:1"
                ))
            })?;
        }
        if let Some(duration) = request.duration {
            let seconds = match &duration {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.parse::<u64>().ok(),
                _ => None,
            };
            spec.duration_s =
                Some(seconds.and_then(|s| u32::try_from(s).ok()).ok_or_else(|| {
                    invalid(format!(
                        "duration {duration} is not a whole number of seconds"
                    ))
                })?);
        }
        spec.sound = request.sound.as_deref() == Some("on");
        spec.voice_ids = request.voice_ids;
        Ok(spec)
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
        let spec = Self::spec(task)?;
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
        let meta = output.meta;
        let result = json!({
            "videos": [{
                "key": video.key.as_str(),
                "size": video.size,
                "cover_key": cover.key.as_str(),
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
        Self::spec(task)?;
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
