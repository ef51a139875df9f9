//! Fixed-point warps of I420 frames.
//!
//! A [`Transform`] maps every *output* position to a *source* position (inverse mapping), in
//! continuous pixel coordinates: pixel (x, y) covers [x, x+1) × [y, y+1), so its centre is
//! (x+½, y+½). Chroma planes use the same convention at half resolution, which makes the chroma
//! matrix down(½)·M·up(2) (see [`Transform::chroma`]).
//!
//! Floating point is only used once per frame (or per knot, every 16 or 32 output pixels, for
//! homographies, and there only to build integers): every per-pixel quantity is an integer,
//! so the bytes produced depend on nothing but the inputs.

use crate::frame::{I420Frame, Plane};

#[cfg(target_arch = "x86_64")]
mod avx512;
pub mod brush;

/// Fractional bits of source positions. 32 bits keep the error accumulated along a row of
/// 32 768 pixels far below one 8-bit interpolation step.
const FRAC: u32 = 32;
const ONE: i64 = 1 << FRAC;
const HALF: i64 = 1 << (FRAC - 1);
/// Bits of the bilinear weights; 8 bits keep the 2×2 sum of products inside `u32`.
const WEIGHT_BITS: u32 = 8;
const WEIGHT_ONE: u32 = 1 << WEIGHT_BITS;
const WEIGHT_MASK: i64 = (1 << WEIGHT_BITS) - 1;
/// Source positions are saturated to ±2^20 pixels: anything that far out is outside every
/// plane, and the bound keeps all row arithmetic inside `i64`.
const POS_LIMIT: i64 = 1 << (20 + FRAC);
/// A homography is evaluated exactly at knots every [`KnotStep`] output pixels of a row and
/// interpolated linearly in between, in segments of `HOMOGRAPHY_STEP` pixels (the kernels'
/// unit: a knot interval is one or two segments). Changing either changes output bytes
/// (engine revision).
pub const HOMOGRAPHY_STEP: usize = 16;
/// Homography positions between knots keep 16 fractional bits (16.16 fixed point): within a
/// knot interval of at most 32 pixels the truncated step drifts by less than 2^−11 pixel, and
/// the kernels can compute positions in 32-bit lanes. The low bits of a segment's start and
/// step are cleared with [`SEGMENT_POSITION_MASK`].
const SEGMENT_FRAC: u32 = 16;
const SEGMENT_POSITION_MASK: i64 = !((1 << (FRAC - SEGMENT_FRAC)) - 1);
/// The largest interpolation error a longer knot step may bring, in source pixels: what the
/// short step already allowed at the strongest camera turns, so the longer step never makes
/// a frame less accurate than that.
const MILD_ERROR_LIMIT: f64 = 1.0 / 16.0;
/// Largest output plane side; with the affine limits below it bounds every row position.
pub const MAX_SIDE: usize = 1 << 15;
/// Largest source plane side.
pub const MAX_SOURCE_SIDE: usize = 1 << 24;
/// Limits on an affine matrix: linear coefficients (scale/shear) and offsets in pixels.
const AFFINE_LINEAR_LIMIT: f64 = 4096.0;
const AFFINE_OFFSET_LIMIT: f64 = (1u64 << 24) as f64;

/// A 3×3 projective matrix mapping output positions to source positions, row-major, acting on
/// column vectors (x, y, 1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Transform {
    pub m: [[f64; 3]; 3],
}

impl Default for Transform {
    fn default() -> Self {
        Self::IDENTITY
    }
}

impl std::ops::Mul for Transform {
    type Output = Transform;

    /// `a * b` applies `b` first, then `a`.
    fn mul(self, rhs: Transform) -> Transform {
        let mut m = [[0.0; 3]; 3];
        for (i, row) in m.iter_mut().enumerate() {
            for (j, cell) in row.iter_mut().enumerate() {
                *cell = self.m[i][0] * rhs.m[0][j]
                    + self.m[i][1] * rhs.m[1][j]
                    + self.m[i][2] * rhs.m[2][j];
            }
        }
        Transform { m }
    }
}

impl Transform {
    pub const IDENTITY: Transform = Transform {
        m: [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
    };

    pub fn from_rows(m: [[f64; 3]; 3]) -> Self {
        Self { m }
    }

    pub fn translation(tx: f64, ty: f64) -> Self {
        Self {
            m: [[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]],
        }
    }

    pub fn scale(sx: f64, sy: f64) -> Self {
        Self {
            m: [[sx, 0.0, 0.0], [0.0, sy, 0.0], [0.0, 0.0, 1.0]],
        }
    }

    /// Scaling by `s` about the point (cx, cy), written out so that `s = 1` is exactly the
    /// identity (no rounding from composing translations).
    pub fn scale_about(s: f64, cx: f64, cy: f64) -> Self {
        Self {
            m: [
                [s, 0.0, cx - s * cx],
                [0.0, s, cy - s * cy],
                [0.0, 0.0, 1.0],
            ],
        }
    }

    /// True when the bottom row is (0, 0, 1) up to a non-zero factor, so no division per pixel
    /// is needed.
    pub fn is_affine(&self) -> bool {
        self.m[2][0] == 0.0 && self.m[2][1] == 0.0 && self.m[2][2] != 0.0
    }

    pub fn is_finite(&self) -> bool {
        self.m.iter().flatten().all(|v| v.is_finite())
    }

    /// Maps a point; `None` when it lands on or behind the projection's horizon.
    pub fn apply(&self, x: f64, y: f64) -> Option<(f64, f64)> {
        let m = &self.m;
        let w = m[2][0] * x + m[2][1] * y + m[2][2];
        if w <= 0.0 || !w.is_finite() {
            return None;
        }
        let u = (m[0][0] * x + m[0][1] * y + m[0][2]) / w;
        let v = (m[1][0] * x + m[1][1] * y + m[1][2]) / w;
        Some((u, v))
    }

    /// The same mapping for planes at half resolution: down(½)·M·up(2).
    pub fn chroma(&self) -> Transform {
        Transform::scale(0.5, 0.5) * *self * Transform::scale(2.0, 2.0)
    }

    /// `Some((tx, ty))` when the transform is exactly a translation by whole pixels, the case
    /// that becomes a plain copy.
    pub fn integer_translation(&self) -> Option<(i64, i64)> {
        let m = &self.m;
        let linear_is_identity = m[0][0] == 1.0
            && m[0][1] == 0.0
            && m[1][0] == 0.0
            && m[1][1] == 1.0
            && m[2][0] == 0.0
            && m[2][1] == 0.0
            && m[2][2] == 1.0;
        let (tx, ty) = (m[0][2], m[1][2]);
        let whole = |v: f64| v.is_finite() && v == libm::trunc(v) && v.abs() <= AFFINE_OFFSET_LIMIT;
        if linear_is_identity && whole(tx) && whole(ty) {
            Some((tx as i64, ty as i64))
        } else {
            None
        }
    }
}

/// What an output pixel receives when its source position is outside the source plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlaneEdge {
    /// Positions outside are moved to the nearest edge sample.
    Clamp,
    /// Positions outside the plane's area [0, w) × [0, h) get this value; positions inside the
    /// area but within half a pixel of its border interpolate against the clamped edge.
    Fill(u8),
}

/// [`PlaneEdge`] for a whole frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edge {
    Clamp,
    /// Fill colour as limited-range (Y, U, V).
    Fill(u8, u8, u8),
}

