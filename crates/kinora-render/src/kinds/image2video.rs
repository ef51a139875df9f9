//! Image2video (§3.3–§3.5): the input picture on its canvas, moved by the camera
//! (`camera_control` or the seeded default move); or the first/last-frame cross-dissolve; or
//! the motion brush. The output takes the shape of `image` (of `image_tail` when it comes
//! alone), contain-fitted into the mode's frame (§2.4).

use std::sync::Mutex;

use rayon::prelude::*;

use crate::audio::SoundtrackScene;
use crate::camera::{
    camera_speed, camera_transform, default_move, dissolve_at, ease, CameraControl, CanvasLayout,
};
use crate::engine::{CancelFlag, EnginePool, RenderError, RenderOutput};
use crate::frame::{I420Frame, Plane};
use crate::plan::{Size, StreamPlan, FPS};
use crate::references::{decode_references, ReferenceLayer};
use crate::scene::Scene;
use crate::shots::{crop_window, ShotLayout};
use crate::spec::RenderSpec;
use crate::still::{
    decode_mask, decode_picture, output_size, prepare_mask, FitMapping, Mask, Picture, StillCanvas,
};
use crate::warp::brush::{
    BrushScratch, MotionBrush, Trajectory, MAX_DYNAMIC_MASKS, MAX_TRAJECTORY_POINTS,
    MIN_TRAJECTORY_POINTS,
};
use crate::warp::{blend_into, Transform, BLEND_ONE};

use super::{finish_drawn, procedural_soundtrack};

/// Buffers handed out to concurrent frame jobs and taken back, so a render allocates them
/// once per job that runs at the same time rather than once per frame. Their contents are
/// overwritten before use, so which job gets which buffer never shows in the output.
struct ScratchPool<T>(Mutex<Vec<T>>);

impl<T> ScratchPool<T> {
    fn new() -> Self {
        Self(Mutex::new(Vec::new()))
    }

    fn with<R>(&self, make: impl FnOnce() -> T, f: impl FnOnce(&mut T) -> R) -> R {
        let taken = self.0.lock().ok().and_then(|mut free| free.pop());
        let mut item = taken.unwrap_or_else(make);
        let result = f(&mut item);
        if let Ok(mut free) = self.0.lock() {
            free.push(item);
        }
        result
    }
}

/// What the head of a first/last-frame dissolve shows.
enum Head {
    Picture(StillCanvas),
    /// `image_tail` alone: the seeded procedural scene, its sprites over each frame.
    Scene(Scene, StillCanvas),
}

impl Head {
    fn canvas(&self) -> &StillCanvas {
        match self {
            Head::Picture(c) | Head::Scene(_, c) => c,
        }
    }
}

/// The camera of one shot over the picture's canvas.
struct ShotCamera {
    /// A later multi-shot shot frames the picture anew (§3.6): view→view, before the camera.
    framing: Option<Transform>,
    control: CameraControl,
}

enum Source {
    /// `image` alone: the camera move (or the default move) over its canvas, once per shot.
    Camera {
        canvas: StillCanvas,
        shots: Vec<ShotCamera>,
    },
    /// `image_tail` with or without `image`: the eased cross-dissolve (§3.4).
    Dissolve {
        head: Head,
        tail: StillCanvas,
        scratch: ScratchPool<I420Frame>,
    },
    /// `static_mask` / `dynamic_masks` (§3.5): no camera.
    Brush {
        brush: MotionBrush,
        scratch: ScratchPool<BrushScratch>,
    },
}

/// An image2video clip ready to draw.
struct Clip {
    size: Size,
    frames: usize,
    layout: ShotLayout,
    source: Source,
    /// Omni reference images and elements over a first frame: cards moving through the clip
    /// (§3.9).
    cards: Option<ReferenceLayer>,
}

fn internal(context: &str) -> impl Fn(&dyn std::fmt::Display) -> RenderError + '_ {
    move |e| RenderError::Internal(format!("{context}: {e}"))
}

