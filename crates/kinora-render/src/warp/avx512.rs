//! The homography kernels on AVX-512 lanes (F, BW, DQ and VBMI), chosen at run time where the
//! CPU has them: the knots eight at a time, and the segments two at a time (32 output pixels
//! per pass, in 16-bit lanes) or a whole 32-pixel knot interval a pass, straight from its
//! knots; bit-exact to `HomographyFx::eval` and `inside_scalar` like their AVX2 siblings.
//! Positions are formed in 32-bit lanes from the segments' 16.16 fixed point.
//!
//! A pass serves every tap from seven 64-byte row windows with byte permutes over pairs of
//! rows; a pass whose taps spread wider (more than 63 columns or 7 rows) or reach past the end
//! of the plane's buffer goes to the AVX2 kernel, which gives the same bytes.

use std::arch::x86_64::*;

use super::{
    segment, KnotStep, Segment, FRAC, HALF, HOMOGRAPHY_STEP, ONE, POS_LIMIT, SEGMENT_FRAC,
    WEIGHT_BITS,
};

/// Columns of one row window: the width of a zmm register.
const WINDOW: usize = 64;
/// Rows read by a pass: taps of rows `y0 ..= y0 + 6` (a roll of a few degrees at the canvas's
/// 1.5× scale spreads 32 pixels over four or five rows).
const ROWS: usize = 7;
/// How many source rows below a pass's first one its prefetch starts. In a 1080p render the
/// draw thread shares the machine with an encoder, and nearer rows (6, as the AVX2 kernel
/// uses) still arrived late: 8 to 16 measured alike, 4 or 6 up to 1.5× slower.
const PREFETCH_ROWS: usize = 10;

/// Whether this CPU runs the kernels of this module.
pub(super) fn available() -> bool {
    // Asked once per strip row: one load instead of five feature tests.
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512dq")
            && std::is_x86_feature_detected!("avx512vbmi")
    })
}

/// `HomographyFx::eval_knots` eight knots at a time: every operation of `HomographyFx::eval`
/// in the same order (IEEE multiplications, additions and one division, never fused), the
/// rounding half away from zero, and the conversion to integers in lanes, NaN giving 0 as the
/// scalar `as` does.
///
/// # Safety
/// The features of [`available`] must be present.
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512dq,avx512vbmi")]
pub(super) unsafe fn eval_knots(
    h: &[[f64; 3]; 3],
    from: usize,
    y: usize,
    step: usize,
    knots: &mut [(i64, i64)],
) {
    const GROUP: usize = 8;
    let py = y as f64 + 0.5;
    let splat = _mm512_set1_pd;
    let row_part = [h[0][1] * py, h[1][1] * py, h[2][1] * py].map(|v| _mm512_set1_pd(v));
    let limit = (POS_LIMIT >> FRAC) as f64;
    let (lo, hi) = (splat(-limit), splat(limit));
    let (scale, half, one) = (splat(ONE as f64), splat(0.5), splat(1.0));
    let step_px = step as f64;
    let offsets = _mm512_setr_pd(
        0.0,
        step_px,
        2.0 * step_px,
        3.0 * step_px,
        4.0 * step_px,
        5.0 * step_px,
        6.0 * step_px,
        7.0 * step_px,
    );
    // round_half_away(clamp(p) · 2^32) as i64 − HALF; `clamp` keeps NaN, as max/min do when
    // NaN is their second operand.
    let fixed = |p: __m512d| {
        let v = _mm512_mul_pd(_mm512_min_pd(hi, _mm512_max_pd(lo, p)), scale);
        let i = _mm512_roundscale_pd::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(v);
        let f = _mm512_sub_pd(v, i);
        let up = _mm512_cmp_pd_mask::<_CMP_GE_OQ>(f, half);
        let down = _mm512_cmp_pd_mask::<_CMP_LE_OQ>(f, _mm512_sub_pd(splat(0.0), half));
        let rounded = _mm512_mask_sub_pd(_mm512_mask_add_pd(i, up, i, one), down, i, one);
        let number = !_mm512_cmp_pd_mask::<_CMP_UNORD_Q>(rounded, rounded);
        _mm512_sub_epi64(
            _mm512_maskz_cvttpd_epi64(number, rounded),
            _mm512_set1_epi64(HALF),
        )
    };
    let firsts = _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11);
    let lasts = _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15);
    let behind = _mm512_set1_epi64(-POS_LIMIT);
    for (group, out) in knots.chunks_mut(GROUP).enumerate() {
        // Integers below 2^53 and halves: exact, as `x as f64 + 0.5` is.
        let x0 = (from + GROUP * group * step) as f64;
        let px = _mm512_add_pd(_mm512_add_pd(splat(x0), offsets), half);
        let line = |r: usize| {
            _mm512_add_pd(
                _mm512_add_pd(_mm512_mul_pd(splat(h[r][0]), px), row_part[r]),
                splat(h[r][2]),
            )
        };
        let den = line(2);
        let inv = _mm512_div_pd(one, den);
        // Not `den > 0` (NaN too): behind the camera, as in `eval`.
        let ahead = _mm512_cmp_pd_mask::<_CMP_GT_OQ>(den, _mm512_setzero_pd());
        let u = _mm512_mask_blend_epi64(ahead, behind, fixed(_mm512_mul_pd(line(0), inv)));
        let v = _mm512_mask_blend_epi64(ahead, behind, fixed(_mm512_mul_pd(line(1), inv)));
        let pairs = [
            _mm512_permutex2var_epi64(u, firsts, v),
            _mm512_permutex2var_epi64(u, lasts, v),
        ];
        // Two 64-bit lanes per knot; a short last group stores only its own lanes (masked-off
        // lanes are never written).
        let lanes = 2 * out.len();
        let at = out.as_mut_ptr() as *mut i64;
        _mm512_mask_storeu_epi64(at, low_lanes(lanes), pairs[0]);
        _mm512_mask_storeu_epi64(at.add(8), low_lanes(lanes.saturating_sub(8)), pairs[1]);
    }
}

