//! The colour grade of omni video edit (§3.11) and of extend's grade drift (§3.13): a luma tone
//! curve, chroma saturation and tint, and a vignette.
//!
//! The parameters are per-render floats drawn from the seed; everything that touches a pixel is
//! a 256-entry table or an integer gain map, so graded frames are bit-exact everywhere.

use std::f64::consts::TAU;

use crate::frame::{I420Frame, Plane};
use crate::seed::{sub_seed, SplitMix64};

/// Largest lift (black level shift), as a fraction of the 16–235 luma range.
pub const MAX_LIFT: f64 = 0.04;
/// Gamma range of the tone curve.
pub const GAMMA_RANGE: (f64, f64) = (0.85, 1.15);
/// Largest gain (white level shift), as a fraction of the 16–235 luma range.
pub const MAX_GAIN: f64 = 0.06;
/// Chroma saturation range.
pub const SATURATION_RANGE: (f64, f64) = (0.8, 1.25);
/// Largest tint offset, in chroma code values (length of the (Cb, Cr) offset).
pub const MAX_TINT: f64 = 6.0;
/// Largest vignette: the gain lost in the corners.
pub const MAX_VIGNETTE: f64 = 0.15;

/// Fractional bits of the vignette's shape and gain.
const VIGNETTE_BITS: u32 = 16;
const VIGNETTE_ONE: u32 = 1 << VIGNETTE_BITS;

/// A grade's parameters. The identity leaves every frame unchanged.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GradeParams {
    /// Black level shift, fraction of the luma range, within ±[`MAX_LIFT`].
    pub lift: f64,
    /// Midtone exponent: the curve is x^(1/gamma), so values above 1 brighten.
    pub gamma: f64,
    /// White level shift, fraction of the luma range, within ±[`MAX_GAIN`].
    pub gain: f64,
    /// Chroma scale about neutral.
    pub saturation: f64,
    /// (Cb, Cr) offset in code values; its length is at most [`MAX_TINT`].
    pub tint: (f64, f64),
    /// Gain lost in the corners, 0 to [`MAX_VIGNETTE`].
    pub vignette: f64,
}

impl GradeParams {
    pub const IDENTITY: GradeParams = GradeParams {
        lift: 0.0,
        gamma: 1.0,
        gain: 0.0,
        saturation: 1.0,
        tint: (0.0, 0.0),
        vignette: 0.0,
    };

    /// A grade drawn from `seed`. With a `tint_target` (a (Cb, Cr) colour, e.g. the mean of a
    /// reference palette) the tint points from neutral toward it and never overshoots it;
    /// otherwise its direction is seeded too. The draws happen in a fixed order whatever the
    /// target, so adding references changes the tint and nothing else.
    pub fn seeded(seed: u64, tint_target: Option<(f64, f64)>) -> Self {
        let mut rng = SplitMix64::new(sub_seed(seed, "grade", 0));
        let lift = rng.range(-MAX_LIFT, MAX_LIFT);
        let gamma = rng.range(GAMMA_RANGE.0, GAMMA_RANGE.1);
        let gain = rng.range(-MAX_GAIN, MAX_GAIN);
        let saturation = rng.range(SATURATION_RANGE.0, SATURATION_RANGE.1);
        let magnitude = rng.range(0.3 * MAX_TINT, MAX_TINT);
        let angle = rng.range(0.0, TAU);
        let vignette = rng.range(0.0, MAX_VIGNETTE);
        let tint = match tint_target {
            Some((cb, cr)) => {
                let (du, dv) = (cb - 128.0, cr - 128.0);
                let distance = libm::sqrt(du * du + dv * dv);
                if distance.is_finite() && distance > 1e-9 {
                    let m = magnitude.min(distance);
                    (du / distance * m, dv / distance * m)
                } else {
                    (0.0, 0.0)
                }
            }
            None => (magnitude * libm::cos(angle), magnitude * libm::sin(angle)),
        };
        Self {
            lift,
            gamma,
            gain,
            saturation,
            tint,
            vignette,
        }
    }

    /// The grade moved from the identity toward `self` by `strength` (0 = identity, 1 = self).
    pub fn scaled(&self, strength: f64) -> Self {
        let k = if strength.is_finite() {
            strength.clamp(0.0, 1.0)
        } else {
            0.0
        };
        Self {
            lift: self.lift * k,
            gamma: 1.0 + (self.gamma - 1.0) * k,
            gain: self.gain * k,
            saturation: 1.0 + (self.saturation - 1.0) * k,
            tint: (self.tint.0 * k, self.tint.1 * k),
            vignette: self.vignette * k,
        }
    }

