//! Still sources (§2.4, §3.1, §3.5): decoding JPEG/PNG inputs with their EXIF orientation, the
//! cover-fit image→frame mapping, and the canvas a camera moves over.
//!
//! A picture is resized once (Lanczos3) to 1.5× the output size and converted from RGB to
//! I420 once, straight into its canvas. Every canvas sample outside the picture takes the
//! mirror image of the picture across its edges, blurred and dimmed, so that a camera move
//! revealing it reads as "beyond the picture"; since revision r2 that margin is computed on
//! the canvas reduced 4× on each axis and interpolated back (see [`MARGIN_REDUCTION`]).
//! Everything after the resize is integer arithmetic.

use std::io::Cursor;
use std::num::NonZeroU32;

use fast_image_resize as fr;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};
use rayon::prelude::*;

use crate::camera::{CanvasLayout, OVERSAMPLE_DEN, OVERSAMPLE_NUM};
use crate::engine::{EnginePool, RenderError};
use crate::frame::{I420Frame, Plane};
use crate::plan::{contain_fit, Mode, Size};
use crate::warp::{warp_frame, Edge, Transform, WarpError};

/// Largest decoded side, and the decoder's allocation budget, against decompression bombs.
pub const MAX_IMAGE_SIDE: u32 = 16_384;
pub const MAX_DECODE_BYTES: u64 = 512 * 1024 * 1024;
/// Blur radius of the mirrored margin, as a fraction of the view's long side (three passes).
const MARGIN_BLUR_FRACTION: f64 = 0.02;
/// The mirrored margin keeps 85 % of its contrast (dimmed by 15 %), as a fraction of 100.
const MARGIN_KEEP_PERCENT: i32 = 85;
/// A mask sample at or above this (alpha, or luma when the alpha is opaque) is painted.
const PAINTED: u8 = 128;

/// A decoded picture in its displayed orientation, 8-bit RGB, rows packed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Picture {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

/// A decoded mask in its displayed orientation: 255 where painted, 0 elsewhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mask {
    pub width: u32,
    pub height: u32,
    pub painted: Vec<u8>,
}

fn decode(bytes: &[u8], field: &str) -> Result<DynamicImage, RenderError> {
    let format = match image::guess_format(bytes) {
        Ok(f @ (ImageFormat::Jpeg | ImageFormat::Png)) => f,
        Ok(other) => {
            return Err(RenderError::Client(format!(
                "{field}: {} images are not supported by the local engine; use JPEG or PNG",
                other.to_mime_type()
            )))
        }
        Err(_) => {
            return Err(RenderError::Client(format!(
                "{field}: not a JPEG or PNG image (the local engine decodes only these)"
            )))
        }
    };
    let bad = |e: image::ImageError| RenderError::Client(format!("{field}: cannot decode: {e}"));
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(bad)?;
    let orientation = decoder.orientation().map_err(bad)?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(bad)?;
    img.apply_orientation(orientation);
    if img.width() == 0 || img.height() == 0 {
        return Err(RenderError::Client(format!("{field}: the image is empty")));
    }
    Ok(img)
}

/// Decodes `image`/`image_tail` bytes: JPEG or PNG, EXIF orientation applied, 16-bit samples
/// reduced to 8 bits, any alpha channel dropped. `field` names the request field in errors.
pub fn decode_picture(bytes: &[u8], field: &str) -> Result<Picture, RenderError> {
    let img = decode(bytes, field)?;
    let (width, height) = (img.width(), img.height());
    Ok(Picture {
        width,
        height,
        rgb: img.into_rgb8().into_raw(),
    })
}

/// Decodes a mask (§3.5): a pixel is painted when its alpha is at least 128 if the mask has a
/// non-opaque alpha channel, otherwise when its luma is at least 128.
pub fn decode_mask(bytes: &[u8], field: &str) -> Result<Mask, RenderError> {
    let img = decode(bytes, field)?;
    let (width, height) = (img.width(), img.height());
    let has_alpha = img.color().has_alpha();
    let rgba = img.into_rgba8().into_raw();
    let use_alpha = has_alpha && rgba.chunks_exact(4).any(|p| p[3] < 255);
    let painted = rgba
        .chunks_exact(4)
        .map(|p| {
            let v = if use_alpha {
                p[3]
            } else {
                luma(p[0], p[1], p[2])
            };
            if v >= PAINTED {
                255
            } else {
                0
            }
        })
        .collect();
    Ok(Mask {
        width,
        height,
        painted,
    })
}

/// BT.709 luma of 8-bit R'G'B' on the 0–255 scale, rounded.
fn luma(r: u8, g: u8, b: u8) -> u8 {
    let sum = 2126 * u32::from(r) + 7152 * u32::from(g) + 722 * u32::from(b);
    ((sum + 5000) / 10_000) as u8
}

/// The output size for an input of the given displayed size (§2.4).
pub fn output_size(mode: Mode, width: u32, height: u32, field: &str) -> Result<Size, RenderError> {
    contain_fit(mode, width, height).ok_or_else(|| {
        RenderError::Client(format!(
            "{field}: a {width}x{height} image is too thin to fit a {mode} frame"
        ))
    })
}

/// The image→frame mapping: the image scaled to cover the W×H frame, centred, with the
/// overhanging part cropped. Positions are continuous (pixel centres at +½).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FitMapping {
    /// The visible part of the image: left, top, width, height in image pixels.
    pub crop: (f64, f64, f64, f64),
    pub frame: Size,
}

impl FitMapping {
    pub fn new(image_width: u32, image_height: u32, frame: Size) -> Self {
        let (w, h) = (f64::from(image_width), f64::from(image_height));
        let (fw, fh) = (f64::from(frame.width), f64::from(frame.height));
        // Compared in integers so that an exact aspect match never crops by a rounding error.
        let wider = u64::from(image_width) * u64::from(frame.height)
            >= u64::from(image_height) * u64::from(frame.width);
        // The visible extent never exceeds the image, even by a rounding error, because the
        // resizer refuses crops that overhang.
        let centred = |full: f64, part: f64| {
            let mut part = part.min(full);
            let start = ((full - part) / 2.0).max(0.0);
            while start + part > full && part > 0.0 {
                part = f64::from_bits(part.to_bits() - 1);
            }
            (start, part)
        };
        let crop = if wider {
            let (l, cw) = centred(w, h * fw / fh);
            (l, 0.0, cw, h)
        } else {
            let (t, ch) = centred(h, w * fh / fw);
            (0.0, t, w, ch)
        };
        Self { crop, frame }
    }

