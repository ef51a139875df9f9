//! Output geometry, timing, rate and the chunk plan: everything about a render that follows
//! from the request's numbers alone, before a single pixel is drawn.

use std::fmt;
use std::ops::Range;

/// Frames per second of every output. Fixed by the output contract.
pub const FPS: u32 = 24;

/// Ticks per second of the video track.
pub const VIDEO_TIMESCALE: u32 = 90_000;

/// Ticks per frame at [`VIDEO_TIMESCALE`]: every sample lasts exactly this long.
pub const TICKS_PER_FRAME: u32 = VIDEO_TIMESCALE / FPS;

/// Size class of an output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mode {
    Std,
    Pro,
    K4,
}

impl Mode {
    /// The spelling the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Std => "std",
            Self::Pro => "pro",
            Self::K4 => "4k",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "std" => Some(Self::Std),
            "pro" => Some(Self::Pro),
            "4k" => Some(Self::K4),
            _ => None,
        }
    }

    /// Short and long side of the mode's 16:9 frame.
    pub fn sides(self) -> (u32, u32) {
        match self {
            Self::Std => (720, 1280),
            Self::Pro => (1080, 1920),
            Self::K4 => (2160, 3840),
        }
    }

    /// H.264 `level_idc`: 3.1, 4.0 or 5.1.
    pub fn level_idc(self) -> u8 {
        match self {
            Self::Std => 31,
            Self::Pro => 40,
            Self::K4 => 51,
        }
    }

    /// Target bitrate of the mode's full 16:9 frame, in bit/s.
    fn reference_bitrate(self) -> u64 {
        match self {
            Self::Std => 5_000_000,
            Self::Pro => 10_000_000,
            Self::K4 => 30_000_000,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The three preset shapes of text2video.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Aspect {
    Landscape16x9,
    Portrait9x16,
    Square1x1,
}

impl Aspect {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Landscape16x9 => "16:9",
            Self::Portrait9x16 => "9:16",
            Self::Square1x1 => "1:1",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "16:9" => Some(Self::Landscape16x9),
            "9:16" => Some(Self::Portrait9x16),
            "1:1" => Some(Self::Square1x1),
            _ => None,
        }
    }
}

impl fmt::Display for Aspect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Output picture size, both sides even.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Size {
    pub width: u32,
    pub height: u32,
}

impl Size {
    pub const fn new(width: u32, height: u32) -> Self {
        Self { width, height }
    }

    pub fn pixels(self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }
}

/// The preset frame of a mode and aspect ratio.
pub fn preset_size(mode: Mode, aspect: Aspect) -> Size {
    let (short, long) = mode.sides();
    match aspect {
        Aspect::Landscape16x9 => Size::new(long, short),
        Aspect::Portrait9x16 => Size::new(short, long),
        Aspect::Square1x1 => Size::new(short, short),
    }
}

fn even_floor(v: u64) -> u32 {
    // The quotients below never exceed the mode's long side, so this cannot truncate.
    (v & !1) as u32
}

/// Contain-fit of a displayed input size into the mode's frame, keeping the input's shape.
/// `None` for a zero-sized input, or one so thin that a side would round to nothing.
pub fn contain_fit(mode: Mode, input_width: u32, input_height: u32) -> Option<Size> {
    if input_width == 0 || input_height == 0 {
        return None;
    }
    let (short, long) = mode.sides();
    let (w, h) = (u64::from(input_width), u64::from(input_height));
    let (s, l) = (u64::from(short), u64::from(long));
    let size = if w >= h {
        if w * s >= h * l {
            Size::new(long, even_floor(l * h / w))
        } else {
            Size::new(even_floor(s * w / h), short)
        }
    } else if h * s >= w * l {
        Size::new(even_floor(l * w / h), long)
    } else {
        Size::new(short, even_floor(s * h / w))
    };
    (size.width > 0 && size.height > 0).then_some(size)
}

/// Frame count of a whole-second duration.
pub fn frames_for_seconds(seconds: u32) -> u32 {
    FPS * seconds
}

/// Frame count of a duration measured from a video: ⌊24·D + ½⌋, so the last frame's
/// timestamp always falls inside the source.
pub fn frames_for_measured(duration_s: f64) -> u32 {
    if !duration_s.is_finite() || duration_s <= 0.0 {
        return 0;
    }
    let n = libm::floor(f64::from(FPS) * duration_s + 0.5);
    if n >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        n as u32
    }
}

