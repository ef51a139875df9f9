//! The limits each video field puts on duration, picture size and frame rate.

use super::VideoInfo;
use crate::{MediaError, MediaErrorKind};

/// Motion-control `video_url` takes at most this many bytes.
pub const MOTION_CONTROL_MAX_BYTES: u64 = 100 * 1024 * 1024;
/// Omni `video_list[].video_url` takes at most this many bytes.
pub const OMNI_REFERENCE_MAX_BYTES: u64 = 200 * 1024 * 1024;
/// An element's reference clip takes at most this many bytes.
pub const ELEMENT_REFERENCE_MAX_BYTES: u64 = 200 * 1024 * 1024;

/// An average frame rate this close to a limit counts as on it. The average divides the
/// sample count by the summed sample durations, so a clip recorded at exactly 24 or 60 fps can
/// land a hair off (a shorter last sample, variable-rate timestamps); 23.976 fps NTSC film is
/// still 0.024 below 24 and refused.
const FPS_TOLERANCE: f64 = 0.01;

/// The per-field limits.
#[derive(Clone, Debug, PartialEq)]
pub struct VideoRules {
    pub min_duration_ms: u64,
    pub max_duration_ms: u64,
    pub min_side: u32,
    pub max_side: u32,
    pub min_fps: Option<f64>,
    pub max_fps: Option<f64>,
}

impl VideoRules {
    /// Motion-control reference video: 3–30 s (10 s when character_orientation is image),
    /// each side 340–3850 px.
    pub fn motion_control(orientation_is_image: bool) -> Self {
        Self {
            min_duration_ms: 3_000,
            max_duration_ms: if orientation_is_image { 10_000 } else { 30_000 },
            min_side: 340,
            max_side: 3850,
            min_fps: None,
            max_fps: None,
        }
    }

    /// Omni (Kling-Video-O1) reference video: 3–10 s, each side 720–2160 px, 24–60 fps.
    pub fn omni_reference() -> Self {
        Self {
            min_duration_ms: 3_000,
            max_duration_ms: 10_000,
            min_side: 720,
            max_side: 2160,
            min_fps: Some(24.0),
            max_fps: Some(60.0),
        }
    }

    /// A clip an element is described by: 3–8 s at 1080p (each side 1080–1920 px; the exact
    /// 16:9 or 9:16 frame is checked by the element service).
    pub fn element_reference() -> Self {
        Self {
            min_duration_ms: 3_000,
            max_duration_ms: 8_000,
            min_side: 1080,
            max_side: 1920,
            min_fps: None,
            max_fps: None,
        }
    }

    /// Checks duration, width, height and frame rate in that order and returns the first
    /// broken rule as [`MediaErrorKind::Rule`], e.g. `duration 2.5 s is outside 3..30 s`.
    pub fn check(&self, field: &str, info: &VideoInfo) -> Result<(), MediaError> {
        let broken = |detail: String| Err(MediaError::new(field, MediaErrorKind::Rule, detail));
        if !(self.min_duration_ms..=self.max_duration_ms).contains(&info.duration_ms) {
            return broken(format!(
                "duration {} s is outside {}..{} s",
                millis_as_seconds(info.duration_ms),
                millis_as_seconds(self.min_duration_ms),
                millis_as_seconds(self.max_duration_ms),
            ));
        }
        for (side, value) in [("width", info.width), ("height", info.height)] {
            if !(self.min_side..=self.max_side).contains(&value) {
                return broken(format!(
                    "{side} {value} px is outside {}..{} px",
                    self.min_side, self.max_side
                ));
            }
        }
        let too_slow = self
            .min_fps
            .is_some_and(|min| info.fps < min - FPS_TOLERANCE);
        let too_fast = self
            .max_fps
            .is_some_and(|max| info.fps > max + FPS_TOLERANCE);
        // NaN compares false everywhere, so it is refused explicitly when any limit is set.
        let unreadable = info.fps.is_nan() && (self.min_fps.is_some() || self.max_fps.is_some());
        if too_slow || too_fast || unreadable {
            let fps = decimal(info.fps);
            return broken(match (self.min_fps, self.max_fps) {
                (Some(min), Some(max)) => {
                    format!(
                        "frame rate {fps} fps is outside {}..{} fps",
                        decimal(min),
                        decimal(max)
                    )
                }
                (Some(min), None) => format!("frame rate {fps} fps is below {} fps", decimal(min)),
                (None, Some(max)) => format!("frame rate {fps} fps is above {} fps", decimal(max)),
                (None, None) => format!("frame rate {fps} fps is not usable"),
            });
        }
        Ok(())
    }
}

/// `2500` → `2.5`, `3000` → `3`, `3003` → `3.003`.
fn millis_as_seconds(ms: u64) -> String {
    let fraction = format!("{:03}", ms % 1000);
    let fraction = fraction.trim_end_matches('0');
    if fraction.is_empty() {
        format!("{}", ms / 1000)
    } else {
        format!("{}.{fraction}", ms / 1000)
    }
}

/// Up to three decimals, trailing zeros dropped: `23.976`, `29.97`, `24`.
fn decimal(value: f64) -> String {
    let text = format!("{value:.3}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_messages() {
        assert_eq!(millis_as_seconds(2500), "2.5");
        assert_eq!(millis_as_seconds(30_000), "30");
        assert_eq!(millis_as_seconds(3_003), "3.003");
        assert_eq!(millis_as_seconds(30_040), "30.04");
        assert_eq!(millis_as_seconds(7), "0.007");
        assert_eq!(decimal(24_000.0 / 1001.0), "23.976");
        assert_eq!(decimal(30_000.0 / 1001.0), "29.97");
        assert_eq!(decimal(60.0), "60");
        assert_eq!(decimal(f64::NAN), "NaN");
    }
}
