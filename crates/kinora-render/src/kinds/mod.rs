//! One module per render kind. Each turns a [`RenderSpec`] into frames (a draw function over a
//! [`StreamPlan`]) and an optional soundtrack; [`finish`] encodes, muxes and covers them the
//! same way for every kind.

mod text2video;

use crate::audio;
use crate::cover::cover_jpeg;
use crate::engine::{
    encode_video, mux_chunks, title, CancelFlag, EnginePool, RenderError, RenderMeta, RenderOutput,
};
use crate::frame::I420Frame;
use crate::mux::{OpusTrack, OPUS_PACKET_SAMPLES, OPUS_TIMESCALE};
use crate::plan::StreamPlan;
use crate::seed::{to_hex, ENGINE, REVISION};
use crate::spec::{RenderKind, RenderSpec, DURATION_RANGE};

/// Renders any spec: the engine's one entry point.
pub fn render(
    spec: &RenderSpec,
    pool: &EnginePool,
    cancel: &CancelFlag,
) -> Result<RenderOutput, RenderError> {
    validate_common(spec)?;
    match spec.kind {
        RenderKind::Text2Video => text2video::render(spec, pool, cancel),
        RenderKind::Image2Video
        | RenderKind::MultiImage2Video
        | RenderKind::Omni
        | RenderKind::MotionControl
        | RenderKind::Extend => Err(RenderError::Client(format!(
            "{} is not supported by the local engine yet",
            spec.kind.as_str()
        ))),
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
    S: FnOnce() -> Result<Option<audio::OpusTrack>, RenderError> + Send,
{
    let plan = frames.plan;
    // The soundtrack and the cover are small jobs; they run beside the chunk encoders.
    let ((chunks, cover), sound) = pool.install(|| {
        rayon::join(
            || {
                rayon::join(
                    || encode_video(plan, pool, cancel, frames.draw),
                    || cover_jpeg(&(frames.first_frame)()),
                )
            },
            soundtrack,
        )
    });
    let chunks = chunks?;
    let cover_jpeg = cover.map_err(|e| RenderError::Internal(format!("cover: {e}")))?;
    let sound = sound?;
    if let Some(track) = &sound {
        // The muxer writes 20 ms packets at 48 kHz; anything else would mistime the track.
        if track.sample_rate != OPUS_TIMESCALE || track.frame_samples != OPUS_PACKET_SAMPLES {
            return Err(RenderError::Internal(
                "soundtrack packets are not 20 ms at 48 kHz".to_owned(),
            ));
        }
    }
    let opus = sound.as_ref().map(|t| OpusTrack {
        packets: &t.packets,
        channels: t.channels,
        pre_skip: t.pre_skip,
    });
    let hex = to_hex(&spec.identity());
    let mp4 = mux_chunks(plan, &chunks, opus.as_ref(), &title(&hex))?;
    Ok(RenderOutput {
        mp4,
        cover_jpeg,
        watermarked_mp4: None,
        meta: RenderMeta {
            width: plan.size.width,
            height: plan.size.height,
            frame_count: plan.frames,
            duration: plan.duration_string(),
            has_audio: opus.is_some(),
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
) -> Result<Option<audio::OpusTrack>, RenderError> {
    if !spec.sound {
        return Ok(None);
    }
    let seed = crate::seed::seed_digest(&spec.model_name, &spec.prompt, &spec.negative_prompt);
    let voices = audio::voice_lines_from_prompt(&spec.prompt, &spec.voice_ids);
    audio::soundtrack_scene(&seed, u64::from(frames), &voices, scene)
        .map(Some)
        .map_err(|e| RenderError::Internal(format!("soundtrack: {e}")))
}
