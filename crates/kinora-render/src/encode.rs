//! A small safe wrapper over the bundled OpenH264 encoder with the engine's fixed settings.
//! The library's own safe wrapper cannot switch on CABAC, hence this one.

use std::os::raw::{c_int, c_void};
use std::ptr;

use openh264_sys2 as sys;

use crate::frame::I420Frame;

/// True when the build found `nasm`, so the encoder's assembly is in use. Bytes are the
/// same either way; only speed differs.
pub const ENCODER_HAS_ASSEMBLY: bool = !cfg!(kinora_no_nasm);

/// What the encoder needs to know about the stream; everything else is fixed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncoderConfig {
    pub width: u32,
    pub height: u32,
    pub bitrate: u32,
    pub max_bitrate: u32,
    pub level_idc: u8,
}

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("the H.264 encoder could not be created")]
    Create,
    #[error("the H.264 encoder rejected its settings (code {0})")]
    Init(c_int),
    #[error("the H.264 encoder failed on a frame (code {0})")]
    Frame(c_int),
    #[error("frame is {got_w}x{got_h}, the encoder was set up for {want_w}x{want_h}")]
    FrameSize {
        got_w: usize,
        got_h: usize,
        want_w: u32,
        want_h: u32,
    },
    #[error("frame planes do not match their declared sizes")]
    PlaneLayout,
    #[error("the H.264 encoder skipped a frame")]
    Skipped,
    #[error("the H.264 encoder produced a malformed bitstream: {0}")]
    Bitstream(&'static str),
}

/// One encoded picture: its slice NAL units without start codes, and whether it is an IDR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedFrame {
    pub nals: Vec<Vec<u8>>,
    pub idr: bool,
}

/// A closed GOP: the parameter sets the encoder wrote, and its pictures in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedChunk {
    pub sps: Vec<u8>,
    pub pps: Vec<u8>,
    pub frames: Vec<EncodedFrame>,
}

/// One OpenH264 encoder instance. It is created, used and dropped on one thread.
pub struct Encoder {
    raw: *mut sys::ISVCEncoder,
    config: EncoderConfig,
    frame_index: u64,
}

impl Encoder {
    pub fn new(config: EncoderConfig) -> Result<Self, EncodeError> {
        let mut raw: *mut sys::ISVCEncoder = ptr::null_mut();
        // SAFETY: the out-pointer is valid for one write; the library allocates the encoder.
        let rc = unsafe { sys::source::APILoader::WelsCreateSVCEncoder(&mut raw) };
        if rc != 0 || raw.is_null() {
            return Err(EncodeError::Create);
        }
        // From here on Drop releases the encoder, also on the error paths below.
        let encoder = Self {
            raw,
            config,
            frame_index: 0,
        };
        let vtbl = encoder.vtbl()?;

        let mut quiet: c_int = sys::WELS_LOG_QUIET;
        let set_option = vtbl.SetOption.ok_or(EncodeError::Create)?;
        // SAFETY: `raw` is a live encoder; the trace-level option reads one int from the
        // pointer, which outlives the call. Accepted before initialisation by design.
        unsafe {
            set_option(
                raw,
                sys::ENCODER_OPTION_TRACE_LEVEL,
                (&mut quiet as *mut c_int).cast::<c_void>(),
            )
        };

        let mut params = sys::SEncParamExt::default();
        let get_defaults = vtbl.GetDefaultParams.ok_or(EncodeError::Create)?;
        // SAFETY: `params` is a valid, writable parameter struct of the bound layout.
        let rc = unsafe { get_defaults(raw, &mut params) };
        if rc != 0 {
            return Err(EncodeError::Init(rc));
        }
        apply_settings(&mut params, &config);
        let initialize = vtbl.InitializeExt.ok_or(EncodeError::Create)?;
        // SAFETY: `params` is fully initialised and only read during the call.
        let rc = unsafe { initialize(raw, &params) };
        if rc != 0 {
            return Err(EncodeError::Init(rc));
        }
        Ok(encoder)
    }

    fn vtbl(&self) -> Result<sys::ISVCEncoderVtbl, EncodeError> {
        // SAFETY: `raw` came from WelsCreateSVCEncoder and is not yet destroyed; it points
        // to the object's vtable pointer, which the library keeps valid for its lifetime.
        let table = unsafe { *self.raw };
        if table.is_null() {
            return Err(EncodeError::Create);
        }
        // SAFETY: checked non-null above; the vtable is a plain struct of fn pointers.
        Ok(unsafe { *table })
    }

