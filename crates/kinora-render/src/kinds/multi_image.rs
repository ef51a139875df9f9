//! Multi-image2video (§3.9): the text2video procedural scene for the prompt, painted in the
//! references' five-colour palette, with up to four reference cards moving through it.
//! Duration, aspect ratio, mode, camera and sound work as in text2video, and the caption
//! (§3.7) marks the clip as a stand-in.

use crate::audio::SoundtrackScene;
use crate::camera::{camera_speed, camera_transform, default_move, CameraControl, CanvasLayout};
use crate::engine::{CancelFlag, EnginePool, RenderError, RenderOutput};
use crate::frame::I420Frame;
use crate::overlay::Caption;
use crate::plan::{frames_for_seconds, preset_size, Size, StreamPlan};
use crate::references::{decode_references, palette, ReferenceLayer};
use crate::scene::Scene;
use crate::seed::scene_seed;
use crate::spec::RenderSpec;
use crate::still::StillCanvas;

use super::image2video::FirstError;
use super::{finish, procedural_soundtrack, Frames};

/// The request field the references come from, for error messages.
const FIELD: &str = "image_list";

/// A multi-image2video clip ready to draw.
struct MultiImage {
    scene: Scene,
    canvas: StillCanvas,
    control: CameraControl,
    frames: usize,
    cards: ReferenceLayer,
    caption: Caption,
}

impl MultiImage {
    fn new(
        spec: &RenderSpec,
        size: Size,
        frames: u32,
        pool: &EnginePool,
    ) -> Result<Self, RenderError> {
        if spec.references.is_empty() {
            return Err(RenderError::Client(format!(
                "{FIELD}: multi-image2video needs at least one reference image"
            )));
        }
        let pictures = pool.install(|| decode_references(&spec.references, FIELD))?;
        let colours = palette(&pictures).ok_or_else(|| {
            RenderError::Internal("references decoded without any pixels".to_owned())
        })?;
        let seed = scene_seed(&spec.model_name, &spec.prompt, &spec.negative_prompt);
        let (w, h) = (size.width as usize, size.height as usize);
        let scene = Scene::new(seed, &spec.prompt, w, h).with_palette(&colours);
        let layout = CanvasLayout::new(w, h);
        let canvas = pool.install(|| scene.draw_canvas(&layout));
        Ok(Self {
            scene,
            canvas: StillCanvas::from_canvas(layout, canvas)?,
            control: spec.camera.unwrap_or_else(|| default_move(seed)),
            frames: frames as usize,
            cards: ReferenceLayer::new(&pictures, seed, w, h),
            caption: Caption::new(&spec.prompt, seed, w, h)?,
        })
    }

    fn camera(&self, i: usize) -> crate::warp::Transform {
        let l = self.canvas.layout();
        camera_transform(&self.control, i, self.frames, l.view_width, l.view_height)
    }

    fn draw(&self, i: u32, out: &mut I420Frame) -> Result<(), RenderError> {
        self.canvas
            .render(&self.camera(i as usize), out)
            .map_err(|e| RenderError::Internal(format!("multi-image2video frame {i}: {e}")))?;
        self.scene.draw_sprites(i, out);
        self.cards.draw(i, out);
        self.caption.draw(i, out);
        Ok(())
    }

    fn speed(&self) -> Vec<f32> {
        let l = self.canvas.layout();
        camera_speed(
            &|i| self.camera(i),
            self.frames,
            l.view_width,
            l.view_height,
        )
    }
}

pub(super) fn render(
    spec: &RenderSpec,
    pool: &EnginePool,
    cancel: &CancelFlag,
) -> Result<RenderOutput, RenderError> {
    let size = preset_size(spec.mode, spec.aspect);
    let plan = StreamPlan::new(
        spec.mode,
        size,
        frames_for_seconds(spec.duration_or_default()),
        &[],
    );
    let clip = MultiImage::new(spec, size, plan.frames, pool)?;
    let errors = FirstError::default();
    let draw = |i: u32, buf: &mut I420Frame| errors.keep(clip.draw(i, buf));
    let first = || {
        let mut frame = clip.canvas.blank_frame();
        errors.keep(clip.draw(0, &mut frame));
        frame
    };
    let scene = SoundtrackScene {
        cuts: Vec::new(),
        camera_speed: clip.speed(),
    };
    let out = finish(
        spec,
        Frames {
            plan: &plan,
            draw: &draw,
            first_frame: &first,
        },
        || procedural_soundtrack(spec, plan.frames, &scene),
        pool,
        cancel,
    )?;
    errors.check()?;
    Ok(out)
}