impl Edge {
    fn planes(self) -> [PlaneEdge; 3] {
        match self {
            Edge::Clamp => [PlaneEdge::Clamp; 3],
            Edge::Fill(y, u, v) => [PlaneEdge::Fill(y), PlaneEdge::Fill(u), PlaneEdge::Fill(v)],
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WarpError {
    #[error("plane {width}x{height} with stride {stride} and {len} bytes is malformed")]
    BadPlane {
        width: usize,
        height: usize,
        stride: usize,
        len: usize,
    },
    #[error(
        "planes are limited to {MAX_SIDE} (output) and {MAX_SOURCE_SIDE} (source) samples per side"
    )]
    TooLarge,
    #[error("transform is not finite or exceeds the kernel's fixed-point range")]
    TransformOutOfRange,
    #[error("frames differ in size")]
    SizeMismatch,
}

fn check_plane(p: &Plane) -> Result<(), WarpError> {
    let bad = WarpError::BadPlane {
        width: p.width,
        height: p.height,
        stride: p.stride,
        len: p.data.len(),
    };
    if p.width == 0 || p.height == 0 || p.stride < p.width {
        return Err(bad);
    }
    let needed = (p.height - 1)
        .checked_mul(p.stride)
        .and_then(|v| v.checked_add(p.width));
    match needed {
        Some(n) if n <= p.data.len() => Ok(()),
        _ => Err(bad),
    }
}

/// Warps all three planes of `src` into `dst` (whose size is the output size); the chroma
/// planes use [`Transform::chroma`]. Only axis-aligned moves allocate (small per-column
/// tables, once per plane).
pub fn warp_frame(
    src: &I420Frame,
    transform: &Transform,
    edge: Edge,
    dst: &mut I420Frame,
) -> Result<(), WarpError> {
    let [ey, eu, ev] = edge.planes();
    let chroma = transform.chroma();
    warp_plane(&src.y, transform, ey, &mut dst.y)?;
    warp_plane(&src.u, &chroma, eu, &mut dst.u)?;
    warp_plane(&src.v, &chroma, ev, &mut dst.v)
}

/// Warps one plane. Integer translations (including the identity) are copied; other affine
/// matrices use the affine kernel; anything with perspective uses the interpolated homography
/// kernel.
pub fn warp_plane(
    src: &Plane,
    transform: &Transform,
    edge: PlaneEdge,
    dst: &mut Plane,
) -> Result<(), WarpError> {
    warp_plane_with(src, transform, edge, dst, simd_available())
}

/// [`warp_plane`] with the SIMD kernel allowed or not; both give the same bytes.
fn warp_plane_with(
    src: &Plane,
    transform: &Transform,
    edge: PlaneEdge,
    dst: &mut Plane,
    simd: bool,
) -> Result<(), WarpError> {
    let paths = Paths { simd, ..Paths::ALL };
    warp_plane_paths(src, transform, edge, dst, paths)
}

/// The code paths a warp may take besides the general one. Every combination gives the same
/// bytes; the tests turn them off one at a time to compare.
#[derive(Clone, Copy, Debug)]
struct Paths {
    /// The SIMD kernels, where the CPU has them.
    simd: bool,
    /// The separable path for axis-aligned affine matrices.
    separable: bool,
    /// Whole 32-pixel knot intervals on the AVX-512 kernel (otherwise their segments go
    /// through the segment kernels, as on CPUs without AVX-512).
    intervals: bool,
}

impl Paths {
    const ALL: Paths = Paths {
        simd: true,
        separable: true,
        intervals: true,
    };
    /// The general path alone: the reference the others are compared with.
    #[cfg(test)]
    const GENERAL: Paths = Paths {
        simd: false,
        separable: false,
        intervals: false,
    };
}

/// [`warp_plane`] on the given paths.
fn warp_plane_paths(
    src: &Plane,
    transform: &Transform,
    edge: PlaneEdge,
    dst: &mut Plane,
    paths: Paths,
) -> Result<(), WarpError> {
    let simd = paths.simd;
    check_plane(src)?;
    check_plane(dst)?;
    // Source sides below 2^24 keep `side · 2^32` (the span bounds) inside i64.
    let source_too_large = src.width > MAX_SOURCE_SIDE || src.height > MAX_SOURCE_SIDE;
    if dst.width > MAX_SIDE || dst.height > MAX_SIDE || source_too_large {
        return Err(WarpError::TooLarge);
    }
    if !transform.is_finite() {
        return Err(WarpError::TransformOutOfRange);
    }
    if let Some((tx, ty)) = transform.integer_translation() {
        copy_translated(src, tx, ty, edge, dst);
        return Ok(());
    }
    if transform.is_affine() {
        let fx = AffineFx::new(transform)?;
        if paths.separable && fx.b == 0 && fx.d == 0 {
            separable_affine(src, &fx, edge, dst, simd);
            return Ok(());
        }
        // Strip by strip (see `STRIP`); every pixel's position is the same as on a whole row.
        for x0 in (0..dst.width).step_by(STRIP) {
            let x1 = (x0 + STRIP).min(dst.width);
            let first = x0 as i64;
            for y in 0..dst.height {
                let (s0, t0) = fx.row_start(y);
                let (s, t) = (s0 + first * fx.a, t0 + first * fx.d);
                let out = &mut dst.row_mut(y)[x0..x1];
                linear_run(src, s, fx.a, t, fx.d, edge, out, simd);
            }
        }
    } else {
        let fx = HomographyFx::new(transform)?;
        let step = fx.knot_step(dst.width, dst.height);
        let mut scratch = RowScratch::new();
        for x0 in (0..dst.width).step_by(STRIP) {
            let x1 = (x0 + STRIP).min(dst.width);
            for y in 0..dst.height {
                let out = &mut dst.row_mut(y)[x0..x1];
                homography_row(src, &fx, (x0, y), step, edge, out, paths, &mut scratch);
            }
        }
    }
    Ok(())
}

/// Output columns per strip. Warps whose rows cross source rows (rotations, perspective) run
/// strip by strip, top to bottom, so that the source lines one output row reads are still in
/// cache for the next; a whole row at a time evicted them first. A multiple of
/// both knot steps, so the knots are where they are on whole rows.
const STRIP: usize = 256;

/// Axis-aligned affine warps (no rotation or shear: b = d = 0 in fixed point) are separable:
/// every output row samples one pair of source rows with one vertical weight, and every output
/// column one pair of source columns with one horizontal weight, the same on every row.
/// Bilinear interpolation is a sum of integer products, so blending the two rows first (into
/// the 16-bit sums p0·(256−fy) + p1·fy, at most 65 280) and the columns second gives exactly
/// what [`bilinear`] gives on the same clamped taps: this path changes no output byte, it only
/// does the vertical half of the work once per source column instead of once per pixel.
fn separable_affine(src: &Plane, fx: &AffineFx, edge: PlaneEdge, dst: &mut Plane, simd: bool) {
    let n = dst.width;
    let (w, h) = (src.width as i64, src.height as i64);
    // With b = 0 every row starts at the same s.
    let (s0, _) = fx.row_start(0);
    let fill = match edge {
        PlaneEdge::Fill(v) => Some(v),
        PlaneEdge::Clamp => None,
    };
    // Columns that are not filled: positions are linear in x and the test is an interval, so
    // they are one contiguous range [xa, xb).
    let (mut xa, mut xb) = (n, 0);
    let mut first_tap = vec![0i64; n];
    let mut weights = vec![0u32; n];
    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
    for x in 0..n {
        let s = s0 + x as i64 * fx.a;
        if fill.is_some() && (s < -HALF || s >= w * ONE - HALF) {
            continue;
        }
        xa = xa.min(x);
        xb = x + 1;
        let xi = s >> FRAC;
        let f = ((s >> (FRAC - WEIGHT_BITS)) & WEIGHT_MASK) as u32;
        let (c0, c1) = (xi.clamp(0, w - 1), (xi + 1).clamp(0, w - 1));
        // Clamped to one column, both taps are the same sample: weight it whole.
        let f = if c0 == c1 { 0 } else { f };
        first_tap[x] = c0;
        weights[x] = (WEIGHT_ONE - f) | f << 16;
        lo = lo.min(c0);
        hi = hi.max(c0);
    }
    let xb = xb.max(xa);
    if xa == xb {
        for y in 0..dst.height {
            dst.row_mut(y).fill(fill.unwrap_or(0));
        }
        return;
    }
    // The column sums cover source columns lo..=hi + 1; a tap past the plane's last column
    // only ever has weight 0 and reads the zero left there.
    let (lo, hi) = (lo as usize, hi as usize);
    let taps = first_tap[xa..xb].iter().map(|&c| (c as usize - lo) as u32);
    let needed = hi - lo + 2;
    let cols = Columns::new(taps.collect(), weights[xa..xb].to_vec(), needed);
    let mut sums = vec![0u16; cols.len];
    let used = (src.width - lo).min(needed);
    for y in 0..dst.height {
        let (_, t) = fx.row_start(y);
        let out = dst.row_mut(y);
        if let Some(v) = fill {
            if t < -HALF || t >= h * ONE - HALF {
                out.fill(v);
                continue;
            }
            out[..xa].fill(v);
            out[xb..].fill(v);
        }
        let yi = t >> FRAC;
        let fy = ((t >> (FRAC - WEIGHT_BITS)) & WEIGHT_MASK) as u16;
        let (y0, y1) = (
            yi.clamp(0, h - 1) as usize,
            (yi + 1).clamp(0, h - 1) as usize,
        );
        // The source row a few output rows below: each output row starts two rows that no
        // hardware prefetcher foresees, and the blend then mostly waited for memory.
        let (_, ahead) = fx.row_start(y + SEPARABLE_PREFETCH_ROWS);
        let ahead = ((ahead >> FRAC) + 1).clamp(0, h - 1) as usize;
        prefetch(&src.row(ahead)[lo..lo + used]);
        let r0 = &src.row(y0)[lo..lo + used];
        let r1 = &src.row(y1)[lo..lo + used];
        blend_rows(r0, r1, fy, &mut sums, simd);
        cols.run(&sums, &mut out[xa..xb], simd);
    }
}

/// How many output rows ahead the separable path prefetches its source rows.
const SEPARABLE_PREFETCH_ROWS: usize = 4;

/// Asks for every cache line of `bytes` to be loaded (a hint: it changes no result).
fn prefetch(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        for line in bytes.chunks(64) {
            // SAFETY: SSE is part of x86_64; a prefetch never faults, and the address is
            // inside `bytes` anyway.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(line.as_ptr() as *const i8) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

/// The vertical half of [`separable_affine`]: `sums[i] = r0[i]·(256 − fy) + r1[i]·fy`.
fn blend_rows(r0: &[u8], r1: &[u8], fy: u16, sums: &mut [u16], simd: bool) {
    #[cfg(target_arch = "x86_64")]
    {
        if simd && simd_available() {
            // SAFETY: AVX2 is present.
            unsafe { avx2::blend_rows(r0, r1, fy, sums) };
            return;
        }
    }
    let _ = simd;
    blend_rows_scalar(r0, r1, fy, sums);
}

/// The loop of [`blend_rows`]; compiled twice, the second time for AVX2 (twice the lanes).
#[inline(always)]
fn blend_rows_scalar(r0: &[u8], r1: &[u8], fy: u16, sums: &mut [u16]) {
    let w0 = WEIGHT_ONE as u16 - fy;
    for ((o, &a), &b) in sums.iter_mut().zip(r0).zip(r1) {
        *o = u16::from(a) * w0 + u16::from(b) * fy;
    }
}

/// The horizontal half of [`separable_affine`]: per output column, the index of its first tap
/// in the row of column sums and its weights (256 − fx) | fx << 16.
struct Columns {
    taps: Vec<u32>,
    weights: Vec<u32>,
    /// Length of a row of column sums: every tap and the one after it are below this, and
    /// [`SUMS_PAD`] zeros follow for the SIMD kernel's 16-byte loads.
    len: usize,
    /// Whether the SIMD kernel's loads fit (checked once, not per row).
    simd_fits: bool,
    /// Per whole block of 8 output columns, where the SIMD kernel loads its two 16-byte
    /// windows of sums (pixels 0–3 and 4–7) and the byte shuffle that picks each pixel's pair
    /// of sums out of them; `None` when a half's taps spread too far, and the block gathers.
    windows: Vec<Option<SumsWindow>>,
}

/// See [`Columns::windows`]: the first sum of each half's window, and the shuffle.
#[derive(Clone, Copy)]
struct SumsWindow {
    base: [u32; 2],
    shuffle: [u8; 32],
}

/// Zero sums after the last one needed, so that 16-byte windows near the end stay inside.
const SUMS_PAD: usize = 8;

impl Columns {
    /// `needed`: the sums the taps reach (every tap + 1 below it).
    fn new(taps: Vec<u32>, weights: Vec<u32>, needed: usize) -> Self {
        let len = needed + SUMS_PAD;
        let simd_fits = simd_loads_fit(needed, &taps) && weights.len() == taps.len();
        let windows = taps
            .chunks_exact(8)
            .map(|block| {
                let mut w = SumsWindow {
                    base: [0; 2],
                    shuffle: [0; 32],
                };
                for (half, quad) in block.chunks_exact(4).enumerate() {
                    let base = quad.iter().copied().min()?;
                    let top = quad.iter().copied().max()?;
                    // Sums base..base + 8 are loaded; each pixel reads the pair at its tap.
                    if top - base > 6 || base as usize + 8 > len {
                        return None;
                    }
                    w.base[half] = base;
                    for (j, &i) in quad.iter().enumerate() {
                        let at = 2 * (i - base) as u8;
                        let lane = &mut w.shuffle[16 * half + 4 * j..16 * half + 4 * j + 4];
                        lane.copy_from_slice(&[at, at + 1, at + 2, at + 3]);
                    }
                }
                Some(w)
            })
            .collect();
        Self {
            taps,
            weights,
            len,
            simd_fits,
            windows,
        }
    }

    /// One output row from its column sums (`sums.len() == self.len`).
    fn run(&self, sums: &[u16], out: &mut [u8], simd: bool) {
        let ready = simd && self.simd_fits && sums.len() == self.len;
        let done = if ready && out.len() == self.taps.len() {
            self.run_simd(sums, out)
        } else {
            0
        };
        columns_scalar(
            sums,
            &self.taps[done..],
            &self.weights[done..],
            &mut out[done..],
        );
    }

    /// The SIMD kernel over the leading whole blocks of 8 of `out`; returns how many pixels
    /// it wrote. `simd_fits` must hold, `sums.len() == self.len`, `out.len() == taps.len()`.
    fn run_simd(&self, sums: &[u16], out: &mut [u8]) -> usize {
        #[cfg(target_arch = "x86_64")]
        {
            let same = self.taps.len() == out.len()
                && self.weights.len() == out.len()
                && self.windows.len() == out.len() / 8
                && sums.len() == self.len;
            if simd_available() && self.simd_fits && same {
                // SAFETY: AVX2 is present; every tap and the sum after it lie in `sums`
                // (`simd_fits`), so each gathered 4-byte load does; every window was checked
                // against `len` = `sums.len()` when built; loads of taps and weights and
                // stores stay inside their slices (whole blocks of 8 of equal lengths).
                return unsafe {
                    avx2::columns(sums, &self.taps, &self.weights, &self.windows, out)
                };
            }
        }
        let _ = (sums, out);
        0
    }
}

/// Whether every tap and the sum after it lie in a row of `len` sums, with `len` < 2^31.
fn simd_loads_fit(len: usize, taps: &[u32]) -> bool {
    len < i32::MAX as usize && taps.iter().all(|&i| (i as usize) + 1 < len)
}

/// The scalar kernel of [`Columns::run`], and the reference for the SIMD one.
fn columns_scalar(sums: &[u16], taps: &[u32], weights: &[u32], out: &mut [u8]) {
    for ((o, &i), &wt) in out.iter_mut().zip(taps).zip(weights) {
        let i = i as usize;
        let sum = u32::from(sums[i]) * (wt & 0xffff) + u32::from(sums[i + 1]) * (wt >> 16);
        *o = ((sum + (1 << (2 * WEIGHT_BITS - 1))) >> (2 * WEIGHT_BITS)) as u8;
    }
}

/// `libm::round` for |v| < 2^53 (NaN gives 0), without its bit fiddling: the truncation and
/// the difference are exact in this range, so the result is the same on every platform.
#[inline(always)]
fn round_half_away(v: f64) -> i64 {
    let i = v as i64;
    let f = v - i as f64;
    // Without branches: the fraction is data, and a mispredicted branch per knot coordinate
    // cost more than the rest of the knot.
    i + i64::from(f >= 0.5) - i64::from(f <= -0.5)
}

/// Converts a coefficient to fixed point with `bits` fractional bits. `round` is exactly
/// specified, and the `as` cast saturates, so the result is the same on every platform.
fn to_fixed(v: f64, bits: i32) -> i64 {
    libm::round(libm::ldexp(v, bits)) as i64
}

/// An affine matrix in fixed point, already shifted so that positions are *sample* indices
/// (pixel centres at integers): s = a·(x+½) + b·(y+½) + c − ½.
struct AffineFx {
    a: i64,
    b: i64,
    c: i64,
    d: i64,
    e: i64,
    f: i64,
}

impl AffineFx {
    fn new(t: &Transform) -> Result<Self, WarpError> {
        let w = t.m[2][2];
        let lin = [t.m[0][0] / w, t.m[0][1] / w, t.m[1][0] / w, t.m[1][1] / w];
        let off = [t.m[0][2] / w, t.m[1][2] / w];
        let in_range = lin.iter().all(|v| v.abs() <= AFFINE_LINEAR_LIMIT)
            && off.iter().all(|v| v.abs() <= AFFINE_OFFSET_LIMIT);
        if !in_range {
            return Err(WarpError::TransformOutOfRange);
        }
        let bits = FRAC as i32;
        Ok(Self {
            a: to_fixed(lin[0], bits),
            b: to_fixed(lin[1], bits),
            c: to_fixed(off[0], bits) - HALF,
            d: to_fixed(lin[2], bits),
            e: to_fixed(lin[3], bits),
            f: to_fixed(off[1], bits) - HALF,
        })
    }

    /// Source sample position of output pixel (0, y). Bounds: |a|,|b| ≤ 2^44, y < 2^15 and
    /// |c| ≤ 2^56, so the sum stays below 2^62.
    fn row_start(&self, y: usize) -> (i64, i64) {
        let y2 = 2 * y as i64 + 1;
        let s = ((self.a + self.b * y2) >> 1) + self.c;
        let t = ((self.d + self.e * y2) >> 1) + self.f;
        (s, t)
    }
}

/// A homography normalised to a largest entry of magnitude 1, evaluated at the knots in plain
/// IEEE double precision: a fixed sequence of multiplications, additions and one division per
/// knot (never fused), so every platform gets the same bits. Software 128-bit division cost
/// about 150 ns per knot, more than the whole interpolated run between two knots.
struct HomographyFx {
    h: [[f64; 3]; 3],
}

impl HomographyFx {
    fn new(t: &Transform) -> Result<Self, WarpError> {
        let max = t.m.iter().flatten().fold(0.0f64, |acc, v| acc.max(v.abs()));
        if max == 0.0 || !max.is_finite() {
            return Err(WarpError::TransformOutOfRange);
        }
        Ok(Self {
            h: t.m.map(|row| row.map(|v| v / max)),
        })
    }

    /// Sample position (fixed point) of the centre of output pixel (x, y). Positions are
    /// saturated to ±2^20 pixels, which every edge mode treats as outside.
    fn eval(&self, x: i64, y: usize) -> (i64, i64) {
        let (px, py) = (x as f64 + 0.5, y as f64 + 0.5);
        let h = &self.h;
        let den = h[2][0] * px + h[2][1] * py + h[2][2];
        if den.is_nan() || den <= 0.0 {
            // Behind the camera: send it far outside.
            return (-POS_LIMIT, -POS_LIMIT);
        }
        let inv = 1.0 / den;
        let u = (h[0][0] * px + h[0][1] * py + h[0][2]) * inv;
        let v = (h[1][0] * px + h[1][1] * py + h[1][2]) * inv;
        let limit = (POS_LIMIT >> FRAC) as f64;
        // Scaling by 2^32 is exact after the clamp; NaN survives the clamp and becomes 0.
        let fixed = |p: f64| round_half_away(p.clamp(-limit, limit) * ONE as f64);
        (fixed(u) - HALF, fixed(v) - HALF)
    }

    /// [`HomographyFx::eval`] at the knots `from`, `from + step`, … of row `y`, one per entry
    /// of `knots`: the same bits, four or eight knots per instruction where the CPU allows.
    fn eval_knots(&self, from: usize, y: usize, step: KnotStep, knots: &mut [(i64, i64)]) {
        #[cfg(target_arch = "x86_64")]
        {
            if avx512::available() {
                // SAFETY: the kernel's features are present.
                unsafe { avx512::eval_knots(&self.h, from, y, step.pixels(), knots) };
                return;
            }
            if simd_available() {
                // SAFETY: AVX2 is present.
                unsafe { avx2::eval_knots(&self.h, from, y, step.pixels(), knots) };
                return;
            }
        }
        for (k, knot) in knots.iter_mut().enumerate() {
            *knot = self.eval((from + k * step.pixels()) as i64, y);
        }
    }

    /// The knot step for an output plane of `width`×`height`: the long one when linear
    /// interpolation over it stays within [`MILD_ERROR_LIMIT`] everywhere on the plane.
    ///
    /// Along a row the source position is u(x) = (a·x + b) / (c·x + d), with c = h20 and
    /// d = h21·y + h22 (likewise v with the second row), and linear interpolation over L
    /// pixels is off by at most L²/8 · max |u″|, where u″ = −2c·(a·d − b·c) / (c·x + d)³. The
    /// denominator is linear in x and y, so its smallest value on the plane is at a corner;
    /// a·d − b·c is linear in y, so its largest size is on the first or the last row. The
    /// bound is computed in IEEE double precision in a fixed order, like the knots.
    fn knot_step(&self, width: usize, height: usize) -> KnotStep {
        let h = &self.h;
        let (right, bottom) = (width as f64 - 0.5, height as f64 - 0.5);
        let den = |x: f64, y: f64| h[2][0] * x + h[2][1] * y + h[2][2];
        let nearest = [
            den(0.5, 0.5),
            den(right, 0.5),
            den(0.5, bottom),
            den(right, bottom),
        ]
        .into_iter()
        .fold(f64::INFINITY, f64::min);
        if nearest.is_nan() || nearest <= 0.0 {
            return KnotStep::Short;
        }
        let c = h[2][0];
        let mut bend = 0.0f64;
        for y in [0.5, bottom] {
            let d = h[2][1] * y + h[2][2];
            for row in &h[..2] {
                let b = row[1] * y + row[2];
                bend = bend.max((row[0] * d - b * c).abs());
            }
        }
        let long = KnotStep::Long.pixels() as f64;
        let error = long * long / 8.0 * 2.0 * c.abs() * bend / (nearest * nearest * nearest);
        if error <= MILD_ERROR_LIMIT {
            KnotStep::Long
        } else {
            KnotStep::Short
        }
    }
}

/// How far apart a homography's knots are on a plane (see [`HomographyFx::knot_step`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KnotStep {
    /// Every 16 pixels: one segment per knot interval.
    Short,
    /// Every 32 pixels, where the perspective is mild: two segments per interval.
    Long,
}

impl KnotStep {
    fn pixels(self) -> usize {
        match self {
            KnotStep::Short => HOMOGRAPHY_STEP,
            KnotStep::Long => 2 * HOMOGRAPHY_STEP,
        }
    }

    /// The source step per output pixel between knots `from` and `to`, one knot step apart.
    /// The step is a power of two, so this is a shift; a difference of at most 2^53 keeps 32
    /// steps inside i64.
    #[inline(always)]
    fn steps(self, (s, t): (i64, i64), (s1, t1): (i64, i64)) -> (i64, i64) {
        let shift = self.pixels().trailing_zeros();
        ((s1 - s) >> shift, (t1 - t) >> shift)
    }
}

/// One homography segment: `HOMOGRAPHY_STEP` pixels at s + j·ds, t + j·dt, as (s, ds, t, dt),
/// with the low bits of all four cleared (see [`SEGMENT_POSITION_MASK`]).
type Segment = (i64, i64, i64, i64);

/// The segment starting `offset` pixels into the knot interval from knot (s, t) with steps
/// (ds, dt) per pixel.
#[inline(always)]
fn segment((s, t): (i64, i64), (ds, dt): (i64, i64), offset: i64) -> Segment {
    let (ds, dt) = (ds & SEGMENT_POSITION_MASK, dt & SEGMENT_POSITION_MASK);
    (
        (s & SEGMENT_POSITION_MASK) + offset * ds,
        ds,
        (t & SEGMENT_POSITION_MASK) + offset * dt,
        dt,
    )
}

/// The knots and segments of one strip row (see [`homography_row`]), made once per plane:
/// zeroing them anew on every strip row cost more than evaluating the knots.
struct RowScratch {
    knots: [(i64, i64); STRIP / HOMOGRAPHY_STEP + 1],
    segments: [Segment; STRIP / HOMOGRAPHY_STEP],
}

impl RowScratch {
    fn new() -> Self {
        Self {
            knots: [(0, 0); STRIP / HOMOGRAPHY_STEP + 1],
            segments: [(0, 0, 0, 0); STRIP / HOMOGRAPHY_STEP],
        }
    }
}

/// Output pixels `from.0..from.0 + out.len()` of row `from.1` (`from.0` a multiple of the
/// knot step; `out` at most a strip).
// The row's inputs are plain values on purpose: a struct would be rebuilt per strip row.
#[allow(clippy::too_many_arguments)]
fn homography_row(
    src: &Plane,
    fx: &HomographyFx,
    (from, y): (usize, usize),
    step: KnotStep,
    edge: PlaneEdge,
    out: &mut [u8],
    paths: Paths,
    scratch: &mut RowScratch,
) {
    let (w, h) = (src.width as i64, src.height as i64);
    let (s_hi, t_hi) = ((w - 1) * ONE, (h - 1) * ONE);
    let inside = |s: i64, t: i64| 0 <= s && s < s_hi && 0 <= t && t < t_hi;
    let simd = paths.simd && simd_available() && src.data.len() <= i32::MAX as usize;
    // Whole segments lying inside the plane are batched for the SIMD kernel; the rest (and
    // everything without SIMD) goes through `linear_run`. Both use the same positions and
    // the same formula.
    let RowScratch {
        knots,
        segments: batch,
    } = scratch;
    let (mut queued, mut batch_start) = (0usize, 0usize);
    let flush = |batch: &[Segment], at: usize, out: &mut [u8]| {
        if !batch.is_empty() {
            let end = at + batch.len() * HOMOGRAPHY_STEP;
            segments_simd(&src.data, src.stride, batch, &mut out[at..end]);
        }
    };
    let n = out.len();
    let per = step.pixels();
    // Every knot of the run first, four or eight at a time where the CPU allows (a run is at
    // most a strip: `STRIP / per` intervals and the knot closing the last one).
    let count = (n.div_ceil(per) + 1).min(knots.len());
    fx.eval_knots(from, y, step, &mut knots[..count]);
    let knot = |k: usize| match knots.get(k) {
        Some(&at) if k < count => at,
        _ => fx.eval((from + k * per) as i64, y),
    };
    // The segment starting at pixel x0 (a multiple of HOMOGRAPHY_STEP). The knot after a
    // short last interval is still `per` away, so its steps come out as for any other.
    let segment_at = |x0: usize| {
        let k = x0 / per;
        let from = knot(k);
        segment(from, step.steps(from, knot(k + 1)), (x0 % per) as i64)
    };
    // A run whose knots all keep a pixel away from the plane's edges is inside it throughout
    // (between knots positions are linear, off by less than 2^−10 pixel), and every SIMD load
    // fits: it goes to the kernel whole, without a check per segment.
    let segments = n / HOMOGRAPHY_STEP;
    let safe = |&(s, t): &(i64, i64)| ONE <= s && s < s_hi - ONE && ONE <= t && t < t_hi - ONE;
    if simd
        && n.is_multiple_of(HOMOGRAPHY_STEP)
        && count == n.div_ceil(per) + 1
        && knots[..count].iter().all(safe)
    {
        #[cfg(target_arch = "x86_64")]
        if paths.intervals && step == KnotStep::Long && avx512::available() {
            let whole = n / per;
            let (head, tail) = out.split_at_mut(whole * per);
            // SAFETY: the kernel's features are present; every knot of the run keeps a pixel
            // inside the plane and the plane is below 2^31 bytes, so every segment's loads
            // fit (as for the batch below); `knots` holds `whole + 1` knots.
            unsafe { avx512::intervals(&src.data, src.stride, &knots[..=whole], head) };
            if !tail.is_empty() {
                // Half an interval (a last strip of 16 pixels more than whole intervals).
                let (from, to) = (knots[whole], knots[whole + 1]);
                let first = segment(from, step.steps(from, to), 0);
                segments_simd(&src.data, src.stride, &[first], tail);
            }
            return;
        }
        let halves = per / HOMOGRAPHY_STEP;
        let intervals = knots[..count].windows(2);
        for (pair, segs) in intervals.zip(batch[..segments].chunks_mut(halves)) {
            let steps = step.steps(pair[0], pair[1]);
            for (half, seg) in segs.iter_mut().enumerate() {
                *seg = segment(pair[0], steps, (half * HOMOGRAPHY_STEP) as i64);
            }
        }
        segments_simd(&src.data, src.stride, &batch[..segments], out);
        return;
    }
    let last = (HOMOGRAPHY_STEP - 1) as i64;
    for x0 in (0..n).step_by(HOMOGRAPHY_STEP) {
        let (s, ds, t, dt) = segment_at(x0);
        let len = HOMOGRAPHY_STEP.min(n - x0);
        let fast = simd
            && len == HOMOGRAPHY_STEP
            && inside(s, t)
            && inside(s + last * ds, t + last * dt)
            && loads_fit(
                &src.data,
                src.stride,
                (s, s + last * ds),
                (t, t + last * dt),
            );
        if fast {
            if queued == 0 {
                batch_start = x0;
            }
            batch[queued] = (s, ds, t, dt);
            queued += 1;
            if queued == batch.len() {
                flush(&batch[..queued], batch_start, out);
                queued = 0;
            }
        } else {
            flush(&batch[..queued], batch_start, out);
            queued = 0;
            linear_run(src, s, ds, t, dt, edge, &mut out[x0..x0 + len], false);
        }
    }
    flush(&batch[..queued], batch_start, out);
}

/// Whether the SIMD kernel's 4-byte loads at idx and idx + stride stay inside `data` for
/// positions between the given ends (positions are linear, so the ends bound every pixel).
fn loads_fit(data: &[u8], stride: usize, s: (i64, i64), t: (i64, i64)) -> bool {
    if s.0.min(s.1) < 0 || t.0.min(t.1) < 0 {
        return false;
    }
    let max_x = (s.0.max(s.1) >> FRAC) as usize;
    let max_y = (t.0.max(t.1) >> FRAC) as usize;
    max_y
        .checked_mul(stride)
        .and_then(|v| v.checked_add(max_x + stride + 4))
        .is_some_and(|reach| reach <= data.len() && reach <= i32::MAX as usize)
}

/// Runs whole homography segments (see `homography_row`) on the SIMD kernel.
fn segments_simd(data: &[u8], stride: usize, segments: &[Segment], out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        if simd_available() && out.len() == segments.len() * HOMOGRAPHY_STEP {
            // SAFETY: AVX2 (and, where taken, AVX-512) is present; every segment passed
            // `loads_fit`, so all gathered loads lie inside `data`; `out` holds exactly 16
            // pixels per segment.
            unsafe {
                if avx512::available() {
                    avx512::segments(data, stride, segments, out);
                } else {
                    avx2::segments(data, stride, segments, out);
                }
            }
            return;
        }
    }
    // Not reached on machines without the kernel (`homography_row` only batches when it is
    // available); kept exact all the same.
    for (k, &(s, ds, t, dt)) in segments.iter().enumerate() {
        let chunk = out.chunks_mut(HOMOGRAPHY_STEP).nth(k);
        if let Some(chunk) = chunk {
            inside_scalar(data, stride, (s, ds), (t, dt), chunk);
        }
    }
}

/// The range of x in [0, n) for which lo ≤ s0 + x·ds < hi.
fn span_1d(s0: i64, ds: i64, lo: i64, hi: i64, n: usize) -> (usize, usize) {
    let n = n as i64;
    if hi <= lo {
        return (0, 0);
    }
    let (start, end) = match ds.signum() {
        0 => {
            if lo <= s0 && s0 < hi {
                (0, n)
            } else {
                (0, 0)
            }
        }
        1 => (ceil_div(lo - s0, ds), ceil_div(hi - s0, ds)),
        _ => {
            let neg = -ds;
            ((s0 - hi).div_euclid(neg) + 1, (s0 - lo).div_euclid(neg) + 1)
        }
    };
    let start = start.clamp(0, n);
    let end = end.clamp(start, n);
    (start as usize, end as usize)
}

fn ceil_div(a: i64, b: i64) -> i64 {
    -((-a).div_euclid(b))
}

/// Fills `out` with samples at s0 + x·ds, t0 + x·dt. The sub-span where all four bilinear taps
/// are inside the plane is found analytically and runs without any checks of position; the
/// rest goes through the edge rule. Both paths use the same formula, so the split never
/// changes a byte.
// The inner loop's inputs are plain scalars on purpose: a struct would be rebuilt per row.
#[allow(clippy::too_many_arguments)]
fn linear_run(
    src: &Plane,
    s0: i64,
    ds: i64,
    t0: i64,
    dt: i64,
    edge: PlaneEdge,
    out: &mut [u8],
    simd: bool,
) {
    let n = out.len();
    let (w, h) = (src.width as i64, src.height as i64);
    let (s_hi, t_hi) = ((w - 1) * ONE, (h - 1) * ONE);
    let last = n.saturating_sub(1) as i64;
    let inside = |s: i64, t: i64| 0 <= s && s < s_hi && 0 <= t && t < t_hi;
    // Positions are linear in x, so both ends inside means the whole run is inside; this
    // spares the divisions for the many short homography runs that lie within the plane.
    let (start, end) = if n > 0 && inside(s0, t0) && inside(s0 + last * ds, t0 + last * dt) {
        (0, n)
    } else {
        let (sa, sb) = span_1d(s0, ds, 0, s_hi, n);
        let (ta, tb) = span_1d(t0, dt, 0, t_hi, n);
        let (start, end) = (sa.max(ta), sb.min(tb));
        if start < end {
            (start, end)
        } else {
            (n, n)
        }
    };
    for (x, px) in out.iter_mut().enumerate().take(start) {
        let x = x as i64;
        *px = sample_edge(src, s0 + x * ds, t0 + x * dt, edge);
    }
    let stride = src.stride;
    let data = &src.data[..];
    let first = start as i64;
    let done = if simd && start < end {
        inside_run_simd(
            data,
            stride,
            (s0 + first * ds, ds),
            (t0 + first * dt, dt),
            &mut out[start..end],
        )
    } else {
        0
    };
    let from = (start + done) as i64;
    inside_scalar(
        data,
        stride,
        (s0 + from * ds, ds),
        (t0 + from * dt, dt),
        &mut out[start + done..end],
    );
    for (x, px) in out.iter_mut().enumerate().skip(end) {
        let x = x as i64;
        *px = sample_edge(src, s0 + x * ds, t0 + x * dt, edge);
    }
}

/// Samples at s.0 + x·s.1, t.0 + x·t.1 for every pixel x of `out`, all four taps inside the
/// plane: the scalar kernel, and the reference for the SIMD one.
fn inside_scalar(data: &[u8], stride: usize, s: (i64, i64), t: (i64, i64), out: &mut [u8]) {
    for (x, px) in out.iter_mut().enumerate() {
        let x = x as i64;
        let (s, t) = (s.0 + x * s.1, t.0 + x * t.1);
        // Inside the span 0 ≤ s >> FRAC ≤ w − 2 and 0 ≤ t >> FRAC ≤ h − 2, so the four taps
        // lie inside the plane (checked by `check_plane`).
        let idx = (t >> FRAC) as usize * stride + (s >> FRAC) as usize;
        let fx = ((s >> (FRAC - WEIGHT_BITS)) & WEIGHT_MASK) as u32;
        let fy = ((t >> (FRAC - WEIGHT_BITS)) & WEIGHT_MASK) as u32;
        *px = bilinear(
            data[idx],
            data[idx + 1],
            data[idx + stride],
            data[idx + stride + 1],
            fx,
            fy,
        );
    }
}

/// Whether this CPU runs the SIMD twin of the inside-span kernel.
fn simd_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The inside-span kernel on SIMD lanes: samples at s + x·ds, t + x·dt (each a (start, step)
/// pair), every tap inside the plane. Returns how many leading pixels of `out` it filled (a
/// multiple of 8, possibly 0); the scalar loop does the rest with the same formula.
fn inside_run_simd(
    data: &[u8],
    stride: usize,
    s: (i64, i64),
    t: (i64, i64),
    out: &mut [u8],
) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        let n = out.len();
        if n < 8 || !simd_available() {
            return 0;
        }
        let last = (n - 1) as i64;
        if !loads_fit(
            data,
            stride,
            (s.0, s.0 + last * s.1),
            (t.0, t.0 + last * t.1),
        ) {
            return 0;
        }
        // SAFETY: AVX2 is present, and every gathered 4-byte load lies inside `data` by
        // `loads_fit`; stores stay inside `out` (whole blocks of 8).
        unsafe { avx2::inside_run(data, stride, s, t, out) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (data, stride, s, t, out);
        0
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{FRAC, HALF, HOMOGRAPHY_STEP, ONE, POS_LIMIT, WEIGHT_BITS};

    /// How many source rows below a segment's first one its prefetch reaches: about four
    /// output rows at the canvas's 1.5× scale (fewer measured slower at 1080p, more no faster).
    const PREFETCH_ROWS: usize = 6;

    /// Integer parts and 8-bit fractions of eight positions held in 64-bit lanes (`lo`: pixels
    /// 0–3, `hi`: 4–7), as 32-bit lanes. (position >> 24) as u32 = integer << 8 | fraction.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn split(lo: __m256i, hi: __m256i) -> (__m256i, __m256i) {
        let evens = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
        let shift = _mm_cvtsi32_si128((FRAC - WEIGHT_BITS) as i32);
        let a = _mm256_permutevar8x32_epi32(_mm256_srl_epi64(lo, shift), evens);
        let b = _mm256_permutevar8x32_epi32(_mm256_srl_epi64(hi, shift), evens);
        let p = _mm256_permute2x128_si256::<0x20>(a, b);
        (
            _mm256_srli_epi32::<8>(p),
            _mm256_and_si256(p, _mm256_set1_epi32(0xff)),
        )
    }

    /// The scalar `bilinear` arithmetic in 32-bit lanes, from the taps as 16-bit pairs
    /// (p00, p01) and (p10, p11): top = p00·(256−fx) + p01·fx, bottom likewise,
    /// (top·(256−fy) + bottom·fy + 2^15) >> 16. Returns the 8 bytes in the low half.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn interpolate(upper: __m256i, lower: __m256i, fx: __m256i, fy: __m256i) -> __m128i {
        let one = _mm256_set1_epi32(1 << WEIGHT_BITS);
        let wx = _mm256_or_si256(_mm256_sub_epi32(one, fx), _mm256_slli_epi32::<16>(fx));
        let top = _mm256_madd_epi16(upper, wx);
        let bottom = _mm256_madd_epi16(lower, wx);
        let sum = _mm256_add_epi32(
            _mm256_mullo_epi32(top, _mm256_sub_epi32(one, fy)),
            _mm256_mullo_epi32(bottom, fy),
        );
        let round = _mm256_set1_epi32(1 << (2 * WEIGHT_BITS - 1));
        let v = _mm256_srli_epi32::<16>(_mm256_add_epi32(sum, round));
        let v16 = _mm256_packus_epi32(v, v);
        let v8 = _mm256_packus_epi16(v16, v16);
        let first_dwords = _mm256_setr_epi32(0, 4, 0, 0, 0, 0, 0, 0);
        _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(v8, first_dwords))
    }

    /// Where a block's taps come from when it can be served by plain loads: the 16-byte
    /// windows at column `x` of rows `y`, `y + 1` and, if `third`, `y + 2` (read whenever it
    /// is in `data`, needed or not: every tap's row is then chosen by its own lane).
    #[derive(Clone, Copy)]
    struct Window {
        x: usize,
        y: usize,
        third: bool,
    }

    /// A window for a block whose first and last positions are given, if its taps fit: at most
    /// 15 columns (pshufb indices) and two source rows apart, with every load in `data`.
    #[inline(always)]
    fn window(len: usize, stride: usize, s: (i64, i64), t: (i64, i64)) -> Option<Window> {
        let (xa, xb) = ((s.0 >> FRAC) as usize, (s.1 >> FRAC) as usize);
        let (ya, yb) = ((t.0 >> FRAC) as usize, (t.1 >> FRAC) as usize);
        let (x, y) = (xa.min(xb), ya.min(yb));
        let third = ya.max(yb) - y;
        if xa.max(xb) - x > 14 || third > 1 {
            return None;
        }
        let end = (y + 1 + third) * stride + x + 16;
        // Whether a block needs the third row depends on where it crosses a source row, which
        // no branch predictor guesses; so the third row is read whenever it is in `data` (a
        // block inside two rows then selects nothing from it), and the branch is only taken
        // at the plane's bottom.
        let third_fits = (y + 2) * stride + x + 16 <= len;
        (end <= len).then_some(Window {
            x,
            y,
            third: third == 1 || third_fits,
        })
    }

    /// Eight samples at the positions in `s_*`, `t_*` (see [`split`]).
    ///
    /// # Safety
    /// AVX2 must be present. With `window`, its loads must lie in `data` (as [`window`]
    /// checks) and hold every tap; without, the 4-byte loads at idx = ⌊t⌋·stride + ⌊s⌋ and
    /// idx + stride of every pixel must lie in `data`, with idx < 2^31.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn block(
        data: &[u8],
        stride: usize,
        window: Option<Window>,
        (s_lo, s_hi): (__m256i, __m256i),
        (t_lo, t_hi): (__m256i, __m256i),
    ) -> __m128i {
        let (xi, fx) = split(s_lo, s_hi);
        let (yi, fy) = split(t_lo, t_hi);
        let (upper, lower) = match window {
            Some(w) => {
                // Byte pairs (l, l + 1) with l = xi − x pick each pixel's two columns out of
                // the loaded windows; zero-extended they are the 16-bit tap pairs.
                let l = _mm256_sub_epi32(xi, _mm256_set1_epi32(w.x as i32));
                let c32 = _mm256_add_epi32(
                    _mm256_or_si256(l, _mm256_slli_epi32::<8>(l)),
                    _mm256_set1_epi32(0x100),
                );
                let c16 = _mm256_packus_epi32(c32, c32);
                let ctrl = _mm256_castsi256_si128(_mm256_permute4x64_epi64::<0b1000>(c16));
                let row = |k: usize| {
                    let at = data.as_ptr().add((w.y + k) * stride + w.x);
                    let bytes = _mm_shuffle_epi8(_mm_loadu_si128(at as *const __m128i), ctrl);
                    _mm256_cvtepu8_epi16(bytes)
                };
                let (r0, r1) = (row(0), row(1));
                if w.third {
                    let r2 = row(2);
                    let down = _mm256_cmpgt_epi32(yi, _mm256_set1_epi32(w.y as i32));
                    (
                        _mm256_blendv_epi8(r0, r1, down),
                        _mm256_blendv_epi8(r1, r2, down),
                    )
                } else {
                    (r0, r1)
                }
            }
            None => {
                let stride_v = _mm256_set1_epi32(stride as i32);
                let idx = _mm256_add_epi32(_mm256_mullo_epi32(yi, stride_v), xi);
                let base = data.as_ptr() as *const i32;
                let g0 = _mm256_i32gather_epi32::<1>(base, idx);
                let g1 = _mm256_i32gather_epi32::<1>(base, _mm256_add_epi32(idx, stride_v));
                // Bytes b0, b1 of each gathered word as the 16-bit pair (b0, b1).
                let pair = |g: __m256i| {
                    _mm256_or_si256(
                        _mm256_and_si256(g, _mm256_set1_epi32(0xff)),
                        _mm256_slli_epi32::<8>(_mm256_and_si256(g, _mm256_set1_epi32(0xff00))),
                    )
                };
                (pair(g0), pair(g1))
            }
        };
        interpolate(upper, lower, fx, fy)
    }

    /// The separable path's horizontal pass (see `super::columns_scalar`): per pixel, a 32-bit
    /// lane holds the sums (c0, c1) at its tap as 16-bit halves, from a shuffle of two 16-byte
    /// windows or, where the taps spread too far, a gather; flipped to signed (c − 2^15) they
    /// fit `madd` with the weights (256 − fx, fx), and adding back 2^15·256 gives
    /// c0·(256 − fx) + c1·fx exactly.
    ///
    /// # Safety
    /// AVX2 must be present; `taps`, `weights` and `out` of equal length, `windows` one per
    /// whole block of 8; every tap + 1 below `sums.len()` < 2^31; every window's 16-byte loads
    /// inside `sums`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn columns(
        sums: &[u16],
        taps: &[u32],
        weights: &[u32],
        windows: &[Option<super::SumsWindow>],
        out: &mut [u8],
    ) -> usize {
        let blocks = out.len() / 8;
        let base = sums.as_ptr() as *const i32;
        let flip = _mm256_set1_epi32(0x8000_8000u32 as i32);
        let bias = _mm256_set1_epi32((1 << (15 + WEIGHT_BITS)) + (1 << (2 * WEIGHT_BITS - 1)));
        let first_dwords = _mm256_setr_epi32(0, 4, 0, 0, 0, 0, 0, 0);
        for (b, window) in windows.iter().enumerate().take(blocks) {
            let pairs = match window {
                Some(w) => {
                    let at = |k: usize| sums.as_ptr().add(w.base[k] as usize) as *const __m128i;
                    let lo = _mm256_castsi128_si256(_mm_loadu_si128(at(0)));
                    let both = _mm256_inserti128_si256::<1>(lo, _mm_loadu_si128(at(1)));
                    let shuffle = _mm256_loadu_si256(w.shuffle.as_ptr() as *const __m256i);
                    _mm256_shuffle_epi8(both, shuffle)
                }
                None => {
                    let idx = _mm256_loadu_si256(taps.as_ptr().add(8 * b) as *const __m256i);
                    _mm256_i32gather_epi32::<2>(base, idx)
                }
            };
            let wts = _mm256_loadu_si256(weights.as_ptr().add(8 * b) as *const __m256i);
            let sum = _mm256_madd_epi16(_mm256_xor_si256(pairs, flip), wts);
            let v = _mm256_srli_epi32::<16>(_mm256_add_epi32(sum, bias));
            let v16 = _mm256_packus_epi32(v, v);
            let v8 = _mm256_packus_epi16(v16, v16);
            let bytes = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(v8, first_dwords));
            _mm_storel_epi64(out.as_mut_ptr().add(8 * b) as *mut __m128i, bytes);
        }
        8 * blocks.min(windows.len())
    }

    /// `super::blend_rows_scalar` compiled for AVX2.
    ///
    /// # Safety
    /// AVX2 must be present.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn blend_rows(r0: &[u8], r1: &[u8], fy: u16, sums: &mut [u16]) {
        super::blend_rows_scalar(r0, r1, fy, sums);
    }

    /// See `HomographyFx::eval_knots`: every operation of `HomographyFx::eval` in the same
    /// order on four knots at once (IEEE multiplications, additions and a division, never
    /// fused, give the same bits in any lane), then the rounding and the conversion per knot.
    ///
    /// # Safety
    /// AVX2 must be present.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn eval_knots(
        h: &[[f64; 3]; 3],
        from: usize,
        y: usize,
        step: usize,
        knots: &mut [(i64, i64)],
    ) {
        let py = y as f64 + 0.5;
        let splat = _mm256_set1_pd;
        let (h01py, h11py, h21py) = (
            splat(h[0][1] * py),
            splat(h[1][1] * py),
            splat(h[2][1] * py),
        );
        let limit = (POS_LIMIT >> FRAC) as f64;
        let (lo, hi) = (splat(-limit), splat(limit));
        let scale = splat(ONE as f64);
        let half = splat(0.5);
        let one = splat(1.0);
        // (p − trunc p) ≥ ½ adds one, ≤ −½ takes one away: `round_half_away` lane by lane.
        let round = |p: __m256d| {
            let i = _mm256_round_pd::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(p);
            let f = _mm256_sub_pd(p, i);
            let up = _mm256_and_pd(_mm256_cmp_pd::<_CMP_GE_OQ>(f, half), one);
            let down = _mm256_and_pd(
                _mm256_cmp_pd::<_CMP_LE_OQ>(f, _mm256_sub_pd(splat(0.0), half)),
                one,
            );
            _mm256_sub_pd(_mm256_add_pd(i, up), down)
        };
        // `clamp` keeps NaN; max/min return their second operand when either is NaN.
        let fixed = |p: __m256d| {
            round(_mm256_mul_pd(
                _mm256_min_pd(hi, _mm256_max_pd(lo, p)),
                scale,
            ))
        };
        for (group, out) in knots.chunks_mut(4).enumerate() {
            let x = |k: usize| (from + (4 * group + k) * step) as f64 + 0.5;
            let px = _mm256_setr_pd(x(0), x(1), x(2), x(3));
            let line = |r: usize, rpy: __m256d| {
                _mm256_add_pd(
                    _mm256_add_pd(_mm256_mul_pd(splat(h[r][0]), px), rpy),
                    splat(h[r][2]),
                )
            };
            let den = line(2, h21py);
            let inv = _mm256_div_pd(one, den);
            let u = fixed(_mm256_mul_pd(line(0, h01py), inv));
            let v = fixed(_mm256_mul_pd(line(1, h11py), inv));
            let (mut dens, mut us, mut vs) = ([0.0f64; 4], [0.0f64; 4], [0.0f64; 4]);
            _mm256_storeu_pd(dens.as_mut_ptr(), den);
            _mm256_storeu_pd(us.as_mut_ptr(), u);
            _mm256_storeu_pd(vs.as_mut_ptr(), v);
            for (k, knot) in out.iter_mut().enumerate() {
                // Not `den > 0` (NaN too): behind the camera, as in `eval`. The `as` casts give
                // 0 for NaN, as `round_half_away` does.
                *knot = if dens[k] > 0.0 {
                    (us[k] as i64 - HALF, vs[k] as i64 - HALF)
                } else {
                    (-POS_LIMIT, -POS_LIMIT)
                };
            }
        }
    }

    /// (p, p + d, p + 2d, p + 3d) in 64-bit lanes.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn quad(p: i64, d: i64) -> __m256i {
        _mm256_set_epi64x(p + 3 * d, p + 2 * d, p + d, p)
    }

    /// Eight pixels from position (s, t) with steps (ds, dt), stored at `out[at..at + 8]`.
    ///
    /// # Safety
    /// As for [`block`] without a window, for all eight pixels; `at + 8 <= out.len()`.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn eight(
        data: &[u8],
        stride: usize,
        (s, ds): (i64, i64),
        (t, dt): (i64, i64),
        out: &mut [u8],
        at: usize,
    ) {
        let win = window(data.len(), stride, (s, s + 7 * ds), (t, t + 7 * dt));
        let (s_lo, t_lo) = (quad(s, ds), quad(t, dt));
        let s_hi = _mm256_add_epi64(s_lo, _mm256_set1_epi64x(4 * ds));
        let t_hi = _mm256_add_epi64(t_lo, _mm256_set1_epi64x(4 * dt));
        let v = block(data, stride, win, (s_lo, s_hi), (t_lo, t_hi));
        _mm_storel_epi64(out.as_mut_ptr().add(at) as *mut __m128i, v);
    }

    /// Samples at s.0 + x·s.1, t.0 + x·t.1 for the leading whole blocks of 8 of `out`;
    /// returns how many pixels were written.
    ///
    /// # Safety
    /// AVX2 must be present; `data.len()` below 2^31; for every pixel of `out` the 4-byte
    /// loads at idx and idx + stride (see [`block`]) lie in `data`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn inside_run(
        data: &[u8],
        stride: usize,
        s: (i64, i64),
        t: (i64, i64),
        out: &mut [u8],
    ) -> usize {
        let blocks = out.len() / 8;
        for b in 0..blocks {
            let first = (8 * b) as i64;
            eight(
                data,
                stride,
                (s.0 + first * s.1, s.1),
                (t.0 + first * t.1, t.1),
                out,
                8 * b,
            );
        }
        8 * blocks
    }

    /// Whole homography segments: segment k covers pixels 16k..16k+16 of `out` with samples
    /// at s + j·ds, t + j·dt for j = 0..16, from `segments[k]` = (s, ds, t, dt).
    ///
    /// # Safety
    /// As for [`inside_run`], for every pixel; `out` holds 16 pixels per segment.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn segments(
        data: &[u8],
        stride: usize,
        segments: &[(i64, i64, i64, i64)],
        out: &mut [u8],
    ) {
        for (k, &(s, ds, t, dt)) in segments.iter().enumerate() {
            // The source rows a few output rows below, which no hardware prefetcher foresees
            // (each output row of a strip starts a new, distant source row): without this, the
            // loads of the lowest row of each window waited for memory most of the time.
            // A prefetch never faults, so a row past the canvas's end needs no clamping (the
            // address is formed without `add`'s in-bounds requirement).
            let ahead = ((t >> FRAC) as usize + PREFETCH_ROWS) * stride + (s >> FRAC) as usize;
            _mm_prefetch::<_MM_HINT_T0>(data.as_ptr().wrapping_add(ahead) as *const i8);
            for half in 0..HOMOGRAPHY_STEP / 8 {
                let first = (8 * half) as i64;
                let at = k * HOMOGRAPHY_STEP + 8 * half;
                eight(
                    data,
                    stride,
                    (s + first * ds, ds),
                    (t + first * dt, dt),
                    out,
                    at,
                );
            }
        }
    }
}

