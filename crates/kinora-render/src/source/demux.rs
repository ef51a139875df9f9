//! An ISO BMFF (MP4, MOV) reader for input videos: the sample tables of every track, both
//! from `moov` and from movie fragments (`moof`/`traf`/`trun`), the sample entries the engine
//! understands, edit lists and the track matrix.
//!
//! The input is hostile: every read is bounds-checked, every count is checked against the
//! bytes that would hold it before anything is allocated, and every failure is a message for
//! the client naming the box and the rule it broke.

use std::fmt;

/// Most samples one track may have. A three-minute 60 fps video has 10 800; the cap keeps a
/// forged count from turning into gigabytes of sample table.
const MAX_SAMPLES: usize = 4_000_000;

/// Why a file could not be read; the text goes to the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DemuxError(pub String);

impl fmt::Display for DemuxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, DemuxError> {
    Err(DemuxError(msg.into()))
}

/// A bounds-checked big-endian cursor over a box body.
#[derive(Clone, Copy)]
struct Cursor<'a> {
    data: &'a [u8],
    at: usize,
    what: &'static str,
}

impl<'a> Cursor<'a> {
    fn new(data: &'a [u8], what: &'static str) -> Self {
        Self { data, at: 0, what }
    }

    fn remaining(&self) -> usize {
        self.data.len() - self.at
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], DemuxError> {
        if n > self.remaining() {
            return err(format!("the {} box is truncated", self.what));
        }
        let out = &self.data[self.at..self.at + n];
        self.at += n;
        Ok(out)
    }

    fn skip(&mut self, n: usize) -> Result<(), DemuxError> {
        self.bytes(n).map(|_| ())
    }

    fn u8(&mut self) -> Result<u8, DemuxError> {
        Ok(self.bytes(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, DemuxError> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, DemuxError> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, DemuxError> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    fn i32(&mut self) -> Result<i32, DemuxError> {
        Ok(self.u32()? as i32)
    }

    /// Version and flags of a full box.
    fn full(&mut self) -> Result<(u8, u32), DemuxError> {
        let v = self.u32()?;
        Ok(((v >> 24) as u8, v & 0x00ff_ffff))
    }

    /// A table of `count` entries of `size` bytes must fit in what is left.
    fn table(&mut self, count: u32, size: usize) -> Result<usize, DemuxError> {
        let count = count as usize;
        match count.checked_mul(size) {
            Some(n) if n <= self.remaining() => Ok(count),
            _ => err(format!(
                "the {} box claims {count} entries but holds fewer",
                self.what
            )),
        }
    }
}

/// One box: its type, its body, and where the body starts in the file.
#[derive(Clone, Copy)]
struct BoxRef<'a> {
    kind: [u8; 4],
    body: &'a [u8],
    /// File offset of the box's first byte (its size field).
    start: u64,
}

/// Splits `data` (starting at file offset `base`) into boxes.
fn boxes(data: &[u8], base: u64) -> Result<Vec<BoxRef<'_>>, DemuxError> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < data.len() {
        let rest = &data[at..];
        if rest.len() < 8 {
            // Trailing padding shorter than a box header is tolerated, as players do.
            if rest.iter().all(|&b| b == 0) {
                break;
            }
            return err(format!(
                "a box header at byte {} is truncated",
                base + at as u64
            ));
        }
        let size32 = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let kind = [rest[4], rest[5], rest[6], rest[7]];
        let (header, size) = match size32 {
            0 => (8usize, rest.len() as u64),
            1 => {
                if rest.len() < 16 {
                    return err(format!(
                        "the large size of box '{}' is truncated",
                        kind_str(&kind)
                    ));
                }
                let mut a = [0u8; 8];
                a.copy_from_slice(&rest[8..16]);
                (16, u64::from_be_bytes(a))
            }
            n => (8, u64::from(n)),
        };
        if size < header as u64 {
            return err(format!(
                "box '{}' at byte {} has an impossible size {size}",
                kind_str(&kind),
                base + at as u64
            ));
        }
        if size > rest.len() as u64 {
            // A truncated media box at the very end still leaves a readable index; anything
            // else cut short means the file is damaged.
            if &kind == b"mdat" || &kind == b"free" || &kind == b"skip" {
                out.push(BoxRef {
                    kind,
                    body: &rest[header..],
                    start: base + at as u64,
                });
                break;
            }
            return err(format!(
                "box '{}' at byte {} claims {size} bytes but only {} remain (the file is truncated)",
                kind_str(&kind),
                base + at as u64,
                rest.len()
            ));
        }
        let size = size as usize;
        out.push(BoxRef {
            kind,
            body: &rest[header..size],
            start: base + at as u64,
        });
        at += size;
    }
    Ok(out)
}

fn kind_str(kind: &[u8; 4]) -> String {
    kind.iter()
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '?'
            }
        })
        .collect()
}

fn find<'a>(list: &[BoxRef<'a>], kind: &[u8; 4]) -> Option<BoxRef<'a>> {
    list.iter().find(|b| &b.kind == kind).copied()
}