    /// Image position → frame position.
    pub fn image_to_frame(&self, x: f64, y: f64) -> (f64, f64) {
        let (l, t, cw, ch) = self.crop;
        (
            (x - l) * f64::from(self.frame.width) / cw,
            (y - t) * f64::from(self.frame.height) / ch,
        )
    }

    /// Frame position → image position.
    pub fn frame_to_image(&self, x: f64, y: f64) -> (f64, f64) {
        let (l, t, cw, ch) = self.crop;
        (
            l + x * cw / f64::from(self.frame.width),
            t + y * ch / f64::from(self.frame.height),
        )
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let a = core::f64::consts::PI * x;
        libm::sin(a) / a
    }
}

/// Lanczos3 with `libm`'s sine, so the resize coefficients never depend on the platform's C
/// maths library (the resizer's built-in filter calls `f64::sin`).
fn lanczos3(x: f64) -> f64 {
    if (-3.0..3.0).contains(&x) {
        sinc(x) * sinc(x / 3.0)
    } else {
        0.0
    }
}

fn resize_options(crop: (f64, f64, f64, f64)) -> Result<fr::ResizeOptions, RenderError> {
    let filter = fr::Filter::new("lanczos3-libm", lanczos3, 3.0)
        .map_err(|e| RenderError::Internal(format!("resize filter: {e}")))?;
    let (l, t, w, h) = crop;
    Ok(fr::ResizeOptions::new()
        .resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Custom(filter)))
        .crop(l, t, w, h))
}

/// Resizes the visible part of `picture` to `width`×`height` RGB with Lanczos3. The resizer
/// picks its SIMD path at run time; its paths give identical bytes (tested below).
fn resize_rgb(
    picture: &Picture,
    crop: (f64, f64, f64, f64),
    width: u32,
    height: u32,
    extensions: Option<fr::CpuExtensions>,
) -> Result<Vec<u8>, RenderError> {
    let src = fr::images::ImageRef::new(
        picture.width,
        picture.height,
        &picture.rgb,
        fr::PixelType::U8x3,
    )
    .map_err(resize_failed)?;
    let mut dst = fr::images::Image::new(width, height, fr::PixelType::U8x3);
    resizer_with(extensions)?
        .resize(&src, &mut dst, &resize_options(crop)?)
        .map_err(resize_failed)?;
    Ok(dst.into_vec())
}

fn resize_failed(e: impl std::fmt::Display) -> RenderError {
    RenderError::Internal(format!("resize: {e}"))
}

fn resizer_with(extensions: Option<fr::CpuExtensions>) -> Result<fr::Resizer, RenderError> {
    let mut resizer = fr::Resizer::new();
    if let Some(ext) = extensions {
        if !ext.is_supported() {
            return Err(RenderError::Internal(format!("{ext:?} is not supported")));
        }
        // SAFETY: the extension was just checked to be supported by this CPU.
        unsafe { resizer.set_cpu_extensions(ext) };
    }
    Ok(resizer)
}

/// [`resize_rgb`] in bands on the current pool, with the same bytes.
///
/// For 8-bit pixels the resizer runs its vertical pass into a temporary image, then its
/// horizontal pass over it. Here the vertical pass runs in column bands (over the whole
/// source width) and the horizontal pass in row bands. A pass's coefficients depend only on
/// the source's extent along it, the crop's start and length along it and the output's length
/// along it, which every band keeps; a band's other axis is cropped to whole, unscaled pixels,
/// so the resizer runs only the one pass on it.
fn resize_rgb_banded(
    picture: &Picture,
    crop: (f64, f64, f64, f64),
    width: u32,
    height: u32,
    extensions: Option<fr::CpuExtensions>,
) -> Result<Vec<u8>, RenderError> {
    use fr::images::{TypedImage, TypedImageRef};
    use fr::pixels::U8x3;
    use fr::{ImageView, ImageViewMut};
    let (left, top, crop_w, crop_h) = crop;
    let horizontal = f64::from(width) != crop_w || left != left.round();
    let vertical = f64::from(height) != crop_h || top != top.round();
    let src_w = picture.width;
    let bands = (rayon::current_num_threads() as u32).min(src_w).min(height);
    // The banded vertical pass covers the whole source width (so the horizontal pass keeps
    // the whole call's coordinates); for a narrow crop that costs more than the bands save.
    let narrow = crop_w < 0.75 * f64::from(src_w);
    let worth_it = horizontal && vertical && bands >= 2 && !narrow;
    let (true, Some(src_cols), Some(parts)) =
        (worth_it, NonZeroU32::new(src_w), NonZeroU32::new(bands))
    else {
        return resize_rgb(picture, crop, width, height, extensions);
    };
    let src = TypedImageRef::<U8x3>::from_buffer(src_w, picture.height, &picture.rgb)
        .map_err(resize_failed)?;
    let mut temp = vec![0u8; src_w as usize * height as usize * 3];
    {
        let mut whole =
            TypedImage::<U8x3>::from_buffer(src_w, height, &mut temp).map_err(resize_failed)?;
        let views = whole
            .split_by_width_mut(0, src_cols, parts)
            .ok_or_else(|| resize_failed("cannot split the columns"))?;
        // Laid out as the resizer splits: equal widths, the first (width mod parts) one wider.
        let (step, wider) = (src_w / bands, src_w % bands);
        let starts: Vec<(u32, u32)> = (0..bands)
            .map(|k| (k * step + k.min(wider), step + u32::from(k < wider)))
            .collect();
        views
            .into_par_iter()
            .zip(starts)
            .try_for_each(|(mut view, (c0, cw))| {
                if view.width() != cw {
                    return Err(resize_failed("unexpected column band"));
                }
                let options = resize_options((f64::from(c0), top, f64::from(cw), crop_h))?;
                resizer_with(extensions)?
                    .resize_typed(&src, &mut view, &options)
                    .map_err(resize_failed)
            })?;
    }
    let temp = TypedImageRef::<U8x3>::from_buffer(src_w, height, &temp).map_err(resize_failed)?;
    let row_bytes = width as usize * 3;
    let rows = height.div_ceil(bands) as usize;
    let mut out = vec![0u8; row_bytes * height as usize];
    out.par_chunks_mut(rows * row_bytes)
        .enumerate()
        .try_for_each(|(k, chunk)| {
            let n = (chunk.len() / row_bytes) as u32;
            let mut band =
                TypedImage::<U8x3>::from_buffer(width, n, chunk).map_err(resize_failed)?;
            let options = resize_options((left, (k * rows) as f64, crop_w, f64::from(n)))?;
            resizer_with(extensions)?
                .resize_typed(&temp, &mut band, &options)
                .map_err(resize_failed)
        })?;
    Ok(out)
}

