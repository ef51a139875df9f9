//! A fast-start MP4 writer for exactly what the engine produces: one H.264 track of
//! constant 24 fps with I and P pictures, and optionally one Opus track. Written in-house so
//! every byte is ours to fix: no times, no host data, no library defaults that may change.

use crate::plan::{TICKS_PER_FRAME, VIDEO_TIMESCALE};

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

/// An Opus stream: 20 ms packets at 48 kHz, stereo, with the given pre-skip.
#[derive(Clone, Debug)]
pub struct OpusTrack<'a> {
    pub packets: &'a [Vec<u8>],
    pub channels: u8,
    pub pre_skip: u16,
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
    audio: Option<&OpusTrack<'_>>,
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
    if audio.is_some_and(|a| a.packets.is_empty() || a.channels == 0 || a.channels > 2) {
        return Err(MuxError::Invalid(
            "Opus track needs packets and one or two channels",
        ));
    }
    let video_sizes: Vec<u32> = video
        .samples
        .iter()
        .map(|s| s.nals.iter().map(|n| 4 + n.len() as u64).sum::<u64>())
        .map(|n| u32::try_from(n).map_err(|_| MuxError::TooLarge))
        .collect::<Result<_, _>>()?;
    let audio_sizes: Vec<u32> = match audio {
        Some(a) => a
            .packets
            .iter()
            .map(|p| u32::try_from(p.len()).map_err(|_| MuxError::TooLarge))
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    let video_bytes: u64 = video_sizes.iter().map(|&s| u64::from(s)).sum();
    let audio_bytes: u64 = audio_sizes.iter().map(|&s| u64::from(s)).sum();

    let ftyp = ftyp();
    // The index has a fixed size whatever the offsets are, so lay it out once to learn where
    // the media data starts, then write it with the real offsets.
    let probe = moov(video, &video_sizes, audio, &audio_sizes, title, 0, 0)?;
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
        audio,
        &audio_sizes,
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
    if let Some(a) = audio {
        for p in a.packets {
            out.extend_from_slice(p);
        }
    }
    Ok(out)
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

#[allow(clippy::too_many_arguments)]
fn moov(
    video: &VideoTrack<'_>,
    video_sizes: &[u32],
    audio: Option<&OpusTrack<'_>>,
    audio_sizes: &[u32],
    title: &str,
    video_offset: u32,
    audio_offset: u32,
) -> Result<Vec<u8>, MuxError> {
    let frames = u32::try_from(video.samples.len()).map_err(|_| MuxError::TooLarge)?;
    // The movie timescale equals the video's, so the movie lasts exactly N/24 s.
    let video_duration = frames
        .checked_mul(TICKS_PER_FRAME)
        .ok_or(MuxError::TooLarge)?;
    let audio_media_duration = match audio {
        Some(a) => {
            let n = u32::try_from(a.packets.len()).map_err(|_| MuxError::TooLarge)?;
            Some(
                n.checked_mul(OPUS_PACKET_SAMPLES)
                    .ok_or(MuxError::TooLarge)?,
            )
        }
        None => None,
    };
    let audio_movie_duration = audio_media_duration
        .map(|d| (u64::from(d) * u64::from(VIDEO_TIMESCALE) / u64::from(OPUS_TIMESCALE)) as u32);
    let movie_duration = video_duration.max(audio_movie_duration.unwrap_or(0));
    let next_track = if audio.is_some() { 3 } else { 2 };

    let video_trak = video_trak(video, video_sizes, video_duration, video_offset);
    let audio_trak = match (audio, audio_media_duration, audio_movie_duration) {
        (Some(a), Some(media), Some(movie)) => {
            Some(opus_trak(a, audio_sizes, media, movie, audio_offset))
        }
        _ => None,
    };
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

fn opus_trak(
    a: &OpusTrack<'_>,
    sizes: &[u32],
    media_duration: u32,
    movie_duration: u32,
    offset: u32,
) -> Vec<u8> {
    let packets = sizes.len() as u32;
    bx(b"trak", |b| {
        b.extend(tkhd(2, movie_duration, 0x0100, 0, 0));
        b.extend(bx(b"mdia", |b| {
            b.extend(mdhd(OPUS_TIMESCALE, media_duration));
            b.extend(hdlr(b"soun", "SoundHandler"));
            b.extend(bx(b"minf", |b| {
                b.extend(full(b"smhd", 0, 0, |b| b.extend_from_slice(&[0; 4])));
                b.extend(dinf());
                b.extend(bx(b"stbl", |b| {
                    b.extend(full(b"stsd", 0, 0, |b| {
                        u32be(b, 1);
                        b.extend(bx(b"Opus", |b| {
                            b.extend_from_slice(&[0; 6]);
                            u16be(b, 1);
                            b.extend_from_slice(&[0; 8]);
                            u16be(b, u16::from(a.channels));
                            u16be(b, 16);
                            u16be(b, 0);
                            u16be(b, 0);
                            u32be(b, OPUS_TIMESCALE << 16);
                            b.extend(bx(b"dOps", |b| {
                                b.push(0);
                                b.push(a.channels);
                                u16be(b, a.pre_skip);
                                u32be(b, OPUS_TIMESCALE);
                                u16be(b, 0); // output gain
                                b.push(0); // mapping family 0: mono or stereo
                            }));
                        }));
                    }));
                    b.extend(full(b"stts", 0, 0, |b| {
                        u32be(b, 1);
                        u32be(b, packets);
                        u32be(b, OPUS_PACKET_SAMPLES);
                    }));
                    // No stss: every Opus packet is a sync sample.
                    single_chunk(b, packets, offset);
                    b.extend(stsz(sizes));
                }));
            }));
        }));
    })
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
        let packets = vec![vec![1u8; 10]; 5];
        let opus = OpusTrack {
            packets: &packets,
            channels: 2,
            pre_skip: OPUS_PRE_SKIP,
        };
        let with_audio = write_mp4(&video, Some(&opus), "t").unwrap();
        assert_eq!(top_level(&with_audio), [*b"ftyp", *b"moov", *b"mdat"]);
        assert!(with_audio.windows(4).any(|w| w == b"dOps"));
        assert!(with_audio.ends_with(&[1u8; 50]));
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
