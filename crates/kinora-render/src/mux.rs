//! A fast-start MP4 writer for exactly what the engine produces: one H.264 track of
//! constant 24 fps with I and P pictures, and optionally one audio track: Opus (the
//! soundtrack, or transcoded or copied source audio) or AAC (copied from a reference video).
//! Written in-house so every byte is ours to fix: no times, no host data, no library defaults
//! that may change.

use crate::plan::{FPS, TICKS_PER_FRAME, VIDEO_TIMESCALE};

/// Opus always runs at 48 kHz inside MP4.
pub const OPUS_TIMESCALE: u32 = 48_000;
/// Samples per 20 ms Opus packet at 48 kHz.
pub const OPUS_PACKET_SAMPLES: u32 = 960;
/// The Opus encoder's lookahead, hidden by the decoder.
pub const OPUS_PRE_SKIP: u16 = 312;

/// The video stream: parameter sets and one access unit per frame, each a list of NAL
/// units without start codes.
#[derive(Clone, Debug)]
pub struct VideoTrack<'a> {
    pub width: u32,
    pub height: u32,
    pub sps: &'a [u8],
    pub pps: &'a [u8],
    pub samples: Vec<VideoSample<'a>>,
}

#[derive(Clone, Debug)]
pub struct VideoSample<'a> {
    pub nals: &'a [Vec<u8>],
    pub sync: bool,
}

/// The one audio track a file may carry, owned so kinds can build, cut and concatenate it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AudioTrack {
    /// Opus at 48 kHz (the only rate Opus has inside MP4). Packets may have any legal
    /// duration; the writer reads each one's length from its TOC byte (RFC 6716 §3.1).
    Opus {
        packets: Vec<Vec<u8>>,
        /// One or two.
        channels: u8,
        /// Samples at 48 kHz the decoder drops from the start (`dOps` PreSkip).
        pre_skip: u16,
    },
    /// Raw AAC access units (no ADTS headers), as copied from a source track.
    Aac {
        /// The AudioSpecificConfig (ISO 14496-3 §1.6.2.1), written into `esds`.
        config: Vec<u8>,
        packets: Vec<Vec<u8>>,
        /// The media timescale, normally the sampling rate.
        sample_rate: u32,
        channels: u8,
        /// Duration of every access unit in `sample_rate` ticks (1024 for AAC-LC).
        frame_samples: u32,
        /// Encoder priming at the start, in ticks: hidden with an edit list so the first
        /// audible sample plays at time zero, as in the source.
        priming: u32,
    },
}

impl AudioTrack {
    /// Samples per second of the track's timeline.
    pub fn timescale(&self) -> u32 {
        match self {
            Self::Opus { .. } => OPUS_TIMESCALE,
            Self::Aac { sample_rate, .. } => *sample_rate,
        }
    }

    pub fn packet_count(&self) -> usize {
        match self {
            Self::Opus { packets, .. } | Self::Aac { packets, .. } => packets.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.packet_count() == 0
    }

    /// Media duration of each packet in timescale ticks, or why a packet has none.
    pub fn packet_durations(&self) -> Result<Vec<u32>, MuxError> {
        match self {
            Self::Opus { packets, .. } => packets.iter().map(|p| opus_packet_samples(p)).collect(),
            Self::Aac {
                packets,
                frame_samples,
                ..
            } => Ok(vec![*frame_samples; packets.len()]),
        }
    }

    /// Ticks hidden at the start: the AAC priming, or nothing for Opus, whose pre-skip is
    /// applied by the decoder from `dOps` and counts as part of the timeline.
    fn hidden_ticks(&self) -> u64 {
        match self {
            Self::Opus { .. } => 0,
            Self::Aac { priming, .. } => u64::from(*priming),
        }
    }

    /// Presentation duration in timescale ticks: the media duration less the hidden start.
    pub fn duration_ticks(&self) -> Result<u64, MuxError> {
        let media: u64 = self.packet_durations()?.iter().map(|&d| u64::from(d)).sum();
        Ok(media.saturating_sub(self.hidden_ticks()))
    }

    /// Drops whole packets from the end until the track ends at or before the end of
    /// `video_frames` frames at 24 fps: the cut falls after the last packet that ends in
    /// time. Audio shorter than the video is left alone (it is never padded or looped).
    pub fn cut_to_frames(&mut self, video_frames: u32) -> Result<(), MuxError> {
        let durations = self.packet_durations()?;
        let timescale = u128::from(self.timescale());
        let hidden = u128::from(self.hidden_ticks());
        // end(k) ≤ frames / 24  ⇔  24 · end(k) ≤ frames · timescale, in exact integers.
        let limit = u128::from(video_frames) * timescale;
        let mut end = 0u128;
        let mut keep = 0;
        for d in durations {
            end += u128::from(d);
            if end.saturating_sub(hidden) * u128::from(FPS) > limit {
                break;
            }
            keep += 1;
        }
        match self {
            Self::Opus { packets, .. } | Self::Aac { packets, .. } => packets.truncate(keep),
        }
        Ok(())
    }
}

impl TryFrom<crate::audio::OpusTrack> for AudioTrack {
    type Error = MuxError;

