//! Image probing from headers only (PNG's IHDR, JPEG's SOF segment) and the image rules of
//! every field. Nothing is decoded: a 10 MB upload costs a few header reads to validate.

use std::fmt;

use crate::{MediaError, MediaErrorKind};

/// Every image field takes at most this many bytes (10 MB as Kling counts it).
pub const MAX_IMAGE_BYTES: u64 = 10 * 1024 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFormat {
    Jpeg,
    Png,
}

impl fmt::Display for ImageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Jpeg => "jpeg",
            Self::Png => "png",
        })
    }
}

/// What the headers say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
}

impl ImageInfo {
    /// `16:9`-style when the ratio is a common one, else `3.2:1` / `1:2.6`.
    pub fn aspect_label(&self) -> String {
        aspect_label(self.width, self.height)
    }
}

/// Reads format and pixel size from the first bytes of the file.
pub fn probe_image(field: &str, bytes: &[u8]) -> Result<ImageInfo, MediaError> {
    let format_error = |detail: String| MediaError::new(field, MediaErrorKind::Format, detail);
    let (width, height, format) = if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        let (w, h) = png_size(bytes)
            .ok_or_else(|| format_error("PNG file is truncated or has no IHDR header".into()))?;
        (w, h, ImageFormat::Png)
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        let (w, h) = jpeg_size(bytes).map_err(|e| format_error(format!("JPEG file {e}")))?;
        (w, h, ImageFormat::Jpeg)
    } else {
        let found = sniff_other(bytes)
            .map(|name| format!("format {name}"))
            .unwrap_or_else(|| "the data".into());
        return Err(format_error(format!(
            "{found} is not one of jpg, jpeg, png"
        )));
    };
    if width == 0 || height == 0 {
        return Err(format_error(format!(
            "{format} header declares an empty image ({width}x{height})"
        )));
    }
    Ok(ImageInfo {
        format,
        width,
        height,
    })
}

fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
    // Signature (8), chunk length (4), "IHDR" (4), width (4), height (4).
    if bytes.get(12..16)? != b"IHDR" {
        return None;
    }
    Some((be_u32(bytes.get(16..20)?), be_u32(bytes.get(20..24)?)))
}

fn be_u32(b: &[u8]) -> u32 {
    b.iter().fold(0u32, |acc, &x| (acc << 8) | u32::from(x))
}

fn be_u16(b: &[u8]) -> u32 {
    b.iter().fold(0u32, |acc, &x| (acc << 8) | u32::from(x))
}

/// Walks the marker segments up to the first start-of-frame.
fn jpeg_size(bytes: &[u8]) -> Result<(u32, u32), &'static str> {
    const TRUNCATED: &str = "is truncated before its frame header";
    let mut at = 2usize;
    loop {
        // Markers may be preceded by any number of 0xFF fill bytes.
        if *bytes.get(at).ok_or(TRUNCATED)? != 0xFF {
            return Err("has a broken marker structure");
        }
        while bytes.get(at) == Some(&0xFF) {
            at += 1;
        }
        let marker = *bytes.get(at).ok_or(TRUNCATED)?;
        at += 1;
        match marker {
            // Markers without a length field.
            0x01 | 0xD0..=0xD7 => continue,
            0xD9 | 0xDA => return Err("has no frame header before its image data"),
            _ => {}
        }
        let length = be_u16(bytes.get(at..at + 2).ok_or(TRUNCATED)?) as usize;
        if length < 2 {
            return Err("has a broken segment length");
        }
        let is_start_of_frame =
            matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
        if is_start_of_frame {
            // Length (2), precision (1), height (2), width (2).
            let header = bytes.get(at + 2..at + 7).ok_or(TRUNCATED)?;
            let height = be_u16(&header[1..3]);
            let width = be_u16(&header[3..5]);
            if height == 0 {
                return Err("defines its height later in the stream (DNL), which is not supported");
            }
            return Ok((width, height));
        }
        at += length;
    }
}

/// Names common formats we refuse, for a clearer error than "not an image".
fn sniff_other(bytes: &[u8]) -> Option<&'static str> {
    let at = |range: std::ops::Range<usize>| bytes.get(range);
    if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("gif")
    } else if bytes.starts_with(b"RIFF") && at(8..12) == Some(b"WEBP") {
        Some("webp")
    } else if bytes.starts_with(b"BM") {
        Some("bmp")
    } else if bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*") {
        Some("tiff")
    } else if at(4..8) == Some(b"ftyp") {
        match at(8..12) {
            Some(b"avif") | Some(b"avis") => Some("avif"),
            Some(b"heic") | Some(b"heix") | Some(b"mif1") | Some(b"msf1") => Some("heic"),
            _ => Some("mp4/mov (a video)"),
        }
    } else {
        None
    }
}

