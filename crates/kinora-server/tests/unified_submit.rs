//! `POST /v1/videos` checks: every seed 004 example is accepted, and every rule
//! of the unified spec's tables, broken, gives its documented code and field.

use kinora_core::TaskKind;
use kinora_media::source::MediaSource;
use kinora_server::unified::submit::{parse_submit, MediaSlot};
use serde_json::{json, Value};

fn accepted(body: Value) -> kinora_server::unified::submit::ParsedSubmit {
    parse_submit(&body).unwrap_or_else(|e| panic!("{body} refused: {e:?}"))
}

/// Asserts the body is refused with `code` naming `param`, and the message mentions `words`.
fn refused(body: Value, code: &str, param: Option<&str>, words: &str) {
    let e = match parse_submit(&body) {
        Ok(p) => panic!("{body} accepted as {:?}", p.kind),
        Err(e) => e,
    };
    assert_eq!(e.code, code, "{body}: {e:?}");
    assert_eq!(e.param.as_deref(), param, "{body}: {e:?}");
    assert!(
        e.message.contains(words),
        "{body}: `{}` lacks `{words}`",
        e.message
    );
}

fn with(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    base
}

fn t2v() -> Value {
    json!({"model": "Kling-V2.6", "prompt": "a cat in a garden", "mode": "pro", "seconds": "5"})
}

fn i2v() -> Value {
    json!({"model": "Kling-V2.6", "image": "https://example.com/start.jpg", "mode": "pro", "seconds": "5"})
}

#[test]
fn seed_text2video_examples_are_accepted() {
    let basic = accepted(
        json!({"model": "Kling-V2.6", "prompt": "一只可爱的猫咪在花园里玩耍,阳光明媚", "mode": "pro", "aspect_ratio": "16:9", "seconds": "5"}),
    );
    assert_eq!(
        (basic.model_name.as_str(), basic.kind),
        ("kling-v2-6", TaskKind::Text2Video)
    );
    assert_eq!(basic.request.duration, Some(5));
    assert_eq!(basic.request.aspect_ratio.as_deref(), Some("16:9"));
    let sound = accepted(
        json!({"model": "Kling-V2.6", "prompt": "海浪拍打沙滩,海鸥在天空飞翔", "sound": "on", "mode": "pro", "aspect_ratio": "16:9", "seconds": "5"}),
    );
    assert!(sound.request.sound);
    let camera = accepted(
        json!({"model": "Kling-V2.6", "prompt": "城市夜景,霓虹灯闪烁", "mode": "pro", "aspect_ratio": "16:9", "seconds": "5", "camera_control": {"type": "simple", "config": {"zoom": 5, "horizontal": 0, "vertical": 0, "pan": 0, "tilt": 0, "roll": 0}}}),
    );
    let cc = camera.request.camera_control.expect("camera");
    assert_eq!(
        (cc.kind.as_str(), cc.config.map(|c| c.zoom)),
        ("simple", Some(5.0))
    );
    let preset = accepted(
        json!({"model": "Kling-V2.6", "prompt": "森林中的小溪", "mode": "std", "aspect_ratio": "1:1", "seconds": "5", "camera_control": {"type": "forward_up"}}),
    );
    assert_eq!(
        preset.request.camera_control.map(|c| c.kind),
        Some("forward_up".to_owned())
    );
}

