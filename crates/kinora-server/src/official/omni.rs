//! `POST /v1/videos/omni-video` (§7.3, §8.3): the image, element and video lists under the
//! structural rules the unified dialect's omni model shares, multi-shot (`customize` only),
//! sound, and the per-model durations, one of which depends on the request's shape.

use kinora_core::request::GenerationRequest;
use kinora_core::{Dialect, TaskKind};
use kinora_media::source::InlinePolicy;
use serde_json::Value;

use super::capabilities::{CapabilityTable, UsedFeature};
use super::error::OfficialError;
use super::fields::{
    check_capabilities, common, duration, element_ids, from_unified, invalid, model_name,
    multi_shot, prompt, shared, watermark,
};
use crate::unified::fields::{describe, Body};
use crate::unified::omni::{check_references, native_images, omni_media, video_list, OmniShape};
use crate::unified::submit::ParsedSubmit;

type Result<T> = std::result::Result<T, OfficialError>;

/// The model whose text-only and first-frame-only requests last 5 or 10 s (seed 004).
const FIVE_OR_TEN_MODEL: &str = "kling-video-o1";

pub fn parse_omni_video(value: &Value, table: &CapabilityTable) -> Result<ParsedSubmit> {
    let mut body = Body::new(value).map_err(from_unified)?;
    let model = model_name(&mut body, table, "kling-video-o1")?;
    let images = match body.value("image_list") {
        None => Vec::new(),
        Some(Value::Array(items)) => shared(native_images(items))?,
        Some(other) => {
            return Err(invalid(format!(
                "image_list must be an array of {{\"image_url\", \"type\"}} items, not {}",
                describe(other)
            )))
        }
    };
    let elements = element_ids(&mut body)?;
    let video = shared(video_list(&mut body))?;
    let shape = OmniShape::of(&images, elements.len(), video.map(|(_, refer, _)| refer));
    let seconds = if shape.is_base_edit() {
        // A video edit keeps the input's length: duration is neither checked nor forwarded.
        body.value("duration");
        None
    } else {
        Some(duration(&mut body, 5)?)
    };
    let shots = multi_shot(&mut body, seconds.unwrap_or(5), &["customize"])?;
    if shots.is_some() && shape.is_base_edit() {
        return Err(invalid(
            "multi_shot cannot be combined with a video edit (refer_type base): the output \
             follows the input video",
        ));
    }
    let prompt = prompt(&mut body, shots.as_ref(), true)?;
    let sound = shared(body.on_off("sound"))?.unwrap_or(false);
    let mode = shared(body.choice("mode", &["std", "pro", "4k"]))?.unwrap_or("pro");
    let aspect = shared(body.choice("aspect_ratio", &["16:9", "9:16", "1:1"]))?;
    let watermark = watermark(&mut body)?;
    let (callback_url, external_task_id) = common(&mut body)?;

    shared(shape.check_lists("image_list", aspect.is_some()))?;
    if let Some(s) = seconds {
        if model == FIVE_OR_TEN_MODEL {
            shared(shape.check_five_or_ten("duration", s))?;
        }
    }
    let prompts = std::iter::once(prompt.as_str()).chain(
        shots
            .iter()
            .flat_map(|m| m.multi_prompt.iter().map(|s| s.prompt.as_str())),
    );
    for text in prompts {
        shared(check_references(
            text,
            images.len(),
            elements.len(),
            video.is_some(),
        ))?;
    }
    let mut features = Vec::new();
    if sound {
        features.push(UsedFeature::new("sound on"));
    }
    if shots.is_some() {
        features.push(UsedFeature::new("multi_shot"));
    }
    if !elements.is_empty() {
        features.push(UsedFeature::new("element_list"));
    }
    if video.is_some() {
        features.push(UsedFeature::new("video_list"));
    }
    check_capabilities(table, "omni-video", &model, mode, seconds, &features)?;

    let media = shared(omni_media(
        &images,
        video.map(|(url, _, _)| url),
        InlinePolicy::RawBase64Only,
    ))?;
    let request = GenerationRequest {
        prompt,
        mode: Some(mode.to_owned()),
        aspect_ratio: aspect.map(str::to_owned),
        duration: seconds,
        sound,
        multi_shot: shots,
        watermark,
        extra: body.unknown(),
        ..GenerationRequest::default()
    };
    Ok(ParsedSubmit {
        dialect: Dialect::Official,
        model_name: model,
        kind: TaskKind::OmniVideo,
        request,
        media,
        trajectories: Vec::new(),
        character_orientation: None,
        keep_original_sound: None,
        element_ids: elements,
        video_refer: video.map(|(_, refer, keep)| (refer.to_owned(), keep)),
        external_task_id,
        callback_url,
        voice_billed: false,
    })
}