/// The checks Kling's validator makes that the engine depends on, repeated here.
fn check_spec(spec: &RenderSpec) -> Result<(), RenderError> {
    let client = |m: &str| Err(RenderError::Client(m.to_owned()));
    let brush = spec.static_mask.is_some() || !spec.dynamic_masks.is_empty();
    if spec.first_frame.is_none() && spec.last_frame.is_none() {
        return client("image2video needs `image` or `image_tail`");
    }
    if brush && spec.first_frame.is_none() {
        return client("static_mask and dynamic_masks need `image`");
    }
    if brush && spec.last_frame.is_some() {
        return client("image_tail cannot be combined with static_mask or dynamic_masks");
    }
    if spec.camera.is_some() && spec.last_frame.is_some() {
        return client("camera_control cannot be combined with image_tail");
    }
    if spec.camera.is_some() && brush {
        return client("camera_control cannot be combined with static_mask or dynamic_masks");
    }
    if spec.dynamic_masks.len() > MAX_DYNAMIC_MASKS {
        return Err(RenderError::Client(format!(
            "dynamic_masks: at most {MAX_DYNAMIC_MASKS} entries, got {}",
            spec.dynamic_masks.len()
        )));
    }
    for (k, m) in spec.dynamic_masks.iter().enumerate() {
        let n = m.trajectory.len();
        if !(MIN_TRAJECTORY_POINTS..=MAX_TRAJECTORY_POINTS).contains(&n) {
            return Err(RenderError::Client(format!(
                "dynamic_masks[{k}].trajectories: needs {MIN_TRAJECTORY_POINTS} to \
                 {MAX_TRAJECTORY_POINTS} points, got {n}"
            )));
        }
        if m.trajectory
            .iter()
            .any(|&(x, y)| !x.is_finite() || !y.is_finite())
        {
            return Err(RenderError::Client(format!(
                "dynamic_masks[{k}].trajectories: every point must be finite"
            )));
        }
    }
    Ok(())
}

fn even_size(size: Size) -> Result<Size, RenderError> {
    if size.width < 2 || size.height < 2 || size.width % 2 == 1 || size.height % 2 == 1 {
        return Err(RenderError::Internal(format!(
            "{}x{} is not an even frame size",
            size.width, size.height
        )));
    }
    Ok(size)
}

impl Clip {
    /// Decodes and prepares everything once: pictures, canvases, masks. Runs on `pool`.
    fn new(
        spec: &RenderSpec,
        size_override: Option<Size>,
        pool: &EnginePool,
    ) -> Result<Self, RenderError> {
        check_spec(spec)?;
        let layout = ShotLayout::for_spec(spec)?;
        let frames = layout.total_frames() as usize;
        let seed = layout.base_seed;
        let decode = |asset: Option<&crate::spec::Asset>, field: &str| {
            asset.map(|a| decode_picture(a.bytes(), field)).transpose()
        };
        let (head, tail) = pool.install(|| {
            rayon::join(
                || decode(spec.first_frame.as_ref(), "image"),
                || decode(spec.last_frame.as_ref(), "image_tail"),
            )
        });
        let (head, tail) = (head?, tail?);
        let shape = match (&head, &tail) {
            (Some(p), _) => (p, "image"),
            (None, Some(p)) => (p, "image_tail"),
            (None, None) => return Err(RenderError::Client("image2video needs `image`".into())),
        };
        let size = match size_override {
            Some(s) => even_size(s)?,
            None => output_size(spec.mode, shape.0.width, shape.0.height, shape.1)?,
        };
        let canvas = |p: &Picture| StillCanvas::from_picture(p, size, pool);
        let source = match (head, tail) {
            (Some(head), None) if spec.static_mask.is_some() || !spec.dynamic_masks.is_empty() => {
                Source::Brush {
                    brush: brush(spec, &head, size, frames, pool)?,
                    scratch: ScratchPool::new(),
                }
            }
            (Some(head), None) => {
                let (w, h) = (size.width as usize, size.height as usize);
                let shots = layout
                    .shots
                    .iter()
                    .enumerate()
                    .map(|(k, shot)| ShotCamera {
                        // Shot 1 starts on the picture exactly.
                        framing: (k > 0).then(|| crop_window(shot.seed, w, h)),
                        control: spec.camera.unwrap_or_else(|| default_move(shot.seed)),
                    })
                    .collect();
                Source::Camera {
                    canvas: canvas(&head)?,
                    shots,
                }
            }
            (Some(head), Some(tail)) => {
                let (h, t) = pool.install(|| rayon::join(|| canvas(&head), || canvas(&tail)));
                Source::Dissolve {
                    head: Head::Picture(h?),
                    tail: t?,
                    scratch: ScratchPool::new(),
                }
            }
            (None, Some(tail)) => {
                let (w, h) = (size.width as usize, size.height as usize);
                let scene = Scene::new(seed, &spec.prompt, w, h);
                let layout = CanvasLayout::new(w, h);
                let drawn = pool.install(|| scene.draw_canvas(&layout));
                Source::Dissolve {
                    head: Head::Scene(scene, StillCanvas::from_canvas(layout, drawn)?),
                    tail: canvas(&tail)?,
                    scratch: ScratchPool::new(),
                }
            }
            (None, None) => return Err(RenderError::Client("image2video needs `image`".into())),
        };
        let cards = if spec.references.is_empty() {
            None
        } else {
            let pictures = pool.install(|| decode_references(&spec.references, "image_list"))?;
            let (w, h) = (size.width as usize, size.height as usize);
            Some(ReferenceLayer::new(&pictures, seed, w, h))
        };
        Ok(Self {
            size,
            frames,
            layout,
            source,
            cards,
        })
    }

