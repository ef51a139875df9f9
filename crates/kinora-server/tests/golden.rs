//! Golden JSON for every response shape of each dialect: create responses, the task in each
//! status, lists, elements and error bodies. `KINORA_BLESS=1` rewrites the files after a deliberate
//! change; otherwise any difference fails.

use std::path::PathBuf;

use kinora_core::{AccountId, Dialect, FailureClass, Task, TaskId, TaskKind, TaskState};
use kinora_server::files::FileUrls;
use kinora_server::unified::elements::{deleted_data, element_object, envelope};
use kinora_server::unified::error::UnifiedError;
use kinora_server::unified::http::{created_body, list_body};
use kinora_server::unified::task::task_body;
use kinora_store::{Element, ElementCreation, ElementImage, ReferenceType};
use serde_json::{json, Value};

fn check(name: &str, value: &Value) {
    check_in("unified", name, value);
}

fn check_in(dialect: &str, name: &str, value: &Value) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(dialect)
        .join(format!("{name}.json"));
    let text = format!(
        "{}\n",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
    if std::env::var_os("KINORA_BLESS").is_some() {
        std::fs::write(&path, &text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with KINORA_BLESS=1 to create it)",
            path.display()
        )
    });
    assert_eq!(text, want, "{name} differs from {}", path.display());
}

/// A task fixed in every field; the id is the spec's example.
fn task(state: TaskState) -> Task {
    let id = TaskId::parse_any("task_01945f1b1d007a2bbc4d5e6f708192a3").unwrap_or_default();
    let created = 1_736_762_400_000; // 2025-01-13T10:00:00Z
    Task {
        id,
        account_id: AccountId::new(),
        dialect: Dialect::Unified,
        kind: TaskKind::Text2Video,
        model: "kling-v2-6".into(),
        state,
        request: json!({}),
        external_task_id: None,
        callback_url: None,
        channel: (state != TaskState::Queued).then(|| "local".to_owned()),
        upstream_task_id: None,
        result: (state == TaskState::Succeeded).then(|| {
            json!({"videos": [{
                "key": format!("tasks/{id}/outputs/video.mp4"),
                "cover_key": format!("tasks/{id}/outputs/cover.jpg"),
                "width": 1920, "height": 1080, "frame_count": 120, "duration": "5.000",
                "has_audio": false, "size": 1234
            }], "engine": {"name": "kinora-local", "revision": "r1", "deterministic": true}})
        }),
        failure_class: (state == TaskState::Failed).then_some(FailureClass::ContentPolicy),
        failure_message: (state == TaskState::Failed)
            .then(|| "The input did not pass content review.".to_owned()),
        created_at: created,
        updated_at: created + 180_000,
        submitted_at: Some(created + 1_000),
        started_at: Some(created + 2_000),
        finished_at: state.is_terminal().then_some(created + 180_000),
        submission: None,
        charged: None,
    }
}

fn urls() -> FileUrls {
    FileUrls::new("https://kinora.example.com".into(), b"golden-key", 30)
}

#[test]
fn create_response() {
    let mut t = task(TaskState::Queued);
    check("create", &created_body(&t));
    t.external_task_id = Some("order-7".into());
    check("create_with_external_id", &created_body(&t));
}

#[test]
fn task_in_every_status() {
    check(
        "task_pending",
        &task_body(&task(TaskState::Queued), &urls()),
    );
    check(
        "task_processing",
        &task_body(&task(TaskState::Running), &urls()),
    );
    check(
        "task_completed",
        &task_body(&task(TaskState::Succeeded), &urls()),
    );
    check("task_failed", &task_body(&task(TaskState::Failed), &urls()));
    check(
        "task_canceled",
        &task_body(&task(TaskState::Canceled), &urls()),
    );
    let mut omni = task(TaskState::Running);
    omni.model = "kling-video-o1".into();
    omni.external_task_id = Some("shot-2".into());
    check("task_omni_processing", &task_body(&omni, &urls()));
}

#[test]
fn error_body() {
    check(
        "error_unsupported_combination",
        &UnifiedError::unsupported(
            Some("camera_control"),
            "image_tail cannot be combined with camera_control",
        )
        .body(),
    );
    check(
        "error_missing_api_key",
        &UnifiedError::from(kinora_server::auth::AuthFailure::Missing).body(),
    );
}

#[test]
fn task_list() {
    let tasks = [task(TaskState::Succeeded), task(TaskState::Queued)];
    check("task_list", &list_body(&tasks, &urls(), 1, 30));
}

fn element(account: Option<AccountId>) -> Element {
    let id = if account.is_some() {
        4_503_599_627_370_601
    } else {
        146
    };
    Element {
        id,
        account_id: account,
        name: if account.is_some() {
            "Red fox"
        } else {
            "Knight"
        }
        .into(),
        description: "A small red fox with a white-tipped tail".into(),
        frontal_image: ElementImage {
            key: format!("elements/{id}/front.jpg"),
            source_url: None,
        },
        refer_images: vec![ElementImage {
            key: format!("elements/{id}/refer_1.jpg"),
            source_url: account.map(|_| "https://example.com/fox-side.jpg".to_owned()),
        }],
        tags: vec!["o_103".into()],
        reference_type: ReferenceType::ImageRefer,
        refer_video: None,
        voice_id: None,
        creation: None,
        created_at: 1_736_762_400_000,
    }
}

