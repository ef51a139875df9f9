//! Text2video (§3.7): a procedural scene seeded from the prompt.

use crate::audio::SoundtrackScene;
use crate::engine::{CancelFlag, EnginePool, RenderError, RenderOutput};
use crate::frame::I420Frame;
use crate::plan::{frames_for_seconds, preset_size, StreamPlan};
use crate::scene::Scene;
use crate::seed::scene_seed;
use crate::spec::RenderSpec;

use super::{finish, procedural_soundtrack, Frames};

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
    let seed = scene_seed(&spec.model_name, &spec.prompt, &spec.negative_prompt);
    let scene = Scene::new(
        seed,
        &spec.prompt,
        size.width as usize,
        size.height as usize,
    );
    let draw = |i: u32, buf: &mut I420Frame| scene.draw(i, buf);
    let first = || {
        let mut frame = scene.blank_frame();
        scene.draw(0, &mut frame);
        frame
    };
    finish(
        spec,
        Frames {
            plan: &plan,
            draw: &draw,
            first_frame: &first,
        },
        || procedural_soundtrack(spec, plan.frames, &SoundtrackScene::default()),
        pool,
        cancel,
    )
}
