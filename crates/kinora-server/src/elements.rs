//! Elements (reusable subjects for omni requests), shared by every dialect: the built-in preset
//! library, creating and deleting an account's custom elements with their images staged into
//! kinora's storage, and resolving the elements a task names into inputs of that task.
//!
//! A task gets its own copy of each element's front view when it is submitted, so deleting or
//! replacing the element later never changes (or breaks) a task already accepted.

use std::sync::OnceLock;

use bytes::Bytes;
use kinora_core::request::{ElementRef, MediaRef};
use kinora_core::{AccountId, Error, ErrorCode, TaskId};
use kinora_media::image::ImageRules;
use kinora_media::source::{InlinePolicy, MediaSource};
use kinora_media::video::{VideoRules, ELEMENT_REFERENCE_MAX_BYTES};
use kinora_media::{MediaError, MediaErrorKind};
use kinora_render::portrait::{element_portrait, video_still};
use kinora_render::RenderError;
use kinora_storage::{keys, ObjectStorage};
use kinora_store::{
    Element, ElementCreation, ElementImage, NewElement, ReferenceType, Store, MAX_ELEMENT_ID,
};
use rand::Rng;
use tracing::{info, warn};

use crate::Services;

/// The tag table: id, English name, original label.
pub const TAGS: [(&str, &str, &str); 8] = [
    ("o_101", "hottest", "热梗"),
    ("o_102", "character", "人物"),
    ("o_103", "animal", "动物"),
    ("o_104", "item", "道具"),
    ("o_105", "costume", "服饰"),
    ("o_106", "scene", "场景"),
    ("o_107", "effect", "特效"),
    ("o_108", "others", "其他"),
];

/// The English name and original label of tag `id`.
pub fn tag(id: &str) -> Option<(&'static str, &'static str)> {
    TAGS.iter()
        .find(|(tag, _, _)| *tag == id)
        .map(|(_, name, label)| (*name, *label))
}

/// A preset of the built-in library.
pub struct Preset {
    pub id: i64,
    pub name: &'static str,
    pub description: &'static str,
    pub tags: &'static [&'static str],
    /// Views besides the front one.
    pub other_views: u32,
}

/// The built-in presets. 145, 146 and 12345 are the ids the published request examples use, so
/// those examples run as written. Custom ids are drawn at or above [`FIRST_CUSTOM_ID`], so the
/// two ranges never meet.
pub const PRESETS: [Preset; 8] = [
    Preset {
        id: 141,
        name: "Astronaut",
        description: "An astronaut in a white suit on a grey moon plain",
        tags: &["o_102"],
        other_views: 1,
    },
    Preset {
        id: 142,
        name: "Corgi",
        description: "A golden corgi with a red collar",
        tags: &["o_103"],
        other_views: 1,
    },
    Preset {
        id: 143,
        name: "Lantern",
        description: "An orange paper lantern glowing at dusk",
        tags: &["o_104"],
        other_views: 1,
    },
    Preset {
        id: 144,
        name: "Kimono",
        description: "A purple silk kimono with a gold sash",
        tags: &["o_105"],
        other_views: 1,
    },
    Preset {
        id: 145,
        name: "Dancer",
        description: "A street dancer in a yellow jacket",
        tags: &["o_102", "o_101"],
        other_views: 2,
    },
    Preset {
        id: 146,
        name: "Knight",
        description: "Armoured knight in silver plate with a blue cloak",
        tags: &["o_102"],
        other_views: 2,
    },
    Preset {
        id: 147,
        name: "Neon alley",
        description: "A narrow pink neon alley at night in the rain",
        tags: &["o_106"],
        other_views: 1,
    },
    Preset {
        id: 12345,
        name: "Traveller",
        description: "A traveller with a green backpack and a map",
        tags: &["o_102"],
        other_views: 2,
    },
];

/// Smallest id a custom element is given.
pub const FIRST_CUSTOM_ID: i64 = 1 << 40;

/// The file name of view `view` (0 = front) of an element.
fn view_name(view: u32) -> String {
    if view == 0 {
        "front".to_owned()
    } else {
        format!("refer_{view}")
    }
}