fn children<'a>(b: BoxRef<'a>) -> Result<Vec<BoxRef<'a>>, DemuxError> {
    boxes(b.body, b.start + 8)
}

fn need<'a>(list: &[BoxRef<'a>], kind: &[u8; 4], parent: &str) -> Result<BoxRef<'a>, DemuxError> {
    find(list, kind).ok_or_else(|| {
        DemuxError(format!(
            "the '{parent}' box has no '{}' box",
            kind_str(kind)
        ))
    })
}

/// What a track's first sample description says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SampleEntry {
    /// H.264 (`avc1`, `avc3`).
    Avc {
        /// Body of the `avcC` box (AVCDecoderConfigurationRecord); empty if absent.
        avcc: Vec<u8>,
    },
    /// MPEG-4 audio or MPEG audio carried in `mp4a`/`.mp3`.
    Mp4a {
        channels: u16,
        sample_rate: u32,
        /// ObjectTypeIndication from `esds` (0x40 MPEG-4 audio, 0x6b/0x69 MPEG-1/2 audio).
        object_type: u8,
        /// DecoderSpecificInfo (for AAC the AudioSpecificConfig).
        config: Vec<u8>,
    },
    Opus {
        channels: u8,
        pre_skip: u16,
        /// ChannelMappingFamily from `dOps`.
        mapping_family: u8,
    },
    /// Uncompressed PCM in any of its MOV and ISO spellings.
    Pcm {
        channels: u16,
        sample_rate: u32,
        bits: u16,
        float: bool,
        little_endian: bool,
        /// Bytes of one sample frame (all channels).
        frame_bytes: u32,
    },
    Flac {
        channels: u16,
        sample_rate: u32,
        /// The metadata blocks of `dfLa` (STREAMINFO first).
        blocks: Vec<u8>,
    },
    Alac {
        channels: u16,
        sample_rate: u32,
        /// The ALACSpecificConfig ("magic cookie").
        cookie: Vec<u8>,
    },
    /// Anything else; the four-character code names it in errors.
    Other([u8; 4]),
}

impl SampleEntry {
    pub fn name(&self) -> String {
        match self {
            Self::Avc { .. } => "H.264".to_owned(),
            Self::Mp4a { object_type, .. } => match object_type {
                0x40 | 0x66..=0x68 => "AAC".to_owned(),
                0x69 | 0x6b => "MPEG audio (MP3)".to_owned(),
                n => format!("mp4a object type 0x{n:02x}"),
            },
            Self::Opus { .. } => "Opus".to_owned(),
            Self::Pcm { .. } => "PCM".to_owned(),
            Self::Flac { .. } => "FLAC".to_owned(),
            Self::Alac { .. } => "ALAC".to_owned(),
            Self::Other(k) => format!("'{}'", kind_str(k)),
        }
    }
}

/// One sample (in decode order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// File offset and size of its bytes, checked to lie inside the file.
    pub offset: u64,
    pub size: u32,
    /// Decode time in media ticks.
    pub dts: i64,
    /// Composition (presentation) time in media ticks, before the edit list.
    pub cts: i64,
    pub duration: u32,
    pub sync: bool,
}

/// One edit list entry, `segment_duration` in movie ticks, `media_time` in media ticks
/// (−1 for an empty edit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edit {
    pub segment_duration: u64,
    pub media_time: i64,
}

#[derive(Clone, Debug)]
pub struct Track {
    pub id: u32,
    pub handler: [u8; 4],
    pub timescale: u32,
    /// From `mdhd`; zero in fragmented files.
    pub media_duration: u64,
    /// The 2×2 part of the `tkhd` matrix in 16.16 fixed point: a, b, c, d.
    pub matrix: [i32; 4],
    pub entry: SampleEntry,
    pub samples: Vec<Sample>,
    pub edits: Vec<Edit>,
}

#[derive(Clone, Debug)]
pub struct Movie {
    /// The `mvhd` timescale, in which edit list durations count.
    pub timescale: u32,
    pub tracks: Vec<Track>,
}

/// Reads the index of an MP4 or MOV file.
pub fn parse(file: &[u8]) -> Result<Movie, DemuxError> {
    let top = boxes(file, 0)?;
    let Some(moov) = find(&top, b"moov") else {
        return err("the file has no 'moov' box: it is not a readable MP4 or MOV file");
    };
    let moov_children = children(moov)?;
    let mvhd = need(&moov_children, b"mvhd", "moov")?;
    let movie_timescale = parse_mvhd(mvhd.body)?;
    let trex = match find(&moov_children, b"mvex") {
        Some(mvex) => parse_trex(&children(mvex)?)?,
        None => Vec::new(),
    };
    let mut tracks = Vec::new();
    for trak in moov_children.iter().filter(|b| &b.kind == b"trak") {
        tracks.push(parse_trak(*trak, file.len() as u64)?);
    }
    // Movie fragments extend the tracks' sample lists in file order.
    let mut next_dts: Vec<Option<i64>> = tracks
        .iter()
        .map(|t| t.samples.last().map(|s| s.dts + i64::from(s.duration)))
        .collect();
    for moof in top.iter().filter(|b| &b.kind == b"moof") {
        parse_moof(*moof, &mut tracks, &trex, &mut next_dts, file.len() as u64)?;
    }
    Ok(Movie {
        timescale: movie_timescale,
        tracks,
    })
}

