//! The shared motion estimator (§3.14) for reference and source videos.
//!
//! 1. Luma thumbnails 160 px wide (height from the display aspect, rounded to even), area
//!    averaged, sampled at 24 fps by sample-and-hold.
//! 2. For each pair of consecutive thumbnails, 16×16 blocks of the current thumbnail on the
//!    interior (an 8 px border skipped) are matched in the previous one by a full ±8 px
//!    integer SAD search. Ties go to the shorter vector (squared length), then to the first
//!    in raster order (dy, then dx, from −8).
//! 3. A similarity transform is fitted to the matches by least squares in f64, then once more
//!    without the matches more than 2 px from the first fit.
//! 4. The activity is the mean absolute difference between the current thumbnail and the
//!    previous one warped by the fitted transform; the centroid is the horizontal centre of
//!    that difference map.
//!
//! Pixel work (SAD, warp, differences) is integer; only the per-pair fit uses f64 (and
//! `libm` for its logarithm and arctangent), so results are the same on every machine.

use crate::engine::{CancelFlag, RenderError};
use crate::frame::Plane;

use super::SourceVideo;

/// Thumbnail width in pixels.
pub const THUMB_WIDTH: u32 = 160;
const BLOCK: usize = 16;
const BORDER: usize = 8;
const SEARCH: i32 = 8;
const OUTLIER_PX: f64 = 2.0;

/// How the picture content moved from one thumbnail to the next, as the similarity
/// transform p_cur = s·R(θ)·p_prev + (dx, dy), with points measured from the thumbnail
/// centre in thumbnail pixels (x right, y down).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct GlobalMotion {
    /// Translation of the content at the thumbnail centre, in thumbnail pixels: positive dx
    /// moves content right (the camera pans left), positive dy moves it down.
    pub dx: f64,
    pub dy: f64,
    /// ln s: positive when content grows (the camera pushes in).
    pub log_scale: f64,
    /// θ in radians; positive turns content clockwise on screen (y points down).
    pub rotation: f64,
}

/// The estimator's result for one pair of consecutive thumbnails.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PairMotion {
    pub global: GlobalMotion,
    /// Mean absolute luma difference (code values, 0–255) after global compensation.
    pub activity: f64,
    /// Horizontal centroid of the difference map, 0 (left edge) to 1 (right edge); 0.5 when
    /// nothing differs.
    pub centroid: f64,
}

/// Motion over a clip at 24 fps. Entry k of every vector describes the step from output
/// frame k to frame k + 1, so each has `frames − 1` entries.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MotionTrack {
    pub global: Vec<GlobalMotion>,
    pub activity: Vec<f64>,
    pub centroid: Vec<f64>,
    pub thumb_width: u32,
    pub thumb_height: u32,
}

impl MotionTrack {
    fn push(&mut self, m: PairMotion) {
        self.global.push(m.global);
        self.activity.push(m.activity);
        self.centroid.push(m.centroid);
    }
}

/// Thumbnail size for a display size: 160 wide, height ⌊80·h/w + ½⌋·2 (at least 2).
pub fn thumbnail_size(width: u32, height: u32) -> (u32, u32) {
    let (w, h) = (u64::from(width.max(1)), u64::from(height));
    let half = ((160 * h + w) / (2 * w)).max(1);
    (THUMB_WIDTH, u32::try_from(half * 2).unwrap_or(u32::MAX))
}

/// Runs the estimator over the first `frames` output frames (24 fps) of a video.
pub fn estimate_motion(
    video: &SourceVideo,
    frames: u32,
    cancel: &CancelFlag,
) -> Result<MotionTrack, RenderError> {
    let (dw, dh) = video.display_size();
    let (tw, th) = thumbnail_size(dw, dh);
    let mut track = MotionTrack {
        thumb_width: tw,
        thumb_height: th,
        ..MotionTrack::default()
    };
    let mut prev: Option<Plane> = None;
    video.for_each_luma_24(tw, th, 0..frames, cancel, |_, thumb| {
        if let Some(p) = &prev {
            // A held source frame repeats exactly: no motion, no activity.
            let m = if p.data == thumb.data {
                PairMotion {
                    centroid: 0.5,
                    ..PairMotion::default()
                }
            } else {
                pair_motion(p, thumb)
            };
            track.push(m);
        }
        prev = Some(thumb.clone());
        Ok(())
    })?;
    Ok(track)
}

/// The estimator over ready-made thumbnails (all the same size).
pub fn estimate_motion_from_thumbnails(thumbs: &[Plane]) -> MotionTrack {
    let mut track = MotionTrack {
        thumb_width: thumbs.first().map_or(0, |t| t.width as u32),
        thumb_height: thumbs.first().map_or(0, |t| t.height as u32),
        ..MotionTrack::default()
    };
    for pair in thumbs.windows(2) {
        track.push(pair_motion(&pair[0], &pair[1]));
    }
    track
}

