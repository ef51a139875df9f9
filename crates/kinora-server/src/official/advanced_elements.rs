//! The task-based element API (§9.2): an element described by views (`image_refer`) or by a
//! clip (`video_refer`, optionally with a voice), created as a task clients query by task id
//! or external id. Elements live in the store every dialect shares.
//!
//! kinora stages and checks the inputs while the request is open, as every create endpoint
//! does, so the element exists when the answer is sent: the creation task is already
//! `succeed`, and the answer says so.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use kinora_core::{AccountId, TaskId};
use kinora_media::source::InlinePolicy;
use kinora_store::{Element, ReferenceType};
use serde_json::{json, Value};

use super::elements::element_error;
use super::error::OfficialError;
use super::fields::{common, from_unified, invalid, shared};
use super::http::{caller, json_body, parse_page, query_pairs, respond, MOUNTS};
use crate::elements::{self, CreationRequest, CustomElementInput, ElementViews};
use crate::files::FileUrls;
use crate::http::RequestId;
use crate::unified::elements::{
    element_object, image_value, objects_of, refuse_unread, tag_list, MAX_REFER_IMAGES,
};
use crate::unified::fields::{describe, Body};
use crate::unified::http::MAX_BODY_BYTES;
use crate::Services;

type Result<T> = std::result::Result<T, OfficialError>;

/// Longest element name and description (official docs).
const MAX_NAME_CHARS: usize = 20;
const MAX_DESCRIPTION_CHARS: usize = 100;

pub fn routes() -> Router<Arc<Services>> {
    let mut router = Router::new();
    for mount in MOUNTS {
        router = router
            .route(
                &format!("{mount}/v1/general/advanced-custom-elements"),
                get(list)
                    .post(create)
                    .fallback(super::http::method_not_allowed),
            )
            .route(
                &format!("{mount}/v1/general/advanced-custom-elements/{{id}}"),
                get(get_one).fallback(super::http::method_not_allowed),
            )
            .route(
                &format!("{mount}/v1/general/advanced-presets-elements"),
                get(presets).fallback(super::http::method_not_allowed),
            );
    }
    router.layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// Reads a create body (§9.2); every field not listed there is refused by name.
pub fn parse_create(value: &Value) -> Result<CustomElementInput> {
    let mut body = Body::new(value).map_err(from_unified)?;
    let name = shared(body.required_text("element_name", (1, MAX_NAME_CHARS), ""))?;
    let description =
        shared(body.required_text("element_description", (1, MAX_DESCRIPTION_CHARS), ""))?;
    let reference = shared(body.choice("reference_type", &["image_refer", "video_refer"]))?
        .ok_or_else(|| invalid("reference_type is required: image_refer or video_refer"))?;
    let images = body.value("element_image_list");
    let videos = body.value("element_video_list");
    let voice_id = match body.value("element_voice_id") {
        None => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) if n.is_u64() => Some(n.to_string()),
        Some(other) => {
            return Err(invalid(format!(
                "element_voice_id must be a string, not {}",
                describe(other)
            )))
        }
    };
    let tags = shared(tag_list(&mut body))?;
    let (callback_url, external_task_id) = common(&mut body)?;
    shared(refuse_unread(&body))?;

    let views = match reference {
        "image_refer" => {
            if videos.is_some() {
                return Err(invalid(
                    "element_video_list is only for reference_type video_refer",
                ));
            }
            if voice_id.is_some() {
                return Err(invalid(
                    "element_voice_id only works with reference_type video_refer",
                ));
            }
            image_views(images)?
        }
        _ => {
            if images.is_some() {
                return Err(invalid(
                    "element_image_list is only for reference_type image_refer",
                ));
            }
            clip_view(videos)?
        }
    };
    Ok(CustomElementInput {
        name,
        description,
        views,
        tags,
        inline: InlinePolicy::RawBase64Only,
        voice_id,
        creation: Some(CreationRequest {
            external_task_id,
            callback_url,
        }),
    })
}