/// Mirror index: …, 1, 0 | 0, 1, …, n−1 | n−1, n−2, … repeated, for any k.
fn reflect(k: isize, n: usize) -> usize {
    let n = n as isize;
    let m = k.rem_euclid(2 * n);
    (if m < n { m } else { 2 * n - 1 - m }) as usize
}

// BT.709 limited range in 16.16 fixed point: the R'G'B' → Y'CbCr matrix scaled by 219/255
// (luma) and 224/255 (chroma); each chroma row sums to exactly zero so grey stays at 128.
const YR: i32 = 11_966;
const YG: i32 = 40_254;
const YB: i32 = 4_064;
const UR: i32 = -6_596;
const UG: i32 = -22_188;
const UB: i32 = 28_784;
const VR: i32 = 28_784;
const VG: i32 = -26_145;
const VB: i32 = -2_639;

#[inline(always)]
fn y_of(r: i32, g: i32, b: i32) -> u8 {
    ((YR * r + YG * g + YB * b + (16 << 16) + (1 << 15)) >> 16) as u8
}

/// Chroma of the sum of four pixels (each channel summed over a 2×2 block).
#[inline(always)]
fn uv_of4(r: i32, g: i32, b: i32) -> (u8, u8) {
    let u = (UR * r + UG * g + UB * b + (128 << 18) + (1 << 17)) >> 18;
    let v = (VR * r + VG * g + VB * b + (128 << 18) + (1 << 17)) >> 18;
    (u.clamp(0, 255) as u8, v.clamp(0, 255) as u8)
}

/// Packed RGB of even size to I420 with the same conversion as [`fill_picture`]; chroma from
/// each 2×2 block's sum.
pub(crate) fn rgb_to_i420(rgb: &[u8], width: usize, height: usize) -> I420Frame {
    let mut frame = I420Frame::filled(width, height, (16, 128, 128));
    let px = |x: usize, y: usize, c: usize| i32::from(rgb[(y * width + x) * 3 + c]);
    for y in 0..height {
        for (x, o) in frame.y.row_mut(y).iter_mut().enumerate() {
            *o = y_of(px(x, y, 0), px(x, y, 1), px(x, y, 2));
        }
    }
    for cy in 0..height / 2 {
        for cx in 0..width / 2 {
            let sum = |c: usize| {
                px(2 * cx, 2 * cy, c)
                    + px(2 * cx + 1, 2 * cy, c)
                    + px(2 * cx, 2 * cy + 1, c)
                    + px(2 * cx + 1, 2 * cy + 1, c)
            };
            let (u, v) = uv_of4(sum(0), sum(1), sum(2));
            frame.u.row_mut(cy)[cx] = u;
            frame.v.row_mut(cy)[cx] = v;
        }
    }
    frame
}

/// Writes the resized picture (`pw`×`ph` RGB placed at (`x0`, `y0`)) into the canvas: every
/// luma sample of the picture rectangle, and every chroma sample whose luma pair is centred
/// inside it. A chroma sample on an odd edge also covers one margin column or row; that half
/// takes the mirror image of the picture, as the margin does.
fn fill_picture(rgb: &[u8], pw: usize, ph: usize, x0: usize, y0: usize, canvas: &mut I420Frame) {
    let (cw, ch) = (canvas.width(), canvas.height());
    let (xs, ys) = (x0.min(cw)..(x0 + pw).min(cw), y0.min(ch)..(y0 + ph).min(ch));
    let stride = canvas.y.stride;
    canvas
        .y
        .data
        .par_chunks_mut(stride)
        .enumerate()
        .skip(ys.start)
        .take(ys.len())
        .for_each(|(y, out)| {
            let src = &rgb[(y - y0) * pw * 3..(y - y0 + 1) * pw * 3];
            let from = (xs.start - x0) * 3;
            for (o, p) in out[xs.clone()].iter_mut().zip(src[from..].chunks_exact(3)) {
                *o = y_of(i32::from(p[0]), i32::from(p[1]), i32::from(p[2]));
            }
        });
    let row = |y: usize| {
        let y = reflect(y as isize - y0 as isize, ph);
        &rgb[y * pw * 3..(y + 1) * pw * 3]
    };
    let (cxs, cys) = picture_chroma(x0, pw, y0, ph, canvas.u.width, canvas.u.height);
    // The two picture columns (as offsets into an RGB row) under each chroma sample.
    let column = |x: usize| 3 * reflect(x as isize - x0 as isize, pw);
    let pairs: Vec<(usize, usize)> = cxs
        .clone()
        .map(|cx| (column(2 * cx), column(2 * cx + 1)))
        .collect();
    let cstride = canvas.u.stride;
    canvas
        .u
        .data
        .par_chunks_mut(cstride)
        .zip(canvas.v.data.par_chunks_mut(cstride))
        .enumerate()
        .skip(cys.start)
        .take(cys.len())
        .for_each(|(cy, (us, vs))| {
            let (a, b) = (row(2 * cy), row(2 * cy + 1));
            let (us, vs) = (&mut us[cxs.clone()], &mut vs[cxs.clone()]);
            for ((u, v), &(x0, x1)) in us.iter_mut().zip(vs.iter_mut()).zip(&pairs) {
                let sum = |c: usize| {
                    i32::from(a[x0 + c])
                        + i32::from(a[x1 + c])
                        + i32::from(b[x0 + c])
                        + i32::from(b[x1 + c])
                };
                (*u, *v) = uv_of4(sum(0), sum(1), sum(2));
            }
        });
}