#[test]
fn element_envelopes() {
    let request_id = "4c9a7e52-1d0b-4a77-9a51-2f8f0d6c1e33";
    let custom = element(Some(AccountId::new()));
    check(
        "element_created",
        &envelope(request_id, element_object(&custom, &urls())),
    );
    check(
        "element_list",
        &envelope(request_id, json!([element_object(&element(None), &urls())])),
    );
    let operation =
        uuid::Uuid::parse_str("01945f2a-0b10-7d3e-8f40-5a6b7c8d9e0f").unwrap_or_default();
    check(
        "element_deleted",
        &envelope(request_id, deleted_data(operation)),
    );
    check(
        "error_element_not_found",
        &UnifiedError::element_not_found("4503599627370601").body(),
    );
}

#[test]
fn official_task_in_every_status_and_errors() {
    use kinora_server::official::error::OfficialError;
    use kinora_server::official::http::envelope;
    use kinora_server::official::task::task_object;
    let request_id = "0b1f3a56-93c1-4a0e-b3c2-8d1e4f5a6b7c";
    let mut submitted = task(TaskState::Queued);
    submitted.external_task_id = Some("order-42".into());
    check_in(
        "official",
        "task_submitted",
        &envelope(request_id, task_object(&submitted, &urls())),
    );
    check_in(
        "official",
        "task_processing",
        &envelope(request_id, task_object(&task(TaskState::Running), &urls())),
    );
    let mut succeeded = task(TaskState::Succeeded);
    succeeded.request = json!({"watermark": true});
    if let Some(video) = succeeded
        .result
        .as_mut()
        .and_then(|r| r.pointer_mut("/videos/0"))
    {
        video["watermark_key"] = json!(format!(
            "tasks/{}/outputs/video_watermarked.mp4",
            succeeded.id
        ));
    }
    check_in(
        "official",
        "task_succeed",
        &envelope(request_id, task_object(&succeeded, &urls())),
    );
    check_in(
        "official",
        "task_failed",
        &envelope(request_id, task_object(&task(TaskState::Failed), &urls())),
    );
    check_in(
        "official",
        "task_list",
        &envelope(
            request_id,
            json!([
                task_object(&task(TaskState::Succeeded), &urls()),
                task_object(&submitted, &urls())
            ]),
        ),
    );
    check_in(
        "official",
        "create",
        &envelope(
            request_id,
            kinora_server::official::http::created_data(&submitted),
        ),
    );
    check_in(
        "official",
        "error_task_not_found",
        &OfficialError::not_found("task not found").body(request_id),
    );
    check_in(
        "official",
        "error_authorization_expired",
        &OfficialError::from(kinora_server::auth::AuthFailure::Expired).body(request_id),
    );
}

/// A video extension shows its source as `task_info.parent_video` (§7.5), and the refusals of a
/// create: a capability (§13's example) and a data-URI image (§2).
#[test]
fn official_extension_and_create_refusals() {
    use kinora_core::request::{ExtendRequest, GenerationRequest, MediaRef};
    use kinora_server::official::capabilities::CapabilityTable;
    use kinora_server::official::http::envelope;
    use kinora_server::official::submit::parse_image2video;
    use kinora_server::official::task::task_object;
    let request_id = "7d1c2b3a-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
    let source = TaskId::parse_any("01945f1d-dc20-71c2-93e4-f5a6b7c8d9e0").unwrap_or_default();
    let mut extension = task(TaskState::Succeeded);
    extension.kind = TaskKind::VideoExtend;
    extension.model = "kling-v1".into();
    extension.external_task_id = Some("boat-more".into());
    extension.request = GenerationRequest {
        extend: Some(ExtendRequest {
            source_task_id: source,
            video: MediaRef::new(format!("tasks/{source}/outputs/video.mp4")),
            source_frames: 122,
            source_finished_at: 1_736_762_000_000,
            source_channel: None,
            source_upstream_video_id: None,
        }),
        ..GenerationRequest::text("the boat drifts on")
    }
    .to_value();
    if let Some(video) = extension
        .result
        .as_mut()
        .and_then(|r| r.pointer_mut("/videos/0"))
    {
        video["frame_count"] = json!(242);
    }
    check_in(
        "official",
        "task_extension",
        &envelope(request_id, task_object(&extension, &urls())),
    );
    let table = CapabilityTable::builtin().unwrap_or_else(|e| panic!("{e}"));
    let refusal = |body: Value| match parse_image2video(&body, &table) {
        Err(e) => (e.status.as_u16(), e.body(request_id)),
        Ok(_) => panic!("{body} was accepted"),
    };
    let (status, unsupported) = refusal(
        json!({"model_name": "kling-v2-5-turbo", "image": "https://example.com/a.jpg", "image_tail": "https://example.com/b.jpg", "mode": "std", "duration": "10"}),
    );
    assert_eq!(status, 400);
    check_in("official", "error_unsupported_combination", &unsupported);
    let (status, data_uri) = refusal(json!({"image": "data:image/png;base64,iVBORw0KGgo="}));
    assert_eq!(status, 400);
    check_in("official", "error_data_uri_image", &data_uri);
}