/// Every preset's views as JPEGs, drawn once per process.
fn preset_pictures() -> &'static Result<Vec<Vec<Vec<u8>>>, String> {
    static PICTURES: OnceLock<Result<Vec<Vec<Vec<u8>>>, String>> = OnceLock::new();
    PICTURES.get_or_init(|| {
        PRESETS
            .iter()
            .map(|p| {
                (0..=p.other_views)
                    .map(|view| element_portrait(p.name, p.description, view))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("preset {}: {e}", p.id))
            })
            .collect()
    })
}

/// Stores the preset library where it is missing: the pictures first, then the element, so a
/// preset is never visible without its images. Safe to run on every start and from several
/// processes at once.
pub async fn install_presets(store: &dyn Store, storage: &ObjectStorage) -> Result<(), Error> {
    let stored = store.list_elements(None, 1, 500).await?;
    let missing: Vec<&Preset> = PRESETS
        .iter()
        .filter(|p| !stored.iter().any(|e| e.id == p.id))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let pictures = tokio::task::spawn_blocking(preset_pictures)
        .await
        .map_err(|e| Error::internal(format!("drawing the preset pictures: {e}")))?
        .as_ref()
        .map_err(|e| Error::internal(e.clone()))?;
    for preset in missing {
        let Some(index) = PRESETS.iter().position(|p| p.id == preset.id) else {
            continue;
        };
        let mut images = Vec::new();
        for (view, jpeg) in (0u32..).zip(&pictures[index]) {
            let key = keys::element_file(preset.id, &format!("{}.jpg", view_name(view)))?;
            storage.put_bytes(&key, Bytes::from(jpeg.clone())).await?;
            images.push(ElementImage {
                key: key.into_string(),
                source_url: None,
            });
        }
        let frontal_image = images.remove(0);
        store
            .create_element(NewElement {
                id: preset.id,
                account_id: None,
                name: preset.name.to_owned(),
                description: preset.description.to_owned(),
                frontal_image,
                refer_images: images,
                tags: preset.tags.iter().map(|t| (*t).to_owned()).collect(),
                reference_type: ReferenceType::ImageRefer,
                refer_video: None,
                voice_id: None,
                creation: None,
            })
            .await?;
    }
    info!("preset elements installed");
    Ok(())
}

/// A custom element as a client asked for it; the dialect has checked the text fields.
#[derive(Debug)]
pub struct CustomElementInput {
    pub name: String,
    pub description: String,
    pub views: ElementViews,
    /// Known tag ids.
    pub tags: Vec<String>,
    /// What the dialect accepts besides URLs.
    pub inline: InlinePolicy,
    /// A voice bound to the element (clip elements only).
    pub voice_id: Option<String>,
    /// For the task-based API: the creation task's external id and callback URL.
    pub creation: Option<CreationRequest>,
}

/// What an element is described by; each input is (request field, value as sent).
#[derive(Debug)]
pub enum ElementViews {
    /// A front view (URL or Base64) and 1-3 other views.
    Images {
        frontal: (String, String),
        others: Vec<(String, String)>,
    },
    /// A clip URL: 3-8 s of 1080p, 16:9 or 9:16. Its first picture becomes the front view.
    Video((String, String)),
}

/// The task fields of a task-based element creation.
#[derive(Debug, Default)]
pub struct CreationRequest {
    pub external_task_id: Option<String>,
    pub callback_url: Option<String>,
}

/// Why an element operation was refused.
#[derive(Debug)]
pub enum ElementError {
    /// An image was refused: the field and the reason.
    Image { field: String, message: String },
    /// No such element visible to the caller.
    NotFound(i64),
    /// Presets belong to everyone and cannot be deleted.
    Preset(i64),
    /// The account already used this external task id for another element task.
    DuplicateExternalTaskId(String),
    /// A fault of the server or its storage.
    Internal(String),
}

impl From<Error> for ElementError {
    fn from(e: Error) -> Self {
        Self::Internal(e.message().to_owned())
    }
}

fn image_error(e: MediaError) -> ElementError {
    if e.kind == MediaErrorKind::DataUriRefused {
        // Kling's own words, which clients of the official dialect may match on.
        ElementError::Image {
            field: e.field.clone(),
            message: e.detail.clone(),
        }
    } else if e.kind.is_client_error() {
        ElementError::Image {
            field: e.field.clone(),
            message: e.to_string(),
        }
    } else {
        ElementError::Internal(e.to_string())
    }
}