/// The chroma samples of the picture rectangle (`x0`, `pw`, `y0`, `ph` in luma samples) on
/// a chroma plane of `cw`×`ch`: a sample belongs to the picture when the centre of its luma
/// pair lies inside it (edges included).
fn picture_chroma(
    x0: usize,
    pw: usize,
    y0: usize,
    ph: usize,
    cw: usize,
    ch: usize,
) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
    let span = |start: usize, len: usize, limit: usize| {
        (start / 2).min(limit)..(start + len).div_ceil(2).min(limit)
    };
    (span(x0, pw, cw), span(y0, ph, ch))
}

/// The margin's blur runs on the plane reduced by this factor on each axis and is then
/// interpolated back. Three box passes of radius r make a Gaussian of σ ≈ r, and r is 2 % of
/// the long side (38 samples at 720p): the reduced plane keeps everything the blur lets
/// through, for a sixteenth of the work, and the margin is no longer drawn at full size only
/// to be blurred away.
const MARGIN_REDUCTION: usize = 4;

/// Fills every sample of `plane` outside the picture rectangle `xs`×`ys` (already drawn)
/// with the picture mirrored across its edges, blurred by three box passes of radius `r`
/// and dimmed towards `centre`, all on the plane reduced by [`MARGIN_REDUCTION`]; the result
/// is interpolated bilinearly back to full size.
fn fill_margin(
    plane: &mut Plane,
    xs: std::ops::Range<usize>,
    ys: std::ops::Range<usize>,
    r: usize,
    centre: i32,
) {
    if xs.is_empty() || ys.is_empty() {
        return;
    }
    let mirrored = reduce_mirrored(plane, xs.clone(), ys.clone());
    let mut blurred = blur3(&mirrored, reduced_radius(r));
    for v in &mut blurred.data {
        *v = dim(*v, centre);
    }
    upsample_margin(plane, &blurred, xs, ys);
}

/// The radius that blurs the reduced plane as three passes of radius `r` blur the full one:
/// three passes of radius r have variance r·(r + 1); the reduction (a box of F) and the
/// bilinear interpolation back (a tent of F) add (F² − 1)/12 + F²/6 ≈ F²/4 full-size samples².
/// In reduced units the passes must then bring (r·(r + 1) − F²/4) / F²: the nearest radius
/// (integers throughout, at least 1).
fn reduced_radius(r: usize) -> usize {
    const F: usize = MARGIN_REDUCTION;
    let want = (4 * r * (r + 1)).saturating_sub(F * F);
    // Compare 4·F²·k·(k + 1) with `want` (everything times 4·F²): the k that comes closest.
    let miss = |k: usize| (4 * F * F * k * (k + 1)).abs_diff(want);
    (1..=r.max(1)).min_by_key(|&k| miss(k)).unwrap_or(1)
}

/// The whole `plane` with every sample outside `xs`×`ys` replaced by the mirror image of the
/// picture inside across its edges, reduced by [`MARGIN_REDUCTION`] on each axis: each sample
/// the rounded mean of its block (blocks on the far edges are partial). Only the picture is
/// read; the mirrored plane is never drawn at full size.
fn reduce_mirrored(plane: &Plane, xs: std::ops::Range<usize>, ys: std::ops::Range<usize>) -> Plane {
    const F: usize = MARGIN_REDUCTION;
    let (w, h) = (plane.width, plane.height);
    let (sw, sh) = (w.div_ceil(F), h.div_ceil(F));
    let mirror = |k: usize, span: &std::ops::Range<usize>| {
        span.start + reflect(k as isize - span.start as isize, span.len())
    };
    // The mirrored canvas row as runs of consecutive picture samples, forwards or backwards:
    // (first canvas column, first picture column, length, backwards).
    let mut runs: Vec<(usize, usize, usize, bool)> = Vec::new();
    for x in 0..w {
        let from = mirror(x, &xs);
        match runs.last_mut() {
            Some((_, start, len, back)) if *len == 1 && from + 1 == *start => {
                (*len, *back) = (2, true);
            }
            Some((_, start, len, back)) if !*back && from == *start + *len => *len += 1,
            Some((_, start, len, back)) if *back && from + *len == *start => *len += 1,
            _ => runs.push((x, from, 1, false)),
        }
    }
    // Each picture row mirrored, then summed over the column blocks (at most 4·255).
    let mut block_sums = vec![0u16; ys.len() * sw];
    block_sums
        .par_chunks_mut(sw)
        .zip(ys.clone().into_par_iter())
        .for_each_init(
            || vec![0u8; w],
            |line, (out, y)| {
                let row = plane.row(y);
                for &(at, from, len, back) in &runs {
                    let dst = &mut line[at..at + len];
                    if back {
                        let src = &row[from + 1 - len..=from];
                        for (d, &v) in dst.iter_mut().zip(src.iter().rev()) {
                            *d = v;
                        }
                    } else {
                        dst.copy_from_slice(&row[from..from + len]);
                    }
                }
                for (o, block) in out.iter_mut().zip(line.chunks(F)) {
                    *o = block.iter().map(|&v| u16::from(v)).sum();
                }
            },
        );
    let mut out = Plane::new(sw, sh, 0);
    out.data.par_chunks_mut(sw).enumerate().for_each_init(
        || vec![0u32; sw],
        |sums, (j, out)| {
            sums.fill(0);
            let rows = j * F..((j + 1) * F).min(h);
            let tall = rows.len();
            for y in rows {
                let at = (mirror(y, &ys) - ys.start) * sw;
                for (s, &v) in sums.iter_mut().zip(&block_sums[at..at + sw]) {
                    *s += u32::from(v);
                }
            }
            let full = Divider::new((tall * F) as u32);
            for (o, &s) in out.iter_mut().zip(sums.iter()) {
                *o = full.round(s);
            }
            // A last block narrower than F (the width is not a multiple of it).
            let wide = w - (sw - 1) * F;
            if wide < F {
                if let (Some(o), Some(&s)) = (out.last_mut(), sums.last()) {
                    *o = Divider::new((tall * wide) as u32).round(s);
                }
            }
        },
    );
    out
}

