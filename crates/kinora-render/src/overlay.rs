//! Layers composited over finished frames in I420 with 8-bit alpha (§3.1): the text2video
//! caption (§3.7), the watermark label (§2.6) and the primitives the reference cards use
//! (rounded rectangles, soft shadows, images through a mask). Chroma alpha is always the
//! 2×2 mean of the luma alpha. Shapes and text are rasterised once per render; per frame
//! only integer blending runs.

use crate::engine::RenderError;
use crate::frame::I420Frame;
use crate::scene::Yuv;
use crate::seed::to_hex;
use crate::text::{draw_text, measure, AlphaMask};

/// Limited-range black and white.
pub const BLACK: Yuv = Yuv {
    y: 16,
    u: 128,
    v: 128,
};
pub const WHITE: Yuv = Yuv {
    y: 235,
    u: 128,
    v: 128,
};

/// A rectangle in luma pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    pub x: usize,
    pub y: usize,
    pub width: usize,
    pub height: usize,
}

impl Rect {
    pub fn contains(&self, x: usize, y: usize) -> bool {
        x >= self.x && y >= self.y && x < self.x + self.width && y < self.y + self.height
    }
}

/// Coverage of a rectangle with rounded corners of `radius` pixels, anti-aliased by 4×4
/// supersampling in integer arithmetic.
pub fn rounded_rect(width: usize, height: usize, radius: f64) -> AlphaMask {
    let mut mask = AlphaMask::new(width, height);
    mask.data.fill(255);
    // Everything in eighths of a pixel: sample k of pixel x sits at 8x + 2k + 1.
    let r8 = (libm::floor(radius.max(0.0) * 8.0 + 0.5) as i64).min(4 * width.min(height) as i64);
    if r8 == 0 {
        return mask;
    }
    let (w8, h8) = (8 * width as i64, 8 * height as i64);
    let corner = (r8 + 7) / 8;
    let inside = |sx: i64, sy: i64| {
        // Distance past the corner circle's centre, on the side of the nearest corner.
        let dx = (r8 - sx).max(sx - (w8 - r8)).max(0);
        let dy = (r8 - sy).max(sy - (h8 - r8)).max(0);
        dx * dx + dy * dy <= r8 * r8
    };
    for y in 0..height {
        let near_y = y < corner as usize || y + (corner as usize) >= height;
        if !near_y {
            continue;
        }
        for x in 0..width {
            if x >= corner as usize && x + (corner as usize) < width {
                continue;
            }
            let mut hits = 0u32;
            for ky in 0..4 {
                for kx in 0..4 {
                    if inside(8 * x as i64 + 2 * kx + 1, 8 * y as i64 + 2 * ky + 1) {
                        hits += 1;
                    }
                }
            }
            mask.data[y * width + x] = ((hits * 255 + 8) / 16) as u8;
        }
    }
    mask
}

/// One zero-padded box pass of radius `r` along rows (`horizontal`) or columns.
fn box_pass(mask: &AlphaMask, r: usize, horizontal: bool) -> AlphaMask {
    let (w, h) = (mask.width, mask.height);
    let mut out = AlphaMask::new(w, h);
    let taps = (2 * r + 1) as u32;
    let (lines, len) = if horizontal { (h, w) } else { (w, h) };
    let at = |line: usize, i: usize| {
        if horizontal {
            line * w + i
        } else {
            i * w + line
        }
    };
    for line in 0..lines {
        let mut sum = 0u32;
        // Window [i - r, i + r]; samples outside the mask count as zero.
        for i in 0..r.min(len) {
            sum += u32::from(mask.data[at(line, i)]);
        }
        for i in 0..len {
            if i + r < len {
                sum += u32::from(mask.data[at(line, i + r)]);
            }
            out.data[at(line, i)] = ((sum + taps / 2) / taps) as u8;
            if i >= r {
                sum -= u32::from(mask.data[at(line, i - r)]);
            }
        }
    }
    out
}

