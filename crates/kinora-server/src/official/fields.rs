//! Reading the official dialect's create bodies (§2, §7): the shared unified readers with every
//! refusal as 1201 (1200 for a body that is not an object), plus the fields only this dialect
//! has: `model_name`, string durations, lenient `cfg_scale`, `watermark_info`, multi-shot, raw
//! Base64 media and the capability check.

use kinora_core::request::{MultiShotRequest, ShotRequest};
use kinora_media::source::InlinePolicy;
use serde_json::Value;

use super::capabilities::{CapabilityError, CapabilityTable, UsedFeature};
use super::error::OfficialError;
use crate::unified::error::UnifiedError;
use crate::unified::fields::{check_length, describe, Body};
use crate::unified::submit::{
    check_callback_url, pending, MediaSlot, PendingMedia, EXTERNAL_ID_CHARS, PROMPT_CHARS,
    URL_CHARS,
};

type Result<T> = std::result::Result<T, OfficialError>;

/// Most shots of a multi-shot request, and the longest shot prompt (§7.8).
const MAX_SHOTS: usize = 6;
const SHOT_PROMPT_CHARS: usize = 512;
/// The neutral `cfg_scale`: never a reason to refuse (§8).
pub(super) const NEUTRAL_CFG_SCALE: f64 = 0.5;

/// The shared field readers speak the unified dialect; here a body that is not an object is
/// 1200 and every other refusal 1201, with the same message.
pub fn from_unified(e: UnifiedError) -> OfficialError {
    if e.code == "invalid_json" {
        OfficialError::new(1200, e.message)
    } else {
        OfficialError::invalid(e.message)
    }
}

pub(super) fn invalid(message: impl Into<String>) -> OfficialError {
    OfficialError::invalid(message)
}

/// `model_name`, or the legacy `model` when it is absent (§2), or the endpoint's default; a name
/// no endpoint knows is 1203.
pub(super) fn model_name(
    body: &mut Body<'_>,
    table: &CapabilityTable,
    default: &str,
) -> Result<String> {
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
pub(super) fn duration(body: &mut Body<'_>, default: u32) -> Result<u32> {
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
pub(super) fn cfg_scale(body: &mut Body<'_>) -> Result<Option<f64>> {
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
pub(super) fn watermark(body: &mut Body<'_>) -> Result<bool> {
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
pub(super) fn common(body: &mut Body<'_>) -> Result<(Option<String>, Option<String>)> {
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
/// `shot_types` are the values the endpoint takes (omni-video only `customize`).
pub(super) fn multi_shot(
    body: &mut Body<'_>,
    task_seconds: u32,
    shot_types: &[&str],
) -> Result<Option<MultiShotRequest>> {
    let on = body.flag("multi_shot").map_err(from_unified)? == Some(true);
    let shot_type = body.value("shot_type");
    let prompts = body.value("multi_prompt");
    if !on {
        return Ok(None);
    }
    let shot_type = match shot_type {
        Some(Value::String(s)) if shot_types.contains(&s.as_str()) => s.clone(),
        None => return Err(invalid("shot_type is required when multi_shot is true")),
        Some(other) => {
            return Err(invalid(format!(
                "shot_type must be {}, not {}",
                shot_types.join(" or "),
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

/// The shot types of text2video and image2video (§7.8).
pub(super) const ALL_SHOT_TYPES: [&str; 2] = ["customize", "intelligence"];

/// `prompt`: required (1–2500 characters) unless a customised multi-shot request takes its
/// prompts from the shots, when it is ignored (§7.8); optional where `required` is false.
pub(super) fn prompt(
    body: &mut Body<'_>,
    shots: Option<&MultiShotRequest>,
    required: bool,
) -> Result<String> {
    let value = body.value("prompt");
    if shots.is_some_and(|s| s.shot_type == "customize") {
        return Ok(String::new());
    }
    let required = required || shots.is_some();
    match value {
        Some(Value::String(p)) if p.is_empty() && !required => Ok(String::new()),
        Some(Value::String(p)) => {
            check_length("prompt", p, 1, PROMPT_CHARS).map_err(from_unified)?;
            Ok(p.clone())
        }
        None if required => Err(invalid("prompt is required")),
        None => Ok(String::new()),
        Some(other) => Err(invalid(format!(
            "prompt must be a string, not {}",
            describe(other)
        ))),
    }
}

/// An image or video field as sent: a URL, or raw Base64 where `inline` (a `data:` prefix
/// is refused with Kling's own message, §2).
pub(super) fn media(
    param: &str,
    value: &str,
    slot: MediaSlot,
    inline: bool,
) -> Result<PendingMedia> {
    let policy = if inline {
        InlinePolicy::RawBase64Only
    } else {
        InlinePolicy::UrlOnly
    };
    pending(param, value, slot, policy).map_err(from_unified)
}

/// A required string field.
pub(super) fn required_string<'a>(body: &mut Body<'a>, key: &'static str) -> Result<&'a str> {
    body.string(key, true)
        .map_err(from_unified)?
        .ok_or_else(|| invalid(format!("{key} is required")))
}

/// Checks the capability table; an unknown model is 1203 and any other refusal 1201.
pub(super) fn check_capabilities(
    table: &CapabilityTable,
    endpoint: &str,
    model: &str,
    mode: &str,
    seconds: Option<u32>,
    features: &[UsedFeature],
) -> Result<()> {
    table
        .check(endpoint, model, mode, seconds, features)
        .map_err(|e| match e {
            CapabilityError::UnknownModel(_) => OfficialError::not_found(e.message()),
            CapabilityError::Unsupported(m) => invalid(m),
        })
}

/// `cfg_scale` after the capability rules (§8): a value other than 0.5 is the `cfg_scale`
/// feature; the neutral 0.5 is kept where the model takes it and dropped where it does not.
pub(super) fn cfg_feature(
    table: &CapabilityTable,
    endpoint: &str,
    model: &str,
    cfg: Option<f64>,
    features: &mut Vec<UsedFeature>,
) -> Option<f64> {
    let offered = table
        .model(endpoint, model)
        .is_some_and(|m| m.features.contains_key("cfg_scale"));
    match cfg {
        Some(v) if v != NEUTRAL_CFG_SCALE => {
            features.push(UsedFeature::new("cfg_scale"));
            Some(v)
        }
        Some(v) if offered => Some(v),
        _ => None,
    }
}

/// `voice_list` needs sound on, and the prompt's `<<<voice_N>>>` tags stay within it (§7.7).
/// Returns whether voice pricing applies.
pub(super) fn check_voices(prompt: &str, voices: &[String], sound: bool) -> Result<bool> {
    if !voices.is_empty() && !sound {
        return Err(invalid("voice_list needs sound on"));
    }
    let tags = crate::unified::submit::prompt_tags(prompt, "voice");
    if let Some(n) = tags.iter().find(|n| **n == 0 || **n > voices.len() as u64) {
        return Err(invalid(format!(
            "<<<voice_{n}>>> points past voice_list, which holds {} voices",
            voices.len()
        )));
    }
    Ok(!voices.is_empty() && !tags.is_empty())
}

/// `element_list` ids (integers or decimal strings), `max` at most.
pub(super) fn element_ids(body: &mut Body<'_>) -> Result<Vec<String>> {
    crate::unified::omni::element_ids(body).map_err(from_unified)
}

/// A refusal of the shared readers, as `from_unified` maps it.
pub(super) fn shared<T>(r: std::result::Result<T, UnifiedError>) -> Result<T> {
    r.map_err(from_unified)
}