    fn try_from(t: crate::audio::OpusTrack) -> Result<Self, MuxError> {
        if t.sample_rate != OPUS_TIMESCALE {
            return Err(MuxError::Invalid("Opus tracks must run at 48 kHz"));
        }
        Ok(Self::Opus {
            packets: t.packets,
            channels: t.channels,
            pre_skip: t.pre_skip,
        })
    }
}

/// Samples at 48 kHz in one Opus packet, from its TOC byte and frame count (RFC 6716 §3.1).
pub fn opus_packet_samples(packet: &[u8]) -> Result<u32, MuxError> {
    let Some(&toc) = packet.first() else {
        return Err(MuxError::Invalid("empty Opus packet"));
    };
    let config = toc >> 3;
    let frame = match config {
        // SILK-only: 10, 20, 40, 60 ms.
        0..=11 => [480, 960, 1920, 2880][usize::from(config & 3)],
        // Hybrid: 10, 20 ms.
        12..=15 => [480, 960][usize::from(config & 1)],
        // CELT-only: 2.5, 5, 10, 20 ms.
        _ => [120, 240, 480, 960][usize::from(config & 3)],
    };
    let count = match toc & 3 {
        0 => 1,
        1 | 2 => 2,
        _ => match packet.get(1) {
            Some(&b) => u32::from(b & 0x3f),
            None => {
                return Err(MuxError::Invalid(
                    "Opus packet with code 3 lacks its frame count",
                ))
            }
        },
    };
    let samples = frame * count;
    // RFC 6716: at most 120 ms per packet, and at least one frame.
    if samples == 0 || samples > 5_760 {
        return Err(MuxError::Invalid("Opus packet outside 2.5-120 ms"));
    }
    Ok(samples)
}

#[derive(Debug, thiserror::Error)]
pub enum MuxError {
    #[error("the MP4 would exceed 4 GiB")]
    TooLarge,
    #[error("invalid stream for the MP4 writer: {0}")]
    Invalid(&'static str),
}

/// Writes the complete file: `ftyp`, `moov`, `mdat`, in that order.
pub fn write_mp4(
    video: &VideoTrack<'_>,
    audio: Option<&AudioTrack>,
    title: &str,
) -> Result<Vec<u8>, MuxError> {
    if video.samples.is_empty() {
        return Err(MuxError::Invalid("no video samples"));
    }
    if video.sps.len() < 4 || video.pps.is_empty() {
        return Err(MuxError::Invalid("missing parameter sets"));
    }
    if video.samples.first().is_some_and(|s| !s.sync) {
        return Err(MuxError::Invalid("the first sample must be a sync sample"));
    }
    let audio = match audio {
        Some(a) => Some(AudioLayout::new(a)?),
        None => None,
    };
    let video_sizes: Vec<u32> = video
        .samples
        .iter()
        .map(|s| s.nals.iter().map(|n| 4 + n.len() as u64).sum::<u64>())
        .map(|n| u32::try_from(n).map_err(|_| MuxError::TooLarge))
        .collect::<Result<_, _>>()?;
    let video_bytes: u64 = video_sizes.iter().map(|&s| u64::from(s)).sum();
    let audio_bytes: u64 = audio.as_ref().map_or(0, |a| a.bytes);

    let ftyp = ftyp();
    // The index has a fixed size whatever the offsets are, so lay it out once to learn where
    // the media data starts, then write it with the real offsets.
    let probe = moov(video, &video_sizes, audio.as_ref(), title, 0, 0)?;
    let data_start = (ftyp.len() + probe.len() + 8) as u64;
    let total = data_start + video_bytes + audio_bytes;
    if total > u64::from(u32::MAX) {
        return Err(MuxError::TooLarge);
    }
    let video_offset = data_start as u32;
    let audio_offset = (data_start + video_bytes) as u32;
    let moov = moov(
        video,
        &video_sizes,
        audio.as_ref(),
        title,
        video_offset,
        audio_offset,
    )?;

    let mut out = Vec::with_capacity(total as usize);
    out.extend_from_slice(&ftyp);
    out.extend_from_slice(&moov);
    out.extend_from_slice(&((8 + video_bytes + audio_bytes) as u32).to_be_bytes());
    out.extend_from_slice(b"mdat");
    for sample in &video.samples {
        for nal in sample.nals {
            out.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            out.extend_from_slice(nal);
        }
    }
    if let Some(a) = &audio {
        let packets = match a.track {
            AudioTrack::Opus { packets, .. } | AudioTrack::Aac { packets, .. } => packets,
        };
        for p in packets {
            out.extend_from_slice(p);
        }
    }
    Ok(out)
}

/// An audio track checked and measured for the index.
struct AudioLayout<'a> {
    track: &'a AudioTrack,
    sizes: Vec<u32>,
    /// (count, duration) runs for `stts`.
    runs: Vec<(u32, u32)>,
    bytes: u64,
    /// Media duration in the track's timescale.
    media_duration: u32,
    /// Presentation duration in the movie (video) timescale.
    movie_duration: u32,
}

impl<'a> AudioLayout<'a> {
    fn new(track: &'a AudioTrack) -> Result<Self, MuxError> {
        let (packets, channels) = match track {
            AudioTrack::Opus {
                packets, channels, ..
            } => (packets, *channels),
            AudioTrack::Aac {
                packets,
                channels,
                config,
                sample_rate,
                frame_samples,
                ..
            } => {
                if config.len() < 2 || config.len() > 64 {
                    return Err(MuxError::Invalid("AAC track needs its AudioSpecificConfig"));
                }
                if *sample_rate == 0 || *frame_samples == 0 {
                    return Err(MuxError::Invalid(
                        "AAC track needs a timescale and frame length",
                    ));
                }
                (packets, *channels)
            }
        };
        if packets.is_empty() {
            return Err(MuxError::Invalid("audio track without packets"));
        }
        let max_channels = if matches!(track, AudioTrack::Opus { .. }) {
            2
        } else {
            8
        };
        if channels == 0 || channels > max_channels {
            return Err(MuxError::Invalid(
                "audio track with an unsupported channel count",
            ));
        }
        let sizes: Vec<u32> = packets
            .iter()
            .map(|p| u32::try_from(p.len()).map_err(|_| MuxError::TooLarge))
            .collect::<Result<_, _>>()?;
        let bytes = sizes.iter().map(|&s| u64::from(s)).sum();
        let mut runs: Vec<(u32, u32)> = Vec::new();
        let mut media: u64 = 0;
        for d in track.packet_durations()? {
            media += u64::from(d);
            match runs.last_mut() {
                Some((count, last)) if *last == d => *count += 1,
                _ => runs.push((1, d)),
            }
        }
        let media_duration = u32::try_from(media).map_err(|_| MuxError::TooLarge)?;
        let shown = media.saturating_sub(track.hidden_ticks());
        let movie_duration =
            u32::try_from(shown * u64::from(VIDEO_TIMESCALE) / u64::from(track.timescale()))
                .map_err(|_| MuxError::TooLarge)?;
        Ok(Self {
            track,
            sizes,
            runs,
            bytes,
            media_duration,
            movie_duration,
        })
    }
}

/// Builds a box: size and type, then whatever `body` writes.
fn bx(kind: &[u8; 4], body: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut b = vec![0, 0, 0, 0];
    b.extend_from_slice(kind);
    body(&mut b);
    let size = b.len() as u32;
    b[..4].copy_from_slice(&size.to_be_bytes());
    b
}

/// A full box: a box whose body starts with version and flags.
fn full(kind: &[u8; 4], version: u8, flags: u32, body: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    bx(kind, |b| {
        b.push(version);
        b.extend_from_slice(&flags.to_be_bytes()[1..]);
        body(b);
    })
}

fn u16be(b: &mut Vec<u8>, v: u16) {
    b.extend_from_slice(&v.to_be_bytes());
}

fn u32be(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_be_bytes());
}

