//! Extend (`video_id`, §3.13): the complete extended video, the source's frames followed by a
//! 5 s continuation of exactly 120 frames (fewer only where the 180 s cap leaves less room).
//!
//! * **Source part.** The source's compressed samples are copied unchanged when its parameter
//!   sets are byte-identical to what the encoder writes for that size and it is a plain 24 fps
//!   stream, the normal case for the engine's own outputs; every chunk starts with an IDR, so
//!   appending new chunks is valid. Otherwise it is decoded and re-encoded with the normal
//!   chunk plan, which has a cut at the boundary either way.
//! * **Continuation.** The camera moves over the last decoded frame on its mirrored canvas:
//!   first with the source's final velocity (the mean global motion of its last 12 frames),
//!   decaying linearly to zero over 24 frames, plus a seeded default move eased over the
//!   continuation; the grade drifts from the identity toward a seeded grade at 30 % strength.
//! * **Audio.** Source Opus packets are copied (other codecs are transcoded to Opus) and the
//!   continuation's soundtrack, with its 50 ms fade-in, follows; a silent source stays silent.

use std::ops::Range;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::audio::{encode_opus, soundtrack_pcm_scene, SoundtrackScene, SAMPLES_PER_VIDEO_FRAME};
use crate::camera::{camera_speed, camera_transform, default_move, ease, progress, CameraControl};
use crate::cover::{cover_jpeg, i420_to_rgb};
use crate::encode::{encode_chunk, EncodedChunk};
use crate::engine::{
    encode_video_labelled, title, CancelFlag, EnginePool, RenderError, RenderOutput,
};
use crate::frame::I420Frame;
use crate::grade::{Grade, GradeParams, VignetteShape};
use crate::mux::{opus_packet_samples, write_mp4, AudioTrack, VideoSample, VideoTrack};
use crate::plan::{duration_string, Mode, Size, StreamPlan, FPS};
use crate::seed::{sub_seed, to_hex};
use crate::source::{
    estimate_motion_from_thumbnails, thumbnail_size, GlobalMotion, SourceVideo, VideoSampleRef,
};
use crate::spec::RenderSpec;
use crate::still::{Picture, StillCanvas};
use crate::warp::Transform;

use super::feature_reference::CameraPoint;
use super::motion_control::named;
use super::video_edit::{encode_pushed, encoder_config, finish_pushed, Sink};
use super::FirstError;
use super::{render_meta, watermark_for, watermarked_copy};

/// The request field the source comes from, for error messages.
const FIELD: &str = "video_id";
/// Frames the continuation adds: 5 s.
pub const CONTINUATION_FRAMES: u32 = 5 * FPS;
/// The extended video's cap: 180 s.
pub const MAX_TOTAL_FRAMES: u32 = 180 * FPS;
/// Less room than this (1 s) under the cap fails the task.
pub const MIN_ROOM_FRAMES: u32 = FPS;
/// The source's final velocity is the mean global motion over this many last frame steps.
const VELOCITY_FRAMES: u32 = 12;
/// ... and decays linearly to zero over this many new frames.
const VELOCITY_DECAY_FRAMES: f64 = 24.0;
/// Strength of the seeded grade at the continuation's end.
pub const GRADE_DRIFT: f64 = 0.3;

/// Frames the continuation adds after `source_frames`: 120, or what the 180 s cap leaves; a
/// client error when that is less than 1 s.
pub fn continuation_frames(source_frames: u32) -> Result<u32, RenderError> {
    let room = MAX_TOTAL_FRAMES.saturating_sub(source_frames);
    if room < MIN_ROOM_FRAMES {
        return Err(RenderError::Client(format!(
            "{FIELD}: the source video lasts {} s; an extended video is capped at 180 s, which \
             leaves less than 1 s to add",
            duration_string(source_frames)
        )));
    }
    Ok(room.min(CONTINUATION_FRAMES))
}

