//! A source video's first audio track (§2.5, §3.10–§3.13): copied into the output when it is
//! AAC or Opus, otherwise decoded (PCM in-house; MP3, AAC, FLAC and ALAC with symphonia),
//! mixed to stereo, resampled to 48 kHz and encoded to Opus with the soundtrack's encoder.
//!
//! Alignment: the track starts at the video's time zero. AAC priming (the media time of the
//! track's first edit) is kept hidden, both when copying (as an edit list) and when decoding
//! (the primed samples are dropped); other edit list entries are not honoured.

use std::sync::Arc;

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{
    CodecParameters, CodecType, DecoderOptions, CODEC_TYPE_AAC, CODEC_TYPE_ALAC, CODEC_TYPE_FLAC,
    CODEC_TYPE_MP3,
};
use symphonia::core::formats::Packet;

use crate::audio::{encode_opus, SAMPLES_PER_VIDEO_FRAME};
use crate::engine::RenderError;
use crate::mux::{opus_packet_samples, AudioTrack, OPUS_PACKET_SAMPLES, OPUS_TIMESCALE};

use super::demux::{Sample, SampleEntry, Track};

/// Longest audio decoded for transcoding, in seconds (the longest video read is 600 s).
const MAX_DECODE_S: u64 = 600;

/// The first audio track of a source video.
#[derive(Clone)]
pub struct SourceAudio {
    bytes: Arc<[u8]>,
    entry: SampleEntry,
    timescale: u32,
    samples: Vec<Sample>,
    /// Media ticks hidden at the start (the first edit's media time).
    priming: u64,
}

impl std::fmt::Debug for SourceAudio {
    // The file's bytes are left out: they would flood any log the value reaches.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceAudio")
            .field("codec", &self.entry.name())
            .field("timescale", &self.timescale)
            .field("samples", &self.samples.len())
            .field("priming", &self.priming)
            .finish()
    }
}

fn client(msg: impl Into<String>) -> RenderError {
    RenderError::Client(msg.into())
}

impl SourceAudio {
    /// `None` for a track without samples: a silent source has no audio (§2.5).
    pub(crate) fn from_track(
        bytes: Arc<[u8]>,
        track: &Track,
        _movie_timescale: u32,
    ) -> Option<Self> {
        if track.samples.iter().all(|s| s.size == 0) {
            return None;
        }
        let priming = track
            .edits
            .iter()
            .find(|e| e.media_time >= 0)
            .map_or(0, |e| e.media_time as u64);
        Some(Self {
            bytes,
            entry: track.entry.clone(),
            timescale: track.timescale,
            samples: track.samples.clone(),
            priming,
        })
    }

    /// A readable name of the codec ("AAC", "Opus", "MPEG audio (MP3)", "PCM", …).
    pub fn codec_name(&self) -> String {
        self.entry.name()
    }

    pub fn is_aac(&self) -> bool {
        matches!(&self.entry, SampleEntry::Mp4a { object_type, .. } if is_aac_object(*object_type))
    }

    pub fn is_opus(&self) -> bool {
        matches!(self.entry, SampleEntry::Opus { .. })
    }

    /// Duration of the track in seconds, priming excluded.
    pub fn duration_s(&self) -> f64 {
        let media: u64 = self.samples.iter().map(|s| u64::from(s.duration)).sum();
        media.saturating_sub(self.priming) as f64 / f64::from(self.timescale.max(1))
    }

    fn data(&self, s: &Sample) -> &[u8] {
        let start = usize::try_from(s.offset).unwrap_or(usize::MAX);
        self.bytes
            .get(start..start.saturating_add(s.size as usize))
            .unwrap_or_default()
    }

    /// The track for an output of `video_frames` frames at 24 fps (motion control and omni
    /// references): AAC and Opus are copied, anything else is transcoded to Opus; then it is
    /// cut at the last packet that ends at or before the video's end.
    pub fn to_track(&self, video_frames: u32) -> Result<AudioTrack, RenderError> {
        if self.is_aac() {
            if let Some(track) = self.copy_aac(video_frames)? {
                return Ok(track);
            }
        }
        self.to_opus(video_frames)
    }