/// `element_image_list`: `{frontal_image, refer_images: [{image_url}] (1-3)}`.
fn image_views(value: Option<&Value>) -> Result<ElementViews> {
    const P: &str = "element_image_list";
    let object = match value {
        Some(Value::Object(o)) => o,
        None => {
            return Err(invalid(
                "element_image_list is required for reference_type image_refer: \
                 {\"frontal_image\": ..., \"refer_images\": [{\"image_url\": ...}]}",
            ))
        }
        Some(other) => {
            return Err(invalid(format!(
                "{P} must be an object, not {}",
                describe(other)
            )))
        }
    };
    if let Some(key) = object
        .keys()
        .find(|k| *k != "frontal_image" && *k != "refer_images")
    {
        return Err(invalid(format!("{P}.{key} is not a field of {P}")));
    }
    let frontal_param = format!("{P}.frontal_image");
    let frontal = shared(image_value(&frontal_param, object.get("frontal_image")))?;
    let refer_param = format!("{P}.refer_images");
    let refer = match object.get("refer_images") {
        None | Some(Value::Null) => {
            return Err(invalid(format!(
                "{refer_param} is required: 1-{MAX_REFER_IMAGES} other views as [{{\"image_url\": ...}}]"
            )))
        }
        Some(v) => shared(objects_of(&refer_param, v, "image_url"))?,
    };
    if refer.is_empty() || refer.len() > MAX_REFER_IMAGES {
        return Err(invalid(format!(
            "{refer_param} must hold 1-{MAX_REFER_IMAGES} images, got {}",
            refer.len()
        )));
    }
    let others = refer
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let param = format!("{refer_param}[{i}].image_url");
            shared(image_value(&param, item)).map(|v| (param, v))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(ElementViews::Images {
        frontal: (frontal_param, frontal),
        others,
    })
}

/// `element_video_list`: `{refer_videos: [{video_url}]}` with exactly one clip.
fn clip_view(value: Option<&Value>) -> Result<ElementViews> {
    const P: &str = "element_video_list";
    let object = match value {
        Some(Value::Object(o)) => o,
        None => {
            return Err(invalid(
                "element_video_list is required for reference_type video_refer: \
                 {\"refer_videos\": [{\"video_url\": ...}]}",
            ))
        }
        Some(other) => {
            return Err(invalid(format!(
                "{P} must be an object, not {}",
                describe(other)
            )))
        }
    };
    if let Some(key) = object.keys().find(|k| *k != "refer_videos") {
        return Err(invalid(format!("{P}.{key} is not a field of {P}")));
    }
    let param = format!("{P}.refer_videos");
    let clips = match object.get("refer_videos") {
        None | Some(Value::Null) => {
            return Err(invalid(format!(
                "{param} is required: one clip as [{{\"video_url\": ...}}]"
            )))
        }
        Some(v) => shared(objects_of(&param, v, "video_url"))?,
    };
    if clips.len() != 1 {
        return Err(invalid(format!(
            "{param} must hold exactly 1 video, got {}",
            clips.len()
        )));
    }
    let url_param = format!("{param}[0].video_url");
    let url = shared(image_value(&url_param, clips[0]))?;
    Ok(ElementViews::Video((url_param, url)))
}

/// The element as this API shows it.
pub fn advanced_element(element: &Element, files: &FileUrls) -> Value {
    let plain = element_object(element, files);
    let images = match element.reference_type {
        ReferenceType::ImageRefer => json!({
            "frontal_image": plain["element_frontal_image"],
            "refer_images": plain["element_refer_list"],
        }),
        ReferenceType::VideoRefer => Value::Null,
    };
    let videos = match &element.refer_video {
        Some(video) => json!({"refer_videos": [{
            "video_url": video.source_url.clone().unwrap_or_else(|| files.element_url(&video.key)),
        }]}),
        None => Value::Null,
    };
    json!({
        "element_id": element.id,
        "element_name": element.name,
        "element_description": element.description,
        "reference_type": element.reference_type.as_str(),
        "element_image_list": images,
        "element_video_list": videos,
        "element_voice_info": element.voice_id.as_ref().map(|id| json!({"voice_id": id})),
        "tag_list": plain["tag_list"],
        "owned_by": plain["owned_by"],
    })
}

/// The creation task of a preset: a fixed id derived from the element id.
fn preset_task_id(element_id: i64) -> TaskId {
    TaskId::from_uuid(uuid::Uuid::from_u128(element_id.unsigned_abs().into()))
}

/// The task an element was created by, with the element as its result (§9.2).
pub fn element_task(element: &Element, files: &FileUrls) -> Value {
    let mut task = created_task(element);
    task["task_result"] = json!({"elements": [advanced_element(element, files)]});
    task
}