/// Writes the margin of `plane` (every sample outside `xs`×`ys`) from `reduced`, the plane
/// reduced by [`MARGIN_REDUCTION`], interpolated bilinearly with edges clamped. With F the
/// factor, full-size sample x sits at reduced position (2x + 1 − F) / 2F, so the weights are
/// whole multiples of 1/2F and the arithmetic is exact in integers.
fn upsample_margin(
    plane: &mut Plane,
    reduced: &Plane,
    xs: std::ops::Range<usize>,
    ys: std::ops::Range<usize>,
) {
    const F: usize = MARGIN_REDUCTION;
    const D: u32 = 2 * F as u32;
    // Full-size sample F·k + m lies between reduced samples k − 1 and k (m < F/2) or k and
    // k + 1, at these weights of the second, in 1/D.
    const PHASES: [(usize, u32); F] = {
        let mut phases = [(0, 0); F];
        let mut m = 0;
        while m < F {
            let q = 2 * m + 1 + F; // 2·(F·k + m) + 1 − F, shifted by one reduced sample
            phases[m] = (q / (2 * F), (q % (2 * F)) as u32);
            m += 1;
        }
        phases
    };
    let (w, rw, rh) = (plane.width, reduced.width, reduced.height);
    // The reduced row(s) above and below a full-size row, and the weight of the second.
    let rows = |y: usize| {
        let q = 2 * y as isize + 1 - F as isize;
        let (i, f) = (q.div_euclid(D as isize), q.rem_euclid(D as isize) as u32);
        let at = |k: isize| k.clamp(0, rh as isize - 1) as usize;
        (at(i), at(i + 1), f)
    };
    let stride = plane.stride;
    plane.data.par_chunks_mut(stride).enumerate().for_each_init(
        // The vertical blend of a row, with its first and last samples repeated once on
        // either side (the clamped edges), and the row interpolated across.
        || (vec![0u32; rw + 2], vec![0u8; rw * F]),
        |(blend, line), (y, row)| {
            let (a, b, fy) = rows(y);
            for ((o, &p), &q) in blend[1..=rw]
                .iter_mut()
                .zip(reduced.row(a))
                .zip(reduced.row(b))
            {
                *o = u32::from(p) * (D - fy) + u32::from(q) * fy;
            }
            (blend[0], blend[rw + 1]) = (blend[1], blend[rw]);
            let mut fill = |range: std::ops::Range<usize>| {
                let blocks = range.start / F..range.end.div_ceil(F);
                for (k, out) in blocks
                    .clone()
                    .zip(line.chunks_exact_mut(F).skip(blocks.start))
                {
                    for (o, &(left, fx)) in out.iter_mut().zip(&PHASES) {
                        let (l, r) = (blend[k + left], blend[k + left + 1]);
                        *o = ((l * (D - fx) + r * fx + D * D / 2) / (D * D)) as u8;
                    }
                }
                row[range.clone()].copy_from_slice(&line[range]);
            };
            if ys.contains(&y) {
                fill(0..xs.start);
                fill(xs.end..w);
            } else {
                fill(0..w);
            }
        },
    );
}

/// Exact division by `taps` (< 4096) for dividends up to 256·taps, by multiply and shift.
#[derive(Clone, Copy)]
struct Divider {
    taps: u32,
    magic: u64,
}

impl Divider {
    fn new(taps: u32) -> Self {
        // With m = ⌈2^32/d⌉ the quotient ⌊x·m / 2^32⌋ is exact while x·d < 2^32.
        Self {
            taps,
            magic: (1u64 << 32).div_ceil(u64::from(taps)),
        }
    }

    /// round(sum / taps).
    #[inline(always)]
    fn round(self, sum: u32) -> u8 {
        ((u64::from(sum + self.taps / 2) * self.magic) >> 32) as u8
    }
}

/// One clamped-edge box pass of radius r over `src` into `dst` (same length).
fn box_line(src: &[u8], dst: &mut [u8], r: usize, div: Divider) {
    let n = src.len();
    let at = |k: isize| u32::from(src[k.clamp(0, n as isize - 1) as usize]);
    let mut sum: u32 = (-(r as isize)..=r as isize).map(at).sum();
    // Where both ends of the window are inside (r ≤ k < n − r − 1) no clamping is needed:
    // the same sums, without a clamp and a bounds check per sample.
    let mid = r.min(n)..n.saturating_sub(r + 1).max(r.min(n));
    let step = |k: usize, d: &mut u8, sum: &mut u32| {
        *d = div.round(*sum);
        let k = k as isize;
        *sum = *sum + at(k + r as isize + 1) - at(k - r as isize);
    };
    for (k, d) in dst.iter_mut().enumerate().take(mid.start) {
        step(k, d, &mut sum);
    }
    if !mid.is_empty() {
        let add = &src[mid.start + r + 1..mid.end + r + 1];
        let sub = &src[mid.start - r..mid.end - r];
        for ((d, &a), &b) in dst[mid.clone()].iter_mut().zip(add).zip(sub) {
            *d = div.round(sum);
            sum = sum + u32::from(a) - u32::from(b);
        }
    }
    for (k, d) in dst.iter_mut().enumerate().skip(mid.end) {
        step(k, d, &mut sum);
    }
}

