//! From a stored task (its kind, model and canonical [`GenerationRequest`]) to the engine's
//! [`RenderSpec`]. The dialects validated the request against Kling's rules; this mapping
//! refuses only what the engine itself cannot read, with the field named.

use std::collections::BTreeMap;

use kinora_core::request::{CameraControlRequest, GenerationRequest, MediaRef};
use kinora_core::{FailureClass, Task, TaskKind};
use kinora_render::camera::{AxisValues, CameraControl};
use kinora_render::plan::{Aspect, Mode};
use kinora_render::spec::{
    CharacterOrientation, DynamicMask, MotionControlInput, MultiShot, Shot, VideoReferKind,
    VideoReference,
};
use kinora_render::{Asset, RenderKind, RenderSpec};

use crate::ProviderError;

pub(super) fn invalid(message: impl Into<String>) -> ProviderError {
    ProviderError::Permanent {
        class: FailureClass::InvalidInput,
        message: message.into(),
    }
}

/// The task's request, read back from its stored form.
pub(super) fn request_of(task: &Task) -> Result<GenerationRequest, ProviderError> {
    GenerationRequest::from_value(&task.request)
        .map_err(|e| invalid(format!("the stored request cannot be rendered: {e}")))
}

/// Every distinct media key the render needs, in request order.
pub(super) fn media_keys(request: &GenerationRequest) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for media in request.media() {
        if !keys.contains(&media.key) {
            keys.push(media.key.clone());
        }
    }
    keys
}

fn render_kind(kind: TaskKind) -> RenderKind {
    match kind {
        TaskKind::Text2Video => RenderKind::Text2Video,
        TaskKind::Image2Video => RenderKind::Image2Video,
        TaskKind::MultiImage2Video => RenderKind::MultiImage2Video,
        TaskKind::OmniVideo => RenderKind::Omni,
        TaskKind::MotionControl => RenderKind::MotionControl,
        TaskKind::VideoExtend => RenderKind::Extend,
    }
}

fn camera(request: &CameraControlRequest) -> Result<Option<CameraControl>, ProviderError> {
    let config = request.config.map(|c| AxisValues {
        horizontal: c.horizontal,
        vertical: c.vertical,
        pan: c.pan,
        tilt: c.tilt,
        roll: c.roll,
        zoom: c.zoom,
    });
    // Lenient: the dialect already enforced Kling's one-axis rule where it applies; several
    // axes that reach the engine are combined in the documented order.
    CameraControl::from_wire(Some(&request.kind), config, false).map_err(|e| invalid(e.to_string()))
}

