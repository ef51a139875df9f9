//! Input videos and their audio (design §2.5, §3.10–§3.14, §5.1 "video" and "audio"): an
//! MP4/MOV reader, H.264 decoding with OpenH264, sample-and-hold resampling to 24 fps in
//! display orientation, the shared motion estimator, and the source audio track (copied or
//! transcoded to Opus).
//!
//! Only 8-bit 4:2:0 progressive H.264 is decoded (§5.2); anything else is a client error that
//! names the limit. Decoding is CPU work and runs on the calling thread.
//!
//! **Timeline.** A sample's presentation time is its composition time (decode time plus the
//! `ctts` offset) mapped through the first edit of the track's edit list: leading empty edits
//! delay the track, and the first real edit's media time becomes time zero. Later edits are
//! not honoured (a single edit is what encoders write). Without an edit list the earliest
//! composition time is time zero. The duration is the sum of the edit durations when the
//! track has an edit list, otherwise the `mdhd` duration, otherwise (in fragmented files)
//! the sum of the sample durations.

mod audio;
mod decode;
mod demux;
mod motion;
mod scale;

use std::ops::Range;
use std::sync::Arc;

use crate::engine::{CancelFlag, RenderError};
use crate::frame::{I420Frame, Plane};
use crate::plan::{frames_for_measured, Size, FPS};

pub use audio::SourceAudio;
pub use decode::{parse_sps, SpsInfo};
pub use motion::{
    estimate_motion, estimate_motion_from_thumbnails, pair_motion, thumbnail_size, GlobalMotion,
    MotionTrack, PairMotion, THUMB_WIDTH,
};
pub use scale::Rotation;

use decode::{
    check_supported, parse_avcc, push_annex_b, split_nals, AvcConfig, H264Decoder, Picture,
};
use scale::{cover_crop, resample, rotate, Axis, Kernel};

/// Longest video the engine reads: extend caps the whole result at 180 s, and references are
/// shorter still.
const MAX_DURATION_S: f64 = 600.0;

/// One compressed video sample, in decode order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VideoSampleRef {
    /// Position in decode order.
    pub index: u32,
    /// File offset and length of the sample's bytes.
    pub offset: u64,
    pub size: u32,
    /// Decode time in track ticks ([`SourceVideo::timescale`]).
    pub dts: i64,
    /// Presentation time in track ticks after the edit list (0 = the first shown instant).
    pub pts: i64,
    pub duration: u32,
    pub is_sync: bool,
}

/// A demuxed MP4/MOV input: its first video track (H.264, `avc1` or `avc3`) and its first
/// audio track.
#[derive(Clone)]
pub struct SourceVideo {
    bytes: Arc<[u8]>,
    config: AvcConfig,
    sps: Vec<u8>,
    pps: Vec<u8>,
    coded: (u32, u32),
    rotation: Rotation,
    timescale: u32,
    /// Presentation duration in track ticks.
    duration_ticks: u64,
    samples: Vec<VideoSampleRef>,
    /// Decode index of each presentation rank (samples sorted by pts, then decode order).
    by_rank: Vec<u32>,
    /// Presentation rank of each decode index.
    rank_of: Vec<u32>,
    audio: Option<SourceAudio>,
}

impl std::fmt::Debug for SourceVideo {
    // The file's bytes are left out: they would flood any log the value reaches.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceVideo")
            .field("bytes", &self.bytes.len())
            .field("coded", &self.coded)
            .field("rotation", &self.rotation)
            .field("timescale", &self.timescale)
            .field("duration_ticks", &self.duration_ticks)
            .field("samples", &self.samples.len())
            .field("audio", &self.audio)
            .finish()
    }
}

fn client<T>(msg: impl Into<String>) -> Result<T, RenderError> {
    Err(RenderError::Client(msg.into()))
}

