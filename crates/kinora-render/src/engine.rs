//! The engine's entry points: a validated spec in, the MP4, its cover and metadata out.
//! All CPU work runs on the engine's own thread pool; the result never depends on its size.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rayon::prelude::*;

use crate::audio;
use crate::cover::cover_jpeg;
use crate::encode::{encode_chunk, EncodeError, EncodedChunk, EncoderConfig};
use crate::frame::I420Frame;
use crate::mux::{
    write_mp4, MuxError, OpusTrack, VideoSample, VideoTrack, OPUS_PACKET_SAMPLES, OPUS_TIMESCALE,
};
use crate::plan::{frames_for_seconds, preset_size, Aspect, Mode, StreamPlan};
use crate::scene::Scene;
use crate::seed::{identity, json_string, scene_seed, seed_digest, to_hex, ENGINE, REVISION};

/// Model name applied when the request names none; hashed like an explicit one.
pub const DEFAULT_MODEL: &str = "kling-v1";
/// `cfg_scale` applied when the request gives none.
pub const DEFAULT_CFG_SCALE: f64 = 0.5;
/// Whole-second durations the engine renders.
pub const DURATION_RANGE: std::ops::RangeInclusive<u32> = 1..=15;

/// A text2video request with defaults applied. `cfg_scale` is recorded in the identity but
/// has no effect on pixels.
#[derive(Clone, Debug, PartialEq)]
pub struct Text2VideoSpec {
    pub model_name: String,
    pub prompt: String,
    pub negative_prompt: Option<String>,
    pub cfg_scale: Option<f64>,
    pub mode: Mode,
    pub aspect: Aspect,
    pub duration_s: u32,
    /// `sound: "on"`: a procedural Opus soundtrack of the video's length.
    pub sound: bool,
    /// `voice_list` ids, in order; `<<<voice_N>>>` in the prompt names the N-th.
    pub voice_ids: Vec<String>,
}

impl Text2VideoSpec {
    /// The API's defaults: std, 16:9, 5 s, no sound.
    pub fn new(prompt: impl Into<String>) -> Self {
        Self {
            model_name: DEFAULT_MODEL.to_owned(),
            prompt: prompt.into(),
            negative_prompt: None,
            cfg_scale: None,
            mode: Mode::Std,
            aspect: Aspect::Landscape16x9,
            duration_s: 5,
            sound: false,
            voice_ids: Vec::new(),
        }
    }

    fn cfg_scale(&self) -> f64 {
        self.cfg_scale.unwrap_or(DEFAULT_CFG_SCALE)
    }

    fn negative_prompt(&self) -> &str {
        self.negative_prompt.as_deref().unwrap_or("")
    }

    /// Every render-relevant field, defaults applied, keys sorted. Absent and explicit
    /// defaults serialise alike.
    pub fn canonical(&self) -> String {
        format!(
            "{{\"aspect_ratio\":{},\"cfg_scale\":{},\"duration\":{},\"endpoint\":\"text2video\",\"mode\":{},\"model_name\":{},\"negative_prompt\":{},\"prompt\":{},\"sound\":{},\"voice_list\":[{}]}}",
            json_string(self.aspect.as_str()),
            self.cfg_scale(),
            self.duration_s,
            json_string(self.mode.as_str()),
            json_string(&self.model_name),
            json_string(self.negative_prompt()),
            json_string(&self.prompt),
            json_string(if self.sound { "on" } else { "off" }),
            self.voice_ids.iter().map(|v| json_string(v)).collect::<Vec<_>>().join(","),
        )
    }

    fn validate(&self) -> Result<(), RenderError> {
        if !DURATION_RANGE.contains(&self.duration_s) {
            return Err(RenderError::Client(format!(
                "duration {} s is outside the local engine's range of {}-{} s",
                self.duration_s,
                DURATION_RANGE.start(),
                DURATION_RANGE.end()
            )));
        }
        let cfg = self.cfg_scale();
        if !cfg.is_finite() || !(0.0..=1.0).contains(&cfg) {
            return Err(RenderError::Client(format!(
                "cfg_scale {cfg} is outside 0-1"
            )));
        }
        if !self.voice_ids.is_empty() && !self.sound {
            return Err(RenderError::Client("voice_list needs sound on".to_owned()));
        }
        Ok(())
    }
}

/// Metadata reported with every render.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderMeta {
    pub width: u32,
    pub height: u32,
    pub frame_count: u32,
    /// N/24 in seconds, rounded to milliseconds, trailing zeros trimmed.
    pub duration: String,
    pub has_audio: bool,
    pub engine: &'static str,
    pub revision: &'static str,
    /// Render identity, 64 hex digits.
    pub identity: String,
    /// Frame indices of the IDR pictures.
    pub keyframes: Vec<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderOutput {
    pub mp4: Vec<u8>,
    pub cover_jpeg: Vec<u8>,
    pub meta: RenderMeta,
}

