//! Create bodies of the official dialect (§7), checked in the order of §6.1: JSON (1200), the
//! model name (1203), the fields (1201), then the capability table (1201). The result is the
//! same checked plan the unified dialect produces, so one service stages and creates tasks for
//! every dialect.

use kinora_core::request::GenerationRequest;
use kinora_core::{Dialect, TaskKind};
use kinora_media::source::InlinePolicy;
use serde_json::Value;

use super::capabilities::{CapabilityTable, UsedFeature};
use super::error::OfficialError;
use super::fields::{
    cfg_feature, cfg_scale, check_capabilities, check_voices, common, duration, element_ids,
    from_unified, invalid, media, model_name, multi_shot, prompt, required_string, shared,
    watermark, ALL_SHOT_TYPES,
};
use crate::unified::fields::{describe, Body};
use crate::unified::submit::{
    camera_control, dynamic_masks, voice_list, MediaSlot, ParsedSubmit, PROMPT_CHARS,
};

type Result<T> = std::result::Result<T, OfficialError>;

const ASPECT_RATIOS: [&str; 3] = ["16:9", "9:16", "1:1"];
/// Elements an image2video request may name, and a motion-control request (§7.2, §7.4).
const MAX_IMAGE2VIDEO_ELEMENTS: usize = 3;
const MAX_MOTION_ELEMENTS: usize = 1;
/// Images of a multi-image2video request (§7.11).
const MAX_MULTI_IMAGES: usize = 4;

/// A checked plan with the fields every endpoint shares filled in.
fn plan(kind: TaskKind, model_name: String, request: GenerationRequest) -> ParsedSubmit {
    ParsedSubmit {
        dialect: Dialect::Official,
        model_name,
        kind,
        request,
        media: Vec::new(),
        trajectories: Vec::new(),
        character_orientation: None,
        keep_original_sound: None,
        element_ids: Vec::new(),
        video_refer: None,
        external_task_id: None,
        callback_url: None,
        voice_billed: false,
    }
}

/// `element_list` with at most `max` items.
fn bounded_elements(body: &mut Body<'_>, max: usize) -> Result<Vec<String>> {
    let ids = element_ids(body)?;
    if ids.len() > max {
        return Err(invalid(format!(
            "element_list holds at most {max} element{}, got {}",
            if max == 1 { "" } else { "s" },
            ids.len()
        )));
    }
    Ok(ids)
}

fn mode(
    body: &mut Body<'_>,
    allowed: &[&'static str],
    default: &'static str,
) -> Result<&'static str> {
    Ok(shared(body.choice("mode", allowed))?.unwrap_or(default))
}

/// `POST /v1/videos/text2video` (§7.1, §8.1).
pub fn parse_text2video(value: &Value, table: &CapabilityTable) -> Result<ParsedSubmit> {
    let mut body = Body::new(value).map_err(from_unified)?;
    let model = model_name(&mut body, table, "kling-v1")?;
    let seconds = duration(&mut body, 5)?;
    let shots = multi_shot(&mut body, seconds, &ALL_SHOT_TYPES)?;
    let prompt = prompt(&mut body, shots.as_ref(), true)?;
    let negative_prompt = shared(body.text("negative_prompt", PROMPT_CHARS, true))?;
    let sound = shared(body.on_off("sound"))?.unwrap_or(false);
    let voices = shared(voice_list(&mut body))?;
    let cfg = cfg_scale(&mut body)?;
    let mode = mode(&mut body, &["std", "pro", "4k"], "std")?;
    let camera = shared(camera_control(&mut body))?;
    let aspect = shared(body.choice("aspect_ratio", &ASPECT_RATIOS))?.unwrap_or("16:9");
    let watermark = watermark(&mut body)?;
    let (callback_url, external_task_id) = common(&mut body)?;

    let voice_billed = check_voices(&prompt, &voices, sound)?;
    let mut features = Vec::new();
    if sound {
        features.push(UsedFeature::new("sound on"));
    }
    if !voices.is_empty() {
        features.push(UsedFeature::new("voice_list"));
    }
    if let Some(camera) = &camera {
        features.push(UsedFeature {
            name: "camera_control",
            camera_type: Some(camera.kind.clone()),
        });
    }
    let cfg = cfg_feature(table, "text2video", &model, cfg, &mut features);
    if shots.is_some() {
        features.push(UsedFeature::new("multi_shot"));
    }
    check_capabilities(table, "text2video", &model, mode, Some(seconds), &features)?;

    let request = GenerationRequest {
        prompt,
        negative_prompt,
        cfg_scale: cfg,
        mode: Some(mode.to_owned()),
        aspect_ratio: Some(aspect.to_owned()),
        duration: Some(seconds),
        sound,
        voice_ids: voices,
        camera_control: camera,
        multi_shot: shots,
        watermark,
        extra: body.unknown(),
        ..GenerationRequest::default()
    };
    Ok(ParsedSubmit {
        external_task_id,
        callback_url,
        voice_billed,
        ..plan(TaskKind::Text2Video, model, request)
    })
}

