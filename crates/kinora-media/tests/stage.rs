//! Staging end to end: inputs fetched from a loopback server (allow-listed) or decoded from
//! Base64, probed, checked and stored with the task; nothing stored when a rule is broken.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use image::{ImageFormat as Encoder, Rgb, RgbImage};
use kinora_core::TaskId;
use kinora_media::fetch::{FetchConfig, Fetcher};
use kinora_media::image::{check_masks, ImageRules};
use kinora_media::source::InlinePolicy;
use kinora_media::stage::Stager;
use kinora_media::video::{VideoRules, MOTION_CONTROL_MAX_BYTES};
use kinora_media::MediaErrorKind;
use kinora_storage::{keys, ObjectKey, ObjectStorage, StorageConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "support/mp4_writer.rs"]
#[allow(dead_code)]
mod writer;

fn encode(width: u32, height: u32, format: Encoder) -> Vec<u8> {
    let picture = RgbImage::from_fn(width, height, |x, y| {
        Rgb([(x % 256) as u8, (y % 256) as u8, 40])
    });
    let mut out = Cursor::new(Vec::new());
    picture.write_to(&mut out, format).expect("encode");
    out.into_inner()
}

/// 24 fps H.264-labelled MP4 of `frames` frames at the given size, with AAC audio.
fn mp4(frames: u32, width: u32, height: u32) -> Vec<u8> {
    let video = writer::VideoTrack::new(12_288, 512, frames, width, height);
    writer::Movie::mp4(video)
        .with_audio(writer::AudioTrack::aac(48_000, frames * 2000))
        .build()
}

/// Serves fixed files over HTTP/1.1 on 127.0.0.1 until the test ends.
async fn serve(files: HashMap<&'static str, Vec<u8>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let files = Arc::new(files);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let files = files.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut chunk = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&chunk[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&request);
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let response = match files.get(path.as_str()) {
                    Some(body) => {
                        let mut r = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            body.len()
                        )
                        .into_bytes();
                        r.extend_from_slice(body);
                        r
                    }
                    None => {
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_vec()
                    }
                };
                let _ = socket.write_all(&response).await;
                let _ = socket.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}

fn stager() -> (Stager, ObjectStorage) {
    let storage = ObjectStorage::open(&StorageConfig::Memory).expect("storage");
    let config = FetchConfig {
        allow: vec!["127.0.0.1/32".into()],
        ..FetchConfig::default()
    };
    (
        Stager::new(Fetcher::new(&config).expect("fetcher"), storage.clone()),
        storage,
    )
}

async fn stored_keys(storage: &ObjectStorage, task: &TaskId) -> Vec<String> {
    let listed = storage.list(&keys::task_prefix(task)).await.expect("list");
    listed.into_iter().map(|o| o.key.into_string()).collect()
}

#[tokio::test]
async fn fetched_and_inline_images_are_stored_with_the_task() {
    let png = encode(1280, 720, Encoder::Png);
    let jpeg = encode(720, 1280, Encoder::Jpeg);
    let base = serve(HashMap::from([("/start.png", png.clone())])).await;
    let (stager, storage) = stager();
    let task = TaskId::new();

    let fetched = stager
        .image(
            &task,
            "image",
            &format!("{base}/start.png"),
            InlinePolicy::RawBase64Only,
            ImageRules::STANDARD,
        )
        .await
        .expect("url image");
    assert_eq!(
        (fetched.format.as_str(), fetched.width, fetched.height),
        ("png", 1280, 720)
    );
    assert_eq!(fetched.key, format!("tasks/{task}/inputs/image.png"));
    let stored = storage
        .get_bytes(&ObjectKey::parse(&fetched.key).expect("key"))
        .await
        .expect("stored");
    assert_eq!(stored, Bytes::from(png));

    let inline = base64::engine::general_purpose::STANDARD.encode(&jpeg);
    let decoded = stager
        .image(
            &task,
            "image_tail",
            &inline,
            InlinePolicy::RawBase64Only,
            ImageRules::FORMAT_AND_SIZE,
        )
        .await
        .expect("base64 image");
    assert_eq!(decoded.key, format!("tasks/{task}/inputs/image_tail.jpg"));
    assert_eq!(decoded.size, jpeg.len() as u64);
    assert_eq!(stored_keys(&storage, &task).await.len(), 2);

    stager.discard(&task).await.expect("discard");
    assert!(
        stored_keys(&storage, &task).await.is_empty(),
        "a refused request leaves nothing behind"
    );
}

