//! Tasks run end to end on the built-in render engine through the real worker pipeline.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kinora_core::time::SystemClock;
use kinora_core::{
    AccountId, Dialect, FailureClass, JobKind, NewTask, TaskId, TaskKind, TaskState,
};
use kinora_media::video::{probe_video, Container};
use kinora_providers::local::LocalProvider;
use kinora_providers::Providers;
use kinora_server::config::QueueConfig;
use kinora_server::pipeline::Pipeline;
use kinora_server::worker::Workers;
use kinora_storage::{keys, ObjectKey, ObjectStorage, StorageConfig};
use kinora_store::Store;
use serde_json::json;
use tokio_util::sync::CancellationToken;

/// A photo-like PNG: smooth gradients and a few hard edges.
fn test_png(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        let band = if (x / 50 + y / 50) % 2 == 0 { 40 } else { 0 };
        image::Rgb([
            (x * 255 / width) as u8,
            (y * 255 / height) as u8,
            (128 + band) as u8,
        ])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("encode png");
    out.into_inner()
}

fn task(account: AccountId, kind: TaskKind, request: serde_json::Value) -> NewTask {
    NewTask {
        id: TaskId::new(),
        account_id: account,
        dialect: Dialect::Unified,
        kind,
        model: "kling-v2-6".into(),
        request,
        external_task_id: None,
        callback_url: None,
        submission: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn text2video_renders_a_real_mp4_into_storage() {
    let db = kinora_store::testing::sqlite(Arc::new(SystemClock)).await;
    let store: Arc<dyn Store> = db.store.clone();
    let storage = ObjectStorage::open(&StorageConfig::Memory).expect("storage");
    let mut providers = Providers::new();
    providers.add_channel(
        "local",
        Arc::new(LocalProvider::new(Some(2)).expect("engine")),
    );
    providers.set_default_channel("local");
    let pipeline = Arc::new(Pipeline {
        store: store.clone(),
        storage: storage.clone(),
        providers: Arc::new(providers),
        clock: Arc::new(SystemClock),
        events: Default::default(),
        outbox: test_outbox(store.clone()),
        receiver: None,
        disabled: Default::default(),
    });
    let queue = QueueConfig {
        poll_interval_ms: 50,
        heartbeat_seconds: 1,
        lease_seconds: 30,
        ..QueueConfig::default()
    };
    let mut workers = Workers::new(store.clone(), queue, Duration::from_secs(5));
    for handler in pipeline.handlers() {
        workers = workers.with_handler(handler);
    }
    let stop = CancellationToken::new();
    let running = tokio::spawn(workers.run(stop.clone()));

    let account = store.create_account("acme").await.expect("account");
    let request = json!({ "prompt": "a paper boat on a pond", "mode": "std", "aspect_ratio": "16:9", "duration": 1, "sound": true, "watermark": true });
    let (rendered, _) = store
        .create_task(
            task(account.id, TaskKind::Text2Video, request),
            JobKind::SUBMIT_TASK,
        )
        .await
        .expect("task");
    // An image2video task whose image was staged as a dialect would stage it.
    let image_task = task(account.id, TaskKind::Image2Video, serde_json::Value::Null);
    let image_key = keys::task_input(&image_task.id, "image.png").expect("key");
    storage
        .put_bytes(&image_key, Bytes::from(test_png(800, 600)))
        .await
        .expect("staged image");
    let image_task = NewTask {
        request: json!({
            "prompt": "the picture comes alive",
            "image": { "key": image_key.as_str() },
            "duration": 2,
            "camera_control": { "type": "simple", "config": { "zoom": 5 } },
        }),
        ..image_task
    };
    let (animated, _) = store
        .create_task(image_task, JobKind::SUBMIT_TASK)
        .await
        .expect("task");
    let (unsupported, _) = store
        .create_task(
            task(
                account.id,
                TaskKind::MotionControl,
                json!({ "prompt": "dance" }),
            ),
            JobKind::SUBMIT_TASK,
        )
        .await
        .expect("task");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while !store
        .unfinished_task_ids(10)
        .await
        .expect("unfinished")
        .is_empty()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "tasks did not finish"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    running.await.expect("workers stop");

    let done = store
        .get_task(account.id, rendered.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(done.state, TaskState::Succeeded, "{done:?}");
    assert!(
        done.started_at.is_some(),
        "the task was running while the engine rendered"
    );
    let result = done.result.expect("result");
    assert_eq!(result["engine"]["name"], "kinora-local");
    assert_eq!(result["engine"]["deterministic"], true);
    let video = &result["videos"][0];
    assert_eq!(
        (video["width"].as_u64(), video["height"].as_u64()),
        (Some(1280), Some(720))
    );
    assert_eq!(video["duration"], "1");
    let key = ObjectKey::parse(video["key"].as_str().expect("key")).expect("key");
    assert!(key
        .as_str()
        .starts_with(&format!("tasks/{}/outputs/", done.id)));
    let mp4 = storage.get_bytes(&key).await.expect("stored video");
    let info = probe_video("video", &mp4).await.expect("a real MP4");
    assert_eq!(info.container, Container::Mp4);
    assert_eq!(
        (info.width, info.height, info.frame_count, info.duration_ms),
        (1280, 720, 24, 1000)
    );
    assert_eq!(info.video_codec, "avc1");
    assert!(info.has_audio, "sound on gives an audio track");
    let cover = ObjectKey::parse(video["cover_key"].as_str().expect("cover key")).expect("key");
    assert!(
        storage
            .get_bytes(&cover)
            .await
            .expect("cover")
            .starts_with(&[0xFF, 0xD8]),
        "JPEG cover"
    );

    let watermarked =
        ObjectKey::parse(video["watermark_key"].as_str().expect("watermark key")).expect("key");
    let copy = storage
        .get_bytes(&watermarked)
        .await
        .expect("watermarked copy");
    let copy_info = probe_video("video", &copy).await.expect("a real MP4");
    assert_eq!(
        (copy_info.width, copy_info.height, copy_info.frame_count),
        (1280, 720, 24)
    );
    assert_ne!(copy, mp4, "the copy carries the label");

    let animated = store
        .get_task(account.id, animated.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(animated.state, TaskState::Succeeded, "{animated:?}");
    let video = &animated.result.expect("result")["videos"][0];
    let key = ObjectKey::parse(video["key"].as_str().expect("key")).expect("key");
    let info = probe_video("video", &storage.get_bytes(&key).await.expect("video"))
        .await
        .expect("a real MP4");
    // A 4:3 image keeps its shape: contain-fitted into std's 1280x720 frame.
    assert_eq!(
        (info.width, info.height, info.frame_count, info.has_audio),
        (960, 720, 48, false)
    );

    let refused = store
        .get_task(account.id, unsupported.id)
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(refused.state, TaskState::Failed);
    assert_eq!(refused.failure_class, Some(FailureClass::InvalidInput));
    assert_eq!(
        refused.failure_message.as_deref(),
        Some("motion_control needs image_url and video_url")
    );
}

/// An outbox whose result URLs point nowhere in particular: these tasks have no callbacks.
fn test_outbox(
    store: Arc<dyn kinora_store::Store>,
) -> Arc<kinora_server::callbacks::outbox::Outbox> {
    Arc::new(kinora_server::callbacks::outbox::Outbox::new(
        store,
        kinora_server::files::FileUrls::new("http://127.0.0.1".into(), b"test-key", 30),
    ))
}
