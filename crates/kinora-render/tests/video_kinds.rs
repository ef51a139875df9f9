//! The video-driven kinds (§3.10–§3.13): motion control, omni video edit, omni feature
//! reference and extend. Input videos are made with the engine's own encoder and muxer (and
//! with ffmpeg where a foreign stream matters; those tests print a skip line without it), and
//! outputs are read back with the engine's demuxer and decoder.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use kinora_render::audio::soundtrack;
use kinora_render::engine::{encode_video, mux_chunks, CancelFlag, EnginePool, RenderOutput};
use kinora_render::frame::I420Frame;
use kinora_render::kinds::extend::extend_continuation_frames;
use kinora_render::kinds::feature_reference::feature_reference_frames;
use kinora_render::kinds::motion_control::{
    motion_control_frames, output_frames, poses, IMAGE_ORIENTATION_CAP_S, VIDEO_ORIENTATION_CAP_S,
};
use kinora_render::kinds::video_edit::video_edit_frames;
use kinora_render::mux::AudioTrack;
use kinora_render::overlay::Watermark;
use kinora_render::plan::{Mode, Size, StreamPlan};
use kinora_render::source::{estimate_motion, SourceVideo};
use kinora_render::spec::{
    CharacterOrientation, MotionControlInput, VideoReferKind, VideoReference,
};
use kinora_render::{Asset, RenderError, RenderKind, RenderSpec};

use common::{decoded_luma, mean_abs_diff};

// ---------------------------------------------------------------------------------------
// Inputs

/// A smooth, non-repeating texture: something for block matching to lock onto.
fn texture(x: f64, y: f64) -> u8 {
    let v = 120.0
        + 45.0 * (x * 0.31).sin() * (y * 0.23).cos()
        + 30.0 * ((x + 2.0 * y) * 0.097).sin()
        + 20.0 * ((3.0 * x - y) * 0.053).cos();
    v.clamp(16.0, 235.0) as u8
}

/// Fills a frame: the texture shifted right by `pan` pixels, and optionally a bright square
/// (side `side`) with its top-left at `block`.
fn paint(frame: &mut I420Frame, pan: f64, block: Option<(usize, usize, usize)>) {
    let (w, h) = (frame.width(), frame.height());
    for y in 0..h {
        let row = frame.y.row_mut(y);
        for (x, v) in row.iter_mut().enumerate() {
            *v = texture(x as f64 - pan, y as f64);
        }
    }
    for p in [&mut frame.u, &mut frame.v] {
        for y in 0..p.height {
            for (x, v) in p.row_mut(y).iter_mut().enumerate() {
                *v = 128 + ((x + y) % 9) as u8;
            }
        }
    }
    if let Some((bx, by, side)) = block {
        for y in by..(by + side).min(h) {
            for x in bx..(bx + side).min(w) {
                frame.y.data[y * w + x] = 220 - ((x * 5 + y * 3) % 40) as u8;
            }
        }
    }
}

/// An MP4 made by the engine's encoder and muxer, as the engine writes its own outputs.
fn engine_clip(
    mode: Mode,
    size: Size,
    frames: u32,
    audio: Option<AudioTrack>,
    draw: impl Fn(u32, &mut I420Frame) + Sync,
) -> Vec<u8> {
    let plan = StreamPlan::new(mode, size, frames, &[]);
    let pool = EnginePool::new(2).unwrap();
    let chunks = encode_video(&plan, &pool, &CancelFlag::new(), &draw).unwrap();
    mux_chunks(&plan, &chunks, audio.as_ref(), "test input").unwrap()
}

/// The engine's procedural soundtrack for `frames` frames, as an Opus track.
fn opus(frames: u32, seed: u8) -> AudioTrack {
    AudioTrack::try_from(soundtrack(&[seed; 32], u64::from(frames), &[]).unwrap()).unwrap()
}

/// A reference whose first `still` frames do not move and whose remaining frames carry a
/// bright square moving right.
fn still_then_moving(size: Size, still: u32, frames: u32, audio: Option<AudioTrack>) -> Vec<u8> {
    engine_clip(Mode::Std, size, frames, audio, |i, f| {
        let step = i.saturating_sub(still) as usize;
        paint(f, 0.0, Some((10 + 4 * step, size.height as usize / 4, 40)));
    })
}

