//! Motion brush: a static region that never changes and up to six dynamic regions that travel
//! along their trajectories over a hole-filled, gently shimmering background.
//!
//! Everything here works at output-frame size: the caller passes the prepared picture and the
//! masks already scaled to the frame (painted = luma ≥ 128). Per-render preparation (feathering,
//! hole fill, frame 0) allocates; [`MotionBrush::render`] only writes into caller buffers.

use super::{shift_rows, warp_plane, PlaneEdge, Transform, WarpError};
use crate::frame::{I420Frame, Plane};

pub const MAX_DYNAMIC_MASKS: usize = 6;
pub const MIN_TRAJECTORY_POINTS: usize = 2;
pub const MAX_TRAJECTORY_POINTS: usize = 77;
/// Feather radius as a fraction of the short side (three box passes).
const FEATHER_FRACTION: f64 = 0.01;
/// Hole-fill blur radius as a fraction of the short side.
const HOLE_FILL_FRACTION: f64 = 0.04;
/// Shimmer amplitude (fraction of W) and wavelength (fraction of H).
const SHIMMER_AMPLITUDE: f64 = 0.0015;
const SHIMMER_WAVELENGTH: f64 = 0.12;
/// The shimmer's amplitude eases in over this many seconds, from 0 at frame 0, so that the
/// first frame is exactly the picture (§3.4) and the wind does not start with a jolt.
const SHIMMER_FADE_IN_S: f64 = 1.0;
/// Luma (or alpha) at or above this is painted.
const PAINTED: u8 = 128;

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum BrushError {
    #[error(
        "a trajectory needs {MIN_TRAJECTORY_POINTS} to {MAX_TRAJECTORY_POINTS} points, got {0}"
    )]
    PointCount(usize),
    #[error("at most {MAX_DYNAMIC_MASKS} dynamic masks are allowed, got {0}")]
    TooManyMasks(usize),
    #[error("image and frame sizes must be non-zero")]
    EmptySize,
    #[error("mask is {got_w}x{got_h}, the frame is {want_w}x{want_h}")]
    MaskSize {
        got_w: usize,
        got_h: usize,
        want_w: usize,
        want_h: usize,
    },
    #[error(transparent)]
    Warp(#[from] WarpError),
}

/// A polyline in frame coordinates (top-left origin, continuous pixels).
#[derive(Clone, Debug, PartialEq)]
pub struct Trajectory {
    points: Vec<(f64, f64)>,
    /// Cumulative arc length at each point.
    lengths: Vec<f64>,
}

impl Trajectory {
    /// Converts request points (origin at the *bottom-left* of the input image) to frame
    /// coordinates: (x, h_img − y), then scaled by frame/image size. Consecutive duplicates
    /// are dropped after conversion.
    pub fn from_image_points(
        points: &[(i64, i64)],
        image_size: (usize, usize),
        frame_size: (usize, usize),
    ) -> Result<Self, BrushError> {
        if !(MIN_TRAJECTORY_POINTS..=MAX_TRAJECTORY_POINTS).contains(&points.len()) {
            return Err(BrushError::PointCount(points.len()));
        }
        let (iw, ih) = image_size;
        let (fw, fh) = frame_size;
        if iw == 0 || ih == 0 || fw == 0 || fh == 0 {
            return Err(BrushError::EmptySize);
        }
        let (sx, sy) = (fw as f64 / iw as f64, fh as f64 / ih as f64);
        let converted = points
            .iter()
            .map(|&(x, y)| (x as f64 * sx, (ih as f64 - y as f64) * sy));
        Ok(Self::from_frame_points(converted))
    }

    /// A polyline already in frame coordinates.
    pub fn from_frame_points(points: impl IntoIterator<Item = (f64, f64)>) -> Self {
        let mut kept: Vec<(f64, f64)> = Vec::new();
        for p in points {
            if kept.last() != Some(&p) {
                kept.push(p);
            }
        }
        let mut lengths = Vec::with_capacity(kept.len());
        let mut total = 0.0;
        for (k, p) in kept.iter().enumerate() {
            if k > 0 {
                let q = kept[k - 1];
                total += libm::hypot(p.0 - q.0, p.1 - q.1);
            }
            lengths.push(total);
        }
        Self {
            points: kept,
            lengths,
        }
    }

    pub fn points(&self) -> &[(f64, f64)] {
        &self.points
    }

    /// Total length Λ.
    pub fn length(&self) -> f64 {
        self.lengths.last().copied().unwrap_or(0.0)
    }