    pub fn is_identity(&self) -> bool {
        *self == Self::IDENTITY
    }
}

/// A grade ready to apply: lookup tables for each plane and the vignette strength in fixed
/// point. Build it once per render (or once per frame for a drifting grade: it is cheap).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grade {
    luma: [u8; 256],
    cb: [u8; 256],
    cr: [u8; 256],
    /// Corner gain loss in units of 2^-16.
    vignette: u32,
    identity: bool,
}

impl Grade {
    pub fn new(params: &GradeParams) -> Self {
        let mut out = Self {
            luma: identity_table(),
            cb: identity_table(),
            cr: identity_table(),
            vignette: 0,
            identity: params.is_identity(),
        };
        if out.identity {
            return out;
        }
        let lift = clamp_finite(params.lift, -MAX_LIFT, MAX_LIFT, 0.0);
        let gain = clamp_finite(params.gain, -MAX_GAIN, MAX_GAIN, 0.0);
        let gamma = clamp_finite(params.gamma, GAMMA_RANGE.0, GAMMA_RANGE.1, 1.0);
        let sat = clamp_finite(
            params.saturation,
            SATURATION_RANGE.0,
            SATURATION_RANGE.1,
            1.0,
        );
        let (mut tu, mut tv) = (
            clamp_finite(params.tint.0, -MAX_TINT, MAX_TINT, 0.0),
            clamp_finite(params.tint.1, -MAX_TINT, MAX_TINT, 0.0),
        );
        let tint_len = libm::sqrt(tu * tu + tv * tv);
        if tint_len > MAX_TINT {
            tu *= MAX_TINT / tint_len;
            tv *= MAX_TINT / tint_len;
        }
        for (code, slot) in out.luma.iter_mut().enumerate() {
            // Codes outside 16–235 are clamped onto the curve's ends, so graded luma always
            // stays inside the limited range.
            let x = ((code as f64 - 16.0) / 219.0).clamp(0.0, 1.0);
            let v = lift + (1.0 + gain - lift) * libm::pow(x, 1.0 / gamma);
            *slot = quantise(16.0 + 219.0 * v.clamp(0.0, 1.0), 16.0, 235.0);
        }
        for (code, (u, v)) in out.cb.iter_mut().zip(out.cr.iter_mut()).enumerate() {
            let c = code as f64 - 128.0;
            *u = quantise(128.0 + c * sat + tu, 16.0, 240.0);
            *v = quantise(128.0 + c * sat + tv, 16.0, 240.0);
        }
        let vignette = clamp_finite(params.vignette, 0.0, MAX_VIGNETTE, 0.0);
        out.vignette = libm::round(vignette * f64::from(VIGNETTE_ONE)) as u32;
        out
    }

    pub fn identity() -> Self {
        Self::new(&GradeParams::IDENTITY)
    }

    pub fn is_identity(&self) -> bool {
        self.identity
    }

    /// The luma tone curve.
    pub fn luma_table(&self) -> &[u8; 256] {
        &self.luma
    }

    /// Grades `frame` in place. `shape` must have been built for the frame's size; a shape of
    /// another size is an error rather than a silently skipped vignette.
    pub fn apply(&self, shape: &VignetteShape, frame: &mut I420Frame) -> Result<(), GradeError> {
        if self.identity {
            return Ok(());
        }
        if shape.width != frame.width() || shape.height != frame.height() {
            return Err(GradeError::SizeMismatch);
        }
        let cw = frame.u.width;
        for y in 0..frame.y.height {
            let row = frame.y.row_mut(y);
            let gains = &shape.luma[y * shape.width..(y + 1) * shape.width];
            for (p, &s) in row.iter_mut().zip(gains) {
                let graded = self.luma[usize::from(*p)];
                *p = vignette_luma(graded, self.gain_at(s));
            }
        }
        for (plane, table) in [(&mut frame.u, &self.cb), (&mut frame.v, &self.cr)] {
            for y in 0..plane.height {
                let gains = &shape.chroma[y * cw..(y + 1) * cw];
                for (p, &s) in plane.row_mut(y).iter_mut().zip(gains) {
                    let graded = table[usize::from(*p)];
                    *p = vignette_chroma(graded, self.gain_at(s));
                }
            }
        }
        Ok(())
    }

