//! Reference images (§3.9): their colours replace a procedural scene's palette (a five-colour
//! median cut of 32×32 thumbnails of all references), and up to four of them appear as cards
//! (centre-cropped squares, 28 % of the short side, rounded corners and a soft shadow) moving
//! on seeded paths. Shared by multi-image2video and omni. All resampling and colour
//! conversion is integer arithmetic; floats only place the cards once per frame.

use std::f64::consts::PI;

use crate::engine::RenderError;
use crate::frame::I420Frame;
use crate::overlay::{blend_image, blend_mask, rounded_rect, soft_shadow, BLACK};
use crate::scene::{rgb_to_yuv709, Yuv};
use crate::seed::{sub_seed, SplitMix64};
use crate::spec::Asset;
use crate::still::{decode_picture, rgb_to_i420, Picture};
use crate::text::AlphaMask;

/// Colours of a reference palette.
pub const PALETTE_COLOURS: usize = 5;
/// Side of the thumbnails the palette is cut from.
pub const THUMBNAIL_SIDE: usize = 32;
/// At most this many references become cards, the first ones in list order.
pub const MAX_CARDS: usize = 4;
/// A card's side as a fraction of the frame's short side.
pub const CARD_FRACTION: f64 = 0.28;
/// The cards' shadow: black at 45 % opacity.
const SHADOW_OPACITY: u8 = 115;

/// Decodes every reference (JPEG or PNG, EXIF orientation applied); errors name
/// `field[i]`.
pub fn decode_references(assets: &[Asset], field: &str) -> Result<Vec<Picture>, RenderError> {
    assets
        .iter()
        .enumerate()
        .map(|(i, a)| decode_picture(a.bytes(), &format!("{field}[{i}]")))
        .collect()
}

/// Per output sample, the source samples it covers and their overlap weights. Source sample
/// i spans [i·out, (i+1)·out) and output sample x spans [x·len, (x+1)·len), so all weights
/// are integers and every output's weights sum to `len`.
fn area_weights(len: usize, out: usize) -> Vec<Vec<(usize, u64)>> {
    (0..out)
        .map(|x| {
            let (lo, hi) = (x * len, (x + 1) * len);
            (lo / out..hi.div_ceil(out).min(len))
                .filter_map(|i| {
                    let overlap = hi.min((i + 1) * out).saturating_sub(lo.max(i * out));
                    (overlap > 0).then_some((i, overlap as u64))
                })
                .collect()
        })
        .collect()
}

/// The region (x, y, w, h) of `picture` resampled to `out_w`×`out_h` RGB by exact area
/// averaging (each output pixel is the mean of the source area it covers, rounded).
fn resample_area(
    picture: &Picture,
    (x0, y0, w, h): (usize, usize, usize, usize),
    out_w: usize,
    out_h: usize,
) -> Vec<u8> {
    let stride = picture.width as usize * 3;
    let cols = area_weights(w, out_w);
    let rows = area_weights(h, out_h);
    let total = (w * h) as u64;
    // One output row at a time, so memory stays at two rows whatever the picture's size; a
    // source row shared by two output rows is summed twice, which bounds the extra work.
    let mut across = vec![0u64; out_w * 3];
    let mut acc = vec![0u64; out_w * 3];
    let mut out = vec![0u8; out_w * out_h * 3];
    for (y, taps) in rows.iter().enumerate() {
        acc.fill(0);
        for &(i, row_weight) in taps {
            let src = &picture.rgb[(y0 + i) * stride..(y0 + i + 1) * stride];
            across.fill(0);
            for (x, col_taps) in cols.iter().enumerate() {
                for &(j, weight) in col_taps {
                    let p = 3 * (x0 + j);
                    for c in 0..3 {
                        across[3 * x + c] += u64::from(src[p + c]) * weight;
                    }
                }
            }
            for (a, &v) in acc.iter_mut().zip(&across) {
                *a += v * row_weight;
            }
        }
        for (o, &a) in out[y * out_w * 3..(y + 1) * out_w * 3].iter_mut().zip(&acc) {
            *o = ((a + total / 2) / total) as u8;
        }
    }
    out
}

