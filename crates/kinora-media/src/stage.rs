//! Staging: each input a request names is fetched or decoded once, probed, checked against
//! its field's rules and stored under the task's keys before the task is accepted. Providers
//! and the render engine read the stored copy, so a retry never fetches again.

use bytes::Bytes;
use kinora_core::TaskId;
use kinora_storage::{keys, ObjectKey, ObjectStorage};
use serde::{Deserialize, Serialize};

use crate::fetch::Fetcher;
use crate::image::{probe_image, ImageFormat, ImageInfo, ImageRules};
use crate::range::StoredFile;
use crate::source::{decode_base64, InlinePolicy, MediaSource};
use crate::video::{probe_video, Container, VideoInfo, VideoRules};
use crate::{MediaError, MediaErrorKind};

/// An input stored with its task, and what the probe found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StagedInput {
    /// The request field it came from, e.g. `dynamic_masks[0].mask`.
    pub field: String,
    /// Where the bytes are, in object storage.
    pub key: String,
    pub size: u64,
    /// `jpeg`, `png`, `mp4` or `mov`.
    pub format: String,
    pub width: u32,
    pub height: u32,
    /// Videos only.
    pub duration_ms: Option<u64>,
    pub fps: Option<f64>,
    pub has_audio: Option<bool>,
}

impl StagedInput {
    pub fn image_info(&self) -> Option<ImageInfo> {
        let format = match self.format.as_str() {
            "jpeg" => ImageFormat::Jpeg,
            "png" => ImageFormat::Png,
            _ => return None,
        };
        Some(ImageInfo {
            format,
            width: self.width,
            height: self.height,
        })
    }
}

/// Fetches, decodes, probes and stores task inputs.
#[derive(Clone)]
pub struct Stager {
    fetcher: Fetcher,
    storage: ObjectStorage,
}

impl Stager {
    pub fn new(fetcher: Fetcher, storage: ObjectStorage) -> Self {
        Self { fetcher, storage }
    }

    /// The fetcher inputs go through, for checks that fetch nothing (callback URLs).
    pub fn fetcher(&self) -> &Fetcher {
        &self.fetcher
    }

    /// An image field: URL (fetched through the address guard) or inline Base64 as `policy`
    /// allows, at most `rules.max_bytes`, probed and checked, stored with the task.
    pub async fn image(
        &self,
        task: &TaskId,
        field: &str,
        value: &str,
        policy: InlinePolicy,
        rules: ImageRules,
    ) -> Result<StagedInput, MediaError> {
        self.image_into(field, value, policy, rules, |extension| {
            input_key(task, field, extension)
        })
        .await
    }

    /// An image of an element, with the same sources and checks as [`Stager::image`], stored
    /// as `elements/{element_id}/{name}.{ext}`.
    pub async fn element_image(
        &self,
        element_id: i64,
        name: &str,
        field: &str,
        value: &str,
        policy: InlinePolicy,
        rules: ImageRules,
    ) -> Result<StagedInput, MediaError> {
        self.image_into(field, value, policy, rules, |extension| {
            keys::element_file(element_id, &format!("{name}.{extension}")).map_err(|e| {
                MediaError::new(field, MediaErrorKind::InvalidUrl, e.message().to_owned())
            })
        })
        .await
    }

    async fn image_into(
        &self,
        field: &str,
        value: &str,
        policy: InlinePolicy,
        rules: ImageRules,
        key_for: impl FnOnce(&str) -> Result<ObjectKey, MediaError>,
    ) -> Result<StagedInput, MediaError> {
        let bytes = match MediaSource::parse(field, value, policy)? {
            MediaSource::Url(url) => {
                self.fetcher
                    .fetch_bytes(field, &url, rules.max_bytes)
                    .await?
            }
            MediaSource::Base64(text) => decode_base64(field, &text, rules.max_bytes)?,
        };
        let info = probe_image(field, &bytes)?;
        rules.check(field, &info)?;
        let extension = match info.format {
            ImageFormat::Jpeg => "jpg",
            ImageFormat::Png => "png",
        };
        let key = key_for(extension)?;
        let size = bytes.len() as u64;
        self.store(field, &key, bytes).await?;
        Ok(StagedInput {
            field: field.to_owned(),
            key: key.into_string(),
            size,
            format: info.format.to_string(),
            width: info.width,
            height: info.height,
            duration_ms: None,
            fps: None,
            has_audio: None,
        })
    }