    /// The point at arc length `s` (clamped to the path).
    pub fn point_at(&self, s: f64) -> (f64, f64) {
        let Some(&first) = self.points.first() else {
            return (0.0, 0.0);
        };
        if self.points.len() == 1 || s <= 0.0 {
            return first;
        }
        // First segment whose end lies at or beyond s; the last one if s is past the end.
        let k = self
            .lengths
            .partition_point(|&l| l < s)
            .clamp(1, self.points.len() - 1);
        let (a, b) = (self.points[k - 1], self.points[k]);
        let (la, lb) = (self.lengths[k - 1], self.lengths[k]);
        let f = ((s - la) / (lb - la)).clamp(0.0, 1.0);
        (a.0 + (b.0 - a.0) * f, a.1 + (b.1 - a.1) * f)
    }

    /// D_i = P(Λ·i/(N−1)) − P(0): constant speed along the path, no easing.
    pub fn displacement(&self, frame_index: usize, frame_count: usize) -> (f64, f64) {
        let t = crate::camera::progress(frame_index, frame_count);
        let p = self.point_at(self.length() * t);
        let p0 = self.point_at(0.0);
        (p.0 - p0.0, p.1 - p0.1)
    }
}

/// Per-frame translations of every dynamic mask: `result[i][k]` is D_i of mask k.
pub fn mask_layers(trajectories: &[Trajectory], frame_count: usize) -> Vec<Vec<(f64, f64)>> {
    (0..frame_count)
        .map(|i| {
            trajectories
                .iter()
                .map(|t| t.displacement(i, frame_count))
                .collect()
        })
        .collect()
}

/// Radius in pixels for a fraction of the short side, at least 1.
fn radius(fraction: f64, w: usize, h: usize) -> usize {
    (libm::round(fraction * w.min(h) as f64) as usize).max(1)
}

/// One box-blur pass of radius r along rows (`horizontal`) or columns, edges clamped, each
/// output rounded to the nearest integer.
fn box_pass(src: &[u32], dst: &mut [u32], w: usize, h: usize, r: usize, horizontal: bool) {
    let (lines, len) = if horizontal { (h, w) } else { (w, h) };
    let at = |line: usize, k: usize| {
        if horizontal {
            line * w + k
        } else {
            k * w + line
        }
    };
    let taps = (2 * r + 1) as u64;
    for line in 0..lines {
        let value = |k: isize| src[at(line, k.clamp(0, len as isize - 1) as usize)] as u64;
        let mut sum: u64 = (-(r as isize)..=r as isize).map(value).sum();
        for k in 0..len {
            dst[at(line, k)] = ((sum + taps / 2) / taps) as u32;
            let k = k as isize;
            sum = sum + value(k + r as isize + 1) - value(k - r as isize);
        }
    }
}

/// Three box passes in each direction: a close, cheap approximation of a Gaussian.
fn blur3(values: &mut [u32], scratch: &mut [u32], w: usize, h: usize, r: usize) {
    for _ in 0..3 {
        box_pass(values, scratch, w, h, r, true);
        box_pass(scratch, values, w, h, r, false);
    }
}

fn plane_values(p: &Plane) -> Vec<u32> {
    (0..p.height)
        .flat_map(|y| p.row(y).iter().map(|&v| v as u32))
        .collect()
}

/// Binary mask (luma ≥ 128) feathered by three box passes of radius 1 % of the short side.
pub fn feather(mask: &Plane) -> Plane {
    feather_grown(mask, 0)
}

/// Grows a 0/255 mask by `d` pixels in each direction (square structuring element), using
/// per-line prefix counts so the cost does not depend on `d`.
fn dilate(values: &mut [u32], scratch: &mut [u32], w: usize, h: usize, d: usize) {
    for horizontal in [true, false] {
        let (lines, len) = if horizontal { (h, w) } else { (w, h) };
        let at = |line: usize, k: usize| {
            if horizontal {
                line * w + k
            } else {
                k * w + line
            }
        };
        let mut prefix = vec![0u32; len + 1];
        for line in 0..lines {
            for k in 0..len {
                prefix[k + 1] = prefix[k] + u32::from(values[at(line, k)] > 0);
            }
            for k in 0..len {
                let (lo, hi) = (k.saturating_sub(d), (k + d + 1).min(len));
                scratch[at(line, k)] = if prefix[hi] > prefix[lo] { 255 } else { 0 };
            }
        }
        values.copy_from_slice(scratch);
    }
}

