//! Create bodies of the official dialect (§7), checked in the order of §6.1: JSON (1200), the
//! model name (1203), the fields (1201), then the capability table (1201). The result is the
//! same checked plan the unified dialect produces, so one service stages and creates tasks for
//! both.

use kinora_core::request::{GenerationRequest, MultiShotRequest, ShotRequest};
use kinora_core::{Dialect, TaskKind};
use serde_json::Value;

use super::capabilities::{CapabilityError, CapabilityTable, UsedFeature};
use super::error::OfficialError;
use crate::unified::error::UnifiedError;
use crate::unified::fields::{check_length, describe, Body};
use crate::unified::submit::{
    camera_control, check_callback_url, prompt_tags, voice_list, ParsedSubmit, EXTERNAL_ID_CHARS,
    PROMPT_CHARS, URL_CHARS,
};

type Result<T> = std::result::Result<T, OfficialError>;

/// Most shots of a multi-shot request, and the longest shot prompt (§7.8).
const MAX_SHOTS: usize = 6;
const SHOT_PROMPT_CHARS: usize = 512;
/// The neutral `cfg_scale`: never a reason to refuse (§8).
const NEUTRAL_CFG_SCALE: f64 = 0.5;

/// The shared field readers speak the unified dialect; here a body that is not an object is
/// 1200 and every other refusal 1201, with the same message.
pub fn from_unified(e: UnifiedError) -> OfficialError {
    if e.code == "invalid_json" {
        OfficialError::new(1200, e.message)
    } else {
        OfficialError::invalid(e.message)
    }
}

fn invalid(message: impl Into<String>) -> OfficialError {
    OfficialError::invalid(message)
}

/// `model_name`, or the legacy `model` when it is absent (§2), or the endpoint's default; a name
/// no endpoint knows is 1203.
fn model_name(body: &mut Body<'_>, table: &CapabilityTable, default: &str) -> Result<String> {
    // Both are read, so a `model` beside `model_name` is not kept as an unknown field.
    let legacy = body.value("model");
    let given = body.value("model_name").or(legacy);
    let name = match given {
        None => default.to_owned(),
        Some(Value::String(s)) if s.is_empty() => default.to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(invalid(format!(
                "model_name must be a string, not {}",
                describe(other)
            )))
        }
    };
    if !table.knows_model(&name) {
        return Err(OfficialError::not_found(
            CapabilityError::UnknownModel(name).message(),
        ));
    }
    Ok(name)
}

/// `duration`: a string of whole seconds, or a number without a fractional part (§2).
fn duration(body: &mut Body<'_>, default: u32) -> Result<u32> {
    let Some(value) = body.value("duration") else {
        return Ok(default);
    };
    let whole = match value {
        Value::String(s) if s.is_empty() => return Ok(default),
        Value::String(s) => s.trim().parse::<u32>().ok(),
        Value::Number(n) => n.as_u64().and_then(|v| u32::try_from(v).ok()).or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= f64::from(u32::MAX))
                .map(|f| f as u32)
        }),
        _ => None,
    };
    whole.ok_or_else(|| {
        invalid(format!(
            "duration must be a whole number of seconds such as \"5\", not {}",
            describe(value)
        ))
    })
}

/// `cfg_scale`: a number or numeric string in [0, 1].
fn cfg_scale(body: &mut Body<'_>) -> Result<Option<f64>> {
    let Some(value) = body.value("cfg_scale") else {
        return Ok(None);
    };
    let number = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) if s.is_empty() => return Ok(None),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    number
        .filter(|v| (0.0..=1.0).contains(v))
        .map(Some)
        .ok_or_else(|| {
            invalid(format!(
                "cfg_scale must be a number from 0 to 1, not {}",
                describe(value)
            ))
        })
}