/// Why a render stopped. Client errors fail the task for good; internal ones may be
/// retried; a cancelled render produced nothing.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{0}")]
    Client(String),
    #[error("render cancelled")]
    Cancelled,
    #[error("internal render error: {0}")]
    Internal(String),
}

impl RenderError {
    pub fn is_client_error(&self) -> bool {
        matches!(self, Self::Client(_))
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Internal(_))
    }
}

impl From<EncodeError> for RenderError {
    fn from(e: EncodeError) -> Self {
        Self::Internal(e.to_string())
    }
}

impl From<MuxError> for RenderError {
    fn from(e: MuxError) -> Self {
        Self::Internal(e.to_string())
    }
}

/// Set from outside (a deadline, a deleted task) to stop a render; checked once per frame.
#[derive(Clone, Debug, Default)]
pub struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The engine's own thread pool: never the global one, never the async runtime's.
pub struct EnginePool {
    pool: rayon::ThreadPool,
    threads: usize,
}

impl EnginePool {
    /// A pool of `threads` threads (at least one).
    pub fn new(threads: usize) -> Result<Self, RenderError> {
        let threads = threads.max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("kinora-render-{i}"))
            .build()
            .map_err(|e| RenderError::Internal(format!("cannot start render threads: {e}")))?;
        Ok(Self { pool, threads })
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        self.pool.install(f)
    }
}

