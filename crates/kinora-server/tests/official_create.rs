//! The official dialect's create endpoints other than text2video, over real HTTP on loopback:
//! every field rule and capability refusal with its code and message, and each kind rendered
//! by the built-in engine into a real MP4, including an extension of an earlier video.

use std::time::{Duration, Instant};

use common::{
    official_get, official_post, png_base64, rehost, seed_media_server, serve_with, Server,
};
use kinora_core::{Dialect, JobKind, NewTask, TaskId, TaskKind};
use serde_json::{json, Value};

mod common;

/// The loopback media server the allow-list lets through.
async fn server() -> Server {
    serve_with(|config| config.fetch.allow = vec!["127.0.0.1".into()]).await
}

/// Posts each body and checks its refusal: HTTP status, code, and the message (exactly, or
/// containing the text after `~`).
async fn expect_refusals(server: &Server, path: &str, cases: Vec<(Value, u16, i64, &str)>) {
    for (body, want_status, want_code, want_message) in cases {
        let (status, answer) = official_post(server, &server.key, path, body.clone()).await;
        assert_eq!(
            (status, answer["code"].as_i64()),
            (want_status, Some(want_code)),
            "{path} {body}: {answer}"
        );
        let message = answer["message"].as_str().unwrap_or_default();
        match want_message.strip_prefix('~') {
            Some(part) => assert!(message.contains(part), "{body}: {message}"),
            None if want_message.is_empty() => {}
            None => assert_eq!(message, want_message, "{body}"),
        }
        assert!(answer.get("data").is_none(), "{answer}");
    }
}

/// Creates a task and returns its id.
async fn create(server: &Server, feature: &str, body: Value) -> String {
    let path = format!("/v1/videos/{feature}");
    let (status, created) = official_post(server, &server.key, &path, body.clone()).await;
    assert_eq!(
        (status, created["data"]["task_status"].as_str()),
        (200, Some("submitted")),
        "{body}: {created}"
    );
    created["data"]["task_id"]
        .as_str()
        .expect("task_id")
        .to_owned()
}