/// Stages the images and stores a new custom element of `account`.
pub async fn create_custom(
    services: &Services,
    account: AccountId,
    input: CustomElementInput,
) -> Result<Element, ElementError> {
    // 2^53 - 2^40 ids: an id in use is drawn again, and three in a row mean a broken store.
    // Its images live under the id, so an id in use (any account's, even a deleted element's)
    // is never staged into: that would overwrite, then discard, another element's images.
    for _ in 0..3 {
        let id = rand::rng().random_range(FIRST_CUSTOM_ID..=MAX_ELEMENT_ID);
        if services.store.element_id_in_use(id).await? {
            continue;
        }
        let created = stage_and_store(services, account, id, &input).await;
        match created {
            Ok(Some(element)) => return Ok(element),
            // Another create took the id between the check and the insert (two draws of one
            // id in the same instant): discarding now would delete that element's images.
            Ok(None) => continue,
            Err(e) => {
                if let Err(discard) = services.stager.discard_element(id).await {
                    warn!(element = id, error = %discard, "could not remove the images of a refused element");
                }
                return Err(e);
            }
        }
    }
    Err(ElementError::Internal(
        "no free element id after three draws".to_owned(),
    ))
}

/// The clip frame a video element's picture must have: 1080p, landscape or portrait.
const CLIP_FRAMES: [(u32, u32); 2] = [(1920, 1080), (1080, 1920)];

async fn stage_image(
    services: &Services,
    id: i64,
    view: usize,
    (field, value): &(String, String),
    inline: InlinePolicy,
) -> Result<ElementImage, ElementError> {
    let name = view_name(u32::try_from(view).unwrap_or(u32::MAX));
    let staged = services
        .stager
        .element_image(id, &name, field, value, inline, ImageRules::STANDARD)
        .await
        .map_err(image_error)?;
    Ok(ElementImage {
        key: staged.key,
        source_url: source_url(field, value, inline),
    })
}

fn source_url(field: &str, value: &str, inline: InlinePolicy) -> Option<String> {
    match MediaSource::parse(field, value, inline) {
        Ok(MediaSource::Url(url)) => Some(url),
        _ => None,
    }
}

/// Stages the clip of a video element and draws its front view from the first picture.
async fn stage_clip(
    services: &Services,
    id: i64,
    (field, value): &(String, String),
) -> Result<(ElementImage, ElementImage), ElementError> {
    let staged = services
        .stager
        .element_video(
            id,
            "refer_video",
            field,
            value,
            ELEMENT_REFERENCE_MAX_BYTES,
            &VideoRules::element_reference(),
        )
        .await
        .map_err(image_error)?;
    if !CLIP_FRAMES.contains(&(staged.width, staged.height)) {
        return Err(ElementError::Image {
            field: field.clone(),
            message: format!(
                "{field}: the clip is {}x{}; it must be 1080p at 16:9 (1920x1080) or 9:16 (1080x1920)",
                staged.width, staged.height
            ),
        });
    }
    let key = kinora_storage::ObjectKey::parse(&staged.key)?;
    let clip = services.storage.get_bytes(&key).await?;
    let field_name = field.clone();
    let still = tokio::task::spawn_blocking(move || video_still(&clip))
        .await
        .map_err(|e| ElementError::Internal(format!("clip still: {e}")))?
        .map_err(|e| match e {
            RenderError::Client(message) => ElementError::Image {
                field: field_name.clone(),
                message: format!("{field_name}: {message}"),
            },
            other => ElementError::Internal(other.to_string()),
        })?;
    let front = keys::element_file(id, &format!("{}.jpg", view_name(0)))?;
    services
        .storage
        .put_bytes(&front, Bytes::from(still))
        .await?;
    Ok((
        ElementImage {
            key: front.into_string(),
            source_url: None,
        },
        ElementImage {
            key: staged.key,
            source_url: source_url(field, value, InlinePolicy::UrlOnly),
        },
    ))
}