/// Whole homography segments, as `super::avx2::segments`.
///
/// # Safety
/// AVX-512 F, BW and VBMI and AVX2 must be present; the contract of `super::avx2::segments`
/// holds (every tap inside `data`, `data.len()` below 2^31, 16 pixels of `out` per segment).
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vbmi")]
pub(super) unsafe fn segments(data: &[u8], stride: usize, segments: &[Segment], out: &mut [u8]) {
    let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let pairs = segments.chunks_exact(2);
    let rest = pairs.remainder();
    let mut at = 0;
    for pair in pairs {
        let dst = &mut out[at..at + 2 * HOMOGRAPHY_STEP];
        if !pass(data, stride, (pair[0], pair[1]), lanes, dst) {
            super::avx2::segments(data, stride, pair, dst);
        }
        at += 2 * HOMOGRAPHY_STEP;
    }
    if !rest.is_empty() {
        super::avx2::segments(data, stride, rest, &mut out[at..]);
    }
}

/// Whole knot intervals of 32 pixels: interval k covers pixels 32k..32k + 32 of `out`,
/// between `knots[k]` and `knots[k + 1]`, exactly as its two segments (see
/// `super::homography_row`) would.
///
/// # Safety
/// As for [`segments`], for the segments of every interval; `knots` holds one knot more
/// than `out` has intervals.
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vbmi")]
pub(super) unsafe fn intervals(data: &[u8], stride: usize, knots: &[(i64, i64)], out: &mut [u8]) {
    let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (pair, dst) in knots
        .windows(2)
        .zip(out.chunks_exact_mut(2 * HOMOGRAPHY_STEP))
    {
        let steps = KnotStep::Long.steps(pair[0], pair[1]);
        let half = HOMOGRAPHY_STEP as i64;
        let (first, second) = (segment(pair[0], steps, 0), segment(pair[0], steps, half));
        if !interval_pass(data, stride, first, lanes, dst) {
            super::avx2::segments(data, stride, &[first, second], dst);
        }
    }
}

/// floor((p + j·d) / 2^24) − origin·256 for j = 0..16 in 32-bit lanes, exactly. A segment's
/// p and d have their low bits clear (see `SEGMENT_POSITION_MASK`), so with P = p >> 16 and
/// D = d >> 16 this is (P − origin·2^16 + j·D) >> 8; `pass` calls it only when every
/// position of the segment lies inside its window, where each term fits 32 bits.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn positions(p: i64, d: i64, origin: i64, lanes: __m512i) -> __m512i {
    let start = ((p >> (FRAC - SEGMENT_FRAC)) - (origin << SEGMENT_FRAC)) as i32;
    let step = (d >> (FRAC - SEGMENT_FRAC)) as i32;
    _mm512_srai_epi32::<{ SEGMENT_FRAC - WEIGHT_BITS }>(_mm512_add_epi32(
        _mm512_set1_epi32(start),
        _mm512_mullo_epi32(lanes, _mm512_set1_epi32(step)),
    ))
}

/// A mask of the first `n` (at most 8) lanes.
#[inline(always)]
fn low_lanes(n: usize) -> __mmask8 {
    ((1u16 << n.min(8)) - 1) as __mmask8
}

