//! Image probing and rules on real PNG and JPEG files encoded by the test itself.

use std::io::Cursor;

use image::{ImageFormat as Encoder, Rgb, RgbImage};
use kinora_media::image::{probe_image, ImageFormat, ImageRules};
use kinora_media::source::{decode_base64, InlinePolicy, MediaSource};
use kinora_media::MediaErrorKind;

fn encode(width: u32, height: u32, format: Encoder) -> Vec<u8> {
    let picture = RgbImage::from_fn(width, height, |x, y| {
        Rgb([(x % 256) as u8, (y % 256) as u8, 128])
    });
    let mut out = Cursor::new(Vec::new());
    picture.write_to(&mut out, format).expect("encode");
    out.into_inner()
}

#[test]
fn png_and_jpeg_dimensions_come_from_their_headers() {
    for (w, h) in [(300, 300), (1280, 720), (720, 1280), (1000, 401)] {
        let png = probe_image("image", &encode(w, h, Encoder::Png)).expect("png");
        assert_eq!(
            (png.format, png.width, png.height),
            (ImageFormat::Png, w, h)
        );
        let jpeg = probe_image("image", &encode(w, h, Encoder::Jpeg)).expect("jpeg");
        assert_eq!(
            (jpeg.format, jpeg.width, jpeg.height),
            (ImageFormat::Jpeg, w, h)
        );
    }
}

#[test]
fn progressive_jpeg_frame_headers_are_read() {
    // The encoder writes a baseline frame (SOF0); a progressive file differs in the marker only.
    let mut jpeg = encode(640, 360, Encoder::Jpeg);
    let sof0 = jpeg
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("SOF0 present");
    jpeg[sof0 + 1] = 0xC2;
    let info = probe_image("image", &jpeg).expect("progressive");
    assert_eq!((info.width, info.height), (640, 360));
}

#[test]
fn other_formats_are_named_in_the_error() {
    let gif = encode_gif();
    let err = probe_image("image", &gif).expect_err("gif");
    assert_eq!(
        err.to_string(),
        "image: format gif is not one of jpg, jpeg, png"
    );
    let err = probe_image("image", b"hello, world").expect_err("text");
    assert_eq!(
        err.to_string(),
        "image: the data is not one of jpg, jpeg, png"
    );
    assert_eq!(err.kind, MediaErrorKind::Format);
}

fn encode_gif() -> Vec<u8> {
    // A minimal GIF header is enough to be recognised and refused.
    b"GIF89a\x01\x00\x01\x00\x00\x00\x00".to_vec()
}

#[test]
fn truncated_files_are_format_errors() {
    let png = encode(400, 400, Encoder::Png);
    let err = probe_image("image", &png[..20]).expect_err("truncated png");
    assert_eq!(err.kind, MediaErrorKind::Format);
    let jpeg = encode(400, 400, Encoder::Jpeg);
    let sof = jpeg
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("SOF0");
    let err = probe_image("image", &jpeg[..sof + 4]).expect_err("truncated jpeg");
    assert_eq!(
        err.to_string(),
        "image: JPEG file is truncated before its frame header"
    );
}

#[test]
fn every_image_rule_on_real_files() {
    let check = |w, h, rules: ImageRules| {
        let info = probe_image("image", &encode(w, h, Encoder::Png)).expect("probe");
        rules.check("image", &info).map_err(|e| e.to_string())
    };
    assert_eq!(check(300, 300, ImageRules::STANDARD), Ok(()));
    assert_eq!(
        check(299, 400, ImageRules::STANDARD),
        Err("image: 299x400 px is smaller than 300 px on a side".into())
    );
    assert_eq!(check(750, 300, ImageRules::STANDARD), Ok(()));
    assert_eq!(
        check(751, 300, ImageRules::STANDARD),
        Err("image: aspect ratio 2.5:1 is outside 1:2.5..2.5:1".into())
    );
    assert_eq!(
        check(960, 300, ImageRules::STANDARD),
        Err("image: aspect ratio 3.2:1 is outside 1:2.5..2.5:1".into())
    );
    assert_eq!(
        check(300, 960, ImageRules::MOTION_CONTROL),
        Err("image: aspect ratio 1:3.2 is outside 1:2.5..2.5:1".into())
    );
    assert_eq!(
        check(100, 900, ImageRules::FORMAT_AND_SIZE),
        Ok(()),
        "image_tail: format and size only"
    );
}

#[test]
fn base64_images_decode_and_probe() {
    use base64::Engine;
    let png = encode(320, 480, Encoder::Png);
    let raw = base64::engine::general_purpose::STANDARD.encode(&png);
    let uri = format!("data:image/png;base64,{raw}");
    let MediaSource::Base64(text) =
        MediaSource::parse("image", &uri, InlinePolicy::Base64OrDataUri).expect("unified")
    else {
        panic!("a data URI is inline data");
    };
    let bytes = decode_base64("image", &text, 10 * 1024 * 1024).expect("decode");
    assert_eq!(bytes.as_ref(), png.as_slice());
    let info = probe_image("image", &bytes).expect("probe");
    assert_eq!((info.width, info.height), (320, 480));
    let err = decode_base64("image", &raw, png.len() as u64 - 1).expect_err("over the limit");
    assert_eq!(err.kind, MediaErrorKind::TooLarge);
}
