//! Motion control (§3.10): the character image animated by the reference video's motion.
//!
//! The reference is read only through the shared motion estimator (§3.14): its local activity
//! drives a stepping gait (phase, bob, lean, breathing) applied to the character picture with a
//! per-row affine warp, and with `character_orientation: "video"` the motion centroid also
//! moves the character sideways. The output lasts as long as the reference, capped at 10 s
//! (orientation "image") or 30 s (orientation "video"), and takes the character image's shape.

use std::f64::consts::TAU;
use std::sync::Arc;

use crate::camera::{ease, progress, CanvasLayout};
use crate::engine::{CancelFlag, EnginePool, RenderError, RenderOutput};
use crate::frame::{I420Frame, Plane};
use crate::mux::AudioTrack;
use crate::plan::{frames_for_measured, Size, StreamPlan, FPS};
use crate::seed::{scene_seed, sub_seed, SplitMix64};
use crate::source::{estimate_motion, MotionTrack, SourceVideo};
use crate::spec::{CharacterOrientation, MotionControlInput, RenderSpec};
use crate::still::{decode_picture, output_size, StillCanvas};

use super::finish_drawn;

/// Longest output for `character_orientation: "image"`, in seconds.
pub const IMAGE_ORIENTATION_CAP_S: f64 = 10.0;
/// Longest output for `character_orientation: "video"`, in seconds.
pub const VIDEO_ORIENTATION_CAP_S: f64 = 30.0;
/// Step rate at rest and its increase at full activity, in steps per second.
const STEP_RATE_BASE: f64 = 0.6;
const STEP_RATE_GAIN: f64 = 1.4;
/// Bob height, lean at the top row and breathing, at full activity (fractions of H, W, 1).
const BOB: f64 = 0.02;
const LEAN: f64 = 0.03;
const BREATH: f64 = 0.015;
/// Sideways travel of orientation "video": the centroid's 0–1 maps to ±10 % of W.
const TRAVEL: f64 = 0.10;
/// Activity is smoothed with a centred mean of this many taps.
const ACTIVITY_TAPS: usize = 5;
/// The centroid is smoothed over one second, so the character glides rather than jitters.
const CENTROID_TAPS: usize = 25;
/// The prompt-seeded camera drift: a push-in of at most this factor over the clip.
pub const MAX_PUSH_IN: f64 = 1.04;

/// The output frame count for a reference of `duration_s` seconds: T = min(D, cap),
/// N = ⌊24·T + ½⌋.
pub fn output_frames(duration_s: f64, orientation: CharacterOrientation) -> u32 {
    let cap = match orientation {
        CharacterOrientation::Image => IMAGE_ORIENTATION_CAP_S,
        CharacterOrientation::Video => VIDEO_ORIENTATION_CAP_S,
    };
    if !duration_s.is_finite() {
        return 0;
    }
    frames_for_measured(duration_s.min(cap))
}

/// Per-frame activity âᵢ (§3.10 step 3) from the estimator's per-pair activity: frame i takes
/// the step into it (frame 0 the first step), normalised by the clip's 95th percentile (at
/// least 1), clamped to [0, 1] and smoothed with a centred 5-tap mean.
pub fn normalised_activity(pair_activity: &[f64], frames: usize) -> Vec<f64> {
    let raw = per_frame(pair_activity, frames, 0.0);
    let mut sorted: Vec<f64> = raw.iter().map(|v| finite_or(*v, 0.0)).collect();
    sorted.sort_by(f64::total_cmp);
    // Nearest-rank percentile: the smallest value with at least 95 % of the clip at or below.
    let p95 = if sorted.is_empty() {
        0.0
    } else {
        let rank = (sorted.len() * 95).div_ceil(100).max(1);
        sorted[rank - 1]
    };
    let divisor = p95.max(1.0);
    let clamped: Vec<f64> = raw
        .iter()
        .map(|&a| (finite_or(a, 0.0) / divisor).clamp(0.0, 1.0))
        .collect();
    centred_mean(&clamped, ACTIVITY_TAPS)
}

