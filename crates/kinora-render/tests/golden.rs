//! Golden hashes (§4.5): a fixed set of specs, at least one per render kind and control, and
//! the SHA-256 of what the engine makes of them, committed per engine revision and target
//! architecture in `tests/golden/<arch>-<revision>.txt`.
//!
//! Frame-level cases hash the pre-encode frames (most at the tiny test size 192×108); file
//! cases hash the MP4, the cover JPEG and the labelled copy. A change that alters any of them
//! must bump the engine revision (`seed::REVISION`) and regenerate the table:
//!
//! ```sh
//! KINORA_BLESS=1 cargo test -p kinora-render --test golden
//! ```
//!
//! The table gates on x86_64; elsewhere the comparison is printed, not asserted, until a
//! cross-architecture run shows the bytes agree.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use kinora_render::camera::{Axis, AxisValues, CameraControl};
use kinora_render::engine::{CancelFlag, EnginePool, RenderOutput};
use kinora_render::frame::I420Frame;
use kinora_render::kinds::extend::extend_continuation_frames;
use kinora_render::kinds::feature_reference::feature_reference_frames;
use kinora_render::kinds::image2video::image2video_frames;
use kinora_render::kinds::motion_control::motion_control_frames;
use kinora_render::kinds::procedural::text2video_frames;
use kinora_render::kinds::video_edit::video_edit_frames;
use kinora_render::plan::{Aspect, Mode, Size};
use kinora_render::seed::REVISION;
use kinora_render::spec::{
    CharacterOrientation, DynamicMask, MotionControlInput, VideoReferKind, VideoReference,
};
use kinora_render::{Asset, RenderError, RenderKind, RenderSpec};
use sha2::{Digest, Sha256};

const TINY: Size = Size::new(192, 108);
const WRITE_SWITCH: &str = "KINORA_BLESS";

fn hex(digest: impl AsRef<[u8]>) -> String {
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Every frame's size and visible samples (row padding excluded), in order.
fn frames_hash(frames: &[I420Frame]) -> String {
    let mut h = Sha256::new();
    for frame in frames {
        h.update((frame.width() as u32).to_le_bytes());
        h.update((frame.height() as u32).to_le_bytes());
        for plane in [&frame.y, &frame.u, &frame.v] {
            for y in 0..plane.height {
                h.update(plane.row(y));
            }
        }
    }
    hex(h.finalize())
}

/// A smooth picture with detail at several scales, lossless (PNG) so that only the engine
/// decides the pixels.
fn picture(w: u32, h: u32, tint: f64) -> Asset {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let (u, v) = (f64::from(x) / f64::from(w), f64::from(y) / f64::from(h));
        let ripple = 30.0 * libm::sin(u * 23.0 + tint) * libm::cos(v * 17.0);
        image::Rgb([
            (40.0 + 170.0 * u + ripple).clamp(0.0, 255.0) as u8,
            (60.0 + 140.0 * v - ripple).clamp(0.0, 255.0) as u8,
            (200.0 - 120.0 * u * v + tint * 20.0).clamp(0.0, 255.0) as u8,
        ])
    });
    png(image::DynamicImage::ImageRgb8(img))
}

fn png(img: image::DynamicImage) -> Asset {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("PNG encoding in memory");
    Asset::new(out.into_inner())
}

/// White inside the rectangle (x, y, w, h), black elsewhere; alpha-painted when `alpha`.
fn mask(size: (u32, u32), rect: (u32, u32, u32, u32), alpha: bool) -> Asset {
    let inside =
        |x: u32, y: u32| x >= rect.0 && x < rect.0 + rect.2 && y >= rect.1 && y < rect.1 + rect.3;
    let img = image::RgbaImage::from_fn(size.0, size.1, |x, y| {
        let on = if inside(x, y) { 255 } else { 0 };
        if alpha {
            image::Rgba([0, 0, 0, on])
        } else {
            image::Rgba([on, on, on, 255])
        }
    });
    png(image::DynamicImage::ImageRgba8(img))
}

fn i2v(camera: Option<CameraControl>) -> RenderSpec {
    RenderSpec {
        duration_s: Some(2),
        camera,
        first_frame: Some(picture(320, 180, 0.0)),
        ..RenderSpec::new(RenderKind::Image2Video, "a harbour at dusk, boats drifting")
    }
}

