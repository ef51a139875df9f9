//! `POST /kling/videos` and `POST /kling/motion` bodies (§3, §4), translated into the official
//! dialect's bodies and checked by its parsers, so one set of rules (fields, capability table,
//! omni limits) serves every dialect. What only this dialect has is checked here first: the
//! action and model names, URL-only media, the 200-character negative prompt, camera values
//! in [-1, 1], the 5 s end-frame rule, and which fields each model kind takes.

use serde_json::{json, Map, Value};

use super::error::AceError;
use crate::official::capabilities::CapabilityTable;
use crate::official::error::OfficialError;
use crate::official::extend::{parse_video_extend, ExtendFields};
use crate::official::omni::parse_omni_video;
use crate::official::submit::{parse_image2video, parse_motion_control, parse_text2video};
use crate::unified::fields::describe;
use crate::unified::submit::ParsedSubmit;

type Result<T> = std::result::Result<T, AceError>;

const NEGATIVE_PROMPT_CHARS: usize = 200;
const URL_CHARS: usize = 2048;
const STANDARD_MODELS: [&str; 7] = [
    "kling-v1",
    "kling-v1-6",
    "kling-v2-master",
    "kling-v2-1-master",
    "kling-v2-5-turbo",
    "kling-v2-6",
    "kling-v3",
];
const OMNI_MODELS: [&str; 2] = ["kling-video-o1", "kling-v3-omni"];
/// Standard models that take `voice_list`.
const VOICE_MODELS: [&str; 2] = ["kling-v2-6", "kling-v3"];

/// How the caller wants the answer (§5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// `async: true` or a `callback_url`: answer at once.
    pub asynchronous: bool,
    /// `timeout`: seconds the caller is willing to wait, at least 1.
    pub timeout_seconds: Option<u64>,
}

/// A checked create request: the plan, or an extension whose `video_id` is still to be looked
/// up, and how to answer.
pub enum AceSubmit {
    Plan(Box<ParsedSubmit>),
    Extend(Box<ExtendFields>),
}

/// A refusal of the official parsers, in this dialect's codes.
pub fn from_official(e: OfficialError) -> AceError {
    match e.code {
        5000..=5999 => AceError::internal(e.message),
        // The official parsers' only 1203 is an unknown model name.
        1203 => AceError::bad_request("model is invalid."),
        _ => AceError::bad_request(e.message),
    }
}

fn object(value: &Value) -> Result<&Map<String, Value>> {
    value
        .as_object()
        .ok_or_else(|| AceError::bad_request("the request body must be a JSON object"))
}

/// A field's value; `null`, `""` and `[]` count as absent (§2).
fn field<'a>(body: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    body.get(key).filter(|v| match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => true,
    })
}

fn string<'a>(body: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>> {
    match field(body, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(AceError::bad_request(format!(
            "{key} must be a string, not {}",
            describe(other)
        ))),
    }
}

/// An absolute http(s) URL: this dialect takes no Base64 (§2).
fn url<'a>(body: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>> {
    let Some(value) = string(body, key)? else {
        return Ok(None);
    };
    check_url(key, value)?;
    Ok(Some(value))
}

fn check_url(key: &str, value: &str) -> Result<()> {
    let lower = value.trim().to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(AceError::bad_request(format!(
            "{key} must be an absolute http:// or https:// URL"
        )));
    }
    if value.chars().count() > URL_CHARS {
        return Err(AceError::bad_request(format!(
            "{key} must be at most {URL_CHARS} characters"
        )));
    }
    Ok(())
}

/// `async` (boolean or `"true"`/`"false"`), `callback_url` and `timeout` (§3.1, §5).
fn delivery(body: &Map<String, Value>) -> Result<Delivery> {
    let asynchronous = match field(body, "async") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => true,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => false,
        Some(other) => {
            return Err(AceError::bad_request(format!(
                "async must be true or false, not {}",
                describe(other)
            )))
        }
    };
    let timeout_seconds = match field(body, "timeout") {
        None => None,
        Some(v) => Some(v.as_u64().filter(|t| *t >= 1).ok_or_else(|| {
            AceError::bad_request(format!(
                "timeout must be a whole number of seconds, at least 1, not {}",
                describe(v)
            ))
        })?),
    };
    Ok(Delivery {
        asynchronous: asynchronous || field(body, "callback_url").is_some(),
        timeout_seconds,
    })
}

/// `model`: matched in any letter case, `kling-o1` meaning `kling-video-o1` (§3.2).
fn model(body: &Map<String, Value>) -> Result<(String, bool)> {
    let name = match string(body, "model")? {
        None => return Ok(("kling-v1".to_owned(), false)),
        Some(name) => name.to_ascii_lowercase(),
    };
    let name = if name == "kling-o1" {
        "kling-video-o1".to_owned()
    } else {
        name
    };
    if STANDARD_MODELS.contains(&name.as_str()) {
        Ok((name, false))
    } else if OMNI_MODELS.contains(&name.as_str()) {
        Ok((name, true))
    } else {
        Err(AceError::bad_request("model is invalid."))
    }
}