    /// Always Opus (extend appends an Opus soundtrack): Opus packets are copied, anything
    /// else is decoded and re-encoded. Cut like [`Self::to_track`].
    pub fn to_opus(&self, video_frames: u32) -> Result<AudioTrack, RenderError> {
        if self.is_opus() {
            return self.copy_opus(video_frames);
        }
        let pcm = self.decode_stereo_48k()?;
        let video_samples = u64::from(video_frames) * SAMPLES_PER_VIDEO_FRAME;
        let frames = (pcm.len() as u64 / 2).min(video_samples);
        // Whole packets only, so the audio ends within 20 ms before the video (never after);
        // a track shorter than one packet keeps that packet.
        let packet = u64::from(OPUS_PACKET_SAMPLES);
        let keep = if frames >= packet {
            frames - frames % packet
        } else {
            frames
        };
        if keep == 0 {
            return Err(client(
                "video file: the audio track decodes to no samples inside the video",
            ));
        }
        let pcm: Vec<i16> = pcm[..keep as usize * 2]
            .iter()
            .map(|&v| libm::round(f64::from(v.clamp(-1.0, 1.0)) * 32767.0) as i16)
            .collect();
        let track =
            encode_opus(&pcm).map_err(|e| RenderError::Internal(format!("source audio: {e}")))?;
        Ok(AudioTrack::try_from(track)?)
    }

    fn cut(mut track: AudioTrack, video_frames: u32) -> Result<AudioTrack, RenderError> {
        track
            .cut_to_frames(video_frames)
            .map_err(|e| client(format!("video file: audio track: {e}")))?;
        if track.is_empty() {
            return Err(client(
                "video file: the audio track has no whole packet inside the video",
            ));
        }
        Ok(track)
    }

    /// Copies AAC access units, or `None` when their timing cannot be described by the
    /// muxer (uneven frame durations), in which case the caller transcodes.
    fn copy_aac(&self, video_frames: u32) -> Result<Option<AudioTrack>, RenderError> {
        let SampleEntry::Mp4a {
            channels, config, ..
        } = &self.entry
        else {
            return Ok(None);
        };
        let Some(first) = self.samples.first() else {
            return Ok(None);
        };
        let frame = first.duration;
        let n = self.samples.len();
        // Every access unit but a short final one must last the same.
        if frame == 0 || self.samples[..n - 1].iter().any(|s| s.duration != frame) {
            return Ok(None);
        }
        let whole = if self.samples[n - 1].duration == frame {
            n
        } else {
            n - 1
        };
        if config.len() < 2 || *channels == 0 || *channels > 8 {
            return Err(client(
                "video file: the AAC audio track has no usable AudioSpecificConfig",
            ));
        }
        let total = u64::from(frame) * whole as u64;
        let priming = u32::try_from(self.priming.min(total)).unwrap_or(0);
        let packets = self.samples[..whole]
            .iter()
            .map(|s| self.data(s).to_vec())
            .collect();
        let track = AudioTrack::Aac {
            config: config.clone(),
            packets,
            sample_rate: self.timescale,
            channels: *channels as u8,
            frame_samples: frame,
            priming,
        };
        Self::cut(track, video_frames).map(Some)
    }

    fn copy_opus(&self, video_frames: u32) -> Result<AudioTrack, RenderError> {
        let SampleEntry::Opus {
            channels,
            pre_skip,
            mapping_family,
        } = self.entry
        else {
            return Err(RenderError::Internal("not an Opus track".to_owned()));
        };
        if mapping_family != 0 || !(1..=2).contains(&channels) {
            return Err(client(format!(
                "video file: Opus audio with {channels} channels (mapping family {mapping_family}) \
                 is not supported; the local engine reads mono or stereo Opus"
            )));
        }
        if self.timescale != OPUS_TIMESCALE {
            return Err(client(format!(
                "video file: the Opus track's timescale is {} (Opus in MP4 runs at 48000)",
                self.timescale
            )));
        }
        let mut packets = Vec::with_capacity(self.samples.len());
        for s in &self.samples {
            let p = self.data(s);
            opus_packet_samples(p).map_err(|e| client(format!("video file: audio track: {e}")))?;
            packets.push(p.to_vec());
        }
        Self::cut(
            AudioTrack::Opus {
                packets,
                channels,
                pre_skip,
            },
            video_frames,
        )
    }

    /// Decodes the whole track to interleaved stereo at 48 kHz in [-1, 1], priming removed.
    pub fn decode_stereo_48k(&self) -> Result<Vec<f32>, RenderError> {
        let (rate, channels, pcm) = self.decode()?;
        if channels == 0 || rate == 0 {
            return Err(client("video file: the audio track has no channels"));
        }
        let frames = pcm.len() / channels;
        let skip = (u128::from(self.priming) * u128::from(rate) / u128::from(self.timescale.max(1)))
            .min(frames as u128) as usize;
        let stereo = to_stereo(&pcm[skip * channels..], channels);
        Ok(resample_to_48k(&stereo, rate))
    }

