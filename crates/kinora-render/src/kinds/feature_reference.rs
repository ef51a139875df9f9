//! Omni feature reference (`video_list` with `refer_type: "feature"`, §3.12): a new clip whose
//! camera moves as the reference video's camera did. The motion estimator's global path over
//! the whole reference is integrated, resampled to the output's frames, scaled to output pixels
//! and clamped to the camera's full-scale limits (§3.3); it then drives the camera over the
//! first-frame image, or over the procedural scene of the prompt.

use crate::camera::{
    progress, CanvasLayout, HORIZONTAL_FULL_SCALE, ROLL_FULL_SCALE_DEG, VERTICAL_FULL_SCALE,
    ZOOM_FULL_SCALE_FACTOR,
};
use crate::engine::{CancelFlag, EnginePool, RenderError, RenderOutput};
use crate::frame::I420Frame;
use crate::overlay::Caption;
use crate::plan::{frames_for_seconds, preset_size, Size, StreamPlan};
use crate::references::{decode_references, palette, ReferenceLayer};
use crate::scene::Scene;
use crate::seed::scene_seed;
use crate::source::{estimate_motion, GlobalMotion, MotionTrack, SourceVideo};
use crate::spec::{RenderSpec, VideoReferKind};
use crate::still::{decode_picture, output_size, StillCanvas};
use crate::warp::Transform;

use super::finish_drawn;
use super::motion_control::{named, reference_audio};
use super::video_edit::{open_video, video_reference, VIDEO_FIELD};

/// Shortest and longest clip when the duration comes from the reference, in seconds.
pub const MIN_REFERENCE_DURATION_S: u32 = 3;
pub const MAX_REFERENCE_DURATION_S: u32 = 10;

/// The output duration in whole seconds: the request's `duration` when given, otherwise the
/// reference's duration rounded to whole seconds and clamped to 3–10 s.
pub fn duration_s(requested: Option<u32>, reference_s: f64) -> u32 {
    if let Some(d) = requested {
        return d;
    }
    let rounded = if reference_s.is_finite() {
        libm::round(reference_s.max(0.0)).min(f64::from(MAX_REFERENCE_DURATION_S))
    } else {
        0.0
    };
    (rounded as u32).clamp(MIN_REFERENCE_DURATION_S, MAX_REFERENCE_DURATION_S)
}

/// A camera position as the content transform it applies about the frame centre, in output
/// pixels: q = c + e^log_scale·R(rotation)·(p − c) + (x, y), with p a point of the scene and q
/// where it is shown. Positive rotation turns content clockwise on screen (y down), as the
/// motion estimator reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CameraPoint {
    pub x: f64,
    pub y: f64,
    pub log_scale: f64,
    pub rotation: f64,
}

impl CameraPoint {
    /// The output→view matrix showing the scene under this content transform. The origin is
    /// exactly the identity.
    pub fn transform(&self, width: usize, height: usize) -> Transform {
        let (cx, cy) = (width as f64 / 2.0, height as f64 / 2.0);
        let s = libm::exp(-self.log_scale);
        let (sin, cos) = (libm::sin(self.rotation), libm::cos(self.rotation));
        // p = c + s·R(−θ)·(q − c − t)
        let (a, b, c, d) = (s * cos, s * sin, -s * sin, s * cos);
        let (ux, uy) = (cx + self.x, cy + self.y);
        Transform::from_rows([
            [a, b, cx - (a * ux + b * uy)],
            [c, d, cy - (c * ux + d * uy)],
            [0.0, 0.0, 1.0],
        ])
    }

    /// Each axis clamped to the §3.3 full-scale limits for a `width`×`height` frame.
    pub fn clamped(&self, width: usize, height: usize) -> Self {
        let limit_x = HORIZONTAL_FULL_SCALE * width as f64;
        let limit_y = VERTICAL_FULL_SCALE * height as f64;
        let limit_s = libm::log(ZOOM_FULL_SCALE_FACTOR);
        let limit_r = ROLL_FULL_SCALE_DEG.to_radians();
        let c = |v: f64, l: f64| if v.is_finite() { v.clamp(-l, l) } else { 0.0 };
        Self {
            x: c(self.x, limit_x),
            y: c(self.y, limit_y),
            log_scale: c(self.log_scale, limit_s),
            rotation: c(self.rotation, limit_r),
        }
    }

    fn add(&self, m: &GlobalMotion) -> Self {
        let f = |v: f64| if v.is_finite() { v } else { 0.0 };
        Self {
            x: self.x + f(m.dx),
            y: self.y + f(m.dy),
            log_scale: self.log_scale + f(m.log_scale),
            rotation: self.rotation + f(m.rotation),
        }
    }

    fn lerp(&self, other: &Self, t: f64) -> Self {
        let l = |a: f64, b: f64| a + (b - a) * t;
        Self {
            x: l(self.x, other.x),
            y: l(self.y, other.y),
            log_scale: l(self.log_scale, other.log_scale),
            rotation: l(self.rotation, other.rotation),
        }
    }
}