fn parse_mvhd(body: &[u8]) -> Result<u32, DemuxError> {
    let mut c = Cursor::new(body, "mvhd");
    let (version, _) = c.full()?;
    c.skip(if version == 1 { 16 } else { 8 })?;
    let timescale = c.u32()?;
    if timescale == 0 {
        return err("the 'mvhd' box has a zero timescale");
    }
    Ok(timescale)
}

/// Per-track fragment defaults: (track id, duration, size, flags).
type Trex = (u32, u32, u32, u32);

fn parse_trex(mvex: &[BoxRef<'_>]) -> Result<Vec<Trex>, DemuxError> {
    let mut out = Vec::new();
    for b in mvex.iter().filter(|b| &b.kind == b"trex") {
        let mut c = Cursor::new(b.body, "trex");
        c.full()?;
        let id = c.u32()?;
        c.u32()?; // default sample description index
        out.push((id, c.u32()?, c.u32()?, c.u32()?));
    }
    Ok(out)
}

fn parse_trak(trak: BoxRef<'_>, file_len: u64) -> Result<Track, DemuxError> {
    let list = children(trak)?;
    let tkhd = need(&list, b"tkhd", "trak")?;
    let (id, matrix) = parse_tkhd(tkhd.body)?;
    let edits = match find(&list, b"edts") {
        Some(edts) => match find(&children(edts)?, b"elst") {
            Some(elst) => parse_elst(elst.body)?,
            None => Vec::new(),
        },
        None => Vec::new(),
    };
    let mdia = children(need(&list, b"mdia", "trak")?)?;
    let (timescale, media_duration) = parse_mdhd(need(&mdia, b"mdhd", "mdia")?.body)?;
    let handler = parse_hdlr(need(&mdia, b"hdlr", "mdia")?.body)?;
    let minf = children(need(&mdia, b"minf", "mdia")?)?;
    let stbl = children(need(&minf, b"stbl", "minf")?)?;
    let entry = match find(&stbl, b"stsd") {
        Some(stsd) => parse_stsd(stsd.body)?,
        None => SampleEntry::Other(*b"none"),
    };
    let samples = if matches!(handler, [b'v', b'i', b'd', b'e'] | [b's', b'o', b'u', b'n']) {
        parse_stbl(&stbl, &entry, file_len)?
    } else {
        // Subtitle, timecode and metadata tracks are never read.
        Vec::new()
    };
    Ok(Track {
        id,
        handler,
        timescale,
        media_duration,
        matrix,
        entry,
        samples,
        edits,
    })
}

fn parse_tkhd(body: &[u8]) -> Result<(u32, [i32; 4]), DemuxError> {
    let mut c = Cursor::new(body, "tkhd");
    let (version, _) = c.full()?;
    c.skip(if version == 1 { 16 } else { 8 })?;
    let id = c.u32()?;
    c.skip(4)?;
    c.skip(if version == 1 { 8 } else { 4 })?;
    c.skip(8 + 2 + 2 + 2 + 2)?;
    let a = c.i32()?;
    let b = c.i32()?;
    c.skip(4)?;
    let cc = c.i32()?;
    let d = c.i32()?;
    Ok((id, [a, b, cc, d]))
}

fn parse_elst(body: &[u8]) -> Result<Vec<Edit>, DemuxError> {
    let mut c = Cursor::new(body, "elst");
    let (version, _) = c.full()?;
    let count = c.u32()?;
    let size = if version == 1 { 20 } else { 12 };
    let count = c.table(count, size)?;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let (segment_duration, media_time) = if version == 1 {
            (c.u64()?, c.u64()? as i64)
        } else {
            (u64::from(c.u32()?), i64::from(c.i32()?))
        };
        c.skip(4)?; // media rate
        out.push(Edit {
            segment_duration,
            media_time,
        });
    }
    Ok(out)
}

fn parse_mdhd(body: &[u8]) -> Result<(u32, u64), DemuxError> {
    let mut c = Cursor::new(body, "mdhd");
    let (version, _) = c.full()?;
    c.skip(if version == 1 { 16 } else { 8 })?;
    let timescale = c.u32()?;
    let duration = if version == 1 {
        c.u64()?
    } else {
        u64::from(c.u32()?)
    };
    if timescale == 0 {
        return err("the 'mdhd' box has a zero timescale");
    }
    // All ones means "unknown" (used by some fragmented writers).
    let duration = if duration == u64::from(u32::MAX) || duration == u64::MAX {
        0
    } else {
        duration
    };
    Ok((timescale, duration))
}

fn parse_hdlr(body: &[u8]) -> Result<[u8; 4], DemuxError> {
    let mut c = Cursor::new(body, "hdlr");
    c.full()?;
    c.skip(4)?;
    let b = c.bytes(4)?;
    Ok([b[0], b[1], b[2], b[3]])
}

