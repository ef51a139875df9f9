//! What the engine is asked to render: one [`RenderSpec`] for every kind, with the request's
//! defaults already applied and every input as bytes ([`Asset`]). The spec decides the render
//! identity (§4.2 of the engine contract): its canonical form plus the SHA-256 of each asset.

use std::sync::Arc;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::camera::{Axis, CameraControl};
use crate::plan::{Aspect, Mode};
use crate::seed::identity;

/// Model name applied when the request names none; hashed like an explicit one.
pub const DEFAULT_MODEL: &str = "kling-v1";
/// `cfg_scale` applied when the request gives none.
pub const DEFAULT_CFG_SCALE: f64 = 0.5;
/// Duration applied when a kind that takes `duration` gets none.
pub const DEFAULT_DURATION_S: u32 = 5;
/// Whole-second durations the engine renders.
pub const DURATION_RANGE: std::ops::RangeInclusive<u32> = 1..=15;

/// An input file, identified by its content (never by where it came from).
#[derive(Clone)]
pub struct Asset {
    bytes: Arc<[u8]>,
    sha256: [u8; 32],
}

impl Asset {
    pub fn new(bytes: impl Into<Arc<[u8]>>) -> Self {
        let bytes = bytes.into();
        let sha256 = Sha256::digest(&bytes).into();
        Self { bytes, sha256 }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn sha256(&self) -> [u8; 32] {
        self.sha256
    }
}

impl std::fmt::Debug for Asset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Asset({} bytes, sha256 {})",
            self.bytes.len(),
            crate::seed::to_hex(&self.sha256[..8])
        )
    }
}

impl PartialEq for Asset {
    fn eq(&self, other: &Self) -> bool {
        self.sha256 == other.sha256
    }
}

/// Which render path runs. One per canonical task kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenderKind {
    Text2Video,
    Image2Video,
    MultiImage2Video,
    Omni,
    MotionControl,
    Extend,
}

impl RenderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RenderKind::Text2Video => "text2video",
            RenderKind::Image2Video => "image2video",
            RenderKind::MultiImage2Video => "multi_image2video",
            RenderKind::Omni => "omni_video",
            RenderKind::MotionControl => "motion_control",
            RenderKind::Extend => "video_extend",
        }
    }

    /// Whether `duration` comes from the request (the others take it from a video).
    pub fn takes_duration(self) -> bool {
        !matches!(self, RenderKind::MotionControl | RenderKind::Extend)
    }
}

/// One `dynamic_masks` entry: a mask image and its trajectory in the input image's pixel
/// space, origin at the bottom-left (as Kling documents).
#[derive(Clone, Debug, PartialEq)]
pub struct DynamicMask {
    pub mask: Asset,
    pub trajectory: Vec<(f64, f64)>,
}

/// One shot of a customised multi-shot request.
#[derive(Clone, Debug, PartialEq)]
pub struct Shot {
    pub index: u32,
    pub prompt: String,
    pub duration_s: u32,
}

/// `multi_shot: true` with its `shot_type`.
#[derive(Clone, Debug, PartialEq)]
pub enum MultiShot {
    /// `shot_type: "customize"` with `multi_prompt`.
    Customize(Vec<Shot>),
    /// `shot_type: "intelligence"`: the engine splits the clip itself (§3.6).
    Intelligence,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CharacterOrientation {
    /// The character keeps the image's orientation; output capped at 10 s.
    Image,
    /// The character follows the reference video's orientation; output capped at 30 s.
    Video,
}

impl CharacterOrientation {
    pub fn as_str(self) -> &'static str {
        match self {
            CharacterOrientation::Image => "image",
            CharacterOrientation::Video => "video",
        }
    }
}

/// Motion control's inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct MotionControlInput {
    pub character: Asset,
    pub reference: Asset,
    pub orientation: CharacterOrientation,
    pub keep_original_sound: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VideoReferKind {
    /// Video edit: the output is the input re-graded, with its duration and shape.
    Base,
    /// Camera and duration reference for a new clip.
    Feature,
}

impl VideoReferKind {
    pub fn as_str(self) -> &'static str {
        match self {
            VideoReferKind::Base => "base",
            VideoReferKind::Feature => "feature",
        }
    }
}

/// Omni's `video_list` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct VideoReference {
    pub video: Asset,
    pub refer: VideoReferKind,
    pub keep_original_sound: bool,
}