    /// (sample rate, channels, interleaved samples).
    fn decode(&self) -> Result<(u32, usize, Vec<f32>), RenderError> {
        match &self.entry {
            SampleEntry::Pcm {
                channels,
                sample_rate,
                bits,
                float,
                little_endian,
                frame_bytes,
            } => {
                let limit = u64::from(*sample_rate) * MAX_DECODE_S * u64::from(*frame_bytes);
                let mut raw = Vec::new();
                for s in &self.samples {
                    raw.extend_from_slice(self.data(s));
                    if raw.len() as u64 > limit {
                        return Err(client(format!(
                            "video file: the PCM audio track is longer than {MAX_DECODE_S} s"
                        )));
                    }
                }
                let pcm = pcm_to_f32(&raw, *bits, *float, *little_endian);
                Ok((*sample_rate, usize::from(*channels), pcm))
            }
            SampleEntry::Mp4a {
                object_type,
                config,
                sample_rate,
                channels,
            } => {
                if is_aac_object(*object_type) {
                    self.decode_with(
                        CODEC_TYPE_AAC,
                        *sample_rate,
                        *channels,
                        Some(config.clone()),
                    )
                } else if matches!(object_type, 0x69 | 0x6b) {
                    self.decode_with(CODEC_TYPE_MP3, *sample_rate, *channels, None)
                } else {
                    Err(self.unsupported())
                }
            }
            SampleEntry::Flac {
                channels,
                sample_rate,
                blocks,
            } => {
                // The first metadata block is STREAMINFO: a 4-byte header, then 34 bytes.
                let Some(info) = blocks.get(4..38) else {
                    return Err(client("video file: the FLAC track has no STREAMINFO"));
                };
                self.decode_with(
                    CODEC_TYPE_FLAC,
                    *sample_rate,
                    *channels,
                    Some(info.to_vec()),
                )
            }
            SampleEntry::Alac {
                channels,
                sample_rate,
                cookie,
            } => self.decode_with(
                CODEC_TYPE_ALAC,
                *sample_rate,
                *channels,
                Some(cookie.clone()),
            ),
            _ => Err(self.unsupported()),
        }
    }

    fn unsupported(&self) -> RenderError {
        client(format!(
            "video file: the audio codec is {}; the local engine copies AAC and Opus and \
             transcodes PCM, MP3, FLAC and ALAC (re-encode the audio as AAC, or set \
             keep_original_sound to \"no\")",
            self.entry.name()
        ))
    }

    fn decode_with(
        &self,
        codec: CodecType,
        sample_rate: u32,
        channels: u16,
        extra: Option<Vec<u8>>,
    ) -> Result<(u32, usize, Vec<f32>), RenderError> {
        let mut params = CodecParameters::new();
        params.for_codec(codec).with_sample_rate(sample_rate);
        if let Some(extra) = extra {
            params.with_extra_data(extra.into_boxed_slice());
        }
        let name = self.entry.name();
        // Third-party decoders meet hostile bytes here; a panic in one must fail the task,
        // not the worker.
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.run_decoder(&params, sample_rate, channels)
        }));
        match run {
            Ok(result) => result,
            Err(_) => Err(client(format!(
                "video file: the {name} audio track is malformed and could not be decoded"
            ))),
        }
    }

    fn run_decoder(
        &self,
        params: &CodecParameters,
        sample_rate: u32,
        channels: u16,
    ) -> Result<(u32, usize, Vec<f32>), RenderError> {
        let name = self.entry.name();
        let mut decoder = symphonia::default::get_codecs()
            .make(params, &DecoderOptions::default())
            .map_err(|e| {
                client(format!(
                    "video file: the {name} audio track cannot be decoded by the local engine ({e}); \
                     re-encode the audio as AAC-LC, or set keep_original_sound to \"no\""
                ))
            })?;
        let mut out: Vec<f32> = Vec::new();
        let mut layout: Option<(u32, usize)> = None;
        let mut buffer: Option<SampleBuffer<f32>> = None;
        let (mut ok, mut failed) = (0usize, 0usize);
        let limit =
            u64::from(sample_rate.max(8_000)) * MAX_DECODE_S * u64::from(channels.clamp(1, 8));
        for (i, s) in self.samples.iter().enumerate() {
            let packet = Packet::new_from_slice(0, i as u64, u64::from(s.duration), self.data(s));
            let decoded = match decoder.decode(&packet) {
                Ok(d) => d,
                Err(symphonia::core::errors::Error::DecodeError(_)) => {
                    // Players skip a damaged packet; so does the engine, unless all are.
                    failed += 1;
                    continue;
                }
                Err(e) => {
                    return Err(client(format!(
                        "video file: the {name} audio track could not be decoded ({e})"
                    )))
                }
            };
            let spec = *decoded.spec();
            let this = (spec.rate, spec.channels.count());
            if layout.is_some_and(|l| l != this) {
                return Err(client(format!(
                    "video file: the {name} audio track changes its format midway"
                )));
            }
            layout = Some(this);
            let frames = decoded.capacity() as u64;
            if buffer
                .as_ref()
                .is_none_or(|b| (b.capacity() as u64) < frames * this.1 as u64)
            {
                buffer = Some(SampleBuffer::new(frames, spec));
            }
            if let Some(b) = buffer.as_mut() {
                b.copy_interleaved_ref(decoded);
                out.extend_from_slice(b.samples());
            }
            ok += 1;
            if out.len() as u64 > limit {
                return Err(client(format!(
                    "video file: the audio track is longer than {MAX_DECODE_S} s"
                )));
            }
        }
        match layout {
            Some((rate, ch)) if ok > 0 => Ok((rate, ch, out)),
            _ => Err(client(format!(
                "video file: none of the {name} audio track's {failed} packets could be decoded"
            ))),
        }
    }
}