/// Maps a task to a render spec. `assets` holds the bytes of every key of [`media_keys`];
/// a missing one is an error naming it.
pub(super) fn render_spec(
    task: &Task,
    request: &GenerationRequest,
    assets: &BTreeMap<String, Asset>,
) -> Result<RenderSpec, ProviderError> {
    let asset = |media: &MediaRef| {
        assets
            .get(&media.key)
            .cloned()
            .ok_or_else(|| invalid(format!("input {} is not in storage", media.key)))
    };
    let mut spec = RenderSpec::new(render_kind(task.kind), request.prompt.clone());
    if !task.model.is_empty() {
        spec.model_name = task.model.clone();
    }
    spec.negative_prompt = request.negative_prompt.clone().unwrap_or_default();
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
    spec.duration_s = request.duration;
    spec.sound = request.sound;
    spec.voice_ids = request.voice_ids.clone();
    spec.camera = match &request.camera_control {
        Some(c) => camera(c)?,
        None => None,
    };
    spec.first_frame = request.image.as_ref().map(asset).transpose()?;
    spec.last_frame = request.image_tail.as_ref().map(asset).transpose()?;
    spec.static_mask = request.static_mask.as_ref().map(asset).transpose()?;
    spec.dynamic_masks = request
        .dynamic_masks
        .iter()
        .map(|m| {
            Ok(DynamicMask {
                mask: asset(&m.mask)?,
                trajectory: m.trajectories.iter().map(|p| (p.x, p.y)).collect(),
            })
        })
        .collect::<Result<_, ProviderError>>()?;
    spec.multi_shot = match &request.multi_shot {
        None => None,
        Some(m) => Some(match m.shot_type.as_str() {
            "intelligence" => MultiShot::Intelligence,
            "customize" => MultiShot::Customize(
                m.multi_prompt
                    .iter()
                    .map(|s| Shot {
                        index: s.index,
                        prompt: s.prompt.clone(),
                        duration_s: s.duration,
                    })
                    .collect(),
            ),
            other => {
                return Err(invalid(format!(
                    "shot_type `{other}` is not one of customize, intelligence"
                )))
            }
        }),
    };
    spec.references = request
        .reference_images
        .iter()
        .chain(request.elements.iter().map(|e| &e.frontal_image))
        .map(asset)
        .collect::<Result<_, _>>()?;
    spec.motion_control = match &request.motion_control {
        None => None,
        Some(m) => Some(MotionControlInput {
            character: asset(&m.image)?,
            reference: asset(&m.video)?,
            orientation: match m.character_orientation.as_str() {
                "image" => CharacterOrientation::Image,
                "video" => CharacterOrientation::Video,
                other => {
                    return Err(invalid(format!(
                        "character_orientation `{other}` is not one of image, video"
                    )))
                }
            },
            keep_original_sound: m.keep_original_sound,
        }),
    };
    spec.video_reference = match &request.video_reference {
        None => None,
        Some(v) => Some(VideoReference {
            video: asset(&v.video)?,
            refer: match v.refer_type.as_str() {
                "base" => VideoReferKind::Base,
                "feature" => VideoReferKind::Feature,
                other => {
                    return Err(invalid(format!(
                        "video_list refer_type `{other}` is not one of base, feature"
                    )))
                }
            },
            keep_original_sound: v.keep_original_sound,
        }),
    };
    spec.extend_source = request
        .extend
        .as_ref()
        .map(|e| asset(&e.video))
        .transpose()?;
    spec.watermark = request.watermark;
    check_inputs_for_kind(&spec)?;
    Ok(spec)
}

