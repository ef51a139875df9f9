//! `POST /v1/videos` for `Kling-V2.6` (§4–§7 of the unified spec): model resolution, routing,
//! every field of text-to-video, image-to-video and motion control, and the cross-field rules,
//! checked in the spec's order. The result is the canonical request with its media still to
//! be fetched and probed (the stager does that next, naming the same fields).

use kinora_core::request::{CameraConfig, CameraControlRequest, GenerationRequest, Point};
use kinora_core::{Dialect, TaskKind};
use kinora_media::source::{InlinePolicy, MediaSource};
use kinora_media::MediaErrorKind;
use serde_json::Value;

use super::error::UnifiedError;
use super::fields::{check_length, describe, Body};

type Result<T> = std::result::Result<T, UnifiedError>;

pub(crate) const PROMPT_CHARS: usize = 2500;
pub(crate) const URL_CHARS: usize = 2048;
pub(crate) const EXTERNAL_ID_CHARS: usize = 128;
const MAX_VOICES: usize = 2;
const MAX_DYNAMIC_MASKS: usize = 6;
const TRAJECTORY_POINTS: (usize, usize) = (2, 77);
const CAMERA_TYPES: [&str; 5] = [
    "simple",
    "down_back",
    "forward_up",
    "right_turn_forward",
    "left_turn_forward",
];
const CAMERA_AXES: [&str; 6] = ["horizontal", "vertical", "pan", "tilt", "roll", "zoom"];

/// The two models of this dialect (§4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnifiedModel {
    KlingV26,
    KlingVideoO1,
}

impl UnifiedModel {
    /// Matches the accepted spellings in any letter case.
    pub fn resolve(name: &str) -> Option<Self> {
        let lower = name.to_ascii_lowercase();
        match lower.as_str() {
            "kling-v2.6" | "kling-v2-6" => Some(Self::KlingV26),
            "kling-video-o1" | "kling-o1" => Some(Self::KlingVideoO1),
            _ => None,
        }
    }

    /// The name echoed in responses.
    pub fn canonical(self) -> &'static str {
        match self {
            Self::KlingV26 => "Kling-V2.6",
            Self::KlingVideoO1 => "Kling-Video-O1",
        }
    }

    /// The official `model_name` the task runs as.
    pub fn upstream(self) -> &'static str {
        match self {
            Self::KlingV26 => "kling-v2-6",
            Self::KlingVideoO1 => "kling-video-o1",
        }
    }
}

/// Where a staged input goes in the canonical request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaSlot {
    Image,
    ImageTail,
    StaticMask,
    DynamicMask(usize),
    CharacterImage,
    MotionVideo,
    /// Omni: the n-th image of the final image list without a type (§6.5).
    ReferenceImage(usize),
    /// Omni `video_list[0]`.
    ReferenceVideo,
}

/// An input still to fetch or decode, with the field path its errors name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingMedia {
    pub param: String,
    /// The value as sent, which the stager reads again.
    pub value: String,
    pub source: MediaSource,
    pub slot: MediaSlot,
}

/// A checked `Kling-V2.6` request.
#[derive(Clone, Debug, PartialEq)]
pub struct ParsedSubmit {
    /// The dialect the task is created in; it decides the shape of its answers.
    pub dialect: Dialect,
    /// The official `model_name` the task runs as.
    pub model_name: String,
    pub kind: TaskKind,
    /// Everything but the media, which [`MediaSlot`]s fill once staged.
    pub request: GenerationRequest,
    pub media: Vec<PendingMedia>,
    /// `dynamic_masks[i].trajectories`, in the order of the masks.
    pub trajectories: Vec<Vec<Point>>,
    /// Only for motion control, whose fields have no slot of their own until staged.
    pub character_orientation: Option<String>,
    pub keep_original_sound: Option<bool>,
    /// Omni `element_list` ids (decimal strings), in order; resolved against the element store
    /// before the task is created.
    pub element_ids: Vec<String>,
    /// Omni `video_list[0]`: `refer_type` and `keep_original_sound`.
    pub video_refer: Option<(String, bool)>,
    pub external_task_id: Option<String>,
    pub callback_url: Option<String>,
    /// `voice_list` is non-empty and the prompt refers to a voice (§7.6): voice pricing applies.
    pub voice_billed: bool,
}

