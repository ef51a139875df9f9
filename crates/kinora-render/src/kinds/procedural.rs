//! The procedural kinds: text2video (§3.7), a seeded scene for the prompt, and
//! multi-image2video (§3.9), the same scene painted in the references' five-colour palette
//! with up to four reference cards moving through it. Each shot's backdrop is drawn once over
//! a camera canvas; the camera (`camera_control`, or the shot's seeded default move) moves over
//! it, and the sprites, cards and caption are blended over each output frame.
//!
//! Multi-shot clips (§3.6) get one scene per shot, cut hard at the shot boundaries; the
//! palette family comes from the clip's base seed so the shots look like one film.

use rayon::prelude::*;

use crate::audio::SoundtrackScene;
use crate::camera::{camera_speed, camera_transform, default_move, CameraControl, CanvasLayout};
use crate::engine::{CancelFlag, EnginePool, RenderError, RenderOutput};
use crate::frame::I420Frame;
use crate::overlay::Caption;
use crate::plan::{preset_size, Size, StreamPlan};
use crate::references::{decode_references, palette, ReferenceLayer};
use crate::scene::{keyword_hue, Scene, Yuv};
use crate::shots::{PlannedShot, ShotLayout};
use crate::spec::RenderSpec;
use crate::still::StillCanvas;
use crate::warp::Transform;

use super::{finish_drawn, procedural_soundtrack};

/// The request field references come from, for error messages.
const REFERENCES_FIELD: &str = "image_list";

/// Whether the scene takes its colours from reference images.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Colours {
    Seeded,
    FromReferences,
}

/// One shot: its own scene, canvas, camera and caption.
struct ShotScene {
    scene: Scene,
    canvas: StillCanvas,
    control: CameraControl,
    caption: Caption,
}

/// A procedural clip ready to draw.
struct Procedural {
    layout: ShotLayout,
    size: Size,
    shots: Vec<ShotScene>,
    /// Reference cards, over the whole clip (multi-image2video and omni references).
    cards: Option<ReferenceLayer>,
}

impl Procedural {
    /// The clip of `spec`: its shots at the size of its mode and aspect ratio.
    fn new(spec: &RenderSpec, colours: Colours, pool: &EnginePool) -> Result<Self, RenderError> {
        let layout = ShotLayout::for_spec(spec)?;
        let size = preset_size(spec.mode, spec.aspect);
        let (w, h) = (size.width as usize, size.height as usize);
        let (palette_colours, cards) = match colours {
            Colours::Seeded => (None, None),
            Colours::FromReferences => {
                if spec.references.is_empty() {
                    return Err(RenderError::Client(format!(
                        "{REFERENCES_FIELD}: multi-image2video needs at least one reference image"
                    )));
                }
                let pictures =
                    pool.install(|| decode_references(&spec.references, REFERENCES_FIELD))?;
                let colours = palette(&pictures).ok_or_else(|| {
                    RenderError::Internal("references decoded without any pixels".to_owned())
                })?;
                let cards = ReferenceLayer::new(&pictures, layout.base_seed, w, h);
                (Some(colours), Some(cards))
            }
        };
        // A keyword in any shot prompt tints the whole film, as the prompt does a single shot.
        let hue_hint = layout.shots.iter().find_map(|s| keyword_hue(&s.prompt));
        let shots = pool.install(|| {
            layout
                .shots
                .par_iter()
                .map(|shot| {
                    shot_scene(
                        spec,
                        &layout,
                        shot,
                        hue_hint,
                        palette_colours.as_ref(),
                        size,
                    )
                })
                .collect::<Result<Vec<_>, RenderError>>()
        })?;
        Ok(Self {
            layout,
            size,
            shots,
            cards,
        })
    }

    /// A frame to draw into: limited-range black.
    fn blank(&self) -> I420Frame {
        let (w, h) = (self.size.width as usize, self.size.height as usize);
        I420Frame::filled(w, h, (16, 128, 128))
    }