/// One block match: the block centre in the current thumbnail and the matching position in
/// the previous one, both relative to the thumbnail centre.
#[derive(Clone, Copy, Debug)]
struct Match {
    cur: (f64, f64),
    prev: (f64, f64),
}

/// Motion from `prev` to `cur` (same size).
pub fn pair_motion(prev: &Plane, cur: &Plane) -> PairMotion {
    let matches = block_matches(prev, cur);
    let global = fit_similarity(&matches);
    let (activity, centroid) = compensated_difference(prev, cur, &global);
    PairMotion {
        global: global.to_motion(),
        activity,
        centroid,
    }
}

fn sad_block(
    prev: &Plane,
    cur: &Plane,
    bx: usize,
    by: usize,
    px: usize,
    py: usize,
    bound: u32,
) -> u32 {
    let mut sad = 0u32;
    for row in 0..BLOCK {
        let c = &cur.row(by + row)[bx..bx + BLOCK];
        let p = &prev.row(py + row)[px..px + BLOCK];
        sad += c
            .iter()
            .zip(p)
            .map(|(&a, &b)| u32::from(a.abs_diff(b)))
            .sum::<u32>();
        // Strictly worse already: stopping cannot change which vector wins a tie.
        if sad > bound {
            return sad;
        }
    }
    sad
}

fn block_matches(prev: &Plane, cur: &Plane) -> Vec<Match> {
    let (w, h) = (cur.width.min(prev.width), cur.height.min(prev.height));
    let (cx, cy) = (w as f64 / 2.0, h as f64 / 2.0);
    let mut out = Vec::new();
    let mut by = BORDER;
    while by + BLOCK + BORDER <= h {
        let mut bx = BORDER;
        while bx + BLOCK + BORDER <= w {
            let mut best = (u32::MAX, i32::MAX, 0i32, 0i32); // sad, length², dx, dy
            for dy in -SEARCH..=SEARCH {
                for dx in -SEARCH..=SEARCH {
                    let px = (bx as i32 + dx) as usize;
                    let py = (by as i32 + dy) as usize;
                    let sad = sad_block(prev, cur, bx, by, px, py, best.0);
                    let len = dx * dx + dy * dy;
                    if sad < best.0 || (sad == best.0 && len < best.1) {
                        best = (sad, len, dx, dy);
                    }
                }
            }
            let centre = (
                bx as f64 + BLOCK as f64 / 2.0,
                by as f64 + BLOCK as f64 / 2.0,
            );
            out.push(Match {
                cur: (centre.0 - cx, centre.1 - cy),
                prev: (
                    centre.0 + f64::from(best.2) - cx,
                    centre.1 + f64::from(best.3) - cy,
                ),
            });
            bx += BLOCK;
        }
        by += BLOCK;
    }
    out
}

/// p_cur = [a −b; b a]·p_prev + (tx, ty).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Similarity {
    a: f64,
    b: f64,
    tx: f64,
    ty: f64,
}

impl Similarity {
    const IDENTITY: Self = Self {
        a: 1.0,
        b: 0.0,
        tx: 0.0,
        ty: 0.0,
    };

    fn apply(&self, (x, y): (f64, f64)) -> (f64, f64) {
        (
            self.a * x - self.b * y + self.tx,
            self.b * x + self.a * y + self.ty,
        )
    }

    fn to_motion(self) -> GlobalMotion {
        let s = libm::sqrt(self.a * self.a + self.b * self.b);
        GlobalMotion {
            dx: self.tx,
            dy: self.ty,
            log_scale: if s > 0.0 { libm::log(s) } else { 0.0 },
            rotation: libm::atan2(self.b, self.a),
        }
    }
}

/// Least-squares similarity; with fewer than two matches only a translation (or nothing).
fn least_squares(matches: &[Match]) -> Similarity {
    let n = matches.len() as f64;
    if matches.is_empty() {
        return Similarity::IDENTITY;
    }
    let (mut qx, mut qy, mut px, mut py) = (0.0, 0.0, 0.0, 0.0);
    for m in matches {
        qx += m.prev.0;
        qy += m.prev.1;
        px += m.cur.0;
        py += m.cur.1;
    }
    let (qx, qy, px, py) = (qx / n, qy / n, px / n, py / n);
    let (mut den, mut num_a, mut num_b) = (0.0, 0.0, 0.0);
    for m in matches {
        let (ux, uy) = (m.prev.0 - qx, m.prev.1 - qy);
        let (vx, vy) = (m.cur.0 - px, m.cur.1 - py);
        den += ux * ux + uy * uy;
        num_a += ux * vx + uy * vy;
        num_b += ux * vy - uy * vx;
    }
    let (a, b) = if den > 1e-9 {
        (num_a / den, num_b / den)
    } else {
        (1.0, 0.0)
    };
    Similarity {
        a,
        b,
        tx: px - (a * qx - b * qy),
        ty: py - (b * qx + a * qy),
    }
}

