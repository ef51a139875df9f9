//! The text2video stand-in: a procedural landscape chosen and parameterised by the prompt's
//! seed. A gradient sky and silhouette bands form the backdrop, drawn once over a camera
//! canvas (§3.1, §3.7); soft discs on Lissajous paths are blended over each output frame.
//! Everything is drawn straight into I420. Per-frame parameters are computed in f64 with
//! `libm`; all per-pixel work is integer, so the bytes are the same on every machine.

use std::f64::consts::PI;

use crate::camera::{CanvasLayout, OVERSAMPLE_DEN, OVERSAMPLE_NUM};
use crate::frame::{I420Frame, Plane};
use crate::seed::{sub_seed, SplitMix64};

/// Sub-pixel precision of edges and sprite positions.
const SUB: i64 = 16;

/// A colour in limited-range BT.709 Y'CbCr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Yuv {
    pub y: u8,
    pub u: u8,
    pub v: u8,
}

impl Yuv {
    fn channel(self, plane: usize) -> u8 {
        match plane {
            0 => self.y,
            1 => self.u,
            _ => self.v,
        }
    }
}

/// Converts non-linear R'G'B' in [0, 1] to limited-range BT.709 Y'CbCr.
pub fn rgb_to_yuv709(r: f64, g: f64, b: f64) -> Yuv {
    let (r, g, b) = (r.clamp(0.0, 1.0), g.clamp(0.0, 1.0), b.clamp(0.0, 1.0));
    let y = 0.2126 * r + 0.7152 * g + 0.0722 * b;
    let cb = (b - y) / 1.8556;
    let cr = (r - y) / 1.5748;
    let q = |v: f64| libm::floor(v + 0.5).clamp(0.0, 255.0) as u8;
    Yuv {
        y: q(16.0 + 219.0 * y),
        u: q(128.0 + 224.0 * cb),
        v: q(128.0 + 224.0 * cr),
    }
}

/// HSL with hue in degrees, to R'G'B'.
fn hsl(h: f64, s: f64, l: f64) -> Yuv {
    let h = libm::fmod(libm::fmod(h, 360.0) + 360.0, 360.0) / 60.0;
    let c = (1.0 - libm::fabs(2.0 * l - 1.0)) * s;
    let x = c * (1.0 - libm::fabs(libm::fmod(h, 2.0) - 1.0));
    let (r, g, b) = match h as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = l - c / 2.0;
    rgb_to_yuv709(r + m, g + m, b + m)
}

/// Keywords that pick the base hue, in table order; the first match wins. Versioned with
/// the engine: editing it changes outputs and needs a revision bump.
const KEYWORD_HUES: &[(&[&str], f64)] = &[
    (&["night", "夜"], 230.0),
    (&["sunset", "日落"], 330.0),
    (&["ocean", "sea", "海"], 180.0),
    (&["forest", "森林"], 120.0),
    (&["snow", "雪"], 200.0),
    (&["desert", "沙漠"], 38.0),
    (&["neon", "city", "城市"], 300.0),
];

/// The base hue a prompt's keywords ask for, if any.
pub fn keyword_hue(prompt: &str) -> Option<f64> {
    let lower = prompt.to_lowercase();
    KEYWORD_HUES
        .iter()
        .find(|(words, _)| words.iter().any(|w| lower.contains(w)))
        .map(|&(_, hue)| hue)
}

struct Band {
    colour: Yuv,
    /// Resting height of the band's top edge as a fraction of the frame height.
    base: f64,
    /// Three (amplitude as a fraction of the height, cycles across the width, phase).
    waves: [(f64, f64, f64); 3],
}

struct Sprite {
    colour: Yuv,
    radius: f64,
    /// Peak opacity out of 256.
    opacity: i64,
    /// Centre, amplitude, frequency (Hz) and phase, per axis, as fractions of the frame.
    x: (f64, f64, f64, f64),
    y: (f64, f64, f64, f64),
}