fn ftyp() -> Vec<u8> {
    bx(b"ftyp", |b| {
        b.extend_from_slice(b"isom");
        u32be(b, 0x200);
        for brand in [b"isom", b"iso2", b"avc1", b"mp41"] {
            b.extend_from_slice(brand);
        }
    })
}

/// The identity transform of `mvhd` and `tkhd`, in 16.16 and 2.30 fixed point.
fn unity_matrix(b: &mut Vec<u8>) {
    for v in [0x0001_0000u32, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
        u32be(b, v);
    }
}

fn moov(
    video: &VideoTrack<'_>,
    video_sizes: &[u32],
    audio: Option<&AudioLayout<'_>>,
    title: &str,
    video_offset: u32,
    audio_offset: u32,
) -> Result<Vec<u8>, MuxError> {
    let frames = u32::try_from(video.samples.len()).map_err(|_| MuxError::TooLarge)?;
    // The movie timescale equals the video's, so the movie lasts exactly N/24 s.
    let video_duration = frames
        .checked_mul(TICKS_PER_FRAME)
        .ok_or(MuxError::TooLarge)?;
    let movie_duration = video_duration.max(audio.map_or(0, |a| a.movie_duration));
    let next_track = if audio.is_some() { 3 } else { 2 };

    let video_trak = video_trak(video, video_sizes, video_duration, video_offset);
    let audio_trak = audio.map(|a| audio_trak(a, audio_offset));
    Ok(bx(b"moov", |b| {
        b.extend(full(b"mvhd", 0, 0, |b| {
            u32be(b, 0); // creation time: always zero
            u32be(b, 0); // modification time: always zero
            u32be(b, VIDEO_TIMESCALE);
            u32be(b, movie_duration);
            u32be(b, 0x0001_0000); // rate 1.0
            u16be(b, 0x0100); // volume 1.0
            b.extend_from_slice(&[0; 10]);
            unity_matrix(b);
            b.extend_from_slice(&[0; 24]);
            u32be(b, next_track);
        }));
        b.extend(video_trak);
        if let Some(t) = audio_trak {
            b.extend(t);
        }
        b.extend(udta(title));
    }))
}