    /// Encodes the next picture. The first picture of an encoder is always an IDR and the
    /// settings allow no other, so a chunk is one closed GOP.
    pub fn encode(&mut self, frame: &I420Frame) -> Result<(Vec<Vec<u8>>, bool), EncodeError> {
        let (w, h) = (self.config.width, self.config.height);
        if frame.width() != w as usize || frame.height() != h as usize {
            return Err(EncodeError::FrameSize {
                got_w: frame.width(),
                got_h: frame.height(),
                want_w: w,
                want_h: h,
            });
        }
        // The library trusts strides and sizes blindly; check that every plane holds what
        // they promise before handing it raw pointers.
        let planes = [(&frame.y, 1), (&frame.u, 2), (&frame.v, 2)];
        for (plane, sub) in planes {
            let fits = plane.width == w as usize / sub
                && plane.height == h as usize / sub
                && plane.stride >= plane.width
                && plane.height > 0
                && plane.data.len() >= plane.stride * (plane.height - 1) + plane.width;
            if !fits {
                return Err(EncodeError::PlaneLayout);
            }
        }
        let to_int = |v: usize| c_int::try_from(v).map_err(|_| EncodeError::PlaneLayout);
        let picture = sys::SSourcePicture {
            iColorFormat: sys::videoFormatI420,
            iStride: [
                to_int(frame.y.stride)?,
                to_int(frame.u.stride)?,
                to_int(frame.v.stride)?,
                0,
            ],
            // The library only reads the planes; the API is just not const-correct.
            pData: [
                frame.y.data.as_ptr().cast_mut(),
                frame.u.data.as_ptr().cast_mut(),
                frame.v.data.as_ptr().cast_mut(),
                ptr::null_mut(),
            ],
            iPicWidth: to_int(frame.width())?,
            iPicHeight: to_int(frame.height())?,
            // Milliseconds from the chunk start, as the rate control expects.
            uiTimeStamp: i64::try_from(self.frame_index * 1000 / 24).unwrap_or(i64::MAX),
            bPsnrY: false,
            bPsnrU: false,
            bPsnrV: false,
        };
        self.frame_index += 1;
        let mut info = Box::<sys::SFrameBSInfo>::default();
        let encode = self.vtbl()?.EncodeFrame.ok_or(EncodeError::Create)?;
        // SAFETY: every plane holds its declared rows at its stride (checked above) and
        // outlives the call; `info` is a valid out-struct. The output buffers it points to
        // stay valid until the next call on this encoder and are copied out below.
        let rc = unsafe { encode(self.raw, &picture, &mut *info) };
        if rc != 0 {
            return Err(EncodeError::Frame(rc));
        }
        if info.eFrameType == sys::videoFrameTypeSkip
            || info.eFrameType == sys::videoFrameTypeInvalid
        {
            return Err(EncodeError::Skipped);
        }
        let layers = usize::try_from(info.iLayerNum)
            .unwrap_or(0)
            .min(info.sLayerInfo.len());
        let mut nals = Vec::new();
        for layer in &info.sLayerInfo[..layers] {
            let count = usize::try_from(layer.iNalCount).unwrap_or(0);
            if count == 0 {
                continue;
            }
            if layer.pNalLengthInByte.is_null() || layer.pBsBuf.is_null() {
                return Err(EncodeError::Bitstream("null layer buffer"));
            }
            // SAFETY: the library reports `iNalCount` lengths at `pNalLengthInByte`.
            let lengths = unsafe { std::slice::from_raw_parts(layer.pNalLengthInByte, count) };
            let mut total = 0usize;
            for &len in lengths {
                total += usize::try_from(len).map_err(|_| EncodeError::Bitstream("length"))?;
            }
            // SAFETY: the layer's NAL units lie back to back in `pBsBuf`, `total` bytes.
            let bytes = unsafe { std::slice::from_raw_parts(layer.pBsBuf, total) };
            let mut at = 0;
            for &len in lengths {
                let len = len as usize;
                nals.push(strip_start_code(&bytes[at..at + len])?.to_vec());
                at += len;
            }
        }
        Ok((nals, info.eFrameType == sys::videoFrameTypeIDR))
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        if let Ok(vtbl) = self.vtbl() {
            if let Some(uninit) = vtbl.Uninitialize {
                // SAFETY: `raw` is live; uninitialising an encoder that failed to
                // initialise is a no-op in the library.
                unsafe { uninit(self.raw) };
            }
        }
        // SAFETY: `raw` came from WelsCreateSVCEncoder and is destroyed exactly once.
        unsafe { sys::source::APILoader::WelsDestroySVCEncoder(self.raw) };
    }
}

