//! MP4 and MOV probing without ffmpeg. The container's own index, the `moov` box, records
//! every track's codec, picture size, timing and sample count, so the box headers plus that
//! one box are enough, wherever it sits: the media data (`mdat`) in between is skipped by
//! offset, never read. Fragmented MP4 adds one small `moof` box per fragment.
//!
//! Everything read from the file is distrusted: sizes are checked against the file and the
//! enclosing box before use, the index is capped at [`MAX_INDEX_BYTES`], and the top-level
//! walk at [`MAX_TOP_LEVEL_BOXES`] steps.

mod boxes;
mod fragments;
mod moov;
mod rules;

use bytes::Bytes;

use self::boxes::{parse_header, Extent, FourCc, HeaderError, FTYP, MDAT, MOOF, MOOV};
use self::fragments::Totals;
use self::moov::Movie;
use crate::range::RangeRead;
use crate::{MediaError, MediaErrorKind};

pub use self::rules::{
    VideoRules, ELEMENT_REFERENCE_MAX_BYTES, MOTION_CONTROL_MAX_BYTES, OMNI_REFERENCE_MAX_BYTES,
};

/// The largest `moov` box read, and the budget for all `moof` boxes together. A long
/// feature film's index is a few MiB; more than this is not a clip worth probing.
pub const MAX_INDEX_BYTES: u64 = 64 * 1024 * 1024;

/// Top-level boxes walked at most. A plain file has a handful; a fragmented one two per
/// fragment, so this allows 30 s cut into one fragment per frame at well over 60 fps.
pub const MAX_TOP_LEVEL_BOXES: usize = 20_000;

/// Bytes fetched around each box header: one read usually covers `ftyp`, the next header
/// and, for a short clip with the index up front, the whole `moov`.
const WINDOW: u64 = 16 * 1024;

/// Only the brands at the start of `ftyp` are looked at; real files list a handful.
const MAX_FTYP_READ: u64 = 1024;

/// Box types a QuickTime file without `ftyp` may start with.
const QUICKTIME_FIRST: [FourCc; 6] = [
    MOOV,
    MDAT,
    FourCc::of(b"wide"),
    FourCc::of(b"free"),
    FourCc::of(b"skip"),
    FourCc::of(b"pnot"),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Container {
    Mp4,
    Mov,
}

impl Container {
    fn name(self) -> &'static str {
        match self {
            Self::Mp4 => "MP4",
            Self::Mov => "MOV",
        }
    }
}

/// What the container says about the video.
#[derive(Clone, Debug, PartialEq)]
pub struct VideoInfo {
    pub container: Container,
    /// Length of the video track as presented (edit lists included), else of its media, else
    /// of the whole movie. In a fragmented file, the summed durations of its fragments.
    pub duration_ms: u64,
    /// Display size: the track header's size, with width and height swapped when the track's
    /// matrix turns the picture by 90° or 270°.
    pub width: u32,
    pub height: u32,
    /// Average frame rate: sample count over the summed sample durations.
    pub fps: f64,
    pub frame_count: u64,
    /// Sample entry tag, e.g. `avc1`, `hvc1`, `mp4v`.
    pub video_codec: String,
    /// The file has a sound track.
    pub has_audio: bool,
    pub audio_codec: Option<String>,
}

/// Reads the box headers and the `moov` box (plus the `moof` boxes of a fragmented file),
/// seeking past `mdat`, so it works whether the index sits before or after the media data and
/// costs a few small reads whatever the file's size.
pub async fn probe_video(field: &str, file: &dyn RangeRead) -> Result<VideoInfo, MediaError> {
    let mut source = Source {
        file,
        len: file.len(),
        field,
        window: None,
    };
    let container = detect(&mut source).await?;
    let (movie, fragments) = walk(&mut source, container).await?;
    summarize(field, container, movie, fragments)
}

fn format_error(field: &str, detail: impl Into<String>) -> MediaError {
    MediaError::new(field, MediaErrorKind::Format, detail)
}

