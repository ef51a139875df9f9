//! The element endpoints of the unified dialect (§10): create, list (custom and presets) and
//! delete. Success bodies use the Kling-style envelope; refusals the dialect's error body.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kinora_media::source::InlinePolicy;
use kinora_store::{Element, ElementImage};
use serde_json::{json, Value};

use super::error::UnifiedError;
use super::fields::{describe, Body};
use super::http::MAX_BODY_BYTES;
use crate::auth::Caller;
use crate::elements::{self, CustomElementInput, ElementError, ElementViews};
use crate::files::FileUrls;
use crate::http::RequestId;
use crate::Services;

type Result<T> = std::result::Result<T, UnifiedError>;

/// Most other views an element may have (§10.1).
pub(crate) const MAX_REFER_IMAGES: usize = 3;

pub fn routes() -> Router<Arc<Services>> {
    Router::new()
        .route(
            "/v1/elements/custom",
            post(create_element)
                .get(list_custom)
                .fallback(method_not_allowed),
        )
        .route(
            "/v1/elements/presets",
            get(list_presets).fallback(method_not_allowed),
        )
        .route(
            "/v1/elements/delete",
            post(delete_element).fallback(method_not_allowed),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

async fn method_not_allowed() -> Response {
    UnifiedError::method_not_allowed().into_response()
}

async fn caller(services: &Services, headers: &HeaderMap) -> Result<Caller> {
    services
        .authenticate(headers.get(header::AUTHORIZATION))
        .await
        .map_err(|e| UnifiedError::internal(e.message().to_owned()))?
        .map_err(UnifiedError::from)
}

/// The success envelope of the element endpoints.
pub fn envelope(request_id: impl std::fmt::Display, data: Value) -> Value {
    json!({"code": 0, "message": "SUCCEED", "request_id": request_id.to_string(), "data": data})
}

fn image_url(image: &ElementImage, files: &FileUrls) -> String {
    image
        .source_url
        .clone()
        .unwrap_or_else(|| files.element_url(&image.key))
}

/// The element object (§10.1): images as sent when they were URLs, otherwise kinora's own URL.
pub fn element_object(element: &Element, files: &FileUrls) -> Value {
    let tags: Vec<Value> = element
        .tags
        .iter()
        .map(|id| {
            let (name, description) = elements::tag(id).unwrap_or(("others", ""));
            json!({"id": id, "name": name, "description": description})
        })
        .collect();
    json!({
        "element_id": element.id,
        "element_name": element.name,
        "element_description": element.description,
        "element_frontal_image": image_url(&element.frontal_image, files),
        "element_refer_list": element
            .refer_images
            .iter()
            .map(|image| json!({"image_url": image_url(image, files)}))
            .collect::<Vec<_>>(),
        "tag_list": tags,
        "owned_by": if element.account_id.is_some() { "user" } else { "kling" },
    })
}

fn read_json(body: std::result::Result<Bytes, BytesRejection>) -> Result<Value> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            UnifiedError::request_too_large(MAX_BODY_BYTES)
        } else {
            UnifiedError::invalid_json(format!("the request body could not be read: {rejection}"))
        }
    })?;
    serde_json::from_slice(&body)
        .map_err(|e| UnifiedError::invalid_json(format!("the request body is not JSON: {e}")))
}

pub(crate) fn refuse_unread(body: &Body<'_>) -> Result<()> {
    match body.first_unread() {
        Some(key) => Err(UnifiedError::invalid(
            key,
            format!("{key} is not a field of this endpoint"),
        )),
        None => Ok(()),
    }
}

/// An image field: a non-empty string (URL or Base64; staging checks the rest).
pub(crate) fn image_value(param: &str, value: Option<&Value>) -> Result<String> {
    match value {
        None | Some(Value::Null) => {
            Err(UnifiedError::missing(param, format!("{param} is required")))
        }
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(other) => Err(UnifiedError::invalid(
            param,
            format!(
                "{param} must be an image URL or Base64 text, not {}",
                describe(other)
            ),
        )),
    }
}