/// [`feather`] after growing the painted area by `grow` pixels.
fn feather_grown(mask: &Plane, grow: usize) -> Plane {
    let (w, h) = (mask.width, mask.height);
    let mut values: Vec<u32> = plane_values(mask)
        .into_iter()
        .map(|v| if v >= PAINTED as u32 { 255 } else { 0 })
        .collect();
    let mut scratch = vec![0; values.len()];
    let r = radius(FEATHER_FRACTION, w, h);
    if grow > 0 {
        dilate(&mut values, &mut scratch, w, h, grow);
    }
    blur3(&mut values, &mut scratch, w, h, r);
    let mut out = Plane::new(w, h, 0);
    for (o, v) in out.data.iter_mut().zip(&values) {
        *o = (*v).min(255) as u8;
    }
    out
}

/// Chroma alpha: the 2×2 average of luma alpha, rounded.
fn chroma_alpha(luma: &Plane, out: &mut Plane) {
    for y in 0..out.height {
        for x in 0..out.width {
            let (x2, y2) = (2 * x, 2 * y);
            let sum = luma.get(x2, y2) as u32
                + luma.get(x2 + 1, y2) as u32
                + luma.get(x2, y2 + 1) as u32
                + luma.get(x2 + 1, y2 + 1) as u32;
            out.data[y * out.stride + x] = ((sum + 2) / 4) as u8;
        }
    }
}

/// dst = dst·(1 − a) + src·a with 8-bit alpha, rounded. a = 255 copies src exactly and a = 0
/// leaves dst untouched.
fn blend_plane(dst: &mut Plane, src: &Plane, alpha: &Plane) {
    for y in 0..dst.height {
        let (s, a) = (src.row(y), alpha.row(y));
        for ((d, &s), &a) in dst.row_mut(y).iter_mut().zip(s).zip(a) {
            let (d32, s32, a32) = (*d as u32, s as u32, a as u32);
            *d = ((d32 * (255 - a32) + s32 * a32 + 127) / 255) as u8;
        }
    }
}

/// Removes the alpha-covered part of `image` and fills it with the normalised blur
/// blur(image·(1−a)) / blur(1−a), so holes take the colours of their surroundings.
fn fill_holes(image: &Plane, alpha: &Plane, r: usize) -> Plane {
    let (w, h) = (image.width, image.height);
    let img = plane_values(image);
    let keep: Vec<u32> = plane_values(alpha).into_iter().map(|a| 255 - a).collect();
    let mut num: Vec<u32> = img.iter().zip(&keep).map(|(v, k)| v * k).collect();
    let mut den = keep.clone();
    let mut scratch = vec![0; num.len()];
    blur3(&mut num, &mut scratch, w, h, r);
    blur3(&mut den, &mut scratch, w, h, r);
    // A hole wider than the blur reach has no neighbours: it takes the mean of what is kept,
    // or stays as it was when nothing is kept at all.
    let total_keep: u64 = keep.iter().map(|&k| k as u64).sum();
    let total: u64 = img
        .iter()
        .zip(&keep)
        .map(|(&v, &k)| v as u64 * k as u64)
        .sum();
    let mean = (total + total_keep / 2)
        .checked_div(total_keep)
        .map(|m| m as u32);
    let mut out = Plane::new(w, h, 0);
    for (idx, o) in out.data.iter_mut().enumerate() {
        let fill = match (den[idx], mean) {
            (0, Some(m)) => m,
            (0, None) => img[idx],
            (d, _) => (num[idx] + d / 2) / d,
        };
        let a = 255 - keep[idx];
        *o = ((img[idx] * keep[idx] + fill.min(255) * a + 127) / 255) as u8;
    }
    out
}

struct Layer {
    alpha: Plane,
    trajectory: Trajectory,
}

/// Buffers reused across frames.
pub struct BrushScratch {
    layer: I420Frame,
    alpha: Plane,
    alpha_chroma: Plane,
}

/// A prepared motion-brush render.
pub struct MotionBrush {
    base: I420Frame,
    background: I420Frame,
    layers: Vec<Layer>,
    /// Static alpha for luma and chroma, if a static mask was given.
    static_alpha: Option<(Plane, Plane)>,
    frame_count: usize,
    fps: f64,
}

