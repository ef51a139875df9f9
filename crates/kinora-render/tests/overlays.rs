//! Overlays read back: the watermark label and the watermarked copy (§2.6), the cover JPEG
//! (§2.7), the text2video caption (§3.7) and the reference palette and cards of
//! multi-image2video (§3.9). Exact properties are checked on frames before encoding; real
//! renders are decoded with OpenH264 and probed.

mod common;

use std::io::Cursor;

use common::{be32, child};
use kinora_media::video::probe_video;
use kinora_render::engine::{title, CancelFlag, EnginePool, RenderOutput};
use kinora_render::frame::{I420Frame, Plane};
use kinora_render::overlay::{Caption, Rect, Watermark};
use kinora_render::plan::{Aspect, Mode};
use kinora_render::references::{decode_references, palette, ReferenceLayer};
use kinora_render::scene::Scene;
use kinora_render::seed::{scene_seed, to_hex};
use kinora_render::{Asset, RenderError, RenderKind, RenderSpec};
use openh264::formats::YUVSource;

fn render(spec: &RenderSpec, threads: usize) -> RenderOutput {
    let pool = EnginePool::new(threads).unwrap();
    kinora_render::render(spec, &pool, &CancelFlag::new()).unwrap()
}

fn render_err(spec: &RenderSpec) -> RenderError {
    let pool = EnginePool::new(1).unwrap();
    kinora_render::render(spec, &pool, &CancelFlag::new()).unwrap_err()
}

// ---------------------------------------------------------------------------------------
// MP4 reading: just enough box walking to hand the samples to the decoder.

fn video_stbl(mp4: &[u8]) -> &[u8] {
    let trak = child(child(mp4, b"moov"), b"trak");
    child(child(child(trak, b"mdia"), b"minf"), b"stbl")
}

/// Every video sample as Annex B, SPS and PPS in front of the first.
fn annex_b_samples(mp4: &[u8]) -> Vec<Vec<u8>> {
    let stbl = video_stbl(mp4);
    let avc1 = child(&child(stbl, b"stsd")[8..], b"avc1");
    let avcc = child(&avc1[78..], b"avcC");
    let sps_len = usize::from(u16::from_be_bytes([avcc[6], avcc[7]]));
    let sps = &avcc[8..8 + sps_len];
    let at = 8 + sps_len;
    let pps_len = usize::from(u16::from_be_bytes([avcc[at + 1], avcc[at + 2]]));
    let pps = &avcc[at + 3..at + 3 + pps_len];
    let stsz = child(stbl, b"stsz");
    let count = be32(&stsz[8..]) as usize;
    let mut pos = be32(&child(stbl, b"stco")[8..]) as usize;
    let mut out = Vec::new();
    for i in 0..count {
        let end = pos + be32(&stsz[12 + 4 * i..]) as usize;
        let mut sample = Vec::new();
        if i == 0 {
            for ps in [sps, pps] {
                sample.extend_from_slice(&[0, 0, 0, 1]);
                sample.extend_from_slice(ps);
            }
        }
        while pos < end {
            let len = be32(&mp4[pos..]) as usize;
            sample.extend_from_slice(&[0, 0, 0, 1]);
            sample.extend_from_slice(&mp4[pos + 4..pos + 4 + len]);
            pos += 4 + len;
        }
        out.push(sample);
    }
    out
}

fn to_frame(yuv: &dyn YUVSource) -> I420Frame {
    let (w, h) = yuv.dimensions();
    let (sy, su, sv) = yuv.strides();
    let plane = |data: &[u8], stride: usize, pw: usize, ph: usize| Plane {
        width: pw,
        height: ph,
        stride: pw,
        data: data
            .chunks(stride)
            .take(ph)
            .flat_map(|r| &r[..pw])
            .copied()
            .collect(),
    };
    I420Frame {
        y: plane(yuv.y(), sy, w, h),
        u: plane(yuv.u(), su, w / 2, h / 2),
        v: plane(yuv.v(), sv, w / 2, h / 2),
    }
}