#[tokio::test]
async fn broken_rules_store_nothing() {
    let wide = encode(960, 300, Encoder::Png);
    let short = mp4(48, 1280, 720); // 2 s
    let base = serve(HashMap::from([
        ("/wide.png", wide.clone()),
        ("/short.mp4", short),
    ]))
    .await;
    let (stager, storage) = stager();
    let task = TaskId::new();

    let err = stager
        .image(
            &task,
            "image",
            &format!("{base}/wide.png"),
            InlinePolicy::Base64OrDataUri,
            ImageRules::STANDARD,
        )
        .await
        .expect_err("3.2:1");
    assert_eq!(
        err.to_string(),
        "image: aspect ratio 3.2:1 is outside 1:2.5..2.5:1"
    );

    let data_uri = format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&wide)
    );
    let err = stager
        .image(
            &task,
            "image",
            &data_uri,
            InlinePolicy::RawBase64Only,
            ImageRules::FORMAT_AND_SIZE,
        )
        .await
        .expect_err("official refuses data URIs");
    assert_eq!(
        (err.kind, err.detail.as_str()),
        (
            MediaErrorKind::DataUriRefused,
            "File is not in a valid base64 format"
        )
    );

    let err = stager
        .video(
            &task,
            "video_url",
            &format!("{base}/short.mp4"),
            MOTION_CONTROL_MAX_BYTES,
            &VideoRules::motion_control(false),
        )
        .await
        .expect_err("too short");
    assert_eq!(err.kind, MediaErrorKind::Rule);
    assert!(
        err.to_string().starts_with("video_url: duration 2"),
        "{err}"
    );

    let err = stager
        .video(
            &task,
            "video_url",
            &format!("{base}/missing.mp4"),
            MOTION_CONTROL_MAX_BYTES,
            &VideoRules::motion_control(false),
        )
        .await
        .expect_err("404");
    assert_eq!(err.kind, MediaErrorKind::Unreachable);

    let err = stager
        .video(
            &task,
            "video_url",
            "AAAAIGZ0eXBpc29t",
            MOTION_CONTROL_MAX_BYTES,
            &VideoRules::motion_control(false),
        )
        .await
        .expect_err("base64 video");
    assert_eq!(err.kind, MediaErrorKind::InvalidUrl);

    assert!(
        stored_keys(&storage, &task).await.is_empty(),
        "nothing stored: {:?}",
        stored_keys(&storage, &task).await
    );
}

#[tokio::test]
async fn reference_videos_are_streamed_into_storage_and_probed_there() {
    let clip = mp4(24 * 5, 1280, 720);
    let base = serve(HashMap::from([("/dance.mp4", clip.clone())])).await;
    let (stager, storage) = stager();
    let task = TaskId::new();
    let staged = stager
        .video(
            &task,
            "video_url",
            &format!("{base}/dance.mp4"),
            MOTION_CONTROL_MAX_BYTES,
            &VideoRules::motion_control(true),
        )
        .await
        .expect("video");
    assert_eq!(staged.format, "mp4");
    assert_eq!(
        (staged.width, staged.height, staged.duration_ms),
        (1280, 720, Some(5000))
    );
    assert_eq!(staged.has_audio, Some(true));
    assert!((staged.fps.unwrap_or_default() - 24.0).abs() < 1e-9);
    assert_eq!(staged.size, clip.len() as u64);
    let stored = storage
        .get_bytes(&ObjectKey::parse(&staged.key).expect("key"))
        .await
        .expect("stored");
    assert_eq!(stored.len(), clip.len());

    let err = stager
        .video(
            &TaskId::new(),
            "video_url",
            &format!("{base}/dance.mp4"),
            1024,
            &VideoRules::motion_control(true),
        )
        .await
        .expect_err("over the size limit");
    assert_eq!(err.kind, MediaErrorKind::TooLarge);
}

#[tokio::test]
async fn staged_masks_are_checked_against_the_image() {
    let base = serve(HashMap::from([
        ("/image.png", encode(1280, 720, Encoder::Png)),
        ("/static.png", encode(640, 360, Encoder::Png)),
        ("/dynamic.png", encode(640, 480, Encoder::Png)),
    ]))
    .await;
    let (stager, _) = stager();
    let task = TaskId::new();
    let policy = InlinePolicy::Base64OrDataUri;
    let image = stager
        .image(
            &task,
            "image",
            &format!("{base}/image.png"),
            policy,
            ImageRules::STANDARD,
        )
        .await
        .expect("image");
    let mut masks = Vec::new();
    for (field, path) in [
        ("static_mask", "/static.png"),
        ("dynamic_masks[0].mask", "/dynamic.png"),
    ] {
        let staged = stager
            .image(
                &task,
                field,
                &format!("{base}{path}"),
                policy,
                ImageRules::FORMAT_AND_SIZE,
            )
            .await
            .expect("mask");
        masks.push((field.to_owned(), staged.image_info().expect("image info")));
    }
    let err = check_masks(&image.image_info().expect("info"), &masks)
        .expect_err("4:3 mask on a 16:9 image");
    assert_eq!(err.to_string(), "dynamic_masks[0].mask: aspect ratio 4:3 (640x480) differs from the image's 16:9 (1280x720)");
}