/// The mode whose frame holds `size` (the smallest one), which the extended video inherits:
/// it sets the level and bitrate, as for the source when the engine made it.
pub fn inherited_mode(size: Size) -> Option<Mode> {
    [Mode::Std, Mode::Pro, Mode::K4].into_iter().find(|m| {
        let (short, long) = m.sides();
        let (w, h) = (size.width, size.height);
        (w <= long && h <= short) || (w <= short && h <= long)
    })
}

/// The continuation's seed digest: SHA-256 over the length-prefixed ("kinora-local/extend/v1",
/// source SHA-256, prompt, negative_prompt). The seed is its first 8 bytes, little-endian.
pub fn seed_digest(source_sha256: &[u8; 32], prompt: &str, negative_prompt: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    for field in [
        b"kinora-local/extend/v1".as_slice(),
        source_sha256.as_slice(),
        prompt.as_bytes(),
        negative_prompt.as_bytes(),
    ] {
        // Request strings are far below 4 GiB; the API caps prompts at a few KiB.
        h.update((field.len() as u32).to_le_bytes());
        h.update(field);
    }
    h.finalize().into()
}

fn first_u64(digest: &[u8; 32]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(b)
}

/// Content motion per step at the continuation's start: the source's mean global motion
/// over its last [`VELOCITY_FRAMES`] steps, in output pixels.
fn final_velocity(
    video: &SourceVideo,
    source_frames: u32,
    size: Size,
    cancel: &CancelFlag,
) -> Result<CameraPoint, RenderError> {
    let (dw, dh) = video.display_size();
    let (tw, th) = thumbnail_size(dw, dh);
    let start = source_frames.saturating_sub(VELOCITY_FRAMES + 1);
    let mut thumbs = Vec::with_capacity((source_frames - start) as usize);
    video.for_each_luma_24(tw, th, start..source_frames, cancel, |_, t| {
        thumbs.push(t.clone());
        Ok(())
    })?;
    let motion = estimate_motion_from_thumbnails(&thumbs);
    if motion.global.is_empty() {
        return Ok(CameraPoint::default());
    }
    let n = motion.global.len() as f64;
    let mean = |f: fn(&GlobalMotion) -> f64| motion.global.iter().map(f).sum::<f64>() / n;
    Ok(CameraPoint {
        x: mean(|m| m.dx) * f64::from(size.width) / f64::from(tw.max(1)),
        y: mean(|m| m.dy) * f64::from(size.height) / f64::from(th.max(1)),
        log_scale: mean(|m| m.log_scale),
        rotation: mean(|m| m.rotation),
    })
}

/// Steps of motion accumulated by new frame j: the first new frame moves one full step past
/// the source's last, and each later step is weighted 1 − k/24 until it reaches zero.
fn velocity_steps(j: u32) -> f64 {
    (0..=j)
        .map(|k| (1.0 - f64::from(k) / VELOCITY_DECAY_FRAMES).max(0.0))
        .sum()
}

/// The continuation: the camera over the last source frame, and the drifting grade.
struct Continuation {
    canvas: StillCanvas,
    frames: u32,
    velocity: CameraPoint,
    control: CameraControl,
    grade: GradeParams,
    shape: VignetteShape,
}

impl Continuation {
    fn size(&self) -> Size {
        self.canvas.size()
    }

    /// Output→view matrix of new frame j: the seeded move first, then the decaying source
    /// motion applied to the content.
    fn camera(&self, j: u32) -> Transform {
        let (w, h) = (self.size().width as usize, self.size().height as usize);
        let k = velocity_steps(j);
        let v = &self.velocity;
        let content = CameraPoint {
            x: v.x * k,
            y: v.y * k,
            log_scale: v.log_scale * k,
            rotation: v.rotation * k,
        }
        .clamped(w, h);
        let moved = camera_transform(&self.control, j as usize, self.frames as usize, w, h);
        content.transform(w, h) * moved
    }

    fn grade(&self, j: u32) -> Grade {
        let t = progress(j as usize, self.frames as usize);
        Grade::new(&self.grade.scaled(GRADE_DRIFT * ease(t)))
    }