#[inline(always)]
fn bilinear(p00: u8, p01: u8, p10: u8, p11: u8, fx: u32, fy: u32) -> u8 {
    let top = p00 as u32 * (WEIGHT_ONE - fx) + p01 as u32 * fx;
    let bottom = p10 as u32 * (WEIGHT_ONE - fx) + p11 as u32 * fx;
    let sum = top * (WEIGHT_ONE - fy) + bottom * fy;
    ((sum + (1 << (2 * WEIGHT_BITS - 1))) >> (2 * WEIGHT_BITS)) as u8
}

fn sample_edge(src: &Plane, s: i64, t: i64, edge: PlaneEdge) -> u8 {
    let (w, h) = (src.width as i64, src.height as i64);
    if let PlaneEdge::Fill(value) = edge {
        let outside = s < -HALF || s >= w * ONE - HALF || t < -HALF || t >= h * ONE - HALF;
        if outside {
            return value;
        }
    }
    let (xi, yi) = (s >> FRAC, t >> FRAC);
    let fx = ((s >> (FRAC - WEIGHT_BITS)) & WEIGHT_MASK) as u32;
    let fy = ((t >> (FRAC - WEIGHT_BITS)) & WEIGHT_MASK) as u32;
    let cx = |v: i64| v.clamp(0, w - 1) as usize;
    let cy = |v: i64| v.clamp(0, h - 1) as usize;
    let (x0, x1, y0, y1) = (cx(xi), cx(xi + 1), cy(yi), cy(yi + 1));
    bilinear(
        src.get(x0, y0),
        src.get(x1, y0),
        src.get(x0, y1),
        src.get(x1, y1),
        fx,
        fy,
    )
}