/// Reads the first sample description; later ones are ignored (the engine reads the first).
fn parse_stsd(body: &[u8]) -> Result<SampleEntry, DemuxError> {
    let mut c = Cursor::new(body, "stsd");
    c.full()?;
    let count = c.u32()?;
    if count == 0 {
        return err("the 'stsd' box describes no samples");
    }
    let rest = &body[c.at..];
    let list = boxes(rest, 0)?;
    let Some(first) = list.first() else {
        return err("the 'stsd' box is empty");
    };
    parse_entry(first.kind, first.body)
}

fn parse_entry(kind: [u8; 4], body: &[u8]) -> Result<SampleEntry, DemuxError> {
    match &kind {
        b"avc1" | b"avc3" => {
            // VisualSampleEntry: 78 bytes of fields before the child boxes. The picture size
            // is taken from the SPS, which is what the decoder will produce.
            let mut c = Cursor::new(body, "avc1");
            c.skip(78)?;
            let list = boxes(&body[c.at..], 0)?;
            let avcc = find(&list, b"avcC")
                .map(|b| b.body.to_vec())
                .unwrap_or_default();
            if avcc.is_empty() && &kind == b"avc1" {
                return err("the 'avc1' sample entry has no 'avcC' box");
            }
            Ok(SampleEntry::Avc { avcc })
        }
        _ if is_audio_kind(&kind) => parse_audio_entry(kind, body),
        _ => Ok(SampleEntry::Other(kind)),
    }
}

fn is_audio_kind(kind: &[u8; 4]) -> bool {
    matches!(
        kind,
        b"mp4a"
            | b".mp3"
            | b"Opus"
            | b"fLaC"
            | b"alac"
            | b"sowt"
            | b"twos"
            | b"lpcm"
            | b"in24"
            | b"in32"
            | b"fl32"
            | b"fl64"
            | b"raw "
            | b"ipcm"
            | b"fpcm"
    )
}

/// Reads an AudioSampleEntry in its ISO form or any of QuickTime's three versions.
fn parse_audio_entry(kind: [u8; 4], body: &[u8]) -> Result<SampleEntry, DemuxError> {
    let mut c = Cursor::new(body, "audio sample entry");
    c.skip(8)?;
    let version = c.u16()?;
    c.skip(6)?;
    let mut channels = c.u16()?;
    let mut bits = c.u16()?;
    c.skip(4)?;
    let mut sample_rate = c.u32()? >> 16;
    let mut lpcm_flags = 0u32;
    let mut frame_bytes = 0u32;
    match version {
        0 => {}
        1 => {
            c.skip(4)?; // samples per packet
            c.skip(4)?; // bytes per packet
            frame_bytes = c.u32()?;
            c.skip(4)?;
        }
        2 => {
            c.skip(4)?;
            let rate = f64::from_bits(c.u64()?);
            channels = u16::try_from(c.u32()?).unwrap_or(0);
            c.skip(4)?;
            bits = u16::try_from(c.u32()?).unwrap_or(0);
            lpcm_flags = c.u32()?;
            frame_bytes = c.u32()?;
            c.skip(4)?;
            sample_rate = if (1.0..=1_000_000.0).contains(&rate) {
                rate as u32
            } else {
                0
            };
        }
        v => return err(format!("audio sample entry version {v} is unknown")),
    }
    let list = boxes(&body[c.at..], 0)?;
    // QuickTime nests codec boxes inside 'wave'.
    let wave = match find(&list, b"wave") {
        Some(w) => boxes(w.body, 0).unwrap_or_default(),
        None => Vec::new(),
    };
    let child = |k: &[u8; 4]| find(&list, k).or_else(|| find(&wave, k));
    if sample_rate == 0 {
        return err(format!(
            "the '{}' audio sample entry has a zero sample rate",
            kind_str(&kind)
        ));
    }
    match &kind {
        b"mp4a" | b".mp3" => {
            let (object_type, config) = match child(b"esds") {
                Some(esds) => parse_esds(esds.body)?,
                None if &kind == b".mp3" => (0x6b, Vec::new()),
                None => return err("the 'mp4a' sample entry has no 'esds' box"),
            };
            if object_type == 0x40 {
                if let Some(ch) = aac_channels(&config) {
                    channels = ch;
                }
            }
            Ok(SampleEntry::Mp4a {
                channels,
                sample_rate,
                object_type,
                config,
            })
        }
        b"Opus" => {
            let Some(dops) = child(b"dOps") else {
                return err("the 'Opus' sample entry has no 'dOps' box");
            };
            let mut d = Cursor::new(dops.body, "dOps");
            d.u8()?;
            let channels = d.u8()?;
            let pre_skip = d.u16()?;
            d.skip(4 + 2)?;
            let mapping_family = d.u8()?;
            Ok(SampleEntry::Opus {
                channels,
                pre_skip,
                mapping_family,
            })
        }
        b"fLaC" => {
            let Some(dfla) = child(b"dfLa") else {
                return err("the 'fLaC' sample entry has no 'dfLa' box");
            };
            Ok(SampleEntry::Flac {
                channels,
                sample_rate,
                blocks: dfla.body.get(4..).unwrap_or_default().to_vec(),
            })
        }
        b"alac" => {
            let Some(cookie) = child(b"alac") else {
                return err("the 'alac' sample entry has no 'alac' configuration box");
            };
            Ok(SampleEntry::Alac {
                channels,
                sample_rate,
                cookie: cookie.body.get(4..).unwrap_or_default().to_vec(),
            })
        }
        _ => pcm_entry(
            kind,
            channels,
            sample_rate,
            bits,
            lpcm_flags,
            frame_bytes,
            child(b"enda"),
            child(b"pcmC"),
        ),
    }
}