/// The task-based element API (§9.2): an element task of each reference type, and a preset
/// as the newer API lists it.
#[test]
fn official_advanced_elements() {
    use kinora_server::official::advanced_elements::{created_task, element_task};
    use kinora_server::official::http::envelope;
    let request_id = "3f2e1d0c-9b8a-4765-8432-10fedcba9876";
    let task_id = TaskId::parse_any("01945f2b-7c00-7a11-8b22-3c4d5e6f7081").unwrap_or_default();
    let mut views = element(Some(AccountId::new()));
    views.creation = Some(ElementCreation {
        task_id,
        external_task_id: Some("fox-element".into()),
        callback_url: None,
    });
    check_in(
        "official",
        "advanced_element_created",
        &envelope(request_id, created_task(&views)),
    );
    check_in(
        "official",
        "advanced_element_task_image_refer",
        &envelope(request_id, element_task(&views, &urls())),
    );
    let mut clip = views.clone();
    clip.reference_type = ReferenceType::VideoRefer;
    clip.refer_images = Vec::new();
    clip.refer_video = Some(ElementImage {
        key: format!("elements/{}/refer_video", clip.id),
        source_url: Some("https://example.com/dancer.mp4".into()),
    });
    clip.voice_id = Some("voice-829".into());
    check_in(
        "official",
        "advanced_element_task_video_refer",
        &envelope(request_id, element_task(&clip, &urls())),
    );
    check_in(
        "official",
        "advanced_presets",
        &envelope(request_id, json!([element_task(&element(None), &urls())])),
    );
}

/// The AceData dialect's bodies (§6, §7): success, acknowledgement, errors with and without a
/// task, and task records pending, succeeded and failed, alone and in a batch.
#[test]
fn acedata_bodies() {
    use kinora_server::acedata::error::AceError;
    use kinora_server::acedata::record::{success_body, task_record};
    let trace = "0a907f69-4ae2-4a08-b34c-ee15c1c47077";
    let with_submission = |mut task: Task| {
        task.dialect = Dialect::AceData;
        task.account_id = AccountId::from_uuid(
            uuid::Uuid::parse_str("ad7afe47-cea9-4cda-980f-2ad8810e51cf").unwrap_or_default(),
        );
        task.submission = Some(kinora_core::Submission {
            trace_id: trace.into(),
            body: json!({"action": "text2video", "model": "kling-v1", "prompt": "A white ceramic mug on a marble counter", "callback_url": "https://example.com/hooks/kling"}),
        });
        task
    };
    let succeeded = with_submission(task(TaskState::Succeeded));
    check_in(
        "acedata",
        "success",
        &success_body(&succeeded, &urls()).unwrap_or_default(),
    );
    check_in(
        "acedata",
        "async_acknowledgement",
        &json!({"success": true, "task_id": succeeded.id.to_string(), "trace_id": trace}),
    );
    check_in(
        "acedata",
        "error_bad_request",
        &AceError::bad_request("negative_prompt must be at most 200 characters").body(trace),
    );
    check_in(
        "acedata",
        "error_timeout",
        &AceError::new(
            "timeout",
            "the task did not end within 600 s; it keeps running: query it with POST /kling/tasks",
        )
        .with_task(succeeded.id)
        .body(trace),
    );
    check_in(
        "acedata",
        "record_succeeded",
        &task_record(&succeeded, &urls()),
    );
    let pending = with_submission(task(TaskState::Running));
    check_in("acedata", "record_pending", &task_record(&pending, &urls()));
    let failed = with_submission(task(TaskState::Failed));
    check_in("acedata", "record_failed", &task_record(&failed, &urls()));
    let mut motion = with_submission(task(TaskState::Queued));
    motion.kind = TaskKind::MotionControl;
    check_in(
        "acedata",
        "batch",
        &json!({"items": [task_record(&motion, &urls()), task_record(&pending, &urls())], "count": 2}),
    );
}

/// The callback payload of each dialect (`callbacks::outbox::payload`): unified and official
/// when work starts and when it ends, AceData when it ends.
#[test]
fn callback_payloads() {
    use kinora_server::callbacks::outbox::payload;
    for (dialect, name) in [
        (Dialect::Unified, "unified"),
        (Dialect::Official, "official"),
        (Dialect::AceData, "acedata"),
    ] {
        let mut running = task(TaskState::Running);
        running.dialect = dialect;
        let mut succeeded = task(TaskState::Succeeded);
        succeeded.dialect = dialect;
        succeeded.submission = Some(kinora_core::Submission {
            trace_id: "0a907f69-4ae2-4a08-b34c-ee15c1c47077".into(),
            body: json!({"prompt": "a mug"}),
        });
        if dialect != Dialect::AceData {
            check_in(name, "callback_processing", &payload(&running, &urls()));
        }
        check_in(name, "callback_ended", &payload(&succeeded, &urls()));
    }
}
