//! The canonical generation request: what every dialect's wire JSON becomes once it has been
//! validated and its media staged, and what every provider reads. It is stored as the task's
//! `request` column, so its serde form is a durable format: fields are only ever added, with
//! defaults, never renamed.
//!
//! Media never appear as URLs or Base64 here: the dialect has already fetched, probed and
//! stored them, and a [`MediaRef`] names the stored copy. Element ids are resolved at submit
//! time to the element's images, so a queued task does not change if the element is edited or
//! deleted later.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::TaskId;

/// A staged input in kinora's object storage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MediaRef {
    /// Object key, e.g. `tasks/<id>/inputs/image.jpg`.
    pub key: String,
}

impl MediaRef {
    pub fn new(key: impl Into<String>) -> Self {
        Self { key: key.into() }
    }
}

/// `camera_control` as sent: a type and, for `simple`, the six axis values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CameraControlRequest {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<CameraConfig>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CameraConfig {
    #[serde(default)]
    pub horizontal: f64,
    #[serde(default)]
    pub vertical: f64,
    #[serde(default)]
    pub pan: f64,
    #[serde(default)]
    pub tilt: f64,
    #[serde(default)]
    pub roll: f64,
    #[serde(default)]
    pub zoom: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub x: f64,
    pub y: f64,
}

/// One `dynamic_masks` entry; trajectory points are in the image's pixels, origin bottom-left.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DynamicMaskRequest {
    pub mask: MediaRef,
    pub trajectories: Vec<Point>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShotRequest {
    pub index: u32,
    pub prompt: String,
    /// Whole seconds.
    pub duration: u32,
}

/// `multi_shot: true` with its `shot_type` (`customize` or `intelligence`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MultiShotRequest {
    pub shot_type: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub multi_prompt: Vec<ShotRequest>,
}

/// An element resolved at submit time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElementRef {
    pub element_id: String,
    /// The element's frontal image: what the local engine shows for it.
    pub frontal_image: MediaRef,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MotionControlRequest {
    /// The character image.
    pub image: MediaRef,
    /// The reference video whose motion is transferred.
    pub video: MediaRef,
    /// `image` or `video`.
    pub character_orientation: String,
    pub keep_original_sound: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VideoReferenceRequest {
    pub video: MediaRef,
    /// `base` (video edit) or `feature` (camera and duration reference).
    pub refer_type: String,
    pub keep_original_sound: bool,
}

/// Extend: which earlier kinora video is continued.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtendRequest {
    /// The task that produced the video (the same account's; checked at submit).
    pub source_task_id: TaskId,
    /// Its stored MP4.
    pub video: MediaRef,
    /// The source's length in frames at 24 fps, and when its task finished (ms): what the
    /// task's answers show of its parent video.
    #[serde(default)]
    pub source_frames: u64,
    #[serde(default)]
    pub source_finished_at: i64,
    /// The channel that made the source video: an upstream extends only its own videos, so
    /// the extension runs there too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_channel: Option<String>,
    /// The upstream's id of the source video, when an upstream made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_upstream_video_id: Option<String>,
}