#[allow(clippy::too_many_arguments)]
fn pcm_entry(
    kind: [u8; 4],
    channels: u16,
    sample_rate: u32,
    bits: u16,
    lpcm_flags: u32,
    frame_bytes: u32,
    enda: Option<BoxRef<'_>>,
    pcmc: Option<BoxRef<'_>>,
) -> Result<SampleEntry, DemuxError> {
    let enda_little = enda
        .and_then(|b| b.body.get(..2).map(|v| v[1] != 0 || v[0] != 0))
        .unwrap_or(false);
    let (bits, float, little_endian) = match &kind {
        b"sowt" => (16, false, true),
        b"twos" => (if bits == 8 { 8 } else { 16 }, false, false),
        b"in24" => (24, false, enda_little),
        b"in32" => (32, false, enda_little),
        b"fl32" => (32, true, enda_little),
        b"fl64" => (64, true, enda_little),
        // kAudioFormatFlagIsFloat = 1, kAudioFormatFlagIsBigEndian = 2.
        b"lpcm" => (bits, lpcm_flags & 1 != 0, lpcm_flags & 2 == 0),
        b"ipcm" | b"fpcm" => {
            let Some(pcmc) = pcmc else {
                return err("the PCM sample entry has no 'pcmC' box");
            };
            let mut c = Cursor::new(pcmc.body, "pcmC");
            c.full()?;
            let format_flags = c.u8()?;
            let size = c.u8()?;
            (u16::from(size), &kind == b"fpcm", format_flags & 1 != 0)
        }
        _ => return Ok(SampleEntry::Other(kind)),
    };
    let valid_bits = if float {
        matches!(bits, 32 | 64)
    } else {
        matches!(bits, 8 | 16 | 24 | 32)
    };
    if !valid_bits || channels == 0 || channels > 32 {
        return err(format!(
            "PCM audio with {bits}-bit samples and {channels} channels is not supported"
        ));
    }
    let natural = u32::from(bits / 8) * u32::from(channels);
    Ok(SampleEntry::Pcm {
        channels,
        sample_rate,
        bits,
        float,
        little_endian,
        frame_bytes: if frame_bytes == natural || frame_bytes == 0 {
            natural
        } else {
            return err(format!(
                "PCM audio with {frame_bytes} bytes per frame does not match its {bits}-bit {channels}-channel layout"
            ));
        },
    })
}

/// Channel count from an AudioSpecificConfig, when it states one.
fn aac_channels(config: &[u8]) -> Option<u16> {
    if config.len() < 2 {
        return None;
    }
    let object = config[0] >> 3;
    let freq_index = ((config[0] & 7) << 1) | (config[1] >> 7);
    // The explicit 24-bit rate pushes the channel field further; 31 escapes the object type.
    if object == 31 || freq_index == 15 {
        return None;
    }
    let ch = (config[1] >> 3) & 0x0f;
    match ch {
        1..=6 => Some(u16::from(ch)),
        7 => Some(8),
        _ => None,
    }
}

/// Reads a descriptor header: tag and length (1–4 bytes of 7 bits each).
fn descriptor<'a>(c: &mut Cursor<'a>) -> Result<(u8, Cursor<'a>), DemuxError> {
    let tag = c.u8()?;
    let mut len = 0usize;
    for _ in 0..4 {
        let b = c.u8()?;
        len = (len << 7) | usize::from(b & 0x7f);
        if b & 0x80 == 0 {
            break;
        }
    }
    let body = c.bytes(len)?;
    Ok((tag, Cursor::new(body, "esds")))
}

/// ObjectTypeIndication and DecoderSpecificInfo of an `esds` box.
fn parse_esds(body: &[u8]) -> Result<(u8, Vec<u8>), DemuxError> {
    let mut c = Cursor::new(body, "esds");
    c.full()?;
    let (tag, mut es) = descriptor(&mut c)?;
    if tag != 0x03 {
        return err("the 'esds' box does not start with an ES descriptor");
    }
    es.skip(2)?;
    let flags = es.u8()?;
    if flags & 0x80 != 0 {
        es.skip(2)?;
    }
    if flags & 0x40 != 0 {
        let n = es.u8()?;
        es.skip(usize::from(n))?;
    }
    if flags & 0x20 != 0 {
        es.skip(2)?;
    }
    while es.remaining() > 0 {
        let (tag, mut d) = descriptor(&mut es)?;
        if tag != 0x04 {
            continue;
        }
        let object_type = d.u8()?;
        d.skip(12)?;
        let mut config = Vec::new();
        while d.remaining() > 0 {
            let (tag, info) = descriptor(&mut d)?;
            if tag == 0x05 {
                config = info.data.to_vec();
                break;
            }
        }
        return Ok((object_type, config));
    }
    err("the 'esds' box has no decoder configuration")
}