/// The whole picture squeezed to a 32×32 RGB thumbnail.
fn thumbnail(picture: &Picture) -> Vec<u8> {
    let (w, h) = (picture.width as usize, picture.height as usize);
    resample_area(picture, (0, 0, w, h), THUMBNAIL_SIDE, THUMBNAIL_SIDE)
}

/// The centred square of `picture` resampled to `side`×`side` RGB.
fn centre_square(picture: &Picture, side: usize) -> Vec<u8> {
    let (w, h) = (picture.width as usize, picture.height as usize);
    let s = w.min(h);
    resample_area(picture, ((w - s) / 2, (h - s) / 2, s, s), side, side)
}

/// Median cut of `pixels` into at most `colours` boxes, each the rounded mean of its pixels.
/// The box split next is the one with the widest channel range (ties: more pixels, then the
/// earlier box); it is cut at its median along that channel. Boxes of one colour never split.
pub fn median_cut(pixels: &mut [[u8; 3]], colours: usize) -> Vec<[u8; 3]> {
    if pixels.is_empty() || colours == 0 {
        return Vec::new();
    }
    let widest = |px: &[[u8; 3]]| -> (u8, usize) {
        let mut best = (0u8, 0usize);
        for c in 0..3 {
            let (lo, hi) = px
                .iter()
                .fold((255u8, 0u8), |(lo, hi), p| (lo.min(p[c]), hi.max(p[c])));
            if hi - lo > best.0 {
                best = (hi - lo, c);
            }
        }
        best
    };
    let mut boxes = vec![(0usize, pixels.len())];
    while boxes.len() < colours {
        let mut pick: Option<(usize, u8, usize, usize)> = None;
        for (k, &(start, end)) in boxes.iter().enumerate() {
            let (range, channel) = widest(&pixels[start..end]);
            let better = match pick {
                None => range > 0,
                Some((_, r, _, n)) => range > r || (range == r && end - start > n),
            };
            if better && range > 0 {
                pick = Some((k, range, channel, end - start));
            }
        }
        let Some((k, _, channel, _)) = pick else {
            break;
        };
        let (start, end) = boxes[k];
        let slice = &mut pixels[start..end];
        // The full colour breaks ties, so the order (and the cut) is fully determined.
        slice.sort_unstable_by_key(|p| (p[channel], *p));
        let mid = start + (end - start) / 2;
        boxes[k] = (start, mid);
        boxes.insert(k + 1, (mid, end));
    }
    boxes
        .iter()
        .map(|&(start, end)| {
            let n = (end - start) as u32;
            let mut mean = [0u8; 3];
            for (c, m) in mean.iter_mut().enumerate() {
                let sum: u32 = pixels[start..end].iter().map(|p| u32::from(p[c])).sum();
                *m = ((sum + n / 2) / n) as u8;
            }
            mean
        })
        .collect()
}

/// The five-colour palette of the references (§3.9), darkest first (BT.709 luma), or `None`
/// without references. Fewer distinct colours than five are repeated, most populous first.
pub fn palette(pictures: &[Picture]) -> Option<[Yuv; PALETTE_COLOURS]> {
    let mut pixels: Vec<[u8; 3]> = pictures
        .iter()
        .flat_map(|p| {
            thumbnail(p)
                .chunks_exact(3)
                .map(|c| [c[0], c[1], c[2]])
                .collect::<Vec<_>>()
        })
        .collect();
    let colours = median_cut(&mut pixels, PALETTE_COLOURS);
    if colours.is_empty() {
        return None;
    }
    let mut rgb: Vec<[u8; 3]> = (0..PALETTE_COLOURS)
        .map(|k| colours[k % colours.len()])
        .collect();
    let luma =
        |c: &[u8; 3]| 2126 * u32::from(c[0]) + 7152 * u32::from(c[1]) + 722 * u32::from(c[2]);
    rgb.sort_by_key(|c| (luma(c), *c));
    let mut out = [BLACK; PALETTE_COLOURS];
    for (o, c) in out.iter_mut().zip(&rgb) {
        let f = |v: u8| f64::from(v) / 255.0;
        *o = rgb_to_yuv709(f(c[0]), f(c[1]), f(c[2]));
    }
    Some(out)
}