async fn detect(source: &mut Source<'_>) -> Result<Container, MediaError> {
    let not_ours = || format_error(source.field, "not an MP4 or MOV file");
    let head = source.head(0).await?;
    let header = parse_header(&head).map_err(|_| not_ours())?;
    if header.kind != FTYP {
        return if QUICKTIME_FIRST.contains(&header.kind) {
            Ok(Container::Mov)
        } else {
            Err(not_ours())
        };
    }
    let end = match header.extent {
        Extent::Size(size) => size.min(source.len),
        Extent::ToEnd => source.len,
    };
    let available = end.saturating_sub(header.header_len).min(MAX_FTYP_READ);
    if available < 4 {
        return Err(not_ours());
    }
    let payload = source.exact(header.header_len, available).await?;
    match brand_container(&payload) {
        Ok(container) => Ok(container),
        Err(major) => Err(format_error(
            source.field,
            format!("not an MP4 or MOV file (its brand is {major:?})"),
        )),
    }
}

/// The container an `ftyp` payload announces: the major brand decides, and when a writer
/// picked a brand of its own, the compatible brands after it do. Returns the major brand
/// when nothing matches.
fn brand_container(ftyp: &[u8]) -> Result<Container, FourCc> {
    // Major brand, minor version, then the compatible brands.
    let brands: Vec<FourCc> = ftyp
        .chunks_exact(4)
        .enumerate()
        .filter(|&(i, _)| i != 1)
        .filter_map(|(_, chunk)| chunk.try_into().ok().map(FourCc))
        .collect();
    let major = brands.first().copied().unwrap_or(FourCc::of(b"    "));
    brands
        .iter()
        .find_map(|brand| brand_kind(*brand))
        .ok_or(major)
}

fn brand_kind(brand: FourCc) -> Option<Container> {
    match &brand.0 {
        b"qt  " => Some(Container::Mov),
        // ISO base media and its MPEG-4, Apple, DASH/CMAF, 3GPP and camera flavours.
        [b'i', b's', b'o', _]
        | [b'3', b'g', _, _]
        | b"mp41"
        | b"mp42"
        | b"mp71"
        | b"avc1"
        | b"M4V "
        | b"M4VH"
        | b"M4VP"
        | b"M4A "
        | b"dash"
        | b"msdh"
        | b"cmfc"
        | b"cmf2"
        | b"mmp4"
        | b"MSNV"
        | b"NDAS"
        | b"XAVC"
        | b"f4v "
        | b"kddi" => Some(Container::Mp4),
        _ => None,
    }
}

/// Walks the top-level boxes to the end of the file: reads `moov` (and every `moof` of a
/// fragmented file) and makes sure the media data is all there.
async fn walk(
    source: &mut Source<'_>,
    container: Container,
) -> Result<(Movie, Totals), MediaError> {
    let field = source.field;
    let name = container.name();
    let truncated = |what: &str| format_error(field, format!("{name} file is truncated: {what}"));
    let malformed = |what: String| format_error(field, format!("malformed {name} file: {what}"));
    let mut movie: Option<Movie> = None;
    let mut fragments = Totals::default();
    let mut index_bytes = 0u64;
    let mut offset = 0u64;
    let mut steps = 0usize;
    while offset < source.len {
        steps += 1;
        if steps > MAX_TOP_LEVEL_BOXES {
            // Past a plain index only the media-data check is lost; a fragmented file's
            // remaining fragments would go uncounted and its duration come out short.
            let place = match &movie {
                Some(movie) if movie.fragments.is_none() => break,
                Some(_) => "in all",
                None => "before its moov box",
            };
            return Err(format_error(
                field,
                format!("{name} file has more than {MAX_TOP_LEVEL_BOXES} boxes {place}"),
            ));
        }
        let head = source.head(offset).await?;
        let header = match parse_header(&head) {
            Ok(header) => header,
            // Trailing bytes after a complete index are harmless padding.
            Err(_) if movie.is_some() => break,
            Err(HeaderError::Short) => break,
            Err(HeaderError::BadSize { kind, size }) => {
                return Err(malformed(format!(
                    "the {kind:?} box at offset {offset} declares an invalid size of {size} bytes"
                )));
            }
        };
        let end = match header.extent {
            Extent::Size(size) => offset.saturating_add(size),
            Extent::ToEnd => source.len,
        };
        let past_end = end > source.len;
        let body = offset.saturating_add(header.header_len)..end;
        if header.kind == MOOV && movie.is_none() {
            if past_end {
                return Err(truncated("the moov box is cut short"));
            }
            let moov = source.index_box(body, &mut index_bytes, "moov box").await?;
            movie = Some(moov::parse(&moov).map_err(malformed)?);
        } else if header.kind == MOOF {
            let target = movie
                .as_ref()
                .and_then(|m| Some((m.fragments?, m.video.as_ref()?.id)));
            if let Some((defaults, track_id)) = target {
                if past_end {
                    return Err(truncated("a moof box is cut short"));
                }
                let moof = source
                    .index_box(body, &mut index_bytes, "fragment index")
                    .await?;
                fragments::add_moof(&moof, track_id, defaults.sample_duration, &mut fragments)
                    .map_err(malformed)?;
            }
        } else if header.kind == MDAT && past_end {
            return Err(truncated(if movie.is_some() {
                "the media data ends past the end of the file"
            } else {
                "the moov box is missing"
            }));
        }
        if past_end {
            break;
        }
        offset = end;
    }
    match movie {
        Some(movie) => Ok((movie, fragments)),
        None => Err(truncated("the moov box is missing")),
    }
}