/// Largest hue turn between the shots of one multi-shot clip, in degrees.
pub const SHOT_HUE_TURN: f64 = 24.0;

/// A seeded scene at a fixed output size.
pub struct Scene {
    width: usize,
    height: usize,
    sky_top: Yuv,
    sky_bottom: Yuv,
    bands: Vec<Band>,
    sprites: Vec<Sprite>,
}

impl Scene {
    /// `width` and `height` must be even (I420).
    pub fn new(seed: u64, prompt: &str, width: usize, height: usize) -> Self {
        Self::build(seed, seed, keyword_hue(prompt), 0.0, width, height)
    }

    /// One shot of a multi-shot clip (§3.6): its bands and sprites come from the shot's seed,
    /// its palette family from the clip's base seed (and `hue_hint`, a keyword hue of the shot
    /// prompts), turned by a seeded ±[`SHOT_HUE_TURN`]° so the shots look like one film and
    /// still tell apart.
    pub fn shot(
        shot_seed: u64,
        film_seed: u64,
        hue_hint: Option<f64>,
        width: usize,
        height: usize,
    ) -> Self {
        let mut rng = SplitMix64::new(sub_seed(shot_seed, "scene/shot-hue", 0));
        let turn = rng.range(-SHOT_HUE_TURN, SHOT_HUE_TURN);
        Self::build(film_seed, shot_seed, hue_hint, turn, width, height)
    }

    fn build(
        palette_seed: u64,
        seed: u64,
        hue_hint: Option<f64>,
        hue_turn: f64,
        width: usize,
        height: usize,
    ) -> Self {
        let mut rng = SplitMix64::new(sub_seed(palette_seed, "scene/palette", 0));
        let base_hue = hue_hint.unwrap_or_else(|| rng.range(0.0, 360.0)) + hue_turn;
        let harmonic = [0.0, 30.0, 180.0, -30.0, 150.0];
        let sat = rng.range(0.35, 0.75);
        let light = rng.range(0.45, 0.7);
        let sky_top = hsl(base_hue + harmonic[3], sat, light * 0.55);
        let sky_bottom = hsl(base_hue + harmonic[1], sat * 0.8, light.min(0.85) + 0.1);

        let mut rng = SplitMix64::new(sub_seed(seed, "scene/bands", 0));
        let count = rng.int(3, 5) as usize;
        let bands = (0..count)
            .map(|j| {
                let depth = (j + 1) as f64 / count as f64;
                let hue = base_hue + harmonic[j % 5] + rng.range(-10.0, 10.0);
                let lightness = (light * (1.0 - 0.75 * depth)).max(0.06);
                let mut waves = [(0.0, 0.0, 0.0); 3];
                for (k, w) in waves.iter_mut().enumerate() {
                    let cycles = f64::from(rng.int(1, 3 + 2 * k as u32));
                    *w = (
                        rng.range(0.01, 0.06) / (k + 1) as f64,
                        cycles,
                        rng.range(0.0, 2.0 * PI),
                    );
                }
                Band {
                    colour: hsl(hue, sat * 0.9, lightness),
                    base: 0.42 + 0.4 * depth + rng.range(-0.03, 0.03),
                    waves,
                }
            })
            .collect();

        let mut rng = SplitMix64::new(sub_seed(seed, "scene/sprites", 0));
        let count = rng.int(6, 12) as usize;
        // Equal shares of 8 % of the frame keep all discs together under 10 %.
        let area = 0.08 * (width * height) as f64 / count as f64;
        let sprites = (0..count)
            .map(|j| {
                let radius = libm::sqrt(area / PI) * rng.range(0.6, 1.0);
                let hue = base_hue + harmonic[(j + 2) % 5];
                let axis = |rng: &mut SplitMix64, centre: f64| {
                    (
                        centre + rng.range(-0.1, 0.1),
                        rng.range(0.15, 0.35),
                        rng.range(0.05, 0.25),
                        rng.range(0.0, 2.0 * PI),
                    )
                };
                Sprite {
                    colour: hsl(hue, (sat + 0.2).min(1.0), rng.range(0.55, 0.85)),
                    radius,
                    opacity: rng.int(150, 230).into(),
                    x: axis(&mut rng, 0.5),
                    y: axis(&mut rng, 0.4),
                }
            })
            .collect();

        Self {
            width,
            height,
            sky_top,
            sky_bottom,
            bands,
            sprites,
        }
    }