/// out(x, y) = src(x + tx, y + ty), with the edge rule where that is outside. Matches what the
/// bilinear kernels give at whole-pixel positions, byte for byte.
fn copy_translated(src: &Plane, tx: i64, ty: i64, edge: PlaneEdge, dst: &mut Plane) {
    let (w, h) = (src.width as i64, src.height as i64);
    let n = dst.width as i64;
    // Output columns whose source column is inside: 0 ≤ x + tx < w.
    let x_start = (-tx).clamp(0, n);
    let x_end = (w - tx).clamp(x_start, n);
    for y in 0..dst.height {
        let sy = y as i64 + ty;
        let out = dst.row_mut(y);
        let sy = match edge {
            PlaneEdge::Fill(v) if sy < 0 || sy >= h => {
                out.fill(v);
                continue;
            }
            _ => sy.clamp(0, h - 1) as usize,
        };
        let row = src.row(sy);
        let (xs, xe) = (x_start as usize, x_end as usize);
        let (left, right) = match edge {
            PlaneEdge::Fill(v) => (v, v),
            PlaneEdge::Clamp => (row[0], row[row.len() - 1]),
        };
        out[..xs].fill(left);
        if xs < xe {
            let from = (xs as i64 + tx) as usize;
            out[xs..xe].copy_from_slice(&row[from..from + (xe - xs)]);
        }
        out[xe..].fill(right);
    }
}

