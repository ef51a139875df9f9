//! One module per render kind. Each turns a [`RenderSpec`] into frames (a draw function over a
//! [`StreamPlan`]) and an optional soundtrack; [`finish`] encodes, muxes and covers them the
//! same way for every kind.

// The video-driven kinds (§3.10–§3.13) and image2video are public only for their test entry
// points (§3.15).
#[doc(hidden)]
pub mod extend;
#[doc(hidden)]
pub mod feature_reference;
#[doc(hidden)]
pub mod image2video;
#[doc(hidden)]
pub mod motion_control;
mod multi_image;
mod text2video;
#[doc(hidden)]
pub mod video_edit;

use crate::audio;
use crate::cover::cover_jpeg;
use crate::engine::{
    encode_video_labelled, mux_chunks, title, CancelFlag, EnginePool, RenderError, RenderMeta,
    RenderOutput,
};
use crate::frame::I420Frame;
use crate::mux::AudioTrack;
use crate::overlay::Watermark;
use crate::plan::StreamPlan;
use crate::seed::{to_hex, ENGINE, REVISION};
use crate::spec::{RenderKind, RenderSpec, VideoReferKind, DURATION_RANGE};

/// Renders any spec: the engine's one entry point.
pub fn render(
    spec: &RenderSpec,
    pool: &EnginePool,
    cancel: &CancelFlag,
) -> Result<RenderOutput, RenderError> {
    validate_common(spec)?;
    match spec.kind {
        RenderKind::Text2Video => text2video::render(spec, pool, cancel),
        RenderKind::Image2Video => image2video::render(spec, pool, cancel),
        RenderKind::MultiImage2Video => multi_image::render(spec, pool, cancel),
        RenderKind::MotionControl => motion_control::render(spec, pool, cancel),
        RenderKind::Extend => extend::render(spec, pool, cancel),
        RenderKind::Omni
            if spec
                .video_reference
                .as_ref()
                .is_some_and(|v| v.refer == VideoReferKind::Base) =>
        {
            video_edit::render(spec, pool, cancel)
        }
        RenderKind::Omni if spec.video_reference.is_some() => {
            feature_reference::render(spec, pool, cancel)
        }
        // Omni without a video: first/last frames animate like image2video; references
        // alone paint the procedural scene and move through it as cards.
        RenderKind::Omni if spec.first_frame.is_some() || spec.last_frame.is_some() => {
            image2video::render(spec, pool, cancel)
        }
        RenderKind::Omni if !spec.references.is_empty() => multi_image::render(spec, pool, cancel),
        RenderKind::Omni => text2video::render(spec, pool, cancel),
    }
}

/// Checks every kind shares: the engine re-checks what it depends on even though the
/// dialects validated first.
fn validate_common(spec: &RenderSpec) -> Result<(), RenderError> {
    if let Some(duration) = spec.duration_s {
        if spec.kind.takes_duration() && !DURATION_RANGE.contains(&duration) {
            return Err(RenderError::Client(format!(
                "duration {duration} s is outside the local engine's range of {}-{} s",
                DURATION_RANGE.start(),
                DURATION_RANGE.end()
            )));
        }
    }
    let cfg = spec.cfg_scale();
    if !cfg.is_finite() || !(0.0..=1.0).contains(&cfg) {
        return Err(RenderError::Client(format!(
            "cfg_scale {cfg} is outside 0-1"
        )));
    }
    if spec.multi_shot.is_some() {
        // Refused rather than rendered as one shot: a silently ignored field would look like
        // a result. The shot layout exists (crate::shots); the kinds do not draw it yet.
        return Err(RenderError::Client(
            "multi_shot is not supported by the local engine yet".to_owned(),
        ));
    }
    if !spec.voice_ids.is_empty() && !spec.sound {
        return Err(RenderError::Client("voice_list needs sound on".to_owned()));
    }
    if let Some(camera) = &spec.camera {
        camera
            .validate()
            .map_err(|e| RenderError::Client(e.to_string()))?;
    }
    Ok(())
}

/// What a kind hands to [`finish`].
pub(crate) struct Frames<'a, D> {
    pub plan: &'a StreamPlan,
    /// Fills frame `i` of the clip; called from several threads at once.
    pub draw: &'a D,
    /// Builds frame 0 for the cover (called once, beside the encoders).
    pub first_frame: &'a (dyn Fn() -> I420Frame + Sync),
}

/// Encodes the frames, builds the cover and the soundtrack in parallel, and muxes the file.
pub(crate) fn finish<D, S>(
    spec: &RenderSpec,
    frames: Frames<'_, D>,
    soundtrack: S,
    pool: &EnginePool,
    cancel: &CancelFlag,
) -> Result<RenderOutput, RenderError>
where
    D: Fn(u32, &mut I420Frame) + Sync,
    S: FnOnce() -> Result<Option<AudioTrack>, RenderError> + Send,
{
    let plan = frames.plan;
    // The label is rasterised once, before any frame (§2.6).
    let watermark = if spec.watermark {
        Some(Watermark::new(
            plan.size.width as usize,
            plan.size.height as usize,
        )?)
    } else {
        None
    };
    // The soundtrack and the cover are small jobs; they run beside the chunk encoders.
    let ((encoded, cover), sound) = pool.install(|| {
        rayon::join(
            || {
                rayon::join(
                    || encode_video_labelled(plan, pool, cancel, frames.draw, watermark.as_ref()),
                    || cover_jpeg(&(frames.first_frame)()),
                )
            },
            soundtrack,
        )
    });
    let (chunks, labelled) = encoded?;
    let cover_jpeg = cover.map_err(|e| RenderError::Internal(format!("cover: {e}")))?;
    // An audio track is either absent or has packets (§2.5: never a silent track).
    let sound = sound?.filter(|t| !t.is_empty());
    let hex = to_hex(&spec.identity());
    let mp4 = mux_chunks(plan, &chunks, sound.as_ref(), &title(&hex))?;
    // The labelled copy shares the audio and carries the watermark identity in its title.
    let watermarked_mp4 = match labelled {
        Some(chunks) => {
            let id = to_hex(&spec.watermark_identity());
            Some(mux_chunks(plan, &chunks, sound.as_ref(), &title(&id))?)
        }
        None => None,
    };
    Ok(RenderOutput {
        mp4,
        cover_jpeg,
        watermarked_mp4,
        meta: RenderMeta {
            width: plan.size.width,
            height: plan.size.height,
            frame_count: plan.frames,
            duration: plan.duration_string(),
            has_audio: sound.is_some(),
            engine: ENGINE,
            revision: REVISION,
            identity: hex,
            keyframes: plan.keyframes(),
        },
    })
}

/// The procedural soundtrack (§3.8) for a spec's seed, or none when sound is off.
pub(crate) fn procedural_soundtrack(
    spec: &RenderSpec,
    frames: u32,
    scene: &audio::SoundtrackScene,
) -> Result<Option<AudioTrack>, RenderError> {
    if !spec.sound {
        return Ok(None);
    }
    let seed = crate::seed::seed_digest(&spec.model_name, &spec.prompt, &spec.negative_prompt);
    let voices = audio::voice_lines_from_prompt(&spec.prompt, &spec.voice_ids);
    let track = audio::soundtrack_scene(&seed, u64::from(frames), &voices, scene)
        .map_err(|e| RenderError::Internal(format!("soundtrack: {e}")))?;
    Ok(Some(AudioTrack::try_from(track)?))
}