    /// The same scene with its colours taken from `palette` (e.g. the references' median cut,
    /// §3.9) instead of the seeded hues; geometry and motion are unchanged. The two lightest
    /// colours make the sky, lighter ones the far bands, and nearer bands are darkened.
    pub fn with_palette(mut self, palette: &[Yuv; 5]) -> Self {
        let mut p = *palette;
        p.sort_by_key(|c| (c.y, c.u, c.v));
        self.sky_top = p[3];
        self.sky_bottom = p[4];
        let count = self.bands.len().max(1);
        for (j, band) in self.bands.iter_mut().enumerate() {
            // Keep 100 % of the colour at depth 0 down to 50 % for the nearest band.
            let keep = 256 - (128 * (j as i32 + 1) / count as i32);
            let c = p[3 - (j * 4 / count).min(3)];
            let toward =
                |v: u8, base: i32| (base + ((i32::from(v) - base) * keep + 128) / 256) as u8;
            band.colour = Yuv {
                y: toward(c.y, 16),
                u: toward(c.u, 128),
                v: toward(c.v, 128),
            };
        }
        for (j, sprite) in self.sprites.iter_mut().enumerate() {
            sprite.colour = p[(j + 2) % 5];
        }
        self
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn height(&self) -> usize {
        self.height
    }

    /// A frame buffer of the scene's size, to pass to [`Scene::draw`].
    pub fn blank_frame(&self) -> I420Frame {
        I420Frame::filled(self.width, self.height, (16, 128, 128))
    }

    /// Draws frame `index` without a camera into `out`: the backdrop at rest, then the
    /// sprites. A buffer of another size is replaced by one of the scene's size first.
    pub fn draw(&self, index: u32, out: &mut I420Frame) {
        if self.width == 0 || self.height == 0 {
            return;
        }
        let (w, h) = (self.width, self.height);
        let fits = |p: &Plane, pw: usize, ph: usize| {
            p.width == pw && p.height == ph && p.stride >= pw && p.data.len() >= p.stride * ph
        };
        if !(fits(&out.y, w, h) && fits(&out.u, w / 2, h / 2) && fits(&out.v, w / 2, h / 2)) {
            *out = self.blank_frame();
        }
        self.backdrop(out, 1.0, 0.0);
        self.draw_sprites(index, out);
    }

    /// The backdrop (sky and bands) drawn once over the whole canvas of `layout`, whose view
    /// is the scene's size: the camera then moves over it (§3.7).
    pub fn draw_canvas(&self, layout: &CanvasLayout) -> I420Frame {
        let mut canvas =
            I420Frame::filled(layout.canvas_width, layout.canvas_height, (16, 128, 128));
        if self.width > 0 && self.height > 0 {
            let k = OVERSAMPLE_NUM as f64 / OVERSAMPLE_DEN as f64;
            self.backdrop(&mut canvas, k, layout.origin() as f64);
        }
        canvas
    }

    /// Blends the sprites of frame `index` over `out`, in output space; `out` must have the
    /// scene's size.
    pub fn draw_sprites(&self, index: u32, out: &mut I420Frame) {
        if out.width() != self.width || out.height() != self.height {
            return;
        }
        let t = f64::from(index) / 24.0;
        for sprite in &self.sprites {
            let cx = (sprite.x.0 + sprite.x.1 * libm::sin(2.0 * PI * sprite.x.2 * t + sprite.x.3))
                * self.width as f64;
            let cy = (sprite.y.0 + sprite.y.1 * libm::sin(2.0 * PI * sprite.y.2 * t + sprite.y.3))
                * self.height as f64;
            let disc = Disc::new(cx, cy, sprite.radius, sprite.opacity);
            disc.blend(out, sprite.colour);
        }
    }

    /// Sky and bands into `out`, whose luma sample centre c lies at view position
    /// (c − origin) / k on each axis (k = 1, origin = 0 for a frame at rest).
    fn backdrop(&self, out: &mut I420Frame, k: f64, origin: f64) {
        let (lw, view_w, view_h) = (out.width(), self.width as f64, self.height as f64);
        let mut tops = vec![0i64; lw * self.bands.len()];
        for (j, band) in self.bands.iter().enumerate() {
            let row = &mut tops[j * lw..(j + 1) * lw];
            for (x, top) in row.iter_mut().enumerate() {
                let u = (x as f64 + 0.5 - origin) / k / view_w;
                let frac = band_top(band, u);
                *top = libm::floor((frac * view_h * k + origin) * SUB as f64) as i64;
            }
        }
        let colours: Vec<Yuv> = self.bands.iter().map(|b| b.colour).collect();
        for (p, plane) in [&mut out.y, &mut out.u, &mut out.v].into_iter().enumerate() {
            let scale = if p == 0 { 1 } else { 2 };
            let (top_c, bottom_c) = (
                f64::from(self.sky_top.channel(p)),
                f64::from(self.sky_bottom.channel(p)),
            );
            // The gradient spans the view; above and below it the end colours continue.
            let sky = |y: usize| {
                let centre = (y as f64 + 0.5) * scale as f64;
                let t = ((centre - origin) / k / view_h).clamp(0.0, 1.0);
                libm::floor(top_c + (bottom_c - top_c) * t + 0.5) as i64
            };
            fill_landscape(plane, p, scale, lw, &tops, &colours, &sky);
        }
    }
}

/// Sky gradient, then the bands' column intervals, row by row. `scale` is the plane's
/// subsampling; band tops are per luma column (`luma_width` of them per band) in luma rows ×
/// [`SUB`]; `sky(y)` is the sky's value on row y of this plane.
fn fill_landscape(
    plane: &mut Plane,
    p: usize,
    scale: usize,
    luma_width: usize,
    tops: &[i64],
    colours: &[Yuv],
    sky: &dyn Fn(usize) -> i64,
) {
    let (w, h) = (plane.width, plane.height);
    let nb = colours.len();
    // Per column, the bands that show, top edge ascending, closed by a sentinel. Band j
    // shows from its top edge down to the top of the next nearer band that starts lower;
    // a nearer band starting higher hides it completely.
    let stride = nb + 1;
    let mut lists = vec![(i64::MAX, 0usize); w * stride];
    for x in 0..w {
        let lx = (x * scale + scale / 2).min(luma_width - 1);
        let col = &mut lists[x * stride..(x + 1) * stride];
        let mut n = 0;
        let mut nearer = i64::MAX;
        for j in (0..nb).rev() {
            let top = tops[j * luma_width + lx] / scale as i64;
            if top < nearer {
                col[n] = (top, j);
                n += 1;
                nearer = top;
            }
        }
        col[..n].reverse();
    }
    // Per column: the value showing above its next edge (`SKY` while no band has
    // started). Each row is first filled from it in one branch-free pass; then only the
    // columns with an edge in that row, found through per-row buckets, are redone with
    // coverage, so the work per frame is one pass plus the number of edges.
    const SKY: u16 = 256;
    let row_of = |e: i64| -> Option<usize> {
        if e == i64::MAX {
            return None;
        }
        let r = usize::try_from(e.max(0) / SUB).unwrap_or(usize::MAX);
        (r < h).then_some(r)
    };
    let mut buckets: Vec<Vec<u32>> = vec![Vec::new(); h];
    for x in 0..w {
        if let Some(r) = row_of(lists[x * stride].0) {
            buckets[r].push(x as u32);
        }
    }
    let mut passed = vec![0usize; w];
    let mut showing = vec![SKY; w];
    let channel: Vec<u8> = colours.iter().map(|c| c.channel(p)).collect();
    for y in 0..h {
        let sky = sky(y);
        let (lo, hi) = (y as i64 * SUB, (y as i64 + 1) * SUB);
        let row = plane.row_mut(y);
        for (px, &v) in row.iter_mut().zip(&showing) {
            *px = if v == SKY { sky as u8 } else { v as u8 };
        }
        for x in std::mem::take(&mut buckets[y]) {
            let x = x as usize;
            let col = &lists[x * stride..(x + 1) * stride];
            let mut k = passed[x];
            while col[k].0 <= lo {
                k += 1;
            }
            let mut value = if k == 0 {
                sky
            } else {
                i64::from(channel[col[k - 1].1])
            };
            // Edges inside this row: blend each band over what lies behind by coverage.
            let mut q = k;
            while col[q].0 < hi {
                let (e, j) = col[q];
                value = (i64::from(channel[j]) * (hi - e) + value * (e - lo) + SUB / 2) / SUB;
                q += 1;
            }
            // Bands whose edge lies inside this row show fully from the next row on.
            passed[x] = q;
            showing[x] = if q == 0 {
                SKY
            } else {
                u16::from(channel[col[q - 1].1])
            };
            if let Some(r) = row_of(col[q].0) {
                buckets[r].push(x as u32);
            }
            row[x] = value as u8;
        }
    }
}

/// Height of a band's top edge at horizontal view position `u` (0–1 across the view), as a
/// fraction of the view height.
fn band_top(band: &Band, u: f64) -> f64 {
    let mut v = band.base;
    for &(amp, cycles, phase) in &band.waves {
        v += amp * libm::sin(2.0 * PI * cycles * u + phase);
    }
    v
}

/// A soft disc: full opacity inside, a linear falloff over the outer 30 % of the radius.
struct Disc {
    cx: i64,
    cy: i64,
    inner2: i64,
    outer2: i64,
    opacity: i64,
    outer: i64,
}

impl Disc {
    fn new(cx: f64, cy: f64, radius: f64, opacity: i64) -> Self {
        let s = SUB as f64;
        let outer = libm::floor(radius * s) as i64;
        let inner = libm::floor(radius * 0.7 * s) as i64;
        Self {
            cx: libm::floor(cx * s) as i64,
            cy: libm::floor(cy * s) as i64,
            inner2: inner * inner,
            outer2: outer * outer,
            opacity,
            outer,
        }
    }

