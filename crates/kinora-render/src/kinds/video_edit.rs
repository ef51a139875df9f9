//! Omni video edit (`video_list` with `refer_type: "base"`, §3.11): the input video re-graded.
//! Its duration and shape are kept; each output frame shows the source frame current at i/24 s
//! (sample-and-hold, never blended), under one fixed seeded grade and the reference cards.
//!
//! Also home of what the kinds driven by source frames share: source frames arrive pushed by
//! the decoder ([`SourceVideo::for_each_frame_24`]) rather than pulled per index, so these kinds
//! encode with [`encode_pushed`] and finish with [`finish_pushed`].

use std::ops::Range;
use std::sync::Arc;

use rayon::prelude::*;

use crate::cover::cover_jpeg;
use crate::encode::{ChunkEncoder, EncodedChunk, EncoderConfig};
use crate::engine::{CancelFlag, EnginePool, RenderError, RenderOutput};
use crate::frame::I420Frame;
use crate::grade::{Grade, GradeParams, VignetteShape};
use crate::mux::AudioTrack;
use crate::overlay::Watermark;
use crate::plan::{contain_fit, Size, StreamPlan};
use crate::references::{decode_references, palette, ReferenceLayer};
use crate::seed::scene_seed;
use crate::source::SourceVideo;
use crate::spec::{RenderSpec, VideoReferKind, VideoReference};

use super::motion_control::{named, reference_audio};
use super::{package, watermark_for};

/// The request field a reference video comes from, for error messages.
pub(super) const VIDEO_FIELD: &str = "video_list[0].video_url";

/// Receives the frames of one chunk, in order.
pub(super) type Sink<'a> = dyn FnMut(u32, &I420Frame) -> Result<(), RenderError> + 'a;

pub(super) fn encoder_config(plan: &StreamPlan) -> EncoderConfig {
    EncoderConfig {
        width: plan.size.width,
        height: plan.size.height,
        bitrate: plan.bitrate,
        max_bitrate: plan.max_bitrate,
        level_idc: plan.level_idc,
    }
}

/// The clean chunks (empty when not asked for) and the labelled ones (with a label).
pub(super) type EncodedPair = (Vec<EncodedChunk>, Option<Vec<EncodedChunk>>);