/// A soft shadow of `mask`: the mask padded by `pad` on every side and blurred by three box
/// passes of radius `radius` each way (close to a Gaussian). Returns the blurred mask and
/// `pad`, the offset of the original mask inside it.
pub fn soft_shadow(mask: &AlphaMask, radius: usize) -> (AlphaMask, usize) {
    let pad = 3 * radius + 1;
    let mut padded = AlphaMask::new(mask.width + 2 * pad, mask.height + 2 * pad);
    for y in 0..mask.height {
        let start = (y + pad) * padded.width + pad;
        padded.data[start..start + mask.width].copy_from_slice(mask.row(y));
    }
    let mut out = padded;
    if radius > 0 {
        for _ in 0..3 {
            out = box_pass(&box_pass(&out, radius, true), radius, false);
        }
    }
    (out, pad)
}

/// `px` over `c` by alpha `a` out of 255, rounded.
#[inline(always)]
fn over(px: u8, c: u8, a: u32) -> u8 {
    ((u32::from(px) * (255 - a) + u32::from(c) * a + 127) / 255) as u8
}

/// Luma pixels of the frame a layer at (x0, y0) of the given size touches, clipped.
fn clip(frame: &I420Frame, x0: i64, y0: i64, w: usize, h: usize) -> Option<(i64, i64, i64, i64)> {
    let (fw, fh) = (frame.width() as i64, frame.height() as i64);
    let (xs, xe) = (x0.max(0), (x0 + w as i64).min(fw));
    let (ys, ye) = (y0.max(0), (y0 + h as i64).min(fh));
    (xs < xe && ys < ye).then_some((xs, xe, ys, ye))
}

/// Every mask value scaled by `opacity`: (m·opacity + 127) / 255, the alpha a layer blends with.
fn alpha_table(opacity: u8) -> [u32; 256] {
    let op = u32::from(opacity);
    std::array::from_fn(|m| (m as u32 * op + 127) / 255)
}

/// The alpha of chroma samples `cxs..cxs + out.len()` of chroma row `cy` for `mask` placed at
/// luma (x0, y0): the rounded mean of the four luma alphas the sample covers, luma positions
/// outside the mask counting 0.
fn chroma_alpha(
    mask: &AlphaMask,
    alpha: &[u32; 256],
    (x0, y0): (i64, i64),
    (cxs, cy): (i64, i64),
    out: &mut [u32],
) {
    out.fill(0);
    let first = 2 * cxs;
    let (ma, mb) = (
        (first - x0).max(0),
        (first + 2 * out.len() as i64 - x0).min(mask.width as i64),
    );
    for ly in [2 * cy, 2 * cy + 1] {
        let my = ly - y0;
        if ma >= mb || my < 0 || my >= mask.height as i64 {
            continue;
        }
        let row = &mask.row(my as usize)[ma as usize..mb as usize];
        // Luma column x0 + ma + k falls in chroma column (x0 + ma + k − first) / 2.
        let offset = (x0 + ma - first) as usize;
        for (k, &m) in row.iter().enumerate() {
            out[(offset + k) / 2] += alpha[usize::from(m)];
        }
    }
    for a in out {
        *a = (*a + 2) / 4;
    }
}

/// Blends `colour` over `frame` through `mask` placed with its top-left at luma (x0, y0),
/// scaled by `opacity` (255 = the mask as is). Parts outside the frame are clipped.
pub fn blend_mask(
    frame: &mut I420Frame,
    mask: &AlphaMask,
    x0: i64,
    y0: i64,
    colour: Yuv,
    opacity: u8,
) {
    if opacity == 0 {
        return;
    }
    let Some((xs, xe, ys, ye)) = clip(frame, x0, y0, mask.width, mask.height) else {
        return;
    };
    let alpha = alpha_table(opacity);
    // Row slices and no branch per pixel (alpha 0 leaves a pixel as it is): the caption and
    // the label cover a band of every frame they show in.
    let (mxs, mxe) = ((xs - x0) as usize, (xe - x0) as usize);
    for y in ys..ye {
        let m = &mask.row((y - y0) as usize)[mxs..mxe];
        let row = &mut frame.y.row_mut(y as usize)[xs as usize..xe as usize];
        for (px, &m) in row.iter_mut().zip(m) {
            *px = over(*px, colour.y, alpha[usize::from(m)]);
        }
    }
    let (cxs, cxe) = (xs / 2, (xe + 1) / 2);
    let mut a = vec![0u32; (cxe - cxs) as usize];
    for cy in ys / 2..(ye + 1) / 2 {
        chroma_alpha(mask, &alpha, (x0, y0), (cxs, cy), &mut a);
        let (c0, c1) = (cxs as usize, cxe as usize);
        let urow = &mut frame.u.row_mut(cy as usize)[c0..c1];
        for (px, &a) in urow.iter_mut().zip(&a) {
            *px = over(*px, colour.u, a);
        }
        let vrow = &mut frame.v.row_mut(cy as usize)[c0..c1];
        for (px, &a) in vrow.iter_mut().zip(&a) {
            *px = over(*px, colour.v, a);
        }
    }
}