/// The duration reported in the task result: N/24 rounded to milliseconds, trailing zeros
/// trimmed ("5", "10", "7.542").
pub fn duration_string(frames: u32) -> String {
    // Rounded half up in integers, so no float formatting is involved.
    let ms = (u64::from(frames) * 1000 * 2 + u64::from(FPS)) / (2 * u64::from(FPS));
    let (whole, frac) = (ms / 1000, ms % 1000);
    if frac == 0 {
        return whole.to_string();
    }
    let mut text = format!("{whole}.{frac:03}");
    while text.ends_with('0') {
        text.pop();
    }
    text
}

/// Target bitrate in bit/s: the mode's 16:9 rate scaled by pixel count, rounded to
/// 100 kbit/s (half up).
pub fn target_bitrate(mode: Mode, size: Size) -> u32 {
    let (short, long) = mode.sides();
    let reference_pixels = u64::from(short) * u64::from(long);
    let step = 100_000u64;
    let scaled_num = mode.reference_bitrate() * size.pixels();
    let denom = reference_pixels * step;
    let steps = (scaled_num * 2 + denom) / (2 * denom);
    // At most the 4k rate of 30 Mbit/s for frames that fit the mode, far inside u32.
    u32::try_from(steps.max(1) * step).unwrap_or(u32::MAX)
}

/// Peak bitrate: twice the target.
pub fn max_bitrate(target: u32) -> u32 {
    target.saturating_mul(2)
}

/// One closed GOP, encoded by its own encoder: frames `range` of the clip.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    pub range: Range<u32>,
}

impl Chunk {
    pub fn len(&self) -> u32 {
        self.range.end - self.range.start
    }

    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }
}

/// The chunk plan: a function of the frame count and the cut list only, never of the
/// machine, so the bytes never depend on the core count. Cuts outside `1..frames` and
/// repeated cuts are ignored.
pub fn chunk_plan(frames: u32, cuts: &[u32]) -> Vec<Chunk> {
    let mut bounds: Vec<u32> = cuts
        .iter()
        .copied()
        .filter(|&c| c > 0 && c < frames)
        .collect();
    bounds.sort_unstable();
    bounds.dedup();
    let mut chunks = Vec::new();
    let mut start = 0;
    for end in bounds.into_iter().chain(std::iter::once(frames)) {
        split_segment(start, end, &mut chunks);
        start = end;
    }
    chunks
}

fn split_segment(start: u32, end: u32, out: &mut Vec<Chunk>) {
    let n = end.saturating_sub(start);
    if n == 0 {
        return;
    }
    let mut k = n.div_ceil(60);
    // An even count balances the load on 2- and 4-core machines.
    if k > 1 && k % 2 == 1 {
        k += 1;
    }
    let (base, extra) = (n / k, n % k);
    let mut at = start;
    for i in 0..k {
        let len = base + u32::from(i < extra);
        out.push(Chunk {
            range: at..at + len,
        });
        at += len;
    }
}

/// Everything about the output stream that follows from the request's numbers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamPlan {
    pub mode: Mode,
    pub size: Size,
    pub frames: u32,
    pub bitrate: u32,
    pub max_bitrate: u32,
    pub level_idc: u8,
    pub chunks: Vec<Chunk>,
}

impl StreamPlan {
    pub fn new(mode: Mode, size: Size, frames: u32, cuts: &[u32]) -> Self {
        let bitrate = target_bitrate(mode, size);
        Self {
            mode,
            size,
            frames,
            bitrate,
            max_bitrate: max_bitrate(bitrate),
            level_idc: mode.level_idc(),
            chunks: chunk_plan(frames, cuts),
        }
    }

    /// Frame indices where an IDR (and an MP4 sync sample) falls.
    pub fn keyframes(&self) -> Vec<u32> {
        self.chunks.iter().map(|c| c.range.start).collect()
    }