    /// A video field: a URL only, streamed into storage up to `max_bytes`, probed from the
    /// stored copy by ranges and checked; removed again when it breaks a rule.
    pub async fn video(
        &self,
        task: &TaskId,
        field: &str,
        value: &str,
        max_bytes: u64,
        rules: &VideoRules,
    ) -> Result<StagedInput, MediaError> {
        // The container is only known after probing; store under a neutral name first.
        let key = input_key(task, field, "video")?;
        self.video_into(field, value, max_bytes, rules, key).await
    }

    /// Fetches a video URL into an element's files as `{name}` (no extension: the container
    /// is only known after probing), under the same guard and rules as [`Self::video`].
    pub async fn element_video(
        &self,
        element_id: i64,
        name: &str,
        field: &str,
        value: &str,
        max_bytes: u64,
        rules: &VideoRules,
    ) -> Result<StagedInput, MediaError> {
        let key = keys::element_file(element_id, name).map_err(|e| {
            MediaError::new(field, MediaErrorKind::InvalidUrl, e.message().to_owned())
        })?;
        self.video_into(field, value, max_bytes, rules, key).await
    }

    async fn video_into(
        &self,
        field: &str,
        value: &str,
        max_bytes: u64,
        rules: &VideoRules,
        key: ObjectKey,
    ) -> Result<StagedInput, MediaError> {
        let MediaSource::Url(url) = MediaSource::parse(field, value, InlinePolicy::UrlOnly)? else {
            return Err(MediaError::new(
                field,
                MediaErrorKind::InvalidUrl,
                "must be an absolute http:// or https:// URL",
            ));
        };
        let stored = self
            .fetcher
            .fetch_to_storage(field, &url, max_bytes, &self.storage, &key)
            .await?;
        let checked = self.probe_stored_video(field, &key, rules).await;
        let info = match checked {
            Ok(info) => info,
            Err(e) => {
                let _ = self.storage.delete(&key).await;
                return Err(e);
            }
        };
        Ok(StagedInput {
            field: field.to_owned(),
            key: key.into_string(),
            size: stored.size,
            format: match info.container {
                Container::Mp4 => "mp4",
                Container::Mov => "mov",
            }
            .to_owned(),
            width: info.width,
            height: info.height,
            duration_ms: Some(info.duration_ms),
            fps: Some(info.fps),
            has_audio: Some(info.has_audio),
        })
    }

    async fn probe_stored_video(
        &self,
        field: &str,
        key: &ObjectKey,
        rules: &VideoRules,
    ) -> Result<VideoInfo, MediaError> {
        let file = StoredFile::open(self.storage.clone(), key.clone())
            .await
            .map_err(|e| {
                MediaError::new(
                    field,
                    MediaErrorKind::Storage,
                    format!("stored copy unreadable: {}", e.message()),
                )
            })?;
        let info = probe_video(field, &file).await?;
        rules.check(field, &info)?;
        Ok(info)
    }

    /// Removes everything staged for a task whose request was refused after staging.
    pub async fn discard(&self, task: &TaskId) -> Result<(), kinora_core::Error> {
        self.storage
            .delete_prefix(&keys::task_prefix(task))
            .await
            .map(|_| ())
    }

    /// Removes everything stored for an element: after a refused creation, or its deletion.
    pub async fn discard_element(&self, element_id: i64) -> Result<(), kinora_core::Error> {
        self.storage
            .delete_prefix(&keys::element_prefix(element_id))
            .await
            .map(|_| ())
    }

    async fn store(&self, field: &str, key: &ObjectKey, bytes: Bytes) -> Result<(), MediaError> {
        self.storage
            .put_bytes(key, bytes)
            .await
            .map(|_| ())
            .map_err(|e| {
                MediaError::new(
                    field,
                    MediaErrorKind::Storage,
                    format!("could not be stored: {}", e.message()),
                )
            })
    }
}

/// `tasks/{id}/inputs/{field}.{ext}` with the field name reduced to key-safe characters
/// (`dynamic_masks[0].mask` → `dynamic_masks_0_.mask`).
fn input_key(task: &TaskId, field: &str, extension: &str) -> Result<ObjectKey, MediaError> {
    let safe: String = field
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    keys::task_input(task, &format!("{safe}.{extension}"))
        .map_err(|e| MediaError::new(field, MediaErrorKind::InvalidUrl, e.message().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_keys_are_safe_and_readable() {
        let task = TaskId::new();
        let key = input_key(&task, "dynamic_masks[0].mask", "png").expect("key");
        assert_eq!(
            key.as_str(),
            format!("tasks/{task}/inputs/dynamic_masks_0_.mask.png")
        );
        let key = input_key(&task, "image_list[2].image_url", "jpg").expect("key");
        assert!(
            key.as_str()
                .ends_with("/inputs/image_list_2_.image_url.jpg"),
            "{key}"
        );
    }
}