fn apply_settings(p: &mut sys::SEncParamExt, c: &EncoderConfig) {
    let to_int = |v: u32| c_int::try_from(v).unwrap_or(c_int::MAX);
    p.iUsageType = sys::CAMERA_VIDEO_REAL_TIME;
    p.iPicWidth = to_int(c.width);
    p.iPicHeight = to_int(c.height);
    p.iTargetBitrate = to_int(c.bitrate);
    p.iMaxBitrate = to_int(c.max_bitrate);
    p.iRCMode = sys::RC_BITRATE_MODE;
    p.fMaxFrameRate = 24.0;
    p.iTemporalLayerNum = 1;
    p.iSpatialLayerNum = 1;
    p.iComplexityMode = sys::MEDIUM_COMPLEXITY;
    // No periodic intra refresh: the only IDR of a chunk is its first picture.
    p.uiIntraPeriod = 0;
    // A new PPS id per IDR would break the single pair kept in `avcC`.
    p.eSpsPpsIdStrategy = sys::CONSTANT_ID;
    p.bPrefixNalAddingCtrl = false;
    p.bEnableSSEI = false;
    p.bSimulcastAVC = false;
    p.iPaddingFlag = 0;
    p.iEntropyCodingModeFlag = 1;
    p.bEnableFrameSkip = false;
    p.bEnableLongTermReference = false;
    // 0 would mean "one per core", which makes the bitstream machine-dependent.
    p.iMultipleThreadIdc = 1;
    p.bUseLoadBalancing = false;
    p.bEnableSceneChangeDetect = false;
    p.bEnableDenoise = false;
    p.bEnableFrameCroppingFlag = true;
    let layer = &mut p.sSpatialLayers[0];
    layer.iVideoWidth = to_int(c.width);
    layer.iVideoHeight = to_int(c.height);
    layer.fFrameRate = 24.0;
    layer.iSpatialBitrate = to_int(c.bitrate);
    layer.iMaxSpatialBitrate = to_int(c.max_bitrate);
    layer.uiProfileIdc = sys::PRO_HIGH;
    layer.uiLevelIdc = match c.level_idc {
        40 => sys::LEVEL_4_0,
        51 => sys::LEVEL_5_1,
        _ => sys::LEVEL_3_1,
    };
    layer.sSliceArgument.uiSliceMode = sys::SM_SINGLE_SLICE;
    layer.sSliceArgument.uiSliceNum = 1;
    layer.bVideoSignalTypePresent = true;
    layer.uiVideoFormat = sys::VF_UNDEF as u8;
    layer.bFullRange = false;
    layer.bColorDescriptionPresent = true;
    layer.uiColorPrimaries = sys::CP_BT709 as u8;
    layer.uiTransferCharacteristics = sys::TRC_BT709 as u8;
    layer.uiColorMatrix = sys::CM_BT709 as u8;
}

fn strip_start_code(nal: &[u8]) -> Result<&[u8], EncodeError> {
    let body = if nal.starts_with(&[0, 0, 0, 1]) {
        &nal[4..]
    } else if nal.starts_with(&[0, 0, 1]) {
        &nal[3..]
    } else {
        return Err(EncodeError::Bitstream("NAL unit without start code"));
    };
    if body.is_empty() {
        return Err(EncodeError::Bitstream("empty NAL unit"));
    }
    Ok(body)
}

/// NAL unit types the muxer cares about.
const NAL_SEI: u8 = 6;
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;
const NAL_AUD: u8 = 9;

/// One chunk's encoder: a fresh encoder whose parameter sets are kept apart from the
/// pictures, checked to make the chunk one closed GOP.
pub struct ChunkEncoder {
    encoder: Encoder,
    sps: Option<Vec<u8>>,
    pps: Option<Vec<u8>>,
    frames: Vec<EncodedFrame>,
}

impl ChunkEncoder {
    /// An encoder for a chunk of `len` pictures.
    pub fn new(config: EncoderConfig, len: u32) -> Result<Self, EncodeError> {
        Ok(Self {
            encoder: Encoder::new(config)?,
            sps: None,
            pps: None,
            frames: Vec::with_capacity(len as usize),
        })
    }

    /// Encodes the chunk's next picture.
    pub fn push(&mut self, frame: &I420Frame) -> Result<(), EncodeError> {
        let first = self.frames.is_empty();
        let (nals, idr) = self.encoder.encode(frame)?;
        if idr != first {
            return Err(EncodeError::Bitstream("IDR outside the chunk start"));
        }
        let mut slices = Vec::with_capacity(nals.len());
        for nal in nals {
            match nal[0] & 0x1f {
                NAL_SPS => keep_parameter_set(&mut self.sps, nal)?,
                NAL_PPS => keep_parameter_set(&mut self.pps, nal)?,
                NAL_SEI | NAL_AUD => {}
                _ => slices.push(nal),
            }
        }
        if slices.is_empty() {
            return Err(EncodeError::Bitstream("picture without slices"));
        }
        self.frames.push(EncodedFrame { nals: slices, idr });
        Ok(())
    }