/// `camera_control` as an object, or a string holding one, with every config value in
/// [-1, 1] (§3.4); the official parser checks the rest.
fn camera_control(body: &Map<String, Value>) -> Result<Option<Value>> {
    let value = match field(body, "camera_control") {
        None => return Ok(None),
        Some(Value::String(text)) => serde_json::from_str::<Value>(text)
            .ok()
            .filter(Value::is_object)
            .ok_or_else(|| {
                AceError::bad_request(
                    "camera_control must be a JSON object, or a string holding one",
                )
            })?,
        Some(v @ Value::Object(_)) => v.clone(),
        Some(other) => {
            return Err(AceError::bad_request(format!(
                "camera_control must be an object, not {}",
                describe(other)
            )))
        }
    };
    if let Some(config) = value.get("config").and_then(Value::as_object) {
        for (axis, v) in config {
            if v.as_f64().is_some_and(|x| !(-1.0..=1.0).contains(&x)) {
                return Err(AceError::bad_request(format!(
                    "camera_control.config.{axis} must be a number from -1 to 1, not {v}"
                )));
            }
        }
    }
    Ok(Some(value))
}

/// Copies the listed fields that are present.
fn copy(from: &Map<String, Value>, to: &mut Map<String, Value>, keys: &[&str]) {
    for key in keys {
        if let Some(v) = field(from, key) {
            to.insert((*key).to_owned(), v.clone());
        }
    }
}

