//! The JPEG cover (§2.7): frame 0 exactly as handed to the encoder, converted back to RGB with
//! the inverse BT.709 limited-range transform, then encoded as a baseline 4:2:0 JPEG at
//! quality 85. `jpeg-encoder` is built without its `simd` feature, so it never picks a code
//! path by CPU, and its colour conversion and DCT are integer; it writes a JFIF header and no
//! EXIF, timestamps or other metadata.

use jpeg_encoder::{ChromaSubsamplingMethod, ColorType, Encoder, EncodingError, SamplingFactor};

use crate::frame::I420Frame;

/// Cover quality, fixed by the output contract.
pub const COVER_QUALITY: u8 = 85;

/// Inverse BT.709 limited range in 16.16 fixed point: 255/219 for luma, and the chroma
/// terms scaled by 255/224.
const KY: i32 = 76_309;
const KRV: i32 = 117_489;
const KGU: i32 = 13_975;
const KGV: i32 = 34_925;
const KBU: i32 = 138_438;

fn clamp8(v: i32) -> u8 {
    ((v + 32_768) >> 16).clamp(0, 255) as u8
}

/// Interleaved 8-bit RGB of an I420 frame; each chroma sample serves its 2×2 block.
pub fn i420_to_rgb(frame: &I420Frame) -> Vec<u8> {
    let (w, h) = (frame.width(), frame.height());
    let mut rgb = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        let (ys, us, vs) = (frame.y.row(y), frame.u.row(y / 2), frame.v.row(y / 2));
        for (x, &luma) in ys.iter().enumerate() {
            let l = KY * (i32::from(luma) - 16);
            let u = i32::from(us[x / 2]) - 128;
            let v = i32::from(vs[x / 2]) - 128;
            rgb.push(clamp8(l + KRV * v));
            rgb.push(clamp8(l - KGU * u - KGV * v));
            rgb.push(clamp8(l + KBU * u));
        }
    }
    rgb
}

/// Encodes the frame as a baseline 4:2:0 JPEG at [`COVER_QUALITY`] with the standard
/// (Annex K) tables scaled as libjpeg does.
pub fn cover_jpeg(frame: &I420Frame) -> Result<Vec<u8>, EncodingError> {
    let too_big = || {
        EncodingError::Write(format!(
            "{}x{} is too large for JPEG",
            frame.width(),
            frame.height()
        ))
    };
    let w = u16::try_from(frame.width()).map_err(|_| too_big())?;
    let h = u16::try_from(frame.height()).map_err(|_| too_big())?;
    let rgb = i420_to_rgb(frame);
    let mut out = Vec::new();
    let mut encoder = Encoder::new(&mut out, COVER_QUALITY);
    encoder.set_sampling_factor(SamplingFactor::R_4_2_0);
    // Each chroma sample is the mean of its 2×2 block, as the frame's own chroma was.
    encoder.set_chroma_subsampling_method(ChromaSubsamplingMethod::Average);
    encoder.set_progressive(false);
    encoder.set_optimized_huffman_tables(false);
    encoder.encode(&rgb, w, h, ColorType::Rgb)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limited_range_maps_to_full_range() {
        let black = I420Frame::filled(4, 2, (16, 128, 128));
        assert!(i420_to_rgb(&black).iter().all(|&v| v == 0));
        let white = I420Frame::filled(4, 2, (235, 128, 128));
        assert!(i420_to_rgb(&white).iter().all(|&v| v == 255));
        // BT.709 red: Y 63, Cb 102, Cr 240.
        let red = I420Frame::filled(2, 2, (63, 102, 240));
        let px = &i420_to_rgb(&red)[..3];
        assert!(px[0] >= 253 && px[1] <= 2 && px[2] <= 2, "{px:?}");
    }

    #[test]
    fn cover_is_a_jpeg_without_exif() {
        let frame = I420Frame::filled(64, 32, (120, 100, 150));
        let jpeg = cover_jpeg(&frame).unwrap();
        assert_eq!(&jpeg[..2], &[0xff, 0xd8]);
        assert!(!jpeg.windows(4).any(|w| w == b"Exif"));
        assert_eq!(jpeg, cover_jpeg(&frame).unwrap());
    }
}