fn tkhd(track_id: u32, duration: u32, volume: u16, width: u32, height: u32) -> Vec<u8> {
    // Flags: enabled and in movie.
    full(b"tkhd", 0, 3, |b| {
        u32be(b, 0);
        u32be(b, 0);
        u32be(b, track_id);
        u32be(b, 0);
        u32be(b, duration);
        b.extend_from_slice(&[0; 8]);
        u16be(b, 0); // layer
        u16be(b, 0); // alternate group
        u16be(b, volume);
        u16be(b, 0);
        unity_matrix(b);
        u32be(b, width << 16);
        u32be(b, height << 16);
    })
}

fn mdhd(timescale: u32, duration: u32) -> Vec<u8> {
    full(b"mdhd", 0, 0, |b| {
        u32be(b, 0);
        u32be(b, 0);
        u32be(b, timescale);
        u32be(b, duration);
        u16be(b, 0x55c4); // "und"
        u16be(b, 0);
    })
}

fn hdlr(kind: &[u8; 4], name: &str) -> Vec<u8> {
    full(b"hdlr", 0, 0, |b| {
        u32be(b, 0);
        b.extend_from_slice(kind);
        b.extend_from_slice(&[0; 12]);
        b.extend_from_slice(name.as_bytes());
        b.push(0);
    })
}