/// `POST /kling/videos` (§3).
pub fn parse_videos(value: &Value, table: &CapabilityTable) -> Result<(AceSubmit, Delivery)> {
    let body = object(value)?;
    let action = match string(body, "action")? {
        Some(a @ ("text2video" | "image2video" | "extend")) => a,
        Some(other) => {
            return Err(AceError::bad_request(format!(
                "action must be one of text2video, image2video, extend, not `{other}`"
            )))
        }
        None => {
            return Err(AceError::bad_request(
                "action is required: text2video, image2video or extend",
            ))
        }
    };
    let delivery = delivery(body)?;
    if let Some(url) = string(body, "callback_url")? {
        check_url("callback_url", url)?;
    }
    if let Some(negative) = string(body, "negative_prompt")? {
        if negative.chars().count() > NEGATIVE_PROMPT_CHARS {
            return Err(AceError::bad_request(format!(
                "negative_prompt must be at most {NEGATIVE_PROMPT_CHARS} characters"
            )));
        }
    }
    for (key, only) in [
        ("start_image_url", "image2video"),
        ("end_image_url", "image2video"),
        ("video_id", "extend"),
    ] {
        if field(body, key).is_some() && action != only {
            return Err(AceError::bad_request(format!(
                "{key} is only allowed with action {only}"
            )));
        }
    }
    if action == "extend" {
        let mut official = Map::new();
        copy(
            body,
            &mut official,
            &[
                "video_id",
                "prompt",
                "negative_prompt",
                "cfg_scale",
                "callback_url",
            ],
        );
        if field(body, "video_id").is_none() {
            return Err(AceError::bad_request(
                "video_id is required for action extend",
            ));
        }
        let fields = parse_video_extend(&Value::Object(official)).map_err(from_official)?;
        return Ok((AceSubmit::Extend(Box::new(fields)), delivery));
    }

    let (model, omni) = model(body)?;
    let start = url(body, "start_image_url")?;
    let end = url(body, "end_image_url")?;
    if action == "image2video" && start.is_none() {
        return Err(AceError::bad_request(
            "start_image_url is required for action image2video",
        ));
    }
    if end.is_some() {
        let seconds = field(body, "duration").map(|d| match d {
            Value::String(s) => s.trim().to_owned(),
            other => other.to_string(),
        });
        if seconds.is_some_and(|s| s != "5") {
            return Err(AceError::bad_request(
                "duration must be 5 when end_image_url is given",
            ));
        }
    }
    for key in ["image_list", "video_list"] {
        if field(body, key).is_some() && !omni {
            return Err(AceError::bad_request(format!(
                "{key} needs an omni model (kling-video-o1 or kling-v3-omni)"
            )));
        }
    }
    if field(body, "element_list").is_some()
        && !(omni || (model == "kling-v3" && action == "image2video"))
    {
        return Err(AceError::bad_request(
            "element_list needs an omni model, or kling-v3 with action image2video",
        ));
    }
    if field(body, "voice_list").is_some() && !VOICE_MODELS.contains(&model.as_str()) {
        return Err(AceError::bad_request(
            "voice_list needs model kling-v2-6 or kling-v3",
        ));
    }
    if omni {
        for key in ["negative_prompt", "cfg_scale", "camera_control"] {
            if field(body, key).is_some() {
                return Err(AceError::bad_request(format!(
                    "{key} is not supported by omni models"
                )));
            }
        }
    }
    let camera = camera_control(body)?;
    let sound = match field(body, "generate_audio") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(AceError::bad_request(format!(
                "generate_audio must be true or false, not {}",
                describe(other)
            )))
        }
    };

    let mut official = Map::new();
    official.insert("model_name".into(), json!(model));
    official.insert("sound".into(), json!(if sound { "on" } else { "off" }));
    copy(
        body,
        &mut official,
        &[
            "prompt",
            "duration",
            "multi_shot",
            "shot_type",
            "multi_prompt",
            "callback_url",
        ],
    );
    // `std` is this dialect's default for every model, omni included (§3.1).
    official.insert(
        "mode".into(),
        field(body, "mode").cloned().unwrap_or_else(|| json!("std")),
    );
    let aspect = field(body, "aspect_ratio")
        .cloned()
        .unwrap_or_else(|| json!("16:9"));
    let parsed = if omni {
        copy(body, &mut official, &["element_list", "video_list"]);
        let mut images: Vec<Value> = match field(body, "image_list") {
            Some(Value::Array(items)) => items.clone(),
            Some(other) => {
                return Err(AceError::bad_request(format!(
                    "image_list must be an array, not {}",
                    describe(other)
                )))
            }
            None => Vec::new(),
        };
        for item in &images {
            if let Some(u) = item.get("image_url").and_then(Value::as_str) {
                check_url("image_list[].image_url", u)?;
            }
        }
        if images.len() > 7 {
            return Err(AceError::bad_request(format!(
                "image_list holds 1-7 images, got {}",
                images.len()
            )));
        }
        if let Some(start) = start {
            images.push(json!({"image_url": start, "type": "first_frame"}));
        }
        if let Some(end) = end {
            images.push(json!({"image_url": end, "type": "end_frame"}));
        }
        let first_frame = images.iter().any(|i| i["type"] == "first_frame");
        let base_edit = field(body, "video_list")
            .and_then(|v| v.get(0))
            .is_some_and(|v| {
                matches!(v.get("refer_type"), None | Some(Value::Null)) || v["refer_type"] == "base"
            });
        if let Some(videos) = field(body, "video_list").and_then(Value::as_array) {
            for v in videos {
                if let Some(u) = v.get("video_url").and_then(Value::as_str) {
                    check_url("video_list[].video_url", u)?;
                }
            }
        }
        // The dialect defaults aspect_ratio, so it is dropped where the output follows a frame
        // or a video instead of refused (§3.3).
        if !(first_frame || base_edit) {
            official.insert("aspect_ratio".into(), aspect);
        }
        if !images.is_empty() {
            official.insert("image_list".into(), Value::Array(images));
        }
        parse_omni_video(&Value::Object(official), table)
    } else {
        copy(
            body,
            &mut official,
            &["negative_prompt", "cfg_scale", "voice_list"],
        );
        if let Some(camera) = camera {
            official.insert("camera_control".into(), camera);
        }
        if action == "image2video" {
            copy(body, &mut official, &["element_list"]);
            if let Some(start) = start {
                official.insert("image".into(), json!(start));
            }
            if let Some(end) = end {
                official.insert("image_tail".into(), json!(end));
            }
            parse_image2video(&Value::Object(official), table)
        } else {
            official.insert("aspect_ratio".into(), aspect);
            parse_text2video(&Value::Object(official), table)
        }
    }
    .map_err(from_official)?;
    Ok((AceSubmit::Plan(Box::new(parsed)), delivery))
}

/// `POST /kling/motion` (§4).
pub fn parse_motion(value: &Value, table: &CapabilityTable) -> Result<(ParsedSubmit, Delivery)> {
    let body = object(value)?;
    let delivery = delivery(body)?;
    if let Some(url) = string(body, "callback_url")? {
        check_url("callback_url", url)?;
    }
    for key in ["image_url", "video_url"] {
        if url(body, key)?.is_none() {
            return Err(AceError::bad_request(format!("{key} is required")));
        }
    }
    let mut official = Map::new();
    copy(
        body,
        &mut official,
        &[
            "image_url",
            "video_url",
            "character_orientation",
            "mode",
            "keep_original_sound",
            "prompt",
            "watermark_info",
            "callback_url",
        ],
    );
    if let Some(name) = field(body, "model_name").or_else(|| field(body, "model")) {
        official.insert("model_name".into(), name.clone());
    }
    let parsed = parse_motion_control(&Value::Object(official), table).map_err(from_official)?;
    Ok((parsed, delivery))
}