#[test]
fn seed_image2video_examples_are_accepted() {
    let basic = accepted(
        json!({"model": "Kling-V2.6", "image": "https://example.com/start.jpg", "prompt": "画面中的人物开始跳舞", "mode": "pro", "seconds": "5"}),
    );
    assert_eq!(basic.kind, TaskKind::Image2Video);
    assert_eq!(basic.media[0].slot, MediaSlot::Image);
    assert_eq!(
        basic.media[0].source,
        MediaSource::Url("https://example.com/start.jpg".into())
    );
    let frames = accepted(
        json!({"model": "Kling-V2.6", "image": "https://example.com/start.jpg", "image_tail": "https://example.com/end.jpg", "prompt": "人物从站立变为坐下", "mode": "pro", "seconds": "5"}),
    );
    assert_eq!(frames.media.len(), 2);
    let voice = accepted(
        json!({"model": "Kling-V2.6", "image": "https://example.com/person.jpg", "prompt": "男人<<<voice_1>>>说:'你好,世界'", "sound": "on", "voice_list": [{"voice_id": "voice_123"}], "mode": "pro", "seconds": "5"}),
    );
    assert_eq!(voice.request.voice_ids, ["voice_123"]);
    assert!(voice.voice_billed);
    let brush = accepted(
        json!({"model": "Kling-V2.6", "image": "https://example.com/scene.jpg", "prompt": "画面中的物体开始移动", "mode": "pro", "seconds": "5", "static_mask": "https://example.com/static_mask.png", "dynamic_masks": [{"mask": "https://example.com/dynamic_mask.png", "trajectories": [{"x": 100, "y": 200}, {"x": 300, "y": 400}]}]}),
    );
    assert_eq!(brush.trajectories[0][1].x, 300.0);
    assert!(brush
        .media
        .iter()
        .any(|m| m.slot == MediaSlot::DynamicMask(0) && m.param == "dynamic_masks[0].mask"));
    accepted(
        json!({"model": "Kling-V2.6", "image": "https://example.com/landscape.jpg", "prompt": "美丽的风景", "mode": "pro", "seconds": "5", "camera_control": {"type": "simple", "config": {"zoom": 5, "horizontal": 0, "vertical": 0, "pan": 0, "tilt": 0, "roll": 0}}}),
    );
}

#[test]
fn seed_motion_control_examples_are_accepted() {
    let basic = accepted(
        json!({"model": "Kling-V2.6", "action_control": true, "image_url": "https://example.com/person.jpg", "video_url": "https://example.com/dance.mp4", "mode": "pro", "character_orientation": "video"}),
    );
    assert_eq!(basic.kind, TaskKind::MotionControl);
    assert_eq!(basic.keep_original_sound, Some(true));
    let prompted = accepted(
        json!({"model": "Kling-V2.6", "action_control": true, "image_url": "https://example.com/person.jpg", "video_url": "https://example.com/dance.mp4", "mode": "pro", "character_orientation": "video", "prompt": "在舞台上表演", "keep_original_sound": "yes"}),
    );
    assert_eq!(prompted.request.prompt, "在舞台上表演");
    let image = accepted(
        json!({"model": "Kling-V2.6", "action_control": true, "image_url": "https://example.com/person.jpg", "video_url": "https://example.com/action.mp4", "mode": "std", "character_orientation": "image", "keep_original_sound": "no"}),
    );
    assert_eq!(image.character_orientation.as_deref(), Some("image"));
    assert_eq!(image.keep_original_sound, Some(false));
}

#[test]
fn model_names_and_routing() {
    for name in ["Kling-V2.6", "kling-v2-6", "KLING-V2.6"] {
        assert_eq!(
            accepted(with(t2v(), json!({"model": name}))).model_name,
            "kling-v2-6"
        );
    }
    refused(
        with(t2v(), json!({"model": "kling-v9"})),
        "invalid_model",
        Some("model"),
        "kling-v9",
    );
    refused(
        json!({"prompt": "x"}),
        "missing_parameter",
        Some("model"),
        "required",
    );
    refused(json!([1, 2]), "invalid_json", None, "object");
    // action_control wins over image; strings work; other values are refused.
    let routed = accepted(
        json!({"model": "Kling-V2.6", "action_control": "TRUE", "image": "https://e.com/a.jpg", "image_url": "https://e.com/p.jpg", "video_url": "https://e.com/v.mp4", "mode": "std", "character_orientation": "image"}),
    );
    assert_eq!(routed.kind, TaskKind::MotionControl);
    refused(
        with(t2v(), json!({"action_control": "yes"})),
        "invalid_parameter",
        Some("action_control"),
        "true or false",
    );
    // image_url + video_url without action_control is text2video, and the hint says so.
    refused(
        json!({"model": "Kling-V2.6", "image_url": "https://e.com/p.jpg", "video_url": "https://e.com/v.mp4"}),
        "missing_parameter",
        Some("prompt"),
        "action_control: true",
    );
    // An empty image does not route to image2video.
    assert_eq!(
        accepted(with(t2v(), json!({"image": ""}))).kind,
        TaskKind::Text2Video
    );
}