    fn camera(&self, k: usize, local: usize) -> Transform {
        let (shot, scene) = (&self.layout.shots[k], &self.shots[k]);
        let l = scene.canvas.layout();
        camera_transform(
            &scene.control,
            local,
            shot.frames as usize,
            l.view_width,
            l.view_height,
        )
    }

    fn draw(&self, i: u32, out: &mut I420Frame) -> Result<(), RenderError> {
        let (k, local) = self
            .layout
            .locate(i)
            .ok_or_else(|| RenderError::Internal(format!("frame {i} is past the last shot")))?;
        let shot = &self.shots[k];
        shot.canvas
            .render(&self.camera(k, local as usize), out)
            .map_err(|e| RenderError::Internal(format!("procedural frame {i}: {e}")))?;
        shot.scene.draw_sprites(local, out);
        if let Some(cards) = &self.cards {
            cards.draw(i, out);
        }
        shot.caption.draw(local, out);
        Ok(())
    }

    /// Camera speed per frame, shot by shot, for the soundtrack.
    fn speed(&self) -> Vec<f32> {
        let mut speed = Vec::with_capacity(self.layout.total_frames() as usize);
        for (k, (shot, scene)) in self.layout.shots.iter().zip(&self.shots).enumerate() {
            let l = scene.canvas.layout();
            speed.extend(camera_speed(
                &|i| self.camera(k, i),
                shot.frames as usize,
                l.view_width,
                l.view_height,
            ));
        }
        speed
    }
}

fn shot_scene(
    spec: &RenderSpec,
    layout: &ShotLayout,
    shot: &PlannedShot,
    hue_hint: Option<f64>,
    colours: Option<&[Yuv; 5]>,
    size: Size,
) -> Result<ShotScene, RenderError> {
    let (w, h) = (size.width as usize, size.height as usize);
    let scene = if layout.multi {
        Scene::shot(shot.seed, layout.base_seed, hue_hint, w, h)
    } else {
        Scene::new(shot.seed, &shot.prompt, w, h)
    };
    let scene = match colours {
        Some(c) => scene.with_palette(c),
        None => scene,
    };
    let canvas_layout = CanvasLayout::new(w, h);
    let canvas = scene.draw_canvas(&canvas_layout);
    Ok(ShotScene {
        scene,
        canvas: StillCanvas::from_canvas(canvas_layout, canvas)?,
        control: spec.camera.unwrap_or_else(|| default_move(shot.seed)),
        caption: Caption::new(&shot.prompt, shot.seed, w, h)?,
    })
}

/// Test and benchmark entry point (§3.15): the pre-encode frames of a text2video spec (seeded
/// colours), exactly as the encoders receive them. Runs on a pool of `threads`.
#[doc(hidden)]
pub fn text2video_frames(spec: &RenderSpec, threads: usize) -> Result<Vec<I420Frame>, RenderError> {
    super::frames_of(
        spec,
        threads,
        |pool| Procedural::new(spec, Colours::Seeded, pool),
        |clip| clip.layout.total_frames(),
        |clip, i| {
            let mut frame = clip.blank();
            clip.draw(i, &mut frame)?;
            Ok(frame)
        },
    )
}

pub(super) fn render(
    spec: &RenderSpec,
    colours: Colours,
    pool: &EnginePool,
    cancel: &CancelFlag,
) -> Result<RenderOutput, RenderError> {
    let clip = Procedural::new(spec, colours, pool)?;
    let layout = &clip.layout;
    let plan = StreamPlan::new(spec.mode, clip.size, layout.total_frames(), &layout.cuts());
    if cancel.is_cancelled() {
        return Err(RenderError::Cancelled);
    }
    let scene = SoundtrackScene {
        cuts: clip.layout.cuts().into_iter().map(u64::from).collect(),
        camera_speed: clip.speed(),
    };
    finish_drawn(
        spec,
        &plan,
        &|i, out| clip.draw(i, out),
        &|| clip.blank(),
        || procedural_soundtrack(spec, &clip.layout, plan.frames, &scene),
        pool,
        cancel,
    )
}