/// `watermark_info`: `{"enabled": boolean}`, `enabled` required inside it (§7.1).
fn watermark(body: &mut Body<'_>) -> Result<bool> {
    let Some(value) = body.value("watermark_info") else {
        return Ok(false);
    };
    let object = value.as_object().ok_or_else(|| {
        invalid(format!(
            "watermark_info must be an object {{\"enabled\": true|false}}, not {}",
            describe(value)
        ))
    })?;
    match object.get("enabled") {
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(false),
        None | Some(Value::Null) => Err(invalid("watermark_info.enabled is required")),
        Some(other) => Err(invalid(format!(
            "watermark_info.enabled must be true or false, not {}",
            describe(other)
        ))),
    }
}

/// `callback_url` and `external_task_id` (§2).
fn common(body: &mut Body<'_>) -> Result<(Option<String>, Option<String>)> {
    let callback_url = body
        .text("callback_url", URL_CHARS, true)
        .map_err(from_unified)?;
    if let Some(url) = &callback_url {
        check_callback_url(url).map_err(from_unified)?;
    }
    let external = body
        .string("external_task_id", true)
        .map_err(from_unified)?;
    if let Some(id) = external {
        check_length("external_task_id", id, 1, EXTERNAL_ID_CHARS).map_err(from_unified)?;
    }
    Ok((callback_url, external.map(str::to_owned)))
}

/// `multi_shot`, `shot_type`, `multi_prompt` (§7.8). With multi-shot off the other two are
/// ignored: neither checked nor kept.
fn multi_shot(body: &mut Body<'_>, task_seconds: u32) -> Result<Option<MultiShotRequest>> {
    let on = body.flag("multi_shot").map_err(from_unified)? == Some(true);
    let shot_type = body.value("shot_type");
    let prompts = body.value("multi_prompt");
    if !on {
        return Ok(None);
    }
    let shot_type = match shot_type {
        Some(Value::String(s)) if s == "customize" || s == "intelligence" => s.clone(),
        None => return Err(invalid("shot_type is required when multi_shot is true")),
        Some(other) => {
            return Err(invalid(format!(
                "shot_type must be customize or intelligence, not {}",
                describe(other)
            )))
        }
    };
    if shot_type == "intelligence" {
        return Ok(Some(MultiShotRequest {
            shot_type,
            multi_prompt: Vec::new(),
        }));
    }
    let items = prompts.and_then(Value::as_array).ok_or_else(|| {
        invalid("multi_prompt is required with shot_type customize: 1-6 items {index, prompt, duration}")
    })?;
    if items.is_empty() || items.len() > MAX_SHOTS {
        return Err(invalid(format!(
            "multi_prompt must hold 1-{MAX_SHOTS} shots, got {}",
            items.len()
        )));
    }
    let mut shots: Vec<ShotRequest> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = |field: &str| format!("multi_prompt[{i}].{field}");
        let index = item
            .get("index")
            .and_then(Value::as_u64)
            .filter(|n| (1..=MAX_SHOTS as u64).contains(n))
            .ok_or_else(|| {
                invalid(format!(
                    "{} must be an integer from 1 to {MAX_SHOTS}",
                    at("index")
                ))
            })?;
        if shots.iter().any(|s| u64::from(s.index) == index) {
            return Err(invalid(format!("{} {index} is used twice", at("index"))));
        }
        let prompt = match item.get("prompt") {
            Some(Value::String(p)) => p.clone(),
            _ => return Err(invalid(format!("{} is required", at("prompt")))),
        };
        check_length(&at("prompt"), &prompt, 1, SHOT_PROMPT_CHARS).map_err(from_unified)?;
        let seconds = match item.get("duration") {
            Some(Value::String(s)) => s.trim().parse::<u32>().ok(),
            Some(Value::Number(n)) => n.as_u64().and_then(|v| u32::try_from(v).ok()),
            _ => None,
        }
        .filter(|s| (1..=task_seconds).contains(s))
        .ok_or_else(|| {
            invalid(format!(
                "{} must be whole seconds from 1 to the task's duration {task_seconds}",
                at("duration")
            ))
        })?;
        shots.push(ShotRequest {
            index: u32::try_from(index).unwrap_or(u32::MAX),
            prompt,
            duration: seconds,
        });
    }
    let total: u32 = shots.iter().map(|s| s.duration).sum();
    if total != task_seconds {
        return Err(invalid(format!(
            "the multi_prompt durations add up to {total} s, but duration is {task_seconds} s"
        )));
    }
    shots.sort_by_key(|s| s.index);
    Ok(Some(MultiShotRequest {
        shot_type,
        multi_prompt: shots,
    }))
}