/// A render request with defaults applied. Fields a kind does not use stay empty; the
/// validator of each dialect has already refused combinations Kling refuses, and
/// [`RenderSpec::validate`] re-checks what the engine itself depends on.
#[derive(Clone, Debug, PartialEq)]
pub struct RenderSpec {
    pub kind: RenderKind,
    pub model_name: String,
    pub prompt: String,
    pub negative_prompt: String,
    /// Recorded in the identity; no effect on pixels.
    pub cfg_scale: Option<f64>,
    pub mode: Mode,
    /// Used only when the output shape does not follow an input (§2.3, §2.4).
    pub aspect: Aspect,
    /// Whole seconds, for kinds that take `duration`; `None` means the default (or, for an
    /// omni feature reference, the reference's length).
    pub duration_s: Option<u32>,
    /// `sound: "on"`: a procedural Opus soundtrack.
    pub sound: bool,
    /// `voice_list` ids, in order; `<<<voice_N>>>` in the prompt names the N-th.
    pub voice_ids: Vec<String>,
    pub camera: Option<CameraControl>,
    /// `image` (or omni's first_frame entry).
    pub first_frame: Option<Asset>,
    /// `image_tail` (or omni's end_frame entry).
    pub last_frame: Option<Asset>,
    pub static_mask: Option<Asset>,
    pub dynamic_masks: Vec<DynamicMask>,
    pub multi_shot: Option<MultiShot>,
    /// Reference images in list order: omni `image_list` entries without a type, then the
    /// frontal images of `element_list`, or multi-image2video's `image_list`.
    pub references: Vec<Asset>,
    pub motion_control: Option<MotionControlInput>,
    pub video_reference: Option<VideoReference>,
    /// Extend: the earlier kinora MP4 that is continued.
    pub extend_source: Option<Asset>,
    /// `watermark_info.enabled`: a second, labelled MP4. Not part of the identity.
    pub watermark: bool,
}

impl RenderSpec {
    /// A text2video request with the API's defaults: std, 16:9, 5 s, no sound.
    pub fn text2video(prompt: impl Into<String>) -> Self {
        Self::new(RenderKind::Text2Video, prompt)
    }

    /// A request of `kind` with every optional field empty and the API's defaults applied
    /// (omni defaults to pro, as in Kling).
    pub fn new(kind: RenderKind, prompt: impl Into<String>) -> Self {
        Self {
            kind,
            model_name: DEFAULT_MODEL.to_owned(),
            prompt: prompt.into(),
            negative_prompt: String::new(),
            cfg_scale: None,
            mode: if kind == RenderKind::Omni {
                Mode::Pro
            } else {
                Mode::Std
            },
            aspect: Aspect::Landscape16x9,
            duration_s: None,
            sound: false,
            voice_ids: Vec::new(),
            camera: None,
            first_frame: None,
            last_frame: None,
            static_mask: None,
            dynamic_masks: Vec::new(),
            multi_shot: None,
            references: Vec::new(),
            motion_control: None,
            video_reference: None,
            extend_source: None,
            watermark: false,
        }
    }

    pub fn cfg_scale(&self) -> f64 {
        self.cfg_scale.unwrap_or(DEFAULT_CFG_SCALE)
    }

    /// The requested duration with the default applied.
    pub fn duration_or_default(&self) -> u32 {
        self.duration_s.unwrap_or(DEFAULT_DURATION_S)
    }

    /// Every asset in spec order: the order of the canonical form's `assets` indices.
    pub fn assets(&self) -> Vec<&Asset> {
        let mut out = Vec::new();
        out.extend(self.first_frame.iter());
        out.extend(self.last_frame.iter());
        out.extend(self.static_mask.iter());
        out.extend(self.dynamic_masks.iter().map(|m| &m.mask));
        out.extend(self.references.iter());
        if let Some(m) = &self.motion_control {
            out.push(&m.character);
            out.push(&m.reference);
        }
        out.extend(self.video_reference.iter().map(|v| &v.video));
        out.extend(self.extend_source.iter());
        out
    }

