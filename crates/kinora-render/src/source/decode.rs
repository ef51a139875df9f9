//! H.264 decoding of input videos with OpenH264: the `avcC` record, a sequence parameter set
//! check that turns unsupported streams into clear client errors before decoding starts,
//! AVCC → Annex-B conversion, and a decoder that tags every picture with the presentation
//! rank of the access unit it came from.

use openh264::decoder::{Decoder, DecoderConfig};
use openh264::OpenH264API;

/// The parts of an AVCDecoderConfigurationRecord the engine uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AvcConfig {
    /// Bytes of each NAL unit length prefix in the samples (1, 2 or 4).
    pub nal_length_size: usize,
    pub sps: Vec<Vec<u8>>,
    pub pps: Vec<Vec<u8>>,
}

/// Reads an `avcC` body (ISO 14496-15 §5.3.3.1).
pub fn parse_avcc(avcc: &[u8]) -> Result<AvcConfig, String> {
    let bad = || "the 'avcC' box is truncated or malformed".to_owned();
    if avcc.len() < 7 {
        return Err(bad());
    }
    if avcc[0] != 1 {
        return Err(format!(
            "the 'avcC' box has configuration version {} (only 1 exists)",
            avcc[0]
        ));
    }
    let nal_length_size = usize::from(avcc[4] & 3) + 1;
    if nal_length_size == 3 {
        return Err(
            "the 'avcC' box declares 3-byte NAL lengths, which H.264 does not allow".into(),
        );
    }
    let mut at = 5;
    let read_sets = |count: usize, at: &mut usize| -> Result<Vec<Vec<u8>>, String> {
        let mut sets = Vec::with_capacity(count);
        for _ in 0..count {
            let len_bytes = avcc.get(*at..*at + 2).ok_or_else(bad)?;
            let len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
            let set = avcc.get(*at + 2..*at + 2 + len).ok_or_else(bad)?;
            sets.push(set.to_vec());
            *at += 2 + len;
        }
        Ok(sets)
    };
    let sps_count = usize::from(avcc[at] & 0x1f);
    at += 1;
    let sps = read_sets(sps_count, &mut at)?;
    let pps_count = usize::from(*avcc.get(at).ok_or_else(bad)?);
    at += 1;
    let pps = read_sets(pps_count, &mut at)?;
    Ok(AvcConfig {
        nal_length_size,
        sps,
        pps,
    })
}

/// Splits a length-prefixed sample into NAL units.
pub fn split_nals(sample: &[u8], nal_length_size: usize) -> Result<Vec<&[u8]>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < sample.len() {
        let prefix = sample
            .get(at..at + nal_length_size)
            .ok_or_else(|| "a video sample ends inside a NAL length prefix".to_owned())?;
        let len = prefix
            .iter()
            .fold(0usize, |n, &b| (n << 8) | usize::from(b));
        at += nal_length_size;
        let nal = sample
            .get(at..at + len)
            .ok_or_else(|| "a NAL unit runs past the end of its video sample".to_owned())?;
        if !nal.is_empty() {
            out.push(nal);
        }
        at += len;
    }
    Ok(out)
}

/// Appends NAL units in Annex-B form (four-byte start codes).
pub fn push_annex_b(out: &mut Vec<u8>, nal: &[u8]) {
    out.extend_from_slice(&[0, 0, 0, 1]);
    out.extend_from_slice(nal);
}

/// What the engine needs to know from a sequence parameter set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpsInfo {
    pub profile_idc: u8,
    pub chroma_format_idc: u32,
    pub bit_depth_luma: u32,
    pub bit_depth_chroma: u32,
    pub frame_mbs_only: bool,
    /// Picture size after the frame cropping rectangle.
    pub width: u32,
    pub height: u32,
}

/// Exp-Golomb bit reader over an RBSP (emulation prevention already removed).
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn bit(&mut self) -> Result<u32, String> {
        let byte = self
            .data
            .get(self.pos / 8)
            .ok_or_else(|| "the sequence parameter set is truncated".to_owned())?;
        let b = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Ok(u32::from(b))
    }

    fn bits(&mut self, n: u32) -> Result<u32, String> {
        let mut v = 0;
        for _ in 0..n {
            v = (v << 1) | self.bit()?;
        }
        Ok(v)
    }

    fn ue(&mut self) -> Result<u32, String> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return Err("the sequence parameter set has an invalid Exp-Golomb code".into());
            }
        }
        Ok(((1u64 << zeros) - 1 + u64::from(self.bits(zeros)?)) as u32)
    }

    fn se(&mut self) -> Result<i32, String> {
        let k = self.ue()?;
        Ok(if k & 1 == 1 {
            k.div_ceil(2) as i32
        } else {
            -((k / 2) as i32)
        })
    }
}