    /// Opacity out of 256 at luma pixel (x, y).
    #[cfg(test)]
    fn alpha(&self, x: i64, y: i64) -> i64 {
        let dx = x * SUB + SUB / 2 - self.cx;
        let dy = y * SUB + SUB / 2 - self.cy;
        let d2 = dx * dx + dy * dy;
        if d2 >= self.outer2 {
            0
        } else if d2 <= self.inner2 {
            self.opacity
        } else {
            self.opacity * (self.outer2 - d2) / (self.outer2 - self.inner2)
        }
    }

    /// [`Disc::alpha`] of luma row `y` at columns `x0..x0 + out.len()`. The falloff's
    /// division by the ring's width is a multiplication by its reciprocal, exact for
    /// dividends below 2^32 (ceil(2^64/d) overshoots 1/d by less than 2^−32 per unit); larger
    /// discs divide.
    fn alpha_row(&self, y: i64, x0: i64, out: &mut [i64]) {
        let dy = y * SUB + SUB / 2 - self.cy;
        let dy2 = dy * dy;
        let ring = self.outer2 - self.inner2;
        let reciprocal = (ring > 0
            && self.opacity >= 0
            && i128::from(self.opacity) * i128::from(ring) < 1 << 32)
            .then(|| (1u128 << 64).div_ceil(ring as u128));
        for (k, a) in out.iter_mut().enumerate() {
            let dx = (x0 + k as i64) * SUB + SUB / 2 - self.cx;
            let d2 = dx * dx + dy2;
            *a = if d2 >= self.outer2 {
                0
            } else if d2 <= self.inner2 {
                self.opacity
            } else {
                let num = self.opacity * (self.outer2 - d2);
                match reciprocal {
                    Some(m) => ((num as u128 * m) >> 64) as i64,
                    None => num / ring,
                }
            };
        }
    }

