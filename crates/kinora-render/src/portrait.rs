//! Pictures of the built-in preset elements: each view is a still of the procedural scene the
//! element's description seeds (so a description naming a colour gets that palette), taken
//! at a different moment per view so the sprites stand elsewhere, and captioned with the
//! element's name. They are real JPEGs, drawn deterministically, so a fresh install has a
//! usable preset library without downloading anything.

use std::sync::Arc;

use crate::cover::cover_jpeg;
use crate::engine::CancelFlag;
use crate::engine::RenderError;
use crate::overlay::Caption;
use crate::plan::Size;
use crate::scene::Scene;
use crate::seed::{scene_seed, sub_seed};
use crate::source::SourceVideo;

/// Side of the square portraits, in pixels: above every image rule's minimum.
pub const PORTRAIT_SIDE: usize = 768;

/// Frames between two views, so each view catches the sprites a second and a half apart.
const FRAMES_BETWEEN_VIEWS: u32 = 36;

/// The JPEG of view `view` (0 = front) of the element called `name`.
pub fn element_portrait(name: &str, description: &str, view: u32) -> Result<Vec<u8>, RenderError> {
    let seed = scene_seed("kinora-element", description, "");
    let scene = Scene::new(seed, description, PORTRAIT_SIDE, PORTRAIT_SIDE);
    let mut frame = scene.blank_frame();
    scene.draw(view.saturating_mul(FRAMES_BETWEEN_VIEWS), &mut frame);
    // The caption's second line names the view's own seed, so the views tell apart in text too.
    Caption::new(
        name,
        sub_seed(seed, "view", view),
        PORTRAIT_SIDE,
        PORTRAIT_SIDE,
    )?
    .draw(0, &mut frame);
    cover_jpeg(&frame).map_err(|e| RenderError::Internal(format!("portrait JPEG: {e}")))
}

/// The first picture of a clip as a JPEG, at the clip's display size: the front view of an
/// element described by a video. Fails with a client error for a clip the engine cannot
/// decode.
pub fn video_still(clip: &[u8]) -> Result<Vec<u8>, RenderError> {
    let source = SourceVideo::open(Arc::from(clip))?;
    let (width, height) = source.display_size();
    // Frames are 4:2:0: an odd side loses its last pixel.
    let size = Size::new(width & !1, height & !1);
    let mut first = None;
    source.for_each_frame_24(size, 0..1, &CancelFlag::new(), |_, frame| {
        first = Some(frame.clone());
        Ok(())
    })?;
    let frame = first.ok_or_else(|| RenderError::Client("the clip has no picture".to_owned()))?;
    cover_jpeg(&frame).map_err(|e| RenderError::Internal(format!("still JPEG: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portraits_are_deterministic_jpegs_that_differ_by_view() {
        let front = element_portrait("Knight", "Armoured knight in silver", 0).expect("front");
        let again = element_portrait("Knight", "Armoured knight in silver", 0).expect("again");
        let side = element_portrait("Knight", "Armoured knight in silver", 1).expect("side");
        assert_eq!(front, again);
        assert_ne!(front, side);
        let decoded = image::load_from_memory(&front).expect("decodes");
        assert_eq!(
            (decoded.width(), decoded.height()),
            (PORTRAIT_SIDE as u32, PORTRAIT_SIDE as u32)
        );
        assert_eq!(&front[..3], &[0xFF, 0xD8, 0xFF]);
    }
}