fn t2v(prompt: &str, aspect: Aspect, seconds: u32) -> RenderSpec {
    RenderSpec {
        aspect,
        duration_s: Some(seconds),
        ..RenderSpec::text2video(prompt)
    }
}

fn render(spec: &RenderSpec) -> RenderOutput {
    let pool = EnginePool::new(2).expect("engine pool");
    kinora_render::render(spec, &pool, &CancelFlag::new()).expect("render")
}

fn frame_entries(
    table: &mut BTreeMap<String, String>,
    name: &str,
    frames: Result<Vec<I420Frame>, RenderError>,
) {
    let frames = frames.unwrap_or_else(|e| panic!("{name}: {e}"));
    table.insert(format!("{name}.frames"), frames_hash(&frames));
}

fn file_entries(table: &mut BTreeMap<String, String>, name: &str, out: &RenderOutput) {
    table.insert(format!("{name}.mp4"), hex(Sha256::digest(&out.mp4)));
    table.insert(
        format!("{name}.cover"),
        hex(Sha256::digest(&out.cover_jpeg)),
    );
    if let Some(labelled) = &out.watermarked_mp4 {
        table.insert(format!("{name}.watermarked"), hex(Sha256::digest(labelled)));
    }
}

/// Renders every case and returns name → hash.
fn compute() -> BTreeMap<String, String> {
    let mut table = BTreeMap::new();

    // Image to video (§3.1–§3.5): the seeded default move, each kind of camera path, first and
    // last frames, the motion brush.
    let cases: Vec<(&str, RenderSpec)> = vec![
        ("i2v-default-move", i2v(None)),
        (
            "i2v-zoom",
            i2v(Some(CameraControl::Simple {
                axis: Axis::Zoom,
                value: 7.0,
            })),
        ),
        (
            "i2v-horizontal",
            i2v(Some(CameraControl::Simple {
                axis: Axis::Horizontal,
                value: -4.0,
            })),
        ),
        (
            "i2v-roll",
            i2v(Some(CameraControl::Simple {
                axis: Axis::Roll,
                value: 6.0,
            })),
        ),
        (
            "i2v-combined",
            i2v(Some(CameraControl::Combined(AxisValues {
                zoom: -5.0,
                roll: 4.0,
                pan: 5.0,
                tilt: 3.0,
                ..AxisValues::default()
            }))),
        ),
        ("i2v-down-back", i2v(Some(CameraControl::DownBack))),
        (
            "i2v-first-last",
            RenderSpec {
                last_frame: Some(picture(320, 180, 2.5)),
                ..i2v(None)
            },
        ),
        (
            "i2v-motion-brush",
            RenderSpec {
                static_mask: Some(mask((320, 180), (200, 20, 100, 60), true)),
                dynamic_masks: vec![DynamicMask {
                    mask: mask((320, 180), (40, 100, 60, 50), false),
                    trajectory: vec![(70.0, 55.0), (160.0, 55.0), (160.0, 110.0)],
                }],
                ..i2v(None)
            },
        ),
    ];
    for (name, spec) in &cases {
        frame_entries(&mut table, name, image2video_frames(spec, Some(TINY), 2));
    }

    // Text to video (§3.6–§3.7) at API sizes: a landscape and a portrait clip, and a
    // customised multi-shot one.
    frame_entries(
        &mut table,
        "t2v-landscape",
        text2video_frames(&t2v("a lighthouse on a cliff", Aspect::Landscape16x9, 3), 2),
    );
    frame_entries(
        &mut table,
        "t2v-portrait",
        text2video_frames(&t2v("a red fox in snow", Aspect::Portrait9x16, 3), 2),
    );
    let shots = common::customized_shots(&[1, 2], "a market at noon");
    frame_entries(
        &mut table,
        "t2v-multi-shot",
        text2video_frames(
            &RenderSpec {
                multi_shot: Some(shots),
                ..t2v("a market at noon", Aspect::Square1x1, 3)
            },
            2,
        ),
    );

    // Whole files: sound on with a labelled copy; a homography camera; reference cards.
    let source = render(&RenderSpec {
        sound: true,
        watermark: true,
        ..t2v("waves on a pebble beach", Aspect::Landscape16x9, 5)
    });
    file_entries(&mut table, "t2v-sound-watermark", &source);
    file_entries(
        &mut table,
        "i2v-combined-file",
        &render(&RenderSpec {
            mode: Mode::Std,
            duration_s: Some(5),
            ..cases[4].1.clone()
        }),
    );
    file_entries(
        &mut table,
        "multi-image",
        &render(&RenderSpec {
            duration_s: Some(1),
            references: vec![picture(200, 200, 1.0), picture(160, 240, 3.0)],
            ..RenderSpec::new(RenderKind::MultiImage2Video, "two cards on a table")
        }),
    );

    // The video-driven kinds (§3.10–§3.13), with the clip above as their input video.
    let video = Asset::new(source.mp4.clone());
    let motion = RenderSpec {
        motion_control: Some(MotionControlInput {
            character: picture(180, 320, 1.5),
            reference: video.clone(),
            orientation: CharacterOrientation::Image,
            keep_original_sound: true,
        }),
        ..RenderSpec::new(RenderKind::MotionControl, "a dancer on a stage")
    };
    frame_entries(
        &mut table,
        "motion-control",
        motion_control_frames(&motion, Some(TINY), 2),
    );
    let omni = |refer| RenderSpec {
        mode: Mode::Std,
        video_reference: Some(VideoReference {
            video: video.clone(),
            refer,
            keep_original_sound: false,
        }),
        ..RenderSpec::new(RenderKind::Omni, "the same shot, in autumn colours")
    };
    frame_entries(
        &mut table,
        "omni-video-edit",
        video_edit_frames(&omni(VideoReferKind::Base), Some(TINY), 2),
    );
    frame_entries(
        &mut table,
        "omni-feature-reference",
        feature_reference_frames(&omni(VideoReferKind::Feature), Some(TINY), 2),
    );
    frame_entries(
        &mut table,
        "extend",
        extend_continuation_frames(
            &RenderSpec {
                extend_source: Some(video),
                ..RenderSpec::new(RenderKind::Extend, "the tide comes in")
            },
            2,
        ),
    );
    table
}