/// Reads the items of an array of one-key objects such as `[{"image_url": ...}]`.
pub(crate) fn objects_of<'a>(
    param: &str,
    value: &'a Value,
    key: &str,
) -> Result<Vec<Option<&'a Value>>> {
    let shape = || {
        UnifiedError::invalid(
            param,
            format!("{param} must be an array of {{\"{key}\": ...}} objects"),
        )
    };
    let items = value.as_array().ok_or_else(shape)?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let object = item.as_object().ok_or_else(shape)?;
            if let Some(other) = object.keys().find(|k| *k != key) {
                let at = format!("{param}[{i}].{other}");
                return Err(UnifiedError::invalid(
                    &at,
                    format!("{at} is not a field of {param} items"),
                ));
            }
            Ok(object.get(key))
        })
        .collect()
}

/// Longest element name in this dialect (the official one allows 20).
pub const MAX_NAME_CHARS: usize = 10;

/// The checks of §10.1 on a create body.
pub fn parse_create(value: &Value) -> Result<CustomElementInput> {
    parse_create_as(value, MAX_NAME_CHARS, InlinePolicy::Base64OrDataUri)
}

/// The create checks with a dialect's own name limit and image policy.
pub fn parse_create_as(
    value: &Value,
    max_name_chars: usize,
    inline: InlinePolicy,
) -> Result<CustomElementInput> {
    let mut body = Body::new(value)?;
    let name = body.required_text("element_name", (1, max_name_chars), "")?;
    let description = body.required_text("element_description", (1, 100), "")?;
    let frontal = image_value("element_frontal_image", body.value("element_frontal_image"))?;
    let refer_value = body.value("element_refer_list").ok_or_else(|| {
        UnifiedError::missing(
            "element_refer_list",
            "element_refer_list is required: 1-3 other views as [{\"image_url\": ...}]",
        )
    })?;
    let refer = objects_of("element_refer_list", refer_value, "image_url")?;
    if refer.is_empty() || refer.len() > MAX_REFER_IMAGES {
        return Err(UnifiedError::invalid(
            "element_refer_list",
            format!(
                "element_refer_list must hold 1-{MAX_REFER_IMAGES} images, got {}",
                refer.len()
            ),
        ));
    }
    let refer_images = refer
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let param = format!("element_refer_list[{i}].image_url");
            image_value(&param, item).map(|v| (param, v))
        })
        .collect::<Result<Vec<_>>>()?;
    let tags = tag_list(&mut body)?;
    refuse_unread(&body)?;
    Ok(CustomElementInput {
        name,
        description,
        views: ElementViews::Images {
            frontal: ("element_frontal_image".to_owned(), frontal),
            others: refer_images,
        },
        tags,
        inline,
        voice_id: None,
        creation: None,
    })
}

/// `tag_list`: `[{"tag_id": "o_101"}]` items of the tag table, duplicates dropped.
pub(crate) fn tag_list(body: &mut Body<'_>) -> Result<Vec<String>> {
    let mut tags: Vec<String> = Vec::new();
    if let Some(tag_value) = body.value("tag_list") {
        for (i, item) in objects_of("tag_list", tag_value, "tag_id")?
            .into_iter()
            .enumerate()
        {
            let param = format!("tag_list[{i}].tag_id");
            let id = match item {
                Some(Value::String(id)) if elements::tag(id).is_some() => id.clone(),
                None | Some(Value::Null) => {
                    return Err(UnifiedError::missing(
                        &param,
                        format!("{param} is required"),
                    ))
                }
                Some(other) => {
                    let known: Vec<&str> = elements::TAGS.iter().map(|(id, _, _)| *id).collect();
                    return Err(UnifiedError::invalid(
                        &param,
                        format!(
                            "{param} must be one of {}, not {}",
                            known.join(", "),
                            describe(other)
                        ),
                    ));
                }
            };
            if !tags.contains(&id) {
                tags.push(id);
            }
        }
    }
    Ok(tags)
}

fn element_error(e: ElementError) -> UnifiedError {
    match e {
        ElementError::Image { field, message } => UnifiedError::invalid(&field, message),
        ElementError::NotFound(id) => UnifiedError::element_not_found(&id.to_string()),
        ElementError::Preset(_) => {
            UnifiedError::invalid("element_id", "only custom elements can be deleted")
        }
        ElementError::DuplicateExternalTaskId(message) => {
            UnifiedError::invalid("external_task_id", message)
        }
        ElementError::Internal(message) => UnifiedError::internal(message),
    }
}