impl MotionBrush {
    /// `base` is the prepared picture at output size; masks are luma planes of the same size.
    pub fn new(
        base: &I420Frame,
        static_mask: Option<&Plane>,
        dynamic: Vec<(&Plane, Trajectory)>,
        frame_count: usize,
        fps: u32,
    ) -> Result<Self, BrushError> {
        if dynamic.len() > MAX_DYNAMIC_MASKS {
            return Err(BrushError::TooManyMasks(dynamic.len()));
        }
        let (w, h) = (base.width(), base.height());
        if w < 2 || h < 2 || fps == 0 {
            return Err(BrushError::EmptySize);
        }
        let check = |m: &Plane| {
            if m.width == w && m.height == h && m.data.len() >= m.stride * (h - 1) + w {
                Ok(())
            } else {
                Err(BrushError::MaskSize {
                    got_w: m.width,
                    got_h: m.height,
                    want_w: w,
                    want_h: h,
                })
            }
        };
        // Every region that moves leaves a hole. The hole is the mask grown by the feather's
        // reach (three passes of radius r) before feathering, so that it covers every painted
        // pixel fully: a hole cut with the soft layer alpha would leave a ghostly rim of the
        // moving object behind, and would leak its colours into the fill.
        let reach = 3 * radius(FEATHER_FRACTION, w, h);
        let mut holes = Plane::new(w, h, 0);
        let mut layers = Vec::with_capacity(dynamic.len());
        for (mask, trajectory) in dynamic {
            check(mask)?;
            let hole = feather_grown(mask, reach);
            for (u, &a) in holes.data.iter_mut().zip(&hole.data) {
                *u = (*u).max(a);
            }
            layers.push(Layer {
                alpha: feather(mask),
                trajectory,
            });
        }
        let static_alpha = match static_mask {
            Some(m) => {
                check(m)?;
                let luma = feather(m);
                let mut chroma = Plane::new(w / 2, h / 2, 0);
                chroma_alpha(&luma, &mut chroma);
                Some((luma, chroma))
            }
            None => None,
        };

        let mut holes_chroma = Plane::new(w / 2, h / 2, 0);
        chroma_alpha(&holes, &mut holes_chroma);
        let r = radius(HOLE_FILL_FRACTION, w, h);
        let background = I420Frame {
            y: fill_holes(&base.y, &holes, r),
            u: fill_holes(&base.u, &holes_chroma, r.div_ceil(2)),
            v: fill_holes(&base.v, &holes_chroma, r.div_ceil(2)),
        };

        Ok(Self {
            base: base.clone(),
            background,
            layers,
            static_alpha,
            frame_count,
            fps: fps as f64,
        })
    }

    pub fn scratch(&self) -> BrushScratch {
        let (w, h) = (self.base.width(), self.base.height());
        BrushScratch {
            layer: I420Frame::filled(w, h, (0, 0, 0)),
            alpha: Plane::new(w, h, 0),
            alpha_chroma: Plane::new(w / 2, h / 2, 0),
        }
    }

    /// Translations of each dynamic layer at frame i.
    pub fn displacements(&self, frame_index: usize) -> Vec<(f64, f64)> {
        self.layers
            .iter()
            .map(|l| l.trajectory.displacement(frame_index, self.frame_count))
            .collect()
    }

