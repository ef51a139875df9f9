//! Turning decoded pictures into engine frames: rotation to display orientation (exact
//! integer transposes) and a separable fixed-point resampler whose weights are computed once
//! per geometry in f64 (with `libm`) and applied to pixels in integers only.

use std::borrow::Cow;

use crate::frame::Plane;

/// Clockwise rotation that brings coded pictures to display orientation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Rotation {
    #[default]
    None,
    Cw90,
    Cw180,
    Cw270,
}

impl Rotation {
    /// From the 2×2 part (a, b, c, d) of a `tkhd` matrix in 16.16 fixed point. In ISO BMFF a
    /// point (x, y) is displayed at (a·x + c·y, b·x + d·y) plus the translation, so
    /// (0, 1, −1, 0) turns the picture 90° clockwise. Mirrored or skewed matrices are not
    /// rotations and count as none.
    pub fn from_matrix([a, b, c, d]: [i32; 4]) -> Self {
        match (a.signum(), b.signum(), c.signum(), d.signum()) {
            (1, 0, 0, 1) => Self::None,
            (0, 1, -1, 0) => Self::Cw90,
            (-1, 0, 0, -1) => Self::Cw180,
            (0, -1, 1, 0) => Self::Cw270,
            _ => Self::None,
        }
    }

    pub fn degrees(self) -> u32 {
        match self {
            Self::None => 0,
            Self::Cw90 => 90,
            Self::Cw180 => 180,
            Self::Cw270 => 270,
        }
    }

    /// Whether width and height trade places.
    pub fn swaps(self) -> bool {
        matches!(self, Self::Cw90 | Self::Cw270)
    }
}

/// Rotates a tightly packed `w`×`h` plane clockwise; returns it with its new width and
/// height (borrowed when there is nothing to turn).
pub fn rotate(src: &[u8], w: usize, h: usize, rotation: Rotation) -> (Cow<'_, [u8]>, usize, usize) {
    match rotation {
        Rotation::None => (Cow::Borrowed(src), w, h),
        Rotation::Cw180 => {
            let mut out = src.to_vec();
            out.reverse();
            (Cow::Owned(out), w, h)
        }
        Rotation::Cw90 | Rotation::Cw270 => {
            let mut out = vec![0u8; w * h];
            // Output is h wide and w tall.
            for y in 0..h {
                let row = &src[y * w..y * w + w];
                for (x, &v) in row.iter().enumerate() {
                    let (ox, oy) = if rotation == Rotation::Cw90 {
                        (h - 1 - y, x)
                    } else {
                        (y, w - 1 - x)
                    };
                    out[oy * h + ox] = v;
                }
            }
            (Cow::Owned(out), h, w)
        }
    }
}

/// Resampling filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// Bilinear, widened when shrinking (a triangle over the footprint) so it also
    /// low-passes. Lanczos3 would need three times the taps on every decoded frame.
    Triangle,
    /// Area average: each output pixel is the mean of the source area it covers (bilinear
    /// when enlarging).
    Area,
}

const WEIGHT_BITS: u32 = 14;
const WEIGHT_ONE: i32 = 1 << WEIGHT_BITS;

/// The weights of one axis: for output o, source samples `start[o]..start[o] + len[o]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Axis {
    start: Vec<usize>,
    offset: Vec<usize>,
    len: Vec<usize>,
    weights: Vec<i32>,
    identity: bool,
}