impl SourceVideo {
    /// Reads the container index and checks the video stream can be decoded. Fails with a
    /// client error for anything unreadable or not 8-bit 4:2:0 progressive H.264.
    pub fn open(bytes: Arc<[u8]>) -> Result<SourceVideo, RenderError> {
        let movie =
            demux::parse(&bytes).map_err(|e| RenderError::Client(format!("video file: {e}")))?;
        let Some(track) = movie.tracks.iter().find(|t| &t.handler == b"vide") else {
            return client("video file: it has no video track");
        };
        let demux::SampleEntry::Avc { avcc, .. } = &track.entry else {
            return client(format!(
                "video file: the video codec is {}; the local engine decodes only H.264 \
                 (re-encode the video as 8-bit 4:2:0 progressive H.264)",
                track.entry.name()
            ));
        };
        if track.samples.is_empty() {
            return client("video file: the video track has no samples");
        }
        let config = if avcc.is_empty() {
            // `avc3` without a record: parameter sets travel in the stream; NAL lengths
            // are then four bytes by convention.
            AvcConfig {
                nal_length_size: 4,
                sps: Vec::new(),
                pps: Vec::new(),
            }
        } else {
            parse_avcc(avcc).map_err(|e| RenderError::Client(format!("video file: {e}")))?
        };

        let timescale = track.timescale;
        let (media_start, delay_movie) = match first_edit(&track.edits) {
            Some(edit) => edit,
            // Without an edit list the earliest composition time is time zero: writers that
            // delay B-frame streams by a few ticks and omit the edit list (fragmented files
            // do) would otherwise open with a gap holding the first picture.
            None => (track.samples.iter().map(|s| s.cts).min().unwrap_or(0), 0),
        };
        let delay = scale_ticks(delay_movie, timescale, movie.timescale);
        let samples: Vec<VideoSampleRef> = track
            .samples
            .iter()
            .enumerate()
            .map(|(i, s)| VideoSampleRef {
                index: i as u32,
                offset: s.offset,
                size: s.size,
                dts: s.dts,
                pts: s
                    .cts
                    .saturating_sub(media_start)
                    .saturating_add(i64::try_from(delay).unwrap_or(i64::MAX)),
                duration: s.duration,
                is_sync: s.sync,
            })
            .collect();
        let edit_total: u64 = track
            .edits
            .iter()
            .fold(0u64, |a, e| a.saturating_add(e.segment_duration));
        let duration_ticks = if edit_total > 0 {
            scale_ticks(edit_total, timescale, movie.timescale)
        } else if track.media_duration > 0 {
            track.media_duration
        } else {
            samples.iter().map(|s| u64::from(s.duration)).sum()
        };
        let duration_s = duration_ticks as f64 / f64::from(timescale);
        if duration_ticks == 0 {
            return client("video file: the video track has zero duration");
        }
        if duration_s > MAX_DURATION_S {
            return client(format!(
                "video file: the video lasts {duration_s:.1} s, more than the local engine reads ({MAX_DURATION_S} s)"
            ));
        }

        let mut by_rank: Vec<u32> = (0..samples.len() as u32).collect();
        by_rank.sort_by_key(|&i| (samples[i as usize].pts, i));
        let mut rank_of = vec![0u32; samples.len()];
        for (r, &i) in by_rank.iter().enumerate() {
            rank_of[i as usize] = r as u32;
        }

        let mut video = SourceVideo {
            bytes: bytes.clone(),
            sps: Vec::new(),
            pps: Vec::new(),
            coded: (0, 0),
            rotation: Rotation::from_matrix(track.matrix),
            timescale,
            duration_ticks,
            samples,
            by_rank,
            rank_of,
            audio: None,
            config,
        };
        let (sps, pps) = video.find_parameter_sets()?;
        let info = parse_sps(&sps).map_err(|e| RenderError::Client(format!("video file: {e}")))?;
        check_supported(&info).map_err(|e| RenderError::Client(format!("video file: {e}")))?;
        video.coded = (info.width, info.height);
        video.sps = sps;
        video.pps = pps;
        video.audio = movie
            .tracks
            .iter()
            .find(|t| &t.handler == b"soun")
            .and_then(|t| SourceAudio::from_track(bytes.clone(), t, movie.timescale));
        Ok(video)
    }

    /// The first SPS and PPS: from `avcC`, or for `avc3` from the first samples.
    fn find_parameter_sets(&self) -> Result<(Vec<u8>, Vec<u8>), RenderError> {
        if let (Some(sps), Some(pps)) = (self.config.sps.first(), self.config.pps.first()) {
            return Ok((sps.clone(), pps.clone()));
        }
        let (mut sps, mut pps) = (None, None);
        for s in self.samples.iter().take(64) {
            for nal in self.sample_nals(s)? {
                match nal.first().map(|b| b & 0x1f) {
                    Some(7) if sps.is_none() => sps = Some(nal.to_vec()),
                    Some(8) if pps.is_none() => pps = Some(nal.to_vec()),
                    _ => {}
                }
            }
            if let (Some(sps), Some(pps)) = (&sps, &pps) {
                return Ok((sps.clone(), pps.clone()));
            }
        }
        client("video file: the H.264 stream has no sequence and picture parameter sets")
    }

    /// Decoded picture size (after the SPS cropping), before rotation.
    pub fn coded_size(&self) -> (u32, u32) {
        self.coded
    }

