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
    let mut rgb = vec![0u8; w * h * 3];
    if w == 0 {
        return rgb;
    }
    let pixel = |out: &mut [u8], luma: u8, u: i32, v: i32| {
        let l = KY * (i32::from(luma) - 16);
        out[0] = clamp8(l + KRV * v);
        out[1] = clamp8(l - KGU * u - KGV * v);
        out[2] = clamp8(l + KBU * u);
    };
    for (y, out) in rgb.chunks_exact_mut(w * 3).enumerate() {
        let (ys, us, vs) = (frame.y.row(y), frame.u.row(y / 2), frame.v.row(y / 2));
        // I420 sizes are even: each pair of pixels shares one chroma sample.
        let pairs = out
            .chunks_exact_mut(6)
            .zip(ys.chunks_exact(2))
            .zip(us.iter().zip(vs));
        for ((out, luma), (&u, &v)) in pairs {
            let (u, v) = (i32::from(u) - 128, i32::from(v) - 128);
            pixel(&mut out[..3], luma[0], u, v);
            pixel(&mut out[3..], luma[1], u, v);
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
    fn every_pixel_takes_its_own_luma_and_its_blocks_chroma() {
        let mut frame = I420Frame::filled(6, 4, (16, 128, 128));
        let mut rng = crate::seed::SplitMix64::new(3);
        for plane in [&mut frame.y, &mut frame.u, &mut frame.v] {
            plane
                .data
                .iter_mut()
                .for_each(|v| *v = rng.next_u64() as u8);
        }
        let rgb = i420_to_rgb(&frame);
        for y in 0..4 {
            for x in 0..6 {
                let l = KY * (i32::from(frame.y.row(y)[x]) - 16);
                let u = i32::from(frame.u.row(y / 2)[x / 2]) - 128;
                let v = i32::from(frame.v.row(y / 2)[x / 2]) - 128;
                let want = [
                    clamp8(l + KRV * v),
                    clamp8(l - KGU * u - KGV * v),
                    clamp8(l + KBU * u),
                ];
                let at = 3 * (y * 6 + x);
                assert_eq!(rgb[at..at + 3], want, "({x}, {y})");
            }
        }
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