/// `POST /v1/videos/text2video` (§7.1, §8.1).
pub fn parse_text2video(value: &Value, table: &CapabilityTable) -> Result<ParsedSubmit> {
    let mut body = Body::new(value).map_err(from_unified)?;
    let model = model_name(&mut body, table, "kling-v1")?;
    let seconds = duration(&mut body, 5)?;
    let shots = multi_shot(&mut body, seconds)?;
    let customize = shots.as_ref().is_some_and(|s| s.shot_type == "customize");
    let prompt_value = body.value("prompt");
    let prompt = match (customize, prompt_value) {
        // A customised multi-shot request takes its prompts from the shots (§7.8).
        (true, _) => String::new(),
        (false, Some(Value::String(p))) => {
            check_length("prompt", p, 1, PROMPT_CHARS).map_err(from_unified)?;
            p.clone()
        }
        (false, None) => return Err(invalid("prompt is required")),
        (false, Some(other)) => {
            return Err(invalid(format!(
                "prompt must be a string, not {}",
                describe(other)
            )))
        }
    };
    let negative_prompt = body
        .text("negative_prompt", PROMPT_CHARS, true)
        .map_err(from_unified)?;
    let sound = body.on_off("sound").map_err(from_unified)?.unwrap_or(false);
    let voices = voice_list(&mut body).map_err(from_unified)?;
    let cfg = cfg_scale(&mut body)?;
    let mode = body
        .choice("mode", &["std", "pro", "4k"])
        .map_err(from_unified)?
        .unwrap_or("std");
    let camera = camera_control(&mut body).map_err(from_unified)?;
    let aspect = body
        .choice("aspect_ratio", &["16:9", "9:16", "1:1"])
        .map_err(from_unified)?
        .unwrap_or("16:9");
    let watermark = watermark(&mut body)?;
    let (callback_url, external_task_id) = common(&mut body)?;

    if !voices.is_empty() && !sound {
        return Err(invalid("voice_list needs sound on"));
    }
    let tags = prompt_tags(&prompt, "voice");
    if let Some(n) = tags.iter().find(|n| **n == 0 || **n > voices.len() as u64) {
        return Err(invalid(format!(
            "<<<voice_{n}>>> points past voice_list, which holds {} voices",
            voices.len()
        )));
    }
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
    let cfg_offered = table
        .model("text2video", &model)
        .is_some_and(|m| m.features.contains_key("cfg_scale"));
    let cfg = match cfg {
        Some(v) if v != NEUTRAL_CFG_SCALE => {
            features.push(UsedFeature::new("cfg_scale"));
            Some(v)
        }
        // The neutral value is kept where the model takes it and dropped where it does not.
        Some(v) if cfg_offered => Some(v),
        _ => None,
    };
    if shots.is_some() {
        features.push(UsedFeature::new("multi_shot"));
    }
    table
        .check("text2video", &model, mode, Some(seconds), &features)
        .map_err(|e| match e {
            CapabilityError::UnknownModel(_) => OfficialError::not_found(e.message()),
            CapabilityError::Unsupported(m) => invalid(m),
        })?;

    let voice_billed = !voices.is_empty() && !tags.is_empty();
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
        dialect: Dialect::Official,
        model_name: model,
        kind: TaskKind::Text2Video,
        request,
        media: Vec::new(),
        trajectories: Vec::new(),
        character_orientation: None,
        keep_original_sound: None,
        element_ids: Vec::new(),
        video_refer: None,
        external_task_id,
        callback_url,
        voice_billed,
    })
}