    /// Size as displayed: the coded size with the track's 90°/270° rotation applied.
    pub fn display_size(&self) -> (u32, u32) {
        let (w, h) = self.coded;
        if self.rotation.swaps() {
            (h, w)
        } else {
            (w, h)
        }
    }

    pub fn rotation(&self) -> Rotation {
        self.rotation
    }

    /// The video track's ticks per second.
    pub fn timescale(&self) -> u32 {
        self.timescale
    }

    /// The video track's presentation duration in seconds (see the module notes).
    pub fn duration_s(&self) -> f64 {
        self.duration_ticks as f64 / f64::from(self.timescale)
    }

    /// N = ⌊24·D + ½⌋ (§2.2).
    pub fn frames_at_24fps(&self) -> u32 {
        frames_for_measured(self.duration_s())
    }

    /// The first SPS and PPS NAL units (without start codes or length prefixes).
    pub fn sps_pps(&self) -> (Vec<u8>, Vec<u8>) {
        (self.sps.clone(), self.pps.clone())
    }

    /// Bytes of each NAL length prefix inside samples (4 in the engine's own files).
    pub fn nal_length_size(&self) -> usize {
        self.config.nal_length_size
    }

    /// Compressed samples in decode order.
    pub fn samples(&self) -> Vec<VideoSampleRef> {
        self.samples.clone()
    }

    /// Whether decode order differs from presentation order (the stream has B-frames).
    pub fn reorders(&self) -> bool {
        self.by_rank.iter().enumerate().any(|(r, &i)| r as u32 != i)
    }

    /// The sample's bytes: NAL units with [`Self::nal_length_size`]-byte length prefixes.
    /// Empty for a reference that does not come from this video.
    pub fn sample_data(&self, s: &VideoSampleRef) -> &[u8] {
        let start = usize::try_from(s.offset).unwrap_or(usize::MAX);
        let end = start.saturating_add(s.size as usize);
        self.bytes.get(start..end).unwrap_or_default()
    }

    /// The sample's NAL units, without length prefixes.
    pub fn sample_nals(&self, s: &VideoSampleRef) -> Result<Vec<&[u8]>, RenderError> {
        split_nals(self.sample_data(s), self.config.nal_length_size)
            .map_err(|e| RenderError::Client(format!("video file: sample {}: {e}", s.index)))
    }

    /// The presentation rank shown at output frame `i` (24 fps): the latest sample whose
    /// presentation time is at or before i/24, never one at or after the end, and the first
    /// one for instants before it.
    fn rank_at(&self, i: u32) -> u32 {
        let ts = i128::from(self.timescale);
        // pts ≤ i/24 ⇔ 24·pts ≤ i·timescale; and pts < duration ⇔ 24·pts ≤ 24·duration − 1.
        let limit = (i128::from(i) * ts).min(i128::from(self.duration_ticks) * i128::from(FPS) - 1);
        let count = self.by_rank.partition_point(|&d| {
            i128::from(self.samples[d as usize].pts) * i128::from(FPS) <= limit
        });
        count.saturating_sub(1) as u32
    }

    /// Decodes and calls `f(i, frame)` for every output frame i in `range` at 24 fps by
    /// sample-and-hold (the latest source frame with pts ≤ i/24; frames past the end hold
    /// the last one), rotated to display orientation and scaled to cover `out` (centred,
    /// the overflowing axis cropped) with a fixed-point bilinear filter that widens into a
    /// triangle when shrinking. A frame of the source's display size is passed unchanged.
    pub fn for_each_frame_24(
        &self,
        out: Size,
        range: Range<u32>,
        cancel: &CancelFlag,
        mut f: impl FnMut(u32, &I420Frame) -> Result<(), RenderError>,
    ) -> Result<(), RenderError> {
        if out.width == 0
            || out.height == 0
            || !out.width.is_multiple_of(2)
            || !out.height.is_multiple_of(2)
        {
            return Err(RenderError::Internal(format!(
                "source frames need an even, non-zero size, not {}x{}",
                out.width, out.height
            )));
        }
        let mut converter = Converter::new(self, out, Kernel::Triangle);
        let mut cache: Option<(u64, I420Frame)> = None;
        self.decode_outputs(range, cancel, |i, picture| {
            if cache.as_ref().map(|c| c.0) != Some(picture.rank) {
                cache = Some((picture.rank, converter.frame(picture)));
            }
            match &cache {
                Some((_, frame)) => f(i, frame),
                None => Err(RenderError::Internal("frame cache empty".to_owned())),
            }
        })
    }