/// Reads `model` (§4); the body is known to be an object.
pub fn resolve_model(body: &mut Body<'_>) -> Result<UnifiedModel> {
    let name = match body.value("model") {
        None => return Err(UnifiedError::missing("model", "model is required")),
        Some(Value::String(s)) => s,
        Some(other) => {
            return Err(UnifiedError::invalid_model(format!(
                "model must be a string, not {}",
                describe(other)
            )))
        }
    };
    UnifiedModel::resolve(name).ok_or_else(|| {
        UnifiedError::invalid_model(format!(
            "unknown model `{name}`; use Kling-V2.6 or Kling-Video-O1"
        ))
    })
}

/// The routes of `Kling-V2.6` (§5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    Text2Video,
    Image2Video,
    MotionControl,
}

fn route(body: &mut Body<'_>) -> Result<Route> {
    if body.flag("action_control")? == Some(true) {
        return Ok(Route::MotionControl);
    }
    let image = body_str(body, "image").is_some_and(|s| !s.is_empty());
    let tail = body_str(body, "image_tail").is_some_and(|s| !s.is_empty());
    Ok(if image || tail {
        Route::Image2Video
    } else {
        Route::Text2Video
    })
}

fn body_str<'a>(body: &Body<'a>, key: &str) -> Option<&'a str> {
    body.peek(key).and_then(Value::as_str)
}

/// Parses and checks a `POST /v1/videos` body (steps 3–7 of §7.1).
pub fn parse_submit(value: &Value) -> Result<ParsedSubmit> {
    let mut body = Body::new(value)?;
    match resolve_model(&mut body)? {
        UnifiedModel::KlingV26 => parse_v26(body),
        UnifiedModel::KlingVideoO1 => super::omni::parse_o1(body),
    }
}

/// The common trailing fields (§6.1), read after the route's own.
pub(super) fn common_fields(body: &mut Body<'_>) -> Result<(Option<String>, Option<String>)> {
    let callback_url = body.text("callback_url", URL_CHARS, true)?;
    if let Some(url) = &callback_url {
        check_callback_url(url)?;
    }
    let external_task_id = match body.string("external_task_id", true)? {
        Some(id) => {
            check_length("external_task_id", id, 1, EXTERNAL_ID_CHARS)?;
            Some(id.to_owned())
        }
        None => None,
    };
    // `action_control` is consumed whatever the route or model (§5.2, §7.10).
    body.value("action_control");
    Ok((callback_url, external_task_id))
}