fn dinf() -> Vec<u8> {
    bx(b"dinf", |b| {
        b.extend(full(b"dref", 0, 0, |b| {
            u32be(b, 1);
            // Flag 1: the media is in this file.
            b.extend(full(b"url ", 0, 1, |_| {}));
        }));
    })
}

fn stsz(sizes: &[u32]) -> Vec<u8> {
    full(b"stsz", 0, 0, |b| {
        u32be(b, 0);
        u32be(b, sizes.len() as u32);
        for &s in sizes {
            u32be(b, s);
        }
    })
}

/// All samples of a track in one chunk at `offset`.
fn single_chunk(b: &mut Vec<u8>, samples: u32, offset: u32) {
    b.extend(full(b"stsc", 0, 0, |b| {
        u32be(b, 1);
        u32be(b, 1);
        u32be(b, samples);
        u32be(b, 1);
    }));
    b.extend(full(b"stco", 0, 0, |b| {
        u32be(b, 1);
        u32be(b, offset);
    }));
}

fn video_trak(video: &VideoTrack<'_>, sizes: &[u32], duration: u32, offset: u32) -> Vec<u8> {
    let frames = sizes.len() as u32;
    bx(b"trak", |b| {
        b.extend(tkhd(1, duration, 0, video.width, video.height));
        b.extend(bx(b"mdia", |b| {
            b.extend(mdhd(VIDEO_TIMESCALE, duration));
            b.extend(hdlr(b"vide", "VideoHandler"));
            b.extend(bx(b"minf", |b| {
                b.extend(full(b"vmhd", 0, 1, |b| b.extend_from_slice(&[0; 8])));
                b.extend(dinf());
                b.extend(bx(b"stbl", |b| {
                    b.extend(full(b"stsd", 0, 0, |b| {
                        u32be(b, 1);
                        b.extend(avc1(video));
                    }));
                    b.extend(full(b"stts", 0, 0, |b| {
                        u32be(b, 1);
                        u32be(b, frames);
                        u32be(b, TICKS_PER_FRAME);
                    }));
                    b.extend(full(b"stss", 0, 0, |b| {
                        let sync: Vec<u32> = video
                            .samples
                            .iter()
                            .enumerate()
                            .filter(|(_, s)| s.sync)
                            .map(|(i, _)| i as u32 + 1)
                            .collect();
                        u32be(b, sync.len() as u32);
                        for s in sync {
                            u32be(b, s);
                        }
                    }));
                    single_chunk(b, frames, offset);
                    b.extend(stsz(sizes));
                }));
            }));
        }));
    })
}

fn avc1(video: &VideoTrack<'_>) -> Vec<u8> {
    let sps = video.sps;
    bx(b"avc1", |b| {
        b.extend_from_slice(&[0; 6]);
        u16be(b, 1); // data reference index
        b.extend_from_slice(&[0; 16]);
        u16be(b, video.width as u16);
        u16be(b, video.height as u16);
        u32be(b, 0x0048_0000); // 72 dpi
        u32be(b, 0x0048_0000);
        u32be(b, 0);
        u16be(b, 1); // one frame per sample
        b.extend_from_slice(&[0; 32]); // no compressor name
        u16be(b, 0x0018);
        u16be(b, 0xffff);
        b.extend(bx(b"avcC", |b| {
            b.push(1);
            b.extend_from_slice(&sps[1..4]); // profile, constraints, level
            b.push(0xff); // 4-byte NAL lengths
            b.push(0xe1); // one SPS
            u16be(b, sps.len() as u16);
            b.extend_from_slice(sps);
            b.push(1);
            u16be(b, video.pps.len() as u16);
            b.extend_from_slice(video.pps);
            if matches!(sps[1], 100 | 110 | 122 | 144) {
                // The High profiles' extension: 4:2:0, 8-bit, no SPS extensions.
                b.extend_from_slice(&[0xfc | 1, 0xf8, 0xf8, 0]);
            }
        }));
        // Colour signalled in the container too: BT.709, limited range.
        b.extend(bx(b"colr", |b| {
            b.extend_from_slice(b"nclx");
            u16be(b, 1);
            u16be(b, 1);
            u16be(b, 1);
            b.push(0);
        }));
        b.extend(bx(b"pasp", |b| {
            u32be(b, 1);
            u32be(b, 1);
        }));
    })
}