    fn draw(&self, j: u32, out: &mut I420Frame) -> Result<(), RenderError> {
        if (out.width(), out.height()) != (self.size().width as usize, self.size().height as usize)
        {
            *out = self.canvas.blank_frame();
        }
        self.canvas
            .render(&self.camera(j), out)
            .map_err(|e| RenderError::Internal(format!("extend frame {j}: {e}")))?;
        self.grade(j)
            .apply(&self.shape, out)
            .map_err(|e| RenderError::Internal(format!("extend grade: {e}")))
    }

    fn speed(&self) -> Vec<f32> {
        let (w, h) = (self.size().width as usize, self.size().height as usize);
        camera_speed(&|j| self.camera(j as u32), self.frames as usize, w, h)
    }
}

/// Everything an extend render needs, prepared once.
struct Extension {
    video: SourceVideo,
    size: Size,
    mode: Mode,
    source_frames: u32,
    continuation: Continuation,
    digest: [u8; 32],
}

impl Extension {
    fn new(spec: &RenderSpec, pool: &EnginePool, cancel: &CancelFlag) -> Result<Self, RenderError> {
        let source = spec.extend_source.as_ref().ok_or_else(|| {
            RenderError::Client(format!("{FIELD}: extend needs the source video"))
        })?;
        let video = pool
            .install(|| SourceVideo::open(Arc::from(source.bytes())))
            .map_err(|e| named(FIELD, e))?;
        let source_frames = video.frames_at_24fps();
        if source_frames == 0 {
            return Err(RenderError::Client(format!(
                "{FIELD}: the source video is too short to give a single frame"
            )));
        }
        let new_frames = continuation_frames(source_frames)?;
        let (dw, dh) = video.display_size();
        let size = Size::new(dw & !1, dh & !1);
        let mode = inherited_mode(size)
            .filter(|_| size.width > 0 && size.height > 0)
            .ok_or_else(|| {
                RenderError::Client(format!(
                    "{FIELD}: a {dw}x{dh} source video does not fit any mode's frame"
                ))
            })?;
        let digest = seed_digest(&source.sha256(), &spec.prompt, &spec.negative_prompt);
        let seed = first_u64(&digest);
        let (canvas, velocity) = pool.install(|| {
            rayon::join(
                || -> Result<StillCanvas, RenderError> {
                    let last = video.last_frame(size).map_err(|e| named(FIELD, e))?;
                    let picture = Picture {
                        width: size.width,
                        height: size.height,
                        rgb: i420_to_rgb(&last),
                    };
                    StillCanvas::from_picture(&picture, size, pool)
                },
                || final_velocity(&video, source_frames, size, cancel),
            )
        });
        let (canvas, velocity) = (canvas?, velocity.map_err(|e| named(FIELD, e))?);
        let continuation = Continuation {
            canvas,
            frames: new_frames,
            velocity,
            control: default_move(seed),
            grade: GradeParams::seeded(sub_seed(seed, "extend/grade", 0), None),
            shape: VignetteShape::new(size.width as usize, size.height as usize),
        };
        Ok(Self {
            video,
            size,
            mode,
            source_frames,
            continuation,
            digest,
        })
    }

    fn total_frames(&self) -> u32 {
        self.source_frames + self.continuation.frames
    }

    /// The plan of the whole video: a cut where the continuation starts.
    fn plan(&self) -> StreamPlan {
        StreamPlan::new(
            self.mode,
            self.size,
            self.total_frames(),
            &[self.source_frames],
        )
    }

    /// The source's parameter sets when its samples can be copied into the output unchanged:
    /// byte-identical to the encoder's for this size and mode, same dimensions, no rotation,
    /// no reordering, and exactly one sample per 1/24 s from time zero.
    fn copyable(&self, plan: &StreamPlan) -> Result<bool, RenderError> {
        let v = &self.video;
        let samples = v.samples();
        let timescale = i64::from(v.timescale());
        let plain_24fps = samples.len() == self.source_frames as usize
            && samples.iter().enumerate().all(|(k, s)| {
                i64::from(s.duration) * i64::from(FPS) == timescale
                    && s.pts * i64::from(FPS) == k as i64 * timescale
            });
        let shape_matches =
            v.coded_size() == (self.size.width, self.size.height) && v.rotation().degrees() == 0;
        if !plain_24fps || !shape_matches || v.reorders() || !samples[0].is_sync {
            return Ok(false);
        }
        let ours = encode_chunk::<_, RenderError>(encoder_config(plan), 1, |_, _| Ok(true))?
            .ok_or_else(|| RenderError::Internal("probe encode stopped".to_owned()))?;
        Ok(v.sps_pps() == (ours.sps, ours.pps))
    }

