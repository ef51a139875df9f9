//! Turning a checked unified request into a task (steps 6–11 of §7.1 after parsing): every
//! input is fetched or decoded, probed and stored with the task; the checks that need the
//! inputs themselves run; the callback URL passes the address guard; and the task is created
//! with its first job in one transaction. Anything refused after staging is removed again.

use kinora_core::request::{
    DynamicMaskRequest, ElementRef, GenerationRequest, MediaRef, MotionControlRequest,
    VideoReferenceRequest,
};
use kinora_core::{ErrorCode, JobKind, NewTask, Submission, Task, TaskId};
use kinora_media::image::ImageRules;
use kinora_media::source::InlinePolicy;
use kinora_media::stage::StagedInput;
use kinora_media::video::{VideoRules, MOTION_CONTROL_MAX_BYTES, OMNI_REFERENCE_MAX_BYTES};
use kinora_media::MediaError;
use kinora_store::SubmitTerms;
use serde_json::Value;
use tracing::warn;

use super::error::UnifiedError;
use super::submit::{MediaSlot, ParsedSubmit, PendingMedia};
use crate::auth::Caller;
use crate::billing::admission::{admission, expected_output_ms, price_hold, Quote};
use crate::elements::{self, ElementError};
use crate::Services;

type Result<T> = std::result::Result<T, UnifiedError>;

fn media_error(e: MediaError) -> UnifiedError {
    if e.kind.is_client_error() {
        let field = e.field.clone();
        UnifiedError::invalid(&field, e.to_string())
    } else {
        UnifiedError::internal(e.to_string())
    }
}

fn server_error(e: kinora_core::Error) -> UnifiedError {
    UnifiedError::internal(e.message().to_owned())
}

/// Stages one input under the rules of its slot (§7.2).
async fn stage(
    services: &Services,
    task: &TaskId,
    input: &PendingMedia,
    parsed: &ParsedSubmit,
) -> std::result::Result<StagedInput, MediaError> {
    let stager = &services.stager;
    let image = |rules: ImageRules| {
        stager.image(
            task,
            &input.param,
            &input.value,
            InlinePolicy::Base64OrDataUri,
            rules,
        )
    };
    match input.slot {
        MediaSlot::Image | MediaSlot::ReferenceImage(_) => image(ImageRules::STANDARD).await,
        MediaSlot::ImageTail if parsed.kind == kinora_core::TaskKind::OmniVideo => {
            image(ImageRules::STANDARD).await
        }
        MediaSlot::ImageTail | MediaSlot::StaticMask | MediaSlot::DynamicMask(_) => {
            image(ImageRules::FORMAT_AND_SIZE).await
        }
        MediaSlot::CharacterImage => image(ImageRules::MOTION_CONTROL).await,
        MediaSlot::MotionVideo => {
            let by_image = parsed.character_orientation.as_deref() == Some("image");
            stager
                .video(
                    task,
                    &input.param,
                    &input.value,
                    MOTION_CONTROL_MAX_BYTES,
                    &VideoRules::motion_control(by_image),
                )
                .await
        }
        MediaSlot::ReferenceVideo => {
            stager
                .video(
                    task,
                    &input.param,
                    &input.value,
                    OMNI_REFERENCE_MAX_BYTES,
                    &VideoRules::omni_reference(),
                )
                .await
        }
    }
}

/// Strings longer than this in a stored request body are inline media, replaced by a note.
const STORED_STRING_CHARS: usize = 4096;

/// The body a task keeps of the request that created it: as received, except that inline media
/// (Base64 images can be megabytes) become `"<N characters of inline data>"`.
pub fn submission(trace_id: impl std::fmt::Display, body: &Value) -> Submission {
    fn elide(value: &Value) -> Value {
        match value {
            Value::String(s) if s.len() > STORED_STRING_CHARS => {
                Value::String(format!("<{} characters of inline data>", s.chars().count()))
            }
            Value::Array(items) => Value::Array(items.iter().map(elide).collect()),
            Value::Object(map) => {
                Value::Object(map.iter().map(|(k, v)| (k.clone(), elide(v))).collect())
            }
            other => other.clone(),
        }
    }
    Submission {
        trace_id: trace_id.to_string(),
        body: elide(body),
    }
}

