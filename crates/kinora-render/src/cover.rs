//! The JPEG cover: frame 0 exactly as handed to the encoder, converted back to RGB with the
//! inverse BT.709 limited-range transform. The encoder writes no EXIF and no timestamps.

use image::codecs::jpeg::JpegEncoder;
use image::ExtendedColorType;

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

/// Encodes the frame as a baseline JPEG at [`COVER_QUALITY`].
pub fn cover_jpeg(frame: &I420Frame) -> Result<Vec<u8>, image::ImageError> {
    let rgb = i420_to_rgb(frame);
    let (w, h) = (frame.width() as u32, frame.height() as u32);
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, COVER_QUALITY).encode(
        &rgb,
        w,
        h,
        ExtendedColorType::Rgb8,
    )?;
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