    /// Display-oriented luma thumbnails (area average, cover-fit to `w`×`h`) for output
    /// frames in `range`, as [`Self::for_each_frame_24`] samples them.
    pub fn for_each_luma_24(
        &self,
        w: u32,
        h: u32,
        range: Range<u32>,
        cancel: &CancelFlag,
        mut f: impl FnMut(u32, &Plane) -> Result<(), RenderError>,
    ) -> Result<(), RenderError> {
        let mut converter = Converter::new(self, Size::new(w, h), Kernel::Area);
        let mut cache: Option<(u64, Plane)> = None;
        self.decode_outputs(range, cancel, |i, picture| {
            if cache.as_ref().map(|c| c.0) != Some(picture.rank) {
                cache = Some((picture.rank, converter.luma(picture)));
            }
            match &cache {
                Some((_, plane)) => f(i, plane),
                None => Err(RenderError::Internal("thumbnail cache empty".to_owned())),
            }
        })
    }

    /// The last frame shown (the latest one starting before the end), at `out` size.
    pub fn last_frame(&self, out: Size) -> Result<I420Frame, RenderError> {
        let mut last = None;
        self.for_each_frame_24(out, u32::MAX - 1..u32::MAX, &CancelFlag::new(), |_, f| {
            last = Some(f.clone());
            Ok(())
        })?;
        last.ok_or_else(|| RenderError::Internal("no last frame".to_owned()))
    }

    /// The first audio track, if the file has one with samples.
    pub fn audio(&self) -> Option<SourceAudio> {
        self.audio.clone()
    }

    /// Decodes what output frames `range` need and hands each its picture, in order.
    fn decode_outputs(
        &self,
        range: Range<u32>,
        cancel: &CancelFlag,
        mut emit: impl FnMut(u32, &Picture) -> Result<(), RenderError>,
    ) -> Result<(), RenderError> {
        if range.is_empty() {
            return Ok(());
        }
        // Output frames map to non-decreasing ranks; consecutive repeats share one entry.
        let mut targets: Vec<(Range<u32>, u32)> = Vec::new();
        for i in range {
            let r = self.rank_at(i);
            match targets.last_mut() {
                Some((span, rank)) if *rank == r => span.end = i + 1,
                _ => targets.push((i..i + 1, r)),
            }
        }
        let start = self.start_sample(targets[0].1 as usize);
        let mut decoder = H264Decoder::new().map_err(RenderError::Internal)?;
        let mut held: Option<Picture> = None;
        let mut next = 0usize;
        let mut problems = 0usize;
        let mut last_state = 0;
        let mut au = Vec::new();

        // Hands a decoded picture to every target it settles; returns true when all are.
        let mut accept = |picture: Picture,
                          held: &mut Option<Picture>,
                          next: &mut usize|
         -> Result<bool, RenderError> {
            let rank = picture.rank;
            if held.as_ref().is_some_and(|h| rank <= h.rank) {
                return Ok(*next == targets.len());
            }
            // Targets before this picture keep the previous one (a picture the decoder
            // dropped is replaced by the latest earlier one).
            while *next < targets.len() && u64::from(targets[*next].1) < rank {
                let shown = held.as_ref().unwrap_or(&picture);
                for i in targets[*next].0.clone() {
                    emit(i, shown)?;
                }
                *next += 1;
            }
            *held = Some(picture);
            while *next < targets.len() && u64::from(targets[*next].1) == rank {
                if let Some(shown) = held.as_ref() {
                    for i in targets[*next].0.clone() {
                        emit(i, shown)?;
                    }
                }
                *next += 1;
            }
            Ok(*next == targets.len())
        };

        for d in start..self.samples.len() {
            if cancel.is_cancelled() {
                return Err(RenderError::Cancelled);
            }
            let s = &self.samples[d];
            au.clear();
            if d == start {
                // Parameter sets from the record precede the first access unit.
                for set in self.config.sps.iter().chain(&self.config.pps) {
                    push_annex_b(&mut au, set);
                }
                if self.config.sps.is_empty() {
                    push_annex_b(&mut au, &self.sps);
                    push_annex_b(&mut au, &self.pps);
                }
            }
            for nal in self.sample_nals(s)? {
                push_annex_b(&mut au, nal);
            }
            if au.is_empty() {
                continue;
            }
            let (picture, state) = decoder.decode(&au, u64::from(self.rank_of[d]));
            if state != 0 {
                problems += 1;
                last_state = state;
            }
            if let Some(p) = picture {
                if accept(p, &mut held, &mut next)? {
                    return Ok(());
                }
            }
        }
        // Pictures still waiting for reordering at the end of the stream.
        for _ in 0..64 {
            match decoder.flush() {
                Some(p) => {
                    if accept(p, &mut held, &mut next)? {
                        return Ok(());
                    }
                }
                None => break,
            }
        }
        let Some(last) = held else {
            return client(format!(
                "video file: the H.264 stream could not be decoded ({problems} access units failed, \
                 decoder state {last_state}); re-encode the video as 8-bit 4:2:0 progressive H.264"
            ));
        };
        for (span, _) in &targets[next..] {
            for i in span.clone() {
                emit(i, &last)?;
            }
        }
        Ok(())
    }