fn jpeg(width: u32, height: u32) -> Vec<u8> {
    let mut rgb = Vec::with_capacity((width * height * 3) as usize);
    for y in 0..height {
        for x in 0..width {
            let t = texture(f64::from(x), f64::from(y));
            rgb.extend_from_slice(&[t, (x * 255 / width) as u8, (y * 255 / height) as u8]);
        }
    }
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode(&rgb, width, height, image::ExtendedColorType::Rgb8)
        .unwrap();
    out
}

fn motion_spec(
    character: &[u8],
    reference: &[u8],
    orientation: CharacterOrientation,
    keep: bool,
) -> RenderSpec {
    RenderSpec {
        motion_control: Some(MotionControlInput {
            character: Asset::new(character.to_vec()),
            reference: Asset::new(reference.to_vec()),
            orientation,
            keep_original_sound: keep,
        }),
        ..RenderSpec::new(RenderKind::MotionControl, "a dancer on a stage")
    }
}

fn omni_spec(video: &[u8], refer: VideoReferKind, keep: bool) -> RenderSpec {
    RenderSpec {
        mode: Mode::Std,
        video_reference: Some(VideoReference {
            video: Asset::new(video.to_vec()),
            refer,
            keep_original_sound: keep,
        }),
        ..RenderSpec::new(RenderKind::Omni, "the same shot, in autumn colours")
    }
}

fn extend_spec(source: &[u8], prompt: &str) -> RenderSpec {
    RenderSpec {
        extend_source: Some(Asset::new(source.to_vec())),
        ..RenderSpec::new(RenderKind::Extend, prompt)
    }
}

fn render(spec: &RenderSpec, threads: usize) -> RenderOutput {
    let pool = EnginePool::new(threads).unwrap();
    kinora_render::render(spec, &pool, &CancelFlag::new()).unwrap()
}

fn open(mp4: &[u8]) -> SourceVideo {
    SourceVideo::open(Arc::from(mp4)).unwrap()
}

/// Checks what every output shares and returns the demuxed file.
fn check_file(out: &RenderOutput, width: u32, height: u32, frames: u32) -> SourceVideo {
    assert_eq!((out.meta.width, out.meta.height), (width, height));
    assert_eq!(out.meta.frame_count, frames);
    let video = open(&out.mp4);
    assert_eq!(video.display_size(), (width, height));
    assert_eq!(video.samples().len(), frames as usize);
    assert_eq!(video.frames_at_24fps(), frames);
    assert_eq!(video.audio().is_some(), out.meta.has_audio);
    let cover =
        image::load_from_memory_with_format(&out.cover_jpeg, image::ImageFormat::Jpeg).unwrap();
    assert_eq!((cover.width(), cover.height()), (width, height));
    video
}

/// ffmpeg, when installed; otherwise prints why the calling test skips.
fn ffmpeg(test: &str) -> Option<PathBuf> {
    let found = Command::new("ffmpeg")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        println!("skipping {test}: ffmpeg is not installed");
        return None;
    }
    Some(PathBuf::from("ffmpeg"))
}

/// Runs ffmpeg with `args` and an output file; returns the file's bytes.
fn ffmpeg_make(bin: &PathBuf, name: &str, args: &[&str]) -> Vec<u8> {
    let path =
        std::env::temp_dir().join(format!("kinora-video-kinds-{}-{name}", std::process::id()));
    let status = Command::new(bin)
        .args(["-v", "error", "-y"])
        .args(args)
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success(), "ffmpeg failed for {name}");
    let bytes = std::fs::read(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    bytes
}

// ---------------------------------------------------------------------------------------
// Motion control (§3.10)

#[test]
fn motion_control_durations_follow_the_caps() {
    use CharacterOrientation::{Image, Video};
    for (d, image, video) in [
        (2.0, 48, 48),
        (7.52, 180, 180),
        (IMAGE_ORIENTATION_CAP_S, 240, 240),
        (12.5, 240, 300),
        (VIDEO_ORIENTATION_CAP_S, 240, 720),
        (31.0, 240, 720),
    ] {
        assert_eq!(output_frames(d, Image), image, "image, {d} s");
        assert_eq!(output_frames(d, Video), video, "video, {d} s");
    }

    // An 11 s reference really is clipped to 10 s for "image" and kept for "video".
    let size = Size::new(64, 36);
    let reference = engine_clip(Mode::Std, size, 264, None, |i, f| {
        paint(f, f64::from(i % 7), None)
    });
    let character = jpeg(80, 60);
    let tiny = Some(Size::new(64, 48));
    let image =
        motion_control_frames(&motion_spec(&character, &reference, Image, true), tiny, 2).unwrap();
    assert_eq!(image.len(), 240);
    let video =
        motion_control_frames(&motion_spec(&character, &reference, Video, true), tiny, 2).unwrap();
    assert_eq!(video.len(), 264);
}