/// Blends `image` (an I420 picture the size of `mask`) over `frame` through `mask` scaled by
/// `opacity` (255 = the mask as is), its top-left at luma (x0, y0) rounded down to even so the
/// chroma planes line up.
pub fn blend_image(
    frame: &mut I420Frame,
    image: &I420Frame,
    mask: &AlphaMask,
    (x0, y0): (i64, i64),
    opacity: u8,
) {
    if image.width() != mask.width || image.height() != mask.height || opacity == 0 {
        return;
    }
    let (x0, y0) = (x0 & !1, y0 & !1);
    let Some((xs, xe, ys, ye)) = clip(frame, x0, y0, mask.width, mask.height) else {
        return;
    };
    let alpha = alpha_table(opacity);
    let (mxs, mxe) = ((xs - x0) as usize, (xe - x0) as usize);
    for y in ys..ye {
        let my = (y - y0) as usize;
        let (m, src) = (&mask.row(my)[mxs..mxe], &image.y.row(my)[mxs..mxe]);
        let row = &mut frame.y.row_mut(y as usize)[xs as usize..xe as usize];
        for ((px, &m), &c) in row.iter_mut().zip(m).zip(src) {
            *px = over(*px, c, alpha[usize::from(m)]);
        }
    }
    // x0 and y0 are even, so chroma sample (cx, cy) of the frame is (cx − x0/2, cy − y0/2)
    // of the image; an odd-sized image has no chroma for its last luma row or column.
    let (cw, ch) = (image.u.width as i64, image.u.height as i64);
    let (cxs, cxe) = (xs / 2, ((xe + 1) / 2).min(x0 / 2 + cw));
    if cxs >= cxe {
        return;
    }
    let mut a = vec![0u32; (cxe - cxs) as usize];
    let (ix0, ix1) = ((cxs - x0 / 2) as usize, (cxe - x0 / 2) as usize);
    for cy in ys / 2..((ye + 1) / 2).min(y0 / 2 + ch) {
        chroma_alpha(mask, &alpha, (x0, y0), (cxs, cy), &mut a);
        let iy = (cy - y0 / 2) as usize;
        let (c0, c1) = (cxs as usize, cxe as usize);
        let urow = &mut frame.u.row_mut(cy as usize)[c0..c1];
        for ((px, &a), &c) in urow.iter_mut().zip(&a).zip(&image.u.row(iy)[ix0..ix1]) {
            *px = over(*px, c, a);
        }
        let vrow = &mut frame.v.row_mut(cy as usize)[c0..c1];
        for ((px, &a), &c) in vrow.iter_mut().zip(&a).zip(&image.v.row(iy)[ix0..ix1]) {
            *px = over(*px, c, a);
        }
    }
}

/// Rounds half up to an integer, at least `min`.
fn round_at_least(v: f64, min: usize) -> usize {
    (libm::floor(v + 0.5).max(0.0) as usize).max(min)
}

fn even_up(v: usize) -> usize {
    v + (v & 1)
}

/// The text of the watermark label (§2.6).
pub const WATERMARK_TEXT: &str = "kinora · local render";
/// The label's box: black at 60 % opacity.
const WATERMARK_BOX_OPACITY: u8 = 153;

/// The watermark label (§2.6), rasterised once for a frame size.
#[derive(Clone, Debug)]
pub struct Watermark {
    rect: Rect,
    backing: AlphaMask,
    text: AlphaMask,
}