/// The key's request-rate check, first after authentication (§7.1 step 2).
pub async fn submit_permit(services: &Services, caller: Caller) -> Result<SubmitTerms> {
    services
        .open_submit(caller)
        .await
        .map_err(server_error)?
        .map_err(UnifiedError::from)
}

/// Creates the task for a checked request on behalf of `caller`, under the `permit` its key's
/// rate check gave; `submission` is the request it came from.
pub async fn create_task(
    services: &Services,
    caller: Caller,
    permit: SubmitTerms,
    parsed: ParsedSubmit,
    submission: Submission,
) -> Result<Task> {
    if let Some(url) = &parsed.callback_url {
        services
            .stager
            .fetcher()
            .check_url("callback_url", url)
            .await
            .map_err(media_error)?;
    }
    let task_id = TaskId::new();
    let created = stage_and_create(services, (caller, permit), &parsed, task_id, submission).await;
    if created.is_err() {
        if let Err(e) = services.stager.discard(&task_id).await {
            warn!(task = %task_id, error = %e, "could not remove the inputs of a refused request");
        }
    }
    created
}

async fn stage_and_create(
    services: &Services,
    (caller, permit): (Caller, SubmitTerms),
    parsed: &ParsedSubmit,
    task_id: TaskId,
    submission: Submission,
) -> Result<Task> {
    let staged = futures::future::try_join_all(
        parsed
            .media
            .iter()
            .map(|input| stage(services, &task_id, input, parsed)),
    )
    .await
    .map_err(media_error)?;
    let mut request = assemble(parsed, &staged)?;
    request.elements = resolve_elements(services, caller, parsed, &task_id).await?;
    let hold = if permit.metered {
        let quote = Quote {
            model: &parsed.model_name,
            kind: parsed.kind,
            request: &request,
            voice_billed: parsed.voice_billed,
            expected_ms: expected_output_ms(parsed.kind, &request, &staged),
        };
        let hold = price_hold(&services.prices, &quote, caller.app)
            .map_err(|e| UnifiedError::invalid_model(e.message))?;
        Some(hold)
    } else {
        None
    };
    let new = NewTask {
        id: task_id,
        account_id: caller.account,
        dialect: parsed.dialect,
        kind: parsed.kind,
        model: parsed.model_name.clone(),
        request: serde_json::to_value(&request)
            .map_err(|e| UnifiedError::internal(format!("request does not serialise: {e}")))?,
        external_task_id: parsed.external_task_id.clone(),
        callback_url: parsed.callback_url.clone(),
        submission: Some(submission),
    };
    let admitted = services
        .store
        .admit_task(new, JobKind::SUBMIT_TASK, admission(caller, permit, hold))
        .await;
    match admitted {
        Ok((task, _)) => Ok(task),
        Err(e) => Err(match e.code() {
            ErrorCode::DuplicateExternalTaskId => UnifiedError::duplicate_external_task_id(
                parsed.external_task_id.as_deref().unwrap_or_default(),
            ),
            ErrorCode::ConcurrencyLimit => UnifiedError::concurrency_limited(e.message()),
            ErrorCode::InsufficientBalance => UnifiedError::insufficient_balance(e.message()),
            _ => server_error(e),
        }),
    }
}

/// The elements of `element_list` (§7.7 rule 10): presets or the caller's own, each front view
/// copied into the task's inputs.
async fn resolve_elements(
    services: &Services,
    caller: Caller,
    parsed: &ParsedSubmit,
    task_id: &TaskId,
) -> Result<Vec<ElementRef>> {
    let ids: Vec<Option<i64>> = parsed
        .element_ids
        .iter()
        .map(|id| id.parse().ok())
        .collect();
    let not_found = |i: usize| {
        let param = format!("element_list[{i}].element_id");
        UnifiedError::invalid(
            &param,
            format!(
                "{param}: no element {} exists among the presets and this account's elements",
                parsed.element_ids[i]
            ),
        )
    };
    if let Some(i) = ids.iter().position(Option::is_none) {
        return Err(not_found(i));
    }
    let ids: Vec<i64> = ids.into_iter().flatten().collect();
    elements::resolve_for_task(services, caller.account, task_id, &ids)
        .await
        .map_err(|(i, e)| match e {
            ElementError::NotFound(_) | ElementError::Preset(_) => not_found(i),
            ElementError::Image { field, message } => UnifiedError::invalid(&field, message),
            // Resolving creates nothing, so no external id can clash here.
            ElementError::DuplicateExternalTaskId(message) | ElementError::Internal(message) => {
                UnifiedError::internal(message)
            }
        })
}