#[test]
fn motion_control_moves_where_the_reference_moves() {
    let size = Size::new(192, 108);
    let reference = still_then_moving(size, 24, 48, None);
    let spec = motion_spec(
        &jpeg(192, 108),
        &reference,
        CharacterOrientation::Image,
        true,
    );
    let frames = motion_control_frames(&spec, Some(size), 2).unwrap();
    assert_eq!(frames.len(), 48);
    let diffs: Vec<f64> = frames
        .windows(2)
        .map(|p| mean_abs_diff(&p[0].y.data, &p[1].y.data))
        .collect();
    // The reference's first P pictures still refine the picture after its IDR, which the
    // estimator rightly sees as activity; from frame 10 on it is still.
    let still = diffs[10..22].iter().copied().fold(0.0, f64::max);
    let active = diffs[28..46].iter().sum::<f64>() / 18.0;
    // Only the seeded push-in (at most 1.04× over the clip) moves a still reference.
    assert!(active > 0.5, "active {active}");
    assert!(still < 0.25 * active, "still {still}, active {active}");

    // Orientation "video" travels with the motion; the anchored one does not.
    let travelling = motion_control_frames(
        &RenderSpec {
            motion_control: spec.motion_control.clone().map(|m| MotionControlInput {
                orientation: CharacterOrientation::Video,
                ..m
            }),
            ..spec.clone()
        },
        Some(size),
        2,
    )
    .unwrap();
    // The same pose, shifted sideways by the travel the smoothed centroid asks for.
    let motion = estimate_motion(&open(&reference), 48, &CancelFlag::new()).unwrap();
    let expected = poses(&motion, 48, CharacterOrientation::Video, size, 1.0);
    let mut checked = 0;
    for i in 0..48 {
        let travel = expected[i].travel;
        if travel.abs() >= 2.0 {
            let s = best_shift(&frames[i], &travelling[i], 20);
            assert!(
                (s as f64 - travel).abs() <= 1.0,
                "frame {i}: {s} vs {travel}"
            );
            checked += 1;
        }
    }
    assert!(checked > 10, "the character travelled in {checked} frames");

    // Deterministic, whatever the pool size.
    assert_eq!(motion_control_frames(&spec, Some(size), 1).unwrap(), frames);
}

#[test]
fn motion_control_output_shape_audio_and_bytes() {
    let reference = still_then_moving(Size::new(96, 54), 12, 48, Some(opus(48, 3)));
    let character = jpeg(400, 300);
    let keep = motion_spec(&character, &reference, CharacterOrientation::Image, true);
    let a = render(&keep, 2);
    // 4:3 contain-fitted into std: 960×720; the reference's 2 s give 48 frames.
    let video = check_file(&a, 960, 720, 48);
    assert!(a.meta.has_audio);
    let audio = video.audio().unwrap();
    assert!(audio.is_opus());
    assert!(
        (audio.duration_s() - 2.0).abs() < 0.021,
        "{}",
        audio.duration_s()
    );
    assert_eq!(a.meta.duration, "2");
    assert_eq!(decoded_luma(&a.mp4).len(), 48);
    assert_eq!(render(&keep, 1), a, "same bytes for any pool size");

    let drop = render(
        &motion_spec(&character, &reference, CharacterOrientation::Image, false),
        2,
    );
    assert!(!drop.meta.has_audio);
    check_file(&drop, 960, 720, 48);

    let silent_reference = still_then_moving(Size::new(96, 54), 12, 48, None);
    let silent = render(
        &motion_spec(
            &character,
            &silent_reference,
            CharacterOrientation::Image,
            true,
        ),
        2,
    );
    assert!(
        !silent.meta.has_audio,
        "a silent reference gives no audio track"
    );
}

// ---------------------------------------------------------------------------------------
// Omni video edit (§3.11)