    /// Every render-relevant field with defaults applied, keys sorted, assets replaced by
    /// their SHA-256. Absent and explicit defaults serialise alike; `watermark` is left out
    /// because it adds a second output without changing the first.
    pub fn canonical(&self) -> String {
        let hash = |a: &Asset| Value::String(crate::seed::to_hex(&a.sha256));
        let shots = self.multi_shot.as_ref().map(|m| match m {
            MultiShot::Intelligence => json!({"shot_type": "intelligence"}),
            MultiShot::Customize(shots) => {
                let mut sorted = shots.clone();
                sorted.sort_by_key(|s| s.index);
                json!({
                    "shot_type": "customize",
                    "multi_prompt": sorted.iter().map(|s| json!({
                        "index": s.index, "prompt": s.prompt, "duration": s.duration_s,
                    })).collect::<Vec<_>>(),
                })
            }
        });
        let value = json!({
            "kind": self.kind.as_str(),
            "model_name": self.model_name,
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "cfg_scale": self.cfg_scale(),
            "mode": self.mode.as_str(),
            "aspect_ratio": self.aspect.as_str(),
            "duration": if self.kind.takes_duration() {
                self.duration_s.map(Value::from).unwrap_or(Value::Null)
            } else {
                Value::Null
            },
            "sound": if self.sound { "on" } else { "off" },
            "voice_list": self.voice_ids,
            "camera_control": self.camera.as_ref().map(camera_json),
            "image": self.first_frame.as_ref().map(hash),
            "image_tail": self.last_frame.as_ref().map(hash),
            "static_mask": self.static_mask.as_ref().map(hash),
            "dynamic_masks": self.dynamic_masks.iter().map(|m| json!({
                "mask": hash(&m.mask),
                "trajectories": m.trajectory.iter().map(|&(x, y)| json!({"x": x, "y": y})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "multi_shot": shots,
            "references": self.references.iter().map(hash).collect::<Vec<_>>(),
            "motion_control": self.motion_control.as_ref().map(|m| json!({
                "image": hash(&m.character),
                "video": hash(&m.reference),
                "character_orientation": m.orientation.as_str(),
                "keep_original_sound": m.keep_original_sound,
            })),
            "video_reference": self.video_reference.as_ref().map(|v| json!({
                "video": hash(&v.video),
                "refer_type": v.refer.as_str(),
                "keep_original_sound": v.keep_original_sound,
            })),
            "extend_source": self.extend_source.as_ref().map(hash),
        });
        let mut out = String::new();
        write_sorted(&value, &mut out);
        out
    }

    /// The render identity (§4.2): canonical spec plus each asset's SHA-256, in spec order.
    pub fn identity(&self) -> [u8; 32] {
        let hashes = self.assets().iter().map(|a| a.sha256).collect::<Vec<_>>();
        identity(&self.canonical(), &hashes)
    }

    /// The identity of the watermarked copy: SHA-256(identity ‖ "watermark").
    pub fn watermark_identity(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.identity());
        h.update(b"watermark");
        h.finalize().into()
    }
}

fn camera_json(camera: &CameraControl) -> Value {
    let config = match camera {
        CameraControl::Simple { axis, value } => {
            let mut m = Map::new();
            for a in Axis::ALL {
                let v = if a == *axis { *value } else { 0.0 };
                m.insert(a.name().to_owned(), json!(v));
            }
            Value::Object(m)
        }
        CameraControl::Combined(values) => {
            let mut m = Map::new();
            for a in Axis::ALL {
                m.insert(a.name().to_owned(), json!(values.get(a)));
            }
            Value::Object(m)
        }
        _ => Value::Null,
    };
    json!({"type": camera.type_name(), "config": config})
}

/// JSON with object keys sorted at every level, whatever map type serde_json was built with.
fn write_sorted(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys = map.keys().collect::<Vec<_>>();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_sorted(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_sorted(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_form_applies_defaults_and_sorts_keys() {
        let a = RenderSpec::text2video("a \"quoted\" prompt");
        let mut b = a.clone();
        b.cfg_scale = Some(DEFAULT_CFG_SCALE);
        assert_eq!(a.canonical(), b.canonical());
        assert!(a
            .canonical()
            .starts_with("{\"aspect_ratio\":\"16:9\",\"camera_control\":null,\"cfg_scale\":0.5,"));
        b.cfg_scale = Some(0.6);
        assert_ne!(a.canonical(), b.canonical());
    }

    #[test]
    fn watermark_does_not_change_the_identity() {
        let a = RenderSpec::text2video("x");
        let b = RenderSpec {
            watermark: true,
            ..a.clone()
        };
        assert_eq!(a.identity(), b.identity());
        assert_ne!(a.identity(), a.watermark_identity());
    }

    #[test]
    fn assets_are_identified_by_content() {
        let mut a = RenderSpec::new(RenderKind::Image2Video, "");
        a.first_frame = Some(Asset::new(vec![1u8, 2, 3]));
        let mut b = a.clone();
        b.first_frame = Some(Asset::new(vec![1u8, 2, 3]));
        assert_eq!(a.identity(), b.identity());
        b.first_frame = Some(Asset::new(vec![1u8, 2, 4]));
        assert_ne!(a.identity(), b.identity());
    }

    #[test]
    fn omni_defaults_to_pro() {
        assert_eq!(RenderSpec::new(RenderKind::Omni, "").mode, Mode::Pro);
        assert_eq!(RenderSpec::text2video("").mode, Mode::Std);
    }
}