/// A `Kling-V2.6` body after its model was read.
fn parse_v26(mut body: Body<'_>) -> Result<ParsedSubmit> {
    let model = UnifiedModel::KlingV26;
    let route = route(&mut body)?;
    let mut request = GenerationRequest::default();
    let mut media = Vec::new();
    let mut trajectories = Vec::new();
    let (mut character_orientation, mut keep_original_sound) = (None, None);
    let kind = match route {
        Route::Text2Video => {
            let hint = if body.has("image_url") && body.has("video_url") {
                "; to run motion control, set action_control: true"
            } else {
                ""
            };
            request.prompt = body.required_text("prompt", (1, PROMPT_CHARS), hint)?;
            request.negative_prompt = body.text("negative_prompt", PROMPT_CHARS, true)?;
            request.sound = body.on_off("sound")?.unwrap_or(false);
            request.mode = Some(
                body.choice("mode", &["std", "pro"])?
                    .unwrap_or("std")
                    .into(),
            );
            request.aspect_ratio = Some(
                body.choice("aspect_ratio", &["16:9", "9:16", "1:1"])?
                    .unwrap_or("16:9")
                    .into(),
            );
            request.duration = Some(five_or_ten(&mut body)?);
            request.camera_control = camera_control(&mut body)?;
            TaskKind::Text2Video
        }
        Route::Image2Video => {
            for (key, slot) in [
                ("image", MediaSlot::Image),
                ("image_tail", MediaSlot::ImageTail),
            ] {
                if let Some(s) = body.string(key, true)? {
                    media.push(pending(key, s, slot, InlinePolicy::Base64OrDataUri)?);
                }
            }
            request.prompt = body
                .text("prompt", PROMPT_CHARS, false)?
                .unwrap_or_default();
            request.negative_prompt = body.text("negative_prompt", PROMPT_CHARS, true)?;
            request.sound = body.on_off("sound")?.unwrap_or(false);
            request.voice_ids = voice_list(&mut body)?;
            request.mode = Some(
                body.choice("mode", &["std", "pro"])?
                    .unwrap_or("std")
                    .into(),
            );
            request.duration = Some(five_or_ten(&mut body)?);
            request.cfg_scale = cfg_scale(&mut body)?;
            if let Some(s) = body.string("static_mask", true)? {
                media.push(pending(
                    "static_mask",
                    s,
                    MediaSlot::StaticMask,
                    InlinePolicy::Base64OrDataUri,
                )?);
            }
            trajectories = dynamic_masks(&mut body, &mut media, InlinePolicy::Base64OrDataUri)?;
            request.camera_control = camera_control(&mut body)?;
            TaskKind::Image2Video
        }
        Route::MotionControl => {
            let image = body.string("image_url", true)?.ok_or_else(|| {
                UnifiedError::missing("image_url", "image_url is required for motion control")
            })?;
            media.push(pending(
                "image_url",
                image,
                MediaSlot::CharacterImage,
                InlinePolicy::Base64OrDataUri,
            )?);
            let video = body.string("video_url", true)?.ok_or_else(|| {
                UnifiedError::missing("video_url", "video_url is required for motion control")
            })?;
            media.push(pending(
                "video_url",
                video,
                MediaSlot::MotionVideo,
                InlinePolicy::UrlOnly,
            )?);
            let mode = body.choice("mode", &["std", "pro"])?.ok_or_else(|| {
                UnifiedError::missing("mode", "mode is required for motion control")
            })?;
            request.mode = Some(mode.into());
            character_orientation = Some(
                body.choice("character_orientation", &["image", "video"])?
                    .ok_or_else(|| {
                        UnifiedError::missing(
                            "character_orientation",
                            "character_orientation is required for motion control",
                        )
                    })?
                    .to_owned(),
            );
            request.prompt = body
                .text("prompt", PROMPT_CHARS, false)?
                .unwrap_or_default();
            keep_original_sound = Some(
                body.choice("keep_original_sound", &["yes", "no"])?
                    .unwrap_or("yes")
                    == "yes",
            );
            TaskKind::MotionControl
        }
    };
    let (callback_url, external_task_id) = common_fields(&mut body)?;
    request.extra = body.unknown();
    let voice_billed = check_cross_field(route, &request, &media)?;
    Ok(ParsedSubmit {
        dialect: Dialect::Unified,
        model_name: model.upstream().to_owned(),
        kind,
        request,
        media,
        trajectories,
        character_orientation,
        keep_original_sound,
        element_ids: Vec::new(),
        video_refer: None,
        external_task_id,
        callback_url,
        voice_billed,
    })
}

pub(crate) fn pending(
    param: &str,
    value: &str,
    slot: MediaSlot,
    policy: InlinePolicy,
) -> Result<PendingMedia> {
    if value.len() > URL_CHARS
        && value
            .trim_start()
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("http"))
    {
        return Err(UnifiedError::invalid(
            param,
            format!("{param}: a URL is at most {URL_CHARS} characters"),
        ));
    }
    let source = MediaSource::parse(param, value, policy).map_err(|e| {
        if e.kind == MediaErrorKind::DataUriRefused {
            // Kling's own words, which clients of the official dialect may match on.
            UnifiedError::invalid(param, e.detail)
        } else {
            UnifiedError::invalid(param, e.to_string())
        }
    })?;
    Ok(PendingMedia {
        param: param.to_owned(),
        value: value.to_owned(),
        source,
        slot,
    })
}

/// `seconds` ∈ {5, 10}, default 5 (§6.2, §6.3).
fn five_or_ten(body: &mut Body<'_>) -> Result<u32> {
    match body.seconds()? {
        None => Ok(5),
        Some(s @ (5 | 10)) => Ok(s),
        Some(s) => Err(UnifiedError::invalid(
            "seconds",
            format!("seconds must be 5 or 10 for Kling-V2.6, not {s}"),
        )),
    }
}

/// `cfg_scale`: a number in [0, 1]; only 0.5 is accepted for this model and it is dropped
/// (§7.8), so the result is always `None`.
fn cfg_scale(body: &mut Body<'_>) -> Result<Option<f64>> {
    let Some(value) = body.value("cfg_scale") else {
        return Ok(None);
    };
    let v = value
        .as_f64()
        .filter(|v| (0.0..=1.0).contains(v))
        .ok_or_else(|| {
            UnifiedError::invalid(
                "cfg_scale",
                format!(
                    "cfg_scale must be a number from 0 to 1, not {}",
                    describe(value)
                ),
            )
        })?;
    if v != 0.5 {
        return Err(UnifiedError::unsupported(
            Some("cfg_scale"),
            format!("cfg_scale {v} is not supported by kling-v2-6; only 0.5 is accepted"),
        ));
    }
    Ok(None)
}

