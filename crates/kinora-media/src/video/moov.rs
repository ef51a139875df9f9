//! The movie index: which tracks exist, their codecs, sizes and timing, read from the `moov`
//! box held in memory.
//!
//! Only the path down to the fields the rules need is followed (`trak` → `mdia` → `minf` →
//! `stbl`), so the parse depth is fixed whatever the file nests.

use super::boxes::{children, find, require, FourCc, Reader};

const TRAK: FourCc = FourCc::of(b"trak");
const MVHD: FourCc = FourCc::of(b"mvhd");
const CMOV: FourCc = FourCc::of(b"cmov");
const MVEX: FourCc = FourCc::of(b"mvex");
const MEHD: FourCc = FourCc::of(b"mehd");
const TREX: FourCc = FourCc::of(b"trex");
const TKHD: FourCc = FourCc::of(b"tkhd");
const MDIA: FourCc = FourCc::of(b"mdia");
const MDHD: FourCc = FourCc::of(b"mdhd");
const HDLR: FourCc = FourCc::of(b"hdlr");
const MINF: FourCc = FourCc::of(b"minf");
const STBL: FourCc = FourCc::of(b"stbl");
const STSD: FourCc = FourCc::of(b"stsd");
const STTS: FourCc = FourCc::of(b"stts");
const STSZ: FourCc = FourCc::of(b"stsz");
const STZ2: FourCc = FourCc::of(b"stz2");
const VIDE: FourCc = FourCc::of(b"vide");
const SOUN: FourCc = FourCc::of(b"soun");

pub(crate) struct Movie {
    /// Units per second of `duration` and of every track's `tkhd` duration.
    pub(crate) timescale: u32,
    pub(crate) duration: Option<u64>,
    pub(crate) video: Option<Track>,
    /// `Some` when a sound track exists; the inner value is its codec when readable.
    pub(crate) audio: Option<Option<FourCc>>,
    /// `Some` for a fragmented file, whose samples are listed in `moof` boxes.
    pub(crate) fragments: Option<FragmentDefaults>,
}

/// What `mvex` says about the chosen video track's fragments.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct FragmentDefaults {
    /// Total length of all fragments, in the movie timescale (`mehd`).
    pub(crate) fragment_duration: Option<u64>,
    /// Sample duration used when neither `tfhd` nor `trun` gives one (`trex`).
    pub(crate) sample_duration: u32,
}

pub(crate) struct Track {
    pub(crate) id: u32,
    enabled: bool,
    /// `tkhd` duration, in the movie timescale: the presented length, after edit lists.
    pub(crate) duration: Option<u64>,
    /// `tkhd` presentation size, before the matrix is applied.
    pub(crate) width: u32,
    pub(crate) height: u32,
    /// The matrix turns the picture by 90° or 270°, so width and height trade places on screen.
    pub(crate) quarter_turn: bool,
    pub(crate) timescale: u32,
    pub(crate) media_duration: Option<u64>,
    pub(crate) codec: FourCc,
    /// Width and height stored in the visual sample entry.
    pub(crate) coded_size: Option<(u16, u16)>,
    pub(crate) stts_samples: u64,
    pub(crate) stts_duration: u64,
    pub(crate) stsz_samples: Option<u64>,
}

impl Track {
    /// A file may carry several video tracks (a cover picture, an alternate angle); the
    /// playable one is enabled and has samples.
    fn rank(&self) -> u8 {
        u8::from(self.enabled) * 2 + u8::from(self.stts_samples > 0)
    }
}

