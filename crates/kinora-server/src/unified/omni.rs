//! `POST /v1/videos` for `Kling-Video-O1` (§6.5, §7.7): the flat and native formats with the
//! seed's precedence, the image list built from flat fields, elements, the reference video, and
//! the omni limits on images, elements, duration, aspect ratio and prompt references.

use kinora_core::request::GenerationRequest;
use kinora_core::{Dialect, TaskKind};
use kinora_media::source::InlinePolicy;
use serde_json::Value;

use super::error::UnifiedError;
use super::fields::{describe, Body};
use super::submit::{
    common_fields, pending, prompt_tags, MediaSlot, ParsedSubmit, PendingMedia, UnifiedModel,
    PROMPT_CHARS,
};

type Result<T> = std::result::Result<T, UnifiedError>;

const MAX_IMAGES_AND_ELEMENTS: usize = 7;
const MAX_IMAGES_AND_ELEMENTS_WITH_VIDEO: usize = 4;
const MAX_ELEMENTS_WITH_FIRST_FRAME: usize = 3;
const SECONDS_RANGE: (u32, u32) = (3, 10);

/// The role of an image in the final list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Reference,
    FirstFrame,
    EndFrame,
}

/// One entry of the final image list *I*, with the field path its errors name.
pub(crate) struct ListedImage<'a> {
    pub param: String,
    pub value: &'a str,
    pub role: Role,
}

fn image_item<'a>(param: String, value: &'a Value, role: Role) -> Result<ListedImage<'a>> {
    match value {
        Value::String(s) if !s.is_empty() => Ok(ListedImage {
            param,
            value: s,
            role,
        }),
        Value::String(_) | Value::Null => Err(UnifiedError::missing(
            &param,
            format!("{param} must be a non-empty image URL or Base64"),
        )),
        other => Err(UnifiedError::invalid(
            &param,
            format!(
                "{param} must be an image URL or Base64, not {}",
                describe(other)
            ),
        )),
    }
}

/// The native `image_list`: `{image_url, type?}` items or bare strings.
pub(crate) fn native_images<'a>(items: &'a [Value]) -> Result<Vec<ListedImage<'a>>> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(_) => image_item(format!("image_list[{i}]"), item, Role::Reference),
            Value::Object(o) => {
                let role = match o.get("type") {
                    None | Some(Value::Null) => Role::Reference,
                    Some(Value::String(t)) if t == "first_frame" => Role::FirstFrame,
                    Some(Value::String(t)) if t == "end_frame" => Role::EndFrame,
                    Some(other) => {
                        let param = format!("image_list[{i}].type");
                        return Err(UnifiedError::invalid(
                            &param,
                            format!(
                                "{param} must be first_frame or end_frame, not {}",
                                describe(other)
                            ),
                        ));
                    }
                };
                let url = o.get("image_url").unwrap_or(&Value::Null);
                image_item(format!("image_list[{i}].image_url"), url, role)
            }
            other => Err(UnifiedError::invalid(
                &format!("image_list[{i}]"),
                format!(
                    "image_list[{i}] must be an object with image_url, not {}",
                    describe(other)
                ),
            )),
        })
        .collect()
}

/// The flat fields in the order of §6.5: each reference image, then the first frame, then the
/// last frame.
fn flat_images<'a>(body: &mut Body<'a>) -> Result<Vec<ListedImage<'a>>> {
    let mut images = Vec::new();
    if let Some(value) = body.value("reference_images") {
        let items = value.as_array().ok_or_else(|| {
            UnifiedError::invalid(
                "reference_images",
                "reference_images must be an array of image URLs or Base64",
            )
        })?;
        for (i, item) in items.iter().enumerate() {
            images.push(image_item(
                format!("reference_images[{i}]"),
                item,
                Role::Reference,
            )?);
        }
    }
    for (key, role) in [
        ("first_frame_url", Role::FirstFrame),
        ("last_frame_url", Role::EndFrame),
    ] {
        if let Some(s) = body.string(key, true)? {
            images.push(ListedImage {
                param: key.to_owned(),
                value: s,
                role,
            });
        }
    }
    Ok(images)
}