    /// Hands `sink` the frames of `range` (never across the cut): decoded source frames, or
    /// new frames.
    fn produce(
        &self,
        range: Range<u32>,
        cancel: &CancelFlag,
        sink: &mut Sink<'_>,
    ) -> Result<(), RenderError> {
        if range.end <= self.source_frames {
            return self
                .video
                .for_each_frame_24(self.size, range, cancel, |i, f| sink(i, f))
                .map_err(|e| named(FIELD, e));
        }
        if range.start < self.source_frames {
            return Err(RenderError::Internal(
                "a chunk spans the copy/new boundary".to_owned(),
            ));
        }
        let mut buf = self.continuation.canvas.blank_frame();
        for i in range {
            self.continuation.draw(i - self.source_frames, &mut buf)?;
            sink(i, &buf)?;
        }
        Ok(())
    }

    fn first_frame(&self, cancel: &CancelFlag) -> Result<I420Frame, RenderError> {
        let mut out = None;
        self.produce(0..1, cancel, &mut |_, f| {
            out = Some(f.clone());
            Ok(())
        })?;
        out.ok_or_else(|| RenderError::Internal("no first frame".to_owned()))
    }

    /// The audio (§2.5, §3.13): none for a silent source; otherwise the source track as Opus
    /// followed by the continuation's soundtrack, which starts exactly where the source part
    /// ends.
    fn audio(&self) -> Result<Option<AudioTrack>, RenderError> {
        let Some(source) = self.video.audio() else {
            return Ok(None);
        };
        let copied = source
            .to_opus(self.source_frames)
            .map_err(|e| named(FIELD, e))?;
        let AudioTrack::Opus {
            mut packets,
            channels,
            pre_skip,
        } = copied
        else {
            return Err(RenderError::Internal(
                "source audio did not come back as Opus".to_owned(),
            ));
        };
        let mut copied_samples = 0u64;
        for p in &packets {
            copied_samples += u64::from(opus_packet_samples(p)?);
        }
        // The appended stream's own encoder delay (312 samples) is not skipped by the
        // decoder, and exactly offsets the source's pre-skip; silence fills any gap left by
        // a source track that ends early.
        let start = u64::from(self.source_frames) * SAMPLES_PER_VIDEO_FRAME;
        let gap = (start + u64::from(pre_skip))
            .saturating_sub(copied_samples + u64::from(crate::audio::PRE_SKIP));
        let scene = SoundtrackScene {
            cuts: Vec::new(),
            camera_speed: self.continuation.speed(),
        };
        let fresh = soundtrack_pcm_scene(
            &self.digest,
            u64::from(self.continuation.frames),
            &[],
            &scene,
        );
        let mut pcm = vec![0i16; gap as usize * 2];
        pcm.extend_from_slice(&fresh);
        let track = encode_opus(&pcm)
            .map_err(|e| RenderError::Internal(format!("extend soundtrack: {e}")))?;
        packets.extend(track.packets);
        let mut joined = AudioTrack::Opus {
            packets,
            // Mono source packets decode into a stereo stream as well.
            channels: channels.max(track.channels),
            pre_skip,
        };
        joined.cut_to_frames(self.total_frames())?;
        Ok(Some(joined))
    }
}