/// Encodes the plan's chunks in parallel on the engine pool, one encoder per chunk and copy,
/// and returns them in chunk order. `produce(range, sink)` must hand `sink` every frame of
/// `range`, in order, so a decoder never has to seek back. With `clean` the frames are encoded
/// as they come; with `label` a labelled copy of each is encoded as well (§2.6).
pub(super) fn encode_pushed<P>(
    plan: &StreamPlan,
    pool: &EnginePool,
    cancel: &CancelFlag,
    produce: &P,
    clean: bool,
    label: Option<&Watermark>,
) -> Result<EncodedPair, RenderError>
where
    P: Fn(Range<u32>, &mut Sink<'_>) -> Result<(), RenderError> + Sync,
{
    let config = encoder_config(plan);
    type ChunkPair = (Option<EncodedChunk>, Option<EncodedChunk>);
    let results: Vec<Result<ChunkPair, RenderError>> = pool.install(|| {
        plan.chunks
            .par_iter()
            .map(|chunk| encode_range(config, chunk.range.clone(), cancel, produce, clean, label))
            .collect()
    });
    let mut clean_chunks = Vec::with_capacity(results.len());
    let mut labelled = label.map(|_| Vec::with_capacity(results.len()));
    for result in results {
        let (c, l) = result?;
        clean_chunks.extend(c);
        if let (Some(all), Some(l)) = (labelled.as_mut(), l) {
            all.push(l);
        }
    }
    Ok((clean_chunks, labelled))
}

fn encode_range<P>(
    config: EncoderConfig,
    range: Range<u32>,
    cancel: &CancelFlag,
    produce: &P,
    clean: bool,
    label: Option<&Watermark>,
) -> Result<(Option<EncodedChunk>, Option<EncodedChunk>), RenderError>
where
    P: Fn(Range<u32>, &mut Sink<'_>) -> Result<(), RenderError> + Sync,
{
    let len = range.len() as u32;
    let mut plain = if clean {
        Some(ChunkEncoder::new(config, len)?)
    } else {
        None
    };
    let mut labelled = match label {
        Some(l) => Some((
            l,
            ChunkEncoder::new(config, len)?,
            I420Frame::filled(
                config.width as usize,
                config.height as usize,
                (16, 128, 128),
            ),
        )),
        None => None,
    };
    let mut next = range.start;
    produce(range.clone(), &mut |i, frame| {
        if cancel.is_cancelled() {
            return Err(RenderError::Cancelled);
        }
        if i != next || i >= range.end {
            return Err(RenderError::Internal(format!(
                "frame {i} arrived where frame {next} of {range:?} was due"
            )));
        }
        next += 1;
        if let Some(encoder) = plain.as_mut() {
            encoder.push(frame)?;
        }
        if let Some((label, encoder, copy)) = labelled.as_mut() {
            copy.clone_from(frame);
            label.apply(copy);
            encoder.push(copy)?;
        }
        Ok(())
    })?;
    if next != range.end {
        return Err(RenderError::Internal(format!(
            "the frame source delivered {} of {} frames",
            next - range.start,
            range.len()
        )));
    }
    let plain = plain.map(ChunkEncoder::finish).transpose()?;
    let labelled = labelled.map(|(_, e, _)| e.finish()).transpose()?;
    Ok((plain, labelled))
}

/// [`super::finish`] for pushed frames: encodes (with the labelled copy when asked), builds
/// the cover from `first_frame` and the audio in parallel, and muxes the file(s).
pub(super) fn finish_pushed<P, F, A>(
    spec: &RenderSpec,
    plan: &StreamPlan,
    produce: &P,
    first_frame: F,
    audio: A,
    pool: &EnginePool,
    cancel: &CancelFlag,
) -> Result<RenderOutput, RenderError>
where
    P: Fn(Range<u32>, &mut Sink<'_>) -> Result<(), RenderError> + Sync,
    F: FnOnce() -> Result<I420Frame, RenderError> + Send,
    A: FnOnce() -> Result<Option<AudioTrack>, RenderError> + Send,
{
    let watermark = watermark_for(spec, plan)?;
    let ((encoded, cover), sound) = pool.install(|| {
        rayon::join(
            || {
                rayon::join(
                    || encode_pushed(plan, pool, cancel, produce, true, watermark.as_ref()),
                    || {
                        first_frame().and_then(|f| {
                            cover_jpeg(&f).map_err(|e| RenderError::Internal(format!("cover: {e}")))
                        })
                    },
                )
            },
            audio,
        )
    });
    let (chunks, labelled) = encoded?;
    package(spec, plan, &chunks, labelled, sound?, cover?)
}

/// The omni reference video entry, checked to be of `kind`.
pub(super) fn video_reference(
    spec: &RenderSpec,
    kind: VideoReferKind,
) -> Result<&VideoReference, RenderError> {
    match &spec.video_reference {
        Some(v) if v.refer == kind => Ok(v),
        _ => Err(RenderError::Internal(format!(
            "omni {} reference render without a {} video_list entry",
            kind.as_str(),
            kind.as_str()
        ))),
    }
}

/// An opened reference video, its errors named after the request field.
pub(super) fn open_video(bytes: &[u8], field: &str) -> Result<SourceVideo, RenderError> {
    SourceVideo::open(Arc::from(bytes)).map_err(|e| named(field, e))
}

/// The output size for a video of this display size (§2.4): contain-fit into the mode frame.
pub(super) fn video_output_size(
    spec: &RenderSpec,
    video: &SourceVideo,
    field: &str,
) -> Result<Size, RenderError> {
    let (w, h) = video.display_size();
    contain_fit(spec.mode, w, h).ok_or_else(|| {
        RenderError::Client(format!(
            "{field}: a {w}x{h} video is too thin to fit a {} frame",
            spec.mode
        ))
    })
}

/// A video edit ready to produce frames.
struct Edit {
    video: SourceVideo,
    size: Size,
    frames: u32,
    grade: Grade,
    shape: VignetteShape,
    cards: Option<ReferenceLayer>,
}

impl Edit {
    fn new(
        spec: &RenderSpec,
        size_override: Option<Size>,
        pool: &EnginePool,
    ) -> Result<Self, RenderError> {
        let reference = video_reference(spec, VideoReferKind::Base)?;
        let (video, pictures) = pool.install(|| {
            rayon::join(
                || open_video(reference.video.bytes(), VIDEO_FIELD),
                || decode_references(&spec.references, "image_list"),
            )
        });
        let (video, pictures) = (video?, pictures?);
        let frames = video.frames_at_24fps();
        if frames == 0 {
            return Err(RenderError::Client(format!(
                "{VIDEO_FIELD}: the video is too short to give a single frame"
            )));
        }
        let size = match size_override {
            Some(s) => s,
            None => video_output_size(spec, &video, VIDEO_FIELD)?,
        };
        let seed = scene_seed(&spec.model_name, &spec.prompt, &spec.negative_prompt);
        // The tint points at the mean chroma of the reference palette (§3.9, §3.11).
        let target = palette(&pictures).map(|colours| {
            let n = colours.len() as f64;
            (
                colours.iter().map(|c| f64::from(c.u)).sum::<f64>() / n,
                colours.iter().map(|c| f64::from(c.v)).sum::<f64>() / n,
            )
        });
        let (w, h) = (size.width as usize, size.height as usize);
        let cards = (!pictures.is_empty()).then(|| ReferenceLayer::new(&pictures, seed, w, h));
        Ok(Self {
            video,
            size,
            frames,
            grade: Grade::new(&GradeParams::seeded(seed, target)),
            shape: VignetteShape::new(w, h),
            cards,
        })
    }

    /// Hands `sink` the graded frames of `range`, in order.
    fn produce(
        &self,
        range: Range<u32>,
        cancel: &CancelFlag,
        sink: &mut Sink<'_>,
    ) -> Result<(), RenderError> {
        let mut buf: Option<I420Frame> = None;
        self.video
            .for_each_frame_24(self.size, range, cancel, |i, source| {
                let frame = match &mut buf {
                    Some(b) => {
                        b.clone_from(source);
                        b
                    }
                    None => buf.insert(source.clone()),
                };
                self.finish_frame(i, frame)?;
                sink(i, frame)
            })
            .map_err(|e| named(VIDEO_FIELD, e))
    }

    fn finish_frame(&self, i: u32, frame: &mut I420Frame) -> Result<(), RenderError> {
        self.grade
            .apply(&self.shape, frame)
            .map_err(|e| RenderError::Internal(format!("grade: {e}")))?;
        if let Some(cards) = &self.cards {
            cards.draw(i, frame);
        }
        Ok(())
    }

    fn frame(&self, i: u32, cancel: &CancelFlag) -> Result<I420Frame, RenderError> {
        let mut out = None;
        self.produce(i..i + 1, cancel, &mut |_, f| {
            out = Some(f.clone());
            Ok(())
        })?;
        out.ok_or_else(|| RenderError::Internal(format!("no source frame for frame {i}")))
    }
}

pub(super) fn render(
    spec: &RenderSpec,
    pool: &EnginePool,
    cancel: &CancelFlag,
) -> Result<RenderOutput, RenderError> {
    let edit = Edit::new(spec, None, pool)?;
    if cancel.is_cancelled() {
        return Err(RenderError::Cancelled);
    }
    let keep = video_reference(spec, VideoReferKind::Base)?.keep_original_sound;
    let plan = StreamPlan::new(spec.mode, edit.size, edit.frames, &[]);
    let produce = |range: Range<u32>, sink: &mut Sink<'_>| edit.produce(range, cancel, sink);
    finish_pushed(
        spec,
        &plan,
        &produce,
        || edit.frame(0, cancel),
        || reference_audio(&edit.video, keep, plan.frames, VIDEO_FIELD),
        pool,
        cancel,
    )
}

/// Test-only entry point (§3.15): the pre-encode frames of a video-edit spec, optionally at a
/// size the API cannot reach (both sides even). Runs on a pool of `threads`.
#[doc(hidden)]
pub fn video_edit_frames(
    spec: &RenderSpec,
    size_override: Option<Size>,
    threads: usize,
) -> Result<Vec<I420Frame>, RenderError> {
    super::validate_common(spec)?;
    let pool = EnginePool::new(threads)?;
    let edit = Edit::new(spec, size_override, &pool)?;
    let cancel = CancelFlag::new();
    let plan = StreamPlan::new(spec.mode, edit.size, edit.frames, &[]);
    let chunks: Vec<Result<Vec<I420Frame>, RenderError>> = pool.install(|| {
        plan.chunks
            .par_iter()
            .map(|chunk| {
                let mut frames = Vec::with_capacity(chunk.range.len());
                edit.produce(chunk.range.clone(), &cancel, &mut |_, f| {
                    frames.push(f.clone());
                    Ok(())
                })?;
                Ok(frames)
            })
            .collect()
    });
    let mut out = Vec::with_capacity(edit.frames as usize);
    for chunk in chunks {
        out.extend(chunk?);
    }
    Ok(out)
}