fn decode_all(mp4: &[u8]) -> Vec<I420Frame> {
    let mut decoder = openh264::decoder::Decoder::new().unwrap();
    let mut frames = Vec::new();
    for sample in annex_b_samples(mp4) {
        if let Some(yuv) = decoder.decode(&sample).unwrap() {
            frames.push(to_frame(&yuv));
        }
    }
    for yuv in decoder.flush_remaining().unwrap() {
        frames.push(to_frame(&yuv));
    }
    frames
}

fn probe(mp4: &[u8]) -> kinora_media::video::VideoInfo {
    futures::executor::block_on(probe_video("video", &bytes::Bytes::copy_from_slice(mp4))).unwrap()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

// ---------------------------------------------------------------------------------------
// Measuring.

/// Mean absolute luma difference over the pixels `keep` selects.
fn mean_diff(a: &I420Frame, b: &I420Frame, keep: impl Fn(usize, usize) -> bool) -> f64 {
    let (mut sum, mut n) = (0u64, 0u64);
    for y in 0..a.height() {
        for x in 0..a.width() {
            if keep(x, y) {
                sum += u64::from(a.y.get(x, y).abs_diff(b.y.get(x, y)));
                n += 1;
            }
        }
    }
    sum as f64 / n.max(1) as f64
}

/// How much brighter the caption's fully inked pixels are than the box pixels at least two
/// pixels away from any ink: large while the caption shows, near zero once it is gone
/// (the scene does not follow the shape of the letters).
fn caption_contrast(caption: &Caption, luma: impl Fn(usize, usize) -> f64) -> f64 {
    let (r, m) = (caption.rect(), caption.text_mask());
    let (mut ink, mut n_ink, mut bg, mut n_bg) = (0.0, 0u32, 0.0, 0u32);
    let inset = r.height / 6;
    for y in inset..r.height - inset {
        for x in inset..r.width - inset {
            let (xi, yi) = (x as i64, y as i64);
            let a = m.get(xi, yi);
            if a >= 250 {
                ink += luma(r.x + x, r.y + y);
                n_ink += 1;
            } else if (-2..=2).all(|dy| (-2..=2).all(|dx| m.get(xi + dx, yi + dy) == 0)) {
                bg += luma(r.x + x, r.y + y);
                n_bg += 1;
            }
        }
    }
    assert!(
        n_ink > 50 && n_bg > 50,
        "{n_ink} ink and {n_bg} background pixels"
    );
    ink / f64::from(n_ink) - bg / f64::from(n_bg)
}

fn luma_of(frame: &I420Frame) -> impl Fn(usize, usize) -> f64 + '_ {
    |x, y| f64::from(frame.y.get(x, y))
}

fn mean_chroma(frame: &I420Frame) -> (f64, f64) {
    let mean = |p: &Plane| p.data.iter().map(|&v| f64::from(v)).sum::<f64>() / p.data.len() as f64;
    (mean(&frame.u), mean(&frame.v))
}

// ---------------------------------------------------------------------------------------
// Inputs.

fn png(w: u32, h: u32, f: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb(f(x, y)));
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn jpeg(w: u32, h: u32, f: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb(f(x, y)));
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}

/// Left half pure red, right half pure blue; wider than high, so the card crops its sides.
fn red_blue() -> Vec<u8> {
    png(
        160,
        120,
        |x, _| if x < 80 { [255, 0, 0] } else { [0, 0, 255] },
    )
}

/// BT.709 limited range of pure red and pure blue.
const RED: (u8, u8, u8) = (63, 102, 240);
const BLUE: (u8, u8, u8) = (32, 240, 118);

fn multi_image(references: Vec<Vec<u8>>) -> RenderSpec {
    RenderSpec {
        duration_s: Some(1),
        references: references.into_iter().map(Asset::new).collect(),
        ..RenderSpec::new(RenderKind::MultiImage2Video, "two cards on a table")
    }
}

// ---------------------------------------------------------------------------------------
// Watermark.