pub(super) fn render(
    spec: &RenderSpec,
    pool: &EnginePool,
    cancel: &CancelFlag,
) -> Result<RenderOutput, RenderError> {
    let ext = Extension::new(spec, pool, cancel)?;
    if cancel.is_cancelled() {
        return Err(RenderError::Cancelled);
    }
    let plan = ext.plan();
    if ext.copyable(&plan)? {
        return render_copied(spec, &ext, &plan, pool, cancel);
    }
    let produce = |range: Range<u32>, sink: &mut Sink<'_>| ext.produce(range, cancel, sink);
    finish_pushed(
        spec,
        &plan,
        &produce,
        || ext.first_frame(cancel),
        || ext.audio(),
        pool,
        cancel,
    )
}

/// The copy path: the source's samples unchanged, then the encoded continuation chunks. A
/// labelled copy cannot copy samples (every frame carries the label), so its source part is
/// decoded, labelled and encoded with the same chunk plan.
fn render_copied(
    spec: &RenderSpec,
    ext: &Extension,
    plan: &StreamPlan,
    pool: &EnginePool,
    cancel: &CancelFlag,
) -> Result<RenderOutput, RenderError> {
    let part = |new: bool| StreamPlan {
        chunks: plan
            .chunks
            .iter()
            .filter(|c| (c.range.start >= ext.source_frames) == new)
            .cloned()
            .collect(),
        ..plan.clone()
    };
    let (source_plan, new_plan) = (part(false), part(true));
    let watermark = watermark_for(spec, plan)?;
    let errors = FirstError::default();
    let draw = |i: u32, buf: &mut I420Frame| {
        errors.keep(ext.continuation.draw(i - ext.source_frames, buf));
    };
    let produce = |range: Range<u32>, sink: &mut Sink<'_>| ext.produce(range, cancel, sink);
    let label = watermark.as_ref();
    let ((encoded, labelled_source), (cover, sound)) = pool.install(|| {
        rayon::join(
            || {
                rayon::join(
                    || {
                        rayon::join(
                            || encode_video_labelled(&new_plan, pool, cancel, &draw, label),
                            || copied_samples(&ext.video),
                        )
                    },
                    || match label {
                        Some(_) => {
                            encode_pushed(&source_plan, pool, cancel, &produce, false, label)
                                .map(|(_, labelled)| labelled)
                        }
                        None => Ok(None),
                    },
                )
            },
            || {
                rayon::join(
                    || {
                        ext.first_frame(cancel).and_then(|f| {
                            cover_jpeg(&f).map_err(|e| RenderError::Internal(format!("cover: {e}")))
                        })
                    },
                    || ext.audio(),
                )
            },
        )
    });
    let (new_encoded, source) = encoded;
    let ((chunks, new_labelled), source, cover_jpeg) = (new_encoded?, source?, cover?);
    let labelled_source = labelled_source?;
    errors.check()?;
    let sound = sound?.filter(|t| !t.is_empty());
    let (sps, pps) = ext.video.sps_pps();
    if chunks
        .iter()
        .any(|c: &EncodedChunk| c.sps != sps || c.pps != pps)
    {
        return Err(RenderError::Internal(
            "continuation parameter sets differ from the copied source's".to_owned(),
        ));
    }
    let mut samples: Vec<VideoSample<'_>> = source
        .iter()
        .map(|(nals, sync)| VideoSample { nals, sync: *sync })
        .collect();
    samples.extend(chunks.iter().flat_map(|c| &c.frames).map(|f| VideoSample {
        nals: &f.nals,
        sync: f.idr,
    }));
    if samples.len() != plan.frames as usize {
        return Err(RenderError::Internal(format!(
            "muxing {} of {} frames",
            samples.len(),
            plan.frames
        )));
    }
    let keyframes: Vec<u32> = samples
        .iter()
        .enumerate()
        .filter(|(_, s)| s.sync)
        .map(|(k, _)| k as u32)
        .collect();
    let hex = to_hex(&spec.identity());
    let video = VideoTrack {
        width: plan.size.width,
        height: plan.size.height,
        sps: &sps,
        pps: &pps,
        samples,
    };
    let mp4 = write_mp4(&video, sound.as_ref(), &title(&hex))?;
    let labelled = match (labelled_source, new_labelled) {
        (Some(mut all), Some(new)) => {
            all.extend(new);
            Some(all)
        }
        _ => None,
    };
    let watermarked_mp4 = watermarked_copy(spec, plan, labelled.as_deref(), sound.as_ref())?;
    Ok(RenderOutput {
        mp4,
        cover_jpeg,
        watermarked_mp4,
        meta: render_meta(plan, sound.is_some(), hex, keyframes),
    })
}