impl Axis {
    /// Maps `out_len` outputs onto the source span `[crop_start, crop_start + crop_len)` of
    /// a `src_len`-sample axis. Samples outside the source clamp to its edge.
    pub fn new(
        src_len: usize,
        out_len: usize,
        crop_start: f64,
        crop_len: f64,
        kernel: Kernel,
    ) -> Self {
        let identity = crop_start == 0.0 && crop_len == src_len as f64 && out_len == src_len;
        let scale = crop_len / out_len.max(1) as f64;
        let stretch = scale.max(1.0);
        let radius = match kernel {
            Kernel::Triangle => stretch,
            Kernel::Area => {
                if scale >= 1.0 {
                    scale / 2.0 + 1.0
                } else {
                    1.0
                }
            }
        };
        let last = src_len.saturating_sub(1) as i64;
        let mut axis = Self {
            start: Vec::with_capacity(out_len),
            offset: Vec::with_capacity(out_len),
            len: Vec::with_capacity(out_len),
            weights: Vec::new(),
            identity,
        };
        let mut raw: Vec<f64> = Vec::new();
        for o in 0..out_len {
            let centre = crop_start + (o as f64 + 0.5) * scale;
            let first = libm::floor(centre - radius) as i64;
            let end = libm::ceil(centre + radius) as i64;
            let lo = first.clamp(0, last);
            let hi = end.clamp(0, last);
            raw.clear();
            raw.resize((hi - lo + 1) as usize, 0.0);
            for j in first..=end {
                let x = j as f64 + 0.5 - centre;
                let w = match kernel {
                    Kernel::Triangle => (1.0 - (x / stretch).abs()).max(0.0),
                    Kernel::Area if scale >= 1.0 => {
                        // Overlap of pixel [j, j+1) with the footprint [c - s/2, c + s/2).
                        let a = (j as f64).max(centre - scale / 2.0);
                        let b = (j as f64 + 1.0).min(centre + scale / 2.0);
                        (b - a).max(0.0)
                    }
                    Kernel::Area => (1.0 - x.abs()).max(0.0),
                };
                raw[(j.clamp(lo, hi) - lo) as usize] += w;
            }
            let sum: f64 = raw.iter().sum();
            let quantised: Vec<i32> = raw
                .iter()
                .map(|&w| {
                    if sum != 0.0 {
                        libm::round(w / sum * f64::from(WEIGHT_ONE)) as i32
                    } else {
                        0
                    }
                })
                .collect();
            // Taps that round to zero cost time and change nothing: drop them at both ends.
            let skip = quantised.iter().take_while(|&&w| w == 0).count();
            let keep = quantised[skip..]
                .iter()
                .rposition(|&w| w != 0)
                .map_or(1, |p| p + 1);
            let taps = &quantised[skip.min(quantised.len() - 1)..][..keep];
            axis.start.push(lo as usize + skip.min(quantised.len() - 1));
            axis.offset.push(axis.weights.len());
            axis.len.push(taps.len());
            let base = axis.weights.len();
            let total: i32 = taps.iter().sum();
            axis.weights.extend_from_slice(taps);
            // Rounding may leave the sum a little off one; the largest weight absorbs it so
            // flat areas stay exactly flat.
            let (mut best, mut best_w) = (base, i32::MIN);
            for (k, &w) in axis.weights[base..].iter().enumerate() {
                if w > best_w {
                    best = base + k;
                    best_w = w;
                }
            }
            axis.weights[best] += WEIGHT_ONE - total;
        }
        axis
    }

    fn taps(&self, o: usize) -> (usize, &[i32]) {
        let off = self.offset[o];
        (self.start[o], &self.weights[off..off + self.len[o]])
    }

    fn out_len(&self) -> usize {
        self.start.len()
    }
}

fn clamp_round(acc: i32) -> u8 {
    ((acc + (1 << (WEIGHT_BITS - 1))) >> WEIGHT_BITS).clamp(0, 255) as u8
}

/// Resamples a tightly packed plane with precomputed axes: columns first (a pass that runs
/// along whole rows, which the compiler vectorises), then rows on the smaller result.
/// Every output sample depends only on its own taps, so the result is exact and repeatable.
pub fn resample(src: &[u8], w: usize, h: usize, x: &Axis, y: &Axis) -> Plane {
    let (ow, oh) = (x.out_len(), y.out_len());
    if x.identity && y.identity && ow == w && oh == h {
        return Plane {
            width: w,
            height: h,
            stride: w,
            data: src.to_vec(),
        };
    }
    let mut mid = vec![0u8; w * oh];
    if y.identity {
        mid.copy_from_slice(&src[..w * h]);
    } else {
        let mut acc = vec![0i32; w];
        for (o, out) in mid.chunks_exact_mut(w).enumerate() {
            let (start, taps) = y.taps(o);
            acc.fill(1 << (WEIGHT_BITS - 1));
            for (k, &wt) in taps.iter().enumerate() {
                let line = &src[(start + k) * w..(start + k + 1) * w];
                for (a, &v) in acc.iter_mut().zip(line) {
                    *a += wt * i32::from(v);
                }
            }
            for (dst, &a) in out.iter_mut().zip(&acc) {
                *dst = (a >> WEIGHT_BITS).clamp(0, 255) as u8;
            }
        }
    }
    if x.identity {
        return Plane {
            width: w,
            height: oh,
            stride: w,
            data: mid,
        };
    }
    let mut plane = Plane::new(ow, oh, 0);
    for r in 0..oh {
        let line = &mid[r * w..(r + 1) * w];
        for (o, dst) in plane.row_mut(r).iter_mut().enumerate() {
            let (start, taps) = x.taps(o);
            let acc: i32 = taps
                .iter()
                .zip(&line[start..start + taps.len()])
                .map(|(&wt, &v)| wt * i32::from(v))
                .sum();
            *dst = clamp_round(acc);
        }
    }
    plane
}