/// The label changes nothing outside its rectangle, luma or chroma, and visibly darkens and
/// marks the inside.
#[test]
fn a_labelled_frame_differs_from_the_clean_one_only_inside_the_label() {
    for (w, h) in [(192, 108), (1280, 720), (720, 1280)] {
        let scene = Scene::new(scene_seed("kling-v1", "snow", ""), "snow", w, h);
        let mut clean = scene.blank_frame();
        scene.draw(5, &mut clean);
        let mut labelled = clean.clone();
        let wm = Watermark::new(w, h).unwrap();
        wm.apply(&mut labelled);
        let r = wm.rect();
        assert!(r.x + r.width <= w && r.y + r.height <= h);
        assert_eq!((r.x % 2, r.y % 2, r.width % 2, r.height % 2), (0, 0, 0, 0));
        let chroma_rect = Rect {
            x: r.x / 2,
            y: r.y / 2,
            width: r.width / 2,
            height: r.height / 2,
        };
        for (p, (a, b)) in [
            (&clean.y, &labelled.y),
            (&clean.u, &labelled.u),
            (&clean.v, &labelled.v),
        ]
        .into_iter()
        .enumerate()
        {
            let inside = if p == 0 { r } else { chroma_rect };
            for y in 0..a.height {
                for x in 0..a.width {
                    if !inside.contains(x, y) {
                        assert_eq!(a.get(x, y), b.get(x, y), "{w}x{h} plane {p} at ({x}, {y})");
                    }
                }
            }
        }
        let inside = mean_diff(&clean, &labelled, |x, y| r.contains(x, y));
        assert!(
            inside > 10.0,
            "{w}x{h}: label changes the inside by {inside}"
        );
        if w >= 720 {
            // White text: near-white pixels inside the dark box.
            let white = (r.y..r.y + r.height)
                .flat_map(|y| (r.x..r.x + r.width).map(move |x| (x, y)))
                .filter(|&(x, y)| labelled.y.get(x, y) > 225)
                .count();
            assert!(white > 100, "{w}x{h}: {white} white text pixels");
            let short = w.min(h);
            assert_eq!(r.height, short * 5 / 100);
            let margin = short as f64 * 0.03;
            assert!(((w - r.x - r.width) as f64 - margin).abs() <= 1.0);
            assert!(((h - r.y - r.height) as f64 - margin).abs() <= 1.0);
        }
    }
}

/// One render with watermark and sound on against the same render without the watermark:
/// the clean file and cover do not change, the copy shares format, frame count and audio,
/// carries the watermark identity, decodes, and differs where the label is.
#[test]
fn watermarked_copy_comes_from_the_same_frames() {
    let prompt = "a lighthouse on a cliff at sunset";
    let clean_spec = RenderSpec {
        duration_s: Some(3),
        sound: true,
        ..RenderSpec::text2video(prompt)
    };
    let marked_spec = RenderSpec {
        watermark: true,
        ..clean_spec.clone()
    };
    let clean = render(&clean_spec, 2);
    let marked = render(&marked_spec, 2);
    assert_eq!(clean.watermarked_mp4, None);
    assert_eq!(marked.mp4, clean.mp4, "the clean MP4 is byte-identical");
    assert_eq!(marked.cover_jpeg, clean.cover_jpeg);
    assert_eq!(marked.meta, clean.meta);
    let copy = marked.watermarked_mp4.as_ref().expect("a watermarked copy");
    assert_ne!(copy, &marked.mp4);

    let clean_title = title(&to_hex(&clean_spec.identity()));
    let copy_title = title(&to_hex(&clean_spec.watermark_identity()));
    assert_ne!(clean_title, copy_title);
    assert!(contains(&marked.mp4, clean_title.as_bytes()));
    assert!(!contains(&marked.mp4, copy_title.as_bytes()));
    assert!(contains(copy, copy_title.as_bytes()));
    assert!(!contains(copy, clean_title.as_bytes()));

    let (a, b) = (probe(&marked.mp4), probe(copy));
    assert_eq!((b.width, b.height), (1280, 720));
    assert_eq!((b.frame_count, b.duration_ms), (72, 3000));
    assert_eq!(
        (a.width, a.height, a.frame_count, a.duration_ms, a.fps),
        (b.width, b.height, b.frame_count, b.duration_ms, b.fps)
    );
    assert!(a.has_audio && b.has_audio);
    assert_eq!(a.audio_codec, b.audio_codec);

    let clean_frames = decode_all(&marked.mp4);
    let copy_frames = decode_all(copy);
    assert_eq!((clean_frames.len(), copy_frames.len()), (72, 72));
    let r = Watermark::new(1280, 720).unwrap().rect();
    // Outside the macroblocks the label touches, only rate-control noise may differ.
    let near = Rect {
        x: (r.x / 16).saturating_sub(1) * 16,
        y: (r.y / 16).saturating_sub(1) * 16,
        width: 1280,
        height: 720,
    };
    for i in [0, 35, 36, 71] {
        let (c, m) = (&clean_frames[i], &copy_frames[i]);
        let inside = mean_diff(c, m, |x, y| r.contains(x, y));
        let outside = mean_diff(c, m, |x, y| !near.contains(x, y));
        assert!(inside > 10.0, "frame {i}: label region differs by {inside}");
        assert!(outside < 1.5, "frame {i}: the rest differs by {outside}");
    }
}