    /// Gain at a pixel of vignette shape `s` (both in units of 2^-16).
    fn gain_at(&self, s: u32) -> u32 {
        VIGNETTE_ONE - ((u64::from(self.vignette) * u64::from(s)) >> VIGNETTE_BITS) as u32
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GradeError {
    #[error("the vignette was built for another frame size")]
    SizeMismatch,
}

/// The vignette's shape: squared distance from the frame centre, 0 there and 1 in the corners,
/// in units of 2^-16, for every luma and every chroma sample. Computed once per frame size, in
/// integers, and shared by every frame and every grade strength.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VignetteShape {
    width: usize,
    height: usize,
    luma: Vec<u32>,
    chroma: Vec<u32>,
}

impl VignetteShape {
    /// `width` and `height` must be even (I420).
    pub fn new(width: usize, height: usize) -> Self {
        // Positions are doubled so that pixel centres are integers: luma pixel x has its
        // centre at 2x+1, chroma pixel x at 4x+2, the frame centre at W.
        let radius2 = (width as u64).pow(2) + (height as u64).pow(2);
        let shape = |dx: i64, dy: i64| -> u32 {
            let d2 = (dx * dx + dy * dy) as u64;
            (d2 << VIGNETTE_BITS)
                .checked_div(radius2)
                .map_or(0, |v| v.min(u64::from(VIGNETTE_ONE)) as u32)
        };
        let (w, h) = (width as i64, height as i64);
        let mut luma = Vec::with_capacity(width * height);
        for y in 0..h {
            for x in 0..w {
                luma.push(shape(2 * x + 1 - w, 2 * y + 1 - h));
            }
        }
        let (cw, ch) = (w / 2, h / 2);
        let mut chroma = Vec::with_capacity((cw * ch) as usize);
        for y in 0..ch {
            for x in 0..cw {
                chroma.push(shape(4 * x + 2 - w, 4 * y + 2 - h));
            }
        }
        Self {
            width,
            height,
            luma,
            chroma,
        }
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn height(&self) -> usize {
        self.height
    }
}

fn identity_table() -> [u8; 256] {
    let mut t = [0u8; 256];
    for (i, v) in t.iter_mut().enumerate() {
        *v = i as u8;
    }
    t
}

fn clamp_finite(v: f64, lo: f64, hi: f64, fallback: f64) -> f64 {
    if v.is_finite() {
        v.clamp(lo, hi)
    } else {
        fallback
    }
}

fn quantise(v: f64, lo: f64, hi: f64) -> u8 {
    libm::floor(v + 0.5).clamp(lo, hi) as u8
}

/// Darkens toward black (code 16); codes below black are left alone.
fn vignette_luma(y: u8, gain: u32) -> u8 {
    if gain >= VIGNETTE_ONE || y <= 16 {
        return y;
    }
    let d = u32::from(y - 16);
    16 + ((d * gain + VIGNETTE_ONE / 2) >> VIGNETTE_BITS) as u8
}

/// Scales chroma toward neutral by the same gain, as darkening R'G'B' would.
fn vignette_chroma(c: u8, gain: u32) -> u8 {
    if gain >= VIGNETTE_ONE {
        return c;
    }
    let d = i64::from(c) - 128;
    let scaled = (d * i64::from(gain) + i64::from(VIGNETTE_ONE / 2)) >> VIGNETTE_BITS;
    (128 + scaled).clamp(0, 255) as u8
}

/// The mean (Cb, Cr) of a plane pair, as a tint target.
pub fn mean_chroma(u: &Plane, v: &Plane) -> (f64, f64) {
    let mean = |p: &Plane| {
        let (mut sum, mut n) = (0u64, 0u64);
        for y in 0..p.height {
            sum += p.row(y).iter().map(|&c| u64::from(c)).sum::<u64>();
            n += p.width as u64;
        }
        if n == 0 {
            128.0
        } else {
            sum as f64 / n as f64
        }
    };
    (mean(u), mean(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(width: usize, height: usize) -> I420Frame {
        let mut f = I420Frame::filled(width, height, (0, 0, 0));
        for (i, p) in f.y.data.iter_mut().enumerate() {
            *p = (i % 256) as u8;
        }
        for (i, p) in f.u.data.iter_mut().enumerate() {
            *p = (i * 7 % 256) as u8;
        }
        for (i, p) in f.v.data.iter_mut().enumerate() {
            *p = (i * 13 % 256) as u8;
        }
        f
    }

    #[test]
    fn identity_changes_nothing() {
        let shape = VignetteShape::new(64, 32);
        let original = ramp(64, 32);
        let mut f = original.clone();
        Grade::identity().apply(&shape, &mut f).unwrap();
        assert_eq!(f, original);
        let mut f = original.clone();
        Grade::new(&GradeParams::seeded(7, None).scaled(0.0))
            .apply(&shape, &mut f)
            .unwrap();
        assert_eq!(f, original);
    }

    #[test]
    fn seeded_parameters_stay_in_range() {
        for seed in 0..500u64 {
            for target in [None, Some((90.0, 170.0)), Some((128.0, 128.0))] {
                let p = GradeParams::seeded(seed, target);
                assert!(p.lift.abs() <= MAX_LIFT);
                assert!((GAMMA_RANGE.0..=GAMMA_RANGE.1).contains(&p.gamma));
                assert!(p.gain.abs() <= MAX_GAIN);
                assert!((SATURATION_RANGE.0..=SATURATION_RANGE.1).contains(&p.saturation));
                assert!(libm::sqrt(p.tint.0 * p.tint.0 + p.tint.1 * p.tint.1) <= MAX_TINT + 1e-9);
                assert!((0.0..=MAX_VIGNETTE).contains(&p.vignette));
                let g = Grade::new(&p);
                assert!(g.luma.iter().all(|&v| (16..=235).contains(&v)));
                // The tone curve never inverts.
                assert!(g.luma.windows(2).all(|w| w[0] <= w[1]));
            }
        }
    }

    #[test]
    fn tint_points_toward_the_target_without_passing_it() {
        let p = GradeParams::seeded(3, Some((118.0, 140.0)));
        let (du, dv) = (-10.0, 12.0);
        let cross = p.tint.0 * dv - p.tint.1 * du;
        let dot = p.tint.0 * du + p.tint.1 * dv;
        assert!(cross.abs() < 1e-9 && dot > 0.0, "{:?}", p.tint);
        let near = GradeParams::seeded(3, Some((129.0, 128.0)));
        assert!(near.tint.0 <= 1.0 + 1e-9 && near.tint.1.abs() < 1e-9);
        assert_eq!(
            GradeParams::seeded(3, Some((128.0, 128.0))).tint,
            (0.0, 0.0)
        );
        // Only the tint depends on the target.
        let a = GradeParams::seeded(3, None);
        assert_eq!((a.lift, a.gamma, a.vignette), (p.lift, p.gamma, p.vignette));
    }

    #[test]
    fn curve_end_points_follow_lift_and_gain() {
        let p = GradeParams {
            lift: 0.04,
            gain: -0.06,
            ..GradeParams::IDENTITY
        };
        let g = Grade::new(&p);
        assert_eq!(g.luma[16], quantise(16.0 + 219.0 * 0.04, 0.0, 255.0));
        assert_eq!(g.luma[235], quantise(16.0 + 219.0 * 0.94, 0.0, 255.0));
        assert_eq!(g.luma[0], g.luma[16]);
        assert_eq!(g.luma[255], g.luma[235]);
        let bright = Grade::new(&GradeParams {
            gamma: 1.15,
            ..GradeParams::IDENTITY
        });
        assert!(bright.luma[126] > 126);
    }

    #[test]
    fn saturation_and_tint_move_chroma() {
        let g = Grade::new(&GradeParams {
            saturation: 1.25,
            tint: (-4.0, 3.0),
            ..GradeParams::IDENTITY
        });
        assert_eq!(g.cb[128], 124);
        assert_eq!(g.cr[128], 131);
        assert_eq!(g.cb[168], 174); // 128 + 40·1.25 − 4
    }

    #[test]
    fn vignette_darkens_corners_not_the_centre() {
        let (w, h) = (64, 36);
        let shape = VignetteShape::new(w, h);
        let g = Grade::new(&GradeParams {
            vignette: 0.15,
            ..GradeParams::IDENTITY
        });
        let mut f = I420Frame::filled(w, h, (200, 170, 90));
        g.apply(&shape, &mut f).unwrap();
        let centre = f.y.get(w / 2, h / 2);
        let corner = f.y.get(0, 0);
        assert!(centre >= 199, "{centre}");
        // Corner pixel centres lie just inside the corner: about 14 % darker.
        assert!((170..=175).contains(&corner), "{corner}");
        assert!(f.u.get(0, 0) < 170 && f.v.get(0, 0) > 90);
        assert_eq!(f.y.get(3, 5), f.y.get(w - 4, h - 6), "symmetric");
        let mut wrong = I420Frame::filled(32, 32, (200, 128, 128));
        assert_eq!(g.apply(&shape, &mut wrong), Err(GradeError::SizeMismatch));
    }

    #[test]
    fn same_input_same_output() {
        let shape = VignetteShape::new(32, 16);
        let g = Grade::new(&GradeParams::seeded(11, Some((100.0, 150.0))));
        let mut a = ramp(32, 16);
        let mut b = ramp(32, 16);
        g.apply(&shape, &mut a).unwrap();
        g.apply(&shape, &mut b).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, ramp(32, 16));
    }
}