    fn blank(&self) -> I420Frame {
        I420Frame::filled(
            self.size.width as usize,
            self.size.height as usize,
            (16, 128, 128),
        )
    }

    /// Output→view matrix of frame `i` of shot `k` (`i` counted inside the shot).
    fn shot_camera(&self, shots: &[ShotCamera], k: usize, i: usize) -> Transform {
        let (w, h) = (self.size.width as usize, self.size.height as usize);
        let frames = self.layout.shots[k].frames as usize;
        let camera = camera_transform(&shots[k].control, i, frames, w, h);
        match shots[k].framing {
            Some(framing) => framing * camera,
            None => camera,
        }
    }

    /// Frame i into `out` (of the output size).
    fn draw(&self, i: usize, out: &mut I420Frame) -> Result<(), RenderError> {
        self.draw_source(i, out)?;
        if let Some(cards) = &self.cards {
            // The clip still starts on the picture exactly: the cards fade in over a second.
            let t = ease((i as f64 / f64::from(FPS)).min(1.0));
            cards.draw_faded(i as u32, libm::round(255.0 * t) as u8, out);
        }
        Ok(())
    }

    fn draw_source(&self, i: usize, out: &mut I420Frame) -> Result<(), RenderError> {
        let (w, h) = (self.size.width as usize, self.size.height as usize);
        let warp = internal("image2video frame");
        match &self.source {
            Source::Camera { canvas, shots } => {
                let (k, local) = self.layout.locate(i as u32).ok_or_else(|| {
                    RenderError::Internal(format!("frame {i} is past the last shot"))
                })?;
                canvas
                    .render(&self.shot_camera(shots, k, local as usize), out)
                    .map_err(|e| warp(&e))
            }
            Source::Dissolve {
                head,
                tail,
                scratch,
            } => {
                let d = dissolve_at(i, self.frames, w, h);
                // The ends are the pictures themselves: frame N−1 is the tail alone.
                if d.tail_weight >= BLEND_ONE {
                    return tail.render(&d.tail, out).map_err(|e| warp(&e));
                }
                head.canvas().render(&d.head, out).map_err(|e| warp(&e))?;
                if let Head::Scene(scene, _) = head {
                    scene.draw_sprites(i as u32, out);
                }
                if d.tail_weight == 0 {
                    return Ok(());
                }
                scratch.with(
                    || self.blank(),
                    |buf| {
                        tail.render(&d.tail, buf).map_err(|e| warp(&e))?;
                        blend_into(out, buf, d.tail_weight).map_err(|e| warp(&e))
                    },
                )
            }
            Source::Brush { brush, scratch } => scratch.with(
                || brush.scratch(),
                |s| brush.render(i, s, out).map_err(|e| warp(&e)),
            ),
        }
    }

    fn frame(&self, i: usize) -> Result<I420Frame, RenderError> {
        let mut out = self.blank();
        self.draw(i, &mut out)?;
        Ok(out)
    }

    /// Camera speed per frame for the soundtrack; the motion brush has no camera.
    fn speed(&self) -> Vec<f32> {
        let (w, h) = (self.size.width as usize, self.size.height as usize);
        match &self.source {
            Source::Camera { shots, .. } => {
                let mut speed = Vec::with_capacity(self.frames);
                for (k, shot) in self.layout.shots.iter().enumerate() {
                    let at = |i| self.shot_camera(shots, k, i);
                    speed.extend(camera_speed(&at, shot.frames as usize, w, h));
                }
                speed
            }
            Source::Dissolve { .. } => camera_speed(
                &|i| dissolve_at(i, self.frames, w, h).head,
                self.frames,
                w,
                h,
            ),
            Source::Brush { .. } => Vec::new(),
        }
    }
}

