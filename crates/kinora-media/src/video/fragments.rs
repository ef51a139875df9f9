//! Fragmented MP4 (`moof` + `mdat` pairs after a sample-less `moov`), as written by live
//! encoders, browsers' recorders and ffmpeg's `frag_keyframe`: the samples and their
//! durations are listed per fragment, in `traf` → `tfhd` + `trun`.

use super::boxes::{children, FourCc, Reader, MOOF};

const TRAF: FourCc = FourCc::of(b"traf");
const TFHD: FourCc = FourCc::of(b"tfhd");
const TRUN: FourCc = FourCc::of(b"trun");

// tfhd flags
const BASE_DATA_OFFSET: u32 = 0x01;
const SAMPLE_DESCRIPTION_INDEX: u32 = 0x02;
const DEFAULT_SAMPLE_DURATION: u32 = 0x08;

// trun flags
const DATA_OFFSET: u32 = 0x01;
const FIRST_SAMPLE_FLAGS: u32 = 0x04;
const SAMPLE_DURATION: u32 = 0x100;
const SAMPLE_SIZE: u32 = 0x200;
const SAMPLE_FLAGS: u32 = 0x400;
const SAMPLE_COMPOSITION_OFFSET: u32 = 0x800;

/// Samples and summed duration (in the media timescale) of one track over the fragments seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) samples: u64,
    pub(crate) duration: u64,
}

/// Adds the samples `moof` lists for `track_id` to `totals`.
pub(crate) fn add_moof(
    moof: &[u8],
    track_id: u32,
    trex_duration: u32,
    totals: &mut Totals,
) -> Result<(), String> {
    for child in children(MOOF, moof) {
        let (kind, traf) = child?;
        if kind != TRAF {
            continue;
        }
        let mut default_duration = None;
        for item in children(TRAF, traf) {
            let (kind, payload) = item?;
            if kind == TFHD {
                let (id, duration) = parse_tfhd(payload)?;
                if id != track_id {
                    break;
                }
                default_duration = Some(duration.unwrap_or(trex_duration));
            } else if kind == TRUN {
                // A `trun` before its `tfhd` has no track to belong to.
                let Some(default_duration) = default_duration else {
                    break;
                };
                add_trun(payload, default_duration, totals)?;
            }
        }
    }
    Ok(())
}

fn parse_tfhd(payload: &[u8]) -> Result<(u32, Option<u32>), String> {
    let mut r = Reader::new(TFHD, payload);
    let (_, flags) = r.version_flags()?;
    let id = r.u32()?;
    if flags & BASE_DATA_OFFSET != 0 {
        r.skip(8)?;
    }
    if flags & SAMPLE_DESCRIPTION_INDEX != 0 {
        r.skip(4)?;
    }
    let duration = if flags & DEFAULT_SAMPLE_DURATION != 0 {
        Some(r.u32()?)
    } else {
        None
    };
    Ok((id, duration))
}

fn add_trun(payload: &[u8], default_duration: u32, totals: &mut Totals) -> Result<(), String> {
    let mut r = Reader::new(TRUN, payload);
    let (_, flags) = r.version_flags()?;
    let count = r.u32()?;
    if flags & DATA_OFFSET != 0 {
        r.skip(4)?;
    }
    if flags & FIRST_SAMPLE_FLAGS != 0 {
        r.skip(4)?;
    }
    let per_sample = [
        SAMPLE_DURATION,
        SAMPLE_SIZE,
        SAMPLE_FLAGS,
        SAMPLE_COMPOSITION_OFFSET,
    ]
    .iter()
    .filter(|&&bit| flags & bit != 0)
    .count()
        * 4;
    // Checked before walking the records, so a forged count is refused instead of looped over.
    if u64::from(count) * per_sample as u64 > r.remaining() as u64 {
        return Err(format!(
            "the 'trun' box lists {count} samples but holds fewer"
        ));
    }
    totals.samples = totals.samples.saturating_add(u64::from(count));
    if flags & SAMPLE_DURATION == 0 {
        let run = u64::from(count) * u64::from(default_duration);
        totals.duration = totals.duration.saturating_add(run);
        return Ok(());
    }
    for _ in 0..count {
        let record = r.take(per_sample)?;
        // The duration is the first field of each record whenever it is present.
        let duration = Reader::new(TRUN, record).u32()?;
        totals.duration = totals.duration.saturating_add(u64::from(duration));
    }
    Ok(())
}