/// The create answer (§6.1 shape): the task, already finished.
pub fn created_task(element: &Element) -> Value {
    let (task_id, external) = match &element.creation {
        Some(c) => (c.task_id, c.external_task_id.clone()),
        None => (preset_task_id(element.id), None),
    };
    json!({
        "task_id": task_id.to_string(),
        "task_status": "succeed",
        "task_status_msg": "",
        "task_info": {"external_task_id": external.unwrap_or_default()},
        "created_at": element.created_at,
        "updated_at": element.created_at,
    })
}

async fn create(
    State(services): State<Arc<Services>>,
    request_id: RequestId,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let caller = caller(&services, &headers).await?;
        let value = json_body(body)?;
        let input = parse_create(&value)?;
        if let Some(url) = input.creation.as_ref().and_then(|c| c.callback_url.as_ref()) {
            services
                .stager
                .fetcher()
                .check_url("callback_url", url)
                .await
                .map_err(|e| invalid(e.to_string()))?;
        }
        if let Some(external) = input
            .creation
            .as_ref()
            .and_then(|c| c.external_task_id.as_deref())
        {
            if find(&services, caller.account, external, true)
                .await
                .is_ok()
            {
                return Err(invalid(format!(
                    "external_task_id `{external}` is already used by another element task of this account"
                )));
            }
        }
        let element = elements::create_custom(&services, caller.account, input)
            .await
            .map_err(element_error)?;
        Ok(created_task(&element))
    }
    .await;
    respond(request_id, result)
}

/// An element task of the account by task id, or failing that by external id; only by
/// external id when `external_only`.
async fn find(
    services: &Services,
    account: AccountId,
    id: &str,
    external_only: bool,
) -> Result<Element> {
    let store_error = |e: kinora_core::Error| OfficialError::internal(e.message().to_owned());
    if !external_only {
        if let Some(task_id) = TaskId::parse_any(id) {
            if let Some(element) = services
                .store
                .get_element_by_task(account, task_id)
                .await
                .map_err(store_error)?
            {
                return Ok(element);
            }
        }
    }
    services
        .store
        .find_element_by_external_task_id(account, id)
        .await
        .map_err(store_error)?
        .ok_or_else(|| OfficialError::not_found("task not found"))
}

async fn get_one(
    State(services): State<Arc<Services>>,
    request_id: RequestId,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let result = async {
        let caller = caller(&services, &headers).await?;
        let external_only = query_pairs(query.as_deref())
            .iter()
            .any(|(k, v)| k == "external_task_id" && v.eq_ignore_ascii_case("true"));
        let element = find(&services, caller.account, &id, external_only).await?;
        Ok(element_task(&element, &services.files))
    }
    .await;
    respond(request_id, result)
}

/// The account's element tasks, newest first; or one of them by `external_task_id=` or
/// `task_id=` (§6.3, §6.4).
async fn list(
    State(services): State<Arc<Services>>,
    request_id: RequestId,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let result = async {
        let caller = caller(&services, &headers).await?;
        let pairs = query_pairs(query.as_deref());
        let lookup = |name: &str| {
            pairs
                .iter()
                .find(|(k, v)| k == name && !v.is_empty())
                .map(|(_, v)| v.clone())
        };
        if let Some(external) = lookup("external_task_id") {
            let element = find(&services, caller.account, &external, true).await?;
            return Ok(element_task(&element, &services.files));
        }
        if let Some(id) = lookup("task_id") {
            let element = find(&services, caller.account, &id, false).await?;
            return Ok(element_task(&element, &services.files));
        }
        let (page, size) = parse_page(&pairs)?;
        let found = services
            .store
            .list_element_tasks(caller.account, page, size)
            .await
            .map_err(|e| OfficialError::internal(e.message().to_owned()))?;
        Ok(Value::Array(
            found
                .iter()
                .map(|e| element_task(e, &services.files))
                .collect(),
        ))
    }
    .await;
    respond(request_id, result)
}