#[test]
fn video_edit_keeps_duration_shape_and_sound_choice() {
    // 1.5 s of 4:3 video: 36 frames, contain-fitted to 960×720 in std.
    let source = engine_clip(
        Mode::Std,
        Size::new(160, 120),
        36,
        Some(opus(36, 5)),
        |i, f| paint(f, f64::from(i), None),
    );
    let keep = RenderSpec {
        duration_s: Some(10),
        ..omni_spec(&source, VideoReferKind::Base, true)
    };
    let out = render(&keep, 2);
    check_file(&out, 960, 720, 36);
    assert_eq!(out.meta.duration, "1.5");
    assert!(out.meta.has_audio);
    assert_eq!(render(&keep, 1), out, "same bytes for any pool size");

    let drop = render(&omni_spec(&source, VideoReferKind::Base, false), 2);
    check_file(&drop, 960, 720, 36);
    assert!(!drop.meta.has_audio);

    // The grade is seeded by the prompt: another prompt, other pixels, same timing.
    let size = Some(Size::new(160, 120));
    let a = video_edit_frames(&keep, size, 2).unwrap();
    let b = video_edit_frames(
        &RenderSpec {
            prompt: "the same shot, at night".into(),
            ..keep.clone()
        },
        size,
        2,
    )
    .unwrap();
    assert_eq!((a.len(), b.len()), (36, 36));
    assert_ne!(a[0], b[0]);
    assert_eq!(video_edit_frames(&keep, size, 1).unwrap(), a);
}

#[test]
fn video_edit_grades_every_source_frame_alike() {
    let Some(bin) = ffmpeg("video_edit_grades_every_source_frame_alike") else {
        return;
    };
    // 12 fps with B-frames: every source frame is held for two output frames.
    let source = ffmpeg_make(
        &bin,
        "12fps.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=192x108:rate=12",
            "-t",
            "1.5",
            "-pix_fmt",
            "yuv420p",
            "-c:v",
            "libx264",
            "-f",
            "mp4",
        ],
    );
    let spec = omni_spec(&source, VideoReferKind::Base, true);
    let frames = video_edit_frames(&spec, Some(Size::new(192, 108)), 2).unwrap();
    assert_eq!(frames.len(), 36);
    for k in 0..18 {
        assert_eq!(
            frames[2 * k],
            frames[2 * k + 1],
            "output frames {} and {}",
            2 * k,
            2 * k + 1
        );
        if k > 0 {
            assert_ne!(frames[2 * k - 1], frames[2 * k], "source frame {k} is new");
        }
    }
    // No audio in the source: none in the output, whatever keep_original_sound says.
    let out = render(&spec, 2);
    check_file(&out, 1280, 720, 36);
    assert!(!out.meta.has_audio);
}

// ---------------------------------------------------------------------------------------
// Omni feature reference (§3.12)

/// The horizontal shift (in pixels) that best maps `a` onto `b`, within ±`range`.
fn best_shift(a: &I420Frame, b: &I420Frame, range: i64) -> i64 {
    let (w, h) = (a.width() as i64, a.height() as i64);
    let margin = range;
    (-range..=range)
        .min_by_key(|&s| {
            let mut sad = 0u64;
            for y in h / 4..3 * h / 4 {
                for x in margin..w - margin {
                    let pa = a.y.data[(y * w + x - s) as usize];
                    let pb = b.y.data[(y * w + x) as usize];
                    sad += u64::from(pa.abs_diff(pb));
                }
            }
            sad
        })
        .unwrap()
}