impl Watermark {
    /// The label for `width`×`height` frames: bottom-right with a margin of 3 % of the short
    /// side, 5 % of the short side high. Its edges are rounded to even pixels (at most one
    /// pixel off) so that its chroma footprint is exactly its own rectangle.
    pub fn new(width: usize, height: usize) -> Result<Self, RenderError> {
        let short = width.min(height) as f64;
        let margin = round_at_least(short * 0.03, 0);
        let box_h = even_up(round_at_least(short * 0.05, 2));
        let px = box_h as f32 * 0.62;
        let pad = box_h as f64 * 0.45;
        let metrics = measure(WATERMARK_TEXT, px)?;
        let max_w = width.saturating_sub(2 * margin).max(2) & !1;
        let box_w = even_up(round_at_least(f64::from(metrics.width) + 2.0 * pad, 2)).min(max_w);
        let x = width.saturating_sub(margin + box_w) & !1;
        let y = height.saturating_sub(margin + box_h) & !1;
        let rect = Rect {
            x,
            y,
            width: box_w.min(width - x),
            height: box_h.min(height - y),
        };
        let backing = rounded_rect(rect.width, rect.height, rect.height as f64 * 0.3);
        let mut text = AlphaMask::new(rect.width, rect.height);
        // The text is centred in the box; anything wider than the box is clipped by it.
        let left = (rect.width as f32 - metrics.width) / 2.0;
        let baseline = rect.height as f32 / 2.0 + (metrics.ascent + metrics.descent) / 2.0;
        draw_text(&mut text, WATERMARK_TEXT, px, left, baseline)?;
        Ok(Self {
            rect,
            backing,
            text,
        })
    }

    /// Where the label sits; nothing outside it changes.
    pub fn rect(&self) -> Rect {
        self.rect
    }

    /// Draws the label over `frame`, which must have the size the label was made for.
    pub fn apply(&self, frame: &mut I420Frame) {
        let (x, y) = (self.rect.x as i64, self.rect.y as i64);
        blend_mask(frame, &self.backing, x, y, BLACK, WATERMARK_BOX_OPACITY);
        blend_mask(frame, &self.text, x, y, WHITE, 255);
    }
}

/// Frames 0–47 show the caption fully; it fades out over frames 48–59.
pub const CAPTION_FULL_FRAMES: u32 = 48;
pub const CAPTION_FADE_FRAMES: u32 = 12;
/// Characters of the prompt the caption shows before "…".
pub const CAPTION_PROMPT_CHARS: usize = 80;
const CAPTION_BOX_OPACITY: u32 = 153;

/// The text2video caption (§3.7): a lower-third box with the prompt and the seed.
#[derive(Clone, Debug)]
pub struct Caption {
    rect: Rect,
    backing: AlphaMask,
    text: AlphaMask,
}

impl Caption {
    /// The caption's two lines: the prompt (first 80 characters, then "…"; control
    /// characters as spaces) and `seed xxxxxxxx`, the first 8 hex digits of the seed digest
    /// (the seed's low 32 bits, little-endian). An empty prompt leaves only the seed line.
    pub fn lines(prompt: &str, seed: u64) -> Vec<String> {
        let mut first: String = prompt
            .chars()
            .take(CAPTION_PROMPT_CHARS)
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if prompt.chars().nth(CAPTION_PROMPT_CHARS).is_some() {
            first.push('…');
        }
        let seed_line = format!("seed {}", to_hex(&seed.to_le_bytes()[..4]));
        if first.trim().is_empty() {
            vec![seed_line]
        } else {
            vec![first, seed_line]
        }
    }

    /// The caption for `width`×`height` frames, centred horizontally near the bottom. Text is
    /// 4 % of the short side high; a prompt line too wide for 90 % of the frame is set
    /// smaller (down to half size, then clipped by the box).
    pub fn new(prompt: &str, seed: u64, width: usize, height: usize) -> Result<Self, RenderError> {
        let lines = Self::lines(prompt, seed);
        let short = width.min(height) as f32;
        let px = (short * 0.04).max(1.0);
        let pad = px * 0.6;
        let max_w = (width as f32 * 0.9).max(2.0);
        let mut sizes = Vec::with_capacity(lines.len());
        for line in &lines {
            let natural = measure(line, px)?.width;
            let fit = (max_w - 2.0 * pad) / natural.max(1.0);
            let size = if fit < 1.0 { px * fit.max(0.5) } else { px };
            sizes.push((size, measure(line, size)?));
        }
        let text_w = sizes.iter().map(|(_, m)| m.width).fold(0.0f32, f32::max);
        let line_step = px * 1.15;
        let box_w = even_up(round_at_least(f64::from(text_w + 2.0 * pad), 2))
            .min((max_w as usize).max(2) & !1);
        let box_h = even_up(round_at_least(
            f64::from(2.0 * pad + line_step * lines.len() as f32),
            2,
        ))
        .min(height & !1);
        let bottom = height.saturating_sub(round_at_least(height as f64 * 0.07, 0));
        let rect = Rect {
            x: (width.saturating_sub(box_w) / 2) & !1,
            y: bottom.saturating_sub(box_h) & !1,
            width: box_w,
            height: box_h,
        };
        let backing = rounded_rect(rect.width, rect.height, f64::from(pad));
        let mut text = AlphaMask::new(rect.width, rect.height);
        for (k, (line, (size, metrics))) in lines.iter().zip(&sizes).enumerate() {
            // Each line is vertically centred in its step and left-aligned after the pad.
            let centre = pad + line_step * (k as f32 + 0.5);
            let baseline = centre + (metrics.ascent + metrics.descent) / 2.0;
            draw_text(&mut text, line, *size, pad, baseline)?;
        }
        Ok(Self {
            rect,
            backing,
            text,
        })
    }