fn table_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{}-{REVISION}.txt", std::env::consts::ARCH))
}

fn parse(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
        })
        .collect()
}

fn write(path: &PathBuf, table: &BTreeMap<String, String>) {
    let mut text = format!(
        "# Golden hashes of the local engine, revision {REVISION}, {}.\n\
         # Regenerate (only together with a revision bump): {WRITE_SWITCH}=1 cargo test -p kinora-render --test golden\n",
        std::env::consts::ARCH
    );
    for (name, hash) in table {
        text.push_str(&format!("{name} {hash}\n"));
    }
    std::fs::create_dir_all(path.parent().expect("table directory")).expect("create directory");
    std::fs::write(path, text).expect("write the golden table");
}

#[test]
fn outputs_match_the_golden_table() {
    let got = compute();
    assert!(got.len() >= 20, "only {} golden entries", got.len());
    let path = table_path();
    if std::env::var_os(WRITE_SWITCH).is_some() {
        write(&path, &got);
        eprintln!("wrote {} entries to {}", got.len(), path.display());
        return;
    }
    let gating = cfg!(target_arch = "x86_64");
    let Ok(text) = std::fs::read_to_string(&path) else {
        let message = format!(
            "no golden table at {} for this revision and architecture; after reviewing the \
             change, generate it with {WRITE_SWITCH}=1",
            path.display()
        );
        assert!(!gating, "{message}");
        eprintln!("{message}");
        return;
    };
    let want = parse(&text);
    let mut differences = Vec::new();
    for name in want
        .keys()
        .chain(got.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let (w, g) = (want.get(name), got.get(name));
        if w != g {
            differences.push(format!(
                "{name}: table {} / now {}",
                w.map_or("(none)", String::as_str),
                g.map_or("(none)", String::as_str)
            ));
        }
    }
    let report = format!(
        "{} of {} golden entries differ (engine revision {REVISION}); if the change is meant to \
         alter outputs, bump the revision and regenerate with {WRITE_SWITCH}=1:\n{}",
        differences.len(),
        got.len(),
        differences.join("\n")
    );
    if gating {
        assert!(differences.is_empty(), "{report}");
    } else if !differences.is_empty() {
        eprintln!("{report}");
    }
}