    pub fn duration_string(&self) -> String {
        duration_string(self.frames)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preset_table() {
        use Aspect::*;
        use Mode::*;
        let cases = [
            (Std, Landscape16x9, 1280, 720, 5_000_000),
            (Std, Portrait9x16, 720, 1280, 5_000_000),
            (Std, Square1x1, 720, 720, 2_800_000),
            (Pro, Landscape16x9, 1920, 1080, 10_000_000),
            (Pro, Portrait9x16, 1080, 1920, 10_000_000),
            (Pro, Square1x1, 1080, 1080, 5_600_000),
            (K4, Landscape16x9, 3840, 2160, 30_000_000),
            (K4, Portrait9x16, 2160, 3840, 30_000_000),
            (K4, Square1x1, 2160, 2160, 16_900_000),
        ];
        for (mode, aspect, w, h, rate) in cases {
            let size = preset_size(mode, aspect);
            assert_eq!(size, Size::new(w, h), "{mode} {aspect}");
            assert_eq!(target_bitrate(mode, size), rate, "{mode} {aspect}");
            assert_eq!(max_bitrate(rate), 2 * rate);
        }
        assert_eq!(
            (Std.level_idc(), Pro.level_idc(), K4.level_idc()),
            (31, 40, 51)
        );
    }

    #[test]
    fn contain_fit_examples() {
        let std = |w, h| contain_fit(Mode::Std, w, h);
        assert_eq!(std(4032, 3024), Some(Size::new(960, 720)));
        assert_eq!(std(1000, 1000), Some(Size::new(720, 720)));
        assert_eq!(std(1080, 1920), Some(Size::new(720, 1280)));
        assert_eq!(std(2500, 1000), Some(Size::new(1280, 512)));
        assert_eq!(std(3000, 4000), Some(Size::new(720, 960)));
        assert_eq!(std(0, 10), None);
        assert_eq!(std(10_000, 1), None);
        assert_eq!(
            contain_fit(Mode::Pro, 1280, 720),
            Some(Size::new(1920, 1080))
        );
        assert_eq!(
            contain_fit(Mode::K4, 1000, 3000),
            Some(Size::new(1280, 3840))
        );
    }

    #[test]
    fn contain_fit_is_even_and_inside_the_frame() {
        for mode in [Mode::Std, Mode::Pro, Mode::K4] {
            let (s, l) = mode.sides();
            for w in (1..4000).step_by(97) {
                for h in (1..4000).step_by(89) {
                    if let Some(size) = contain_fit(mode, w, h) {
                        assert_eq!(size.width % 2, 0);
                        assert_eq!(size.height % 2, 0);
                        let (a, b) = if w >= h {
                            (size.width, size.height)
                        } else {
                            (size.height, size.width)
                        };
                        assert!(a <= l && b <= s, "{mode} {w}x{h} -> {size:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn frame_counts_and_durations() {
        assert_eq!(frames_for_seconds(5), 120);
        assert_eq!(frames_for_seconds(10), 240);
        assert_eq!(frames_for_seconds(3), 72);
        assert_eq!(frames_for_seconds(15), 360);
        assert_eq!(frames_for_measured(7.54), 181);
        assert_eq!(frames_for_measured(5.0), 120);
        assert_eq!(frames_for_measured(1.0 / 48.0), 1);
        assert_eq!(frames_for_measured(0.0), 0);
        assert_eq!(frames_for_measured(f64::NAN), 0);
        assert_eq!(duration_string(120), "5");
        assert_eq!(duration_string(240), "10");
        assert_eq!(duration_string(181), "7.542");
        assert_eq!(duration_string(12), "0.5");
        assert_eq!(duration_string(6), "0.25");
        assert_eq!(duration_string(1), "0.042");
    }

    fn lens(frames: u32, cuts: &[u32]) -> Vec<u32> {
        chunk_plan(frames, cuts).iter().map(Chunk::len).collect()
    }

    #[test]
    fn chunk_plan_examples() {
        assert_eq!(lens(120, &[]), vec![60, 60]);
        assert_eq!(lens(240, &[]), vec![60; 4]);
        assert_eq!(lens(72, &[]), vec![36, 36]);
        assert_eq!(lens(168, &[]), vec![42; 4]);
        assert_eq!(lens(360, &[]), vec![60; 6]);
        assert_eq!(lens(24, &[]), vec![24]);
        assert_eq!(lens(60, &[]), vec![60]);
        assert_eq!(lens(61, &[]), vec![31, 30]);
        assert_eq!(lens(0, &[]), Vec::<u32>::new());
        // A multi-shot cut splits first: 24 + 96 frames.
        assert_eq!(lens(120, &[24]), vec![24, 48, 48]);
        assert_eq!(lens(120, &[0, 120, 200, 24, 24]), vec![24, 48, 48]);
        let plan = StreamPlan::new(
            Mode::Std,
            preset_size(Mode::Std, Aspect::Landscape16x9),
            120,
            &[],
        );
        assert_eq!(plan.keyframes(), vec![0, 60]);
    }

    #[test]
    fn chunks_tile_the_clip() {
        for frames in 1..400 {
            let chunks = chunk_plan(frames, &[frames / 3, frames / 2]);
            let mut at = 0;
            for c in &chunks {
                assert_eq!(c.range.start, at);
                assert!(!c.is_empty() && c.len() <= 60);
                at = c.range.end;
            }
            assert_eq!(at, frames);
        }
    }
}