pub(crate) fn parse(moov: &[u8]) -> Result<Movie, String> {
    // Old QuickTime files may zlib-compress the whole index; inflating it would need a
    // decompressor and a second size limit for a format no current camera or encoder writes.
    if find(super::boxes::MOOV, moov, CMOV)?.is_some() {
        return Err("its movie header is compressed ('cmov'), which is not supported".to_owned());
    }
    let mvhd = require(super::boxes::MOOV, moov, MVHD)?;
    let (timescale, duration) = timescale_and_duration(MVHD, mvhd)?;
    let mut video: Option<Track> = None;
    let mut audio = None;
    let mut mvex = None;
    for child in children(super::boxes::MOOV, moov) {
        let (kind, payload) = child?;
        if kind == MVEX {
            mvex = Some(payload);
        }
        if kind != TRAK {
            continue;
        }
        match parse_trak(payload)? {
            Some(Parsed::Video(track))
                if video.as_ref().is_none_or(|best| track.rank() > best.rank()) =>
            {
                video = Some(track);
            }
            Some(Parsed::Audio(codec)) if audio.is_none() => audio = Some(codec),
            _ => {}
        }
    }
    let fragments = match (mvex, &video) {
        (Some(mvex), Some(track)) => Some(fragment_defaults(mvex, track.id)?),
        (Some(_), None) => Some(FragmentDefaults::default()),
        (None, _) => None,
    };
    Ok(Movie {
        timescale,
        duration,
        video,
        audio,
        fragments,
    })
}

enum Parsed {
    Video(Track),
    Audio(Option<FourCc>),
}

fn parse_trak(trak: &[u8]) -> Result<Option<Parsed>, String> {
    let Some(mdia) = find(TRAK, trak, MDIA)? else {
        return Ok(None);
    };
    let Some(hdlr) = find(MDIA, mdia, HDLR)? else {
        return Ok(None);
    };
    let handler = handler_type(hdlr)?;
    if handler == SOUN {
        // Sound only decides `has_audio`; a damaged sound track should not hide a good video.
        let codec = find(MDIA, mdia, MINF)
            .ok()
            .flatten()
            .and_then(|minf| find(MINF, minf, STBL).ok().flatten())
            .and_then(|stbl| find(STBL, stbl, STSD).ok().flatten())
            .and_then(|stsd| first_sample_entry(stsd).ok())
            .map(|(codec, _)| codec);
        return Ok(Some(Parsed::Audio(codec)));
    }
    if handler != VIDE {
        return Ok(None);
    }

    let tkhd = parse_tkhd(require(TRAK, trak, TKHD)?)?;
    let (timescale, media_duration) = timescale_and_duration(MDHD, require(MDIA, mdia, MDHD)?)?;
    if timescale == 0 {
        return Err("the video track's 'mdhd' box has a timescale of 0".to_owned());
    }
    let minf = require(MDIA, mdia, MINF)?;
    let stbl = require(MINF, minf, STBL)?;
    let (codec, entry) = first_sample_entry(require(STBL, stbl, STSD)?)?;
    let (stts_samples, stts_duration) = time_to_sample(require(STBL, stbl, STTS)?)?;
    let stsz_samples = match find(STBL, stbl, STSZ)? {
        Some(stsz) => Some(sample_count(STSZ, stsz)?),
        None => find(STBL, stbl, STZ2)?
            .map(|stz2| sample_count(STZ2, stz2))
            .transpose()?,
    };
    Ok(Some(Parsed::Video(Track {
        id: tkhd.id,
        enabled: tkhd.enabled,
        duration: tkhd.duration,
        width: tkhd.width,
        height: tkhd.height,
        quarter_turn: tkhd.quarter_turn,
        timescale,
        media_duration,
        codec,
        coded_size: visual_size(entry),
        stts_samples,
        stts_duration,
        stsz_samples,
    })))
}

/// Timescale and duration of `mvhd` or `mdhd`, which share their first fields.
fn timescale_and_duration(kind: FourCc, payload: &[u8]) -> Result<(u32, Option<u64>), String> {
    let mut r = Reader::new(kind, payload);
    let (version, _) = r.version_flags()?;
    check_version(kind, version)?;
    r.versioned(version)?; // creation time
    r.versioned(version)?; // modification time
    let timescale = r.u32()?;
    let duration = known_duration(version, r.versioned(version)?);
    Ok((timescale, duration))
}

