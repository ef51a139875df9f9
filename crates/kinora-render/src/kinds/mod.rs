//! One module per render kind. Each turns a [`RenderSpec`] into frames (a draw function over a
//! [`StreamPlan`]) and an optional soundtrack; [`finish`] encodes, muxes and covers them the
//! same way for every kind.

// The video-driven kinds (§3.10–§3.13), image2video and the procedural kinds are public only
// for their test and benchmark entry points (§3.15).
#[doc(hidden)]
pub mod extend;
#[doc(hidden)]
pub mod feature_reference;
#[doc(hidden)]
pub mod image2video;
#[doc(hidden)]
pub mod motion_control;
#[doc(hidden)]
pub mod procedural;
#[doc(hidden)]
pub mod video_edit;

use std::sync::Mutex;

use crate::audio;
use crate::cover::cover_jpeg;
use crate::encode::EncodedChunk;
use crate::engine::{
    encode_video_labelled, mux_chunks, title, CancelFlag, EnginePool, RenderError, RenderMeta,
    RenderOutput,
};
use crate::frame::I420Frame;
use crate::mux::AudioTrack;
use crate::overlay::Watermark;
use crate::plan::StreamPlan;
use crate::seed::{to_hex, ENGINE, REVISION};
use crate::shots::ShotLayout;
use crate::spec::{RenderKind, RenderSpec, VideoReferKind, DURATION_RANGE};

use procedural::Colours;