/// The canonical request with the staged inputs in their slots, after the checks that need the
/// inputs' sizes (§7.2 masks, §7.4 trajectories).
fn assemble(parsed: &ParsedSubmit, staged: &[StagedInput]) -> Result<GenerationRequest> {
    let mut request = parsed.request.clone();
    let slots = parsed.media.iter().map(|m| m.slot).zip(staged);
    let reference = |s: &StagedInput| MediaRef::new(s.key.clone());
    let image = slots
        .clone()
        .find(|(slot, _)| *slot == MediaSlot::Image)
        .map(|(_, s)| s);
    let masks: Vec<&StagedInput> = slots
        .clone()
        .filter(|(slot, _)| matches!(slot, MediaSlot::StaticMask | MediaSlot::DynamicMask(_)))
        .map(|(_, s)| s)
        .collect();
    if let (Some(image), Some(first)) = (image, masks.first()) {
        for mask in &masks {
            if (mask.width, mask.height) != (first.width, first.height) {
                return Err(UnifiedError::invalid(
                    &mask.field,
                    format!(
                        "{}: is {}x{}, but {} is {}x{}; every mask needs the same resolution",
                        mask.field, mask.width, mask.height, first.field, first.width, first.height
                    ),
                ));
            }
            // Same aspect ratio as the image, to within one pixel of rounding.
            let cross = |a: u32, b: u32| u64::from(a) * u64::from(b);
            let diff = cross(mask.width, image.height).abs_diff(cross(image.width, mask.height));
            if diff > u64::from(image.height.max(mask.height)) {
                return Err(UnifiedError::invalid(
                    &mask.field,
                    format!(
                        "{}: aspect ratio {}x{} differs from image's {}x{}",
                        mask.field, mask.width, mask.height, image.width, image.height
                    ),
                ));
            }
        }
    }
    let mut dynamic = Vec::new();
    for (slot, input) in slots {
        match slot {
            MediaSlot::Image => request.image = Some(reference(input)),
            MediaSlot::ImageTail => request.image_tail = Some(reference(input)),
            MediaSlot::StaticMask => request.static_mask = Some(reference(input)),
            MediaSlot::DynamicMask(i) => {
                let points = parsed.trajectories.get(i).cloned().unwrap_or_default();
                if let Some(image) = image {
                    let outside = points.iter().position(|p| {
                        p.x >= f64::from(image.width) || p.y >= f64::from(image.height)
                    });
                    if let Some(j) = outside {
                        let param = format!("dynamic_masks[{i}].trajectories[{j}]");
                        return Err(UnifiedError::invalid(
                            &param,
                            format!(
                                "{param}: ({}, {}) lies outside the {}x{} image",
                                points[j].x, points[j].y, image.width, image.height
                            ),
                        ));
                    }
                }
                dynamic.push(DynamicMaskRequest {
                    mask: reference(input),
                    trajectories: points,
                });
            }
            MediaSlot::ReferenceImage(_) => request.reference_images.push(reference(input)),
            MediaSlot::CharacterImage | MediaSlot::MotionVideo => {}
            MediaSlot::ReferenceVideo => {
                let (refer_type, keep) = parsed
                    .video_refer
                    .clone()
                    .unwrap_or_else(|| ("base".to_owned(), true));
                request.video_reference = Some(VideoReferenceRequest {
                    video: reference(input),
                    refer_type,
                    keep_original_sound: keep,
                });
            }
        }
    }
    request.dynamic_masks = dynamic;
    let find = |wanted: MediaSlot| {
        parsed
            .media
            .iter()
            .zip(staged)
            .find(|(m, _)| m.slot == wanted)
            .map(|(_, s)| reference(s))
    };
    if let (Some(image), Some(video)) = (
        find(MediaSlot::CharacterImage),
        find(MediaSlot::MotionVideo),
    ) {
        request.motion_control = Some(MotionControlRequest {
            image,
            video,
            character_orientation: parsed
                .character_orientation
                .clone()
                .unwrap_or_else(|| "image".to_owned()),
            keep_original_sound: parsed.keep_original_sound.unwrap_or(true),
        });
    }
    Ok(request)
}