#[test]
fn text2video_field_rules() {
    refused(
        with(t2v(), json!({"prompt": ""})),
        "invalid_parameter",
        Some("prompt"),
        "1-2500",
    );
    refused(
        with(t2v(), json!({"prompt": "x".repeat(2501)})),
        "invalid_parameter",
        Some("prompt"),
        "2501",
    );
    accepted(with(t2v(), json!({"prompt": "字".repeat(2500)})));
    refused(
        with(t2v(), json!({"negative_prompt": "n".repeat(2501)})),
        "invalid_parameter",
        Some("negative_prompt"),
        "2500",
    );
    refused(
        with(t2v(), json!({"sound": "loud"})),
        "invalid_parameter",
        Some("sound"),
        "on",
    );
    assert!(accepted(with(t2v(), json!({"sound": true}))).request.sound);
    refused(
        with(t2v(), json!({"mode": "4k"})),
        "invalid_parameter",
        Some("mode"),
        "std, pro",
    );
    refused(
        with(t2v(), json!({"aspect_ratio": "4:3"})),
        "invalid_parameter",
        Some("aspect_ratio"),
        "16:9",
    );
    refused(
        with(t2v(), json!({"seconds": "7"})),
        "invalid_parameter",
        Some("seconds"),
        "5 or 10",
    );
    refused(
        with(t2v(), json!({"seconds": "5s"})),
        "invalid_parameter",
        Some("seconds"),
        "whole number",
    );
    assert_eq!(
        accepted(with(t2v(), json!({"seconds": null, "duration": 10})))
            .request
            .duration,
        Some(10)
    );
    // Defaults.
    let d = accepted(json!({"model": "Kling-V2.6", "prompt": "p"}));
    assert_eq!(
        (
            d.request.mode.as_deref(),
            d.request.aspect_ratio.as_deref(),
            d.request.duration,
            d.request.sound
        ),
        (Some("std"), Some("16:9"), Some(5), false)
    );
    // Sound on needs pro (capability table).
    refused(
        json!({"model": "Kling-V2.6", "prompt": "p", "sound": "on"}),
        "unsupported_combination",
        Some("sound"),
        "model/mode/duration(kling-v2-6/std/5) is not supported with sound on",
    );
}

#[test]
fn camera_control_rules() {
    let cam = |c: Value| with(t2v(), json!({"camera_control": c}));
    refused(
        cam(json!({"type": "simple", "config": {"zoom": 5, "pan": 1}})),
        "unsupported_combination",
        Some("camera_control.config"),
        "pan, zoom",
    );
    refused(
        cam(json!({"type": "simple", "config": {"zoom": 0}})),
        "unsupported_combination",
        Some("camera_control.config"),
        "none",
    );
    refused(
        cam(json!({"type": "simple", "config": {"zoom": 10.5}})),
        "invalid_parameter",
        Some("camera_control.config.zoom"),
        "-10 to 10",
    );
    refused(
        cam(json!({"type": "simple", "config": {"dolly": 1}})),
        "invalid_parameter",
        Some("camera_control.config.dolly"),
        "not a camera axis",
    );
    refused(
        cam(json!({"type": "simple"})),
        "missing_parameter",
        Some("camera_control.config"),
        "required",
    );
    refused(
        cam(json!({"type": "down_back", "config": {"zoom": 1}})),
        "unsupported_combination",
        Some("camera_control.config"),
        "absent",
    );
    refused(
        cam(json!({"type": "orbit"})),
        "invalid_parameter",
        Some("camera_control.type"),
        "left_turn_forward",
    );
    refused(
        cam(json!({"type": "simple", "config": {"zoom": 1}, "speed": 2})),
        "invalid_parameter",
        Some("camera_control.speed"),
        "not a camera_control field",
    );
    refused(
        cam(json!("zoom")),
        "invalid_parameter",
        Some("camera_control"),
        "object",
    );
    // Type absent with config: simple. Both absent: no camera. Fractions are fine.
    let implied = accepted(cam(json!({"config": {"tilt": -2.5}})));
    assert_eq!(
        implied
            .request
            .camera_control
            .map(|c| (c.kind, c.config.map(|k| k.tilt))),
        Some(("simple".into(), Some(-2.5)))
    );
    assert_eq!(accepted(cam(json!({}))).request.camera_control, None);
}