fn is_aac_object(object_type: u8) -> bool {
    // MPEG-4 audio, and the MPEG-2 AAC profiles.
    matches!(object_type, 0x40 | 0x66..=0x68)
}

/// Interleaved PCM bytes to f32 in [-1, 1]; a trailing partial sample is ignored.
fn pcm_to_f32(raw: &[u8], bits: u16, float: bool, little_endian: bool) -> Vec<f32> {
    let width = usize::from(bits / 8);
    raw.chunks_exact(width)
        .map(|b| {
            let mut v = [0u8; 8];
            if little_endian {
                v[..width].copy_from_slice(b);
            } else {
                for (k, &x) in b.iter().rev().enumerate() {
                    v[k] = x;
                }
            }
            match (float, bits) {
                (true, 32) => f32::from_bits(u32::from_le_bytes([v[0], v[1], v[2], v[3]])),
                (true, _) => f64::from_le_bytes(v) as f32,
                // Signed 8-bit ('twos', 'lpcm'); unsigned 'raw ' is not read.
                (false, 8) => f32::from(v[0] as i8) / 128.0,
                (false, 16) => f32::from(i16::from_le_bytes([v[0], v[1]])) / 32_768.0,
                (false, 24) => {
                    let x = i32::from_le_bytes([0, v[0], v[1], v[2]]) >> 8;
                    x as f32 / 8_388_608.0
                }
                (false, _) => i32::from_le_bytes([v[0], v[1], v[2], v[3]]) as f32 / 2_147_483_648.0,
            }
        })
        .map(|x| {
            if x.is_finite() {
                x.clamp(-1.0, 1.0)
            } else {
                0.0
            }
        })
        .collect()
}