/// The low 16-bit halves of two vectors of sixteen 32-bit lanes, `a`'s then `b`'s.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn narrow(a: __m512i, b: __m512i) -> __m512i {
    let even = _mm512_set_epi16(
        62, 60, 58, 56, 54, 52, 50, 48, 46, 44, 42, 40, 38, 36, 34, 32, 30, 28, 26, 24, 22, 20, 18,
        16, 14, 12, 10, 8, 6, 4, 2, 0,
    );
    _mm512_permutex2var_epi16(a, even, b)
}

/// The smallest and largest integer parts of the end positions of two segments (a segment is
/// linear, so its ends bound it).
#[inline(always)]
fn extent(a: (i64, i64), b: (i64, i64)) -> (i64, i64) {
    let last = (HOMOGRAPHY_STEP - 1) as i64;
    let ends = [a.0, a.0 + last * a.1, b.0, b.0 + last * b.1];
    let lo = ends.iter().fold(i64::MAX, |m, &v| m.min(v));
    let hi = ends.iter().fold(i64::MIN, |m, &v| m.max(v));
    (lo >> FRAC, hi >> FRAC)
}

/// Two segments into `out` (32 pixels), or false, untouched, when their taps do not fit the
/// windows.
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vbmi")]
unsafe fn pass(
    data: &[u8],
    stride: usize,
    (a, b): (Segment, Segment),
    lanes: __m512i,
    out: &mut [u8],
) -> bool {
    let (x0, x1) = extent((a.0, a.1), (b.0, b.1));
    let (y0, y1) = extent((a.2, a.3), (b.2, b.3));
    let Some(first) = window(data, stride, (x0, x1), (y0, y1), out) else {
        return false;
    };
    // 32 lanes of integer·256 + fraction, relative to the window's first column and row.
    let s = narrow(
        positions(a.0, a.1, x0, lanes),
        positions(b.0, b.1, x0, lanes),
    );
    let t = narrow(
        positions(a.2, a.3, y0, lanes),
        positions(b.2, b.3, y0, lanes),
    );
    sample(data, stride, first, s, t, out);
    true
}

/// One knot interval of 32 pixels into `out`: samples at s + j·ds, t + j·dt for j = 0..32,
/// from (s, ds, t, dt) with their low bits clear, the same as its two segments
/// (`super::segment` at offsets 0 and 16) give. False, untouched, when the taps do not fit
/// the windows.
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vbmi")]
unsafe fn interval_pass(
    data: &[u8],
    stride: usize,
    (s, ds, t, dt): Segment,
    lanes: __m512i,
    out: &mut [u8],
) -> bool {
    let last = (2 * HOMOGRAPHY_STEP - 1) as i64;
    let ends = |p: i64, d: i64| {
        let (a, b) = (p >> FRAC, (p + last * d) >> FRAC);
        (a.min(b), a.max(b))
    };
    let ((x0, x1), (y0, y1)) = (ends(s, ds), ends(t, dt));
    let Some(first) = window(data, stride, (x0, x1), (y0, y1), out) else {
        return false;
    };
    // The second sixteen lanes continue the first: positions p + (16 + j)·d.
    let half = HOMOGRAPHY_STEP as i64;
    let s = narrow(
        positions(s, ds, x0, lanes),
        positions(s + half * ds, ds, x0, lanes),
    );
    let t = narrow(
        positions(t, dt, y0, lanes),
        positions(t + half * dt, dt, y0, lanes),
    );
    sample(data, stride, first, s, t, out);
    true
}

/// Where the windows of a pass start in `data`, when every tap of the pass fits them: tap
/// columns `x0..=x1 + 1` within one window width, tap rows `y0..=y1 + 1` among the window
/// rows, every window inside `data`, and room for 32 pixels in `out`. Also prefetches the
/// rows a few output rows below.
#[inline(always)]
fn window(
    data: &[u8],
    stride: usize,
    (x0, x1): (i64, i64),
    (y0, y1): (i64, i64),
    out: &[u8],
) -> Option<usize> {
    // Every tap column, right taps included, inside the window; every tap row among its rows.
    if x0 < 0 || y0 < 0 || x1 - x0 > (WINDOW - 2) as i64 || y1 - y0 > (ROWS - 2) as i64 {
        return None;
    }
    let first = y0 as usize * stride + x0 as usize;
    if first + (ROWS - 1) * stride + WINDOW > data.len() || out.len() < 2 * HOMOGRAPHY_STEP {
        return None;
    }
    // The source rows a few output rows below (see `super::avx2::segments`), both cache lines
    // a window may touch. Two rows: at the canvas's 1.5× scale the next output row starts one
    // or two source rows lower, and a single row left every other row to wait for memory.
    // A prefetch never faults, so rows past the end of the canvas need no clamping (the
    // address is formed without `add`'s in-bounds requirement).
    for row in PREFETCH_ROWS..PREFETCH_ROWS + 2 {
        let ahead = data.as_ptr().wrapping_add(first + row * stride);
        // SAFETY: prefetching is a hint; any address is allowed.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(ahead as *const i8);
            _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(WINDOW - 1) as *const i8);
        }
    }
    Some(first)
}