/// Per-frame value of a per-pair series: frame i ≥ 1 takes pair i − 1, frame 0 takes pair 0;
/// a series shorter than the clip holds its last value (or `fallback` when empty).
fn per_frame(pairs: &[f64], frames: usize, fallback: f64) -> Vec<f64> {
    (0..frames)
        .map(|i| {
            let k = i.saturating_sub(1);
            pairs
                .get(k)
                .or(pairs.last())
                .copied()
                .map_or(fallback, |v| finite_or(v, fallback))
        })
        .collect()
}

fn finite_or(v: f64, fallback: f64) -> f64 {
    if v.is_finite() {
        v
    } else {
        fallback
    }
}

/// Centred moving mean over `taps` (odd) samples; windows shrink at the ends.
fn centred_mean(values: &[f64], taps: usize) -> Vec<f64> {
    let half = taps / 2;
    (0..values.len())
        .map(|i| {
            let lo = i.saturating_sub(half);
            let hi = (i + half + 1).min(values.len());
            let window = &values[lo..hi];
            window.iter().sum::<f64>() / window.len() as f64
        })
        .collect()
}

/// The character's pose at one frame, in output pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pose {
    /// Smoothed activity âᵢ in [0, 1].
    pub activity: f64,
    /// Step phase φᵢ in radians.
    pub phase: f64,
    /// Vertical offset of the character (negative is up).
    pub bob: f64,
    /// Horizontal shift of the top row; a row at relative height u shifts by lean·u².
    pub lean: f64,
    /// Scale about the bottom centre.
    pub scale: f64,
    /// Horizontal offset of the character (orientation "video").
    pub travel: f64,
    /// Camera push-in (≥ 1) about the frame centre.
    pub zoom: f64,
}

impl Pose {
    pub const REST: Pose = Pose {
        activity: 0.0,
        phase: 0.0,
        bob: 0.0,
        lean: 0.0,
        scale: 1.0,
        travel: 0.0,
        zoom: 1.0,
    };
}

/// The pose of every frame from the reference's motion (§3.10 step 4) and the seeded push-in.
pub fn poses(
    motion: &MotionTrack,
    frames: usize,
    orientation: CharacterOrientation,
    size: Size,
    push_in: f64,
) -> Vec<Pose> {
    let (w, h) = (f64::from(size.width), f64::from(size.height));
    let activity = normalised_activity(&motion.activity, frames);
    let centroid = match orientation {
        CharacterOrientation::Video => centred_mean(
            &per_frame(&motion.centroid, frames, 0.5)
                .iter()
                .map(|c| c.clamp(0.0, 1.0))
                .collect::<Vec<_>>(),
            CENTROID_TAPS,
        ),
        CharacterOrientation::Image => vec![0.5; frames],
    };
    let push_in = finite_or(push_in, 1.0).clamp(1.0, MAX_PUSH_IN);
    let mut phase = 0.0;
    (0..frames)
        .map(|i| {
            let a = activity[i];
            if i > 0 {
                phase += TAU * (STEP_RATE_BASE + STEP_RATE_GAIN * a) / f64::from(FPS);
            }
            Pose {
                activity: a,
                phase,
                bob: -BOB * h * a * libm::fabs(libm::sin(phase)),
                lean: LEAN * w * a * libm::sin(phase / 2.0),
                scale: 1.0 + BREATH * a,
                travel: (centroid[i] - 0.5) * 2.0 * TRAVEL * w,
                zoom: libm::pow(push_in, ease(progress(i, frames))),
            }
        })
        .collect()
}

/// The prompt-seeded push-in factor, in [1, 1.04].
pub fn push_in(seed: u64) -> f64 {
    let mut rng = SplitMix64::new(sub_seed(seed, "motion-control/drift", 0));
    rng.range(1.0, MAX_PUSH_IN)
}

/// Output → character picture mapping of one pose, row by row (the lean makes it per-row
/// affine, §5.1), in view pixels.
#[derive(Clone, Copy, Debug)]
struct RowMap {
    pose: Pose,
    width: f64,
    height: f64,
}