#[test]
fn feature_reference_duration_and_camera() {
    // 4.4 s of a camera panning: content moves right by 2 px per frame.
    let size = Size::new(160, 90);
    let pan = engine_clip(Mode::Std, size, 106, Some(opus(106, 7)), |i, f| {
        paint(f, 2.0 * f64::from(i), None)
    });
    let tiny = Some(Size::new(96, 54));
    let spec = omni_spec(&pan, VideoReferKind::Feature, true);
    // No duration: the reference's 4.4 s round to 4 s.
    let frames = feature_reference_frames(&spec, tiny, 2).unwrap();
    assert_eq!(frames.len(), 96);
    assert_eq!(feature_reference_frames(&spec, tiny, 1).unwrap(), frames);
    let three = RenderSpec {
        duration_s: Some(3),
        ..spec.clone()
    };
    assert_eq!(feature_reference_frames(&three, tiny, 2).unwrap().len(), 72);

    // Over a first-frame image the camera follows the reference: the content drifts right,
    // by the full-scale limit of 25 % of the width (the reference moved much further).
    let image = jpeg(96, 54);
    let over_image = RenderSpec {
        first_frame: Some(Asset::new(image.clone())),
        ..three.clone()
    };
    let moved = feature_reference_frames(&over_image, tiny, 2).unwrap();
    assert_eq!(best_shift(&moved[0], &moved[71], 30), 24);
    // A still reference keeps the camera still.
    let still = engine_clip(Mode::Std, size, 72, None, |_, f| paint(f, 0.0, None));
    let resting = feature_reference_frames(
        &RenderSpec {
            first_frame: Some(Asset::new(image)),
            ..omni_spec(&still, VideoReferKind::Feature, true)
        },
        tiny,
        2,
    )
    .unwrap();
    assert_eq!(resting.len(), 72, "3 s reference, 3 s clip");
    assert!(resting.iter().all(|f| *f == resting[0]));

    // The real file: a 1:1 first frame gives 720×720, and the reference's sound is kept.
    let square = RenderSpec {
        first_frame: Some(Asset::new(jpeg(300, 300))),
        ..three
    };
    let out = render(&square, 2);
    check_file(&out, 720, 720, 72);
    assert!(out.meta.has_audio);
}

// ---------------------------------------------------------------------------------------
// Extend (§3.13)

/// The bytes of each video sample of an MP4, in order.
fn sample_bytes(mp4: &[u8]) -> Vec<Vec<u8>> {
    let video = open(mp4);
    video
        .samples()
        .iter()
        .map(|s| video.sample_data(s).to_vec())
        .collect()
}

fn extend_source(audio: bool) -> Vec<u8> {
    engine_clip(
        Mode::Std,
        Size::new(192, 108),
        48,
        audio.then(|| opus(48, 9)),
        |i, f| paint(f, f64::from(i), Some((20 + i as usize, 30, 24))),
    )
}

#[test]
fn extend_copies_the_source_and_adds_120_frames() {
    let source = extend_source(true);
    let spec = extend_spec(&source, "and then the sun comes out");
    let out = render(&spec, 2);
    let video = check_file(&out, 192, 108, 168);
    assert_eq!(out.meta.duration, "7");
    assert!(out.meta.has_audio);
    assert_eq!(
        out.meta.keyframes,
        vec![0, 48, 108],
        "an IDR where the new part starts"
    );
    let audio = video.audio().unwrap();
    assert!(audio.is_opus());
    assert!(
        (audio.duration_s() - 7.0).abs() < 0.021,
        "{}",
        audio.duration_s()
    );

    let (src, ext) = (sample_bytes(&source), sample_bytes(&out.mp4));
    assert_eq!(ext[..48], src[..], "source samples copied unchanged");
    assert_eq!(video.sps_pps(), open(&source).sps_pps());
    assert_eq!(decoded_luma(&out.mp4).len(), 168);

    assert_eq!(render(&spec, 1), out, "same bytes for any pool size");

    // A labelled copy labels every frame, copied ones included; the clean file is unchanged.
    let marked = render(
        &RenderSpec {
            watermark: true,
            ..spec.clone()
        },
        2,
    );
    assert_eq!(marked.mp4, out.mp4);
    let labelled_mp4 = marked.watermarked_mp4.unwrap();
    let labelled = open(&labelled_mp4);
    assert_eq!(labelled.samples().len(), 168);
    assert!(labelled.audio().is_some());
    let rect = Watermark::new(192, 108).unwrap().rect();
    let (clean, marked) = (decoded_luma(&out.mp4), decoded_luma(&labelled_mp4));
    assert_eq!(marked.len(), 168);
    for i in [0, 47, 48, 167] {
        let (mut inside, mut outside) = ((0.0, 0.0), (0.0, 0.0));
        for (k, (a, b)) in clean[i].iter().zip(&marked[i]).enumerate() {
            let d = f64::from(a.abs_diff(*b));
            let slot = if rect.contains(k % 192, k / 192) {
                &mut inside
            } else {
                &mut outside
            };
            *slot = (slot.0 + d, slot.1 + 1.0);
        }
        let (inside, outside) = (inside.0 / inside.1, outside.0 / outside.1);
        // Outside the label only the separate encodes differ (the copied source part is
        // re-encoded from decoded frames at 192×108's small bitrate).
        assert!(
            inside > 20.0 && outside < 4.0,
            "frame {i}: {inside} {outside}"
        );
    }

    // The prompt seeds the continuation only.
    let other = render(&extend_spec(&source, "and then it rains"), 2);
    let other_samples = sample_bytes(&other.mp4);
    assert_eq!(other_samples[..48], src[..]);
    assert_ne!(other_samples[48..], ext[48..]);
}