/// `POST /v1/videos/image2video` (§7.2, §7.9, §7.10, §8.2). There is no `aspect_ratio`: the
/// output follows the image, so one sent is an unknown field.
pub fn parse_image2video(value: &Value, table: &CapabilityTable) -> Result<ParsedSubmit> {
    let mut body = Body::new(value).map_err(from_unified)?;
    let model = model_name(&mut body, table, "kling-v1")?;
    let mut pending = Vec::new();
    for (key, slot) in [
        ("image", MediaSlot::Image),
        ("image_tail", MediaSlot::ImageTail),
    ] {
        if let Some(s) = shared(body.string(key, true))? {
            pending.push(media(key, s, slot, true)?);
        }
    }
    let seconds = duration(&mut body, 5)?;
    let shots = multi_shot(&mut body, seconds, &ALL_SHOT_TYPES)?;
    let prompt = prompt(&mut body, shots.as_ref(), false)?;
    let negative_prompt = shared(body.text("negative_prompt", PROMPT_CHARS, true))?;
    let elements = bounded_elements(&mut body, MAX_IMAGE2VIDEO_ELEMENTS)?;
    let voices = shared(voice_list(&mut body))?;
    let sound = shared(body.on_off("sound"))?.unwrap_or(false);
    let cfg = cfg_scale(&mut body)?;
    let mode = mode(&mut body, &["std", "pro", "4k"], "std")?;
    if let Some(s) = shared(body.string("static_mask", true))? {
        pending.push(media("static_mask", s, MediaSlot::StaticMask, true)?);
    }
    let trajectories = shared(dynamic_masks(
        &mut body,
        &mut pending,
        InlinePolicy::RawBase64Only,
    ))?;
    let camera = shared(camera_control(&mut body))?;
    let watermark = watermark(&mut body)?;
    let (callback_url, external_task_id) = common(&mut body)?;

    let has = |slot: MediaSlot| pending.iter().any(|m| m.slot == slot);
    let (image, tail) = (has(MediaSlot::Image), has(MediaSlot::ImageTail));
    let brush = has(MediaSlot::StaticMask)
        || pending
            .iter()
            .any(|m| matches!(m.slot, MediaSlot::DynamicMask(_)));
    if !image && !tail {
        return Err(invalid("image or image_tail is required"));
    }
    let groups: Vec<&str> = [
        (tail, "image_tail"),
        (brush, "static_mask/dynamic_masks"),
        (camera.is_some(), "camera_control"),
    ]
    .into_iter()
    .filter_map(|(on, name)| on.then_some(name))
    .collect();
    if groups.len() > 1 {
        return Err(invalid(format!(
            "{} cannot be used together: send at most one of image_tail, motion brush \
             (static_mask/dynamic_masks) and camera_control",
            groups.join(" and ")
        )));
    }
    // Without `image` there is an `image_tail`, so a mask or camera control alone was refused
    // just above: each needs `image`.
    if !elements.is_empty() && !voices.is_empty() {
        return Err(invalid("element_list cannot be combined with voice_list"));
    }
    let voice_billed = check_voices(&prompt, &voices, sound)?;

    let mut features = Vec::new();
    match (image, tail) {
        (true, true) => features.push(UsedFeature::new("image_tail")),
        (false, true) => features.push(UsedFeature::new("image_tail without image")),
        _ => {}
    }
    if brush {
        features.push(UsedFeature::new("motion brush"));
    }
    if let Some(camera) = &camera {
        features.push(UsedFeature {
            name: "camera_control",
            camera_type: Some(camera.kind.clone()),
        });
    }
    if sound {
        features.push(UsedFeature::new("sound on"));
    }
    if !voices.is_empty() {
        features.push(UsedFeature::new("voice_list"));
    }
    if !elements.is_empty() {
        features.push(UsedFeature::new("element_list"));
    }
    let cfg = cfg_feature(table, "image2video", &model, cfg, &mut features);
    if shots.is_some() {
        features.push(UsedFeature::new("multi_shot"));
    }
    check_capabilities(table, "image2video", &model, mode, Some(seconds), &features)?;

    let request = GenerationRequest {
        prompt,
        negative_prompt,
        cfg_scale: cfg,
        mode: Some(mode.to_owned()),
        duration: Some(seconds),
        sound,
        voice_ids: voices,
        camera_control: camera,
        multi_shot: shots,
        watermark,
        extra: body.unknown(),
        ..GenerationRequest::default()
    };
    Ok(ParsedSubmit {
        media: pending,
        trajectories,
        element_ids: elements,
        external_task_id,
        callback_url,
        voice_billed,
        ..plan(TaskKind::Image2Video, model, request)
    })
}