/// The reference's camera path for `frames` output frames of `size` (§3.12): the global
/// motion integrated over the reference (translation, log-scale and roll), resampled by
/// linear interpolation over normalised time, scaled from thumbnail to output pixels and
/// clamped per axis.
pub fn camera_path(motion: &MotionTrack, frames: usize, size: Size) -> Vec<CameraPoint> {
    let mut integrated = Vec::with_capacity(motion.global.len() + 1);
    integrated.push(CameraPoint::default());
    for m in &motion.global {
        let last = integrated[integrated.len() - 1];
        integrated.push(last.add(m));
    }
    let (w, h) = (size.width as usize, size.height as usize);
    let sx = f64::from(size.width) / f64::from(motion.thumb_width.max(1));
    let sy = f64::from(size.height) / f64::from(motion.thumb_height.max(1));
    let last = (integrated.len() - 1) as f64;
    (0..frames)
        .map(|i| {
            let u = progress(i, frames) * last;
            let j = (libm::floor(u) as usize).min(integrated.len() - 1);
            let next = (j + 1).min(integrated.len() - 1);
            let p = integrated[j].lerp(&integrated[next], u - j as f64);
            CameraPoint {
                x: p.x * sx,
                y: p.y * sy,
                ..p
            }
            .clamped(w, h)
        })
        .collect()
}

/// What the camera moves over.
enum Subject {
    /// The omni first-frame image.
    Picture(StillCanvas),
    /// The prompt's procedural scene (§3.7): its sprites and caption over each frame.
    Scene {
        scene: Scene,
        canvas: StillCanvas,
        caption: Caption,
    },
}

impl Subject {
    fn canvas(&self) -> &StillCanvas {
        match self {
            Subject::Picture(c) | Subject::Scene { canvas: c, .. } => c,
        }
    }
}

/// A feature-reference clip ready to draw.
struct Clip {
    subject: Subject,
    cards: Option<ReferenceLayer>,
    path: Vec<CameraPoint>,
    reference: SourceVideo,
}

impl Clip {
    fn new(
        spec: &RenderSpec,
        size_override: Option<Size>,
        pool: &EnginePool,
        cancel: &CancelFlag,
    ) -> Result<Self, RenderError> {
        let entry = video_reference(spec, VideoReferKind::Feature)?;
        let ((reference, image), pictures) = pool.install(|| {
            rayon::join(
                || {
                    rayon::join(
                        || open_video(entry.video.bytes(), VIDEO_FIELD),
                        || {
                            spec.first_frame
                                .as_ref()
                                .map(|a| decode_picture(a.bytes(), "image_list[first_frame]"))
                                .transpose()
                        },
                    )
                },
                || decode_references(&spec.references, "image_list"),
            )
        });
        let (reference, image, pictures) = (reference?, image?, pictures?);
        let frames = frames_for_seconds(duration_s(spec.duration_s, reference.duration_s()));
        let size = match (size_override, &image) {
            (Some(s), _) => s,
            (None, Some(p)) => {
                output_size(spec.mode, p.width, p.height, "image_list[first_frame]")?
            }
            (None, None) => preset_size(spec.mode, spec.aspect),
        };
        let (w, h) = (size.width as usize, size.height as usize);
        let seed = scene_seed(&spec.model_name, &spec.prompt, &spec.negative_prompt);
        let subject = || -> Result<Subject, RenderError> {
            match &image {
                Some(p) => Ok(Subject::Picture(StillCanvas::from_picture(p, size, pool)?)),
                None => {
                    let mut scene = Scene::new(seed, &spec.prompt, w, h);
                    if let Some(colours) = palette(&pictures) {
                        scene = scene.with_palette(&colours);
                    }
                    let layout = CanvasLayout::new(w, h);
                    let drawn = scene.draw_canvas(&layout);
                    Ok(Subject::Scene {
                        canvas: StillCanvas::from_canvas(layout, drawn)?,
                        caption: Caption::new(&spec.prompt, seed, w, h)?,
                        scene,
                    })
                }
            }
        };
        // The whole reference is analysed: its path is stretched over the output's length.
        let (subject, motion) = pool.install(|| {
            rayon::join(subject, || {
                estimate_motion(&reference, reference.frames_at_24fps(), cancel)
            })
        });
        let (subject, motion) = (subject?, motion.map_err(|e| named(VIDEO_FIELD, e))?);
        let cards = (!pictures.is_empty()).then(|| ReferenceLayer::new(&pictures, seed, w, h));
        Ok(Self {
            subject,
            cards,
            path: camera_path(&motion, frames as usize, size),
            reference,
        })
    }

    fn size(&self) -> Size {
        self.subject.canvas().size()
    }

    fn frames(&self) -> u32 {
        self.path.len() as u32
    }

    fn camera(&self, i: usize) -> Transform {
        let l = self.subject.canvas().layout();
        self.path
            .get(i)
            .copied()
            .unwrap_or_default()
            .transform(l.view_width, l.view_height)
    }