/// Expands a sample table into samples, checking every table against the others.
fn parse_stbl(
    stbl: &[BoxRef<'_>],
    entry: &SampleEntry,
    file_len: u64,
) -> Result<Vec<Sample>, DemuxError> {
    let sizes = match (find(stbl, b"stsz"), find(stbl, b"stz2")) {
        (Some(b), _) => parse_stsz(b.body)?,
        (None, Some(b)) => parse_stz2(b.body)?,
        (None, None) => {
            // Fragmented files keep an empty table in `moov`.
            return Ok(Vec::new());
        }
    };
    let count = sizes.count();
    if count == 0 {
        return Ok(Vec::new());
    }
    if count > MAX_SAMPLES {
        return err(format!(
            "a track has {count} samples, more than the local engine reads ({MAX_SAMPLES})"
        ));
    }
    let chunk_offsets = match (find(stbl, b"stco"), find(stbl, b"co64")) {
        (Some(b), _) => parse_offsets(b.body, false)?,
        (None, Some(b)) => parse_offsets(b.body, true)?,
        (None, None) => return err("the sample table has no chunk offsets ('stco' or 'co64')"),
    };
    let stsc = parse_stsc(need(stbl, b"stsc", "stbl")?.body)?;
    let stts = parse_pairs(need(stbl, b"stts", "stbl")?.body, "stts")?;
    let ctts = match find(stbl, b"ctts") {
        Some(b) => parse_pairs(b.body, "ctts")?,
        None => Vec::new(),
    };
    let sync: Option<Vec<u32>> = match find(stbl, b"stss") {
        Some(b) => Some(parse_stss(b.body)?),
        None => None,
    };

    // PCM in MOV stores one tiny sample per sample frame; reading those one by one would
    // build a huge table, so each chunk becomes one sample of all its frames.
    let pcm_frame = match entry {
        SampleEntry::Pcm { frame_bytes, .. } => Some(*frame_bytes),
        _ => None,
    };

    let mut samples = Vec::with_capacity(if pcm_frame.is_some() {
        chunk_offsets.len().min(count)
    } else {
        count
    });
    let mut stts_iter = Expand::new(&stts);
    let mut ctts_iter = Expand::new(&ctts);
    let mut sync_iter = sync.as_ref().map(|s| s.iter().peekable());
    let mut dts: i64 = 0;
    let mut index = 0usize;
    let mut run = 0usize;
    for (chunk_no, &chunk_offset) in chunk_offsets.iter().enumerate() {
        if index >= count {
            break;
        }
        // stsc runs are keyed by 1-based chunk numbers in increasing order.
        while run + 1 < stsc.len() && (stsc[run + 1].0 as usize) <= chunk_no + 1 {
            run += 1;
        }
        let per_chunk = stsc.get(run).map_or(0, |r| r.1) as usize;
        let mut offset = chunk_offset;
        let take = per_chunk.min(count - index);
        if let Some(frame) = pcm_frame {
            let mut bytes: u64 = 0;
            let mut duration: u64 = 0;
            for _ in 0..take {
                bytes += u64::from(sizes.get(index).max(frame));
                duration += u64::from(stts_iter.next().unwrap_or(1));
                index += 1;
            }
            let size = u32::try_from(bytes)
                .map_err(|_| DemuxError("a PCM chunk is larger than 4 GiB".to_owned()))?;
            let duration = u32::try_from(duration)
                .map_err(|_| DemuxError("a PCM chunk lasts too long".to_owned()))?;
            check_range(offset, size, file_len)?;
            samples.push(Sample {
                offset,
                size,
                dts,
                cts: dts,
                duration,
                sync: true,
            });
            dts = dts.saturating_add(i64::from(duration));
            continue;
        }
        for _ in 0..take {
            let size = sizes.get(index);
            check_range(offset, size, file_len)?;
            let duration = stts_iter.next().unwrap_or(0);
            let cts_offset = ctts_iter.next().map_or(0, |v| i64::from(v as i32));
            let number = index as u32 + 1;
            let is_sync = match sync_iter.as_mut() {
                None => true,
                Some(it) => {
                    while it.peek().is_some_and(|&&n| n < number) {
                        it.next();
                    }
                    it.peek().is_some_and(|&&n| n == number)
                }
            };
            samples.push(Sample {
                offset,
                size,
                dts,
                cts: dts.saturating_add(cts_offset),
                duration,
                sync: is_sync,
            });
            dts = dts.saturating_add(i64::from(duration));
            offset += u64::from(size);
            index += 1;
        }
    }
    if index < count {
        return err(format!(
            "the sample-to-chunk table places {index} of {count} samples"
        ));
    }
    Ok(samples)
}

fn check_range(offset: u64, size: u32, file_len: u64) -> Result<(), DemuxError> {
    match offset.checked_add(u64::from(size)) {
        Some(end) if end <= file_len => Ok(()),
        _ => err(format!(
            "a sample at byte {offset} of {size} bytes lies outside the file (the file is truncated or damaged)"
        )),
    }
}

/// Sample sizes: one constant, or a table.
enum Sizes {
    Constant(u32, usize),
    Table(Vec<u32>),
}

impl Sizes {
    fn count(&self) -> usize {
        match self {
            Self::Constant(_, n) => *n,
            Self::Table(t) => t.len(),
        }
    }

    fn get(&self, i: usize) -> u32 {
        match self {
            Self::Constant(s, _) => *s,
            Self::Table(t) => t.get(i).copied().unwrap_or(0),
        }
    }
}

fn parse_stsz(body: &[u8]) -> Result<Sizes, DemuxError> {
    let mut c = Cursor::new(body, "stsz");
    c.full()?;
    let size = c.u32()?;
    let count = c.u32()?;
    if size != 0 {
        if count as usize > MAX_SAMPLES * 16 {
            return err(format!("the 'stsz' box claims {count} samples"));
        }
        return Ok(Sizes::Constant(size, count as usize));
    }
    let count = c.table(count, 4)?;
    let mut t = Vec::with_capacity(count);
    for _ in 0..count {
        t.push(c.u32()?);
    }
    Ok(Sizes::Table(t))
}

fn parse_stz2(body: &[u8]) -> Result<Sizes, DemuxError> {
    let mut c = Cursor::new(body, "stz2");
    c.full()?;
    c.skip(3)?;
    let field = c.u8()?;
    let count = c.u32()?;
    let mut t = Vec::new();
    match field {
        4 => {
            let n = c.table(count.div_ceil(2), 1)?;
            for _ in 0..n {
                let b = c.u8()?;
                t.push(u32::from(b >> 4));
                t.push(u32::from(b & 0x0f));
            }
            t.truncate(count as usize);
        }
        8 => {
            let n = c.table(count, 1)?;
            for _ in 0..n {
                t.push(u32::from(c.u8()?));
            }
        }
        16 => {
            let n = c.table(count, 2)?;
            for _ in 0..n {
                t.push(u32::from(c.u16()?));
            }
        }
        f => return err(format!("the 'stz2' box has an invalid field size {f}")),
    }
    Ok(Sizes::Table(t))
}

fn parse_offsets(body: &[u8], wide: bool) -> Result<Vec<u64>, DemuxError> {
    let mut c = Cursor::new(body, if wide { "co64" } else { "stco" });
    c.full()?;
    let count = c.u32()?;
    let count = c.table(count, if wide { 8 } else { 4 })?;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        out.push(if wide { c.u64()? } else { u64::from(c.u32()?) });
    }
    Ok(out)
}