/// Where a card is in one frame: its top-left (even, possibly off the frame) and side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CardPlacement {
    pub x: i64,
    pub y: i64,
    pub side: usize,
}

/// A seeded path: centre, amplitude, frequency (Hz) and phase per axis, in frame fractions.
#[derive(Clone, Debug)]
struct Path {
    x: (f64, f64, f64, f64),
    y: (f64, f64, f64, f64),
}

#[derive(Clone, Debug)]
struct Card {
    image: I420Frame,
    path: Path,
}

/// The reference cards of a render, prepared once for a frame size.
#[derive(Clone, Debug)]
pub struct ReferenceLayer {
    width: usize,
    height: usize,
    side: usize,
    cards: Vec<Card>,
    mask: AlphaMask,
    shadow: AlphaMask,
    /// The shadow mask's top-left relative to the card's.
    shadow_offset: (i64, i64),
}

impl ReferenceLayer {
    /// Cards for the first four `pictures`, on paths seeded from `seed`, for
    /// `width`×`height` frames.
    pub fn new(pictures: &[Picture], seed: u64, width: usize, height: usize) -> Self {
        let short = width.min(height) as f64;
        let side = ((libm::floor(short * CARD_FRACTION + 0.5) as usize) & !1).max(2);
        let count = pictures.len().min(MAX_CARDS);
        let cards = pictures
            .iter()
            .take(MAX_CARDS)
            .enumerate()
            .map(|(k, picture)| {
                let rgb = centre_square(picture, side);
                let mut rng = SplitMix64::new(sub_seed(seed, "references/card", k as u32));
                // Each card keeps to its own lane across the frame and drifts around it.
                let lane = (k as f64 + 0.5) / count as f64;
                let path = Path {
                    x: (
                        lane,
                        rng.range(0.04, 0.1),
                        rng.range(0.05, 0.15),
                        rng.range(0.0, 2.0 * PI),
                    ),
                    y: (
                        0.45 + rng.range(-0.05, 0.05),
                        rng.range(0.08, 0.2),
                        rng.range(0.05, 0.15),
                        rng.range(0.0, 2.0 * PI),
                    ),
                };
                Card {
                    image: rgb_to_i420(&rgb, side, side),
                    path,
                }
            })
            .collect();
        let mask = rounded_rect(side, side, side as f64 * 0.08);
        let blur = ((side as f64 * 0.03) as usize).max(1);
        let (shadow, pad) = soft_shadow(&mask, blur);
        let shift = |f: f64| libm::floor(side as f64 * f + 0.5) as i64;
        Self {
            width,
            height,
            side,
            cards,
            mask,
            shadow,
            shadow_offset: (shift(0.03) - pad as i64, shift(0.05) - pad as i64),
        }
    }

    /// Number of cards (at most four).
    pub fn len(&self) -> usize {
        self.cards.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cards.is_empty()
    }

    /// Where each card is in frame `index`, in list order.
    pub fn placements(&self, index: u32) -> Vec<CardPlacement> {
        let t = f64::from(index) / 24.0;
        let half = self.side as f64 / 2.0;
        self.cards
            .iter()
            .map(|card| {
                let at = |(c, a, f, p): (f64, f64, f64, f64), len: usize| {
                    let centre = (c + a * libm::sin(2.0 * PI * f * t + p)) * len as f64;
                    (libm::floor(centre - half) as i64) & !1
                };
                CardPlacement {
                    x: at(card.path.x, self.width),
                    y: at(card.path.y, self.height),
                    side: self.side,
                }
            })
            .collect()
    }