impl RowMap {
    /// For output row position `y` (view units): the picture row, and the picture column as
    /// `a·x + b` of the output column position x.
    fn row(&self, y: f64) -> (f64, f64, f64) {
        let p = &self.pose;
        let (w, h) = (self.width, self.height);
        let (cx, cy) = (w / 2.0, h / 2.0);
        // Camera: the output shows the scene pushed in about the centre.
        let scene_y = cy + (y - cy) / p.zoom;
        // Character: moved by (travel, bob), scaled about its bottom centre, leaning.
        let picture_y = h + (scene_y - p.bob - h) / p.scale;
        let u = ((h - picture_y) / h).clamp(0.0, 1.0);
        let shift = p.lean * u * u;
        let a = 1.0 / (p.zoom * p.scale);
        let b = cx - (cx / p.zoom + p.travel) / p.scale - shift;
        (picture_y, a, b)
    }
}

/// Fractional bits of the row kernel's source positions.
const FRAC: u32 = 24;
/// Positions are kept within ±2^20 samples, so every product below fits in i64.
const POS_LIMIT: f64 = (1u64 << 20) as f64;

fn to_fixed(v: f64) -> i64 {
    let v = finite_or(v, 0.0).clamp(-POS_LIMIT, POS_LIMIT);
    libm::round(v * f64::from(1u32 << FRAC)) as i64
}

/// Bilinear resampling of `src` into `dst`, one affine map per row: `rows(y)` gives, in `src`
/// sample coordinates (sample centres at integers), the row position and the column position
/// of output column 0 and its step per column. Positions outside `src` clamp to its edge.
fn sample_rows(src: &Plane, dst: &mut Plane, rows: impl Fn(usize) -> (f64, f64, f64)) {
    if src.width == 0 || src.height == 0 {
        return;
    }
    let x_max = ((src.width - 1) as i64) << FRAC;
    let y_max = ((src.height - 1) as i64) << FRAC;
    let weight = |pos: i64| ((pos >> (FRAC - 8)) & 0xff) as u32;
    for y in 0..dst.height {
        let (sy, sx0, step) = rows(y);
        let py = to_fixed(sy).clamp(0, y_max);
        let iy = (py >> FRAC) as usize;
        let iy1 = (iy + 1).min(src.height - 1);
        let fy = weight(py);
        let (top, bottom) = (src.row(iy), src.row(iy1));
        let (x0, dx) = (to_fixed(sx0), to_fixed(step));
        let out = dst.row_mut(y);
        for (x, o) in out.iter_mut().enumerate() {
            let px = x0
                .saturating_add(dx.saturating_mul(x as i64))
                .clamp(0, x_max);
            let ix = (px >> FRAC) as usize;
            let ix1 = (ix + 1).min(src.width - 1);
            let fx = weight(px);
            let t = u32::from(top[ix]) * (256 - fx) + u32::from(top[ix1]) * fx;
            let b = u32::from(bottom[ix]) * (256 - fx) + u32::from(bottom[ix1]) * fx;
            *o = ((t * (256 - fy) + b * fy + (1 << 15)) >> 16) as u8;
        }
    }
}

/// Draws the character canvas under `pose` into `out` (of the view size).
fn draw_pose(canvas: &StillCanvas, pose: &Pose, out: &mut I420Frame) {
    let layout: &CanvasLayout = canvas.layout();
    let map = RowMap {
        pose: *pose,
        width: layout.view_width as f64,
        height: layout.view_height as f64,
    };
    let m = layout.view_to_canvas().m;
    let (k, ox, oy) = (m[0][0], m[0][2], m[1][2]);
    let src = canvas.canvas();
    // Luma: output sample (x, y) has its centre at view (x + ½, y + ½); canvas sample centres
    // sit at integer + ½ in canvas units.
    sample_rows(&src.y, &mut out.y, |y| {
        let (py, a, b) = map.row(y as f64 + 0.5);
        (k * py + oy - 0.5, k * (a * 0.5 + b) + ox - 0.5, k * a)
    });
    // Chroma: output sample (x, y) covers view [2x, 2x+2), centre 2x + 1; canvas chroma
    // positions are half the luma ones.
    for (s, d) in [(&src.u, &mut out.u), (&src.v, &mut out.v)] {
        sample_rows(s, d, |y| {
            let (py, a, b) = map.row(2.0 * y as f64 + 1.0);
            (
                (k * py + oy) / 2.0 - 0.5,
                (k * (a + b) + ox) / 2.0 - 0.5,
                k * a,
            )
        });
    }
}

