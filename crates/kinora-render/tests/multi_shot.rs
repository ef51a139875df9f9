//! Multi-shot clips (§3.6): hard cuts exactly at the shot boundaries, an IDR at every cut, the
//! main prompt ignored, and the refusals for inputs that cannot be cut into shots.

mod common;

use std::io::Cursor;

use kinora_render::camera::{Axis, CameraControl};
use kinora_render::engine::{CancelFlag, EnginePool, RenderError, RenderOutput};
use kinora_render::kinds::image2video::image2video_frames;
use kinora_render::plan::{Aspect, Mode, Size};
use kinora_render::spec::MultiShot;
use kinora_render::{Asset, RenderKind, RenderSpec};

use common::{decoded_luma, mean_abs_diff};

fn render(spec: &RenderSpec) -> Result<RenderOutput, RenderError> {
    let pool = EnginePool::new(2).unwrap();
    kinora_render::render(spec, &pool, &CancelFlag::new())
}

fn shots(durations: &[u32]) -> MultiShot {
    common::customized_shots(durations, "the harbour at dusk")
}

/// Asserts that the frame-to-frame difference peaks exactly at `cuts` and only there: every
/// cut's difference is at least three times the largest difference anywhere else.
fn assert_cuts_only_at(lumas: &[Vec<u8>], cuts: &[usize]) {
    let diffs: Vec<f64> = (1..lumas.len())
        .map(|i| mean_abs_diff(&lumas[i - 1], &lumas[i]))
        .collect();
    let at = |i: usize| diffs[i - 1];
    let smallest_cut = cuts.iter().map(|&c| at(c)).fold(f64::INFINITY, f64::min);
    let largest_other = (1..lumas.len())
        .filter(|i| !cuts.contains(i))
        .map(at)
        .fold(0.0, f64::max);
    assert!(
        smallest_cut > 3.0 * largest_other && smallest_cut > 2.0,
        "cuts {cuts:?}: smallest cut difference {smallest_cut:.2}, largest elsewhere \
         {largest_other:.2}"
    );
}

#[test]
fn text2video_shots_cut_hard_at_their_boundaries() {
    let spec = RenderSpec {
        mode: Mode::Std,
        aspect: Aspect::Landscape16x9,
        duration_s: Some(5),
        sound: true,
        multi_shot: Some(shots(&[2, 1, 2])),
        ..RenderSpec::text2video("ignored in multi-shot mode")
    };
    let out = render(&spec).unwrap();
    assert_eq!(out.meta.frame_count, 120);
    assert!(out.meta.has_audio);
    // Every shot begins with an IDR frame.
    for cut in [0, 48, 72] {
        assert!(
            out.meta.keyframes.contains(&cut),
            "{:?}",
            out.meta.keyframes
        );
    }
    let lumas = decoded_luma(&out.mp4);
    assert_eq!(lumas.len(), 120);
    assert_cuts_only_at(&lumas, &[48, 72]);

    // Kling ignores the main prompt in multi-shot mode, and so does the picture.
    let other = RenderSpec {
        prompt: "a completely different prompt".into(),
        ..spec.clone()
    };
    assert_eq!(decoded_luma(&render(&other).unwrap().mp4), lumas);
    // The shot prompts do count.
    let mut changed = spec.clone();
    if let Some(MultiShot::Customize(list)) = &mut changed.multi_shot {
        list[1].prompt = "a lighthouse in fog".into();
    }
    let changed = decoded_luma(&render(&changed).unwrap().mp4);
    assert_eq!(changed[..48], lumas[..48]);
    assert_ne!(changed[48..72], lumas[48..72]);
}