/// (first chunk, samples per chunk) runs.
fn parse_stsc(body: &[u8]) -> Result<Vec<(u32, u32)>, DemuxError> {
    let mut c = Cursor::new(body, "stsc");
    c.full()?;
    let count = c.u32()?;
    let count = c.table(count, 12)?;
    let mut out: Vec<(u32, u32)> = Vec::with_capacity(count);
    for _ in 0..count {
        let first = c.u32()?;
        let per = c.u32()?;
        c.u32()?;
        if first == 0 || out.last().is_some_and(|&(f, _)| first <= f) {
            return err("the 'stsc' box's chunk numbers do not increase from 1");
        }
        out.push((first, per));
    }
    if out.first().is_some_and(|&(f, _)| f != 1) {
        return err("the 'stsc' box does not start at chunk 1");
    }
    Ok(out)
}

/// (count, value) runs of `stts` and `ctts`.
fn parse_pairs(body: &[u8], what: &'static str) -> Result<Vec<(u32, u32)>, DemuxError> {
    let mut c = Cursor::new(body, what);
    c.full()?;
    let count = c.u32()?;
    let count = c.table(count, 8)?;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        out.push((c.u32()?, c.u32()?));
    }
    Ok(out)
}

fn parse_stss(body: &[u8]) -> Result<Vec<u32>, DemuxError> {
    let mut c = Cursor::new(body, "stss");
    c.full()?;
    let count = c.u32()?;
    let count = c.table(count, 4)?;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        out.push(c.u32()?);
    }
    out.sort_unstable();
    Ok(out)
}

/// Walks run-length (count, value) pairs one sample at a time.
struct Expand<'a> {
    runs: &'a [(u32, u32)],
    run: usize,
    used: u32,
}

impl<'a> Expand<'a> {
    fn new(runs: &'a [(u32, u32)]) -> Self {
        Self {
            runs,
            run: 0,
            used: 0,
        }
    }
}

impl Iterator for Expand<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        loop {
            let &(count, value) = self.runs.get(self.run)?;
            if self.used < count {
                self.used += 1;
                return Some(value);
            }
            self.run += 1;
            self.used = 0;
        }
    }
}