/// The presets as finished element tasks, as clients of the newer API read them.
async fn presets(
    State(services): State<Arc<Services>>,
    request_id: RequestId,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let result = async {
        caller(&services, &headers).await?;
        let (page, size) = parse_page(&query_pairs(query.as_deref()))?;
        let found = services
            .store
            .list_elements(None, page, size)
            .await
            .map_err(|e| OfficialError::internal(e.message().to_owned()))?;
        Ok(Value::Array(
            found
                .iter()
                .map(|e| element_task(e, &services.files))
                .collect(),
        ))
    }
    .await;
    respond(request_id, result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image_body() -> Value {
        json!({
            "element_name": "Red fox",
            "element_description": "A red fox in snow",
            "reference_type": "image_refer",
            "element_image_list": {"frontal_image": "https://e.com/front.png", "refer_images": [{"image_url": "https://e.com/side.png"}]},
            "tag_list": [{"tag_id": "o_103"}],
            "external_task_id": "fox-1",
        })
    }

    fn with(mut body: Value, key: &str, value: Value) -> Value {
        body[key] = value;
        body
    }

    fn refusal(body: Value) -> String {
        match parse_create(&body) {
            Err(e) => {
                assert_eq!((e.code, e.status.as_u16()), (1201, 400), "{body}");
                e.message
            }
            Ok(_) => panic!("{body} was accepted"),
        }
    }

    #[test]
    fn both_reference_types_are_read() {
        let input = parse_create(&image_body()).expect("image element");
        assert!(matches!(&input.views, ElementViews::Images { others, .. } if others.len() == 1));
        assert_eq!(input.tags, ["o_103"]);
        assert_eq!(
            input.creation.and_then(|c| c.external_task_id).as_deref(),
            Some("fox-1")
        );
        let clip = json!({
            "element_name": "Dancer",
            "element_description": "A dancer turning",
            "reference_type": "video_refer",
            "element_video_list": {"refer_videos": [{"video_url": "https://e.com/d.mp4"}]},
            "element_voice_id": "v-1",
        });
        let input = parse_create(&clip).expect("clip element");
        assert!(
            matches!(&input.views, ElementViews::Video((field, url)) if field == "element_video_list.refer_videos[0].video_url" && url == "https://e.com/d.mp4")
        );
        assert_eq!(input.voice_id.as_deref(), Some("v-1"));
    }

    #[test]
    fn every_rule_is_named() {
        let clip = json!({"refer_videos": [{"video_url": "https://e.com/d.mp4"}]});
        let cases = [
            (
                with(image_body(), "element_name", json!("x".repeat(21))),
                "element_name",
            ),
            (
                with(image_body(), "element_description", json!("")),
                "element_description",
            ),
            (
                with(image_body(), "reference_type", Value::Null),
                "reference_type is required: image_refer or video_refer",
            ),
            (
                with(image_body(), "reference_type", json!("audio_refer")),
                "reference_type must be one of image_refer, video_refer",
            ),
            (
                with(image_body(), "element_image_list", Value::Null),
                "element_image_list is required for reference_type image_refer",
            ),
            (
                with(image_body(), "element_video_list", clip.clone()),
                "element_video_list is only for reference_type video_refer",
            ),
            (
                with(image_body(), "element_voice_id", json!("v")),
                "element_voice_id only works with reference_type video_refer",
            ),
            (
                with(
                    image_body(),
                    "element_image_list",
                    json!({"frontal_image": "https://e.com/f.png", "refer_images": []}),
                ),
                "element_image_list.refer_images must hold 1-3 images, got 0",
            ),
            (
                with(
                    image_body(),
                    "element_image_list",
                    json!({"refer_images": [{"image_url": "https://e.com/s.png"}]}),
                ),
                "element_image_list.frontal_image is required",
            ),
            (
                with(image_body(), "tag_list", json!([{"tag_id": "o_999"}])),
                "tag_list[0].tag_id must be one of",
            ),
            (
                with(image_body(), "style", json!(1)),
                "style is not a field of this endpoint",
            ),
            (
                with(
                    with(image_body(), "reference_type", json!("video_refer")),
                    "element_image_list",
                    Value::Null,
                ),
                "element_video_list is required for reference_type video_refer",
            ),
            (
                with(
                    with(
                        with(image_body(), "reference_type", json!("video_refer")),
                        "element_image_list",
                        Value::Null,
                    ),
                    "element_video_list",
                    json!({"refer_videos": [{"video_url": "https://e.com/a.mp4"}, {"video_url": "https://e.com/b.mp4"}]}),
                ),
                "element_video_list.refer_videos must hold exactly 1 video, got 2",
            ),
            (
                with(image_body(), "callback_url", json!("ftp://e.com/hook")),
                "callback_url",
            ),
        ];
        for (body, wanted) in cases {
            let message = refusal(body.clone());
            assert!(message.contains(wanted), "{body}: {message}");
        }
    }
}