/// The limits of one image field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageRules {
    pub max_bytes: u64,
    pub min_side: Option<u32>,
    pub max_side: Option<u32>,
    /// Aspect ratio (width:height) between 1:2.5 and 2.5:1 inclusive.
    pub bounded_aspect: bool,
}

impl ImageRules {
    /// `image`, `first_frame_url`, reference and element images: jpg/jpeg/png, ≤ 10 MB,
    /// each side ≥ 300 px, aspect ratio 1:2.5..2.5:1.
    pub const STANDARD: Self = Self {
        max_bytes: MAX_IMAGE_BYTES,
        min_side: Some(300),
        max_side: None,
        bounded_aspect: true,
    };
    /// Motion control's `image_url`: as standard, and each side ≤ 65536 px.
    pub const MOTION_CONTROL: Self = Self {
        max_side: Some(65536),
        ..Self::STANDARD
    };
    /// `image_tail` and masks: format and size only.
    pub const FORMAT_AND_SIZE: Self = Self {
        max_bytes: MAX_IMAGE_BYTES,
        min_side: None,
        max_side: None,
        bounded_aspect: false,
    };

    /// The first broken rule, as a `Rule` error naming the value and the limit.
    pub fn check(&self, field: &str, info: &ImageInfo) -> Result<(), MediaError> {
        let rule = |detail: String| Err(MediaError::new(field, MediaErrorKind::Rule, detail));
        let (w, h) = (info.width, info.height);
        if let Some(min) = self.min_side {
            if w < min || h < min {
                return rule(format!("{w}x{h} px is smaller than {min} px on a side"));
            }
        }
        if let Some(max) = self.max_side {
            if w > max || h > max {
                return rule(format!("{w}x{h} px is larger than {max} px on a side"));
            }
        }
        // 1:2.5 <= w:h <= 2.5:1, in integers: 2w <= 5h and 2h <= 5w.
        if self.bounded_aspect
            && (2 * u64::from(w) > 5 * u64::from(h) || 2 * u64::from(h) > 5 * u64::from(w))
        {
            return rule(format!(
                "aspect ratio {} is outside 1:2.5..2.5:1",
                info.aspect_label()
            ));
        }
        Ok(())
    }
}

/// Masks must have the aspect ratio of `image`, and every mask the same resolution
/// (seed 001). Aspect ratios may differ by 1 % to allow for rounding when masks are scaled.
pub fn check_masks(image: &ImageInfo, masks: &[(String, ImageInfo)]) -> Result<(), MediaError> {
    let Some((first_field, first)) = masks.first() else {
        return Ok(());
    };
    for (field, mask) in masks {
        let image_ratio = f64::from(image.width) / f64::from(image.height);
        let mask_ratio = f64::from(mask.width) / f64::from(mask.height);
        if ((mask_ratio - image_ratio) / image_ratio).abs() > 0.01 {
            return Err(MediaError::new(
                field.as_str(),
                MediaErrorKind::Rule,
                format!(
                    "aspect ratio {} ({}x{}) differs from the image's {} ({}x{})",
                    mask.aspect_label(),
                    mask.width,
                    mask.height,
                    image.aspect_label(),
                    image.width,
                    image.height
                ),
            ));
        }
        if (mask.width, mask.height) != (first.width, first.height) {
            return Err(MediaError::new(
                field.as_str(),
                MediaErrorKind::Rule,
                format!(
                    "resolution {}x{} differs from {first_field}'s {}x{}; all masks must share one resolution",
                    mask.width, mask.height, first.width, first.height
                ),
            ));
        }
    }
    Ok(())
}