/// Prepares the motion brush (§3.5) over the prepared picture of `image`.
fn brush(
    spec: &RenderSpec,
    image: &Picture,
    size: Size,
    frames: usize,
    pool: &EnginePool,
) -> Result<MotionBrush, RenderError> {
    let mut named: Vec<(String, &[u8])> = Vec::new();
    if let Some(m) = &spec.static_mask {
        named.push(("static_mask".to_owned(), m.bytes()));
    }
    for (k, m) in spec.dynamic_masks.iter().enumerate() {
        named.push((format!("dynamic_masks[{k}].mask"), m.mask.bytes()));
    }
    let (base, masks) = pool.install(|| {
        rayon::join(
            || {
                StillCanvas::from_picture(image, size, pool)
                    .and_then(|canvas| canvas.prepared_picture())
            },
            || {
                named
                    .par_iter()
                    .map(|(field, bytes)| decode_mask(bytes, field))
                    .collect::<Result<Vec<Mask>, RenderError>>()
            },
        )
    });
    let (base, masks) = (base?, masks?);
    let planes = masks
        .iter()
        .zip(&named)
        .map(|(m, (field, _))| prepare_mask(m, (image.width, image.height), size, field))
        .collect::<Result<Vec<Plane>, RenderError>>()?;
    if let Some(first) = masks.first() {
        for (m, (field, _)) in masks.iter().zip(&named) {
            if (m.width, m.height) != (first.width, first.height) {
                return Err(RenderError::Client(format!(
                    "{field}: is {}x{}, but {} is {}x{}; every mask needs the same resolution",
                    m.width, m.height, named[0].0, first.width, first.height
                )));
            }
        }
    }
    let (static_plane, dynamic_planes) = if spec.static_mask.is_some() {
        (planes.first(), &planes[1..])
    } else {
        (None, &planes[..])
    };
    let fit = FitMapping::new(image.width, image.height, size);
    let image_height = f64::from(image.height);
    let dynamic = dynamic_planes
        .iter()
        .zip(&spec.dynamic_masks)
        .map(|(plane, m)| {
            // Points arrive with the origin at the image's bottom-left.
            let points = m
                .trajectory
                .iter()
                .map(|&(x, y)| fit.image_to_frame(x, image_height - y));
            (plane, Trajectory::from_frame_points(points))
        })
        .collect();
    MotionBrush::new(&base, static_plane, dynamic, frames, FPS)
        .map_err(|e| RenderError::Internal(format!("motion brush: {e}")))
}

pub(super) fn render(
    spec: &RenderSpec,
    pool: &EnginePool,
    cancel: &CancelFlag,
) -> Result<RenderOutput, RenderError> {
    let clip = Clip::new(spec, None, pool)?;
    if cancel.is_cancelled() {
        return Err(RenderError::Cancelled);
    }
    let plan = StreamPlan::new(
        spec.mode,
        clip.size,
        clip.frames as u32,
        &clip.layout.cuts(),
    );
    let scene = SoundtrackScene {
        cuts: clip.layout.cuts().into_iter().map(u64::from).collect(),
        camera_speed: clip.speed(),
    };
    finish_drawn(
        spec,
        &plan,
        &|i, out| clip.draw(i as usize, out),
        &|| clip.blank(),
        || procedural_soundtrack(spec, &clip.layout, plan.frames, &scene),
        pool,
        cancel,
    )
}

/// Test-only entry point (§3.15): the pre-encode frames of an image2video spec, optionally at a
/// size the API cannot reach (such as 192×108; both sides even). Runs on a pool of `threads`.
#[doc(hidden)]
pub fn image2video_frames(
    spec: &RenderSpec,
    size_override: Option<Size>,
    threads: usize,
) -> Result<Vec<I420Frame>, RenderError> {
    super::frames_of(
        spec,
        threads,
        |pool| Clip::new(spec, size_override, pool),
        |clip| clip.frames as u32,
        |clip, i| clip.frame(i as usize),
    )
}
