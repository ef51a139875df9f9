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
use kinora_media::{MediaError, MediaErrorKind};
use kinora_render::portrait::element_portrait;
use kinora_storage::{keys, ObjectStorage};
use kinora_store::{Element, ElementImage, NewElement, Store, MAX_ELEMENT_ID};
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
    /// (request field, URL or Base64) of the front view.
    pub frontal_image: (String, String),
    /// (request field, URL or Base64) of each other view.
    pub refer_images: Vec<(String, String)>,
    /// Known tag ids.
    pub tags: Vec<String>,
    /// What the dialect accepts besides URLs.
    pub inline: InlinePolicy,
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
    // 2^53 - 2^40 free ids: a collision is drawn again, and a second one means a broken store.
    for _ in 0..3 {
        let id = rand::rng().random_range(FIRST_CUSTOM_ID..=MAX_ELEMENT_ID);
        let created = stage_and_store(services, account, id, &input).await;
        if !matches!(created, Ok(Some(_))) {
            if let Err(e) = services.stager.discard_element(id).await {
                warn!(element = id, error = %e, "could not remove the images of a refused element");
            }
        }
        if let Some(element) = created? {
            return Ok(element);
        }
    }
    Err(ElementError::Internal(
        "no free element id after three draws".to_owned(),
    ))
}

async fn stage_and_store(
    services: &Services,
    account: AccountId,
    id: i64,
    input: &CustomElementInput,
) -> Result<Option<Element>, ElementError> {
    let views = std::iter::once(&input.frontal_image).chain(&input.refer_images);
    let staged = futures::future::try_join_all(views.enumerate().map(|(view, (field, value))| {
        let name = view_name(u32::try_from(view).unwrap_or(u32::MAX));
        async move {
            let staged = services
                .stager
                .element_image(id, &name, field, value, input.inline, ImageRules::STANDARD)
                .await
                .map_err(image_error)?;
            let source_url = match MediaSource::parse(field, value, input.inline) {
                Ok(MediaSource::Url(url)) => Some(url),
                _ => None,
            };
            Ok::<_, ElementError>(ElementImage {
                key: staged.key,
                source_url,
            })
        }
    }))
    .await?;
    let mut images = staged.into_iter();
    let frontal_image = images
        .next()
        .ok_or_else(|| ElementError::Internal("no front view staged".to_owned()))?;
    let created = services
        .store
        .create_element(NewElement {
            id,
            account_id: Some(account),
            name: input.name.clone(),
            description: input.description.clone(),
            frontal_image,
            refer_images: images.collect(),
            tags: input.tags.clone(),
        })
        .await;
    match created {
        Ok(Some(element)) => Ok(Some(element)),
        Ok(None) => Err(ElementError::Internal(format!(
            "element {id} was not stored"
        ))),
        // The id is taken: the caller draws another.
        Err(e) if e.code() == ErrorCode::InvalidInput => Ok(None),
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