    /// The encoded chunk.
    pub fn finish(self) -> Result<EncodedChunk, EncodeError> {
        let (Some(sps), Some(pps)) = (self.sps, self.pps) else {
            return Err(EncodeError::Bitstream("no parameter sets"));
        };
        Ok(EncodedChunk {
            sps,
            pps,
            frames: self.frames,
        })
    }
}

/// Encodes one chunk with a fresh encoder. `draw(i, buffer)` fills the chunk's i-th frame
/// into a buffer reused for the whole chunk; returning `Ok(false)` ends the chunk early (the
/// caller knows why, e.g. cancellation) and yields `Ok(None)`.
pub fn encode_chunk<F, E>(
    config: EncoderConfig,
    len: u32,
    draw: F,
) -> Result<Option<EncodedChunk>, E>
where
    F: FnMut(u32, &mut I420Frame) -> Result<bool, E>,
    E: From<EncodeError>,
{
    Ok(encode_chunk_labelled(config, len, draw, None)?.map(|(clean, _)| clean))
}

/// Like [`encode_chunk`], and with `label` also a labelled copy of the chunk: every frame
/// `draw` fills goes to the clean encoder as it is and, copied and labelled, to a second
/// encoder (§2.6). The clean chunk is byte-identical to the one [`encode_chunk`] makes.
pub fn encode_chunk_labelled<F, E>(
    config: EncoderConfig,
    len: u32,
    mut draw: F,
    label: Option<&(dyn Fn(&mut I420Frame) + Sync)>,
) -> Result<Option<(EncodedChunk, Option<EncodedChunk>)>, E>
where
    F: FnMut(u32, &mut I420Frame) -> Result<bool, E>,
    E: From<EncodeError>,
{
    let mut clean = ChunkEncoder::new(config, len)?;
    let mut labelled = match label {
        Some(_) => Some(ChunkEncoder::new(config, len)?),
        None => None,
    };
    let blank = || {
        I420Frame::filled(
            config.width as usize,
            config.height as usize,
            (16, 128, 128),
        )
    };
    let mut frame = blank();
    let mut copy = label.map(|_| blank());
    for i in 0..len {
        if !draw(i, &mut frame)? {
            return Ok(None);
        }
        clean.push(&frame)?;
        if let (Some(label), Some(encoder), Some(copy)) = (label, labelled.as_mut(), copy.as_mut())
        {
            // A copy, so the draw function's buffer stays exactly as it left it.
            copy.clone_from(&frame);
            label(copy);
            encoder.push(copy)?;
        }
    }
    let labelled = match labelled {
        Some(encoder) => Some(encoder.finish()?),
        None => None,
    };
    Ok(Some((clean.finish()?, labelled)))
}

fn keep_parameter_set(slot: &mut Option<Vec<u8>>, nal: Vec<u8>) -> Result<(), EncodeError> {
    match slot {
        Some(prev) if *prev != nal => Err(EncodeError::Bitstream("parameter sets changed")),
        Some(_) => Ok(()),
        None => {
            *slot = Some(nal);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> EncoderConfig {
        EncoderConfig {
            width: 64,
            height: 48,
            bitrate: 300_000,
            max_bitrate: 600_000,
            level_idc: 31,
        }
    }

    #[test]
    fn a_chunk_is_one_closed_gop_in_high_profile() {
        let chunk = encode_chunk::<_, EncodeError>(config(), 5, |i, f| {
            f.y.data
                .iter_mut()
                .enumerate()
                .for_each(|(k, v)| *v = 16 + ((k as u32 + i * 7) % 200) as u8);
            Ok(true)
        })
        .unwrap()
        .unwrap();
        assert_eq!(chunk.frames.len(), 5);
        assert_eq!(
            chunk.frames.iter().map(|f| f.idr).collect::<Vec<_>>(),
            [true, false, false, false, false]
        );
        assert_eq!(
            (chunk.sps[0] & 0x1f, chunk.sps[1], chunk.sps[3]),
            (NAL_SPS, 100, 31)
        );
        assert_eq!(chunk.pps[0] & 0x1f, NAL_PPS);
        assert_eq!(chunk.frames[0].nals[0][0] & 0x1f, 5, "IDR slice");
    }

    #[test]
    fn stopping_early_and_bad_frames_are_reported() {
        let stopped = encode_chunk::<_, EncodeError>(config(), 5, |i, _| Ok(i < 2)).unwrap();
        assert!(stopped.is_none());
        let mut encoder = Encoder::new(config()).unwrap();
        let wrong = I420Frame::filled(32, 32, (16, 128, 128));
        assert!(matches!(
            encoder.encode(&wrong),
            Err(EncodeError::FrameSize { .. })
        ));
        let mut short = I420Frame::filled(64, 48, (16, 128, 128));
        short.u.data.truncate(10);
        assert!(matches!(
            encoder.encode(&short),
            Err(EncodeError::PlaneLayout)
        ));
    }
}