/// A copied sample: its NAL units (unchanged) and whether it is a sync sample.
type CopiedSample = (Vec<Vec<u8>>, bool);

/// Every source sample, in decode order.
fn copied_samples(video: &SourceVideo) -> Result<Vec<CopiedSample>, RenderError> {
    video
        .samples()
        .iter()
        .map(|s: &VideoSampleRef| {
            let nals = video
                .sample_nals(s)
                .map_err(|e| named(FIELD, e))?
                .into_iter()
                .map(<[u8]>::to_vec)
                .collect();
            Ok((nals, s.is_sync))
        })
        .collect()
}

/// Test-only entry point (§3.15): the pre-encode frames of the continuation of an extend spec
/// (the new frames only). Runs on a pool of `threads`.
#[doc(hidden)]
pub fn extend_continuation_frames(
    spec: &RenderSpec,
    threads: usize,
) -> Result<Vec<I420Frame>, RenderError> {
    super::frames_of(
        spec,
        threads,
        |pool| Extension::new(spec, pool, &CancelFlag::new()),
        |ext| ext.continuation.frames,
        |ext, j| {
            let c = &ext.continuation;
            let mut out = c.canvas.blank_frame();
            c.draw(j, &mut out)?;
            Ok(out)
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_length_and_cap() {
        assert_eq!(continuation_frames(120).unwrap(), 120);
        assert_eq!(continuation_frames(4200).unwrap(), 120);
        assert_eq!(continuation_frames(4250).unwrap(), 70);
        assert_eq!(continuation_frames(4296).unwrap(), 24);
        let err = continuation_frames(4297).unwrap_err();
        assert!(err.is_client_error());
        assert!(err.to_string().contains("180 s"), "{err}");
        assert!(continuation_frames(5000).unwrap_err().is_client_error());
    }

    #[test]
    fn mode_is_inherited_from_the_size() {
        assert_eq!(inherited_mode(Size::new(1280, 720)), Some(Mode::Std));
        assert_eq!(inherited_mode(Size::new(720, 1280)), Some(Mode::Std));
        assert_eq!(inherited_mode(Size::new(192, 108)), Some(Mode::Std));
        assert_eq!(inherited_mode(Size::new(1920, 1080)), Some(Mode::Pro));
        assert_eq!(inherited_mode(Size::new(1080, 1350)), Some(Mode::Pro));
        assert_eq!(inherited_mode(Size::new(3840, 2160)), Some(Mode::K4));
        assert_eq!(inherited_mode(Size::new(4096, 2160)), None);
    }

    #[test]
    fn velocity_decays_over_24_frames() {
        assert_eq!(velocity_steps(0), 1.0);
        assert!((velocity_steps(1) - (1.0 + 23.0 / 24.0)).abs() < 1e-12);
        // 1 + 23/24 + … + 1/24 = 12.5, then no further motion.
        assert!((velocity_steps(23) - 12.5).abs() < 1e-12);
        assert_eq!(velocity_steps(24), velocity_steps(23));
        assert_eq!(velocity_steps(119), velocity_steps(23));
    }

    #[test]
    fn seed_depends_on_source_and_prompts() {
        let a = seed_digest(&[1; 32], "p", "");
        assert_eq!(a, seed_digest(&[1; 32], "p", ""));
        assert_ne!(a, seed_digest(&[2; 32], "p", ""));
        assert_ne!(a, seed_digest(&[1; 32], "q", ""));
        assert_ne!(
            seed_digest(&[1; 32], "pq", ""),
            seed_digest(&[1; 32], "p", "q")
        );
    }
}