#[test]
fn extend_continues_from_the_last_frame() {
    let source = extend_source(false);
    let spec = extend_spec(&source, "");
    let new = extend_continuation_frames(&spec, 2).unwrap();
    assert_eq!(new.len(), 120);
    // The source's content moves right by 1 px per frame, and so does the continuation: its
    // first frame is the last source frame moved one more step.
    let last = decoded_luma(&source).pop().unwrap();
    let (w, h) = (192usize, 108usize);
    let shifted_diff = |s: usize| {
        let mut sum = 0.0;
        let mut n = 0.0;
        for y in 8..h - 8 {
            for x in 8..w - 8 {
                sum += f64::from(new[0].y.data[y * w + x].abs_diff(last[y * w + x + 2 - s]));
                n += 1.0;
            }
        }
        sum / n
    };
    let diffs: Vec<f64> = (0..5).map(shifted_diff).collect();
    let best = (0..5)
        .min_by(|&a, &b| diffs[a].total_cmp(&diffs[b]))
        .unwrap();
    assert_eq!(best, 3, "one pixel to the right: {diffs:?}");
    assert!(diffs[3] < 3.0, "{diffs:?}");
    // The seeded move and the grade drift change the picture by the end.
    assert!(mean_abs_diff(&new[119].y.data, &new[0].y.data) > 2.0);
    assert_eq!(extend_continuation_frames(&spec, 1).unwrap(), new);

    let out = render(&spec, 2);
    check_file(&out, 192, 108, 168);
    assert!(!out.meta.has_audio, "a silent source stays silent");
}

#[test]
fn extend_reencodes_a_source_it_cannot_copy() {
    // Level 4.0 parameter sets: not what the encoder writes for a 192×108 (std) stream.
    let source = engine_clip(
        Mode::Pro,
        Size::new(192, 108),
        48,
        Some(opus(48, 2)),
        |i, f| paint(f, f64::from(i), None),
    );
    let out = render(&extend_spec(&source, "x"), 2);
    let video = check_file(&out, 192, 108, 168);
    assert_eq!(out.meta.keyframes, vec![0, 48, 108]);
    assert!(out.meta.has_audio);
    assert_ne!(video.sps_pps(), open(&source).sps_pps());
    assert_eq!(decoded_luma(&out.mp4).len(), 168);
}

#[test]
fn extend_refuses_a_source_with_less_than_a_second_of_room() {
    // 179.2 s: less than 1 s left under the 180 s cap.
    let long = engine_clip(Mode::Std, Size::new(64, 48), 4301, None, |_, f| {
        paint(f, 0.0, None)
    });
    let pool = EnginePool::new(2).unwrap();
    let err =
        kinora_render::render(&extend_spec(&long, ""), &pool, &CancelFlag::new()).unwrap_err();
    assert!(matches!(err, RenderError::Client(_)), "{err}");
    assert!(err.to_string().contains("180 s"), "{err}");
}

#[test]
fn extend_transcodes_foreign_audio() {
    let Some(bin) = ffmpeg("extend_transcodes_foreign_audio") else {
        return;
    };
    let source = ffmpeg_make(
        &bin,
        "aac.mp4",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=192x108:rate=24",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=44100",
            "-t",
            "2",
            "-pix_fmt",
            "yuv420p",
            "-c:v",
            "libx264",
            "-c:a",
            "aac",
            "-shortest",
            "-f",
            "mp4",
        ],
    );
    assert!(!open(&source).audio().unwrap().is_opus());
    let out = render(&extend_spec(&source, "x"), 2);
    let video = check_file(&out, 192, 108, 168);
    let audio = video.audio().unwrap();
    assert!(audio.is_opus(), "{}", audio.codec_name());
    assert!(
        (audio.duration_s() - 7.0).abs() < 0.05,
        "{}",
        audio.duration_s()
    );
    assert_eq!(decoded_luma(&out.mp4).len(), 168);
}