/// A motion-control clip ready to draw.
struct Clip {
    size: Size,
    canvas: StillCanvas,
    poses: Vec<Pose>,
    reference: SourceVideo,
}

fn input(spec: &RenderSpec) -> Result<&MotionControlInput, RenderError> {
    spec.motion_control.as_ref().ok_or_else(|| {
        RenderError::Client("motion control needs `image_url` and `video_url`".to_owned())
    })
}

impl Clip {
    fn new(
        spec: &RenderSpec,
        size_override: Option<Size>,
        pool: &EnginePool,
        cancel: &CancelFlag,
    ) -> Result<Self, RenderError> {
        let input = input(spec)?;
        let (picture, reference) = pool.install(|| {
            rayon::join(
                || decode_picture(input.character.bytes(), "image_url"),
                || SourceVideo::open(Arc::from(input.reference.bytes())),
            )
        });
        let (picture, reference) = (picture?, reference.map_err(|e| named("video_url", e))?);
        let frames = output_frames(reference.duration_s(), input.orientation);
        if frames == 0 {
            return Err(RenderError::Client(
                "video_url: the reference video is too short to give a single frame".to_owned(),
            ));
        }
        let size = match size_override {
            Some(s) => s,
            None => output_size(spec.mode, picture.width, picture.height, "image_url")?,
        };
        let (canvas, motion) = pool.install(|| {
            rayon::join(
                || StillCanvas::from_picture(&picture, size, pool),
                || estimate_motion(&reference, frames, cancel),
            )
        });
        let (canvas, motion) = (canvas?, motion.map_err(|e| named("video_url", e))?);
        let seed = scene_seed(&spec.model_name, &spec.prompt, &spec.negative_prompt);
        let poses = poses(
            &motion,
            frames as usize,
            input.orientation,
            size,
            push_in(seed),
        );
        Ok(Self {
            size,
            canvas,
            poses,
            reference,
        })
    }

    fn frames(&self) -> u32 {
        self.poses.len() as u32
    }

    fn draw(&self, i: u32, out: &mut I420Frame) -> Result<(), RenderError> {
        let pose = self
            .poses
            .get(i as usize)
            .ok_or_else(|| RenderError::Internal(format!("motion control has no frame {i}")))?;
        if (out.width(), out.height()) != (self.size.width as usize, self.size.height as usize) {
            *out = self.canvas.blank_frame();
        }
        draw_pose(&self.canvas, pose, out);
        Ok(())
    }

    fn frame(&self, i: u32) -> Result<I420Frame, RenderError> {
        let mut out = self.canvas.blank_frame();
        self.draw(i, &mut out)?;
        Ok(out)
    }
}

/// Prefixes a source error with the request field it came from.
pub(super) fn named(field: &str, e: RenderError) -> RenderError {
    match e {
        RenderError::Client(m) => RenderError::Client(format!("{field}: {m}")),
        other => other,
    }
}

/// The reference's audio for an output of `frames` frames when `keep` is set (§2.5): copied
/// AAC/Opus or transcoded Opus, cut to the output; none without `keep` or for a silent
/// reference.
pub(super) fn reference_audio(
    video: &SourceVideo,
    keep: bool,
    frames: u32,
    field: &str,
) -> Result<Option<AudioTrack>, RenderError> {
    if !keep {
        return Ok(None);
    }
    match video.audio() {
        Some(audio) => audio
            .to_track(frames)
            .map(Some)
            .map_err(|e| named(field, e)),
        None => Ok(None),
    }
}