    /// Draws the cards of frame `index` over `frame`, in list order, each over its shadow.
    pub fn draw(&self, index: u32, frame: &mut I420Frame) {
        self.draw_faded(index, 255, frame);
    }

    /// [`ReferenceLayer::draw`] with the cards and shadows at `opacity` (255 = opaque).
    pub fn draw_faded(&self, index: u32, opacity: u8, frame: &mut I420Frame) {
        if frame.width() != self.width || frame.height() != self.height || opacity == 0 {
            return;
        }
        for (card, at) in self.cards.iter().zip(self.placements(index)) {
            let (sx, sy) = self.shadow_offset;
            blend_mask(
                frame,
                &self.shadow,
                at.x + sx,
                at.y + sy,
                BLACK,
                ((u32::from(SHADOW_OPACITY) * u32::from(opacity) + 127) / 255) as u8,
            );
            blend_image(frame, &card.image, &self.mask, (at.x, at.y), opacity);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picture(w: u32, h: u32, f: impl Fn(u32, u32) -> [u8; 3]) -> Picture {
        let mut rgb = Vec::new();
        for y in 0..h {
            for x in 0..w {
                rgb.extend_from_slice(&f(x, y));
            }
        }
        Picture {
            width: w,
            height: h,
            rgb,
        }
    }

    #[test]
    fn area_resampling_averages_exactly() {
        let p = picture(4, 2, |x, _| [if x < 2 { 0 } else { 200 }, 10, 255]);
        assert_eq!(
            resample_area(&p, (0, 0, 4, 2), 2, 1),
            [0, 10, 255, 200, 10, 255]
        );
        assert_eq!(resample_area(&p, (0, 0, 4, 2), 1, 1), [100, 10, 255]);
        // Three columns from four: the middle one straddles the edge.
        let mid = resample_area(&p, (0, 0, 4, 2), 3, 1);
        assert_eq!(mid[3], 100);
        // Upscaling repeats samples.
        assert_eq!(
            resample_area(&p, (2, 0, 1, 1), 2, 2),
            [200, 10, 255].repeat(4)
        );
    }

    #[test]
    fn median_cut_separates_clusters() {
        let mut px = Vec::new();
        for k in 0..50u8 {
            px.push([250, k % 3, 0]);
            px.push([0, 0, 240 + k % 5]);
        }
        let colours = median_cut(&mut px, 5);
        assert!(colours.iter().any(|c| c[0] > 240 && c[2] < 10));
        assert!(colours.iter().any(|c| c[2] > 230 && c[0] < 10));
        let mut one = vec![[7, 8, 9]; 10];
        assert_eq!(median_cut(&mut one, 5), vec![[7, 8, 9]]);
    }

    #[test]
    fn palette_follows_the_references() {
        let red = picture(64, 48, |x, y| [200 + ((x + y) % 40) as u8, 20, 30]);
        let p = palette(&[red]).unwrap();
        assert!(p.iter().all(|c| c.v > 180 && c.u < 128), "{p:?}");
        assert!(p.windows(2).all(|w| w[0].y <= w[1].y));
        assert_eq!(palette(&[]), None);
    }

    #[test]
    fn cards_are_centre_crops_on_even_positions() {
        // A wide picture: left third red, middle green, right third blue.
        let p = picture(90, 30, |x, _| match x {
            0..30 => [255, 0, 0],
            30..60 => [0, 255, 0],
            _ => [0, 0, 255],
        });
        let layer = ReferenceLayer::new(&[p], 3, 192, 108);
        assert_eq!(layer.side, 30);
        let card = &layer.cards[0].image;
        // Pure green: Y 173, Cb 42, Cr 26 in BT.709 limited range.
        assert_eq!(card.y.get(15, 15), 173);
        assert_eq!((card.u.get(7, 7), card.v.get(7, 7)), (42, 26));
        for i in [0, 30, 100] {
            let at = layer.placements(i)[0];
            assert_eq!((at.x % 2, at.y % 2), (0, 0));
        }
        assert_ne!(layer.placements(0), layer.placements(48));
    }
}