fn audio_trak(a: &AudioLayout<'_>, offset: u32) -> Vec<u8> {
    let packets = a.sizes.len() as u32;
    let hidden = a.track.hidden_ticks();
    bx(b"trak", |b| {
        b.extend(tkhd(2, a.movie_duration, 0x0100, 0, 0));
        if hidden > 0 {
            // One edit: skip the priming, then play the rest at normal rate.
            b.extend(bx(b"edts", |b| {
                b.extend(full(b"elst", 0, 0, |b| {
                    u32be(b, 1);
                    u32be(b, a.movie_duration);
                    u32be(b, hidden as u32);
                    u32be(b, 0x0001_0000);
                }));
            }));
        }
        b.extend(bx(b"mdia", |b| {
            b.extend(mdhd(a.track.timescale(), a.media_duration));
            b.extend(hdlr(b"soun", "SoundHandler"));
            b.extend(bx(b"minf", |b| {
                b.extend(full(b"smhd", 0, 0, |b| b.extend_from_slice(&[0; 4])));
                b.extend(dinf());
                b.extend(bx(b"stbl", |b| {
                    b.extend(full(b"stsd", 0, 0, |b| {
                        u32be(b, 1);
                        b.extend(audio_sample_entry(a));
                    }));
                    b.extend(full(b"stts", 0, 0, |b| {
                        u32be(b, a.runs.len() as u32);
                        for &(count, duration) in &a.runs {
                            u32be(b, count);
                            u32be(b, duration);
                        }
                    }));
                    // No stss: every Opus packet and AAC access unit is a sync sample.
                    single_chunk(b, packets, offset);
                    b.extend(stsz(&a.sizes));
                }));
            }));
        }));
    })
}

/// The fields every audio sample entry starts with (ISO 14496-12 AudioSampleEntry).
fn audio_entry_fields(b: &mut Vec<u8>, channels: u8, rate: u32) {
    b.extend_from_slice(&[0; 6]);
    u16be(b, 1); // data reference index
    b.extend_from_slice(&[0; 8]);
    u16be(b, u16::from(channels));
    u16be(b, 16);
    u16be(b, 0);
    u16be(b, 0);
    // 16.16 fixed point; rates above 65535 Hz do not fit and are written as zero.
    u32be(b, if rate <= 0xffff { rate << 16 } else { 0 });
}

fn audio_sample_entry(a: &AudioLayout<'_>) -> Vec<u8> {
    match a.track {
        AudioTrack::Opus {
            channels, pre_skip, ..
        } => bx(b"Opus", |b| {
            audio_entry_fields(b, *channels, OPUS_TIMESCALE);
            b.extend(bx(b"dOps", |b| {
                b.push(0);
                b.push(*channels);
                u16be(b, *pre_skip);
                u32be(b, OPUS_TIMESCALE);
                u16be(b, 0); // output gain
                b.push(0); // mapping family 0: mono or stereo
            }));
        }),
        AudioTrack::Aac {
            config,
            channels,
            sample_rate,
            ..
        } => bx(b"mp4a", |b| {
            audio_entry_fields(b, *channels, *sample_rate);
            b.extend(esds(a, config));
        }),
    }
}

/// An MPEG-4 descriptor: tag, then its length in the four-byte form every reader accepts.
fn descriptor(tag: u8, body: &[u8]) -> Vec<u8> {
    let n = body.len() as u32;
    let mut d = vec![
        tag,
        0x80 | ((n >> 21) & 0x7f) as u8,
        0x80 | ((n >> 14) & 0x7f) as u8,
        0x80 | ((n >> 7) & 0x7f) as u8,
        (n & 0x7f) as u8,
    ];
    d.extend_from_slice(body);
    d
}