#[test]
fn image2video_groups_voices_and_capabilities() {
    let brush = json!({"static_mask": "https://e.com/m.png"});
    let camera = json!({"camera_control": {"type": "forward_up"}});
    refused(
        with(with(i2v(), brush.clone()), camera.clone()),
        "unsupported_combination",
        None,
        "motion brush (static_mask, dynamic_masks) and camera (camera_control)",
    );
    refused(
        with(
            with(i2v(), json!({"image_tail": "https://e.com/end.jpg"})),
            camera,
        ),
        "unsupported_combination",
        None,
        "first and last frame (image_tail)",
    );
    // image_tail alone, std mode, sound on: the capability table names the combination.
    refused(
        json!({"model": "Kling-V2.6", "image_tail": "https://e.com/end.jpg", "mode": "pro"}),
        "unsupported_combination",
        Some("image_tail"),
        "image_tail without image",
    );
    refused(
        with(
            i2v(),
            json!({"image_tail": "https://e.com/end.jpg", "mode": "std"}),
        ),
        "unsupported_combination",
        Some("image_tail"),
        "kling-v2-6/std/5",
    );
    refused(
        with(
            i2v(),
            json!({"image_tail": "https://e.com/end.jpg", "sound": "on"}),
        ),
        "unsupported_combination",
        Some("image_tail"),
        "sound off",
    );
    refused(
        with(with(i2v(), brush.clone()), json!({"seconds": 10})),
        "unsupported_combination",
        Some("seconds"),
        "motion brush",
    );
    // Voices.
    refused(
        with(i2v(), json!({"voice_list": [{"voice_id": "a"}]})),
        "unsupported_combination",
        Some("voice_list"),
        "sound",
    );
    refused(
        with(
            i2v(),
            json!({"sound": "on", "voice_list": [{"voice_id": "a"}, {"voice_id": "b"}, {"voice_id": "c"}]}),
        ),
        "invalid_parameter",
        Some("voice_list"),
        "at most 2",
    );
    refused(
        with(
            i2v(),
            json!({"sound": "on", "prompt": "<<<voice_2>>> hi", "voice_list": [{"voice_id": "a"}]}),
        ),
        "unsupported_combination",
        Some("prompt"),
        "<<<voice_2>>>",
    );
    refused(
        with(
            i2v(),
            json!({"sound": "on", "voice_list": [{"voice_id": ""}]}),
        ),
        "invalid_parameter",
        Some("voice_list[0].voice_id"),
        "non-empty",
    );
    let numeric = accepted(with(
        i2v(),
        json!({"sound": "on", "prompt": "<<voice_1>> is not a tag", "voice_list": [{"voice_id": 42}]}),
    ));
    assert_eq!(numeric.request.voice_ids, ["42"]);
    assert!(
        !numeric.voice_billed,
        "no tag in the prompt, no voice pricing"
    );
    // cfg_scale: only 0.5, and it is dropped.
    assert_eq!(
        accepted(with(i2v(), json!({"cfg_scale": 0.5})))
            .request
            .cfg_scale,
        None
    );
    refused(
        with(i2v(), json!({"cfg_scale": 0.7})),
        "unsupported_combination",
        Some("cfg_scale"),
        "only 0.5",
    );
    refused(
        with(i2v(), json!({"cfg_scale": 2})),
        "invalid_parameter",
        Some("cfg_scale"),
        "0 to 1",
    );
    // Base64 and data URIs are inputs too; a bad data URI names its field.
    let b64 = accepted(with(
        i2v(),
        json!({"image": "data:image/png;base64,iVBORw0KGgo="}),
    ));
    assert_eq!(
        b64.media[0].source,
        MediaSource::Base64("iVBORw0KGgo=".into())
    );
}