// ---------------------------------------------------------------------------------------
// Caption.

/// Frames 0–47 show the caption fully, frames 48–59 fade it, and from frame 60 on the frame
/// is exactly the scene; the caption lies in the lower third and touches nothing else.
#[test]
fn caption_shows_until_frame_59_only_in_the_lower_third() {
    let (w, h) = (192, 108);
    let seed = scene_seed("kling-v1", "a red fox", "");
    let scene = Scene::new(seed, "a red fox", w, h);
    let caption = Caption::new("a red fox", seed, w, h).unwrap();
    let r = caption.rect();
    assert!(r.y >= h / 2 && r.y + r.height <= h, "{r:?}");
    assert!(
        r.y + r.height > 2 * h / 3,
        "{r:?} reaches into the lower third"
    );
    let lower_third = |_: usize, y: usize| y >= 2 * h / 3;
    let mut last = f64::MAX;
    for i in [0, 47, 48, 53, 59, 60, 61, 119] {
        let mut plain = scene.blank_frame();
        scene.draw(i, &mut plain);
        let mut captioned = plain.clone();
        caption.draw(i, &mut captioned);
        let lower = mean_diff(&plain, &captioned, lower_third);
        let inside = mean_diff(&plain, &captioned, |x, y| r.contains(x, y));
        let outside = mean_diff(&plain, &captioned, |x, y| !r.contains(x, y));
        assert_eq!(
            outside, 0.0,
            "frame {i}: nothing outside the caption box changes"
        );
        if i < 60 {
            assert!(lower > 0.0, "frame {i}: caption visible in the lower third");
            if i >= 48 {
                assert!(inside <= last, "frame {i}: fading");
            } else {
                assert!(
                    inside > 20.0,
                    "frame {i}: caption at full strength ({inside})"
                );
            }
            last = inside;
        } else {
            assert_eq!(plain, captioned, "frame {i}: caption gone");
        }
    }
}

/// In a real text2video render the caption is in frame 0 (and the cover) and gone after
/// frame 59; the cover is a baseline 4:2:0 JPEG at quality 85 without EXIF.
#[test]
fn text2video_shows_the_caption_and_covers_it() {
    let prompt = "a quiet harbour at dawn, fishing boats";
    let spec = RenderSpec {
        duration_s: Some(3),
        ..RenderSpec::text2video(prompt)
    };
    let out = render(&spec, 2);
    let seed = scene_seed(&spec.model_name, prompt, "");
    let caption = Caption::new(prompt, seed, 1280, 720).unwrap();
    let frames = decode_all(&out.mp4);
    assert_eq!(frames.len(), 72);
    for i in [0, 24, 47] {
        let c = caption_contrast(&caption, luma_of(&frames[i]));
        assert!(c > 100.0, "frame {i}: caption contrast {c}");
    }
    for i in [60, 66, 71] {
        let c = caption_contrast(&caption, luma_of(&frames[i]));
        assert!(c.abs() < 25.0, "frame {i}: caption gone, contrast {c}");
    }

    let cover = image::load_from_memory_with_format(&out.cover_jpeg, image::ImageFormat::Jpeg)
        .unwrap()
        .into_rgb8();
    assert_eq!(cover.dimensions(), (1280, 720));
    let cover_luma = |x: usize, y: usize| {
        let p = cover.get_pixel(x as u32, y as u32).0;
        0.2126 * f64::from(p[0]) + 0.7152 * f64::from(p[1]) + 0.0722 * f64::from(p[2])
    };
    let c = caption_contrast(&caption, cover_luma);
    assert!(c > 100.0, "cover caption contrast {c}");
    check_cover_jpeg(&out.cover_jpeg, 1280, 720);
}