async fn stage_and_store(
    services: &Services,
    account: AccountId,
    id: i64,
    input: &CustomElementInput,
) -> Result<Option<Element>, ElementError> {
    let (reference_type, frontal_image, refer_images, refer_video) = match &input.views {
        ElementViews::Images { frontal, others } => {
            let views = std::iter::once(frontal).chain(others);
            let mut staged =
                futures::future::try_join_all(views.enumerate().map(|(view, input_view)| {
                    stage_image(services, id, view, input_view, input.inline)
                }))
                .await?
                .into_iter();
            let frontal_image = staged
                .next()
                .ok_or_else(|| ElementError::Internal("no front view staged".to_owned()))?;
            (
                ReferenceType::ImageRefer,
                frontal_image,
                staged.collect(),
                None,
            )
        }
        ElementViews::Video(clip) => {
            let (still, video) = stage_clip(services, id, clip).await?;
            (ReferenceType::VideoRefer, still, Vec::new(), Some(video))
        }
    };
    let created = services
        .store
        .create_element(NewElement {
            id,
            account_id: Some(account),
            name: input.name.clone(),
            description: input.description.clone(),
            frontal_image,
            refer_images,
            tags: input.tags.clone(),
            reference_type,
            refer_video,
            voice_id: input.voice_id.clone(),
            creation: input.creation.as_ref().map(|c| ElementCreation {
                task_id: TaskId::new(),
                external_task_id: c.external_task_id.clone(),
                callback_url: c.callback_url.clone(),
            }),
        })
        .await;
    match created {
        Ok(Some(element)) => Ok(Some(element)),
        Ok(None) => Err(ElementError::Internal(format!(
            "element {id} was not stored"
        ))),
        // The id is taken: the caller draws another.
        Err(e) if e.code() == ErrorCode::InvalidInput => Ok(None),
        Err(e) if e.code() == ErrorCode::DuplicateExternalTaskId => Err(
            ElementError::DuplicateExternalTaskId(e.message().to_owned()),
        ),
        Err(e) => Err(e.into()),
    }
}

/// Deletes one of the account's custom elements and its images.
pub async fn delete_custom(
    services: &Services,
    account: AccountId,
    id: i64,
) -> Result<(), ElementError> {
    match services.store.get_element(account, id).await? {
        None => return Err(ElementError::NotFound(id)),
        Some(element) if element.account_id.is_none() => return Err(ElementError::Preset(id)),
        Some(_) => {}
    }
    if !services.store.delete_element(account, id).await? {
        return Err(ElementError::NotFound(id));
    }
    // The row is gone first, so nothing can name the images any more; a failure here leaves
    // unreachable files, never a broken element.
    if let Err(e) = services.stager.discard_element(id).await {
        warn!(element = id, error = %e, "could not remove the images of a deleted element");
    }
    Ok(())
}

/// The elements a task names, each checked against what `account` may use and its front view
/// copied into the task's inputs (`element_{n}.{ext}`). `Err((index, error))` names the
/// offending list position.
pub async fn resolve_for_task(
    services: &Services,
    account: AccountId,
    task: &TaskId,
    ids: &[i64],
) -> Result<Vec<ElementRef>, (usize, ElementError)> {
    let mut resolved = Vec::with_capacity(ids.len());
    for (index, &id) in ids.iter().enumerate() {
        let at = |e: ElementError| (index, e);
        let element = services
            .store
            .get_element(account, id)
            .await
            .map_err(|e| at(e.into()))?
            .ok_or_else(|| at(ElementError::NotFound(id)))?;
        let source = kinora_storage::ObjectKey::parse(&element.frontal_image.key)
            .map_err(|e| at(e.into()))?;
        let bytes = services
            .storage
            .get_bytes(&source)
            .await
            .map_err(|e| at(e.into()))?;
        let extension = element
            .frontal_image
            .key
            .rsplit_once('.')
            .map_or("jpg", |(_, ext)| ext);
        let copy = keys::task_input(task, &format!("element_{}.{extension}", index + 1))
            .map_err(|e| at(e.into()))?;
        services
            .storage
            .put_bytes(&copy, bytes)
            .await
            .map_err(|e| at(e.into()))?;
        resolved.push(ElementRef {
            element_id: id.to_string(),
            frontal_image: MediaRef::new(copy.into_string()),
        });
    }
    Ok(resolved)
}