#[test]
fn motion_brush_rules() {
    let masks = |m: Value| with(i2v(), json!({"dynamic_masks": m}));
    let point = json!({"x": 1, "y": 2});
    refused(
        masks(json!([{"mask": "https://e.com/m.png", "trajectories": [point]}])),
        "invalid_parameter",
        Some("dynamic_masks[0].trajectories"),
        "2-77",
    );
    refused(
        masks(json!([{"mask": "https://e.com/m.png", "trajectories": vec![point.clone(); 78]}])),
        "invalid_parameter",
        Some("dynamic_masks[0].trajectories"),
        "got 78",
    );
    refused(
        masks(json!([{"trajectories": [point, point]}])),
        "missing_parameter",
        Some("dynamic_masks[0].mask"),
        "required",
    );
    refused(
        masks(json!([{"mask": "https://e.com/m.png"}])),
        "missing_parameter",
        Some("dynamic_masks[0].trajectories"),
        "required",
    );
    refused(
        masks(json!([{"mask": "https://e.com/m.png", "trajectories": [{"x": -1, "y": 0}, point]}])),
        "invalid_parameter",
        Some("dynamic_masks[0].trajectories[0].x"),
        "at least 0",
    );
    let seven = vec![json!({"mask": "https://e.com/m.png", "trajectories": [point, point]}); 7];
    refused(
        masks(json!(seven)),
        "invalid_parameter",
        Some("dynamic_masks"),
        "1-6",
    );
}

#[test]
fn motion_control_rules_and_common_fields() {
    let mc = json!({"model": "Kling-V2.6", "action_control": true, "image_url": "https://e.com/p.jpg", "video_url": "https://e.com/v.mp4", "mode": "pro", "character_orientation": "video"});
    for (missing, word) in [
        ("image_url", "image_url"),
        ("video_url", "video_url"),
        ("mode", "mode"),
        ("character_orientation", "character_orientation"),
    ] {
        let mut body = mc.clone();
        body.as_object_mut().map(|o| o.remove(missing));
        refused(body, "missing_parameter", Some(missing), word);
    }
    refused(
        with(mc.clone(), json!({"video_url": "AAAA"})),
        "invalid_parameter",
        Some("video_url"),
        "http",
    );
    refused(
        with(mc.clone(), json!({"character_orientation": "left"})),
        "invalid_parameter",
        Some("character_orientation"),
        "image, video",
    );
    refused(
        with(mc.clone(), json!({"keep_original_sound": true})),
        "invalid_parameter",
        Some("keep_original_sound"),
        "yes, no",
    );
    // Motion control has no seconds or aspect_ratio: they are kept as unknown parameters.
    let kept = accepted(with(mc, json!({"seconds": 5, "aspect_ratio": "1:1"})));
    assert_eq!(kept.request.extra.get("aspect_ratio"), Some(&json!("1:1")));
    // Common fields.
    refused(
        with(t2v(), json!({"external_task_id": "x".repeat(129)})),
        "invalid_parameter",
        Some("external_task_id"),
        "1-128",
    );
    assert_eq!(
        accepted(with(t2v(), json!({"external_task_id": ""}))).external_task_id,
        None
    );
    refused(
        with(t2v(), json!({"callback_url": "ftp://e.com/hook"})),
        "invalid_parameter",
        Some("callback_url"),
        "http",
    );
    refused(
        with(
            t2v(),
            json!({"callback_url": format!("https://e.com/{}", "a".repeat(2048))}),
        ),
        "invalid_parameter",
        Some("callback_url"),
        "2048",
    );
    let ok = accepted(with(
        t2v(),
        json!({"callback_url": "https://e.com/hook", "external_task_id": "order-7"}),
    ));
    assert_eq!(
        (ok.callback_url.as_deref(), ok.external_task_id.as_deref()),
        (Some("https://e.com/hook"), Some("order-7"))
    );
}

#[test]
fn unknown_parameters_are_kept_reserved_names_dropped() {
    let p = accepted(with(
        t2v(),
        json!({"style": {"grain": 2}, "watermark": [1], "model_name": "kling-v1", "image_list": [], "action_control": false}),
    ));
    let keys: Vec<&str> = p.request.extra.keys().map(String::as_str).collect();
    assert_eq!(keys, ["style", "watermark"]);
}