    fn draw(&self, i: u32, out: &mut I420Frame) -> Result<(), RenderError> {
        let canvas = self.subject.canvas();
        if (out.width(), out.height()) != (canvas.layout().view_width, canvas.layout().view_height)
        {
            *out = canvas.blank_frame();
        }
        canvas
            .render(&self.camera(i as usize), out)
            .map_err(|e| RenderError::Internal(format!("feature reference frame {i}: {e}")))?;
        if let Subject::Scene { scene, caption, .. } = &self.subject {
            scene.draw_sprites(i, out);
            caption.draw(i, out);
        }
        if let Some(cards) = &self.cards {
            cards.draw(i, out);
        }
        Ok(())
    }

    fn frame(&self, i: u32) -> Result<I420Frame, RenderError> {
        let mut out = self.subject.canvas().blank_frame();
        self.draw(i, &mut out)?;
        Ok(out)
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
    let keep = video_reference(spec, VideoReferKind::Feature)?.keep_original_sound;
    let plan = StreamPlan::new(spec.mode, clip.size(), clip.frames(), &[]);
    finish_drawn(
        spec,
        &plan,
        &|i, out| clip.draw(i, out),
        &|| clip.subject.canvas().blank_frame(),
        // A reference shorter than the clip simply ends early (§2.5); it is never looped.
        || reference_audio(&clip.reference, keep, plan.frames, VIDEO_FIELD),
        pool,
        cancel,
    )
}

/// Test-only entry point (§3.15): the pre-encode frames of a feature-reference spec, optionally
/// at a size the API cannot reach (both sides even). Runs on a pool of `threads`.
#[doc(hidden)]
pub fn feature_reference_frames(
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

    #[test]
    fn duration_rule() {
        assert_eq!(duration_s(Some(7), 2.0), 7);
        assert_eq!(duration_s(None, 5.4), 5);
        assert_eq!(duration_s(None, 5.5), 6);
        assert_eq!(duration_s(None, 1.2), 3);
        assert_eq!(duration_s(None, 42.0), 10);
        assert_eq!(duration_s(None, f64::NAN), 3);
    }

    fn track(steps: usize, step: GlobalMotion) -> MotionTrack {
        MotionTrack {
            global: vec![step; steps],
            activity: vec![0.0; steps],
            centroid: vec![0.5; steps],
            thumb_width: 160,
            thumb_height: 90,
        }
    }

    #[test]
    fn path_is_integrated_resampled_and_scaled() {
        let step = GlobalMotion {
            dx: 0.5,
            dy: -0.25,
            log_scale: 0.001,
            rotation: 0.0,
        };
        // 25 reference frames (24 steps) stretched over 49 output frames of twice the
        // thumbnail's size.
        let path = camera_path(&track(24, step), 49, Size::new(320, 180));
        assert_eq!(path.len(), 49);
        assert_eq!(path[0], CameraPoint::default());
        let end = path[48];
        assert!((end.x - 24.0).abs() < 1e-9, "{end:?}");
        assert!((end.y + 12.0).abs() < 1e-9);
        assert!((end.log_scale - 0.024).abs() < 1e-12);
        // Half way through the output is half way through the reference.
        assert!((path[24].x - 12.0).abs() < 1e-9);
        // Odd output frames fall between reference frames.
        assert!((path[1].x - 0.5).abs() < 1e-9);
    }

    #[test]
    fn path_is_clamped_to_full_scale() {
        let step = GlobalMotion {
            dx: 10.0,
            dy: 10.0,
            log_scale: 0.1,
            rotation: 0.1,
        };
        let path = camera_path(&track(48, step), 24, Size::new(160, 90));
        let end = path[23];
        assert_eq!(end.x, 40.0);
        assert_eq!(end.y, 22.5);
        assert_eq!(end.log_scale, libm::log(1.5));
        assert_eq!(end.rotation, 15f64.to_radians());
        let single = camera_path(&track(0, step), 24, Size::new(160, 90));
        assert!(single.iter().all(|p| *p == CameraPoint::default()));
    }

    #[test]
    fn content_transform_moves_content_the_way_the_reference_did() {
        let (w, h) = (200, 100);
        assert_eq!(CameraPoint::default().transform(w, h), Transform::IDENTITY);
        // Content moved right by 10: the output at x samples the scene at x − 10.
        let right = CameraPoint {
            x: 10.0,
            ..CameraPoint::default()
        };
        let (sx, sy) = right.transform(w, h).apply(50.0, 50.0).unwrap();
        assert!((sx - 40.0).abs() < 1e-9 && (sy - 50.0).abs() < 1e-9);
        // Content grew: a point off centre samples nearer the centre.
        let grow = CameraPoint {
            log_scale: libm::log(2.0),
            ..CameraPoint::default()
        };
        let (gx, _) = grow.transform(w, h).apply(200.0, 50.0).unwrap();
        assert!((gx - 150.0).abs() < 1e-9);
        // Clockwise content rotation: the point right of centre shows what was above it.
        let turn = CameraPoint {
            rotation: std::f64::consts::FRAC_PI_2,
            ..CameraPoint::default()
        };
        let (tx, ty) = turn.transform(w, h).apply(110.0, 50.0).unwrap();
        assert!(
            (tx - 100.0).abs() < 1e-9 && (ty - 40.0).abs() < 1e-9,
            "{tx} {ty}"
        );
    }
}