    /// Where the caption sits.
    pub fn rect(&self) -> Rect {
        self.rect
    }

    /// The text's coverage, placed at [`Caption::rect`]'s top-left (what tests look for).
    pub fn text_mask(&self) -> &AlphaMask {
        &self.text
    }

    /// The caption's opacity at frame `index`, out of 255.
    pub fn opacity(index: u32) -> u32 {
        let end = CAPTION_FULL_FRAMES + CAPTION_FADE_FRAMES;
        if index < CAPTION_FULL_FRAMES {
            255
        } else if index < end {
            // Fade steps 12/13 … 1/13: the last fading frame still shows, the next does not.
            255 * (end - index) / (CAPTION_FADE_FRAMES + 1)
        } else {
            0
        }
    }

    /// Draws the caption as it shows in frame `index`; frames 60 on are left untouched.
    pub fn draw(&self, index: u32, frame: &mut I420Frame) {
        let opacity = Self::opacity(index);
        if opacity == 0 {
            return;
        }
        let (x, y) = (self.rect.x as i64, self.rect.y as i64);
        let box_op = (CAPTION_BOX_OPACITY * opacity + 127) / 255;
        blend_mask(frame, &self.backing, x, y, BLACK, box_op as u8);
        blend_mask(frame, &self.text, x, y, WHITE, opacity as u8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounded_rectangles_are_opaque_inside_and_soft_at_the_corners() {
        let m = rounded_rect(40, 20, 6.0);
        assert_eq!(m.get(20, 10), 255);
        assert_eq!(m.get(0, 10), 255);
        assert_eq!(m.get(20, 0), 255);
        assert_eq!(m.get(0, 0), 0);
        assert_eq!(m.get(39, 19), 0);
        assert!(m.get(1, 1) < 255 && m.get(2, 2) > 0);
        // Symmetric in both axes.
        for y in 0..20 {
            for x in 0..40 {
                assert_eq!(m.get(x, y), m.get(39 - x, y));
                assert_eq!(m.get(x, y), m.get(x, 19 - y));
            }
        }
    }

    #[test]
    fn shadows_spread_and_fade() {
        let (s, pad) = soft_shadow(&rounded_rect(20, 20, 0.0), 2);
        assert_eq!(pad, 7);
        assert_eq!(s.width, 34);
        assert_eq!(s.get(17, 17), 255);
        assert_eq!(s.get(0, 0), 0);
        assert!(s.get(pad as i64 - 2, 17) > 0);
        assert!(s.get(pad as i64, 17) < 255);
    }

    /// The per-pixel blends as first written: the reference the row-wise ones must match.
    fn alpha_at(mask: &AlphaMask, op: u32, x: i64, y: i64) -> u32 {
        (u32::from(mask.get(x, y)) * op + 127) / 255
    }

    /// One per-pixel blend through `mask` at (x0, y0) for both: `source(plane, x, y)` is the
    /// colour at frame sample (x, y) of that plane; chroma stops at `chroma_end`.
    fn blend_reference(
        frame: &mut I420Frame,
        mask: &AlphaMask,
        (x0, y0): (i64, i64),
        opacity: u8,
        chroma_end: (i64, i64),
        source: impl Fn(usize, i64, i64) -> u8,
    ) {
        let Some((xs, xe, ys, ye)) = clip(frame, x0, y0, mask.width, mask.height) else {
            return;
        };
        let op = u32::from(opacity);
        let alpha = |x: i64, y: i64| alpha_at(mask, op, x - x0, y - y0);
        for y in ys..ye {
            for x in xs..xe {
                let px = frame.y.get(x as usize, y as usize);
                frame.y.row_mut(y as usize)[x as usize] = over(px, source(0, x, y), alpha(x, y));
            }
        }
        for cy in ys / 2..((ye + 1) / 2).min(chroma_end.1) {
            for cx in xs / 2..((xe + 1) / 2).min(chroma_end.0) {
                let (lx, ly) = (2 * cx, 2 * cy);
                let a = (alpha(lx, ly)
                    + alpha(lx + 1, ly)
                    + alpha(lx, ly + 1)
                    + alpha(lx + 1, ly + 1)
                    + 2)
                    / 4;
                let (c, r) = (cx as usize, cy as usize);
                let (u, v) = (frame.u.get(c, r), frame.v.get(c, r));
                frame.u.row_mut(r)[c] = over(u, source(1, cx, cy), a);
                frame.v.row_mut(r)[c] = over(v, source(2, cx, cy), a);
            }
        }
    }

    fn blend_mask_reference(
        frame: &mut I420Frame,
        mask: &AlphaMask,
        at: (i64, i64),
        colour: Yuv,
        opacity: u8,
    ) {
        let colour = [colour.y, colour.u, colour.v];
        blend_reference(frame, mask, at, opacity, (i64::MAX, i64::MAX), |p, _, _| {
            colour[p]
        });
    }

    fn blend_image_reference(
        frame: &mut I420Frame,
        image: &I420Frame,
        mask: &AlphaMask,
        (x0, y0): (i64, i64),
        opacity: u8,
    ) {
        let (x0, y0) = (x0 & !1, y0 & !1);
        let (cw, ch) = (image.u.width as i64, image.u.height as i64);
        let end = (x0 / 2 + cw, y0 / 2 + ch);
        blend_reference(frame, mask, (x0, y0), opacity, end, |p, x, y| {
            let (plane, x, y) = match p {
                0 => (&image.y, x - x0, y - y0),
                1 => (&image.u, x - x0 / 2, y - y0 / 2),
                _ => (&image.v, x - x0 / 2, y - y0 / 2),
            };
            plane.get(x as usize, y as usize)
        });
    }

    fn noise_frame(w: usize, h: usize, rng: &mut crate::seed::SplitMix64) -> I420Frame {
        let mut f = I420Frame::filled(w, h, (0, 0, 0));
        for p in [&mut f.y, &mut f.u, &mut f.v] {
            p.data.iter_mut().for_each(|b| *b = rng.next_u64() as u8);
        }
        f
    }

    #[test]
    fn row_wise_blends_match_the_per_pixel_reference() {
        let mut rng = crate::seed::SplitMix64::new(11);
        for case in 0..400 {
            let (mw, mh) = (
                1 + rng.next_u64() as usize % 23,
                1 + rng.next_u64() as usize % 19,
            );
            let mut mask = AlphaMask::new(mw, mh);
            mask.data.iter_mut().for_each(|b| {
                // Mostly the values masks hold: transparent, opaque, a soft edge.
                *b = match rng.next_u64() % 4 {
                    0 => 0,
                    1 => 255,
                    _ => rng.next_u64() as u8,
                }
            });
            let frame = noise_frame(32, 24, &mut rng);
            let at = (
                rng.next_u64() as i64 % 44 - 12,
                rng.next_u64() as i64 % 36 - 12,
            );
            let opacity = [255, 0, 1, 128, 153][case % 5] as u8;
            let colour = Yuv {
                y: rng.next_u64() as u8,
                u: rng.next_u64() as u8,
                v: rng.next_u64() as u8,
            };
            let (mut got, mut want) = (frame.clone(), frame.clone());
            blend_mask(&mut got, &mask, at.0, at.1, colour, opacity);
            if opacity > 0 {
                blend_mask_reference(&mut want, &mask, at, colour, opacity);
            }
            assert!(
                got == want,
                "blend_mask case {case}: mask {mw}x{mh} at {at:?}"
            );
            // Images are I420, so even-sized: the mask's even part.
            let (iw, ih) = ((mw & !1).max(2), (mh & !1).max(2));
            let mut mask = AlphaMask::new(iw, ih);
            mask.data.iter_mut().for_each(|b| *b = rng.next_u64() as u8);
            let image = noise_frame(iw, ih, &mut rng);
            let (mut got, mut want) = (frame.clone(), frame);
            blend_image(&mut got, &image, &mask, at, opacity);
            if opacity > 0 {
                blend_image_reference(&mut want, &image, &mask, at, opacity);
            }
            assert!(
                got == want,
                "blend_image case {case}: mask {mw}x{mh} at {at:?}"
            );
        }
    }

    #[test]
    fn chroma_alpha_is_the_mean_of_the_2x2_luma_alpha() {
        let mut frame = I420Frame::filled(8, 8, (100, 100, 100));
        let mut mask = AlphaMask::new(1, 1);
        mask.data[0] = 255;
        // One opaque luma pixel: its chroma sample gets a quarter of the colour.
        blend_mask(
            &mut frame,
            &mask,
            3,
            3,
            Yuv {
                y: 200,
                u: 200,
                v: 0,
            },
            255,
        );
        assert_eq!(frame.y.get(3, 3), 200);
        assert_eq!(frame.y.get(2, 3), 100);
        let a = (255 + 2) / 4;
        assert_eq!(
            u32::from(frame.u.get(1, 1)),
            (100 * (255 - a) + 200 * a + 127) / 255
        );
        assert_eq!(u32::from(frame.v.get(1, 1)), (100 * (255 - a) + 127) / 255);
        assert_eq!(frame.u.get(0, 0), 100);
    }

    #[test]
    fn images_blend_through_their_mask() {
        let mut frame = I420Frame::filled(16, 16, (50, 128, 128));
        let image = I420Frame::filled(4, 4, (200, 90, 160));
        let mut mask = AlphaMask::new(4, 4);
        mask.data.fill(255);
        blend_image(&mut frame, &image, &mask, (5, 7), 255);
        // Rounded down to (4, 6).
        assert_eq!(frame.y.get(4, 6), 200);
        assert_eq!(frame.y.get(7, 9), 200);
        assert_eq!(frame.y.get(8, 9), 50);
        assert_eq!((frame.u.get(2, 3), frame.v.get(3, 4)), (90, 160));
        assert_eq!(frame.u.get(4, 3), 128);
        // Off the frame's edge: clipped, no panic.
        blend_image(&mut frame, &image, &mask, (-2, 14), 255);
        assert_eq!(frame.y.get(0, 15), 200);
    }

    #[test]
    fn the_label_sits_bottom_right_at_the_contract_sizes() {
        let wm = Watermark::new(1280, 720).unwrap();
        let r = wm.rect();
        // 5 % of 720 = 36 high, 3 % = 21.6 px margin (within a pixel after even rounding).
        assert_eq!(r.height, 36);
        assert!((1280 - (r.x + r.width)).abs_diff(22) <= 1, "{r:?}");
        assert!((720 - (r.y + r.height)).abs_diff(22) <= 1, "{r:?}");
        assert!(r.width > 150 && r.width < 400, "{r:?}");
        let small = Watermark::new(192, 108).unwrap().rect();
        assert!(small.x + small.width <= 192 && small.y + small.height <= 108);
        assert_eq!(small.height % 2, 0);
    }

    #[test]
    fn caption_text_and_fade() {
        let long = "x".repeat(100);
        let lines = Caption::lines(&long, 0x1122_3344_5566_7788);
        assert_eq!(lines[0], format!("{}…", "x".repeat(80)));
        assert_eq!(lines[1], "seed 88776655");
        assert_eq!(Caption::lines("a\nb", 0)[0], "a b");
        assert_eq!(Caption::lines("", 1).len(), 1);
        assert_eq!(Caption::opacity(0), 255);
        assert_eq!(Caption::opacity(47), 255);
        assert!(Caption::opacity(48) < 255);
        assert!(Caption::opacity(59) > 0);
        assert_eq!(Caption::opacity(60), 0);
        let fades: Vec<u32> = (47..61).map(Caption::opacity).collect();
        assert!(fades.windows(2).all(|w| w[0] > w[1]), "{fades:?}");
    }
}