/// `POST /v1/elements/custom`.
async fn create_element(
    State(services): State<Arc<Services>>,
    request_id: RequestId,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Json<Value>> {
    let caller = caller(&services, &headers).await?;
    let input = parse_create(&read_json(body)?)?;
    let element = elements::create_custom(&services, caller.account, input)
        .await
        .map_err(element_error)?;
    Ok(Json(envelope(
        request_id,
        element_object(&element, &services.files),
    )))
}

/// `page_num` (1–1000, default 1) and `page_size` (1–500, default 30) of a list query (§10.2).
pub fn parse_page(query: Option<&str>) -> Result<(u32, u32)> {
    let (mut page, mut size) = (1, 30);
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let (slot, max) = match key.as_ref() {
            "page_num" => (&mut page, 1000),
            "page_size" => (&mut size, 500),
            other => {
                return Err(UnifiedError::invalid(
                    other,
                    format!(
                    "{other} is not a query parameter of this endpoint; use page_num and page_size"
                ),
                ))
            }
        };
        *slot = value
            .parse::<u32>()
            .ok()
            .filter(|v| (1..=max).contains(v))
            .ok_or_else(|| {
                UnifiedError::invalid(
                    &key,
                    format!("{key} must be an integer from 1 to {max}, not `{value}`"),
                )
            })?;
    }
    Ok((page, size))
}

async fn list(
    services: &Services,
    request_id: &RequestId,
    account: Option<kinora_core::AccountId>,
    query: Option<&str>,
) -> Result<Json<Value>> {
    let (page, size) = parse_page(query)?;
    let found = services
        .store
        .list_elements(account, page, size)
        .await
        .map_err(|e| UnifiedError::internal(e.message().to_owned()))?;
    let data: Vec<Value> = found
        .iter()
        .map(|e| element_object(e, &services.files))
        .collect();
    Ok(Json(envelope(request_id, Value::Array(data))))
}