/// The source rectangle (x, y, width, height) that covers an `out_w`×`out_h` frame when a
/// `w`×`h` picture is scaled to cover it and centred: the overflowing axis is cropped evenly.
pub fn cover_crop(w: usize, h: usize, out_w: usize, out_h: usize) -> (f64, f64, f64, f64) {
    let (w, h, ow, oh) = (w as f64, h as f64, out_w as f64, out_h as f64);
    let scale = (ow / w).max(oh / h);
    let (cw, ch) = ((ow / scale).min(w), (oh / scale).min(h));
    ((w - cw) / 2.0, (h - ch) / 2.0, cw, ch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotations_round_trip() {
        let src: Vec<u8> = (0..12).collect();
        let (r90, w, h) = rotate(&src, 4, 3, Rotation::Cw90);
        assert_eq!((w, h), (3, 4));
        // The bottom-left source sample lands top-left after a clockwise turn.
        assert_eq!(r90[0], 8);
        let (r270, _, _) = rotate(&r90, 3, 4, Rotation::Cw180);
        let (back, w2, h2) = rotate(&r270, 3, 4, Rotation::Cw90);
        assert_eq!((w2, h2), (4, 3));
        assert_eq!(&back[..], &src[..]);
        assert_eq!(Rotation::from_matrix([0, 65536, -65536, 0]), Rotation::Cw90);
        assert_eq!(
            Rotation::from_matrix([0, -65536, 65536, 0]),
            Rotation::Cw270
        );
        assert_eq!(
            Rotation::from_matrix([-65536, 0, 0, -65536]),
            Rotation::Cw180
        );
        assert_eq!(Rotation::from_matrix([65536, 0, 0, -65536]), Rotation::None);
    }

    #[test]
    fn flat_stays_flat_and_identity_is_exact() {
        let src = vec![77u8; 64 * 36];
        for kernel in [Kernel::Triangle, Kernel::Area] {
            let x = Axis::new(64, 20, 3.5, 50.0, kernel);
            let y = Axis::new(36, 14, 0.0, 36.0, kernel);
            let p = resample(&src, 64, 36, &x, &y);
            assert!(p.data.iter().all(|&v| v == 77), "{kernel:?}");
        }
        let ramp: Vec<u8> = (0..64 * 36).map(|i| (i * 7 % 251) as u8).collect();
        let x = Axis::new(64, 64, 0.0, 64.0, Kernel::Triangle);
        let y = Axis::new(36, 36, 0.0, 36.0, Kernel::Triangle);
        assert_eq!(resample(&ramp, 64, 36, &x, &y).data, ramp);
        // Halving with the area kernel averages 2×2 blocks exactly.
        let x = Axis::new(64, 32, 0.0, 64.0, Kernel::Area);
        let y = Axis::new(36, 18, 0.0, 36.0, Kernel::Area);
        let half = resample(&ramp, 64, 36, &x, &y);
        let want = |bx: usize, by: usize| {
            let s: u32 = [(0, 0), (1, 0), (0, 1), (1, 1)]
                .iter()
                .map(|(dx, dy)| u32::from(ramp[(2 * by + dy) * 64 + 2 * bx + dx]))
                .sum();
            s as i32
        };
        for by in 0..18 {
            for bx in 0..32 {
                let got = i32::from(half.get(bx, by));
                assert!((got * 4 - want(bx, by)).abs() <= 4, "({bx},{by})");
            }
        }
    }

    #[test]
    fn cover_crop_centres_the_overflow() {
        assert_eq!(
            cover_crop(1920, 1080, 1280, 720),
            (0.0, 0.0, 1920.0, 1080.0)
        );
        let (x, y, w, h) = cover_crop(1000, 1000, 160, 90);
        assert_eq!((x, w), (0.0, 1000.0));
        assert!((h - 562.5).abs() < 1e-9 && (y - 218.75).abs() < 1e-9);
    }
}