/// `POST /v1/videos/multi-image2video` (§7.11, §8.6): 1–4 images `{"image": ...}`.
pub fn parse_multi_image2video(value: &Value, table: &CapabilityTable) -> Result<ParsedSubmit> {
    let mut body = Body::new(value).map_err(from_unified)?;
    let model = model_name(&mut body, table, "kling-v1-6")?;
    let items = match body.value("image_list") {
        Some(Value::Array(items)) if !items.is_empty() => items,
        None | Some(Value::Array(_)) => {
            return Err(invalid(format!(
                "image_list is required: 1-{MAX_MULTI_IMAGES} items {{\"image\": URL or Base64}}"
            )))
        }
        Some(other) => {
            return Err(invalid(format!(
                "image_list must be an array, not {}",
                describe(other)
            )))
        }
    };
    if items.len() > MAX_MULTI_IMAGES {
        return Err(invalid(format!(
            "image_list holds 1-{MAX_MULTI_IMAGES} images, got {}",
            items.len()
        )));
    }
    let mut pending = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let param = format!("image_list[{i}].image");
        match item.get("image") {
            Some(Value::String(s)) if !s.is_empty() => {
                pending.push(media(&param, s, MediaSlot::ReferenceImage(i), true)?)
            }
            None | Some(Value::Null) | Some(Value::String(_)) => {
                return Err(invalid(format!("{param} is required")))
            }
            Some(other) => {
                return Err(invalid(format!(
                    "{param} must be an image URL or Base64, not {}",
                    describe(other)
                )))
            }
        }
    }
    let prompt = prompt(&mut body, None, true)?;
    let negative_prompt = shared(body.text("negative_prompt", PROMPT_CHARS, true))?;
    let mode = mode(&mut body, &["std", "pro"], "std")?;
    let seconds = duration(&mut body, 5)?;
    let aspect = shared(body.choice("aspect_ratio", &ASPECT_RATIOS))?.unwrap_or("16:9");
    let watermark = watermark(&mut body)?;
    let (callback_url, external_task_id) = common(&mut body)?;
    check_capabilities(table, "multi-image2video", &model, mode, Some(seconds), &[])?;
    let request = GenerationRequest {
        prompt,
        negative_prompt,
        mode: Some(mode.to_owned()),
        aspect_ratio: Some(aspect.to_owned()),
        duration: Some(seconds),
        watermark,
        extra: body.unknown(),
        ..GenerationRequest::default()
    };
    Ok(ParsedSubmit {
        media: pending,
        external_task_id,
        callback_url,
        ..plan(TaskKind::MultiImage2Video, model, request)
    })
}

/// `POST /v1/videos/motion-control` (§7.4, §8.4). No duration or aspect ratio: the output
/// follows the reference clip, whose rules are checked when it is staged.
pub fn parse_motion_control(value: &Value, table: &CapabilityTable) -> Result<ParsedSubmit> {
    let mut body = Body::new(value).map_err(from_unified)?;
    let model = model_name(&mut body, table, "kling-v2-6")?;
    let image = required_string(&mut body, "image_url")?;
    let image = media("image_url", image, MediaSlot::CharacterImage, true)?;
    let video = required_string(&mut body, "video_url")?;
    let video = media("video_url", video, MediaSlot::MotionVideo, false)?;
    let orientation = shared(body.choice("character_orientation", &["image", "video"]))?
        .ok_or_else(|| invalid("character_orientation is required: image or video"))?;
    let mode = shared(body.choice("mode", &["std", "pro"]))?
        .ok_or_else(|| invalid("mode is required: std or pro"))?;
    let prompt = shared(body.text("prompt", PROMPT_CHARS, true))?.unwrap_or_default();
    let keep_sound = shared(body.choice("keep_original_sound", &["yes", "no"]))?.unwrap_or("yes");
    let elements = bounded_elements(&mut body, MAX_MOTION_ELEMENTS)?;
    let watermark = watermark(&mut body)?;
    let (callback_url, external_task_id) = common(&mut body)?;
    let features = if elements.is_empty() {
        Vec::new()
    } else {
        vec![UsedFeature::new("element_list")]
    };
    check_capabilities(table, "motion-control", &model, mode, None, &features)?;
    let request = GenerationRequest {
        prompt,
        mode: Some(mode.to_owned()),
        watermark,
        extra: body.unknown(),
        ..GenerationRequest::default()
    };
    Ok(ParsedSubmit {
        media: vec![image, video],
        character_orientation: Some(orientation.to_owned()),
        keep_original_sound: Some(keep_sound == "yes"),
        element_ids: elements,
        external_task_id,
        callback_url,
        ..plan(TaskKind::MotionControl, model, request)
    })
}