/// One generation request, every kind in one shape; which fields apply depends on the task's
/// kind. Defaults that a dialect documents are applied by that dialect before storing, except
/// where the default depends on the provider (the model decides).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GenerationRequest {
    #[serde(default)]
    pub prompt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cfg_scale: Option<f64>,
    /// `std`, `pro` or `4k`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// `16:9`, `9:16` or `1:1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aspect_ratio: Option<String>,
    /// Whole seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<u32>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub sound: bool,
    /// `voice_list` ids in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub voice_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub camera_control: Option<CameraControlRequest>,
    /// First frame (`image`, or omni's `first_frame` entry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<MediaRef>,
    /// Last frame (`image_tail`, or omni's `end_frame` entry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_tail: Option<MediaRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub static_mask: Option<MediaRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dynamic_masks: Vec<DynamicMaskRequest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_shot: Option<MultiShotRequest>,
    /// Reference images in list order (omni `image_list` entries without a type, or
    /// multi-image2video's `image_list`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reference_images: Vec<MediaRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub elements: Vec<ElementRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub motion_control: Option<MotionControlRequest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video_reference: Option<VideoReferenceRequest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extend: Option<ExtendRequest>,
    /// `watermark_info.enabled`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub watermark: bool,
    /// Parameters the dialect accepted without knowing them: kept with the task, passed to
    /// upstreams that understand them, never rendered. Stored under their own key, never
    /// beside the fields above, so a client's unknown `aspect_ratio` or `extend` can never be
    /// read back as kinora's own field.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl GenerationRequest {
    pub fn text(prompt: impl Into<String>) -> Self {
        Self {
            prompt: prompt.into(),
            ..Self::default()
        }
    }

    pub fn to_value(&self) -> Value {
        // Serialising plain data (strings, numbers, maps) cannot fail.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    pub fn from_value(value: &Value) -> Result<Self, serde_json::Error> {
        Self::deserialize(value)
    }

    /// Every stored input the request points at, in a fixed order.
    pub fn media(&self) -> Vec<&MediaRef> {
        let mut out = Vec::new();
        out.extend(self.image.iter());
        out.extend(self.image_tail.iter());
        out.extend(self.static_mask.iter());
        out.extend(self.dynamic_masks.iter().map(|m| &m.mask));
        out.extend(self.reference_images.iter());
        out.extend(self.elements.iter().map(|e| &e.frontal_image));
        if let Some(m) = &self.motion_control {
            out.push(&m.image);
            out.push(&m.video);
        }
        out.extend(self.video_reference.iter().map(|v| &v.video));
        out.extend(self.extend.iter().map(|e| &e.video));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_minimal_request_serialises_to_its_prompt() {
        let r = GenerationRequest::text("a fox");
        assert_eq!(r.to_value(), json!({"prompt": "a fox"}));
        assert_eq!(GenerationRequest::from_value(&r.to_value()).unwrap(), r);
    }

    #[test]
    fn every_field_round_trips() {
        let r = GenerationRequest {
            prompt: "p".into(),
            negative_prompt: Some("n".into()),
            cfg_scale: Some(0.3),
            mode: Some("pro".into()),
            aspect_ratio: Some("9:16".into()),
            duration: Some(10),
            sound: true,
            voice_ids: vec!["v1".into()],
            camera_control: Some(CameraControlRequest {
                kind: "simple".into(),
                config: Some(CameraConfig {
                    zoom: -3.0,
                    ..CameraConfig::default()
                }),
            }),
            image: Some(MediaRef::new("tasks/a/inputs/image.jpg")),
            image_tail: Some(MediaRef::new("tasks/a/inputs/image_tail.png")),
            static_mask: Some(MediaRef::new("s")),
            dynamic_masks: vec![DynamicMaskRequest {
                mask: MediaRef::new("d"),
                trajectories: vec![Point { x: 1.0, y: 2.0 }, Point { x: 3.0, y: 4.0 }],
            }],
            multi_shot: Some(MultiShotRequest {
                shot_type: "customize".into(),
                multi_prompt: vec![ShotRequest {
                    index: 1,
                    prompt: "a".into(),
                    duration: 5,
                }],
            }),
            reference_images: vec![MediaRef::new("r")],
            elements: vec![ElementRef {
                element_id: "e1".into(),
                frontal_image: MediaRef::new("e"),
            }],
            motion_control: Some(MotionControlRequest {
                image: MediaRef::new("mi"),
                video: MediaRef::new("mv"),
                character_orientation: "video".into(),
                keep_original_sound: true,
            }),
            video_reference: Some(VideoReferenceRequest {
                video: MediaRef::new("vr"),
                refer_type: "base".into(),
                keep_original_sound: false,
            }),
            extend: Some(ExtendRequest {
                source_task_id: TaskId::new(),
                video: MediaRef::new("tasks/b/outputs/video.mp4"),
                source_frames: 120,
                source_finished_at: 0,
                source_channel: Some("kling-a".into()),
                source_upstream_video_id: Some("video-1".into()),
            }),
            watermark: true,
            extra: [("future_field".to_owned(), json!(1))]
                .into_iter()
                .collect(),
        };
        let back = GenerationRequest::from_value(&r.to_value()).unwrap();
        assert_eq!(back, r);
        assert_eq!(r.media().len(), 10);
    }

    #[test]
    fn unknown_fields_are_kept_apart_from_known_ones() {
        let r = GenerationRequest {
            extra: [
                ("seed".to_owned(), json!(7)),
                ("aspect_ratio".to_owned(), json!("4:3")),
                (
                    "extend".to_owned(),
                    json!({"video": {"key": "tasks/other/video.mp4"}}),
                ),
            ]
            .into_iter()
            .collect(),
            ..GenerationRequest::text("x")
        };
        let stored = r.to_value();
        assert_eq!(stored["extra"]["seed"], json!(7));
        let back = GenerationRequest::from_value(&stored).unwrap();
        assert_eq!(back, r);
        assert_eq!((back.aspect_ratio, back.extend), (None, None));
    }
}