/// Annex K tables in natural order.
const LUMA_Q: [u16; 64] = [
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113,
    92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
];
const CHROMA_Q: [u16; 64] = [
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
];
/// Natural index of each zigzag position.
const ZIGZAG: [usize; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

/// Walks the JPEG's marker segments up to the scan and checks §2.7.
fn check_cover_jpeg(jpeg: &[u8], width: u16, height: u16) {
    assert_eq!(&jpeg[..2], &[0xff, 0xd8]);
    // IJG quality scaling at 85: scale 30 %.
    let scaled = |t: &[u16; 64]| -> Vec<u8> {
        ZIGZAG
            .iter()
            .map(|&n| ((u32::from(t[n]) * 30 + 50) / 100).clamp(1, 255) as u8)
            .collect()
    };
    let mut tables = [None, None];
    let mut sof0 = None;
    let mut at = 2;
    loop {
        assert_eq!(jpeg[at], 0xff, "marker at {at}");
        let marker = jpeg[at + 1];
        let len = usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
        let body = &jpeg[at + 4..at + 2 + len];
        match marker {
            0xe1 => panic!("APP1 (EXIF/XMP) segment present"),
            0xe2..=0xef => panic!("unexpected APP{} segment", marker - 0xe0),
            0xfe => panic!("comment segment present"),
            0xc1..=0xc3 | 0xc5..=0xc7 | 0xc9..=0xcb | 0xcd..=0xcf => {
                panic!("SOF{} instead of baseline SOF0", marker - 0xc0)
            }
            0xdb => {
                let mut k = 0;
                while k < body.len() {
                    assert_eq!(body[k] >> 4, 0, "8-bit tables");
                    let id = usize::from(body[k] & 15);
                    tables[id] = Some(body[k + 1..k + 65].to_vec());
                    k += 65;
                }
            }
            0xc0 => sof0 = Some(body.to_vec()),
            0xda => break,
            _ => {}
        }
        at += 2 + len;
    }
    let sof = sof0.expect("a baseline SOF0 frame header");
    assert_eq!(sof[0], 8, "8-bit samples");
    assert_eq!(u16::from_be_bytes([sof[1], sof[2]]), height);
    assert_eq!(u16::from_be_bytes([sof[3], sof[4]]), width);
    assert_eq!(sof[5], 3, "three components");
    let comps: Vec<(u8, u8, u8)> = sof[6..15].chunks(3).map(|c| (c[0], c[1], c[2])).collect();
    // Luma 2×2, both chroma components 1×1: 4:2:0. Chroma uses the second table.
    assert_eq!(comps[0].1, 0x22);
    assert_eq!((comps[1].1, comps[1].2), (0x11, 1));
    assert_eq!((comps[2].1, comps[2].2), (0x11, 1));
    assert_eq!(comps[0].2, 0);
    assert_eq!(
        tables[0].as_deref(),
        Some(&scaled(&LUMA_Q)[..]),
        "luma table at q85"
    );
    assert_eq!(
        tables[1].as_deref(),
        Some(&scaled(&CHROMA_Q)[..]),
        "chroma table at q85"
    );
    assert!(!contains(jpeg, b"Exif"));
}

#[test]
fn covers_of_other_shapes_are_420_baseline_too() {
    let out = render(
        &RenderSpec {
            duration_s: Some(1),
            aspect: Aspect::Portrait9x16,
            ..RenderSpec::text2video("tall trees")
        },
        1,
    );
    check_cover_jpeg(&out.cover_jpeg, 720, 1280);
}

// ---------------------------------------------------------------------------------------
// References.

/// Red references turn the scene red; the same scene without them is not.
#[test]
fn the_palette_follows_the_references() {
    let reds = vec![
        Asset::new(png(40, 30, |x, y| {
            [180 + (x % 60) as u8, (y % 20) as u8, 10]
        })),
        Asset::new(jpeg(64, 64, |x, _| [120 + x as u8, 5, 20])),
    ];
    let pictures = decode_references(&reds, "image_list").unwrap();
    let colours = palette(&pictures).unwrap();
    let (w, h) = (192, 108);
    let seed = scene_seed("kling-v1", "a meadow", "");
    let plain = Scene::new(seed, "a meadow", w, h);
    let mut a = plain.blank_frame();
    plain.draw(0, &mut a);
    let tinted = Scene::new(seed, "a meadow", w, h).with_palette(&colours);
    let mut b = tinted.blank_frame();
    tinted.draw(0, &mut b);
    let (u, v) = mean_chroma(&b);
    assert!(v > 150.0 && u < 120.0, "reddish: mean Cb {u}, Cr {v}");
    let (u0, v0) = mean_chroma(&a);
    assert!(v - u > v0 - u0 + 20.0, "plain scene: Cb {u0}, Cr {v0}");

    // Blue references give a blue scene from the same seed.
    let blues = vec![Asset::new(png(30, 30, |_, y| [10, 40 + y as u8, 220]))];
    let blue = palette(&decode_references(&blues, "image_list").unwrap()).unwrap();
    let tinted = Scene::new(seed, "a meadow", w, h).with_palette(&blue);
    tinted.draw(0, &mut b);
    let (u, v) = mean_chroma(&b);
    assert!(u > 150.0 && v < 128.0, "bluish: mean Cb {u}, Cr {v}");
}

/// A card shows the reference's centre square exactly where its placement says, over the
/// scene; cards follow list order and move.
#[test]
fn cards_show_the_references() {
    let (w, h) = (192, 108);
    let refs = vec![Asset::new(red_blue()), Asset::new(red_blue())];
    let pictures = decode_references(&refs, "image_list").unwrap();
    let layer = ReferenceLayer::new(&pictures, 11, w, h);
    assert_eq!(layer.len(), 2);
    let scene = Scene::new(11, "x", w, h);
    let mut frame = scene.blank_frame();
    scene.draw(0, &mut frame);
    let before = frame.clone();
    layer.draw(0, &mut frame);
    // 28 % of the short side, even.
    let at = layer.placements(0);
    assert_eq!(at[0].side, 30);
    // Card 1 is drawn after card 0, so check each away from the other.
    let card = at[1];
    let pick = |fx: f64, fy: f64| {
        let x = (card.x + (fx * card.side as f64) as i64) as usize;
        let y = (card.y + (fy * card.side as f64) as i64) as usize;
        (
            frame.y.get(x, y),
            frame.u.get(x / 2, y / 2),
            frame.v.get(x / 2, y / 2),
        )
    };
    assert_eq!(pick(0.25, 0.5), RED, "left of the centre square is red");
    assert_eq!(pick(0.75, 0.5), BLUE, "right is blue");
    assert_eq!(pick(0.25, 0.2), RED);
    assert_ne!(before, frame);
    assert_ne!(layer.placements(0), layer.placements(60), "cards move");

    // More than four references: only the first four become cards.
    let many: Vec<Asset> = (0..6).map(|_| Asset::new(red_blue())).collect();
    let six = decode_references(&many, "image_list").unwrap();
    assert_eq!(ReferenceLayer::new(&six, 1, w, h).len(), 4);
}

/// A full multi-image2video render: probes and decodes like text2video, shows its first
/// card in frame 0, is reddish for red references, watermarks and is deterministic.
#[test]
fn multi_image2video_renders_its_references() {
    let mut spec = multi_image(vec![
        red_blue(),
        jpeg(200, 300, |x, y| [(x % 256) as u8, (y % 256) as u8, 90]),
    ]);
    spec.sound = true;
    spec.watermark = true;
    let out = render(&spec, 2);
    for mp4 in [&out.mp4, out.watermarked_mp4.as_ref().unwrap()] {
        let info = probe(mp4);
        assert_eq!((info.width, info.height), (1280, 720));
        assert_eq!((info.frame_count, info.duration_ms), (24, 1000));
        assert_eq!(info.video_codec, "avc1");
        assert!(info.has_audio);
    }
    assert_eq!(
        (out.meta.frame_count, out.meta.duration.as_str()),
        (24, "1")
    );
    let frames = decode_all(&out.mp4);
    assert_eq!(frames.len(), 24);

    let pictures = decode_references(&spec.references, "image_list").unwrap();
    let seed = scene_seed(&spec.model_name, &spec.prompt, "");
    let card = ReferenceLayer::new(&pictures, seed, 1280, 720).placements(0)[0];
    assert_eq!(card.side, 202);
    // The card's upper half (the caption may cover its lower part): red left, blue right.
    let region_mean = |fx0: f64, fx1: f64| {
        let f = &frames[0];
        let (mut s, mut n) = ([0.0; 3], 0.0);
        let side = card.side as f64;
        for y in (card.y + (0.1 * side) as i64)..(card.y + (0.45 * side) as i64) {
            for x in (card.x + (fx0 * side) as i64)..(card.x + (fx1 * side) as i64) {
                let (x, y) = (x as usize, y as usize);
                s[0] += f64::from(f.y.get(x, y));
                s[1] += f64::from(f.u.get(x / 2, y / 2));
                s[2] += f64::from(f.v.get(x / 2, y / 2));
                n += 1.0;
            }
        }
        s.map(|v| v / n)
    };
    let close = |got: [f64; 3], want: (u8, u8, u8)| {
        let want = [want.0, want.1, want.2].map(f64::from);
        got.iter().zip(want).all(|(g, w)| (g - w).abs() < 6.0)
    };
    let left = region_mean(0.1, 0.4);
    let right = region_mean(0.6, 0.9);
    assert!(close(left, RED), "card's left half {left:?}");
    assert!(close(right, BLUE), "card's right half {right:?}");

    // Determinism over pool sizes, watermarked copy and cover included.
    assert_eq!(render(&spec, 1), out);
}

#[test]
fn red_references_give_a_reddish_clip() {
    let spec = multi_image(vec![
        png(64, 48, |x, y| [170 + ((x + y) % 80) as u8, 10, 25]),
        jpeg(48, 64, |_, y| [140 + y as u8, 20, 10]),
    ]);
    let out = render(&spec, 2);
    let frames = decode_all(&out.mp4);
    for i in [0, 23] {
        let (u, v) = mean_chroma(&frames[i]);
        assert!(v > 145.0 && u < 125.0, "frame {i}: mean Cb {u}, Cr {v}");
    }
}

#[test]
fn multi_image2video_refuses_missing_or_broken_references() {
    let err = render_err(&multi_image(Vec::new()));
    assert!(err.is_client_error());
    assert!(err.to_string().contains("image_list"), "{err}");
    let err = render_err(&multi_image(vec![red_blue(), b"not an image".to_vec()]));
    assert!(err.is_client_error());
    assert!(err.to_string().contains("image_list[1]"), "{err}");
}

#[test]
fn multi_image2video_follows_aspect_and_mode() {
    let spec = RenderSpec {
        aspect: Aspect::Square1x1,
        mode: Mode::Std,
        ..multi_image(vec![red_blue()])
    };
    let out = render(&spec, 2);
    let info = probe(&out.mp4);
    assert_eq!((info.width, info.height, info.frame_count), (720, 720, 24));
    assert!(!info.has_audio);
    assert_eq!(out.watermarked_mp4, None);
    check_cover_jpeg(&out.cover_jpeg, 720, 720);
}