/// Renders any spec: the engine's one entry point.
pub fn render(
    spec: &RenderSpec,
    pool: &EnginePool,
    cancel: &CancelFlag,
) -> Result<RenderOutput, RenderError> {
    validate_common(spec)?;
    match spec.kind {
        RenderKind::Text2Video => procedural::render(spec, Colours::Seeded, pool, cancel),
        RenderKind::Image2Video => image2video::render(spec, pool, cancel),
        RenderKind::MultiImage2Video => {
            procedural::render(spec, Colours::FromReferences, pool, cancel)
        }
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
        RenderKind::Omni if !spec.references.is_empty() => {
            procedural::render(spec, Colours::FromReferences, pool, cancel)
        }
        RenderKind::Omni => procedural::render(spec, Colours::Seeded, pool, cancel),
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
        check_multi_shot(spec)?;
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

/// Multi-shot (§3.6) exists for text2video, image2video and omni; the video-driven kinds take
/// their timeline from the input video, so shots there are refused rather than ignored.
fn check_multi_shot(spec: &RenderSpec) -> Result<(), RenderError> {
    let refuse = |what: &str| {
        Err(RenderError::Client(format!(
            "multi_shot cannot be combined with {what}"
        )))
    };
    match spec.kind {
        RenderKind::Text2Video | RenderKind::Image2Video | RenderKind::Omni => {}
        RenderKind::MultiImage2Video => return refuse("multi-image2video"),
        RenderKind::MotionControl => return refuse("motion control"),
        RenderKind::Extend => return refuse("video extend"),
    }
    if spec.video_reference.is_some() {
        return refuse("a reference video (video_list)");
    }
    if spec.last_frame.is_some() {
        return refuse("image_tail (an end frame)");
    }
    if spec.static_mask.is_some() || !spec.dynamic_masks.is_empty() {
        return refuse("static_mask or dynamic_masks");
    }
    // The layout checks the shots themselves (count, indices, durations).
    ShotLayout::of(spec).map(|_| ())
}

/// Keeps the first error a draw callback met (the encoder's callback cannot return one), so
/// the render can fail after the fact instead of shipping a wrong frame.
#[derive(Default)]
pub(super) struct FirstError(Mutex<Option<RenderError>>);

impl FirstError {
    pub(super) fn keep(&self, result: Result<(), RenderError>) {
        if let Err(e) = result {
            if let Ok(mut slot) = self.0.lock() {
                slot.get_or_insert(e);
            }
        }
    }

    pub(super) fn check(self) -> Result<(), RenderError> {
        match self.0.into_inner() {
            Ok(None) => Ok(()),
            Ok(Some(e)) => Err(e),
            Err(_) => Err(RenderError::Internal("a frame job panicked".to_owned())),
        }
    }
}

/// [`finish`] for a kind whose frames are drawn independently by a fallible `draw`; `blank`
/// makes a buffer of the output size for the cover. A draw error fails the render.
pub(crate) fn finish_drawn<S>(
    spec: &RenderSpec,
    plan: &StreamPlan,
    draw: &(dyn Fn(u32, &mut I420Frame) -> Result<(), RenderError> + Sync),
    blank: &(dyn Fn() -> I420Frame + Sync),
    soundtrack: S,
    pool: &EnginePool,
    cancel: &CancelFlag,
) -> Result<RenderOutput, RenderError>
where
    S: FnOnce() -> Result<Option<AudioTrack>, RenderError> + Send,
{
    let errors = FirstError::default();
    let keep_draw = |i: u32, buf: &mut I420Frame| errors.keep(draw(i, buf));
    let first = || {
        let mut frame = blank();
        errors.keep(draw(0, &mut frame));
        frame
    };
    let out = finish(
        spec,
        Frames {
            plan,
            draw: &keep_draw,
            first_frame: &first,
        },
        soundtrack,
        pool,
        cancel,
    )?;
    errors.check()?;
    Ok(out)
}

/// The body of the test entry points (§3.15): after the common checks, builds a clip on a
/// pool of `threads` and draws its `count` frames in parallel.
pub(super) fn frames_of<C: Sync>(
    spec: &RenderSpec,
    threads: usize,
    build: impl FnOnce(&EnginePool) -> Result<C, RenderError>,
    count: impl Fn(&C) -> u32,
    frame: impl Fn(&C, u32) -> Result<I420Frame, RenderError> + Sync,
) -> Result<Vec<I420Frame>, RenderError> {
    use rayon::prelude::*;
    validate_common(spec)?;
    let pool = EnginePool::new(threads)?;
    let clip = build(&pool)?;
    let frames = count(&clip);
    pool.install(|| {
        (0..frames)
            .into_par_iter()
            .map(|i| frame(&clip, i))
            .collect()
    })
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
    let watermark = watermark_for(spec, plan)?;
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
    package(spec, plan, &chunks, labelled, sound?, cover_jpeg)
}

/// The watermark label for the plan's frame size when the spec asks for a watermarked copy,
/// rasterised once before any frame (§2.6).
pub(super) fn watermark_for(
    spec: &RenderSpec,
    plan: &StreamPlan,
) -> Result<Option<Watermark>, RenderError> {
    if !spec.watermark {
        return Ok(None);
    }
    Watermark::new(plan.size.width as usize, plan.size.height as usize).map(Some)
}

/// Muxes encoded chunks (and the labelled copy's, when there is one) with the sound into the
/// output files and describes them.
pub(super) fn package(
    spec: &RenderSpec,
    plan: &StreamPlan,
    chunks: &[EncodedChunk],
    labelled: Option<Vec<EncodedChunk>>,
    sound: Option<AudioTrack>,
    cover_jpeg: Vec<u8>,
) -> Result<RenderOutput, RenderError> {
    // An audio track is either absent or has packets (§2.5: never a silent track).
    let sound = sound.filter(|t| !t.is_empty());
    let hex = to_hex(&spec.identity());
    let mp4 = mux_chunks(plan, chunks, sound.as_ref(), &title(&hex))?;
    let watermarked_mp4 = watermarked_copy(spec, plan, labelled.as_deref(), sound.as_ref())?;
    let meta = render_meta(plan, sound.is_some(), hex, plan.keyframes());
    Ok(RenderOutput {
        mp4,
        cover_jpeg,
        watermarked_mp4,
        meta,
    })
}

/// The labelled copy, muxed with the same audio and the watermark identity in its title.
pub(super) fn watermarked_copy(
    spec: &RenderSpec,
    plan: &StreamPlan,
    labelled: Option<&[EncodedChunk]>,
    sound: Option<&AudioTrack>,
) -> Result<Option<Vec<u8>>, RenderError> {
    labelled
        .map(|chunks| {
            let id = to_hex(&spec.watermark_identity());
            mux_chunks(plan, chunks, sound, &title(&id))
        })
        .transpose()
}

pub(super) fn render_meta(
    plan: &StreamPlan,
    has_audio: bool,
    identity: String,
    keyframes: Vec<u32>,
) -> RenderMeta {
    RenderMeta {
        width: plan.size.width,
        height: plan.size.height,
        frame_count: plan.frames,
        duration: plan.duration_string(),
        has_audio,
        engine: ENGINE,
        revision: REVISION,
        identity,
        keyframes,
    }
}

/// The procedural soundtrack (§3.8) for a spec's seed, or none when sound is off. In
/// multi-shot mode the prompt is ignored (the seed comes from an empty one, §3.6), voice tags
/// are read from the shot prompts, and every cut in `scene` changes the chord.
pub(crate) fn procedural_soundtrack(
    spec: &RenderSpec,
    layout: &ShotLayout,
    frames: u32,
    scene: &audio::SoundtrackScene,
) -> Result<Option<AudioTrack>, RenderError> {
    if !spec.sound {
        return Ok(None);
    }
    let prompt = if layout.multi {
        ""
    } else {
        spec.prompt.as_str()
    };
    let seed = crate::seed::seed_digest(&spec.model_name, prompt, &spec.negative_prompt);
    let voices = audio::voice_lines_from_prompt(&layout.voice_text(), &spec.voice_ids);
    let track = audio::soundtrack_scene(&seed, u64::from(frames), &voices, scene)
        .map_err(|e| RenderError::Internal(format!("soundtrack: {e}")))?;
    Ok(Some(AudioTrack::try_from(track)?))
}