/// The elementary stream descriptor of an AAC track (ISO 14496-1 §7.2.6.5, 14496-14 §5.6).
fn esds(a: &AudioLayout<'_>, config: &[u8]) -> Vec<u8> {
    let largest = a.sizes.iter().copied().max().unwrap_or(0);
    let seconds_x_rate = u64::from(a.media_duration.max(1));
    let avg = a.bytes * 8 * u64::from(a.track.timescale()) / seconds_x_rate;
    let avg = u32::try_from(avg).unwrap_or(u32::MAX);
    let mut dcd = vec![
        0x40, // object type: MPEG-4 audio
        0x15, // stream type 5 (audio) << 2 | reserved bit
    ];
    // bufferSizeDB is 24 bits.
    dcd.extend_from_slice(&largest.min(0x00ff_ffff).to_be_bytes()[1..]);
    let peak = largest
        .saturating_mul(8)
        .saturating_mul(a.track.timescale())
        / match a.track {
            AudioTrack::Aac { frame_samples, .. } => (*frame_samples).max(1),
            AudioTrack::Opus { .. } => 1,
        };
    dcd.extend_from_slice(&peak.max(avg).to_be_bytes());
    dcd.extend_from_slice(&avg.to_be_bytes());
    dcd.extend(descriptor(0x05, config));
    let mut es = vec![0, 0, 0]; // ES_ID 0, no flags
    es.extend(descriptor(0x04, &dcd));
    es.extend(descriptor(0x06, &[0x02])); // SLConfig: predefined for MP4
    full(b"esds", 0, 0, |b| b.extend(descriptor(0x03, &es)))
}