/// Writers put all ones in a duration they do not know, and zero when they did not fill it in.
fn known_duration(version: u8, value: u64) -> Option<u64> {
    let unknown = if version == 1 {
        u64::MAX
    } else {
        u64::from(u32::MAX)
    };
    (value != 0 && value != unknown).then_some(value)
}

fn check_version(kind: FourCc, version: u8) -> Result<(), String> {
    if version > 1 {
        return Err(format!(
            "the {kind:?} box has unsupported version {version}"
        ));
    }
    Ok(())
}

struct TrackHeader {
    id: u32,
    enabled: bool,
    duration: Option<u64>,
    width: u32,
    height: u32,
    quarter_turn: bool,
}

fn parse_tkhd(payload: &[u8]) -> Result<TrackHeader, String> {
    let mut r = Reader::new(TKHD, payload);
    let (version, flags) = r.version_flags()?;
    check_version(TKHD, version)?;
    r.versioned(version)?; // creation time
    r.versioned(version)?; // modification time
    let id = r.u32()?;
    r.skip(4)?;
    let duration = known_duration(version, r.versioned(version)?);
    r.skip(8 + 2 + 2 + 2 + 2)?; // reserved, layer, alternate group, volume, reserved
    let mut matrix = [0i64; 9];
    for cell in &mut matrix {
        *cell = i64::from(r.i32()?);
    }
    let [a, b, _, c, d, ..] = matrix;
    let width = fixed_16_16(r.u32()?);
    let height = fixed_16_16(r.u32()?);
    Ok(TrackHeader {
        id,
        enabled: flags & 1 != 0,
        duration,
        width,
        height,
        // A rotation by θ stores cos θ in a and d and ±sin θ in b and c; whichever pair
        // dominates says whether the picture ends up upright or on its side, also when the
        // matrix scales or the angle is not an exact multiple of 90°.
        quarter_turn: b.abs() + c.abs() > a.abs() + d.abs(),
    })
}

/// Rounds an unsigned 16.16 fixed-point size to whole pixels.
fn fixed_16_16(value: u32) -> u32 {
    ((u64::from(value) + 0x8000) >> 16) as u32
}

fn handler_type(hdlr: &[u8]) -> Result<FourCc, String> {
    let mut r = Reader::new(HDLR, hdlr);
    r.version_flags()?;
    r.skip(4)?; // pre_defined, or QuickTime's component type
    r.fourcc()
}

/// The codec tag and payload of the first sample entry.
fn first_sample_entry(stsd: &[u8]) -> Result<(FourCc, &[u8]), String> {
    let mut r = Reader::new(STSD, stsd);
    r.version_flags()?;
    let count = r.u32()?;
    let Some(first) = children(STSD, r.rest()).next().filter(|_| count > 0) else {
        return Err("the video track has no sample description".to_owned());
    };
    first
}

/// Width and height of a visual sample entry: after 6 reserved bytes, the data reference
/// index and 16 bytes of pre-defined and reserved fields.
fn visual_size(entry: &[u8]) -> Option<(u16, u16)> {
    let mut r = Reader::new(STSD, entry);
    r.skip(6 + 2 + 16).ok()?;
    let size = (r.u16().ok()?, r.u16().ok()?);
    (size.0 > 0 && size.1 > 0).then_some(size)
}

/// Sample count and summed duration (in the media timescale) of `stts`.
fn time_to_sample(stts: &[u8]) -> Result<(u64, u64), String> {
    let mut r = Reader::new(STTS, stts);
    r.version_flags()?;
    let entries = r.u32()?;
    // The count is checked against the payload before the loop, so a forged count cannot
    // make it run past the data it claims to describe.
    if u64::from(entries) * 8 > r.remaining() as u64 {
        return Err(format!(
            "the 'stts' box lists {entries} entries but holds fewer"
        ));
    }
    let (mut samples, mut duration) = (0u64, 0u64);
    for _ in 0..entries {
        let count = u64::from(r.u32()?);
        let delta = u64::from(r.u32()?);
        samples = samples.saturating_add(count);
        duration = duration.saturating_add(count.saturating_mul(delta));
    }
    Ok((samples, duration))
}