fn aspect_label(width: u32, height: u32) -> String {
    const COMMON: [(u32, u32); 8] = [
        (16, 9),
        (9, 16),
        (1, 1),
        (4, 3),
        (3, 4),
        (3, 2),
        (2, 3),
        (21, 9),
    ];
    if let Some((a, b)) = COMMON
        .iter()
        .find(|(a, b)| u64::from(width) * u64::from(*b) == u64::from(height) * u64::from(*a))
    {
        return format!("{a}:{b}");
    }
    let trim = |x: f64| {
        let text = format!("{x:.2}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    };
    if width >= height {
        format!("{}:1", trim(f64::from(width) / f64::from(height)))
    } else {
        format!("1:{}", trim(f64::from(height) / f64::from(width)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(width: u32, height: u32) -> ImageInfo {
        ImageInfo {
            format: ImageFormat::Png,
            width,
            height,
        }
    }

    #[test]
    fn aspect_labels_read_naturally() {
        assert_eq!(aspect_label(1920, 1080), "16:9");
        assert_eq!(aspect_label(1600, 500), "3.2:1");
        assert_eq!(aspect_label(500, 1300), "1:2.6");
        assert_eq!(aspect_label(1000, 999), "1:1");
        assert_eq!(aspect_label(1000, 990), "1.01:1");
    }

    #[test]
    fn side_limits_are_inclusive() {
        let motion = ImageRules::MOTION_CONTROL;
        assert!(motion.check("image_url", &info(65536, 65536)).is_ok());
        let err = motion
            .check("image_url", &info(65537, 65536))
            .expect_err("too wide");
        assert_eq!(
            err.to_string(),
            "image_url: 65537x65536 px is larger than 65536 px on a side"
        );
        assert!(
            ImageRules::STANDARD
                .check("image", &info(100_000, 100_000))
                .is_ok(),
            "no upper limit elsewhere"
        );
        assert!(ImageRules::STANDARD.check("image", &info(300, 300)).is_ok());
        let err = ImageRules::STANDARD
            .check("image", &info(300, 299))
            .expect_err("too small");
        assert_eq!(
            err.to_string(),
            "image: 300x299 px is smaller than 300 px on a side"
        );
    }

    #[test]
    fn aspect_ratio_bounds_are_inclusive() {
        let rules = ImageRules::STANDARD;
        assert!(
            rules.check("image", &info(750, 300)).is_ok(),
            "exactly 2.5:1"
        );
        assert!(
            rules.check("image", &info(300, 750)).is_ok(),
            "exactly 1:2.5"
        );
        let err = rules.check("image", &info(960, 300)).expect_err("3.2:1");
        assert_eq!(
            err.to_string(),
            "image: aspect ratio 3.2:1 is outside 1:2.5..2.5:1"
        );
        let err = rules
            .check("image", &info(300, 751))
            .expect_err("just past 1:2.5");
        assert_eq!(err.kind, MediaErrorKind::Rule);
        assert!(
            ImageRules::FORMAT_AND_SIZE
                .check("image_tail", &info(10, 900))
                .is_ok(),
            "image_tail: format and size only"
        );
    }

    #[test]
    fn masks_follow_the_image_and_each_other() {
        let image = info(1280, 720);
        let ok = [
            ("static_mask".to_owned(), info(640, 360)),
            ("dynamic_masks[0].mask".to_owned(), info(640, 360)),
        ];
        assert!(check_masks(&image, &ok).is_ok());
        assert!(check_masks(&image, &[]).is_ok());
        let wrong_aspect = [("static_mask".to_owned(), info(640, 480))];
        let err = check_masks(&image, &wrong_aspect).expect_err("aspect");
        assert_eq!(
            err.to_string(),
            "static_mask: aspect ratio 4:3 (640x480) differs from the image's 16:9 (1280x720)"
        );
        let wrong_size = [
            ("static_mask".to_owned(), info(640, 360)),
            ("dynamic_masks[1].mask".to_owned(), info(1280, 720)),
        ];
        let err = check_masks(&image, &wrong_size).expect_err("resolution");
        assert_eq!(
            err.to_string(),
            "dynamic_masks[1].mask: resolution 1280x720 differs from static_mask's 640x360; all masks must share one resolution"
        );
    }

    #[test]
    fn jpeg_walker_survives_hostile_input() {
        for bytes in [
            &[0xFF, 0xD8, 0xFF][..],
            &[0xFF, 0xD8, 0xFF, 0xE0, 0x00],
            &[0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x01],
            &[0xFF, 0xD8, 0xFF, 0xDA],
        ] {
            let err = probe_image("image", bytes).expect_err("broken");
            assert_eq!(err.kind, MediaErrorKind::Format);
        }
    }
}
