//! Text for the caption and the watermark label: the bundled DejaVu Sans, laid out on one
//! line and rasterised by `ab_glyph` into an 8-bit coverage plane. Rasterising happens once
//! per render, before any frame; `ab_glyph` is built without `std`, so its rasteriser has no
//! runtime CPU dispatch and takes its maths from `libm`, and the coverage is the same on
//! every machine.

use ab_glyph::{point, Font, FontRef, GlyphId, PxScale, ScaleFont};

use crate::engine::RenderError;

/// DejaVu Sans 2.37, unmodified; its licence is `assets/fonts/LICENSE`.
static FONT_BYTES: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");

/// Drawn in place of every character the font has no glyph for.
pub const MISSING_GLYPH: char = '·';

/// An 8-bit coverage plane (0 = transparent, 255 = opaque), row-major without padding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlphaMask {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

impl AlphaMask {
    /// A fully transparent mask.
    pub fn new(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            data: vec![0; width * height],
        }
    }

    /// Coverage at (x, y); 0 outside the mask.
    pub fn get(&self, x: i64, y: i64) -> u8 {
        if x < 0 || y < 0 || x >= self.width as i64 || y >= self.height as i64 {
            return 0;
        }
        self.data[y as usize * self.width + x as usize]
    }

    pub fn row(&self, y: usize) -> &[u8] {
        &self.data[y * self.width..(y + 1) * self.width]
    }
}

/// Vertical metrics of a line at a pixel size: the baseline sits `ascent` below the line's
/// top and `descent` (negative) is how far glyphs may reach below it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LineMetrics {
    pub width: f32,
    pub ascent: f32,
    pub descent: f32,
}

fn font() -> Result<FontRef<'static>, RenderError> {
    FontRef::try_from_slice(FONT_BYTES)
        .map_err(|e| RenderError::Internal(format!("the bundled font is unreadable: {e}")))
}

/// The glyphs of `text` with their pen positions, characters the font lacks replaced by
/// [`MISSING_GLYPH`].
fn layout(font: &FontRef<'_>, text: &str, px: f32) -> (Vec<(GlyphId, f32)>, LineMetrics) {
    let scaled = font.as_scaled(PxScale::from(px));
    let missing = font.glyph_id(MISSING_GLYPH);
    let mut glyphs = Vec::with_capacity(text.len());
    let mut pen = 0.0f32;
    let mut previous: Option<GlyphId> = None;
    for c in text.chars() {
        let mut id = font.glyph_id(c);
        if id.0 == 0 {
            id = missing;
        }
        if let Some(prev) = previous {
            pen += scaled.kern(prev, id);
        }
        glyphs.push((id, pen));
        pen += scaled.h_advance(id);
        previous = Some(id);
    }
    let metrics = LineMetrics {
        width: pen,
        ascent: scaled.ascent(),
        descent: scaled.descent(),
    };
    (glyphs, metrics)
}

/// Width and vertical metrics of `text` set at `px` pixels (ascent to descent).
pub fn measure(text: &str, px: f32) -> Result<LineMetrics, RenderError> {
    let font = font()?;
    Ok(layout(&font, text, px).1)
}

/// Draws `text` at `px` pixels into `mask`, the pen starting at `x` on the baseline `baseline`
/// (both in mask pixels). Coverage adds up where glyphs overlap; anything outside the mask is
/// clipped.
pub fn draw_text(
    mask: &mut AlphaMask,
    text: &str,
    px: f32,
    x: f32,
    baseline: f32,
) -> Result<(), RenderError> {
    let font = font()?;
    let (glyphs, _) = layout(&font, text, px);
    let scale = PxScale::from(px);
    for (id, pen) in glyphs {
        let glyph = id.with_scale_and_position(scale, point(x + pen, baseline));
        let Some(outlined) = font.outline_glyph(glyph) else {
            // Spaces and other blank glyphs have no outline.
            continue;
        };
        let bounds = outlined.px_bounds();
        // Bounds are whole pixels (ab_glyph floors and ceils them).
        let (left, top) = (bounds.min.x as i64, bounds.min.y as i64);
        outlined.draw(|gx, gy, coverage| {
            let (mx, my) = (left + i64::from(gx), top + i64::from(gy));
            if mx < 0 || my < 0 || mx >= mask.width as i64 || my >= mask.height as i64 {
                return;
            }
            let value = (coverage.clamp(0.0, 1.0) * 255.0 + 0.5) as u8;
            let at = my as usize * mask.width + mx as usize;
            mask.data[at] = mask.data[at].saturating_add(value);
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_rasterise_deterministically_inside_their_box() {
        let m = measure("kinora · local render", 20.0).unwrap();
        assert!(m.width > 100.0 && m.width < 300.0, "{m:?}");
        assert!(m.ascent > 10.0 && m.descent < 0.0);
        let w = m.width.ceil() as usize + 2;
        let h = (m.ascent - m.descent).ceil() as usize;
        let mut a = AlphaMask::new(w, h);
        draw_text(&mut a, "kinora · local render", 20.0, 1.0, m.ascent).unwrap();
        let mut b = AlphaMask::new(w, h);
        draw_text(&mut b, "kinora · local render", 20.0, 1.0, m.ascent).unwrap();
        assert_eq!(a, b);
        let inked = a.data.iter().filter(|&&v| v > 128).count();
        assert!(inked > 100, "{inked} opaque pixels");
        // Ink spans the measured width: nothing is cut at either end.
        let inked: Vec<usize> = (0..w)
            .filter(|&x| (0..h).any(|y| a.data[y * w + x] > 0))
            .collect();
        let (first, last) = (inked[0], inked[inked.len() - 1]);
        assert!(first <= 3, "first inked column {first}");
        assert!(
            last as f32 >= m.width - 3.0,
            "last inked column {last} of {}",
            m.width
        );
    }

    #[test]
    fn characters_the_font_lacks_draw_as_a_middle_dot() {
        // DejaVu Sans has no CJK glyphs.
        let draw = |s: &str| {
            let mut m = AlphaMask::new(40, 30);
            draw_text(&mut m, s, 20.0, 2.0, 20.0).unwrap();
            m
        };
        assert_eq!(draw("海"), draw("·"));
        assert_eq!(
            measure("海", 20.0).unwrap().width,
            measure("·", 20.0).unwrap().width
        );
        assert_ne!(draw("a"), draw("·"));
    }

    #[test]
    fn drawing_outside_the_mask_is_clipped() {
        let mut m = AlphaMask::new(10, 10);
        draw_text(&mut m, "WWWWWWWW", 30.0, -5.0, 25.0).unwrap();
        assert_eq!(m.data.len(), 100);
        assert!(m.data.iter().any(|&v| v > 0));
    }
}