/// Waits until the task ends; returns its task object.
async fn finished(server: &Server, feature: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let path = format!("/v1/videos/{feature}/{id}");
        let (status, body) = official_get(server, Some(&server.key), &path).await;
        assert_eq!(status, 200, "{body}");
        let state = body["data"]["task_status"].as_str().unwrap_or_default();
        if matches!(state, "succeed" | "failed") || Instant::now() > deadline {
            return body["data"].clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Downloads a finished task's video and probes it.
async fn probe(task: &Value) -> kinora_media::video::VideoInfo {
    assert_eq!(task["task_status"], "succeed", "{task}");
    let url = task["task_result"]["videos"][0]["url"]
        .as_str()
        .expect("url");
    let bytes = reqwest::get(url)
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes");
    kinora_media::video::probe_video("video", &bytes)
        .await
        .expect("a real MP4")
}

fn simple_zoom() -> Value {
    json!({"type": "simple", "config": {"horizontal": 0, "vertical": 0, "pan": 0, "tilt": 0, "roll": 0, "zoom": 5}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn image2video_follows_every_rule() {
    let server = server().await;
    let image = png_base64(640, 360);
    let path = "/v1/videos/image2video";
    // Accepted: the defaults, lenient spellings, each control group on a model offering it.
    for body in [
        json!({"image": image}),
        json!({"image": image, "aspect_ratio": "4:3", "prompt": "", "cfg_scale": "0.3"}),
        json!({"model_name": "kling-v1-5", "mode": "pro", "image": image, "image_tail": image, "duration": 10}),
        json!({"model_name": "kling-v1-6", "mode": "pro", "image_tail": image}),
        json!({"image": image, "static_mask": png_base64(320, 180), "dynamic_masks": [{"mask": png_base64(320, 180), "trajectories": [{"x": 10, "y": 10}, {"x": 300, "y": 200}]}]}),
        json!({"model_name": "kling-v1-5", "mode": "pro", "image": image, "camera_control": simple_zoom()}),
        json!({"model_name": "kling-v2-6", "mode": "pro", "image": image, "sound": "on", "voice_list": [{"voice_id": "v1"}], "prompt": "<<<voice_1>>> says hi"}),
        json!({"model_name": "kling-v3", "image": image, "element_list": [{"element_id": 141}, {"element_id": "142"}], "duration": "3"}),
        json!({"model_name": "kling-v3", "image": image, "multi_shot": true, "shot_type": "intelligence", "prompt": "two shots", "duration": "8", "mode": "4k"}),
        json!({"image": image, "camera_control": {}, "dynamic_masks": [], "watermark_info": {"enabled": true}}),
    ] {
        create(&server, "image2video", body).await;
    }
    // An unknown field whose name is one of kinora's own is kept apart and never rendered.
    let id = create(
        &server,
        "image2video",
        json!({"image": image, "aspect_ratio": "1:1"}),
    )
    .await;
    let stored = stored_request(&server, &id).await;
    assert_eq!(
        (&stored["aspect_ratio"], &stored["extra"]["aspect_ratio"]),
        (&Value::Null, &json!("1:1")),
        "{stored}"
    );

    let zoom = simple_zoom();
    let many_masks: Vec<Value> = (0..7)
        .map(|_| json!({"mask": image, "trajectories": [{"x": 1, "y": 1}, {"x": 2, "y": 2}]}))
        .collect();
    expect_refusals(&server, path, vec![
        (json!({"prompt": "no picture"}), 400, 1201, "image or image_tail is required"),
        (json!({"image": format!("data:image/png;base64,{image}")}), 400, 1201, "File is not in a valid base64 format"),
        (json!({"image": image, "image_tail": format!("data:image/png;base64,{image}")}), 400, 1201, "File is not in a valid base64 format"),
        (json!({"image": image, "image_tail": image, "camera_control": zoom}), 400, 1201, "~image_tail and camera_control cannot be used together"),
        (json!({"image": image, "static_mask": image, "camera_control": zoom}), 400, 1201, "~static_mask/dynamic_masks and camera_control cannot be used together"),
        (json!({"image_tail": image, "static_mask": image}), 400, 1201, "~image_tail and static_mask/dynamic_masks cannot be used together"),
        // The worked example of the spec (§13), word for word.
        (json!({"model_name": "kling-v2-5-turbo", "image": "https://example.com/a.jpg", "image_tail": "https://example.com/b.jpg", "mode": "std", "duration": "10"}), 400, 1201, "model/mode/duration(kling-v2-5-turbo/std/10) is not supported with image_tail"),
        (json!({"model_name": "kling-v2-1-master", "mode": "pro", "image": image, "image_tail": image}), 400, 1201, "model/mode/duration(kling-v2-1-master/pro/5) is not supported with image_tail"),
        (json!({"model_name": "kling-v2-1", "mode": "pro", "image_tail": image}), 400, 1201, "model/mode/duration(kling-v2-1/pro/5) is not supported with image_tail without image"),
        (json!({"model_name": "kling-v1-5", "mode": "pro", "image": image, "camera_control": {"type": "down_back"}}), 400, 1201, "model/mode/duration(kling-v1-5/pro/5) is not supported with camera_control type down_back"),
        (json!({"image": image, "static_mask": image, "duration": "10"}), 400, 1201, "model/mode/duration(kling-v1/std/10) is not supported with motion brush"),
        (json!({"model_name": "kling-v2-6", "image": image, "sound": "on"}), 400, 1201, "model/mode/duration(kling-v2-6/std/5) is not supported with sound on"),
        (json!({"model_name": "kling-v2-6", "mode": "pro", "image": image, "image_tail": image, "sound": "on"}), 400, 1201, "model/mode/duration(kling-v2-6/pro/5) is not supported with image_tail and sound on"),
        (json!({"model_name": "kling-v2-6", "image": image, "cfg_scale": 0.8}), 400, 1201, "model/mode/duration(kling-v2-6/std/5) is not supported with cfg_scale"),
        (json!({"model_name": "kling-v2-6", "image": image, "multi_shot": true, "shot_type": "intelligence", "prompt": "p"}), 400, 1201, "model/mode/duration(kling-v2-6/std/5) is not supported with multi_shot"),
        (json!({"model_name": "kling-v2-6", "image": image, "element_list": [{"element_id": 141}]}), 400, 1201, "model/mode/duration(kling-v2-6/std/5) is not supported with element_list"),
        (json!({"image": image, "mode": "4k"}), 400, 1201, "model/mode(kling-v1/4k) is not supported"),
        (json!({"model_name": "kling-v3", "image": image, "sound": "on", "voice_list": [{"voice_id": "v"}], "element_list": [{"element_id": 141}]}), 400, 1201, "element_list cannot be combined with voice_list"),
        (json!({"model_name": "kling-v3", "image": image, "element_list": [{"element_id": 141}, {"element_id": 142}, {"element_id": 143}, {"element_id": 144}]}), 400, 1201, "element_list holds at most 3 elements, got 4"),
        (json!({"model_name": "kling-v3", "image": image, "element_list": [{"element_id": 999}]}), 400, 1201, "~element_list[0].element_id"),
        (json!({"model_name": "kling-v3", "image": image, "multi_shot": true, "shot_type": "intelligence"}), 400, 1201, "prompt is required"),
        (json!({"model_name": "kling-v2-6", "mode": "pro", "image": image, "voice_list": [{"voice_id": "v"}]}), 400, 1201, "voice_list needs sound on"),
        (json!({"image": image, "static_mask": png_base64(400, 400)}), 400, 1201, "~aspect ratio 400x400 differs from image's 640x360"),
        (json!({"image": image, "static_mask": png_base64(640, 360), "dynamic_masks": [{"mask": png_base64(320, 180), "trajectories": [{"x": 1, "y": 1}, {"x": 2, "y": 2}]}]}), 400, 1201, "~every mask needs the same resolution"),
        (json!({"image": image, "dynamic_masks": [{"mask": image, "trajectories": [{"x": 0, "y": 0}, {"x": 700, "y": 10}]}]}), 400, 1201, "~lies outside the 640x360 image"),
        (json!({"image": image, "dynamic_masks": [{"mask": image, "trajectories": [{"x": 0, "y": 0}]}]}), 400, 1201, "~needs 2-77 points"),
        (json!({"image": image, "dynamic_masks": many_masks}), 400, 1201, "~dynamic_masks holds 1-6 groups"),
        (json!({"image": image, "dynamic_masks": [{"trajectories": [{"x": 0, "y": 0}, {"x": 1, "y": 1}]}]}), 400, 1201, "dynamic_masks[0].mask is required"),
        (json!({"image": png_base64(200, 200)}), 400, 1201, "~300"),
        (json!({"image": "http://127.0.0.2:9/a.png"}), 400, 1201, "~image"),
        (json!({"image": 7}), 400, 1201, "image must be a string, not a number"),
        (json!({"image": image, "prompt": "x".repeat(2501)}), 400, 1201, "~2500"),
        (json!({"image": image, "duration": "5s"}), 400, 1201, "~duration"),
        (json!({"model_name": "kling-v9", "image": image}), 404, 1203, "model_name kling-v9 not found"),
    ])
    .await;
}

/// The canonical request a task was stored with.
async fn stored_request(server: &Server, id: &str) -> Value {
    let store = &server.services.store;
    let account = store
        .bootstrap_account()
        .await
        .expect("store")
        .expect("account")
        .id;
    store
        .get_task(account, kinora_core::TaskId::parse_any(id).expect("id"))
        .await
        .expect("store")
        .expect("task")
        .request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn omni_multi_image_and_motion_control_follow_every_rule() {
    let server = server().await;
    let image = png_base64(640, 360);
    let first = json!({"image_url": image, "type": "first_frame"});
    let end = json!({"image_url": image, "type": "end_frame"});
    let reference = json!({"image_url": image});
    let video =
        |refer: &str| json!([{"video_url": "https://example.com/v.mp4", "refer_type": refer}]);
    let elements = |n: usize| -> Vec<Value> {
        (0..n)
            .map(|i| json!({"element_id": 141 + (i % 7)}))
            .collect()
    };

    for body in [
        json!({"prompt": "a red kite", "aspect_ratio": "16:9"}),
        json!({"prompt": "<<<image_1>>> walks", "image_list": [first], "duration": "10", "mode": "std"}),
        json!({"prompt": "<<<image_1>>> and <<<element_1>>>", "image_list": [reference], "element_list": [{"element_id": "146"}], "aspect_ratio": "1:1", "duration": 7}),
        json!({"prompt": "from <<<image_1>>> to <<<image_2>>>", "image_list": [first, end], "duration": "6"}),
        json!({"model_name": "kling-v3-omni", "prompt": "p", "aspect_ratio": "9:16", "sound": "on", "mode": "4k", "duration": "15"}),
        json!({"model_name": "kling-v3-omni", "aspect_ratio": "1:1", "multi_shot": true, "shot_type": "customize", "multi_prompt": [{"index": 1, "prompt": "<<<element_1>>> waves", "duration": "2"}, {"index": 2, "prompt": "b", "duration": "3"}], "element_list": [{"element_id": 141}]}),
    ] {
        create(&server, "omni-video", body).await;
    }
    let omni = "/v1/videos/omni-video";
    expect_refusals(&server, omni, vec![
        (json!({"aspect_ratio": "16:9"}), 400, 1201, "prompt is required"),
        (json!({"prompt": "p"}), 400, 1201, "aspect_ratio is required without a first frame or a reference video"),
        (json!({"prompt": "p", "image_list": [first], "aspect_ratio": "16:9"}), 400, 1201, "~aspect_ratio must be absent"),
        (json!({"prompt": "p", "image_list": [end]}), 400, 1201, "an end frame alone is not supported: it needs a first frame"),
        (json!({"prompt": "p", "image_list": [first, end, reference]}), 400, 1201, "with more than 2 images no end frame is allowed, got 3 images"),
        (json!({"prompt": "p", "image_list": [first, first]}), 400, 1201, "at most one first_frame and one end_frame image are allowed"),
        (json!({"prompt": "p", "aspect_ratio": "1:1", "image_list": [reference, reference, reference, reference], "element_list": elements(4)}), 400, 1201, "images plus elements may be at most 7, got 4 + 4"),
        (json!({"prompt": "p", "image_list": [reference, reference], "element_list": elements(3), "video_list": video("feature")}), 400, 1201, "images plus elements may be at most 4 with a reference video, got 2 + 3"),
        (json!({"prompt": "p", "video_list": [{"video_url": "https://example.com/a.mp4"}, {"video_url": "https://example.com/b.mp4"}]}), 400, 1201, "video_list holds at most 1 video, got 2"),
        (json!({"prompt": "p", "image_list": [first], "video_list": video("base")}), 400, 1201, "a video edit (refer_type base) cannot have a first or last frame"),
        (json!({"prompt": "p", "image_list": [first], "element_list": elements(4)}), 400, 1201, "with a first frame at most 3 elements are allowed, got 4"),
        (json!({"prompt": "p", "video_list": [{"video_url": ""}]}), 400, 1201, "video_list[0].video_url is required and must not be empty"),
        (json!({"prompt": "p", "aspect_ratio": "1:1", "element_list": [{"element_id": 424242}]}), 400, 1201, "~element_list[0].element_id"),
        (json!({"prompt": "<<<image_2>>>", "image_list": [first]}), 400, 1201, "~<<<image_2>>> in the prompt refers past the image list (1 images)"),
        (json!({"prompt": "<<<element_1>>>", "aspect_ratio": "1:1"}), 400, 1201, "~<<<element_1>>> in the prompt refers past element_list (0 elements)"),
        (json!({"prompt": "<<<video_1>>>", "aspect_ratio": "1:1"}), 400, 1201, "~<<<video_1>>> in the prompt needs a video in video_list"),
        (json!({"prompt": "p", "aspect_ratio": "16:9", "duration": "7"}), 400, 1201, "duration must be 5 or 10 for text-to-video, not 7"),
        (json!({"prompt": "p", "image_list": [first], "duration": "3"}), 400, 1201, "duration must be 5 or 10 for a first frame alone, not 3"),
        (json!({"prompt": "p", "aspect_ratio": "1:1", "image_list": [reference], "duration": "11"}), 400, 1201, "model/mode/duration(kling-video-o1/pro/11) is not supported"),
        (json!({"prompt": "p", "aspect_ratio": "1:1", "sound": "on"}), 400, 1201, "model/mode/duration(kling-video-o1/pro/5) is not supported with sound on"),
        (json!({"prompt": "p", "mode": "4k", "aspect_ratio": "1:1"}), 400, 1201, "model/mode(kling-video-o1/4k) is not supported"),
        (json!({"model_name": "kling-v3-omni", "prompt": "p", "sound": "on", "video_list": video("feature")}), 400, 1201, "model/mode/duration(kling-v3-omni/pro/5) is not supported with video_list and sound on"),
        (json!({"model_name": "kling-v3-omni", "prompt": "p", "duration": "12", "video_list": video("feature")}), 400, 1201, "model/mode/duration(kling-v3-omni/pro/12) is not supported with video_list"),
        (json!({"model_name": "kling-v3-omni", "aspect_ratio": "1:1", "multi_shot": true, "shot_type": "intelligence", "prompt": "p"}), 400, 1201, "shot_type must be customize, not `intelligence`"),
        (json!({"model_name": "kling-v3-omni", "multi_shot": true, "shot_type": "customize", "multi_prompt": [{"index": 1, "prompt": "a", "duration": "5"}], "video_list": video("base")}), 400, 1201, "~multi_shot cannot be combined with a video edit"),
        (json!({"prompt": "p", "multi_shot": true, "shot_type": "customize", "aspect_ratio": "1:1", "multi_prompt": [{"index": 1, "prompt": "a", "duration": "5"}]}), 400, 1201, "model/mode/duration(kling-video-o1/pro/5) is not supported with multi_shot"),
        (json!({"prompt": "p", "image_list": [{"image_url": format!("data:image/png;base64,{image}"), "type": "first_frame"}]}), 400, 1201, "File is not in a valid base64 format"),
        (json!({"prompt": "p", "image_list": [{"image_url": image, "type": "middle"}]}), 400, 1201, "~first_frame or end_frame"),
        (json!({"prompt": "p", "aspect_ratio": "1:1", "model_name": "kling-v2-6"}), 400, 1201, "model(kling-v2-6) is not supported on omni-video"),
    ])
    .await;

    for body in [
        json!({"image_list": [{"image": image}], "prompt": "a card"}),
        json!({"image_list": [{"image": image}, {"image": png_base64(360, 640)}, {"image": image}, {"image": image}], "prompt": "cards", "mode": "pro", "duration": 10, "aspect_ratio": "1:1", "negative_prompt": "blur"}),
    ] {
        create(&server, "multi-image2video", body).await;
    }
    let five: Vec<Value> = (0..5).map(|_| json!({"image": image})).collect();
    expect_refusals(&server, "/v1/videos/multi-image2video", vec![
        (json!({"prompt": "p"}), 400, 1201, "image_list is required: 1-4 items {\"image\": URL or Base64}"),
        (json!({"prompt": "p", "image_list": []}), 400, 1201, "image_list is required: 1-4 items {\"image\": URL or Base64}"),
        (json!({"prompt": "p", "image_list": five}), 400, 1201, "image_list holds 1-4 images, got 5"),
        (json!({"prompt": "p", "image_list": [{"image_url": image}]}), 400, 1201, "image_list[0].image is required"),
        (json!({"image_list": [{"image": image}]}), 400, 1201, "prompt is required"),
        (json!({"prompt": "p", "image_list": [{"image": image}], "mode": "4k"}), 400, 1201, "~mode must be one of std, pro"),
        (json!({"prompt": "p", "image_list": [{"image": image}], "duration": "7"}), 400, 1201, "model/mode/duration(kling-v1-6/std/7) is not supported"),
        (json!({"prompt": "p", "image_list": [{"image": image}], "model_name": "kling-v2-6"}), 400, 1201, "model(kling-v2-6) is not supported on multi-image2video"),
        (json!({"prompt": "p", "image_list": [{"image": image}], "aspect_ratio": "4:3"}), 400, 1201, "~aspect_ratio"),
        (json!({"prompt": "p", "image_list": [{"image": png_base64(640, 120)}]}), 400, 1201, "~image_list[0].image"),
    ])
    .await;

    let motion = json!({"image_url": image, "video_url": "https://example.com/dance.mp4", "character_orientation": "video", "mode": "std"});
    let with = |extra: Value| {
        let mut body = motion.clone();
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        body
    };
    let without = |key: &str| {
        let mut body = motion.clone();
        if let Some(b) = body.as_object_mut() {
            b.remove(key);
        }
        body
    };
    expect_refusals(&server, "/v1/videos/motion-control", vec![
        (without("image_url"), 400, 1201, "image_url is required"),
        (without("video_url"), 400, 1201, "video_url is required"),
        (without("character_orientation"), 400, 1201, "character_orientation is required: image or video"),
        (without("mode"), 400, 1201, "mode is required: std or pro"),
        (with(json!({"mode": "4k"})), 400, 1201, "~mode must be one of std, pro"),
        (with(json!({"character_orientation": "left"})), 400, 1201, "~character_orientation must be one of image, video"),
        (with(json!({"keep_original_sound": "maybe"})), 400, 1201, "~keep_original_sound must be one of yes, no"),
        (with(json!({"video_url": "Zm9vYmFy"})), 400, 1201, "~video_url"),
        (with(json!({"image_url": format!("data:image/png;base64,{image}")})), 400, 1201, "File is not in a valid base64 format"),
        (with(json!({"element_list": [{"element_id": 141}]})), 400, 1201, "model/mode(kling-v2-6/std) is not supported with element_list"),
        (with(json!({"model_name": "kling-v3", "element_list": [{"element_id": 141}, {"element_id": 142}]})), 400, 1201, "element_list holds at most 1 element, got 2"),
        (with(json!({"model_name": "kling-v1"})), 400, 1201, "model(kling-v1) is not supported on motion-control"),
        (with(json!({"prompt": "x".repeat(2501)})), 400, 1201, "~2500"),
        // The reference clip is fetched and probed at submit: an unreachable host is refused.
        (with(json!({"video_url": "http://127.0.0.2:9/dance.mp4"})), 400, 1201, "~video_url"),
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_kind_renders_a_real_mp4_and_videos_extend() {
    let server = server().await;
    // The source video for the extension, and the reference clip for motion control and the
    // omni video edit: 5 s of 720p from kling-v1.
    let source = create(&server, "text2video", json!({"model_name": "kling-v1", "prompt": "a paper boat on a pond", "duration": "5", "external_task_id": "boat"})).await;
    let newer = create(
        &server,
        "text2video",
        json!({"model_name": "kling-v2-6", "prompt": "a second boat"}),
    )
    .await;
    let source_task = finished(&server, "text2video", &source).await;
    let source_info = probe(&source_task).await;
    assert_eq!(source_info.duration_ms, 5000);
    let clip_url = source_task["task_result"]["videos"][0]["url"]
        .as_str()
        .expect("url");
    let clip = reqwest::get(clip_url)
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes")
        .to_vec();
    let media = seed_media_server(clip).await;

    let mut bodies = vec![
        (
            "image2video",
            json!({"model_name": "kling-v1-5", "mode": "pro", "image": "https://example.com/start.jpg", "image_tail": "https://example.com/end.jpg", "prompt": "the sun sets"}),
        ),
        // The multi-shot example of the spec (§13).
        (
            "image2video",
            json!({"model_name": "kling-v3", "image": "https://example.com/start.jpg", "multi_shot": true, "shot_type": "customize", "multi_prompt": [{"index": 1, "prompt": "Wide shot of the valley", "duration": "4"}, {"index": 2, "prompt": "Close-up of the rider", "duration": "4"}], "duration": "8", "mode": "pro", "sound": "on"}),
        ),
        (
            "image2video",
            json!({"image": "https://example.com/scene.jpg", "static_mask": "https://example.com/static_mask.png", "dynamic_masks": [{"mask": "https://example.com/dynamic_mask.png", "trajectories": [{"x": 100, "y": 200}, {"x": 300, "y": 400}]}]}),
        ),
        (
            "multi-image2video",
            json!({"image_list": [{"image": "https://example.com/a.jpg"}, {"image": png_base64(640, 640)}], "prompt": "two cards", "aspect_ratio": "1:1"}),
        ),
        (
            "omni-video",
            json!({"prompt": "<<<image_1>>> meets <<<element_1>>>", "image_list": [{"image_url": "https://example.com/first.jpg", "type": "first_frame"}], "element_list": [{"element_id": 146}]}),
        ),
        // A video edit ignores duration: it keeps the input's length.
        (
            "omni-video",
            json!({"prompt": "<<<video_1>>> at night", "video_list": [{"video_url": "https://example.com/edit.mp4", "refer_type": "base", "keep_original_sound": "yes"}], "duration": "99"}),
        ),
        (
            "motion-control",
            json!({"image_url": "https://example.com/person.jpg", "video_url": "https://example.com/dance.mp4", "character_orientation": "video", "mode": "std", "keep_original_sound": "no"}),
        ),
        (
            "video-extend",
            json!({"video_id": source, "prompt": "the boat drifts on", "external_task_id": "boat-more"}),
        ),
    ];
    for (_, body) in bodies.iter_mut() {
        rehost(body, &media);
    }
    let mut created = Vec::new();
    for (feature, body) in bodies {
        created.push((feature, create(&server, feature, body.clone()).await, body));
    }
    for (feature, id, body) in &created {
        let task = finished(&server, feature, id).await;
        let info = probe(&task).await;
        let stated = task["task_result"]["videos"][0]["duration"]
            .as_str()
            .and_then(|d| d.parse::<f64>().ok())
            .expect("duration");
        assert!(
            (info.duration_ms as f64 / 1000.0 - stated).abs() < 0.05,
            "{feature} {body}: {task}"
        );
        // Motion control and the edit keep the 5 s clip; the extension adds 5 s.
        let wanted = match body["duration"].as_str() {
            _ if *feature == "video-extend" => 10.0,
            _ if body["video_list"][0]["refer_type"] == "base" => 5.0,
            Some(d) => d.parse::<f64>().expect("seconds"),
            None => 5.0,
        };
        assert_eq!(stated, wanted, "{feature} {body}");
        if *feature == "image2video" && body["sound"] == "on" {
            assert!(info.has_audio, "{body}");
        }
        if *feature == "video-extend" {
            let parent = &task["task_info"]["parent_video"];
            assert_eq!(
                (parent["id"].as_str(), parent["duration"].as_str()),
                (Some(source.as_str()), Some("5")),
                "{task}"
            );
            assert_eq!(
                parent["url"], source_task["task_result"]["videos"][0]["url"],
                "{task}"
            );
            assert_eq!(task["task_info"]["external_task_id"], "boat-more");
            // An extension extends again.
            let again = create(&server, "video-extend", json!({"video_id": id})).await;
            let again = finished(&server, "video-extend", &again).await;
            assert_eq!(probe(&again).await.duration_ms, 15000, "{again}");
        }
        // Visible, with its status, in the unified dialect too.
        let (status, _, unified) = server.get(&server.key, &format!("/v1/videos/{id}")).await;
        assert_eq!(
            (status, unified["status"].as_str()),
            (200, Some("completed")),
            "{unified}"
        );
    }

    // Extension refusals: unknown, unfinished, a kind or model that does not extend, another
    // account's. The unfinished task waits on a job no worker takes, so it stays queued.
    let account = server.account().await;
    let (queued, _) = server
        .services
        .store
        .create_task(
            NewTask {
                id: TaskId::new(),
                account_id: account,
                dialect: Dialect::Official,
                kind: TaskKind::Text2Video,
                model: "kling-v1".into(),
                request: json!({"prompt": "never rendered"}),
                external_task_id: None,
                callback_url: None,
                submission: None,
            },
            JobKind::new("test.parked"),
        )
        .await
        .expect("task");
    let multi_image = created
        .iter()
        .find(|(feature, _, _)| *feature == "multi-image2video")
        .map(|(_, id, _)| id.clone())
        .expect("multi-image task");
    let newer_task = finished(&server, "text2video", &newer).await;
    assert_eq!(newer_task["task_status"], "succeed");
    expect_refusals(
        &server,
        "/v1/videos/video-extend",
        vec![
            (json!({}), 400, 1201, "video_id is required"),
            (
                json!({"video_id": 5}),
                400,
                1201,
                "video_id must be a string, not 5",
            ),
            (
                json!({"video_id": "not-a-video"}),
                400,
                1201,
                "video_id is invalid",
            ),
            (
                json!({"video_id": "01945f1d-dc20-71c2-93e4-f5a6b7c8d9e0"}),
                400,
                1201,
                "video_id is invalid",
            ),
            (
                json!({"video_id": queued.id.to_string()}),
                400,
                1201,
                "video_id is invalid",
            ),
            (
                json!({"video_id": multi_image}),
                400,
                1201,
                "video_id is invalid",
            ),
            (
                json!({"video_id": newer}),
                400,
                1201,
                "model(kling-v2-6) is not supported on video-extend",
            ),
            (
                json!({"video_id": source, "cfg_scale": 3}),
                400,
                1201,
                "~cfg_scale must be a number from 0 to 1",
            ),
            (
                json!({"video_id": source, "external_task_id": "boat"}),
                400,
                1201,
                "~boat",
            ),
        ],
    )
    .await;
    let other_key = server.other_account_key().await;
    let (status, refused) = official_post(
        &server,
        &other_key,
        "/v1/videos/video-extend",
        json!({"video_id": source}),
    )
    .await;
    assert_eq!(
        (
            status,
            refused["code"].as_i64(),
            refused["message"].as_str()
        ),
        (400, Some(1201), Some("video_id is invalid"))
    );
}

/// Downloads a finished task's video.
async fn video_bytes(task: &Value) -> Vec<u8> {
    let url = task["task_result"]["videos"][0]["url"]
        .as_str()
        .expect("url");
    reqwest::get(url)
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes")
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn advanced_element_tasks_are_created_queried_listed_and_used() {
    let server = server().await;
    let path = "/v1/general/advanced-custom-elements";
    // A 1080p landscape clip (kling-v1 pro) and a 720p portrait one (std).
    let wide = create(&server, "text2video", json!({"model_name": "kling-v1", "mode": "pro", "prompt": "a dancer turning", "duration": "5"})).await;
    let tall = create(
        &server,
        "text2video",
        json!({"model_name": "kling-v1", "prompt": "a tall tower", "aspect_ratio": "9:16"}),
    )
    .await;
    let wide = video_bytes(&finished(&server, "text2video", &wide).await).await;
    let tall = video_bytes(&finished(&server, "text2video", &tall).await).await;
    let wide_host = seed_media_server(wide).await;
    let tall_host = seed_media_server(tall).await;

    let views = json!({
        "element_name": "Paper crane",
        "element_description": "A folded paper crane",
        "reference_type": "image_refer",
        "element_image_list": {"frontal_image": png_base64(500, 500), "refer_images": [{"image_url": format!("{wide_host}/side.jpg")}]},
        "tag_list": [{"tag_id": "o_104"}],
        "external_task_id": "crane",
    });
    let (status, created) = official_post(&server, &server.key, path, views.clone()).await;
    assert_eq!(status, 200, "{created}");
    let image_task = created["data"]["task_id"]
        .as_str()
        .expect("task_id")
        .to_owned();
    assert_eq!(
        (
            &created["data"]["task_status"],
            &created["data"]["task_info"]
        ),
        (&json!("succeed"), &json!({"external_task_id": "crane"}))
    );
    let clip = json!({
        "element_name": "Dancer",
        "element_description": "A dancer turning on a stage",
        "reference_type": "video_refer",
        "element_video_list": {"refer_videos": [{"video_url": format!("{wide_host}/dancer.mp4")}]},
        "element_voice_id": "voice-829",
    });
    let (status, created) = official_post(&server, &server.key, path, clip.clone()).await;
    assert_eq!(status, 200, "{created}");
    let clip_task = created["data"]["task_id"]
        .as_str()
        .expect("task_id")
        .to_owned();

    // Found by task id (at the root and under /kling), by external id in every form.
    for lookup in [
        format!("{path}/{image_task}"),
        format!("/kling{path}/{image_task}"),
        format!("{path}/crane"),
        format!("{path}/crane?external_task_id=true"),
        format!("{path}?external_task_id=crane"),
        format!("{path}?task_id={image_task}"),
    ] {
        let (status, body) = official_get(&server, Some(&server.key), &lookup).await;
        assert_eq!(status, 200, "{lookup}: {body}");
        let element = &body["data"]["task_result"]["elements"][0];
        assert_eq!(
            (
                &body["data"]["task_id"],
                &element["element_name"],
                &element["reference_type"]
            ),
            (
                &json!(image_task),
                &json!("Paper crane"),
                &json!("image_refer")
            ),
            "{lookup}"
        );
        assert_eq!(
            element["element_image_list"]["refer_images"][0]["image_url"],
            json!(format!("{wide_host}/side.jpg"))
        );
    }
    let (_, body) = official_get(&server, Some(&server.key), &format!("{path}/{clip_task}")).await;
    let dancer = body["data"]["task_result"]["elements"][0].clone();
    assert_eq!(dancer["reference_type"], "video_refer");
    assert_eq!(
        dancer["element_video_list"]["refer_videos"][0]["video_url"],
        json!(format!("{wide_host}/dancer.mp4"))
    );
    assert_eq!(
        dancer["element_voice_info"],
        json!({"voice_id": "voice-829"})
    );
    // Listed newest first; the older API's elements are not element tasks.
    let (status, older) = official_post(&server, &server.key, "/v1/general/custom-elements", json!({
        "element_name": "Kite", "element_description": "A red kite",
        "element_frontal_image": png_base64(400, 400), "element_refer_list": [{"image_url": png_base64(400, 400)}],
    })).await;
    assert_eq!(status, 200, "{older}");
    let (_, listed) = official_get(
        &server,
        Some(&server.key),
        &format!("{path}?pageNum=1&pageSize=10"),
    )
    .await;
    let ids: Vec<&str> = listed["data"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|t| t["task_id"].as_str())
        .collect();
    assert_eq!(ids, [clip_task.as_str(), image_task.as_str()]);
    let (_, presets) = official_get(
        &server,
        Some(&server.key),
        "/v1/general/advanced-presets-elements",
    )
    .await;
    let presets = presets["data"].as_array().expect("array").clone();
    assert_eq!(presets.len(), 8);
    assert!(presets
        .iter()
        .all(|p| p["task_status"] == "succeed"
            && p["task_result"]["elements"][0]["owned_by"] == "kling"));

    // The clip element works in an omni request: its front view is the clip's first picture.
    let element_id = dancer["element_id"].as_i64().expect("element_id");
    let (_, _, plain) = server.get(&server.key, "/v1/elements/custom").await;
    let front = plain["data"]
        .as_array()
        .expect("array")
        .iter()
        .find(|e| e["element_id"] == element_id)
        .and_then(|e| e["element_frontal_image"].as_str())
        .expect("front view")
        .to_owned();
    let still = reqwest::get(&front)
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes");
    let still = image::load_from_memory(&still).expect("a JPEG");
    assert_eq!((still.width(), still.height()), (1920, 1080));
    let omni = create(&server, "omni-video", json!({"prompt": "<<<element_1>>> on a beach", "element_list": [{"element_id": element_id}], "aspect_ratio": "16:9"})).await;
    let omni = finished(&server, "omni-video", &omni).await;
    assert_eq!(probe(&omni).await.duration_ms, 5000);

    // Refusals: a duplicate external id, a clip that is not 1080p, another account's lookups.
    let mut again = views.clone();
    again["element_name"] = json!("Second crane");
    let mut wrong_clip = clip.clone();
    wrong_clip["element_video_list"] =
        json!({"refer_videos": [{"video_url": format!("{tall_host}/tower.mp4")}]});
    expect_refusals(
        &server,
        path,
        vec![
            (
                again,
                400,
                1201,
                "external_task_id `crane` is already used by another element task of this account",
            ),
            (
                wrong_clip,
                400,
                1201,
                "element_video_list.refer_videos[0].video_url: width 720 px is outside 1080..1920 px",
            ),
            (
                json!({"element_name": "x"}),
                400,
                1201,
                "element_description is required",
            ),
        ],
    )
    .await;
    let other_key = server.other_account_key().await;
    for lookup in [format!("{path}/{image_task}"), format!("{path}/crane")] {
        let (status, body) = official_get(&server, Some(&other_key), &lookup).await;
        assert_eq!((status, body["code"].as_i64()), (404, Some(1203)), "{body}");
    }
    let (_, theirs) = official_get(&server, Some(&other_key), path).await;
    assert_eq!(theirs["data"], json!([]));
    // Deleting the element ends its task's visibility.
    let (status, _) = official_post(
        &server,
        &server.key,
        "/v1/general/delete-elements",
        json!({"element_id": element_id}),
    )
    .await;
    assert_eq!(status, 200);
    let (status, gone) =
        official_get(&server, Some(&server.key), &format!("{path}/{clip_task}")).await;
    assert_eq!((status, gone["code"].as_i64()), (404, Some(1203)));
}