/// `element_list` ids: integers or decimal strings.
pub(crate) fn element_ids(body: &mut Body<'_>) -> Result<Vec<String>> {
    let Some(value) = body.value("element_list") else {
        return Ok(Vec::new());
    };
    let items = value.as_array().ok_or_else(|| {
        UnifiedError::invalid(
            "element_list",
            "element_list must be an array of {\"element_id\": ...}",
        )
    })?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let param = format!("element_list[{i}].element_id");
            let id = match item.get("element_id") {
                Some(Value::Number(n)) if n.is_u64() => n.to_string(),
                Some(Value::String(s))
                    if !s.is_empty() && s.len() <= 16 && s.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    s.clone()
                }
                None | Some(Value::Null) => {
                    return Err(UnifiedError::missing(
                        &param,
                        format!("{param} is required"),
                    ))
                }
                Some(other) => {
                    return Err(UnifiedError::invalid(
                        &param,
                        format!(
                            "{param} must be an integer or a decimal string, not {}",
                            describe(other)
                        ),
                    ))
                }
            };
            Ok(id)
        })
        .collect()
}

/// `video_list`: at most one `{video_url, refer_type?, keep_original_sound?}`.
pub(crate) fn video_list<'a>(body: &mut Body<'a>) -> Result<Option<(&'a str, &'static str, bool)>> {
    let Some(value) = body.value("video_list") else {
        return Ok(None);
    };
    let items = value.as_array().ok_or_else(|| {
        UnifiedError::invalid("video_list", "video_list must be an array of video objects")
    })?;
    if items.len() > 1 {
        return Err(UnifiedError::unsupported(
            Some("video_list"),
            format!("video_list holds at most 1 video, got {}", items.len()),
        ));
    }
    let Some(item) = items.first() else {
        return Ok(None);
    };
    let item = item
        .as_object()
        .ok_or_else(|| UnifiedError::invalid("video_list[0]", "video_list[0] must be an object"))?;
    let url = match item.get("video_url") {
        Some(Value::String(s)) if !s.is_empty() => s.as_str(),
        None | Some(Value::Null) | Some(Value::String(_)) => {
            return Err(UnifiedError::missing(
                "video_list[0].video_url",
                "video_list[0].video_url is required and must not be empty",
            ))
        }
        Some(other) => {
            return Err(UnifiedError::invalid(
                "video_list[0].video_url",
                format!(
                    "video_list[0].video_url must be a URL, not {}",
                    describe(other)
                ),
            ))
        }
    };
    let choice = |key: &str, allowed: [&'static str; 2], default: &'static str| match item.get(key)
    {
        None | Some(Value::Null) => Ok(default),
        Some(Value::String(s)) if allowed.contains(&s.as_str()) => {
            Ok(allowed.into_iter().find(|a| a == s).unwrap_or(default))
        }
        Some(other) => {
            let param = format!("video_list[0].{key}");
            Err(UnifiedError::invalid(
                &param,
                format!(
                    "{param} must be {} or {}, not {}",
                    allowed[0],
                    allowed[1],
                    describe(other)
                ),
            ))
        }
    };
    let refer = choice("refer_type", ["base", "feature"], "base")?;
    let keep = choice("keep_original_sound", ["yes", "no"], "yes")? == "yes";
    Ok(Some((url, refer, keep)))
}

/// A `Kling-Video-O1` body after its model was read.
pub(super) fn parse_o1(mut body: Body<'_>) -> Result<ParsedSubmit> {
    let prompt = body.required_text("prompt", (1, PROMPT_CHARS), "")?;
    // Precedence (§6.5): a non-empty image_list wins, and the flat image fields are then
    // ignored entirely: not validated, counted or forwarded.
    let native = match body.value("image_list") {
        None => None,
        Some(Value::Array(items)) if items.is_empty() => None,
        Some(Value::Array(items)) => Some(items.as_slice()),
        Some(other) => {
            return Err(UnifiedError::invalid(
                "image_list",
                format!("image_list must be an array, not {}", describe(other)),
            ))
        }
    };
    let images = match native {
        Some(items) => {
            for flat in ["reference_images", "first_frame_url", "last_frame_url"] {
                body.value(flat);
            }
            native_images(items)?
        }
        None => flat_images(&mut body)?,
    };
    let elements = element_ids(&mut body)?;
    let video = video_list(&mut body)?;
    let mode = body.choice("mode", &["std", "pro"])?.unwrap_or("pro");
    let aspect = body.choice("aspect_ratio", &["16:9", "9:16", "1:1"])?;
    let seconds = body.seconds()?;
    if let Some(s) = seconds {
        let (lo, hi) = SECONDS_RANGE;
        if !(lo..=hi).contains(&s) {
            return Err(UnifiedError::invalid(
                "seconds",
                format!("seconds must be a whole number from {lo} to {hi}, not {s}"),
            ));
        }
    }
    let (callback_url, external_task_id) = common_fields(&mut body)?;

    // Step 7: the omni limits (§7.7).
    let image_param = if native.is_some() {
        "image_list"
    } else {
        "last_frame_url"
    };
    let shape = OmniShape::of(&images, elements.len(), video.map(|(_, refer, _)| refer));
    shape.check_lists(image_param, aspect.is_some())?;
    let duration = if shape.is_base_edit() {
        // A video edit lasts as long as its input; seconds is not forwarded.
        None
    } else {
        let s = seconds.unwrap_or(5);
        shape.check_five_or_ten("seconds", s)?;
        Some(s)
    };
    check_references(&prompt, images.len(), elements.len(), video.is_some())?;
    let media = omni_media(
        &images,
        video.map(|(url, _, _)| url),
        InlinePolicy::Base64OrDataUri,
    )?;
    let request = GenerationRequest {
        prompt,
        mode: Some(mode.to_owned()),
        aspect_ratio: aspect.map(str::to_owned),
        duration,
        extra: body.unknown(),
        ..GenerationRequest::default()
    };
    Ok(ParsedSubmit {
        dialect: Dialect::Unified,
        model_name: UnifiedModel::KlingVideoO1.upstream().to_owned(),
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

/// What the structural rules of §7.7 look at: how many images of each role, elements, and
/// the reference video's `refer_type`.
pub(crate) struct OmniShape {
    firsts: usize,
    ends: usize,
    references: usize,
    elements: usize,
    video: Option<&'static str>,
}

impl OmniShape {
    pub(crate) fn of(
        images: &[ListedImage<'_>],
        elements: usize,
        video: Option<&'static str>,
    ) -> Self {
        let count = |role: Role| images.iter().filter(|i| i.role == role).count();
        Self {
            firsts: count(Role::FirstFrame),
            ends: count(Role::EndFrame),
            references: count(Role::Reference),
            elements,
            video,
        }
    }

    fn images(&self) -> usize {
        self.firsts + self.ends + self.references
    }

    /// A video edit: the output takes the input video's length, so no duration applies.
    pub(crate) fn is_base_edit(&self) -> bool {
        self.video == Some("base")
    }

    /// Text only, or a first frame alone: the two requests limited to 5 or 10 s.
    pub(crate) fn is_text_or_first_frame_only(&self) -> bool {
        let bare = self.references == 0 && self.elements == 0 && self.video.is_none();
        bare && self.ends == 0 && self.firsts <= 1
    }

    /// Rules 1–7 of §7.7 and the `aspect_ratio` rule; `image_param` names the image field.
    pub(crate) fn check_lists(&self, image_param: &str, has_aspect: bool) -> Result<()> {
        let limit =
            |param: &str, message: String| Err(UnifiedError::unsupported(Some(param), message));
        if self.firsts > 1 || self.ends > 1 {
            return limit(
                image_param,
                "at most one first_frame and one end_frame image are allowed".to_owned(),
            );
        }
        if self.ends == 1 && self.firsts == 0 {
            return limit(
                image_param,
                "an end frame alone is not supported: it needs a first frame".to_owned(),
            );
        }
        if self.ends == 1 && self.images() > 2 {
            return limit(
                image_param,
                format!(
                    "with more than 2 images no end frame is allowed, got {} images",
                    self.images()
                ),
            );
        }
        let cap = if self.video.is_some() {
            MAX_IMAGES_AND_ELEMENTS_WITH_VIDEO
        } else {
            MAX_IMAGES_AND_ELEMENTS
        };
        if self.images() + self.elements > cap {
            return limit(
                "element_list",
                format!(
                    "images plus elements may be at most {cap}{}, got {} + {}",
                    if self.video.is_some() {
                        " with a reference video"
                    } else {
                        ""
                    },
                    self.images(),
                    self.elements
                ),
            );
        }
        if self.is_base_edit() && self.firsts + self.ends > 0 {
            return limit(
                "video_list[0].refer_type",
                "a video edit (refer_type base) cannot have a first or last frame".to_owned(),
            );
        }
        if self.firsts == 1 && self.elements > MAX_ELEMENTS_WITH_FIRST_FRAME {
            return limit(
                "element_list",
                format!(
                    "with a first frame at most {MAX_ELEMENTS_WITH_FIRST_FRAME} elements are allowed, got {}",
                    self.elements
                ),
            );
        }
        if has_aspect && (self.firsts == 1 || self.is_base_edit()) {
            return limit(
                "aspect_ratio",
                "aspect_ratio must be absent with a first frame or a video edit: the output \
                 follows the frame or the video"
                    .to_owned(),
            );
        }
        if !has_aspect && self.firsts == 0 && self.video.is_none() {
            return Err(UnifiedError::missing(
                "aspect_ratio",
                "aspect_ratio is required without a first frame or a reference video",
            ));
        }
        Ok(())
    }

    /// Text-only and first-frame-only requests last 5 or 10 s (seed 004).
    pub(crate) fn check_five_or_ten(&self, param: &str, seconds: u32) -> Result<()> {
        if self.is_text_or_first_frame_only() && seconds != 5 && seconds != 10 {
            return Err(UnifiedError::unsupported(
                Some(param),
                format!(
                    "{param} must be 5 or 10 for {}, not {seconds}",
                    if self.firsts == 0 {
                        "text-to-video"
                    } else {
                        "a first frame alone"
                    }
                ),
            ));
        }
        Ok(())
    }
}

/// The inputs to stage: images in list order (reference images numbered among themselves),
/// then the reference video.
pub(crate) fn omni_media(
    images: &[ListedImage<'_>],
    video_url: Option<&str>,
    policy: InlinePolicy,
) -> Result<Vec<PendingMedia>> {
    let mut media: Vec<PendingMedia> = Vec::with_capacity(images.len() + 1);
    let mut reference_index = 0;
    for image in images {
        let slot = match image.role {
            Role::FirstFrame => MediaSlot::Image,
            Role::EndFrame => MediaSlot::ImageTail,
            Role::Reference => {
                reference_index += 1;
                MediaSlot::ReferenceImage(reference_index - 1)
            }
        };
        media.push(pending(&image.param, image.value, slot, policy)?);
    }
    if let Some(url) = video_url {
        media.push(pending(
            "video_list[0].video_url",
            url,
            MediaSlot::ReferenceVideo,
            InlinePolicy::UrlOnly,
        )?);
    }
    Ok(media)
}

/// `<<<image_N>>>`, `<<<element_N>>>` and `<<<video_1>>>` point into their lists (§7.7).
pub(crate) fn check_references(
    prompt: &str,
    images: usize,
    elements: usize,
    video: bool,
) -> Result<()> {
    let out_of = |name: &str, len: usize| {
        prompt_tags(prompt, name)
            .into_iter()
            .find(|n| *n == 0 || *n > len as u64)
    };
    let refuse = |tag: String, why: String| {
        Err(UnifiedError::unsupported(
            Some("prompt"),
            format!("{tag} in the prompt {why}"),
        ))
    };
    if let Some(n) = out_of("image", images) {
        return refuse(
            format!("<<<image_{n}>>>"),
            format!("refers past the image list ({images} images)"),
        );
    }
    if let Some(n) = out_of("element", elements) {
        return refuse(
            format!("<<<element_{n}>>>"),
            format!("refers past element_list ({elements} elements)"),
        );
    }
    if let Some(n) = out_of("video", usize::from(video)) {
        return refuse(
            format!("<<<video_{n}>>>"),
            if video && n != 1 {
                "is not allowed: only <<<video_1>>> exists".to_owned()
            } else {
                "needs a video in video_list".to_owned()
            },
        );
    }
    Ok(())
}