fn o1(extra: Value) -> Value {
    with(
        json!({"model": "Kling-Video-O1", "prompt": "a walk in Tokyo", "aspect_ratio": "16:9"}),
        extra,
    )
}

#[test]
fn seed_omni_examples_are_accepted() {
    let text = accepted(
        json!({"model": "Kling-Video-O1", "prompt": "一个宇航员在月球上行走,背景是地球", "mode": "pro", "aspect_ratio": "16:9", "seconds": "5"}),
    );
    assert_eq!(
        (text.model_name.as_str(), text.kind),
        ("kling-video-o1", TaskKind::OmniVideo)
    );
    assert_eq!(text.request.duration, Some(5));
    let first = accepted(
        json!({"model": "Kling-Video-O1", "prompt": "让花被风吹动", "first_frame_url": "http://wanx.alicdn.com/material/20250318/stylization_all_1.jpeg", "seconds": 5}),
    );
    assert_eq!(first.media[0].slot, MediaSlot::Image);
    assert_eq!(
        first.request.mode.as_deref(),
        Some("pro"),
        "omni defaults to pro"
    );
    let mixed = accepted(
        json!({"model": "Kling-Video-O1", "prompt": "<<<image_1>>>在东京街头漫步,偶遇<<<element_1>>>和<<<element_2>>>", "reference_images": ["https://p4-kling.klingai.com/bs2/upload-ylab-stunt/kling/element/%E5%88%BA%E5%AE%A2-%E5%85%B6%E4%BB%96%E5%8F%82%E8%80%831.jpg?x-kcdn-pid=112452"], "element_list": [{"element_id": "146"}, {"element_id": "145"}], "mode": "pro", "aspect_ratio": "1:1", "seconds": "5"}),
    );
    assert_eq!(mixed.element_ids, ["146", "145"]);
    assert_eq!(mixed.media[0].slot, MediaSlot::ReferenceImage(0));
    let edit = accepted(
        json!({"model": "Kling-Video-O1", "prompt": "给<<<video_1>>>中的女孩,拿上<<<image_1>>>中的花", "reference_images": ["http://wanx.alicdn.com/material/20250318/stylization_all_1.jpeg"], "video_list": [{"video_url": "https://cdn.wanx.aliyuncs.com/static/demo-wan26/vace.mp4", "refer_type": "base", "keep_original_sound": "yes"}], "mode": "pro"}),
    );
    assert_eq!(edit.video_refer, Some(("base".to_owned(), true)));
    assert_eq!(
        edit.request.duration, None,
        "a video edit lasts as long as its input"
    );
    let feature = accepted(
        json!({"model": "Kling-Video-O1", "prompt": "参考<<<video_1>>>的运镜方式,生成一段视频:<<<element_1>>>在东京街头漫步", "element_list": [{"element_id": "12345"}], "video_list": [{"video_url": "https://cdn.wanx.aliyuncs.com/static/demo-wan26/vace.mp4", "refer_type": "feature"}], "mode": "pro", "aspect_ratio": "1:1", "seconds": "5"}),
    );
    assert_eq!(feature.video_refer, Some(("feature".to_owned(), true)));
    let next_shot = accepted(
        json!({"model": "Kling-Video-O1", "prompt": "基于<<<video_1>>>,生成下一个镜头", "video_list": [{"video_url": "https://cdn.wanx.aliyuncs.com/static/demo-wan26/vace.mp4", "refer_type": "feature", "keep_original_sound": "yes"}], "mode": "pro"}),
    );
    assert_eq!(next_shot.request.aspect_ratio, None);
    assert!(next_shot
        .media
        .iter()
        .any(|m| m.slot == MediaSlot::ReferenceVideo));
}

