//! The engine's entry points: a validated spec in, the MP4, its cover and metadata out.
//! All CPU work runs on the engine's own thread pool; the result never depends on its size.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rayon::prelude::*;

use crate::encode::{encode_chunk_labelled, EncodeError, EncodedChunk, EncoderConfig};
use crate::frame::I420Frame;
use crate::mux::{write_mp4, AudioTrack, MuxError, VideoSample, VideoTrack};
use crate::overlay::Watermark;
use crate::plan::StreamPlan;
use crate::seed::{ENGINE, REVISION};

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
    /// The labelled copy, when the spec asked for a watermark (§2.6).
    pub watermarked_mp4: Option<Vec<u8>>,
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
    Ok(encode_video_labelled(plan, pool, cancel, draw, None)?.0)
}

/// Like [`encode_video`], and with `label` also the chunks of a labelled copy (§2.6): each
/// chunk job feeds every rendered frame to its clean encoder and, with the label drawn on a
/// copy, to a second encoder, so nothing is rendered twice. The clean chunks are the same
/// bytes with or without a label.
pub fn encode_video_labelled<D>(
    plan: &StreamPlan,
    pool: &EnginePool,
    cancel: &CancelFlag,
    draw: &D,
    label: Option<&Watermark>,
) -> Result<(Vec<EncodedChunk>, Option<Vec<EncodedChunk>>), RenderError>
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
    let apply = |frame: &mut I420Frame| {
        if let Some(label) = label {
            label.apply(frame);
        }
    };
    let apply: Option<&(dyn Fn(&mut I420Frame) + Sync)> = label.map(|_| &apply as _);
    type ChunkPair = (EncodedChunk, Option<EncodedChunk>);
    // Inside `install`, so the chunk jobs never land on rayon's global pool.
    let results: Vec<Result<Option<ChunkPair>, RenderError>> = pool.install(|| {
        plan.chunks
            .par_iter()
            .map(|chunk| {
                encode_chunk_labelled(
                    config,
                    chunk.len(),
                    |i, buf| {
                        if cancel.is_cancelled() {
                            return Ok(false);
                        }
                        draw(chunk.range.start + i, buf);
                        Ok(true)
                    },
                    apply,
                )
            })
            .collect()
    });
    let mut clean = Vec::with_capacity(results.len());
    let mut labelled = label.map(|_| Vec::with_capacity(results.len()));
    for result in results {
        match result? {
            Some((chunk, copy)) => {
                clean.push(chunk);
                if let (Some(all), Some(copy)) = (labelled.as_mut(), copy) {
                    all.push(copy);
                }
            }
            None => return Err(RenderError::Cancelled),
        }
    }
    Ok((clean, labelled))
}

/// Concatenates the chunks in order and writes the MP4.
pub fn mux_chunks(
    plan: &StreamPlan,
    chunks: &[EncodedChunk],
    audio: Option<&AudioTrack>,
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
    fn title_names_the_engine() {
        let t = title("0123456789abcdef0123");
        assert_eq!(
            t,
            "kinora-local r2 · deterministic render, not AI-generated · id 0123456789abcdef"
        );
    }
}