fn summarize(
    field: &str,
    container: Container,
    movie: Movie,
    fragments: Totals,
) -> Result<VideoInfo, MediaError> {
    let name = container.name();
    let Some(track) = movie.video else {
        return Err(format_error(
            field,
            format!("the {name} file has no video track"),
        ));
    };
    let frame_count = track
        .stsz_samples
        .unwrap_or(track.stts_samples)
        .saturating_add(fragments.samples);
    if frame_count == 0 {
        return Err(format_error(
            field,
            format!("the {name} file's video track has no frames"),
        ));
    }
    let sample_ticks = track.stts_duration.saturating_add(fragments.duration);
    let media_ticks = Some(sample_ticks)
        .filter(|&t| t > 0)
        .or(track.media_duration);
    let fps = match media_ticks {
        Some(ticks) => frame_count as f64 * f64::from(track.timescale) / ticks as f64,
        None => 0.0,
    };

    let in_movie = |ticks: Option<u64>| millis(ticks?, movie.timescale);
    let in_media = |ticks: Option<u64>| millis(ticks?, track.timescale);
    let sampled = Some(sample_ticks).filter(|&t| t > 0);
    let duration_ms = if movie.fragments.is_some() {
        // A fragmented file's headers are written before its fragments exist, so their
        // durations are often zero or cover only the first part; the fragments are the truth.
        in_media(sampled)
            .or_else(|| in_movie(movie.fragments.and_then(|f| f.fragment_duration)))
            .or_else(|| in_movie(track.duration))
            .or_else(|| in_movie(movie.duration))
    } else {
        in_movie(track.duration)
            .or_else(|| in_media(track.media_duration))
            .or_else(|| in_media(sampled))
            .or_else(|| in_movie(movie.duration))
    }
    .unwrap_or(0);

    let (mut width, mut height) = (track.width, track.height);
    if width == 0 || height == 0 {
        // Some writers leave the track header's size empty; the sample entry still has it.
        let (w, h) = track.coded_size.unwrap_or((0, 0));
        (width, height) = (u32::from(w), u32::from(h));
    }
    if track.quarter_turn {
        (width, height) = (height, width);
    }

    Ok(VideoInfo {
        container,
        duration_ms,
        width,
        height,
        fps,
        frame_count,
        video_codec: track.codec.to_string(),
        has_audio: movie.audio.is_some(),
        audio_codec: movie.audio.flatten().map(|codec| codec.to_string()),
    })
}

/// `ticks / timescale` seconds in whole milliseconds, rounded to nearest; `None` without a
/// timescale.
fn millis(ticks: u64, timescale: u32) -> Option<u64> {
    let scale = u128::from(timescale);
    if scale == 0 {
        return None;
    }
    let ms = (u128::from(ticks) * 1000 + scale / 2) / scale;
    Some(u64::try_from(ms).unwrap_or(u64::MAX))
}

/// The file being probed, with the last header window kept so neighbouring boxes cost no
/// extra read.
struct Source<'a> {
    file: &'a dyn RangeRead,
    len: u64,
    field: &'a str,
    window: Option<(u64, Bytes)>,
}