#[test]
fn omni_image_list_precedence_and_order() {
    // A non-empty image_list wins; flat fields are then not even validated.
    let native = accepted(o1(
        json!({"aspect_ratio": null, "image_list": [{"image_url": "https://e.com/f.jpg", "type": "first_frame"}, "https://e.com/r.jpg"], "first_frame_url": 7, "reference_images": "not an array"}),
    ));
    let slots: Vec<MediaSlot> = native.media.iter().map(|m| m.slot).collect();
    assert_eq!(slots, [MediaSlot::Image, MediaSlot::ReferenceImage(0)]);
    assert!(
        native.request.extra.is_empty(),
        "ignored flat fields are not forwarded"
    );
    // Flat: references first, then the first and last frames.
    let flat = accepted(
        json!({"model": "kling-o1", "prompt": "<<<image_2>>>", "reference_images": ["https://e.com/a.jpg"], "first_frame_url": "https://e.com/f.jpg", "seconds": 7}),
    );
    let params: Vec<&str> = flat.media.iter().map(|m| m.param.as_str()).collect();
    assert_eq!(params, ["reference_images[0]", "first_frame_url"]);
    let both = accepted(
        json!({"model": "kling-o1", "prompt": "p", "first_frame_url": "https://e.com/f.jpg", "last_frame_url": "https://e.com/l.jpg"}),
    );
    let slots: Vec<MediaSlot> = both.media.iter().map(|m| m.slot).collect();
    assert_eq!(slots, [MediaSlot::Image, MediaSlot::ImageTail]);
    refused(
        o1(json!({"image_list": [{"image_url": "https://e.com/a.jpg", "type": "middle"}]})),
        "invalid_parameter",
        Some("image_list[0].type"),
        "first_frame or end_frame",
    );
    refused(
        o1(json!({"image_list": [{"type": "first_frame"}]})),
        "missing_parameter",
        Some("image_list[0].image_url"),
        "non-empty",
    );
    // image and image_tail mean nothing here and are dropped; action_control is consumed.
    let dropped = accepted(o1(
        json!({"image": "https://e.com/a.jpg", "action_control": true, "style": 1}),
    ));
    assert_eq!(dropped.request.extra.keys().collect::<Vec<_>>(), ["style"]);
    assert!(dropped.media.is_empty());
}

#[test]
fn omni_limits() {
    let frame = |t: &str| json!({"image_url": "https://e.com/x.jpg", "type": t});
    let reference = json!({"image_url": "https://e.com/r.jpg"});
    let element = |id: u64| json!({"element_id": id});
    let video = |refer: &str| json!([{"video_url": "https://e.com/v.mp4", "refer_type": refer}]);
    // 1: an end frame needs a first frame. 6: one of each at most.
    refused(
        o1(json!({"aspect_ratio": null, "image_list": [frame("end_frame")]})),
        "unsupported_combination",
        Some("image_list"),
        "end frame alone",
    );
    refused(
        o1(
            json!({"aspect_ratio": null, "image_list": [frame("first_frame"), frame("first_frame")]}),
        ),
        "unsupported_combination",
        Some("image_list"),
        "at most one",
    );
    // 2: more than 2 images, no end frame.
    refused(
        o1(
            json!({"aspect_ratio": null, "image_list": [frame("first_frame"), frame("end_frame"), reference]}),
        ),
        "unsupported_combination",
        Some("image_list"),
        "more than 2 images",
    );
    // 3: images + elements ≤ 7, or ≤ 4 with a video.
    let eight: Vec<Value> = (0..8).map(|_| reference.clone()).collect();
    refused(
        o1(json!({"image_list": eight})),
        "unsupported_combination",
        Some("element_list"),
        "at most 7",
    );
    refused(
        o1(
            json!({"image_list": [reference, reference], "element_list": [element(1), element(2), element(3)], "video_list": video("feature")}),
        ),
        "unsupported_combination",
        Some("element_list"),
        "at most 4 with a reference video",
    );
    // 4: one video.
    refused(
        o1(
            json!({"video_list": [{"video_url": "https://e.com/a.mp4"}, {"video_url": "https://e.com/b.mp4"}]}),
        ),
        "unsupported_combination",
        Some("video_list"),
        "at most 1",
    );
    // 5: no frames with a video edit.
    refused(
        o1(
            json!({"aspect_ratio": null, "image_list": [frame("first_frame")], "video_list": video("base")}),
        ),
        "unsupported_combination",
        Some("video_list[0].refer_type"),
        "cannot have a first or last frame",
    );
    // 7: with a first frame, at most 3 elements.
    refused(
        o1(
            json!({"aspect_ratio": null, "first_frame_url": "https://e.com/f.jpg", "element_list": [element(1), element(2), element(3), element(4)]}),
        ),
        "unsupported_combination",
        Some("element_list"),
        "at most 3 elements",
    );
    // 8, 9: the video item.
    refused(
        o1(json!({"video_list": [{"video_url": ""}]})),
        "missing_parameter",
        Some("video_list[0].video_url"),
        "required",
    );
    refused(
        o1(json!({"video_list": [{"video_url": "https://e.com/v.mp4", "refer_type": "style"}]})),
        "invalid_parameter",
        Some("video_list[0].refer_type"),
        "base or feature",
    );
    refused(
        o1(
            json!({"video_list": [{"video_url": "https://e.com/v.mp4", "keep_original_sound": "maybe"}]}),
        ),
        "invalid_parameter",
        Some("video_list[0].keep_original_sound"),
        "yes or no",
    );
    refused(
        o1(json!({"element_list": [{"element_id": "abc"}]})),
        "invalid_parameter",
        Some("element_list[0].element_id"),
        "decimal",
    );
}