/// Mixes interleaved audio to stereo: mono is duplicated; 5.1 (L R C LFE Ls Rs) is folded
/// down with the ITU −3 dB coefficients; other layouts keep their first two channels.
fn to_stereo(pcm: &[f32], channels: usize) -> Vec<f32> {
    const M3DB: f32 = core::f32::consts::FRAC_1_SQRT_2;
    let mut out = Vec::with_capacity(pcm.len() / channels.max(1) * 2);
    for f in pcm.chunks_exact(channels) {
        let (l, r) = match channels {
            1 => (f[0], f[0]),
            6 => {
                let norm = 1.0 / (1.0 + 2.0 * M3DB);
                (
                    (f[0] + M3DB * f[2] + M3DB * f[4]) * norm,
                    (f[1] + M3DB * f[2] + M3DB * f[5]) * norm,
                )
            }
            _ => (f[0], f[1]),
        };
        out.push(l);
        out.push(r);
    }
    out
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Zero crossings of the windowed sinc on each side, at the lower of the two rates.
const HALF_TAPS: usize = 16;
/// Phase tables larger than this are not stored; their weights are computed per sample.
const MAX_TABLE_PHASES: u64 = 2_048;

/// Band-limited resampling of interleaved stereo to 48 kHz: a Blackman-windowed sinc with
/// 16 zero crossings per side, cut off just below the lower Nyquist frequency, evaluated at
/// exact rational positions (out/in reduced to L/M). Weights come from `libm` and are
/// normalised per phase so constant signals pass unchanged.
fn resample_to_48k(stereo: &[f32], rate: u32) -> Vec<f32> {
    let target = u64::from(OPUS_TIMESCALE);
    let rate = u64::from(rate);
    if rate == target || stereo.is_empty() || rate == 0 {
        return stereo.to_vec();
    }
    let g = gcd(target, rate);
    let (l, m) = (target / g, rate / g);
    let input = stereo.len() / 2;
    let out_len = (input as u64 * l).div_ceil(m) as usize;
    // Relative cutoff in input samples: below the output Nyquist when downsampling.
    let cutoff = if l < m { l as f64 / m as f64 } else { 1.0 } * 0.96;
    let support = HALF_TAPS as f64 / cutoff;
    let taps = 2 * libm::ceil(support) as usize + 1;
    let weights_for = |phase: u64| -> (i64, Vec<f64>) {
        // Output position in input samples: k + phase/L; taps start at k − ⌈support⌉.
        let frac = phase as f64 / l as f64;
        let first = -(libm::ceil(support) as i64);
        let mut w: Vec<f64> = (0..taps)
            .map(|t| {
                let x = (first + t as i64) as f64 - frac;
                if x.abs() >= support {
                    return 0.0;
                }
                let arg = core::f64::consts::PI * x * cutoff;
                let sinc = if x == 0.0 { 1.0 } else { libm::sin(arg) / arg };
                let u = x / support;
                let window = 0.42
                    + 0.5 * libm::cos(core::f64::consts::PI * u)
                    + 0.08 * libm::cos(2.0 * core::f64::consts::PI * u);
                sinc * window
            })
            .collect();
        let sum: f64 = w.iter().sum();
        if sum != 0.0 {
            for v in &mut w {
                *v /= sum;
            }
        }
        (first, w)
    };
    let table: Vec<(i64, Vec<f64>)> = if l <= MAX_TABLE_PHASES {
        (0..l).map(weights_for).collect()
    } else {
        Vec::new()
    };
    let mut out = Vec::with_capacity(out_len * 2);
    for n in 0..out_len as u64 {
        let pos = n * m;
        let (k, phase) = ((pos / l) as i64, pos % l);
        let computed;
        let (first, w) = if table.is_empty() {
            computed = weights_for(phase);
            (computed.0, &computed.1)
        } else {
            let entry = &table[phase as usize];
            (entry.0, &entry.1)
        };
        let (mut left, mut right) = (0.0f64, 0.0f64);
        for (t, &wt) in w.iter().enumerate() {
            let j = k + first + t as i64;
            if j < 0 || j as usize >= input {
                continue;
            }
            let j = j as usize;
            left += wt * f64::from(stereo[2 * j]);
            right += wt * f64::from(stereo[2 * j + 1]);
        }
        out.push(left as f32);
        out.push(right as f32);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resampling_keeps_a_tone_and_its_level() {
        // 1 kHz at 44.1 kHz, one second, stereo.
        let rate = 44_100u32;
        let input: Vec<f32> = (0..rate as usize)
            .flat_map(|i| {
                let v = libm::sin(2.0 * core::f64::consts::PI * 1000.0 * i as f64 / f64::from(rate))
                    as f32
                    * 0.5;
                [v, -v]
            })
            .collect();
        let out = resample_to_48k(&input, rate);
        assert_eq!(out.len(), 2 * 48_000);
        // Away from the edges the output is the same tone at 48 kHz.
        let mut worst = 0.0f64;
        for n in 1_000..47_000 {
            let want = libm::sin(2.0 * core::f64::consts::PI * 1000.0 * n as f64 / 48_000.0) * 0.5;
            worst = worst.max((f64::from(out[2 * n]) - want).abs());
            assert_eq!(out[2 * n], -out[2 * n + 1]);
        }
        assert!(worst < 2e-3, "max error {worst}");
        let dc = resample_to_48k(&vec![0.25f32; 2 * 8_000], 8_000);
        assert!(dc[200..dc.len() - 200]
            .iter()
            .all(|&v| (v - 0.25).abs() < 1e-5));
    }

    #[test]
    fn pcm_layouts() {
        assert_eq!(pcm_to_f32(&[0x00, 0x40], 16, false, true), vec![0.5]);
        assert_eq!(pcm_to_f32(&[0x40, 0x00], 16, false, false), vec![0.5]);
        assert_eq!(
            pcm_to_f32(&[0xc0, 0x00, 0x00], 24, false, false),
            vec![-0.5]
        );
        assert_eq!(
            pcm_to_f32(&0.25f32.to_be_bytes(), 32, true, false),
            vec![0.25]
        );
        assert_eq!(to_stereo(&[0.1, 0.2], 1), vec![0.1, 0.1, 0.2, 0.2]);
    }
}