/// Shifts every row of `src` horizontally by `shift(y)` pixels (positive moves the content
/// left, like the matrices here: output x samples source x + shift) with bilinear sampling.
/// Serves per-row effects such as the motion brush's wind shimmer.
pub fn shift_rows(
    src: &Plane,
    shift: impl Fn(usize) -> f64,
    edge: PlaneEdge,
    dst: &mut Plane,
) -> Result<(), WarpError> {
    check_plane(src)?;
    check_plane(dst)?;
    if src.height != dst.height {
        return Err(WarpError::SizeMismatch);
    }
    if dst.width > MAX_SIDE || src.width > MAX_SOURCE_SIDE {
        return Err(WarpError::TooLarge);
    }
    for y in 0..dst.height {
        // Clamping keeps s0 + x·ONE inside i64 for any shift, NaN included (it becomes 0).
        let s0 = to_fixed(
            shift(y).clamp(-AFFINE_OFFSET_LIMIT, AFFINE_OFFSET_LIMIT),
            FRAC as i32,
        );
        linear_run(
            src,
            s0,
            ONE,
            y as i64 * ONE,
            0,
            edge,
            dst.row_mut(y),
            simd_available(),
        );
    }
    Ok(())
}

/// Cross-fades two frames of the same size into `out`: weight 0 gives `a` exactly and
/// [`BLEND_ONE`] gives `b` exactly.
pub fn blend_frames(
    a: &I420Frame,
    b: &I420Frame,
    weight_b: u32,
    out: &mut I420Frame,
) -> Result<(), WarpError> {
    let w = weight_b.min(BLEND_ONE);
    for (pa, pb, po) in [
        (&a.y, &b.y, &mut out.y),
        (&a.u, &b.u, &mut out.u),
        (&a.v, &b.v, &mut out.v),
    ] {
        check_plane(pa)?;
        check_plane(pb)?;
        check_plane(po)?;
        let same = |p: &Plane| p.width == po.width && p.height == po.height;
        if !same(pa) || !same(pb) {
            return Err(WarpError::SizeMismatch);
        }
        for y in 0..po.height {
            let (ra, rb) = (pa.row(y), pb.row(y));
            for ((o, &va), &vb) in po.row_mut(y).iter_mut().zip(ra).zip(rb) {
                *o = mix(va, vb, w);
            }
        }
    }
    Ok(())
}