#[test]
fn intelligent_shots_split_a_multi_image_clip_evenly() {
    let card = |r: u8, g: u8, b: u8| {
        let img = image::RgbImage::from_fn(320, 320, |x, y| {
            let k = ((x / 40 + y / 40) % 2) as u8;
            image::Rgb([r / (1 + k), g / (1 + k), b / (1 + k)])
        });
        let mut out = Cursor::new(Vec::new());
        image::DynamicImage::ImageRgb8(img)
            .write_to(&mut out, image::ImageFormat::Png)
            .unwrap();
        Asset::new(out.into_inner())
    };
    let spec = RenderSpec {
        mode: Mode::Std,
        aspect: Aspect::Square1x1,
        duration_s: Some(7),
        multi_shot: Some(MultiShot::Intelligence),
        references: vec![card(230, 80, 40), card(40, 90, 220)],
        ..RenderSpec::new(RenderKind::Omni, "two cards in a storm")
    };
    let out = render(&spec).unwrap();
    assert_eq!(out.meta.frame_count, 168);
    assert_eq!(out.meta.keyframes.first(), Some(&0));
    assert!(out.meta.keyframes.contains(&96), "{:?}", out.meta.keyframes);
    assert_cuts_only_at(&decoded_luma(&out.mp4), &[96]);
}

/// A colourful, detailed picture, so that framing it anew changes most pixels.
fn rich_picture() -> Asset {
    let img = image::RgbImage::from_fn(960, 540, |x, y| {
        let (fx, fy) = (f64::from(x), f64::from(y));
        let v = |a: f64, b: f64, p: f64| (127.5 + 120.0 * (fx / a + fy / b + p).sin()) as u8;
        image::Rgb([v(23.0, 71.0, 0.0), v(57.0, 19.0, 1.0), v(31.0, 43.0, 2.0)])
    });
    let mut out = Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    Asset::new(out.into_inner())
}

fn i2v(multi: Option<MultiShot>, camera: Option<CameraControl>, seconds: u32) -> RenderSpec {
    RenderSpec {
        first_frame: Some(rich_picture()),
        duration_s: Some(seconds),
        multi_shot: multi,
        camera,
        ..RenderSpec::new(RenderKind::Image2Video, "a patterned test chart")
    }
}

#[test]
fn image2video_shots_frame_the_picture_anew() {
    let small = Some(Size::new(384, 216));
    let multi = image2video_frames(&i2v(Some(shots(&[2, 3, 1])), None, 6), small, 2).unwrap();
    assert_eq!(multi.len(), 144);
    let lumas: Vec<Vec<u8>> = multi.iter().map(|f| f.y.data.clone()).collect();
    assert_cuts_only_at(&lumas, &[48, 120]);
    // Shot 1 starts on the picture exactly, as a single-shot clip does.
    let single = image2video_frames(&i2v(None, None, 5), small, 1).unwrap();
    assert_eq!(multi[0], single[0]);

    // A camera_control runs once per shot: eased from rest at every shot start.
    let pan = CameraControl::Simple {
        axis: Axis::Pan,
        value: 8.0,
    };
    let frames = image2video_frames(&i2v(Some(shots(&[2, 3])), Some(pan), 5), small, 2).unwrap();
    let step = |i: usize| mean_abs_diff(&frames[i - 1].y.data, &frames[i].y.data);
    // Slow at each shot's ends, fastest in its middle.
    assert!(step(24) > 2.0 * step(1), "{} vs {}", step(24), step(1));
    assert!(step(84) > 2.0 * step(49), "{} vs {}", step(84), step(49));
}

#[test]
fn refuses_what_cannot_be_cut_into_shots() {
    let message = |spec: &RenderSpec| match render(spec) {
        Err(RenderError::Client(m)) => m,
        other => panic!("expected a client error, got {:?}", other.map(|o| o.meta)),
    };
    let mut spec = i2v(Some(shots(&[2, 3])), None, 5);
    spec.last_frame = Some(rich_picture());
    assert!(message(&spec).contains("image_tail"), "{}", message(&spec));

    let spec = i2v(Some(shots(&[2, 2])), None, 5);
    assert!(
        message(&spec).contains("add up to 4 s but duration is 5 s"),
        "{}",
        message(&spec)
    );

    let spec = RenderSpec {
        multi_shot: Some(shots(&[1, 1, 1, 1, 1, 1, 1])),
        duration_s: Some(7),
        ..RenderSpec::text2video("seven")
    };
    assert!(message(&spec).contains("1-6 shots"), "{}", message(&spec));

    let spec = RenderSpec {
        multi_shot: Some(MultiShot::Intelligence),
        references: vec![rich_picture()],
        ..RenderSpec::new(RenderKind::MultiImage2Video, "cards")
    };
    assert!(
        message(&spec).contains("multi-image2video"),
        "{}",
        message(&spec)
    );
}