/// `voice_list`: at most 2 `{voice_id}` items; a numeric id becomes its decimal string.
pub(crate) fn voice_list(body: &mut Body<'_>) -> Result<Vec<String>> {
    let Some(value) = body.value("voice_list") else {
        return Ok(Vec::new());
    };
    let items = value.as_array().ok_or_else(|| {
        UnifiedError::invalid(
            "voice_list",
            "voice_list must be an array of {\"voice_id\": ...}",
        )
    })?;
    if items.len() > MAX_VOICES {
        return Err(UnifiedError::invalid(
            "voice_list",
            format!(
                "voice_list holds at most {MAX_VOICES} voices, got {}",
                items.len()
            ),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let param = format!("voice_list[{i}].voice_id");
            match item.get("voice_id") {
                Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                Some(Value::Number(n)) if n.is_u64() || n.is_i64() => Ok(n.to_string()),
                None | Some(Value::Null) => Err(UnifiedError::missing(
                    &param,
                    format!("{param} is required"),
                )),
                Some(other) => Err(UnifiedError::invalid(
                    &param,
                    format!(
                        "{param} must be a non-empty string, not {}",
                        describe(other)
                    ),
                )),
            }
        })
        .collect()
}

/// `dynamic_masks` (§7.4): 1–6 groups of a mask and 2–77 trajectory points with whole,
/// non-negative coordinates.
pub(crate) fn dynamic_masks(
    body: &mut Body<'_>,
    media: &mut Vec<PendingMedia>,
    policy: InlinePolicy,
) -> Result<Vec<Vec<Point>>> {
    let Some(value) = body.value("dynamic_masks") else {
        return Ok(Vec::new());
    };
    let groups = value
        .as_array()
        .ok_or_else(|| UnifiedError::invalid("dynamic_masks", "dynamic_masks must be an array"))?;
    if groups.is_empty() {
        return Ok(Vec::new());
    }
    if groups.len() > MAX_DYNAMIC_MASKS {
        return Err(UnifiedError::invalid(
            "dynamic_masks",
            format!(
                "dynamic_masks holds 1-{MAX_DYNAMIC_MASKS} groups, got {}",
                groups.len()
            ),
        ));
    }
    let mut all = Vec::with_capacity(groups.len());
    for (i, group) in groups.iter().enumerate() {
        let at = format!("dynamic_masks[{i}]");
        let group = group
            .as_object()
            .ok_or_else(|| UnifiedError::invalid(&at, format!("{at} must be an object")))?;
        let mask_param = format!("{at}.mask");
        let mask = match group.get("mask") {
            Some(Value::String(s)) if !s.is_empty() => s,
            None | Some(Value::Null) => {
                return Err(UnifiedError::missing(
                    &mask_param,
                    format!("{mask_param} is required"),
                ))
            }
            Some(other) => {
                return Err(UnifiedError::invalid(
                    &mask_param,
                    format!(
                        "{mask_param} must be a URL or Base64 image, not {}",
                        describe(other)
                    ),
                ))
            }
        };
        media.push(pending(
            &mask_param,
            mask,
            MediaSlot::DynamicMask(i),
            policy,
        )?);
        let traj_param = format!("{at}.trajectories");
        let points = match group.get("trajectories") {
            Some(Value::Array(points)) => points,
            None | Some(Value::Null) => {
                return Err(UnifiedError::missing(
                    &traj_param,
                    format!("{traj_param} is required"),
                ))
            }
            Some(_) => {
                return Err(UnifiedError::invalid(
                    &traj_param,
                    format!("{traj_param} must be an array"),
                ))
            }
        };
        let (min, max) = TRAJECTORY_POINTS;
        if !(min..=max).contains(&points.len()) {
            return Err(UnifiedError::invalid(
                &traj_param,
                format!(
                    "{traj_param} needs {min}-{max} points, got {}",
                    points.len()
                ),
            ));
        }
        let parsed = points
            .iter()
            .enumerate()
            .map(|(j, p)| {
                let coord = |axis: &str| {
                    let param = format!("{traj_param}[{j}].{axis}");
                    p.get(axis)
                        .and_then(Value::as_u64)
                        .map(|v| v as f64)
                        .ok_or_else(|| {
                            UnifiedError::invalid(
                                &param,
                                format!("{param} must be a whole number of pixels, at least 0"),
                            )
                        })
                };
                Ok(Point {
                    x: coord("x")?,
                    y: coord("y")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        all.push(parsed);
    }
    Ok(all)
}

/// `camera_control` (§7.3); `{}` is absent.
pub(crate) fn camera_control(body: &mut Body<'_>) -> Result<Option<CameraControlRequest>> {
    const P: &str = "camera_control";
    let Some(value) = body.value(P) else {
        return Ok(None);
    };
    let object = value
        .as_object()
        .ok_or_else(|| UnifiedError::invalid(P, "camera_control must be an object"))?;
    if let Some(key) = object.keys().find(|k| *k != "type" && *k != "config") {
        let param = format!("{P}.{key}");
        return Err(UnifiedError::invalid(
            &param,
            format!("{param} is not a camera_control field"),
        ));
    }
    let kind = object.get("type").filter(|v| !v.is_null());
    let config = object.get("config").filter(|v| !v.is_null());
    let kind =
        match (kind, config) {
            (None, None) => return Ok(None),
            (None, Some(_)) => "simple",
            (Some(Value::String(s)), _) => CAMERA_TYPES
                .iter()
                .find(|t| **t == s)
                .copied()
                .ok_or_else(|| {
                    UnifiedError::invalid(
                        "camera_control.type",
                        format!(
                            "camera_control.type must be one of {}, not `{s}`",
                            CAMERA_TYPES.join(", ")
                        ),
                    )
                })?,
            (Some(other), _) => {
                return Err(UnifiedError::invalid(
                    "camera_control.type",
                    format!(
                        "camera_control.type must be a string, not {}",
                        describe(other)
                    ),
                ))
            }
        };
    let config = match (kind, config) {
        ("simple", None) => {
            return Err(UnifiedError::missing(
                "camera_control.config",
                "camera_control.config is required when type is simple",
            ))
        }
        ("simple", Some(config)) => Some(camera_config(config)?),
        (_, Some(_)) => {
            return Err(UnifiedError::unsupported(
                Some("camera_control.config"),
                format!("camera_control.config must be absent for type {kind}"),
            ))
        }
        (_, None) => None,
    };
    Ok(Some(CameraControlRequest {
        kind: kind.to_owned(),
        config,
    }))
}

fn camera_config(value: &Value) -> Result<CameraConfig> {
    let object = value.as_object().ok_or_else(|| {
        UnifiedError::invalid(
            "camera_control.config",
            "camera_control.config must be an object",
        )
    })?;
    let mut config = CameraConfig::default();
    for (key, v) in object {
        let param = format!("camera_control.config.{key}");
        let slot = match key.as_str() {
            "horizontal" => &mut config.horizontal,
            "vertical" => &mut config.vertical,
            "pan" => &mut config.pan,
            "tilt" => &mut config.tilt,
            "roll" => &mut config.roll,
            "zoom" => &mut config.zoom,
            _ => {
                return Err(UnifiedError::invalid(
                    &param,
                    format!(
                        "{param} is not a camera axis; use {}",
                        CAMERA_AXES.join(", ")
                    ),
                ))
            }
        };
        if v.is_null() {
            continue;
        }
        *slot = v
            .as_f64()
            .filter(|x| (-10.0..=10.0).contains(x))
            .ok_or_else(|| {
                UnifiedError::invalid(
                    &param,
                    format!(
                        "{param} must be a number from -10 to 10, not {}",
                        describe(v)
                    ),
                )
            })?;
    }
    let set: Vec<&str> = CAMERA_AXES
        .iter()
        .zip([
            config.horizontal,
            config.vertical,
            config.pan,
            config.tilt,
            config.roll,
            config.zoom,
        ])
        .filter(|(_, v)| *v != 0.0)
        .map(|(k, _)| *k)
        .collect();
    if set.len() != 1 {
        return Err(UnifiedError::unsupported(
            Some("camera_control.config"),
            format!(
                "camera_control of type simple needs exactly one non-zero axis, got {}",
                if set.is_empty() {
                    "none".to_owned()
                } else {
                    set.join(", ")
                }
            ),
        ));
    }
    Ok(config)
}

/// An absolute `http(s)` URL (§6.1); the address guard runs when the task is staged.
pub(crate) fn check_callback_url(url: &str) -> Result<()> {
    let parsed = url::Url::parse(url).map_err(|e| {
        UnifiedError::invalid(
            "callback_url",
            format!("callback_url is not an absolute URL: {e}"),
        )
    })?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(UnifiedError::invalid(
            "callback_url",
            "callback_url must be an absolute http:// or https:// URL",
        ));
    }
    Ok(())
}

/// The well-formed `<<<voice_N>>>` tags of a prompt, as numbers.
fn voice_tags(prompt: &str) -> Vec<u64> {
    prompt_tags(prompt, "voice")
}

/// The numbers of the well-formed `<<<{name}_N>>>` tags of a prompt.
pub(crate) fn prompt_tags(prompt: &str, name: &str) -> Vec<u64> {
    let open = format!("<<<{name}_");
    let open = open.as_str();
    let mut tags = Vec::new();
    let mut rest = prompt;
    while let Some(at) = rest.find(open) {
        let after = &rest[at + open.len()..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && after[digits..].starts_with(">>>") {
            if let Ok(n) = after[..digits].parse() {
                tags.push(n);
            }
        }
        rest = after;
    }
    tags
}

/// Step 7 of §7.1: groups, voices and the capability table (§7.5, §7.6, §7.8). Returns whether
/// voice pricing applies.
fn check_cross_field(
    route: Route,
    request: &GenerationRequest,
    media: &[PendingMedia],
) -> Result<bool> {
    let has = |slot: MediaSlot| media.iter().any(|m| m.slot == slot);
    let brush = has(MediaSlot::StaticMask)
        || media
            .iter()
            .any(|m| matches!(m.slot, MediaSlot::DynamicMask(_)));
    let tail = has(MediaSlot::ImageTail);
    let image = has(MediaSlot::Image);
    let mode = request.mode.as_deref().unwrap_or("std");
    let seconds = request.duration.unwrap_or(5);
    let combination = |feature: &str| {
        format!("model/mode/duration(kling-v2-6/{mode}/{seconds}) is not supported with {feature}")
    };
    if route == Route::Image2Video {
        let groups: Vec<&str> = [
            (tail, "first and last frame (image_tail)"),
            (brush, "motion brush (static_mask, dynamic_masks)"),
            (request.camera_control.is_some(), "camera (camera_control)"),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, name)| name)
        .collect();
        if groups.len() > 1 {
            return Err(UnifiedError::unsupported(
                None,
                format!("{} cannot be combined; use one group", groups.join(" and ")),
            ));
        }
        if brush && !image {
            return Err(UnifiedError::unsupported(
                Some("image"),
                "static_mask and dynamic_masks need image: a mask takes the image's aspect ratio",
            ));
        }
        if tail && !image {
            return Err(UnifiedError::unsupported(
                Some("image_tail"),
                combination("image_tail without image"),
            ));
        }
        if tail && (mode != "pro" || request.sound) {
            return Err(UnifiedError::unsupported(
                Some("image_tail"),
                format!(
                    "{}; image_tail needs mode pro and sound off",
                    combination("image_tail")
                ),
            ));
        }
        if brush && seconds != 5 {
            return Err(UnifiedError::unsupported(
                Some("seconds"),
                combination("motion brush (it needs seconds = 5)"),
            ));
        }
    }
    if request.sound && mode != "pro" {
        return Err(UnifiedError::unsupported(
            Some("sound"),
            format!("{}; sound on needs mode pro", combination("sound on")),
        ));
    }
    if !request.voice_ids.is_empty() && !request.sound {
        return Err(UnifiedError::unsupported(
            Some("voice_list"),
            "voice_list needs sound: \"on\"",
        ));
    }
    let tags = voice_tags(&request.prompt);
    if let Some(n) = tags
        .iter()
        .find(|n| **n == 0 || **n > request.voice_ids.len() as u64)
    {
        return Err(UnifiedError::unsupported(
            Some("prompt"),
            format!(
                "<<<voice_{n}>>> refers to a voice that voice_list does not hold ({} given)",
                request.voice_ids.len()
            ),
        ));
    }
    Ok(!request.voice_ids.is_empty() && !tags.is_empty())
}