/// Removes emulation prevention bytes (00 00 03 → 00 00).
fn rbsp(nal: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nal.len());
    let mut zeros = 0;
    for &b in nal {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

/// Parses a sequence parameter set NAL unit (with its header byte), ITU-T H.264 §7.3.2.1.1.
pub fn parse_sps(nal: &[u8]) -> Result<SpsInfo, String> {
    if nal.first().map(|b| b & 0x1f) != Some(7) {
        return Err("the first parameter set is not a sequence parameter set".into());
    }
    let data = rbsp(&nal[1..]);
    let mut r = Bits {
        data: &data,
        pos: 0,
    };
    let profile_idc = r.bits(8)? as u8;
    r.bits(16)?; // constraint flags, level
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    let mut bit_depth_luma = 8;
    let mut bit_depth_chroma = 8;
    if matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc == 3 {
            r.bit()?; // separate_colour_plane_flag
        }
        bit_depth_luma = r.ue()? + 8;
        bit_depth_chroma = r.ue()? + 8;
        r.bit()?; // qpprime_y_zero_transform_bypass_flag
        if r.bit()? == 1 {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bit()? == 1 {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i32, 8i32);
                    for _ in 0..size {
                        if next != 0 {
                            next = (last + r.se()? + 256).rem_euclid(256);
                        }
                        if next != 0 {
                            last = next;
                        }
                    }
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    let poc_type = r.ue()?;
    if poc_type == 0 {
        r.ue()?;
    } else if poc_type == 1 {
        r.bit()?;
        r.se()?;
        r.se()?;
        let cycle = r.ue()?;
        if cycle > 255 {
            return Err("the sequence parameter set has an invalid picture order cycle".into());
        }
        for _ in 0..cycle {
            r.se()?;
        }
    }
    r.ue()?; // max_num_ref_frames
    r.bit()?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = r.ue()? + 1;
    let height_map_units = r.ue()? + 1;
    let frame_mbs_only = r.bit()? == 1;
    if !frame_mbs_only {
        r.bit()?; // mb_adaptive_frame_field_flag
    }
    r.bit()?; // direct_8x8_inference_flag
    let (mut crop_l, mut crop_r, mut crop_t, mut crop_b) = (0, 0, 0, 0);
    if r.bit()? == 1 {
        crop_l = r.ue()?;
        crop_r = r.ue()?;
        crop_t = r.ue()?;
        crop_b = r.ue()?;
    }
    let frame_height_mbs = height_map_units * if frame_mbs_only { 1 } else { 2 };
    let (crop_x, crop_y) = match chroma_format_idc {
        0 => (1, if frame_mbs_only { 1 } else { 2 }),
        1 => (2, if frame_mbs_only { 2 } else { 4 }),
        2 => (2, if frame_mbs_only { 1 } else { 2 }),
        _ => (1, if frame_mbs_only { 1 } else { 2 }),
    };
    let full_w = u64::from(width_mbs) * 16;
    let full_h = u64::from(frame_height_mbs) * 16;
    let cut_w = u64::from(crop_l + crop_r) * crop_x;
    let cut_h = u64::from(crop_t + crop_b) * crop_y;
    if cut_w >= full_w || cut_h >= full_h || full_w > 16_384 || full_h > 16_384 {
        return Err("the sequence parameter set gives an invalid picture size".into());
    }
    Ok(SpsInfo {
        profile_idc,
        chroma_format_idc,
        bit_depth_luma,
        bit_depth_chroma,
        frame_mbs_only,
        width: (full_w - cut_w) as u32,
        height: (full_h - cut_h) as u32,
    })
}

/// Checks that the local engine's decoder can read a stream with this SPS (§5.2: progressive,
/// 8-bit, 4:2:0 H.264 only).
pub fn check_supported(sps: &SpsInfo) -> Result<(), String> {
    const HINT: &str = "re-encode the video as 8-bit 4:2:0 progressive H.264";
    if sps.chroma_format_idc != 1 {
        let name = match sps.chroma_format_idc {
            0 => "monochrome (4:0:0)",
            2 => "4:2:2",
            _ => "4:4:4",
        };
        return Err(format!(
            "the video is {name} H.264; the local engine decodes only 4:2:0 ({HINT})"
        ));
    }
    if sps.bit_depth_luma != 8 || sps.bit_depth_chroma != 8 {
        return Err(format!(
            "the video is {}-bit H.264; the local engine decodes only 8-bit ({HINT})",
            sps.bit_depth_luma.max(sps.bit_depth_chroma)
        ));
    }
    if !sps.frame_mbs_only {
        return Err(format!(
            "the video is interlaced H.264; the local engine decodes only progressive video ({HINT})"
        ));
    }
    Ok(())
}

/// A decoded picture in tightly packed I420 (chroma planes ⌈w/2⌉ × ⌈h/2⌉).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Picture {
    pub width: usize,
    pub height: usize,
    pub y: Vec<u8>,
    pub u: Vec<u8>,
    pub v: Vec<u8>,
    /// The presentation rank the access unit was tagged with.
    pub rank: u64,
}

impl Picture {
    pub fn chroma_width(&self) -> usize {
        self.width.div_ceil(2)
    }

    pub fn chroma_height(&self) -> usize {
        self.height.div_ceil(2)
    }
}

/// OpenH264's decoder, driven through its raw interface so each access unit carries a tag
/// (its presentation rank) through the decoder's reordering buffer: with B-frames, pictures
/// leave in presentation order, not in the order they went in.
pub struct H264Decoder {
    inner: Decoder,
}

impl H264Decoder {
    pub fn new() -> Result<Self, String> {
        let inner = Decoder::with_api_config(OpenH264API::from_source(), DecoderConfig::new())
            .map_err(|e| format!("cannot start the H.264 decoder: {e}"))?;
        Ok(Self { inner })
    }

    /// Decodes one access unit in Annex-B form tagged `rank`; returns a picture if one left
    /// the reordering buffer. Returns the decoder's state code alongside, non-zero when it
    /// reported a problem with the stream.
    pub fn decode(&mut self, annex_b: &[u8], rank: u64) -> (Option<Picture>, i32) {
        let Ok(len) = i32::try_from(annex_b.len()) else {
            return (None, -1);
        };
        let mut dst: [*mut u8; 3] = [std::ptr::null_mut(); 3];
        let mut info = openh264_sys2::SBufferInfo {
            uiInBsTimeStamp: rank,
            ..Default::default()
        };
        // SAFETY: the decoder is live for `self`'s lifetime; the input pointer and length
        // describe `annex_b`, which outlives the call; `dst` and `info` are valid for writes.
        let state = unsafe {
            self.inner.raw_api().decode_frame_no_delay(
                annex_b.as_ptr(),
                len,
                dst.as_mut_ptr(),
                &mut info,
            )
        };
        (picture(&dst, &info), state)
    }

    /// Takes the next picture still held for reordering at the end of the stream.
    pub fn flush(&mut self) -> Option<Picture> {
        let mut dst: [*mut u8; 3] = [std::ptr::null_mut(); 3];
        let mut info = openh264_sys2::SBufferInfo::default();
        // SAFETY: as in `decode`; the call only writes through `dst` and `info`.
        unsafe {
            self.inner
                .raw_api()
                .flush_frame(dst.as_mut_ptr(), &mut info)
        };
        picture(&dst, &info)
    }
}

/// Copies a picture out of the decoder's buffers, which the next call reuses.
fn picture(dst: &[*mut u8; 3], info: &openh264_sys2::SBufferInfo) -> Option<Picture> {
    if info.iBufferStatus != 1 || dst.iter().any(|p| p.is_null()) {
        return None;
    }
    // SAFETY: with iBufferStatus 1 the decoder filled `sSystemBuffer`, the union member
    // it uses for system-memory output.
    let buf = unsafe { info.UsrData.sSystemBuffer };
    let (w, h) = (
        usize::try_from(buf.iWidth).ok()?,
        usize::try_from(buf.iHeight).ok()?,
    );
    let (ys, cs) = (
        usize::try_from(buf.iStride[0]).ok()?,
        usize::try_from(buf.iStride[1]).ok()?,
    );
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    if w == 0 || h == 0 || ys < w || cs < cw {
        return None;
    }
    let copy = |ptr: *mut u8, stride: usize, width: usize, height: usize| {
        let mut out = Vec::with_capacity(width * height);
        for row in 0..height {
            // SAFETY: OpenH264 hands out planes of `height` rows of `stride` bytes each, the
            // first `width` of which are picture samples; the buffer lives until the next
            // decoder call, and this copy finishes before that.
            let line = unsafe { std::slice::from_raw_parts(ptr.add(row * stride), width) };
            out.extend_from_slice(line);
        }
        out
    };
    Some(Picture {
        width: w,
        height: h,
        y: copy(dst[0], ys, w, h),
        u: copy(dst[1], cs, cw, ch),
        v: copy(dst[2], cs, cw, ch),
        rank: info.uiOutYuvTimeStamp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_encoders_sps() {
        use crate::encode::{encode_chunk, EncodeError, EncoderConfig};
        let config = EncoderConfig {
            width: 200,
            height: 114,
            bitrate: 500_000,
            max_bitrate: 1_000_000,
            level_idc: 31,
        };
        let chunk = encode_chunk::<_, EncodeError>(config, 1, |_, _| Ok(true))
            .unwrap()
            .unwrap();
        let info = parse_sps(&chunk.sps).unwrap();
        assert_eq!((info.width, info.height), (200, 114), "cropping applied");
        assert_eq!(info.profile_idc, 100);
        assert_eq!(info.chroma_format_idc, 1);
        assert!(info.frame_mbs_only);
        assert!(check_supported(&info).is_ok());
        for cut in 1..chunk.sps.len() - 1 {
            // Truncation must fail or parse, never panic.
            let _ = parse_sps(&chunk.sps[..cut]);
        }
        let ten_bit = SpsInfo {
            bit_depth_luma: 10,
            ..info
        };
        assert!(check_supported(&ten_bit).unwrap_err().contains("10-bit"));
    }

    #[test]
    fn splits_length_prefixed_samples() {
        let s = [0, 0, 0, 2, 9, 8, 0, 0, 0, 1, 7];
        assert_eq!(split_nals(&s, 4).unwrap(), vec![&[9u8, 8][..], &[7u8][..]]);
        assert!(split_nals(&s[..9], 4).is_err());
        assert!(split_nals(&[0, 0], 4).is_err());
    }
}