/// Fit, drop matches more than 2 px off, fit again (§3.14 step 3).
fn fit_similarity(matches: &[Match]) -> Similarity {
    let first = least_squares(matches);
    let inliers: Vec<Match> = matches
        .iter()
        .copied()
        .filter(|m| {
            let (x, y) = first.apply(m.prev);
            let (ex, ey) = (x - m.cur.0, y - m.cur.1);
            ex * ex + ey * ey <= OUTLIER_PX * OUTLIER_PX
        })
        .collect();
    if inliers.len() == matches.len() || inliers.len() < 2 {
        first
    } else {
        least_squares(&inliers)
    }
}

/// Mean absolute difference between `cur` and `prev` warped by `g`, over the pixels whose
/// source lies inside `prev`, and the horizontal centroid of those differences.
fn compensated_difference(prev: &Plane, cur: &Plane, g: &Similarity) -> (f64, f64) {
    let (w, h) = (cur.width.min(prev.width), cur.height.min(prev.height));
    if w < 2 || h < 2 {
        return (0.0, 0.5);
    }
    let (cx, cy) = (w as f64 / 2.0, h as f64 / 2.0);
    let s2 = g.a * g.a + g.b * g.b;
    let g = if s2 > 1e-6 { *g } else { Similarity::IDENTITY };
    let s2 = g.a * g.a + g.b * g.b;
    // Inverse map from a current pixel index (x, y) to a previous-thumbnail sample position
    // in index units: q = M⁻¹·(p − c − t) + c − ½ with p = (x + ½, y + ½).
    let (ia, ib) = (g.a / s2, g.b / s2);
    let (ox, oy) = (0.5 - cx - g.tx, 0.5 - cy - g.ty);
    let coef = [
        ia,
        ib,
        ia * ox + ib * oy + cx - 0.5,
        -ib,
        ia,
        -ib * ox + ia * oy + cy - 0.5,
    ];
    let fix = |v: f64| libm::round(v * 65536.0) as i64;
    let [a, b, c, d, e, f] = coef.map(fix);
    let max_x = ((w - 1) as i64) << 16;
    let max_y = ((h - 1) as i64) << 16;
    let (mut sum, mut sum_x2, mut count) = (0u64, 0u64, 0u64);
    for y in 0..h {
        let row = cur.row(y);
        for (x, &pc) in row.iter().enumerate().take(w) {
            let qx = a * x as i64 + b * y as i64 + c;
            let qy = d * x as i64 + e * y as i64 + f;
            if qx < 0 || qy < 0 || qx > max_x || qy > max_y {
                continue;
            }
            let (ix, iy) = ((qx >> 16) as usize, (qy >> 16) as usize);
            let (fx, fy) = (((qx >> 8) & 0xff) as u32, ((qy >> 8) & 0xff) as u32);
            let ix1 = (ix + 1).min(w - 1);
            let iy1 = (iy + 1).min(h - 1);
            let p00 = u32::from(prev.get(ix, iy));
            let p10 = u32::from(prev.get(ix1, iy));
            let p01 = u32::from(prev.get(ix, iy1));
            let p11 = u32::from(prev.get(ix1, iy1));
            let top = p00 * (256 - fx) + p10 * fx;
            let bottom = p01 * (256 - fx) + p11 * fx;
            let sample = (top * (256 - fy) + bottom * fy + 32_768) >> 16;
            let diff = u64::from(u32::from(pc).abs_diff(sample));
            sum += diff;
            sum_x2 += (2 * x as u64 + 1) * diff;
            count += 1;
        }
    }
    let activity = if count > 0 {
        sum as f64 / count as f64
    } else {
        0.0
    };
    let centroid = if sum > 0 {
        sum_x2 as f64 / (2.0 * sum as f64) / w as f64
    } else {
        0.5
    };
    (activity, centroid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbnail_heights_round_to_even() {
        assert_eq!(thumbnail_size(1920, 1080), (160, 90));
        assert_eq!(thumbnail_size(1080, 1920), (160, 284));
        assert_eq!(thumbnail_size(1000, 1000), (160, 160));
        assert_eq!(thumbnail_size(4000, 100), (160, 4));
        assert_eq!(thumbnail_size(10_000, 1), (160, 2));
    }

    #[test]
    fn ties_prefer_the_zero_vector() {
        // A flat picture matches everywhere equally: the zero vector must win.
        let flat = Plane::new(64, 64, 100);
        let m = block_matches(&flat, &flat);
        assert_eq!(m.len(), 9);
        assert!(m.iter().all(|m| m.cur == m.prev));
        let p = pair_motion(&flat, &flat);
        assert_eq!(p.global, GlobalMotion::default());
        assert_eq!((p.activity, p.centroid), (0.0, 0.5));
    }
}