    /// The sample decoding starts from to reach presentation rank `rank`: the sync sample at
    /// or before it in decode order, one further back when that is not an IDR picture (an
    /// open GOP's leading pictures reference the GOP before).
    fn start_sample(&self, rank: usize) -> usize {
        let Some(&target) = self.by_rank.get(rank) else {
            return 0;
        };
        let syncs_before = |d: usize| (0..=d).rev().find(|&k| self.samples[k].is_sync);
        let Some(sync) = syncs_before(target as usize) else {
            return 0;
        };
        let is_idr = self
            .sample_nals(&self.samples[sync])
            .map(|nals| nals.iter().any(|n| n.first().map(|b| b & 0x1f) == Some(5)))
            .unwrap_or(false);
        if is_idr || sync == 0 {
            sync
        } else {
            syncs_before(sync - 1).unwrap_or(0)
        }
    }
}

/// (media time of the first non-empty edit, movie ticks of empty edits before it), or
/// `None` without an edit list.
fn first_edit(edits: &[demux::Edit]) -> Option<(i64, u64)> {
    if edits.is_empty() {
        return None;
    }
    let mut delay = 0u64;
    for e in edits {
        if e.media_time < 0 {
            delay = delay.saturating_add(e.segment_duration);
        } else {
            return Some((e.media_time, delay));
        }
    }
    Some((0, delay))
}

/// Converts `ticks` of a `from` timescale to the `to` timescale, rounding to nearest.
fn scale_ticks(ticks: u64, to: u32, from: u32) -> u64 {
    if from == 0 {
        return 0;
    }
    let v = (u128::from(ticks) * u128::from(to) + u128::from(from) / 2) / u128::from(from);
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// Rotates and scales decoded pictures to one output size, with axes computed once.
struct Converter {
    rotation: Rotation,
    out: Size,
    kernel: Kernel,
    /// Source size the axes were built for (after rotation), and the axes.
    axes: Option<((usize, usize), [Axis; 4])>,
}

impl Converter {
    fn new(video: &SourceVideo, out: Size, kernel: Kernel) -> Self {
        Self {
            rotation: video.rotation,
            out,
            kernel,
            axes: None,
        }
    }

    /// Luma x, luma y, chroma x, chroma y axes for a rotated `w`×`h` picture.
    fn axes(&mut self, w: usize, h: usize) -> &[Axis; 4] {
        if !matches!(&self.axes, Some((size, _)) if *size == (w, h)) {
            self.axes = None;
        }
        let (out, kernel) = (self.out, self.kernel);
        let (_, axes) = self.axes.get_or_insert_with(|| {
            let (ow, oh) = (out.width as usize, out.height as usize);
            let (x0, y0, cw, ch) = cover_crop(w, h, ow, oh);
            let axes = [
                Axis::new(w, ow, x0, cw, kernel),
                Axis::new(h, oh, y0, ch, kernel),
                Axis::new(w.div_ceil(2), ow / 2, x0 / 2.0, cw / 2.0, kernel),
                Axis::new(h.div_ceil(2), oh / 2, y0 / 2.0, ch / 2.0, kernel),
            ];
            ((w, h), axes)
        });
        axes
    }

    fn luma(&mut self, p: &Picture) -> Plane {
        let (y, w, h) = rotate(&p.y, p.width, p.height, self.rotation);
        let axes = self.axes(w, h);
        resample(&y, w, h, &axes[0], &axes[1])
    }

    fn frame(&mut self, p: &Picture) -> I420Frame {
        let rotation = self.rotation;
        let (y, w, h) = rotate(&p.y, p.width, p.height, rotation);
        let (u, cw, ch) = rotate(&p.u, p.chroma_width(), p.chroma_height(), rotation);
        let (v, _, _) = rotate(&p.v, p.chroma_width(), p.chroma_height(), rotation);
        let axes = self.axes(w, h);
        I420Frame {
            y: resample(&y, w, h, &axes[0], &axes[1]),
            u: resample(&u, cw, ch, &axes[2], &axes[3]),
            v: resample(&v, cw, ch, &axes[2], &axes[3]),
        }
    }
}