/// Renders a text2video request.
pub fn render_text2video(
    spec: &Text2VideoSpec,
    pool: &EnginePool,
    cancel: &CancelFlag,
) -> Result<RenderOutput, RenderError> {
    spec.validate()?;
    let size = preset_size(spec.mode, spec.aspect);
    let plan = StreamPlan::new(spec.mode, size, frames_for_seconds(spec.duration_s), &[]);
    let id = identity(&spec.canonical(), &[]);
    let seed = scene_seed(&spec.model_name, &spec.prompt, spec.negative_prompt());
    let scene = Scene::new(
        seed,
        &spec.prompt,
        size.width as usize,
        size.height as usize,
    );

    let draw = |i: u32, buf: &mut I420Frame| scene.draw(i, buf);
    // The soundtrack and the cover are small jobs; they run beside the chunk encoders.
    let ((chunks, cover), sound) = pool.install(|| {
        rayon::join(
            || {
                rayon::join(
                    || encode_video(&plan, pool, cancel, &draw),
                    || {
                        let mut first = scene.blank_frame();
                        scene.draw(0, &mut first);
                        cover_jpeg(&first)
                    },
                )
            },
            || soundtrack(spec, plan.frames),
        )
    });
    let chunks = chunks?;
    let cover_jpeg = cover.map_err(|e| RenderError::Internal(format!("cover: {e}")))?;
    let sound = sound?;
    let opus = sound.as_ref().map(|t| OpusTrack {
        packets: &t.packets,
        channels: t.channels,
        pre_skip: t.pre_skip,
    });
    let hex = to_hex(&id);
    let mp4 = mux_chunks(&plan, &chunks, opus.as_ref(), &title(&hex))?;
    Ok(RenderOutput {
        mp4,
        cover_jpeg,
        meta: RenderMeta {
            width: size.width,
            height: size.height,
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

fn soundtrack(spec: &Text2VideoSpec, frames: u32) -> Result<Option<audio::OpusTrack>, RenderError> {
    if !spec.sound {
        return Ok(None);
    }
    let seed = seed_digest(&spec.model_name, &spec.prompt, spec.negative_prompt());
    let voices = audio::voice_lines_from_prompt(&spec.prompt, &spec.voice_ids);
    let track = audio::soundtrack(&seed, u64::from(frames), &voices)
        .map_err(|e| RenderError::Internal(format!("soundtrack: {e}")))?;
    // The muxer writes 20 ms packets at 48 kHz; anything else would mistime the track.
    if track.sample_rate != OPUS_TIMESCALE || track.frame_samples != OPUS_PACKET_SAMPLES {
        return Err(RenderError::Internal(
            "soundtrack packets are not 20 ms at 48 kHz".to_owned(),
        ));
    }
    Ok(Some(track))
}

/// The one title tag of every file, naming the engine and the render.
pub fn title(identity_hex: &str) -> String {
    let short = identity_hex.get(..16).unwrap_or(identity_hex);
    format!("{ENGINE} {REVISION} · deterministic render, not AI-generated · id {short}")
}

/// Encodes the plan's chunks in parallel on the engine pool, one encoder per chunk, and
/// returns them in chunk order. `draw(i, buffer)` must fill frame `i` of the clip.
pub fn encode_video<D>(
    plan: &StreamPlan,
    pool: &EnginePool,
    cancel: &CancelFlag,
    draw: &D,
) -> Result<Vec<EncodedChunk>, RenderError>
where
    D: Fn(u32, &mut I420Frame) + Sync,
{
    let config = EncoderConfig {
        width: plan.size.width,
        height: plan.size.height,
        bitrate: plan.bitrate,
        max_bitrate: plan.max_bitrate,
        level_idc: plan.level_idc,
    };
    // Inside `install`, so the chunk jobs never land on rayon's global pool.
    let results: Vec<Result<Option<EncodedChunk>, RenderError>> = pool.install(|| {
        plan.chunks
            .par_iter()
            .map(|chunk| {
                encode_chunk(config, chunk.len(), |i, buf| {
                    if cancel.is_cancelled() {
                        return Ok(false);
                    }
                    draw(chunk.range.start + i, buf);
                    Ok(true)
                })
            })
            .collect()
    });
    let mut chunks = Vec::with_capacity(results.len());
    for result in results {
        match result? {
            Some(chunk) => chunks.push(chunk),
            None => return Err(RenderError::Cancelled),
        }
    }
    Ok(chunks)
}

/// Concatenates the chunks in order and writes the MP4.
pub fn mux_chunks(
    plan: &StreamPlan,
    chunks: &[EncodedChunk],
    audio: Option<&OpusTrack<'_>>,
    title: &str,
) -> Result<Vec<u8>, RenderError> {
    let Some(first) = chunks.first() else {
        return Err(RenderError::Internal("no chunks to mux".to_owned()));
    };
    // Each chunk had its own encoder; the single pair in `avcC` is valid for all of them
    // only because the settings give every encoder identical parameter sets.
    if chunks
        .iter()
        .any(|c| c.sps != first.sps || c.pps != first.pps)
    {
        return Err(RenderError::Internal(
            "chunks disagree on SPS/PPS".to_owned(),
        ));
    }
    let samples = chunks
        .iter()
        .flat_map(|c| c.frames.iter())
        .map(|f| VideoSample {
            nals: &f.nals,
            sync: f.idr,
        })
        .collect::<Vec<_>>();
    if samples.len() != plan.frames as usize {
        return Err(RenderError::Internal(format!(
            "encoded {} of {} frames",
            samples.len(),
            plan.frames
        )));
    }
    let video = VideoTrack {
        width: plan.size.width,
        height: plan.size.height,
        sps: &first.sps,
        pps: &first.pps,
        samples,
    };
    Ok(write_mp4(&video, audio, title)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_spec_applies_defaults() {
        let a = Text2VideoSpec::new("a \"quoted\" prompt");
        let mut b = a.clone();
        b.cfg_scale = Some(0.5);
        b.negative_prompt = Some(String::new());
        assert_eq!(a.canonical(), b.canonical());
        assert!(a
            .canonical()
            .starts_with("{\"aspect_ratio\":\"16:9\",\"cfg_scale\":0.5,\"duration\":5,"));
        b.cfg_scale = Some(0.6);
        assert_ne!(a.canonical(), b.canonical());
    }

    #[test]
    fn invalid_specs_are_client_errors() {
        let pool = EnginePool::new(1).unwrap();
        let cancel = CancelFlag::new();
        for spec in [
            Text2VideoSpec {
                duration_s: 0,
                ..Text2VideoSpec::new("x")
            },
            Text2VideoSpec {
                duration_s: 16,
                ..Text2VideoSpec::new("x")
            },
            Text2VideoSpec {
                cfg_scale: Some(f64::NAN),
                ..Text2VideoSpec::new("x")
            },
            Text2VideoSpec {
                cfg_scale: Some(1.5),
                ..Text2VideoSpec::new("x")
            },
            Text2VideoSpec {
                voice_ids: vec!["v".into()],
                ..Text2VideoSpec::new("x")
            },
        ] {
            let err = render_text2video(&spec, &pool, &cancel).unwrap_err();
            assert!(err.is_client_error() && !err.is_retryable(), "{err}");
        }
    }

    #[test]
    fn title_names_the_engine() {
        let t = title("0123456789abcdef0123");
        assert_eq!(
            t,
            "kinora-local r1 · deterministic render, not AI-generated · id 0123456789abcdef"
        );
    }
}