pub(super) fn render(
    spec: &RenderSpec,
    pool: &EnginePool,
    cancel: &CancelFlag,
) -> Result<RenderOutput, RenderError> {
    let clip = Clip::new(spec, None, pool, cancel)?;
    if cancel.is_cancelled() {
        return Err(RenderError::Cancelled);
    }
    let keep = input(spec)?.keep_original_sound;
    let plan = StreamPlan::new(spec.mode, clip.size, clip.frames(), &[]);
    finish_drawn(
        spec,
        &plan,
        &|i, out| clip.draw(i, out),
        &|| clip.canvas.blank_frame(),
        || reference_audio(&clip.reference, keep, plan.frames, "video_url"),
        pool,
        cancel,
    )
}

/// Test-only entry point (§3.15): the pre-encode frames of a motion-control spec, optionally at
/// a size the API cannot reach (both sides even). Runs on a pool of `threads`.
#[doc(hidden)]
pub fn motion_control_frames(
    spec: &RenderSpec,
    size_override: Option<Size>,
    threads: usize,
) -> Result<Vec<I420Frame>, RenderError> {
    super::frames_of(
        spec,
        threads,
        |pool| Clip::new(spec, size_override, pool, &CancelFlag::new()),
        Clip::frames,
        Clip::frame,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::GlobalMotion;

    #[test]
    fn duration_is_capped_per_orientation() {
        use CharacterOrientation::{Image, Video};
        assert_eq!(output_frames(5.0, Image), 120);
        assert_eq!(output_frames(7.52, Image), 180); // ⌊180.48 + ½⌋
        assert_eq!(output_frames(12.0, Image), 240);
        assert_eq!(output_frames(12.0, Video), 288);
        assert_eq!(output_frames(29.99, Video), 720);
        assert_eq!(output_frames(45.0, Video), 720);
        assert_eq!(output_frames(f64::NAN, Video), 0);
    }

    #[test]
    fn activity_is_normalised_by_the_95th_percentile() {
        // 20 frames: a burst of 10 over a floor of 2.
        let mut pairs = vec![2.0; 19];
        pairs[9] = 10.0;
        let a = normalised_activity(&pairs, 20);
        assert_eq!(a.len(), 20);
        // p95 of the per-frame values is 2 (one outlier of 20), so the floor normalises to 1
        // and the burst clamps to 1 as well.
        assert!(a.iter().all(|&v| (v - 1.0).abs() < 1e-12), "{a:?}");
        // Values below 1 are never amplified.
        let quiet = normalised_activity(&[0.5; 9], 10);
        assert!(quiet.iter().all(|&v| (v - 0.5).abs() < 1e-12));
        // A single active frame spreads over five taps.
        let mut spike = vec![0.0; 9];
        spike[4] = 100.0;
        let s = normalised_activity(&spike, 10);
        assert_eq!(s[5], 0.2);
        assert_eq!(s[3], 0.2);
        assert_eq!(s[2], 0.0);
        assert_eq!(s[8], 0.0);
    }

    fn track(activity: Vec<f64>, centroid: Vec<f64>) -> MotionTrack {
        MotionTrack {
            global: vec![GlobalMotion::default(); activity.len()],
            activity,
            centroid,
            thumb_width: 160,
            thumb_height: 90,
        }
    }

    #[test]
    fn a_still_reference_gives_a_still_pose() {
        let size = Size::new(192, 108);
        let p = poses(
            &track(vec![0.0; 47], vec![0.5; 47]),
            48,
            CharacterOrientation::Video,
            size,
            1.0,
        );
        assert!(p
            .iter()
            .all(|q| q.bob == 0.0 && q.lean == 0.0 && q.scale == 1.0));
        assert!(p.iter().all(|q| q.travel == 0.0 && q.zoom == 1.0));
        // The gait keeps its resting pace: 0.6 steps per second.
        assert!((p[24].phase - TAU * 0.6).abs() < 1e-9);
    }

    #[test]
    fn active_reference_moves_and_travels_toward_the_centroid() {
        let size = Size::new(200, 100);
        let p = poses(
            &track(vec![20.0; 47], vec![0.9; 47]),
            48,
            CharacterOrientation::Video,
            size,
            1.03,
        );
        assert!(p.iter().all(|q| q.activity == 1.0));
        assert!((p[24].phase - TAU * 2.0).abs() < 1e-9, "2 steps per second");
        assert!(
            p.iter().all(|q| (q.travel - 16.0).abs() < 1e-9),
            "0.9 → +8 % W"
        );
        assert!(p.iter().any(|q| q.bob < -1.0) && p.iter().all(|q| q.bob >= -2.0));
        assert!(p.iter().any(|q| q.lean.abs() > 3.0) && p.iter().all(|q| q.lean.abs() <= 6.0));
        assert!((p[10].scale - 1.015).abs() < 1e-12);
        assert_eq!(p[0].zoom, 1.0);
        assert!((p[47].zoom - 1.03).abs() < 1e-12);
        let anchored = poses(
            &track(vec![20.0; 47], vec![0.9; 47]),
            48,
            CharacterOrientation::Image,
            size,
            1.03,
        );
        assert!(anchored.iter().all(|q| q.travel == 0.0));
    }

    #[test]
    fn push_in_is_bounded() {
        for seed in 0..200 {
            let z = push_in(seed);
            assert!((1.0..=MAX_PUSH_IN).contains(&z));
        }
    }

    fn gradient(w: usize, h: usize) -> Plane {
        let mut p = Plane::new(w, h, 0);
        for y in 0..h {
            for (x, v) in p.row_mut(y).iter_mut().enumerate() {
                *v = (x * 3 + y * 5) as u8;
            }
        }
        p
    }

    #[test]
    fn row_kernel_copies_at_unit_step_and_clamps() {
        let src = gradient(40, 20);
        let mut dst = Plane::new(40, 20, 0);
        sample_rows(&src, &mut dst, |y| (y as f64, 0.0, 1.0));
        assert_eq!(dst, src);
        let mut shifted = Plane::new(40, 20, 0);
        sample_rows(&src, &mut shifted, |y| (y as f64, 3.0, 1.0));
        assert_eq!(shifted.row(4)[..37], src.row(4)[3..]);
        assert!(shifted.row(4)[37..].iter().all(|&v| v == src.row(4)[39]));
        let mut half = Plane::new(4, 1, 0);
        sample_rows(&src, &mut half, |_| (0.0, 0.5, 1.0));
        // Halfway between 0 and 3, and between 3 and 6.
        assert_eq!(&half.row(0)[..2], &[2, 5]);
    }

    #[test]
    fn rest_pose_shows_the_prepared_picture() {
        let size = Size::new(64, 36);
        let mut rgb = Vec::new();
        for y in 0..36u32 {
            for x in 0..64u32 {
                rgb.extend_from_slice(&[(x * 4) as u8, (y * 7) as u8, 128]);
            }
        }
        let picture = crate::still::Picture {
            width: 64,
            height: 36,
            rgb,
        };
        let pool = EnginePool::new(1).unwrap();
        let canvas = StillCanvas::from_picture(&picture, size, &pool).unwrap();
        let mut out = canvas.blank_frame();
        draw_pose(&canvas, &Pose::REST, &mut out);
        let prepared = canvas.prepared_picture().unwrap();
        // The rest pose is the camera at rest: the prepared picture, up to rounding of the
        // two kernels' fixed-point weights.
        for (a, b) in [
            (&out.y, &prepared.y),
            (&out.u, &prepared.u),
            (&out.v, &prepared.v),
        ] {
            for (p, q) in a.data.iter().zip(&b.data) {
                assert!(p.abs_diff(*q) <= 1, "{p} vs {q}");
            }
        }
    }
}
