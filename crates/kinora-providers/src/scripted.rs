//! A provider that follows a script: it takes `submit_delay` to accept a task, reports
//! `running` for `running_polls` polls, then stores a small JSON output describing the task
//! and succeeds with it in place of a video. Prompts containing `fail:` fail with the rest of
//! the prompt as the message. It exists so process-level tests (crash recovery, shutdown) can drive the real worker
//! pipeline without a render engine or an upstream; it is compiled only with the `scripted`
//! feature.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use kinora_core::{FailureClass, Task};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Progress, Provider, ProviderContext, ProviderError, Submission};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ScriptedConfig {
    pub submit_delay_ms: u64,
    pub running_polls: u32,
    pub poll_interval_ms: u64,
}

impl Default for ScriptedConfig {
    fn default() -> Self {
        Self {
            submit_delay_ms: 200,
            running_polls: 1,
            poll_interval_ms: 100,
        }
    }
}

pub struct ScriptedProvider {
    config: ScriptedConfig,
}

impl ScriptedProvider {
    pub fn new(config: ScriptedConfig) -> Self {
        Self { config }
    }

    fn polls_key(task: &Task) -> Result<kinora_storage::ObjectKey, ProviderError> {
        kinora_storage::keys::task_output(&task.id, "scripted-polls").map_err(|e| {
            ProviderError::Transient {
                message: e.to_string(),
            }
        })
    }
}

#[async_trait]
impl Provider for ScriptedProvider {
    async fn submit(&self, task: &Task, cx: &ProviderContext) -> Result<Submission, ProviderError> {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(self.config.submit_delay_ms)) => {}
            _ = cx.cancel.cancelled() => {
                return Err(ProviderError::Transient { message: "canceled".into() });
            }
        }
        let prompt = task
            .request
            .get("prompt")
            .and_then(|p| p.as_str())
            .unwrap_or_default();
        if let Some(reason) = prompt.strip_prefix("fail:") {
            return Err(ProviderError::Permanent {
                class: FailureClass::ContentPolicy,
                message: reason.trim().to_owned(),
            });
        }
        Ok(Submission {
            upstream_task_id: Some(format!("scripted-{}", task.id)),
            first_poll_after: Duration::from_millis(self.config.poll_interval_ms),
        })
    }

    async fn poll(&self, task: &Task, cx: &ProviderContext) -> Result<Progress, ProviderError> {
        // The poll count lives in storage, so the script survives a process restart.
        let key = Self::polls_key(task)?;
        let seen = match cx.storage.get_bytes(&key).await {
            Ok(bytes) => String::from_utf8_lossy(&bytes).parse::<u32>().unwrap_or(0),
            Err(e) if e.code() == kinora_core::ErrorCode::NotFound => 0,
            Err(e) => {
                return Err(ProviderError::Transient {
                    message: e.to_string(),
                })
            }
        };
        if seen < self.config.running_polls {
            cx.storage
                .put_bytes(&key, Bytes::from((seen + 1).to_string()))
                .await
                .map_err(|e| ProviderError::Transient {
                    message: e.to_string(),
                })?;
            return Ok(Progress::Running);
        }
        let output = serde_json::json!({
            "task_id": task.id,
            "request_sha256": format!("{:x}", Sha256::digest(task.request.to_string())),
        });
        let key = kinora_storage::keys::task_output(&task.id, "scripted.json").map_err(|e| {
            ProviderError::Transient {
                message: e.to_string(),
            }
        })?;
        let stored = cx
            .storage
            .put_bytes(&key, Bytes::from(output.to_string()))
            .await
            .map_err(|e| ProviderError::Transient {
                message: e.to_string(),
            })?;
        Ok(Progress::Succeeded {
            // Shaped like a render's result so every dialect can answer with it; the "video"
            // is the script's JSON record, not an MP4 (this provider only drives tests).
            result: serde_json::json!({ "videos": [{ "key": stored.key.as_str(), "size": stored.size, "frame_count": 0 }] }),
        })
    }
}