fn sample_count(kind: FourCc, payload: &[u8]) -> Result<u64, String> {
    let mut r = Reader::new(kind, payload);
    r.version_flags()?;
    r.skip(4)?; // stsz: uniform sample size; stz2: reserved and field size
    r.u32().map(u64::from)
}

fn fragment_defaults(mvex: &[u8], track_id: u32) -> Result<FragmentDefaults, String> {
    let mut defaults = FragmentDefaults::default();
    for child in children(MVEX, mvex) {
        let (kind, payload) = child?;
        let mut r = Reader::new(kind, payload);
        if kind == MEHD {
            let (version, _) = r.version_flags()?;
            check_version(MEHD, version)?;
            defaults.fragment_duration = known_duration(version, r.versioned(version)?);
        } else if kind == TREX {
            r.version_flags()?;
            if r.u32()? == track_id {
                r.skip(4)?; // default sample description index
                defaults.sample_duration = r.u32()?;
            }
        }
    }
    Ok(defaults)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tkhd_with_matrix(a: i32, b: i32, c: i32, d: i32) -> Vec<u8> {
        let mut out = vec![0, 0, 0, 3];
        out.extend_from_slice(&[0; 4 + 4]);
        out.extend_from_slice(&7u32.to_be_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&100u32.to_be_bytes());
        out.extend_from_slice(&[0; 16]);
        for cell in [a, b, 0, c, d, 0, 0, 0, 0x4000_0000] {
            out.extend_from_slice(&cell.to_be_bytes());
        }
        out.extend_from_slice(&(1920u32 << 16).to_be_bytes());
        out.extend_from_slice(&((1080u32 << 16) + 0x8000).to_be_bytes());
        out
    }

    #[test]
    fn track_header_rotation_and_size() {
        let one = 0x1_0000;
        let upright = parse_tkhd(&tkhd_with_matrix(one, 0, 0, one)).ok();
        assert!(upright.as_ref().is_some_and(|t| !t.quarter_turn));
        let turned = parse_tkhd(&tkhd_with_matrix(0, one, -one, 0)).ok();
        assert!(turned.as_ref().is_some_and(|t| t.quarter_turn));
        let upside_down = parse_tkhd(&tkhd_with_matrix(-one, 0, 0, -one)).ok();
        assert!(upside_down.as_ref().is_some_and(|t| !t.quarter_turn));
        let t = upright.as_ref();
        assert_eq!(
            t.map(|t| (t.id, t.width, t.height, t.duration, t.enabled)),
            Some((7, 1920, 1081, Some(100), true))
        );
    }

    #[test]
    fn durations_of_all_ones_or_zero_are_unknown() {
        assert_eq!(known_duration(0, u64::from(u32::MAX)), None);
        assert_eq!(known_duration(1, u64::MAX), None);
        assert_eq!(known_duration(0, 0), None);
        assert_eq!(
            known_duration(1, u64::from(u32::MAX)),
            Some(u64::from(u32::MAX))
        );
    }

    #[test]
    fn compressed_and_headerless_movies_are_refused() {
        let cmov = [0, 0, 0, 8, b'c', b'm', b'o', b'v'];
        assert!(parse(&cmov).is_err_and(|e| e.contains("compressed")));
        assert_eq!(
            parse(&[]).err().as_deref(),
            Some("'moov' has no 'mvhd' box")
        );
    }

    #[test]
    fn stts_with_a_forged_entry_count_is_refused() {
        let mut stts = vec![0, 0, 0, 0];
        stts.extend_from_slice(&u32::MAX.to_be_bytes());
        stts.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2]);
        assert!(time_to_sample(&stts).is_err());
        stts[4..8].copy_from_slice(&1u32.to_be_bytes());
        assert_eq!(time_to_sample(&stts), Ok((1, 2)));
    }
}
