//! Text2video (§3.7): a procedural scene seeded from the prompt. Its backdrop is drawn once
//! over a camera canvas; the camera (`camera_control`, or the seeded default move) moves over
//! it and the sprites are blended over each output frame.

use crate::audio::SoundtrackScene;
use crate::camera::{camera_speed, camera_transform, default_move, CameraControl, CanvasLayout};
use crate::engine::{CancelFlag, EnginePool, RenderError, RenderOutput};
use crate::frame::I420Frame;
use crate::overlay::Caption;
use crate::plan::{frames_for_seconds, preset_size, Size, StreamPlan};
use crate::scene::Scene;
use crate::seed::scene_seed;
use crate::spec::RenderSpec;
use crate::still::StillCanvas;

use super::image2video::FirstError;
use super::{finish, procedural_soundtrack, Frames};

/// A text2video clip ready to draw.
struct Text2Video {
    scene: Scene,
    canvas: StillCanvas,
    control: CameraControl,
    frames: usize,
    /// The prompt-and-seed caption over frames 0–59 (§3.7).
    caption: Caption,
}

impl Text2Video {
    fn new(
        spec: &RenderSpec,
        size: Size,
        frames: u32,
        pool: &EnginePool,
    ) -> Result<Self, RenderError> {
        let seed = scene_seed(&spec.model_name, &spec.prompt, &spec.negative_prompt);
        let (w, h) = (size.width as usize, size.height as usize);
        let scene = Scene::new(seed, &spec.prompt, w, h);
        let layout = CanvasLayout::new(w, h);
        let canvas = pool.install(|| scene.draw_canvas(&layout));
        Ok(Self {
            scene,
            canvas: StillCanvas::from_canvas(layout, canvas)?,
            control: spec.camera.unwrap_or_else(|| default_move(seed)),
            frames: frames as usize,
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
            .map_err(|e| RenderError::Internal(format!("text2video frame {i}: {e}")))?;
        self.scene.draw_sprites(i, out);
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
    let clip = Text2Video::new(spec, size, plan.frames, pool)?;
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