/// The 32 samples at positions `s`, `t` (16-bit lanes of integer·256 + fraction, relative to
/// the window at `first`) into `out`.
///
/// # Safety
/// The features must be present; `first` must come from [`window`] for these positions.
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512bw,avx512vbmi")]
unsafe fn sample(data: &[u8], stride: usize, first: usize, s: __m512i, t: __m512i, out: &mut [u8]) {
    let low = _mm512_set1_epi16(0xff);
    let (fx, column) = (_mm512_and_si512(s, low), _mm512_srli_epi16::<8>(s));
    let (fy, row) = (_mm512_and_si512(t, low), _mm512_srli_epi16::<8>(t));
    // A permute over two rows picks byte `column + 64·(row & 1)`; each lane asks for its pixel's
    // two columns, so it receives the tap pair (left, right).
    let c = _mm512_add_epi16(
        column,
        _mm512_slli_epi16::<6>(_mm512_and_si512(row, _mm512_set1_epi16(1))),
    );
    let pick = _mm512_add_epi16(
        _mm512_add_epi16(c, _mm512_slli_epi16::<8>(c)),
        _mm512_set1_epi16(0x100),
    );
    let past_2 = _mm512_cmpge_epu16_mask(row, _mm512_set1_epi16(2));
    let past_4 = _mm512_cmpge_epu16_mask(row, _mm512_set1_epi16(4));
    let load = |k: usize| _mm512_loadu_si512(data.as_ptr().add(first + k * stride) as *const _);
    let rows: [__m512i; ROWS] = std::array::from_fn(load);
    // Upper taps in row `row` (of rows 0–1, 2–3 or 4–5), lower taps one row down (1–2, 3–4,
    // 5–6).
    let taps = |from: usize| {
        let pair = |k: usize| _mm512_permutex2var_epi8(rows[k], pick, rows[k + 1]);
        let near = _mm512_mask_blend_epi16(past_2, pair(from), pair(from + 2));
        _mm512_mask_blend_epi16(past_4, near, pair(from + 4))
    };
    let (upper, lower) = (taps(0), taps(1));
    // left·(256 − fx) + right·fx = left·256 + (right − left)·fx, below 2^16, so wrapping 16-bit
    // arithmetic gives it exactly.
    let horizontal = |pair: __m512i| {
        let (left, right) = (_mm512_and_si512(pair, low), _mm512_srli_epi16::<8>(pair));
        _mm512_add_epi16(
            _mm512_slli_epi16::<8>(pair),
            _mm512_mullo_epi16(_mm512_sub_epi16(right, left), fx),
        )
    };
    let (top, bottom) = (horizontal(upper), horizontal(lower));
    // With top = 256·a + b and bottom = 256·c + d: top·(256 − fy) + bottom·fy = 256·H + L,
    // H = a·(256 − fy) + c·fy and L = b·(256 − fy) + d·fy, each below 2^16 and computed like
    // the horizontal step. (256·H + L + 2^15) >> 16 = (H + (L >> 8) + 128) >> 8, and that sum
    // stays below 2^16 because 256·H + L ≤ 255·2^16.
    let high = _mm512_set1_epi16(0xff00u16 as i16);
    let h = _mm512_add_epi16(
        _mm512_and_si512(top, high),
        _mm512_mullo_epi16(
            _mm512_sub_epi16(_mm512_srli_epi16::<8>(bottom), _mm512_srli_epi16::<8>(top)),
            fy,
        ),
    );
    let l = _mm512_add_epi16(
        _mm512_slli_epi16::<8>(top),
        _mm512_mullo_epi16(
            _mm512_sub_epi16(_mm512_and_si512(bottom, low), _mm512_and_si512(top, low)),
            fy,
        ),
    );
    let value = _mm512_srli_epi16::<8>(_mm512_add_epi16(
        _mm512_add_epi16(h, _mm512_srli_epi16::<8>(l)),
        _mm512_set1_epi16(128),
    ));
    _mm256_storeu_si256(
        out.as_mut_ptr() as *mut __m256i,
        _mm512_cvtepi16_epi8(value),
    );
}