    /// Composes frame i into `out` (same size as the base picture).
    pub fn render(
        &self,
        frame_index: usize,
        scratch: &mut BrushScratch,
        out: &mut I420Frame,
    ) -> Result<(), BrushError> {
        let size = |f: &I420Frame| (f.y.width, f.y.height, f.u.width, f.u.height);
        let want = size(&self.base);
        let scratch_ok = size(&scratch.layer) == want
            && (scratch.alpha.width, scratch.alpha.height) == (want.0, want.1)
            && (scratch.alpha_chroma.width, scratch.alpha_chroma.height) == (want.2, want.3);
        if size(out) != want || !scratch_ok {
            return Err(WarpError::SizeMismatch.into());
        }
        if frame_index == 0 {
            // Frame 0 is the picture (§3.4). With every displacement and the shimmer at zero
            // the composition below differs from it only in the feathered rims of the dynamic
            // regions, where the hole fill shows through the soft alpha.
            for (o, b) in [
                (&mut out.y, &self.base.y),
                (&mut out.u, &self.base.u),
                (&mut out.v, &self.base.v),
            ] {
                for y in 0..o.height {
                    o.row_mut(y).copy_from_slice(b.row(y));
                }
            }
            return Ok(());
        }
        let (w, h) = (self.base.width() as f64, self.base.height() as f64);
        let tau = frame_index as f64 / self.fps;
        let fade = crate::camera::ease(tau / SHIMMER_FADE_IN_S);
        let amplitude = SHIMMER_AMPLITUDE * w * fade;
        let wavelength = SHIMMER_WAVELENGTH * h;
        // Row y's centre in luma rows is y + ½; a chroma row covers luma rows 2y and 2y+1.
        let wind = |luma_y: f64| {
            let phase = 2.0 * core::f64::consts::PI * (luma_y / wavelength + 0.5 * tau);
            amplitude * libm::sin(phase)
        };
        shift_rows(
            &self.background.y,
            |y| wind(y as f64 + 0.5),
            PlaneEdge::Clamp,
            &mut out.y,
        )?;
        let chroma_wind = |y: usize| wind(2.0 * y as f64 + 1.0) / 2.0;
        shift_rows(
            &self.background.u,
            chroma_wind,
            PlaneEdge::Clamp,
            &mut out.u,
        )?;
        shift_rows(
            &self.background.v,
            chroma_wind,
            PlaneEdge::Clamp,
            &mut out.v,
        )?;

        for layer in &self.layers {
            let (dx, dy) = layer.trajectory.displacement(frame_index, self.frame_count);
            // Output position p shows the base picture at p − D.
            let t = Transform::translation(-dx, -dy);
            let tc = t.chroma();
            warp_plane(&layer.alpha, &t, PlaneEdge::Fill(0), &mut scratch.alpha)?;
            chroma_alpha(&scratch.alpha, &mut scratch.alpha_chroma);
            warp_plane(&self.base.y, &t, PlaneEdge::Clamp, &mut scratch.layer.y)?;
            warp_plane(&self.base.u, &tc, PlaneEdge::Clamp, &mut scratch.layer.u)?;
            warp_plane(&self.base.v, &tc, PlaneEdge::Clamp, &mut scratch.layer.v)?;
            blend_plane(&mut out.y, &scratch.layer.y, &scratch.alpha);
            blend_plane(&mut out.u, &scratch.layer.u, &scratch.alpha_chroma);
            blend_plane(&mut out.v, &scratch.layer.v, &scratch.alpha_chroma);
        }

        if let Some((luma, chroma)) = &self.static_alpha {
            // Frame 0 is the base picture, so the static region keeps its pixels.
            blend_plane(&mut out.y, &self.base.y, luma);
            blend_plane(&mut out.u, &self.base.u, chroma);
            blend_plane(&mut out.v, &self.base.v, chroma);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trajectory_converts_bottom_left_origin_and_samples_by_arc_length() {
        let t = Trajectory::from_image_points(
            &[(0, 0), (0, 0), (30, 0), (30, 40)],
            (100, 50),
            (200, 100),
        )
        .expect("valid");
        // (x, h − y) then ×2: the first point is the bottom-left corner of the frame.
        assert_eq!(t.points(), &[(0.0, 100.0), (60.0, 100.0), (60.0, 20.0)]);
        assert_eq!(t.length(), 140.0);
        assert_eq!(t.point_at(60.0), (60.0, 100.0));
        assert_eq!(t.point_at(100.0), (60.0, 60.0));
        assert_eq!(t.displacement(0, 8), (0.0, 0.0));
        assert_eq!(t.displacement(7, 8), (60.0, -80.0));
        let half = t.displacement(1, 3);
        assert_eq!(half, (60.0, -10.0));
        assert!(Trajectory::from_image_points(&[(1, 1)], (10, 10), (10, 10)).is_err());
        let still =
            Trajectory::from_image_points(&[(3, 3), (3, 3)], (10, 10), (10, 10)).expect("valid");
        assert_eq!(still.displacement(5, 9), (0.0, 0.0));
    }

    #[test]
    fn box_blur_keeps_constants_and_feather_is_soft() {
        let mut v = vec![77u32; 40 * 30];
        let mut s = vec![0u32; v.len()];
        blur3(&mut v, &mut s, 40, 30, 3);
        assert!(v.iter().all(|&x| x == 77));
        let mut m = Plane::new(100, 100, 0);
        for y in 20..80 {
            m.row_mut(y)[20..80].fill(255);
        }
        let f = feather(&m);
        assert_eq!(f.get(50, 50), 255);
        assert_eq!(f.get(5, 5), 0);
        let edge = f.get(20, 50);
        assert!(edge > 60 && edge < 200, "{edge}");
    }
}