impl Source<'_> {
    async fn fetch(&self, offset: u64, len: u64) -> Result<Bytes, MediaError> {
        self.file.read_at(offset, len).await.map_err(|err| {
            MediaError::new(
                self.field,
                MediaErrorKind::Storage,
                format!("could not read the file: {err}"),
            )
        })
    }

    fn cached(&self, offset: u64, len: u64) -> Option<Bytes> {
        let (start, window) = self.window.as_ref()?;
        let from = usize::try_from(offset.checked_sub(*start)?).ok()?;
        let to = from.checked_add(usize::try_from(len).ok()?)?;
        (to <= window.len()).then(|| window.slice(from..to))
    }

    /// Up to 16 bytes at `offset`, enough for any box header; fewer at the end of the file.
    async fn head(&mut self, offset: u64) -> Result<Bytes, MediaError> {
        let remaining = self.len.saturating_sub(offset);
        let want = remaining.min(16);
        if let Some(bytes) = self.cached(offset, want) {
            return Ok(bytes);
        }
        let window = self.fetch(offset, remaining.min(WINDOW)).await?;
        let head = window.slice(..window.len().min(want as usize));
        self.window = Some((offset, window));
        Ok(head)
    }

    /// Exactly `len` bytes at `offset`; the caller has checked they lie inside the file.
    async fn exact(&mut self, offset: u64, len: u64) -> Result<Bytes, MediaError> {
        if let Some(bytes) = self.cached(offset, len) {
            return Ok(bytes);
        }
        let bytes = self.fetch(offset, len).await?;
        if bytes.len() as u64 != len {
            return Err(format_error(
                self.field,
                "the file ended sooner than its size said",
            ));
        }
        Ok(bytes)
    }

    /// Reads an index box's payload, charging it to the shared [`MAX_INDEX_BYTES`] budget
    /// before anything is fetched or allocated.
    async fn index_box(
        &mut self,
        body: std::ops::Range<u64>,
        spent: &mut u64,
        what: &str,
    ) -> Result<Bytes, MediaError> {
        let len = body.end.saturating_sub(body.start);
        *spent = spent.saturating_add(len);
        if *spent > MAX_INDEX_BYTES {
            return Err(format_error(
                self.field,
                format!(
                    "the {what} is {:.1} MiB, more than the {} MiB read to probe a video",
                    *spent as f64 / (1024.0 * 1024.0),
                    MAX_INDEX_BYTES / (1024 * 1024),
                ),
            ));
        }
        self.exact(body.start, len).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ftyp(brands: &[&[u8; 4]]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, brand) in brands.iter().enumerate() {
            out.extend_from_slice(*brand);
            if i == 0 {
                out.extend_from_slice(&[0, 0, 2, 0]);
            }
        }
        out
    }

    #[test]
    fn brands() {
        assert_eq!(
            brand_container(&ftyp(&[b"qt  ", b"qt  "])),
            Ok(Container::Mov)
        );
        assert_eq!(
            brand_container(&ftyp(&[b"isom", b"iso2", b"avc1"])),
            Ok(Container::Mp4)
        );
        assert_eq!(brand_container(&ftyp(&[b"3gp5"])), Ok(Container::Mp4));
        assert_eq!(brand_container(&ftyp(&[b"mp42"])), Ok(Container::Mp4));
        // An unknown major brand is judged by the compatible brands after it.
        assert_eq!(
            brand_container(&ftyp(&[b"XYZ1", b"isom"])),
            Ok(Container::Mp4)
        );
        assert_eq!(
            brand_container(&ftyp(&[b"heic", b"mif1", b"heic"])),
            Err(FourCc::of(b"heic"))
        );
        // The minor version is not a brand even when its bytes spell one.
        assert_eq!(brand_container(b"heicisom"), Err(FourCc::of(b"heic")));
    }

    #[test]
    fn millis_rounds_to_nearest() {
        assert_eq!(millis(45_056, 12_800), Some(3_520));
        assert_eq!(millis(1, 3_000), Some(0));
        assert_eq!(millis(2, 3_000), Some(1));
        assert_eq!(millis(1, 3), Some(333));
        assert_eq!(millis(u64::MAX, 1), Some(u64::MAX));
        assert_eq!(millis(5, 0), None);
    }
}