#[inline(always)]
fn mix(a: u8, b: u8, w: u32) -> u8 {
    ((a as u32 * (BLEND_ONE - w) + b as u32 * w + BLEND_ONE / 2) >> BLEND_BITS) as u8
}

/// [`blend_frames`] in place: `dst` plays the part of `a` and receives the result, byte for
/// byte what `blend_frames(dst, b, weight_b, out)` would give.
pub fn blend_into(dst: &mut I420Frame, b: &I420Frame, weight_b: u32) -> Result<(), WarpError> {
    let w = weight_b.min(BLEND_ONE);
    for (pd, pb) in [(&mut dst.y, &b.y), (&mut dst.u, &b.u), (&mut dst.v, &b.v)] {
        check_plane(pd)?;
        check_plane(pb)?;
        if pd.width != pb.width || pd.height != pb.height {
            return Err(WarpError::SizeMismatch);
        }
        for y in 0..pd.height {
            let rb = pb.row(y);
            for (o, &vb) in pd.row_mut(y).iter_mut().zip(rb) {
                *o = mix(*o, vb, w);
            }
        }
    }
    Ok(())
}

const BLEND_BITS: u32 = 16;
/// Full weight for [`blend_frames`].
pub const BLEND_ONE: u32 = 1 << BLEND_BITS;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_matches_brute_force() {
        let cases = [
            (-5 * ONE + 7, ONE / 3, 0, 9 * ONE, 40),
            (20 * ONE, -ONE / 2 - 3, 0, 9 * ONE, 60),
            (3 * ONE, 0, 0, 9 * ONE, 10),
            (-3 * ONE, 0, 0, 9 * ONE, 10),
            (0, 1, 0, 5, 10),
            (9 * ONE - 1, -ONE, 0, 9 * ONE, 12),
            (-ONE, 2 * ONE, ONE, 3 * ONE, 8),
        ];
        for (s0, ds, lo, hi, n) in cases {
            let (a, b) = span_1d(s0, ds, lo, hi, n);
            for x in 0..n {
                let s = s0 + x as i64 * ds;
                let inside = lo <= s && s < hi;
                assert_eq!(
                    inside,
                    x >= a && x < b,
                    "case {s0} {ds} x={x} span {a}..{b}"
                );
            }
        }
    }

    /// `count` knots from every implementation this CPU runs: the dispatching entry point and
    /// each SIMD kernel by name, so that a machine with AVX-512 still checks the AVX2 one.
    fn knot_kernels(
        fx: &HomographyFx,
        from: usize,
        y: usize,
        step: KnotStep,
        count: usize,
    ) -> Vec<(&'static str, Vec<(i64, i64)>)> {
        let mut all = vec![("dispatch", vec![(0, 0); count])];
        fx.eval_knots(from, y, step, &mut all[0].1);
        #[cfg(target_arch = "x86_64")]
        {
            let pixels = step.pixels();
            if simd_available() {
                let mut knots = vec![(0, 0); count];
                // SAFETY: AVX2 is present.
                unsafe { avx2::eval_knots(&fx.h, from, y, pixels, &mut knots) };
                all.push(("avx2", knots));
            }
            if avx512::available() {
                let mut knots = vec![(0, 0); count];
                // SAFETY: the kernel's features are present.
                unsafe { avx512::eval_knots(&fx.h, from, y, pixels, &mut knots) };
                all.push(("avx512", knots));
            }
        }
        all
    }

    #[test]
    fn batched_knots_match_one_by_one() {
        let mut rng = crate::seed::SplitMix64::new(5);
        let mut matrices = vec![
            // Behind the camera on part of the row, a zero denominator, NaN, huge and tiny.
            [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [-0.01, 0.0, 1.0]],
            [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]],
            [[f64::NAN, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
            [[1e300, 1.0, 0.0], [0.0, 1e-300, 0.0], [1e-12, 0.0, 1.0]],
        ];
        matrices.extend((0..500).map(|_| {
            let mut m = [[0.0; 3]; 3];
            for row in &mut m {
                for v in row.iter_mut() {
                    *v = rng.range(-2.0, 2.0);
                }
            }
            // Mostly mild perspective, as a camera gives, sometimes anything.
            if !rng.next_u64().is_multiple_of(4) {
                m[2] = [rng.range(-1e-3, 1e-3), rng.range(-1e-3, 1e-3), 1.0];
            }
            m
        }));
        for m in matrices {
            let Ok(fx) = HomographyFx::new(&Transform::from_rows(m)) else {
                continue;
            };
            for (from, y) in [(0, 0), (256, 17), (1024, 719), (4096, 3)] {
                for (step, count) in [KnotStep::Short, KnotStep::Long]
                    .into_iter()
                    .flat_map(|step| [1, 5, 8, 9, 16, 17].map(|count| (step, count)))
                {
                    for (kernel, knots) in knot_kernels(&fx, from, y, step, count) {
                        for (k, &got) in knots.iter().enumerate() {
                            let want = fx.eval((from + k * step.pixels()) as i64, y);
                            assert_eq!(
                                got, want,
                                "{kernel}: {m:?} {step:?} knot {k} from {from} row {y}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn knot_rounding_matches_libm() {
        let mut rng = crate::seed::SplitMix64::new(3);
        let mut values = vec![
            0.5,
            -0.5,
            1.5,
            -1.5,
            2.4999999999,
            -7.5,
            0.0,
            -0.0,
            f64::NAN,
        ];
        values.extend((0..10_000).map(|_| rng.range(-1e15, 1e15)));
        values.extend((0..10_000).map(|_| rng.range(-8.0, 8.0)));
        values.extend((0..1000).map(|k| k as f64 / 2.0 - 250.0));
        for v in values {
            let want = libm::round(v) as i64;
            assert_eq!(round_half_away(v), want, "{v}");
        }
    }

    #[test]
    fn bilinear_exact_at_corners() {
        assert_eq!(bilinear(10, 200, 30, 40, 0, 0), 10);
        assert_eq!(bilinear(255, 255, 255, 255, 255, 255), 255);
        assert_eq!(bilinear(0, 255, 0, 255, 128, 77), 128);
    }

    #[test]
    fn row_shift_by_whole_pixels_matches_translation() {
        let mut src = Plane::new(37, 5, 0);
        for (i, v) in src.data.iter_mut().enumerate() {
            *v = (i * 7) as u8;
        }
        let mut shifted = Plane::new(37, 5, 0);
        let mut moved = Plane::new(37, 5, 0);
        let t = Transform::translation(3.0, 0.0);
        shift_rows(&src, |_| 3.0, PlaneEdge::Clamp, &mut shifted).unwrap();
        warp_plane(&src, &t, PlaneEdge::Clamp, &mut moved).unwrap();
        assert_eq!(shifted, moved);
    }

    #[test]
    fn simd_kernel_matches_its_scalar_twin() {
        let mut rng = crate::seed::SplitMix64::new(42);
        let mut src = Plane::new(333, 211, 0);
        src.data.iter_mut().for_each(|v| *v = rng.next_u64() as u8);
        // A padded plane as well: the stride leaves bytes after each row.
        let mut padded = Plane::new(301, 180, 0);
        padded.stride = 320;
        padded.data = (0..320 * 179 + 301).map(|_| rng.next_u64() as u8).collect();
        let mut cases = 0;
        for plane in [&src, &padded] {
            for k in 0..40 {
                let angle = rng.range(-0.6, 0.6);
                let scale = rng.range(0.4, 2.5);
                let (c, sn) = (libm::cos(angle) * scale, libm::sin(angle) * scale);
                let (tx, ty) = (rng.range(-60.0, 160.0), rng.range(-60.0, 120.0));
                let mut t = Transform::from_rows([[c, -sn, tx], [sn, c, ty], [0.0, 0.0, 1.0]]);
                if k % 3 == 0 {
                    t.m[2][0] = rng.range(-4e-4, 4e-4);
                    t.m[2][1] = rng.range(-4e-4, 4e-4);
                }
                if k % 5 == 0 {
                    t.m[1][0] = 0.0;
                    t.m[1][1] = scale;
                    t.m[0][1] = 0.0;
                }
                let edge = if k % 2 == 0 {
                    PlaneEdge::Clamp
                } else {
                    PlaneEdge::Fill(16)
                };
                let (w, h) = (97 + k * 7, 41 + k * 3);
                let mut a = Plane::new(w, h, 0);
                let mut b = Plane::new(w, h, 0);
                warp_plane_with(plane, &t, edge, &mut a, true).unwrap();
                warp_plane_with(plane, &t, edge, &mut b, false).unwrap();
                assert_eq!(a, b, "case {k}: {t:?}");
                cases += 1;
            }
        }
        assert_eq!(cases, 80);
        // Homographies wholly inside the source: every segment takes the batched SIMD path,
        // with the long knot step and with the short one. Widths that are not a multiple of
        // the long step leave half an interval at the end of a row.
        let mut steps = Vec::new();
        for k in 0..6 {
            let mut t = Transform::from_rows([
                [0.5, 0.02 * k as f64, 30.0],
                [-0.01, 0.55, 20.0],
                [1e-4 * k as f64, -2e-4, 1.0],
            ]);
            t.m[0][0] += 0.01 * k as f64;
            let width = 400 - 16 * (k % 2);
            steps.push(HomographyFx::new(&t).unwrap().knot_step(width, 256));
            let mut want = Plane::new(width, 256, 0);
            warp_plane_with(&src, &t, PlaneEdge::Clamp, &mut want, false).unwrap();
            // The AVX-512 intervals, and their segments on the segment kernels as a CPU
            // without AVX-512 runs them.
            for intervals in [true, false] {
                let paths = Paths {
                    intervals,
                    ..Paths::ALL
                };
                let mut got = Plane::new(width, 256, 0);
                warp_plane_paths(&src, &t, PlaneEdge::Clamp, &mut got, paths).unwrap();
                assert_eq!(got, want, "inside homography {k}, intervals {intervals}");
            }
        }
        assert!(steps.contains(&KnotStep::Long) && steps.contains(&KnotStep::Short));
        if simd_available() {
            // The twin above really ran: a run well inside the plane is done on SIMD lanes.
            let mut out = [0u8; 61];
            let (s, t) = ((3 * ONE + 5, ONE / 3), (7 * ONE + 9, ONE / 7));
            assert_eq!(inside_run_simd(&src.data, src.stride, s, t, &mut out), 56);
            for (x, &v) in out.iter().enumerate().take(56) {
                let (ps, pt) = (s.0 + x as i64 * s.1, t.0 + x as i64 * t.1);
                let (xi, yi) = ((ps >> FRAC) as usize, (pt >> FRAC) as usize);
                let fx = ((ps >> (FRAC - WEIGHT_BITS)) & WEIGHT_MASK) as u32;
                let fy = ((pt >> (FRAC - WEIGHT_BITS)) & WEIGHT_MASK) as u32;
                let want = bilinear(
                    src.get(xi, yi),
                    src.get(xi + 1, yi),
                    src.get(xi, yi + 1),
                    src.get(xi + 1, yi + 1),
                    fx,
                    fy,
                );
                assert_eq!(v, want, "pixel {x}");
            }
        }
    }

    /// Whole homography segments on every kernel this CPU runs against the scalar one: steps
    /// of either sign, windows that fit and windows that do not (too wide, too many rows, past
    /// the end of the buffer), so each kernel's own path and its fallback both run.
    #[test]
    fn segment_kernels_match_the_scalar_one() {
        let mut rng = crate::seed::SplitMix64::new(11);
        let plane = padded_noise(&mut rng);
        let kernels = segment_kernels();
        let mut cases = 0;
        for k in 0..400 {
            // Steps up to ±3 px per pixel horizontally and ±0.6 px vertically, smaller most of
            // the time (a camera's range).
            let wide = if k % 4 == 0 { 3.0 } else { 1.6 };
            let tall = if k % 4 == 1 { 0.6 } else { 0.12 };
            let count = 1 + (rng.next_u64() % 8) as usize;
            let mut segments = Vec::new();
            let (mut s, mut t) = (rng.range(60.0, 330.0), rng.range(12.0, 150.0));
            for _ in 0..count {
                let (ds, dt) = (rng.range(-wide, wide), rng.range(-tall, tall));
                let fixed = |v: f64| (v * ONE as f64) as i64;
                let offset = (rng.next_u64() % 2) as i64 * HOMOGRAPHY_STEP as i64;
                segments.push(segment(
                    (fixed(s), fixed(t)),
                    (fixed(ds), fixed(dt)),
                    offset,
                ));
                s += ds * HOMOGRAPHY_STEP as f64 + rng.range(-0.3, 0.3);
                t += dt * HOMOGRAPHY_STEP as f64 + rng.range(-0.3, 0.3);
            }
            if !segments_fit(&plane, &segments) {
                continue;
            }
            let want = scalar_segments(&plane, &segments);
            for &(name, kernel) in &kernels {
                let mut got = vec![0u8; count * HOMOGRAPHY_STEP];
                kernel(&plane.data, plane.stride, &segments, &mut got);
                assert_eq!(got, want, "{name}, case {k}: {segments:?}");
            }
            cases += 1;
        }
        assert!(cases > 300, "only {cases} cases fit the plane");
    }

    /// A 420×160 plane of noise whose rows are padded to 448 bytes and whose buffer ends
    /// with the last row, so that loads past it are caught.
    fn padded_noise(rng: &mut crate::seed::SplitMix64) -> Plane {
        let mut plane = Plane::new(420, 160, 0);
        plane.stride = 448;
        plane.data = (0..448 * 159 + 420).map(|_| rng.next_u64() as u8).collect();
        plane
    }

    /// Whether the loads of every segment fit the plane (the segment kernels' contract).
    fn segments_fit(plane: &Plane, segments: &[Segment]) -> bool {
        let last = (HOMOGRAPHY_STEP - 1) as i64;
        segments.iter().all(|&(s, ds, t, dt)| {
            loads_fit(
                &plane.data,
                plane.stride,
                (s, s + last * ds),
                (t, t + last * dt),
            )
        })
    }

    /// The segments on the scalar kernel, one after the other.
    fn scalar_segments(plane: &Plane, segments: &[Segment]) -> Vec<u8> {
        let mut out = vec![0u8; segments.len() * HOMOGRAPHY_STEP];
        for (seg, chunk) in segments.iter().zip(out.chunks_mut(HOMOGRAPHY_STEP)) {
            inside_scalar(
                &plane.data,
                plane.stride,
                (seg.0, seg.1),
                (seg.2, seg.3),
                chunk,
            );
        }
        out
    }

    type SegmentKernel = fn(&[u8], usize, &[Segment], &mut [u8]);

    /// The segment kernels this CPU runs, by name.
    fn segment_kernels() -> Vec<(&'static str, SegmentKernel)> {
        #[allow(unused_mut)]
        let mut kernels: Vec<(&'static str, SegmentKernel)> = vec![("dispatch", segments_simd)];
        #[cfg(target_arch = "x86_64")]
        {
            if simd_available() {
                // SAFETY (both): the features are present, and the test only passes segments
                // whose loads fit, with 16 output pixels per segment.
                kernels.push(("avx2", |d, st, seg, out| unsafe {
                    avx2::segments(d, st, seg, out)
                }));
            }
            if avx512::available() {
                kernels.push(("avx512", |d, st, seg, out| unsafe {
                    avx512::segments(d, st, seg, out)
                }));
            }
        }
        kernels
    }

    /// Whole knot intervals on the AVX-512 kernel (where the CPU has it) against the scalar
    /// kernel on the interval's two segments: windows that fit and windows that do not.
    #[test]
    fn interval_kernel_matches_the_scalar_one() {
        let mut rng = crate::seed::SplitMix64::new(13);
        let plane = padded_noise(&mut rng);
        let per = KnotStep::Long.pixels();
        let mut cases = 0;
        for k in 0..400 {
            let wide = if k % 4 == 0 { 3.0 } else { 1.6 };
            let tall = if k % 4 == 1 { 0.6 } else { 0.12 };
            let count = 1 + (rng.next_u64() % 8) as usize;
            let fixed = |v: f64| (v * ONE as f64) as i64;
            let (mut s, mut t) = (rng.range(60.0, 330.0), rng.range(12.0, 150.0));
            let mut knots = vec![(fixed(s), fixed(t))];
            for _ in 0..count {
                s += rng.range(-wide, wide) * per as f64;
                t += rng.range(-tall, tall) * per as f64;
                knots.push((fixed(s), fixed(t)));
            }
            let segments: Vec<Segment> = knots
                .windows(2)
                .flat_map(|pair| {
                    let steps = KnotStep::Long.steps(pair[0], pair[1]);
                    [0, HOMOGRAPHY_STEP as i64].map(|offset| segment(pair[0], steps, offset))
                })
                .collect();
            if !segments_fit(&plane, &segments) {
                continue;
            }
            let want = scalar_segments(&plane, &segments);
            let mut got = vec![0u8; count * per];
            segments_simd(&plane.data, plane.stride, &segments, &mut got);
            assert_eq!(got, want, "dispatch, case {k}: {knots:?}");
            #[cfg(target_arch = "x86_64")]
            if avx512::available() {
                let mut got = vec![0u8; count * per];
                // SAFETY: the features are present and every segment's loads fit.
                unsafe { avx512::intervals(&plane.data, plane.stride, &knots, &mut got) };
                assert_eq!(got, want, "avx512, case {k}: {knots:?}");
            }
            cases += 1;
        }
        assert!(cases > 250, "only {cases} cases fit the plane");
    }

    /// The long knot step is taken only where linear interpolation over it stays within the
    /// limit, measured against the exact homography over the whole plane; camera moves of
    /// the strength of most requests take it, the strongest turns and anything behind the
    /// camera do not.
    #[test]
    fn long_knot_step_only_where_its_error_stays_small() {
        use crate::camera::{transform_for_values, AxisValues, CanvasLayout};
        let (w, h) = (1280usize, 720usize);
        let layout = CanvasLayout::new(w, h);
        let camera = |pan: f64, tilt: f64, roll: f64, zoom: f64| {
            let values = AxisValues {
                pan,
                tilt,
                roll,
                zoom,
                ..AxisValues::default()
            };
            layout.view_to_canvas() * transform_for_values(&values, w, h)
        };
        let exact = |t: &Transform, x: f64, y: f64| {
            let m = &t.m;
            let den = m[2][0] * x + m[2][1] * y + m[2][2];
            (
                (m[0][0] * x + m[0][1] * y + m[0][2]) / den,
                (m[1][0] * x + m[1][1] * y + m[1][2]) / den,
            )
        };
        let per = KnotStep::Long.pixels();
        let mut long = 0;
        for pan in [-10.0, -5.0, 0.0, 3.0, 10.0] {
            for tilt in [-10.0, -3.0, 0.0, 6.0, 10.0] {
                for (roll, zoom) in [(0.0, 0.0), (4.0, -5.0), (-10.0, 10.0), (10.0, -10.0)] {
                    let t = camera(pan, tilt, roll, zoom);
                    let Ok(fx) = HomographyFx::new(&t) else {
                        continue;
                    };
                    if fx.knot_step(w, h) != KnotStep::Long {
                        continue;
                    }
                    long += 1;
                    let mut worst = 0.0f64;
                    for y in (0..h).step_by(7) {
                        let py = y as f64 + 0.5;
                        for x0 in (0..w).step_by(per) {
                            let a = exact(&t, x0 as f64 + 0.5, py);
                            let b = exact(&t, (x0 + per) as f64 + 0.5, py);
                            for j in 1..per {
                                let f = j as f64 / per as f64;
                                let e = exact(&t, (x0 + j) as f64 + 0.5, py);
                                let du = e.0 - (a.0 + (b.0 - a.0) * f);
                                let dv = e.1 - (a.1 + (b.1 - a.1) * f);
                                worst = worst.max(du.abs()).max(dv.abs());
                            }
                        }
                    }
                    assert!(
                        worst <= MILD_ERROR_LIMIT,
                        "pan {pan} tilt {tilt} roll {roll} zoom {zoom}: error {worst}"
                    );
                }
            }
        }
        assert!(long > 50, "only {long} cameras took the long step");
        let mild = HomographyFx::new(&camera(5.0, 3.0, 4.0, -5.0)).unwrap();
        assert_eq!(mild.knot_step(w, h), KnotStep::Long);
        let strong = HomographyFx::new(&camera(10.0, 10.0, 10.0, 10.0)).unwrap();
        assert_eq!(strong.knot_step(w, h), KnotStep::Short);
        let behind = Transform::from_rows([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [-0.01, 0.0, 1.0]]);
        let behind = HomographyFx::new(&behind).unwrap();
        assert_eq!(behind.knot_step(w, h), KnotStep::Short);
    }

    #[test]
    fn separable_path_matches_the_general_one() {
        let mut rng = crate::seed::SplitMix64::new(7);
        let mut src = Plane::new(333, 211, 0);
        src.data.iter_mut().for_each(|v| *v = rng.next_u64() as u8);
        let mut padded = Plane::new(301, 180, 0);
        padded.stride = 320;
        padded.data = (0..320 * 179 + 301).map(|_| rng.next_u64() as u8).collect();
        let mut cases = 0;
        for plane in [&src, &padded] {
            for k in 0..60 {
                let sx = rng.range(0.3, 2.6) * if k % 7 == 3 { -1.0 } else { 1.0 };
                let sy = if k % 4 == 0 {
                    sx
                } else {
                    rng.range(0.3, 2.6) * if k % 9 == 4 { -1.0 } else { 1.0 }
                };
                let (tx, ty) = (rng.range(-120.0, 260.0), rng.range(-120.0, 200.0));
                let mut t = Transform::from_rows([[sx, 0.0, tx], [0.0, sy, ty], [0.0, 0.0, 1.0]]);
                if k % 11 == 5 {
                    // A bottom row (0, 0, w) with w ≠ 1 is affine as well.
                    t.m.iter_mut().flatten().for_each(|v| *v *= 2.0);
                }
                if k % 13 == 6 {
                    // Wholly outside the plane.
                    t.m[0][2] = 5000.0;
                }
                let edge = match k % 3 {
                    0 => PlaneEdge::Clamp,
                    1 => PlaneEdge::Fill(16),
                    _ => PlaneEdge::Fill(200),
                };
                let (w, h) = (97 + k * 5, 41 + k * 3);
                let mut want = Plane::new(w, h, 0);
                warp_plane_paths(plane, &t, edge, &mut want, Paths::GENERAL).unwrap();
                for simd in [false, true] {
                    let mut got = Plane::new(w, h, 1);
                    let paths = Paths { simd, ..Paths::ALL };
                    warp_plane_paths(plane, &t, edge, &mut got, paths).unwrap();
                    assert_eq!(got, want, "case {k} simd {simd}: {t:?} {edge:?}");
                }
                cases += 1;
            }
        }
        assert_eq!(cases, 120);
        // The camera's chroma matrices of axis-aligned moves are axis-aligned too.
        let t = Transform::scale_about(0.87, 640.0, 360.0) * Transform::translation(3.3, -1.7);
        let mut want = I420Frame::filled(128, 72, (0, 0, 0));
        let mut got = want.clone();
        let mut big = I420Frame::filled(400, 300, (0, 0, 0));
        for p in [&mut big.y, &mut big.u, &mut big.v] {
            p.data.iter_mut().for_each(|v| *v = rng.next_u64() as u8);
        }
        warp_frame(&big, &t, Edge::Clamp, &mut got).unwrap();
        for (s, d, m) in [
            (&big.y, &mut want.y, t),
            (&big.u, &mut want.u, t.chroma()),
            (&big.v, &mut want.v, t.chroma()),
        ] {
            warp_plane_paths(s, &m, PlaneEdge::Clamp, d, Paths::GENERAL).unwrap();
        }
        assert_eq!(got, want);
    }

    #[test]
    fn separable_simd_kernel_matches_its_scalar_twin() {
        let mut rng = crate::seed::SplitMix64::new(11);
        let needed = 700;
        let mut sums: Vec<u16> = (0..needed + SUMS_PAD)
            .map(|_| (rng.next_u64() % 65_281) as u16)
            .collect();
        sums[needed..].fill(0);
        let mut shuffled = 0;
        for n in [0usize, 7, 8, 61, 64, 300] {
            // Random taps (gathered), and taps at steps of 0.4 to 2.4 sums per pixel (mostly
            // shuffled windows, the widest gathered), ending on the last sum.
            let mut tables: Vec<Vec<u32>> =
                vec![(0..n).map(|_| (rng.next_u64() % 699) as u32).collect()];
            for step in [0.4, 1.0, 1.33, 1.5, 2.0, 2.25, 2.4] {
                let start = rng.range(0.0, 2.0);
                let taps: Vec<u32> = (0..n)
                    .map(|x| ((start + x as f64 * step) as u32).min(698))
                    .collect();
                tables.push(taps);
            }
            // Every tap on the last sum: its windows reach into the zero padding.
            tables.push(vec![698; n]);
            for taps in tables {
                let weights: Vec<u32> = (0..n)
                    .map(|_| {
                        let f = (rng.next_u64() % 256) as u32;
                        (WEIGHT_ONE - f) | f << 16
                    })
                    .collect();
                let cols = Columns::new(taps.clone(), weights.clone(), needed);
                shuffled += cols.windows.iter().flatten().count();
                let mut want = vec![0u8; n];
                cols.run(&sums, &mut want, false);
                let mut got = vec![1u8; n];
                cols.run(&sums, &mut got, true);
                assert_eq!(got, want, "n = {n}");
                if simd_available() {
                    assert_eq!(cols.run_simd(&sums, &mut got), n / 8 * 8);
                    assert_eq!(got, want, "n = {n}");
                }
                // And both are the bilinear sum of products on the taps.
                for x in 0..n {
                    let (i, f) = (taps[x] as usize, weights[x] >> 16);
                    let exact = (u32::from(sums[i]) * (WEIGHT_ONE - f)
                        + u32::from(sums[i + 1]) * f
                        + (1 << 15))
                        >> 16;
                    assert_eq!(u32::from(want[x]), exact);
                }
            }
        }
        assert!(shuffled > 100, "{shuffled}");
    }

    #[test]
    fn chroma_matrix_halves_translation() {
        let c = Transform::translation(4.0, -6.0).chroma();
        assert_eq!(c.integer_translation(), Some((2, -3)));
    }
}
