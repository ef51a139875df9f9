//! `POST /v1/videos/video-extend` (§7.5, §8.5): the fields are read first, then the video the
//! `video_id` names is looked up, and the extension inherits its model and mode.

use kinora_core::request::GenerationRequest;
use kinora_core::{Dialect, TaskKind};
use serde_json::Value;

use super::capabilities::CapabilityTable;
use super::error::OfficialError;
use super::fields::{cfg_scale, common, from_unified, invalid, shared, watermark};
use super::task::seconds_text;
use crate::extend::{ExtendRefusal, ExtendSource, EXTENSION_SECONDS, MAX_TOTAL_SECONDS};
use crate::unified::fields::{describe, Body};
use crate::unified::submit::{ParsedSubmit, PROMPT_CHARS};

type Result<T> = std::result::Result<T, OfficialError>;

/// A checked body whose `video_id` is still to be looked up.
#[derive(Clone, Debug)]
pub struct ExtendFields {
    pub video_id: String,
    request: GenerationRequest,
    external_task_id: Option<String>,
    callback_url: Option<String>,
}

/// Reads the body (1200, 1201).
pub fn parse_video_extend(value: &Value) -> Result<ExtendFields> {
    let mut body = Body::new(value).map_err(from_unified)?;
    let video_id = match body.value("video_id") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_owned(),
        None | Some(Value::String(_)) => return Err(invalid("video_id is required")),
        Some(other) => {
            return Err(invalid(format!(
                "video_id must be a string, not {}",
                describe(other)
            )))
        }
    };
    let prompt = shared(body.text("prompt", PROMPT_CHARS, true))?.unwrap_or_default();
    let negative_prompt = shared(body.text("negative_prompt", PROMPT_CHARS, true))?;
    let cfg_scale = cfg_scale(&mut body)?;
    let watermark = watermark(&mut body)?;
    let (callback_url, external_task_id) = common(&mut body)?;
    Ok(ExtendFields {
        video_id,
        request: GenerationRequest {
            prompt,
            negative_prompt,
            cfg_scale,
            watermark,
            extra: body.unknown(),
            ..GenerationRequest::default()
        },
        external_task_id,
        callback_url,
    })
}

/// A refusal to extend, in this dialect's words.
pub fn refusal(e: ExtendRefusal) -> OfficialError {
    match e {
        ExtendRefusal::Invalid => invalid("video_id is invalid"),
        ExtendRefusal::TooLong(seconds) => invalid(format!(
            "video_id is {} s long; one more extension of about {EXTENSION_SECONDS} s would pass \
             the {MAX_TOTAL_SECONDS} s limit",
            seconds_text(seconds)
        )),
        ExtendRefusal::Internal(message) => OfficialError::internal(message),
    }
}

impl ExtendFields {
    /// The plan for extending `source`: its model and mode, checked against §8.5.
    pub fn plan(self, source: ExtendSource, table: &CapabilityTable) -> Result<ParsedSubmit> {
        let model = source.task.model.clone();
        let mode = source.mode().unwrap_or_else(|| "std".to_owned());
        // The source's model is not a request field, so a model the table does not know is
        // as unsupported as one it refuses.
        table
            .check("video-extend", &model, &mode, None, &[])
            .map_err(|_| invalid(format!("model({model}) is not supported on video-extend")))?;
        let request = GenerationRequest {
            mode: Some(mode),
            extend: Some(source.request),
            ..self.request
        };
        Ok(ParsedSubmit {
            dialect: Dialect::Official,
            model_name: model,
            kind: TaskKind::VideoExtend,
            request,
            media: Vec::new(),
            trajectories: Vec::new(),
            character_orientation: None,
            keep_original_sound: None,
            element_ids: Vec::new(),
            video_refer: None,
            external_task_id: self.external_task_id,
            callback_url: self.callback_url,
            voice_billed: false,
        })
    }
}
