//! A typed client for kinora's unified dialect: create a video task, read it, wait for it to
//! end, and download its result. Request bodies are free JSON (every parameter the server
//! knows, or passes through), built with [`CreateVideo`] for the common ones.

use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::io::AsyncWriteExt;

/// Everything that can go wrong talking to kinora.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// kinora refused the request; `code` is the dialect's stable error code.
    #[error("{status} {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
        param: Option<String>,
    },
    #[error("cannot reach kinora: {0}")]
    Http(#[from] reqwest::Error),
    #[error("unexpected answer from kinora: {0}")]
    Decode(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the task did not end within {0:?}")]
    Timeout(Duration),
    #[error("the task failed: {0}")]
    Failed(String),
}

pub type Result<T> = std::result::Result<T, ClientError>;

/// A task's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VideoStatus {
    Pending,
    Processing,
    Completed,
    Failed,
}

impl VideoStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub seconds: f64,
    #[serde(default)]
    pub video_count: u32,
    #[serde(default)]
    pub size: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VideoFile {
    pub url: String,
    pub duration: f64,
    #[serde(default)]
    pub width: Option<u32>,
    #[serde(default)]
    pub height: Option<u32>,
    #[serde(default)]
    pub cover_url: Option<String>,
}

/// The task object of `POST /v1/videos` and `GET /v1/videos/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VideoTask {
    pub id: String,
    pub status: VideoStatus,
    pub created_at: String,
    pub model: String,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub external_task_id: Option<String>,
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub completed_at: Option<String>,
    #[serde(default)]
    pub video_url: Option<String>,
    #[serde(default)]
    pub usage: Option<Usage>,
    #[serde(default)]
    pub data: Vec<VideoFile>,
}

#[derive(Deserialize)]
struct VideoPage {
    data: Vec<VideoTask>,
}

/// The common parameters of `POST /v1/videos`; `extra` carries any other field as is.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CreateVideo {
    pub model: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aspect_ratio: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sound: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_tail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_task_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A connection to one kinora server with one API key.
#[derive(Clone)]
pub struct Client {
    base: String,
    key: String,
    http: reqwest::Client,
}

impl Client {
    /// `base` is the server's URL (`http://127.0.0.1:8080`); `key` an API key.
    pub fn new(base: &str, key: &str) -> Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
            http,
        })
    }

    async fn answer<T: serde::de::DeserializeOwned>(response: reqwest::Response) -> Result<T> {
        let status = response.status().as_u16();
        let body: Value = response
            .json()
            .await
            .map_err(|e| ClientError::Decode(format!("HTTP {status} with a non-JSON body: {e}")))?;
        if status >= 400 {
            let error = &body["error"];
            let text = |k: &str| error[k].as_str().map(str::to_owned);
            return Err(ClientError::Api {
                status,
                code: text("code").unwrap_or_else(|| "unknown".to_owned()),
                message: text("message").unwrap_or_else(|| body.to_string()),
                param: text("param"),
            });
        }
        serde_json::from_value(body).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// `POST /v1/videos` with any JSON body.
    pub async fn create_video_json(&self, body: &Value) -> Result<VideoTask> {
        let response = self
            .http
            .post(format!("{}/v1/videos", self.base))
            .bearer_auth(&self.key)
            .json(body)
            .send()
            .await?;
        Self::answer(response).await
    }

    /// `POST /v1/videos` with the common parameters.
    pub async fn create_video(&self, request: &CreateVideo) -> Result<VideoTask> {
        let body = serde_json::to_value(request).map_err(|e| ClientError::Decode(e.to_string()))?;
        self.create_video_json(&body).await
    }

    /// `GET /v1/videos/{id}`; `id` may be a task id or an `external_task_id`.
    pub async fn get_video(&self, id: &str) -> Result<VideoTask> {
        let response = self
            .http
            .get(format!("{}/v1/videos/{id}", self.base))
            .bearer_auth(&self.key)
            .send()
            .await?;
        Self::answer(response).await
    }

    /// A page (from 1) of the account's tasks, newest first (`GET /kinora/v1/videos`, kinora's
    /// own listing: the unified dialect has none).
    pub async fn list_videos(&self, page: u32, page_size: u32) -> Result<Vec<VideoTask>> {
        let response = self
            .http
            .get(format!("{}/kinora/v1/videos", self.base))
            .query(&[("page_num", page), ("page_size", page_size)])
            .bearer_auth(&self.key)
            .send()
            .await?;
        let page: VideoPage = Self::answer(response).await?;
        Ok(page.data)
    }

    /// Polls every `interval` until the task ends or `timeout` passes, calling `progress` after
    /// every poll. A failed task is [`ClientError::Failed`].
    pub async fn wait(
        &self,
        id: &str,
        interval: Duration,
        timeout: Duration,
        mut progress: impl FnMut(&VideoTask, Duration),
    ) -> Result<VideoTask> {
        let start = Instant::now();
        loop {
            let task = self.get_video(id).await?;
            progress(&task, start.elapsed());
            match task.status {
                VideoStatus::Completed => return Ok(task),
                VideoStatus::Failed => {
                    return Err(ClientError::Failed(
                        task.error.unwrap_or_else(|| "no reason given".to_owned()),
                    ))
                }
                VideoStatus::Pending | VideoStatus::Processing => {}
            }
            if start.elapsed() >= timeout {
                return Err(ClientError::Timeout(timeout));
            }
            tokio::time::sleep(interval).await;
        }
    }

    /// Streams a result URL into `path`; returns the bytes written.
    pub async fn download(&self, url: &str, path: &Path) -> Result<u64> {
        let response = self.http.get(url).send().await?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(ClientError::Api {
                status,
                code: "download_failed".to_owned(),
                message: format!("downloading {url} answered HTTP {status}"),
                param: None,
            });
        }
        let partial = path.with_extension("part");
        let mut file = tokio::fs::File::create(&partial).await?;
        let mut written = 0u64;
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            file.write_all(&chunk).await?;
            written += chunk.len() as u64;
        }
        file.flush().await?;
        drop(file);
        // Renamed only once complete, so a failed download never looks like a video.
        tokio::fs::rename(&partial, path).await?;
        Ok(written)
    }
}