/// Three box passes of radius r in each direction (close to a Gaussian), edges clamped.
fn blur3(plane: &Plane, r: usize) -> Plane {
    let (w, h) = (plane.width, plane.height);
    let div = Divider::new(2 * r as u32 + 1);
    let mut a = Plane::new(w, h, 0);
    a.data.par_chunks_mut(w).enumerate().for_each_init(
        || vec![0u8; w],
        |tmp, (y, out)| {
            box_line(plane.row(y), out, r, div);
            box_line(out, tmp, r, div);
            box_line(tmp, out, r, div);
        },
    );
    // Vertical passes run down row bands: each band slides its own window of column sums, so
    // the bands are independent and the result does not depend on how they are scheduled.
    let mut b = Plane::new(w, h, 0);
    for _ in 0..3 {
        vertical_pass(&a, &mut b, r, div);
        std::mem::swap(&mut a, &mut b);
    }
    a
}

fn vertical_pass(src: &Plane, dst: &mut Plane, r: usize, div: Divider) {
    let (w, h) = (src.width, src.height);
    let band = h.div_ceil(8).max(1);
    let clamp = |k: isize| k.clamp(0, h as isize - 1) as usize;
    dst.data
        .par_chunks_mut(w * band)
        .enumerate()
        .for_each(|(b, out)| {
            let y0 = b * band;
            let mut sums = vec![0u32; w];
            for k in -(r as isize)..=r as isize {
                for (s, &v) in sums.iter_mut().zip(src.row(clamp(y0 as isize + k))) {
                    *s += u32::from(v);
                }
            }
            for (dy, row) in out.chunks_mut(w).enumerate() {
                let y = (y0 + dy) as isize;
                for (o, &s) in row.iter_mut().zip(&sums) {
                    *o = div.round(s);
                }
                let (add, sub) = (
                    src.row(clamp(y + r as isize + 1)),
                    src.row(clamp(y - r as isize)),
                );
                for ((s, &a), &d) in sums.iter_mut().zip(add).zip(sub) {
                    *s = *s + u32::from(a) - u32::from(d);
                }
            }
        });
}

/// Pulls `v` towards `centre` by 15 %, rounding half away from the centre.
#[inline(always)]
fn dim(v: u8, centre: i32) -> u8 {
    let d = (i32::from(v) - centre) * MARGIN_KEEP_PERCENT;
    let d = if d >= 0 {
        (d + 50) / 100
    } else {
        (d - 50) / 100
    };
    (centre + d) as u8
}

/// A still source on its canvas (§3.1): the picture at 1.5× with margins of ⌈L/4⌉.
#[derive(Clone, Debug)]
pub struct StillCanvas {
    layout: CanvasLayout,
    canvas: I420Frame,
}

impl StillCanvas {
    /// The canvas of `picture` cover-fitted to a `size` view.
    pub fn from_picture(
        picture: &Picture,
        size: Size,
        pool: &EnginePool,
    ) -> Result<Self, RenderError> {
        Self::build(picture, size, pool, None)
    }

    fn build(
        picture: &Picture,
        size: Size,
        pool: &EnginePool,
        extensions: Option<fr::CpuExtensions>,
    ) -> Result<Self, RenderError> {
        let (w, h) = (size.width as usize, size.height as usize);
        if w < 2 || h < 2 || w % 2 == 1 || h % 2 == 1 {
            return Err(RenderError::Internal(format!(
                "view {w}x{h} is not an even I420 size"
            )));
        }
        let layout = CanvasLayout::new(w, h);
        let (x0, y0, pw, ph) = layout.picture_rect();
        let fit = FitMapping::new(picture.width, picture.height, size);
        let rgb = pool
            .install(|| resize_rgb_banded(picture, fit.crop, pw as u32, ph as u32, extensions))?;
        let long = w.max(h) as f64 * OVERSAMPLE_NUM as f64 / OVERSAMPLE_DEN as f64;
        let r = (libm::round(MARGIN_BLUR_FRACTION * long) as usize).max(1);
        let rc = r.div_ceil(2);
        let canvas = pool.install(|| {
            let mut canvas =
                I420Frame::filled(layout.canvas_width, layout.canvas_height, (16, 128, 128));
            fill_picture(&rgb, pw, ph, x0, y0, &mut canvas);
            drop(rgb);
            let (cxs, cys) = picture_chroma(x0, pw, y0, ph, canvas.u.width, canvas.u.height);
            let (xs, ys) = (
                x0..(x0 + pw).min(canvas.y.width),
                y0..(y0 + ph).min(canvas.y.height),
            );
            fill_margin(&mut canvas.y, xs, ys, r, 16);
            for plane in [&mut canvas.u, &mut canvas.v] {
                fill_margin(plane, cxs.clone(), cys.clone(), rc, 128);
            }
            canvas
        });
        Ok(Self { layout, canvas })
    }

    /// A canvas drawn by other means (a procedural scene), of `layout`'s canvas size.
    pub fn from_canvas(layout: CanvasLayout, canvas: I420Frame) -> Result<Self, RenderError> {
        if (canvas.width(), canvas.height()) != (layout.canvas_width, layout.canvas_height) {
            return Err(RenderError::Internal(
                "canvas does not match its layout".to_owned(),
            ));
        }
        Ok(Self { layout, canvas })
    }

    pub fn layout(&self) -> &CanvasLayout {
        &self.layout
    }

    pub fn canvas(&self) -> &I420Frame {
        &self.canvas
    }

    /// The output (view) size.
    pub fn size(&self) -> Size {
        Size::new(
            self.layout.view_width as u32,
            self.layout.view_height as u32,
        )
    }

    /// An empty frame of the output size.
    pub fn blank_frame(&self) -> I420Frame {
        I420Frame::filled(
            self.layout.view_width,
            self.layout.view_height,
            (16, 128, 128),
        )
    }

    /// Samples the canvas through `camera` (output→view, as from
    /// [`crate::camera::camera_transform`]) into `out`, clamping at the canvas edges.
    pub fn render(&self, camera: &Transform, out: &mut I420Frame) -> Result<(), WarpError> {
        warp_frame(
            &self.canvas,
            &(self.layout.view_to_canvas() * *camera),
            Edge::Clamp,
            out,
        )
    }