fn parse_moof(
    moof: BoxRef<'_>,
    tracks: &mut [Track],
    trex: &[Trex],
    next_dts: &mut [Option<i64>],
    file_len: u64,
) -> Result<(), DemuxError> {
    for traf in children(moof)?.into_iter().filter(|b| &b.kind == b"traf") {
        let list = children(traf)?;
        let tfhd = need(&list, b"tfhd", "traf")?;
        let mut c = Cursor::new(tfhd.body, "tfhd");
        let (_, flags) = c.full()?;
        let id = c.u32()?;
        let Some(t) = tracks.iter().position(|t| t.id == id) else {
            return err(format!(
                "a movie fragment names track {id}, which does not exist"
            ));
        };
        let defaults = trex
            .iter()
            .find(|d| d.0 == id)
            .copied()
            .unwrap_or((id, 0, 0, 0));
        let mut base = if flags & 0x1 != 0 {
            c.u64()?
        } else {
            // Both "default base is moof" and the legacy rule for a file's first fragment
            // resolve to the start of the `moof` box.
            moof.start
        };
        if flags & 0x2 != 0 {
            c.u32()?;
        }
        let default_duration = if flags & 0x8 != 0 {
            c.u32()?
        } else {
            defaults.1
        };
        let default_size = if flags & 0x10 != 0 {
            c.u32()?
        } else {
            defaults.2
        };
        let default_flags = if flags & 0x20 != 0 {
            c.u32()?
        } else {
            defaults.3
        };
        let mut dts = match find(&list, b"tfdt") {
            Some(tfdt) => {
                let mut c = Cursor::new(tfdt.body, "tfdt");
                let (version, _) = c.full()?;
                let v = if version == 1 {
                    c.u64()?
                } else {
                    u64::from(c.u32()?)
                };
                i64::try_from(v).map_err(|_| DemuxError("a 'tfdt' time is too large".into()))?
            }
            None => next_dts[t].unwrap_or(0),
        };
        let track = &mut tracks[t];
        let reads_samples = matches!(&track.handler, b"vide" | b"soun");
        for trun in list.iter().filter(|b| &b.kind == b"trun") {
            let mut c = Cursor::new(trun.body, "trun");
            let (version, tflags) = c.full()?;
            let count = c.u32()?;
            let data_offset = if tflags & 0x1 != 0 {
                Some(i64::from(c.i32()?))
            } else {
                None
            };
            let first_flags = if tflags & 0x4 != 0 {
                Some(c.u32()?)
            } else {
                None
            };
            let per = 4 * [0x100, 0x200, 0x400, 0x800]
                .iter()
                .filter(|&&f| tflags & f != 0)
                .count();
            let count = if per > 0 {
                c.table(count, per)?
            } else {
                count as usize
            };
            if count > MAX_SAMPLES || (reads_samples && track.samples.len() + count > MAX_SAMPLES) {
                return err(format!(
                    "a track has more samples than the local engine reads ({MAX_SAMPLES})"
                ));
            }
            let mut offset = match data_offset {
                Some(d) => base
                    .checked_add_signed(d)
                    .ok_or_else(|| DemuxError("a 'trun' data offset is out of range".into()))?,
                None => base,
            };
            for i in 0..count {
                let duration = if tflags & 0x100 != 0 {
                    c.u32()?
                } else {
                    default_duration
                };
                let size = if tflags & 0x200 != 0 {
                    c.u32()?
                } else {
                    default_size
                };
                let sflags = if tflags & 0x400 != 0 {
                    c.u32()?
                } else if i == 0 {
                    first_flags.unwrap_or(default_flags)
                } else {
                    default_flags
                };
                let cts_offset = if tflags & 0x800 != 0 {
                    let v = c.u32()?;
                    if version == 0 {
                        i64::from(v)
                    } else {
                        i64::from(v as i32)
                    }
                } else {
                    0
                };
                if reads_samples {
                    check_range(offset, size, file_len)?;
                    track.samples.push(Sample {
                        offset,
                        size,
                        dts,
                        cts: dts.saturating_add(cts_offset),
                        duration,
                        // sample_is_non_sync_sample
                        sync: sflags & 0x0001_0000 == 0,
                    });
                }
                offset = offset.saturating_add(u64::from(size));
                dts = dts.saturating_add(i64::from(duration));
            }
            // A following run without its own offset continues where this one ended.
            base = offset;
        }
        next_dts[t] = Some(dts);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_and_box_sizes_are_checked() {
        assert!(boxes(&[0, 0, 0, 4, b'f', b'r', b'e', b'e'], 0).is_err());
        assert!(boxes(&[0, 0, 0, 9, b'm', b'o', b'o', b'v'], 0).is_err());
        let ok = boxes(&[0, 0, 0, 9, b'f', b'r', b'e', b'e', 7], 0).unwrap();
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].body, &[7]);
        assert_eq!(aac_channels(&[0x12, 0x10]), Some(2));
        let mut c = Cursor::new(&[0, 0, 0, 200], "stsz");
        assert!(c.table(200, 4).is_err());
    }

    #[test]
    fn expands_runs() {
        let runs = [(2, 5), (0, 9), (1, 7)];
        assert_eq!(Expand::new(&runs).collect::<Vec<_>>(), [5, 5, 7]);
    }
}