    fn blend(&self, frame: &mut I420Frame, colour: Yuv) {
        let (w, h) = (frame.width() as i64, frame.height() as i64);
        let r = self.outer / SUB + 2;
        let (x0, x1) = ((self.cx / SUB - r).max(0), (self.cx / SUB + r).min(w));
        let (y0, y1) = ((self.cy / SUB - r).max(0), (self.cy / SUB + r).min(h));
        if x0 >= x1 || y0 >= y1 {
            return;
        }
        // Alphas of the two luma rows of each chroma row, over the columns of its chroma
        // samples (x0 and x1 rounded out to even): each luma alpha is computed once, for the
        // luma blend and the 2×2 chroma mean alike.
        let (ex0, ex1) = (x0 & !1, (x1 + 1) & !1);
        let width = (ex1 - ex0) as usize;
        let mut rows = [vec![0i64; width], vec![0i64; width]];
        let (lx0, lx1) = ((x0 - ex0) as usize, (x1 - ex0) as usize);
        for cy in y0 / 2..(y1 + 1) / 2 {
            for (k, alphas) in rows.iter_mut().enumerate() {
                let ly = 2 * cy + k as i64;
                self.alpha_row(ly, ex0, alphas);
                if (y0..y1).contains(&ly) {
                    let row = &mut frame.y.row_mut(ly as usize)[x0 as usize..x1 as usize];
                    for (px, &a) in row.iter_mut().zip(&alphas[lx0..lx1]) {
                        if a > 0 {
                            mix(px, colour.y, a);
                        }
                    }
                }
            }
            // Chroma alpha is the average of the 2×2 luma alphas it covers.
            let (top, bottom) = (&rows[0], &rows[1]);
            for cx in x0 / 2..(x1 + 1) / 2 {
                let i = (2 * cx - ex0) as usize;
                let a = (top[i] + top[i + 1] + bottom[i] + bottom[i + 1] + 2) / 4;
                if a > 0 {
                    let (ux, uy) = (cx as usize, cy as usize);
                    mix(&mut frame.u.row_mut(uy)[ux], colour.u, a);
                    mix(&mut frame.v.row_mut(uy)[ux], colour.v, a);
                }
            }
        }
    }