#[test]
fn omni_duration_aspect_ratio_and_references() {
    // Text only and a first frame alone: 5 or 10. Otherwise 3-10.
    refused(
        o1(json!({"seconds": 7})),
        "unsupported_combination",
        Some("seconds"),
        "text-to-video",
    );
    refused(
        json!({"model": "Kling-Video-O1", "prompt": "p", "first_frame_url": "https://e.com/f.jpg", "seconds": 3}),
        "unsupported_combination",
        Some("seconds"),
        "first frame alone",
    );
    assert_eq!(
        accepted(o1(
            json!({"reference_images": ["https://e.com/r.jpg"], "seconds": "3"})
        ))
        .request
        .duration,
        Some(3)
    );
    refused(
        o1(json!({"reference_images": ["https://e.com/r.jpg"], "seconds": 11})),
        "invalid_parameter",
        Some("seconds"),
        "3 to 10",
    );
    // aspect_ratio: forbidden with a first frame or a video edit, optional with a feature
    // video, required otherwise.
    refused(
        o1(json!({"first_frame_url": "https://e.com/f.jpg"})),
        "unsupported_combination",
        Some("aspect_ratio"),
        "must be absent",
    );
    refused(
        o1(json!({"video_list": [{"video_url": "https://e.com/v.mp4"}]})),
        "unsupported_combination",
        Some("aspect_ratio"),
        "must be absent",
    );
    refused(
        json!({"model": "Kling-Video-O1", "prompt": "p"}),
        "missing_parameter",
        Some("aspect_ratio"),
        "required",
    );
    refused(
        json!({"model": "Kling-Video-O1", "aspect_ratio": "1:1"}),
        "missing_parameter",
        Some("prompt"),
        "required",
    );
    // Prompt references point into their lists.
    refused(
        o1(json!({"prompt": "<<<image_2>>>", "reference_images": ["https://e.com/r.jpg"]})),
        "unsupported_combination",
        Some("prompt"),
        "<<<image_2>>>",
    );
    refused(
        o1(json!({"prompt": "<<<element_1>>>"})),
        "unsupported_combination",
        Some("prompt"),
        "<<<element_1>>>",
    );
    refused(
        o1(json!({"prompt": "<<<video_1>>>"})),
        "unsupported_combination",
        Some("prompt"),
        "needs a video",
    );
    refused(
        o1(
            json!({"aspect_ratio": null, "prompt": "<<<video_2>>>", "video_list": [{"video_url": "https://e.com/v.mp4", "refer_type": "feature"}]}),
        ),
        "unsupported_combination",
        Some("prompt"),
        "only <<<video_1>>>",
    );
    accepted(o1(
        json!({"prompt": "<<image_9>> and <<<image_x>>> are plain text"}),
    ));
}