    /// The prepared picture (§3.1): the canvas sampled by the camera at rest, which shows
    /// exactly the whole picture. Frame 0 of an image-led clip is this frame.
    pub fn prepared_picture(&self) -> Result<I420Frame, RenderError> {
        let mut out = self.blank_frame();
        self.render(&Transform::IDENTITY, &mut out)
            .map_err(|e| RenderError::Internal(format!("prepared picture: {e}")))?;
        Ok(out)
    }
}

/// Scales a mask to the `size` frame with the same image→frame mapping as the picture of
/// `image_size` (§3.5): 255 where painted. The mask must have the image's aspect ratio within
/// one pixel.
pub fn prepare_mask(
    mask: &Mask,
    image_size: (u32, u32),
    size: Size,
    field: &str,
) -> Result<Plane, RenderError> {
    let (iw, ih) = (u64::from(image_size.0), u64::from(image_size.1));
    let (mw, mh) = (u64::from(mask.width), u64::from(mask.height));
    // |mh − mw·ih/iw| ≤ 1 or |mw − mh·iw/ih| ≤ 1, cross-multiplied.
    let off = (mh * iw).abs_diff(mw * ih);
    if iw == 0 || ih == 0 || (off > iw && off > ih) {
        return Err(RenderError::Client(format!(
            "{field}: a {mw}x{mh} mask does not have the aspect ratio of the {iw}x{ih} image"
        )));
    }
    let fit = FitMapping::new(image_size.0, image_size.1, size);
    let (sx, sy) = (mw as f64 / iw as f64, mh as f64 / ih as f64);
    let (w, h) = (size.width as usize, size.height as usize);
    let (mwu, mhu) = (mask.width as usize, mask.height as usize);
    let index = |v: f64, n: usize| (libm::floor(v).max(0.0) as usize).min(n - 1);
    let xs: Vec<usize> = (0..w)
        .map(|x| index(fit.frame_to_image(x as f64 + 0.5, 0.0).0 * sx, mwu))
        .collect();
    let mut out = Plane::new(w, h, 0);
    for y in 0..h {
        let my = index(fit.frame_to_image(0.0, y as f64 + 0.5).1 * sy, mhu);
        let src = &mask.painted[my * mwu..(my + 1) * mwu];
        for (o, &mx) in out.row_mut(y).iter_mut().zip(&xs) {
            *o = src[mx];
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise_picture(w: u32, h: u32, seed: u64) -> Picture {
        let mut rng = crate::seed::SplitMix64::new(seed);
        let rgb = (0..w * h * 3).map(|_| rng.next_u64() as u8).collect();
        Picture {
            width: w,
            height: h,
            rgb,
        }
    }

    #[test]
    fn resize_simd_paths_match_the_scalar_path() {
        let pic = noise_picture(301, 173, 5);
        let fit = FitMapping::new(301, 173, Size::new(128, 72));
        let scalar = resize_rgb(&pic, fit.crop, 192, 108, Some(fr::CpuExtensions::None)).unwrap();
        let mut others = vec![None];
        #[cfg(target_arch = "x86_64")]
        others.extend([
            Some(fr::CpuExtensions::Sse4_1),
            Some(fr::CpuExtensions::Avx2),
        ]);
        for ext in others {
            if ext.is_some_and(|e| !e.is_supported()) {
                continue;
            }
            assert_eq!(
                resize_rgb(&pic, fit.crop, 192, 108, ext).unwrap(),
                scalar,
                "{ext:?}"
            );
        }
        // Upscaling as well.
        let small = noise_picture(37, 29, 6);
        let fit = FitMapping::new(37, 29, Size::new(64, 48));
        let scalar = resize_rgb(&small, fit.crop, 96, 72, Some(fr::CpuExtensions::None)).unwrap();
        assert_eq!(resize_rgb(&small, fit.crop, 96, 72, None).unwrap(), scalar);
    }

    #[test]
    fn banded_resize_matches_one_whole_resize() {
        let pic = noise_picture(613, 347, 8);
        let whole_and_banded = |threads: usize, w: u32, h: u32, crop| {
            let pool = EnginePool::new(threads).unwrap();
            pool.install(|| {
                (
                    resize_rgb(&pic, crop, w, h, None).unwrap(),
                    resize_rgb_banded(&pic, crop, w, h, None).unwrap(),
                )
            })
        };
        // Down and up, with a fractional crop start on either axis (a wider and a slightly
        // taller view), and a view whose width is the picture's (one pass only).
        for (w, h) in [(390, 218), (1202, 686), (97, 55), (500, 300), (613, 200)] {
            let fit = FitMapping::new(613, 347, Size::new(w, h));
            for threads in [1, 2, 3, 7] {
                let (whole, banded) = whole_and_banded(threads, w, h, fit.crop);
                assert!(whole == banded, "{w}x{h} on {threads}");
            }
        }
    }

    #[test]
    fn colour_conversion_matches_the_reference_matrix() {
        for (r, g, b) in [
            (0, 0, 0),
            (255, 255, 255),
            (255, 0, 0),
            (0, 255, 0),
            (0, 0, 255),
        ] {
            let want = crate::scene::rgb_to_yuv709(
                f64::from(r) / 255.0,
                f64::from(g) / 255.0,
                f64::from(b) / 255.0,
            );
            assert_eq!(y_of(r, g, b), want.y, "{r} {g} {b}");
            assert_eq!(uv_of4(4 * r, 4 * g, 4 * b), (want.u, want.v), "{r} {g} {b}");
        }
    }

    #[test]
    fn divider_is_exact() {
        for taps in [1u32, 3, 5, 9, 117, 233, 4095] {
            let d = Divider::new(taps);
            for sum in 0..=255 * taps {
                assert_eq!(
                    u32::from(d.round(sum)),
                    (sum + taps / 2) / taps,
                    "{sum}/{taps}"
                );
            }
        }
    }

    #[test]
    fn box_line_matches_the_clamped_window_sums() {
        let mut rng = crate::seed::SplitMix64::new(17);
        for n in [1usize, 2, 3, 5, 8, 13, 40, 101] {
            let src: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            for r in [1usize, 2, 3, 6, 20, 60] {
                let div = Divider::new(2 * r as u32 + 1);
                let mut got = vec![0u8; n];
                box_line(&src, &mut got, r, div);
                for (k, &v) in got.iter().enumerate() {
                    let sum: u32 = (k as isize - r as isize..=k as isize + r as isize)
                        .map(|j| u32::from(src[j.clamp(0, n as isize - 1) as usize]))
                        .sum();
                    assert_eq!(v, div.round(sum), "n {n} r {r} k {k}");
                }
            }
        }
    }

    #[test]
    fn reflection_mirrors_across_edges() {
        let got: Vec<usize> = (-4..8).map(|k| reflect(k, 3)).collect();
        assert_eq!(got, vec![2, 2, 1, 0, 0, 1, 2, 2, 1, 0, 0, 1]);
    }

    #[test]
    fn canvas_keeps_the_picture_sharp_and_the_margin_dim() {
        let pool = EnginePool::new(2).unwrap();
        let pic = noise_picture(96, 54, 9);
        let still = StillCanvas::from_picture(&pic, Size::new(64, 36), &pool).unwrap();
        let (x0, y0, pw, ph) = still.layout().picture_rect();
        let direct = resize_rgb(
            &pic,
            FitMapping::new(96, 54, Size::new(64, 36)).crop,
            pw as u32,
            ph as u32,
            None,
        )
        .unwrap();
        let c = still.canvas();
        for y in 0..ph {
            for x in 0..pw {
                let p = &direct[(y * pw + x) * 3..];
                let want = y_of(i32::from(p[0]), i32::from(p[1]), i32::from(p[2]));
                assert_eq!(c.y.get(x0 + x, y0 + y), want);
            }
        }
        // The mirrored, blurred margin is smooth and darker than white noise would be.
        let corner = c.y.get(0, 0);
        assert!((16..200).contains(&corner));
        let same = StillCanvas::from_picture(&pic, Size::new(64, 36), &EnginePool::new(1).unwrap())
            .unwrap();
        assert_eq!(same.canvas(), still.canvas());
    }

    #[test]
    fn reduced_margin_matches_the_full_size_blur_of_the_mirror() {
        // Pictures with detail at several scales, where neither the picture's place and size
        // nor the radius are multiples of the reduction: (width, height, x0, y0, radius).
        for (w, h, x0, y0, r) in [(203, 117, 81, 74, 10), (401, 233, 243, 198, 38)] {
            let mut plane = Plane::new(w + 2 * x0 - 1, h + 2 * y0 + 3, 0);
            let value = |x: usize, y: usize| {
                let (u, v) = (x as f64 / w as f64, y as f64 / h as f64);
                let wave = (u * 19.0).sin() * (v * 7.0).cos() * 50.0 + (u * 3.0 + v * 5.0) * 20.0;
                (120.0 + wave).clamp(0.0, 255.0) as u8
            };
            for y in 0..h {
                for x in 0..w {
                    plane.row_mut(y0 + y)[x0 + x] = value(x, y);
                }
            }
            let picture = plane.clone();
            fill_margin(&mut plane, x0..x0 + w, y0..y0 + h, r, 16);

            // The definition at full size: mirror, three box passes of radius r, dim.
            let mut mirrored = Plane::new(plane.width, plane.height, 0);
            for y in 0..plane.height {
                for x in 0..plane.width {
                    let (mx, my) = (
                        reflect(x as isize - x0 as isize, w),
                        reflect(y as isize - y0 as isize, h),
                    );
                    mirrored.row_mut(y)[x] = value(mx, my);
                }
            }
            let full = blur3(&mirrored, r);
            let (mut total, mut count, mut worst) = (0u64, 0u64, 0u8);
            for y in 0..plane.height {
                for x in 0..plane.width {
                    if (x0..x0 + w).contains(&x) && (y0..y0 + h).contains(&y) {
                        assert_eq!(plane.get(x, y), picture.get(x, y), "picture at {x},{y}");
                        continue;
                    }
                    let d = plane.get(x, y).abs_diff(dim(full.get(x, y), 16));
                    total += u64::from(d);
                    count += 1;
                    worst = worst.max(d);
                }
            }
            let mean = total as f64 / count as f64;
            assert!(mean < 1.0, "radius {r}: mean difference {mean}");
            assert!(worst <= 5, "radius {r}: largest difference {worst}");
        }
    }

    #[test]
    fn masks_follow_the_picture_mapping_and_check_their_shape() {
        // A 200×100 image shown in a 64×36 frame crops 11.1 image pixels per side.
        let mut painted = vec![0u8; 200 * 100];
        for y in 0..100 {
            for x in 100..200 {
                painted[y * 200 + x] = 255;
            }
        }
        let mask = Mask {
            width: 200,
            height: 100,
            painted,
        };
        let plane = prepare_mask(&mask, (200, 100), Size::new(64, 36), "static_mask").unwrap();
        assert_eq!(plane.get(31, 10), 0);
        assert_eq!(plane.get(32, 10), 255);
        let half = Mask {
            width: 100,
            height: 51,
            painted: vec![255; 100 * 51],
        };
        assert!(prepare_mask(&half, (200, 100), Size::new(64, 36), "m").is_ok());
        let wrong = Mask {
            width: 100,
            height: 60,
            painted: vec![255; 100 * 60],
        };
        let err = prepare_mask(
            &wrong,
            (200, 100),
            Size::new(64, 36),
            "dynamic_masks[0].mask",
        )
        .unwrap_err();
        assert!(
            matches!(&err, RenderError::Client(m) if m.starts_with("dynamic_masks[0].mask")),
            "{err}"
        );
    }

    #[test]
    fn other_formats_are_refused_by_name() {
        let gif = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;";
        let err = decode_picture(gif, "image_tail").unwrap_err();
        assert!(
            matches!(&err, RenderError::Client(m) if m.starts_with("image_tail")),
            "{err}"
        );
        let err = decode_picture(b"hello", "image").unwrap_err();
        assert!(err.is_client_error());
    }
}