/// `GET /v1/elements/custom`: the caller's account's elements, newest first.
async fn list_custom(
    State(services): State<Arc<Services>>,
    request_id: RequestId,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>> {
    let caller = caller(&services, &headers).await?;
    list(
        &services,
        &request_id,
        Some(caller.account),
        query.as_deref(),
    )
    .await
}

/// `GET /v1/elements/presets`: the built-in library, the same for everyone.
async fn list_presets(
    State(services): State<Arc<Services>>,
    request_id: RequestId,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>> {
    caller(&services, &headers).await?;
    list(&services, &request_id, None, query.as_deref()).await
}

/// The `element_id` of a delete body: a decimal string or an integer (§10.3). An id too large
/// to be one is simply not found.
pub fn parse_delete(value: &Value) -> Result<Option<i64>> {
    let mut body = Body::new(value)?;
    let id = match body.value("element_id") {
        None => {
            return Err(UnifiedError::missing(
                "element_id",
                "element_id is required",
            ))
        }
        Some(Value::Number(n)) if n.is_u64() => n.as_u64().and_then(|v| i64::try_from(v).ok()),
        Some(Value::String(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse::<i64>().ok()
        }
        Some(other) => {
            return Err(UnifiedError::invalid(
                "element_id",
                format!(
                    "element_id must be a decimal string or an integer, not {}",
                    describe(other)
                ),
            ))
        }
    };
    refuse_unread(&body)?;
    Ok(id)
}

/// The delete response's `data` (§10.3): deletion is synchronous, so it has succeeded.
pub fn deleted_data(operation: uuid::Uuid) -> Value {
    json!({"task_id": operation.to_string(), "task_status": "succeed"})
}

/// `POST /v1/elements/delete`.
async fn delete_element(
    State(services): State<Arc<Services>>,
    request_id: RequestId,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Result<Json<Value>> {
    let caller = caller(&services, &headers).await?;
    let value = read_json(body)?;
    let text = value
        .get("element_id")
        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
        .unwrap_or_default();
    let id = parse_delete(&value)?.ok_or_else(|| UnifiedError::element_not_found(&text))?;
    elements::delete_custom(&services, caller.account, id)
        .await
        .map_err(element_error)?;
    Ok(Json(envelope(
        request_id,
        deleted_data(uuid::Uuid::now_v7()),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(result: Result<impl std::fmt::Debug>) -> (String, Option<String>) {
        let e = result.expect_err("refused");
        (e.code.to_owned(), e.param)
    }

    fn body() -> Value {
        json!({
            "element_name": "Red fox",
            "element_description": "A small red fox",
            "element_frontal_image": "https://example.com/front.jpg",
            "element_refer_list": [{"image_url": "https://example.com/side.jpg"}],
            "tag_list": [{"tag_id": "o_103"}, {"tag_id": "o_103"}],
        })
    }

    fn with(key: &str, value: Value) -> Value {
        let mut b = body();
        b[key] = value;
        b
    }

    #[test]
    fn a_full_body_is_read() {
        let input = parse_create(&body()).expect("accepted");
        assert_eq!(input.name, "Red fox");
        let ElementViews::Images { others, .. } = &input.views else {
            panic!("an image element");
        };
        assert_eq!(others.len(), 1);
        assert_eq!(others[0].0, "element_refer_list[0].image_url");
        assert_eq!(input.tags, ["o_103"]);
    }

    #[test]
    fn every_create_rule_is_enforced() {
        let cases = [
            (
                with("element_name", json!("")),
                "invalid_parameter",
                "element_name",
            ),
            (
                with("element_name", json!("abcdefghijk")),
                "invalid_parameter",
                "element_name",
            ),
            (
                with("element_name", Value::Null),
                "missing_parameter",
                "element_name",
            ),
            (
                with("element_description", json!("d".repeat(101))),
                "invalid_parameter",
                "element_description",
            ),
            (
                with("element_frontal_image", json!(7)),
                "invalid_parameter",
                "element_frontal_image",
            ),
            (
                with("element_frontal_image", Value::Null),
                "missing_parameter",
                "element_frontal_image",
            ),
            (
                with("element_refer_list", json!([])),
                "invalid_parameter",
                "element_refer_list",
            ),
            (
                with(
                    "element_refer_list",
                    json!([{"image_url": "a"}, {"image_url": "b"}, {"image_url": "c"}, {"image_url": "d"}]),
                ),
                "invalid_parameter",
                "element_refer_list",
            ),
            (
                with("element_refer_list", json!(["https://example.com/a.jpg"])),
                "invalid_parameter",
                "element_refer_list",
            ),
            (
                with("element_refer_list", json!([{"url": "x"}])),
                "invalid_parameter",
                "element_refer_list[0].url",
            ),
            (
                with("element_refer_list", json!([{}])),
                "missing_parameter",
                "element_refer_list[0].image_url",
            ),
            (
                with("element_refer_list", Value::Null),
                "missing_parameter",
                "element_refer_list",
            ),
            (
                with("tag_list", json!([{"tag_id": "o_109"}])),
                "invalid_parameter",
                "tag_list[0].tag_id",
            ),
            (
                with("callback_url", json!("https://example.com/hook")),
                "invalid_parameter",
                "callback_url",
            ),
        ];
        for (body, code, param) in cases {
            assert_eq!(
                refused(parse_create(&body)),
                (code.to_owned(), Some(param.to_owned())),
                "{body}"
            );
        }
    }

    #[test]
    fn pages_default_and_are_bounded() {
        assert_eq!(parse_page(None).expect("default"), (1, 30));
        assert_eq!(
            parse_page(Some("page_num=1000&page_size=500")).expect("max"),
            (1000, 500)
        );
        for (query, param) in [
            ("page_num=0", "page_num"),
            ("page_num=1001", "page_num"),
            ("page_size=501", "page_size"),
            ("page_size=ten", "page_size"),
            ("page=2", "page"),
        ] {
            assert_eq!(
                refused(parse_page(Some(query))),
                ("invalid_parameter".to_owned(), Some(param.to_owned())),
                "{query}"
            );
        }
    }

    #[test]
    fn delete_takes_a_string_or_an_integer() {
        assert_eq!(
            parse_delete(&json!({"element_id": "4503599627370601"})).expect("string"),
            Some(4_503_599_627_370_601)
        );
        assert_eq!(
            parse_delete(&json!({"element_id": 146})).expect("integer"),
            Some(146)
        );
        assert_eq!(
            parse_delete(&json!({"element_id": "99999999999999999999"})).expect("huge"),
            None
        );
        assert_eq!(
            refused(parse_delete(&json!({}))),
            (
                "missing_parameter".to_owned(),
                Some("element_id".to_owned())
            )
        );
        assert_eq!(
            refused(parse_delete(&json!({"element_id": "12a"}))),
            (
                "invalid_parameter".to_owned(),
                Some("element_id".to_owned())
            )
        );
    }
}