    /// The blend as first written, pixel by pixel: the reference for [`Disc::blend`].
    #[cfg(test)]
    fn blend_reference(&self, frame: &mut I420Frame, colour: Yuv) {
        let (w, h) = (frame.width() as i64, frame.height() as i64);
        let r = self.outer / SUB + 2;
        let (x0, x1) = ((self.cx / SUB - r).max(0), (self.cx / SUB + r).min(w));
        let (y0, y1) = ((self.cy / SUB - r).max(0), (self.cy / SUB + r).min(h));
        if x0 >= x1 || y0 >= y1 {
            return;
        }
        for y in y0..y1 {
            let row = frame.y.row_mut(y as usize);
            for x in x0..x1 {
                let a = self.alpha(x, y);
                if a > 0 {
                    mix(&mut row[x as usize], colour.y, a);
                }
            }
        }
        for cy in y0 / 2..(y1 + 1) / 2 {
            for cx in x0 / 2..(x1 + 1) / 2 {
                let (lx, ly) = (cx * 2, cy * 2);
                let a = (self.alpha(lx, ly)
                    + self.alpha(lx + 1, ly)
                    + self.alpha(lx, ly + 1)
                    + self.alpha(lx + 1, ly + 1)
                    + 2)
                    / 4;
                if a > 0 {
                    let (ux, uy) = (cx as usize, cy as usize);
                    mix(&mut frame.u.row_mut(uy)[ux], colour.u, a);
                    mix(&mut frame.v.row_mut(uy)[ux], colour.v, a);
                }
            }
        }
    }
}

fn mix(px: &mut u8, c: u8, a: i64) {
    *px = ((i64::from(*px) * (256 - a) + i64::from(c) * a + 128) >> 8) as u8;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_convert_to_limited_range() {
        assert_eq!(
            rgb_to_yuv709(0.0, 0.0, 0.0),
            Yuv {
                y: 16,
                u: 128,
                v: 128
            }
        );
        assert_eq!(
            rgb_to_yuv709(1.0, 1.0, 1.0),
            Yuv {
                y: 235,
                u: 128,
                v: 128
            }
        );
        assert_eq!(
            rgb_to_yuv709(1.0, 0.0, 0.0),
            Yuv {
                y: 63,
                u: 102,
                v: 240
            }
        );
    }

    #[test]
    fn keywords_pick_hues_in_table_order() {
        assert_eq!(keyword_hue("A NIGHT at the ocean"), Some(230.0));
        assert_eq!(keyword_hue("海边的日落"), Some(330.0));
        assert_eq!(keyword_hue("a cat"), None);
    }

    #[test]
    fn frames_are_deterministic_and_move() {
        let scene = Scene::new(7, "a quiet forest", 96, 64);
        let mut a = scene.blank_frame();
        let mut b = scene.blank_frame();
        scene.draw(10, &mut a);
        scene.draw(10, &mut b);
        assert_eq!(a, b);
        scene.draw(11, &mut b);
        assert_ne!(a, b);
        let mut wrong = I420Frame::filled(8, 8, (0, 0, 0));
        scene.draw(10, &mut wrong);
        assert_eq!(wrong, a);
        let other = Scene::new(8, "a quiet forest", 96, 64);
        other.draw(10, &mut b);
        assert_ne!(a, b);
    }

    #[test]
    fn disc_blend_matches_the_pixel_by_pixel_reference() {
        let mut rng = SplitMix64::new(23);
        let colour = Yuv {
            y: 200,
            u: 60,
            v: 220,
        };
        for k in 0..200 {
            let (w, h) = (96 + 2 * (k % 7), 64 + 2 * (k % 5));
            let mut a = I420Frame::filled(w, h, (40, 128, 128));
            for p in [&mut a.y, &mut a.u, &mut a.v] {
                p.data.iter_mut().for_each(|v| *v = rng.next_u64() as u8);
            }
            let mut b = a.clone();
            let radius = if k % 10 == 0 {
                rng.range(0.0, 1.5)
            } else {
                rng.range(1.0, 40.0)
            };
            let (cx, cy) = (rng.range(-30.0, 130.0), rng.range(-30.0, 100.0));
            let disc = Disc::new(cx, cy, radius, rng.int(0, 256).into());
            disc.blend(&mut a, colour);
            disc.blend_reference(&mut b, colour);
            assert_eq!(a, b, "case {k}");
        }
        // A disc wider than the reciprocal's range divides.
        let big = Disc::new(1000.0, 700.0, 3000.0, 230);
        let mut a = I420Frame::filled(2000, 1200, (40, 128, 128));
        let mut b = a.clone();
        big.blend(&mut a, colour);
        big.blend_reference(&mut b, colour);
        assert_eq!(a, b);
    }

    #[test]
    fn all_luma_stays_in_limited_range() {
        let scene = Scene::new(99, "neon city", 128, 72);
        let mut f = scene.blank_frame();
        for i in [0, 50, 119] {
            scene.draw(i, &mut f);
            assert!(f.y.data.iter().all(|&v| (16..=235).contains(&v)));
            assert!(f
                .u
                .data
                .iter()
                .chain(&f.v.data)
                .all(|&v| (16..=240).contains(&v)));
        }
    }
}