/// The one title tag, as an iTunes-style `©nam` item that players and ffprobe read.
fn udta(title: &str) -> Vec<u8> {
    bx(b"udta", |b| {
        b.extend(full(b"meta", 0, 0, |b| {
            b.extend(full(b"hdlr", 0, 0, |b| {
                u32be(b, 0);
                b.extend_from_slice(b"mdir");
                b.extend_from_slice(b"appl");
                b.extend_from_slice(&[0; 8]);
                b.push(0);
            }));
            b.extend(bx(b"ilst", |b| {
                b.extend(bx(b"\xa9nam", |b| {
                    b.extend(bx(b"data", |b| {
                        u32be(b, 1); // UTF-8 text
                        u32be(b, 0); // no locale
                        b.extend_from_slice(title.as_bytes());
                    }));
                }));
            }));
        }));
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn top_level(file: &[u8]) -> Vec<[u8; 4]> {
        let mut at = 0;
        let mut kinds = Vec::new();
        while at + 8 <= file.len() {
            let size =
                u32::from_be_bytes([file[at], file[at + 1], file[at + 2], file[at + 3]]) as usize;
            kinds.push([file[at + 4], file[at + 5], file[at + 6], file[at + 7]]);
            assert!(size >= 8);
            at += size;
        }
        assert_eq!(at, file.len());
        kinds
    }

    #[test]
    fn writes_fast_start_with_and_without_audio() {
        let sps = vec![0x67, 100, 0x0c, 31, 0xaa];
        let pps = vec![0x68, 0xbb];
        let nals = vec![vec![0x65, 1, 2, 3]];
        let p = vec![vec![0x41, 9]];
        let video = VideoTrack {
            width: 64,
            height: 32,
            sps: &sps,
            pps: &pps,
            samples: vec![
                VideoSample {
                    nals: &nals,
                    sync: true,
                },
                VideoSample {
                    nals: &p,
                    sync: false,
                },
            ],
        };
        let file = write_mp4(&video, None, "t").unwrap();
        assert_eq!(top_level(&file), [*b"ftyp", *b"moov", *b"mdat"]);
        assert!(file.ends_with(&[0, 0, 0, 4, 0x65, 1, 2, 3, 0, 0, 0, 2, 0x41, 9]));
        // TOC 0xfc: CELT 20 ms, one frame.
        let packets = vec![[0xfc].into_iter().chain([1u8; 9]).collect::<Vec<u8>>(); 5];
        let opus = AudioTrack::Opus {
            packets,
            channels: 2,
            pre_skip: OPUS_PRE_SKIP,
        };
        let with_audio = write_mp4(&video, Some(&opus), "t").unwrap();
        assert_eq!(top_level(&with_audio), [*b"ftyp", *b"moov", *b"mdat"]);
        assert!(with_audio.windows(4).any(|w| w == b"dOps"));
        assert!(with_audio.ends_with(&[0xfc, 1, 1, 1, 1, 1, 1, 1, 1, 1]));
    }

    #[test]
    fn opus_durations_come_from_the_toc() {
        // CELT 20 ms, SILK 60 ms, hybrid 10 ms, two CELT 2.5 ms frames, code 3 with 6 frames.
        assert_eq!(opus_packet_samples(&[0xf8]).unwrap(), 960);
        assert_eq!(opus_packet_samples(&[0x18]).unwrap(), 2880);
        assert_eq!(opus_packet_samples(&[0x60]).unwrap(), 480);
        assert_eq!(opus_packet_samples(&[0x81]).unwrap(), 240);
        assert_eq!(opus_packet_samples(&[0xfb, 0x06]).unwrap(), 5760);
        assert!(opus_packet_samples(&[0xfb, 0x07]).is_err(), "over 120 ms");
        assert!(opus_packet_samples(&[0xfb]).is_err());
        assert!(opus_packet_samples(&[]).is_err());
    }

    #[test]
    fn writes_aac_with_priming_and_cuts_at_access_units() {
        let sps = vec![0x67, 100, 0x0c, 31, 0xaa];
        let pps = vec![0x68, 0xbb];
        let nals = vec![vec![0x65, 1, 2, 3]];
        let video = VideoTrack {
            width: 64,
            height: 32,
            sps: &sps,
            pps: &pps,
            samples: vec![
                VideoSample {
                    nals: &nals,
                    sync: true,
                };
                24
            ],
        };
        let mut aac = AudioTrack::Aac {
            config: vec![0x12, 0x10],
            packets: vec![vec![0x21; 7]; 50],
            sample_rate: 44_100,
            channels: 2,
            frame_samples: 1024,
            priming: 1024,
        };
        // One second of video: (k − 1)·1024 ≤ 44 100 keeps k ≤ 44.
        aac.cut_to_frames(24).unwrap();
        assert_eq!(aac.packet_count(), 44);
        assert_eq!(aac.duration_ticks().unwrap(), 43 * 1024);
        let file = write_mp4(&video, Some(&aac), "t").unwrap();
        let has = |k: &[u8]| file.windows(k.len()).any(|w| w == k);
        assert!(has(b"mp4a") && has(b"esds") && has(b"elst"));
        // stts: one run of 44 units of 1024; elst: skip 1024 ticks.
        assert!(has(&[0, 0, 0, 1, 0, 0, 0, 44, 0, 0, 4, 0]));
        assert!(has(&[0, 0, 4, 0, 0, 1, 0, 0]));
        // The AudioSpecificConfig sits in a DecoderSpecificInfo descriptor.
        assert!(has(&[0x05, 0x80, 0x80, 0x80, 0x02, 0x12, 0x10]));

        // Opus packets of mixed length get one stts run each.
        let mut packets = vec![vec![0xf8, 1]; 3];
        packets.push(vec![0x18, 2]);
        let opus = AudioTrack::Opus {
            packets,
            channels: 2,
            pre_skip: OPUS_PRE_SKIP,
        };
        assert_eq!(opus.duration_ticks().unwrap(), 3 * 960 + 2880);
        let file = write_mp4(&video, Some(&opus), "t").unwrap();
        let has = |k: &[u8]| file.windows(k.len()).any(|w| w == k);
        assert!(has(&[
            0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 3, 0xc0, 0, 0, 0, 1, 0, 0, 0x0b, 0x40
        ]));
    }

    #[test]
    fn rejects_streams_it_cannot_describe() {
        let sps = vec![0x67, 100, 0x0c, 31];
        let pps = vec![0x68];
        let nals = vec![vec![0x41, 1]];
        let video = VideoTrack {
            width: 16,
            height: 16,
            sps: &sps,
            pps: &pps,
            samples: vec![VideoSample {
                nals: &nals,
                sync: false,
            }],
        };
        assert!(write_mp4(&video, None, "t").is_err());
        let empty = VideoTrack {
            samples: vec![],
            ..video
        };
        assert!(write_mp4(&empty, None, "t").is_err());
    }
}