/// The inputs each kind cannot do without.
fn check_inputs_for_kind(spec: &RenderSpec) -> Result<(), ProviderError> {
    match spec.kind {
        RenderKind::Image2Video if spec.first_frame.is_none() && spec.last_frame.is_none() => {
            Err(invalid("image2video needs image or image_tail"))
        }
        RenderKind::MultiImage2Video if spec.references.is_empty() => {
            Err(invalid("multi_image2video needs image_list"))
        }
        RenderKind::MotionControl if spec.motion_control.is_none() => {
            Err(invalid("motion_control needs image_url and video_url"))
        }
        RenderKind::Extend if spec.extend_source.is_none() => {
            Err(invalid("video_extend needs video_id"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kinora_core::request::{CameraConfig, ExtendRequest, MotionControlRequest};
    use kinora_core::{AccountId, Dialect, TaskId, TaskState};
    use serde_json::json;

    fn task(kind: TaskKind, request: &GenerationRequest) -> Task {
        Task {
            id: TaskId::new(),
            account_id: AccountId::new(),
            dialect: Dialect::Unified,
            kind,
            model: "kling-v2-6".into(),
            state: TaskState::Queued,
            request: request.to_value(),
            external_task_id: None,
            callback_url: None,
            channel: None,
            upstream_task_id: None,
            result: None,
            failure_class: None,
            failure_message: None,
            created_at: 0,
            updated_at: 0,
            submitted_at: None,
            started_at: None,
            finished_at: None,
            submission: None,
            charged: None,
        }
    }

    fn assets_for(request: &GenerationRequest) -> BTreeMap<String, Asset> {
        media_keys(request)
            .into_iter()
            .map(|k| {
                let bytes = k.as_bytes().to_vec();
                (k, Asset::new(bytes))
            })
            .collect()
    }

    fn map(kind: TaskKind, request: &GenerationRequest) -> Result<RenderSpec, ProviderError> {
        let t = task(kind, request);
        render_spec(&t, &request_of(&t)?, &assets_for(request))
    }

    #[test]
    fn text2video_fields_map_one_to_one() {
        let request = GenerationRequest {
            negative_prompt: Some("blur".into()),
            cfg_scale: Some(0.7),
            mode: Some("pro".into()),
            aspect_ratio: Some("9:16".into()),
            duration: Some(10),
            sound: true,
            voice_ids: vec!["v".into()],
            camera_control: Some(CameraControlRequest {
                kind: "simple".into(),
                config: Some(CameraConfig {
                    pan: 4.0,
                    ..CameraConfig::default()
                }),
            }),
            watermark: true,
            ..GenerationRequest::text("a fox")
        };
        let spec = map(TaskKind::Text2Video, &request).unwrap();
        assert_eq!(spec.kind, RenderKind::Text2Video);
        assert_eq!(spec.model_name, "kling-v2-6");
        assert_eq!(spec.mode, Mode::Pro);
        assert_eq!(spec.aspect, Aspect::Portrait9x16);
        assert_eq!(spec.duration_s, Some(10));
        assert!(spec.sound && spec.watermark);
        assert_eq!(spec.negative_prompt, "blur");
        assert!(matches!(spec.camera, Some(CameraControl::Simple { value, .. }) if value == 4.0));
    }

    #[test]
    fn omni_defaults_to_pro_and_elements_follow_reference_images() {
        let request = GenerationRequest {
            reference_images: vec![MediaRef::new("a")],
            elements: vec![kinora_core::request::ElementRef {
                element_id: "e".into(),
                frontal_image: MediaRef::new("b"),
            }],
            ..GenerationRequest::text("x")
        };
        let spec = map(TaskKind::OmniVideo, &request).unwrap();
        assert_eq!(spec.mode, Mode::Pro);
        assert_eq!(spec.references.len(), 2);
        assert_eq!(spec.references[1], Asset::new(b"b".to_vec()));
    }

    #[test]
    fn missing_inputs_and_unknown_values_are_refused_naming_the_field() {
        let cases = [
            (TaskKind::Image2Video, GenerationRequest::text("x"), "image"),
            (
                TaskKind::VideoExtend,
                GenerationRequest::text("x"),
                "video_id",
            ),
            (
                TaskKind::Text2Video,
                GenerationRequest {
                    mode: Some("8k".into()),
                    ..GenerationRequest::text("x")
                },
                "mode",
            ),
            (
                TaskKind::MotionControl,
                GenerationRequest {
                    motion_control: Some(MotionControlRequest {
                        image: MediaRef::new("i"),
                        video: MediaRef::new("v"),
                        character_orientation: "sideways".into(),
                        keep_original_sound: true,
                    }),
                    ..GenerationRequest::text("x")
                },
                "character_orientation",
            ),
            (
                TaskKind::Text2Video,
                GenerationRequest {
                    camera_control: Some(CameraControlRequest {
                        kind: "spin".into(),
                        config: None,
                    }),
                    ..GenerationRequest::text("x")
                },
                "camera_control.type",
            ),
        ];
        for (kind, request, field) in cases {
            match map(kind, &request) {
                Err(ProviderError::Permanent { class, message }) => {
                    assert_eq!(class, FailureClass::InvalidInput);
                    assert!(message.contains(field), "{message}");
                }
                other => panic!("{kind}: expected a refusal naming {field}, got {other:?}"),
            }
        }
    }

    #[test]
    fn an_input_missing_from_storage_is_named() {
        let request = GenerationRequest {
            extend: Some(ExtendRequest {
                source_task_id: TaskId::new(),
                video: MediaRef::new("tasks/x/outputs/video.mp4"),
                source_frames: 120,
                source_finished_at: 0,
                source_channel: None,
                source_upstream_video_id: None,
            }),
            ..GenerationRequest::text("x")
        };
        let t = task(TaskKind::VideoExtend, &request);
        let err = render_spec(&t, &request, &BTreeMap::new()).unwrap_err();
        assert!(
            err.to_string().contains("tasks/x/outputs/video.mp4"),
            "{err}"
        );
    }

    #[test]
    fn a_request_that_is_not_canonical_is_refused() {
        let mut t = task(TaskKind::Text2Video, &GenerationRequest::text("x"));
        t.request = json!({"prompt": 5});
        assert!(request_of(&t).is_err());
    }
}
