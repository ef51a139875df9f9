//! Image2video measured on its frames (§3.15): the pre-encode frames at small sizes through
//! the test entry point, and real renders read back with the project's probe and OpenH264.

mod common;

use std::io::Cursor;

use common::{be32, child};
use kinora_media::video::probe_video;
use kinora_render::camera::{default_move, Axis, AxisValues, CameraControl};
use kinora_render::engine::{CancelFlag, EnginePool, RenderError, RenderOutput};
use kinora_render::frame::{I420Frame, Plane};
use kinora_render::kinds::image2video::image2video_frames;
use kinora_render::plan::{Mode, Size};
use kinora_render::seed::scene_seed;
use kinora_render::spec::DynamicMask;
use kinora_render::still::{decode_mask, decode_picture, output_size, prepare_mask, StillCanvas};
use kinora_render::warp::brush::feather;
use kinora_render::{Asset, RenderKind, RenderSpec};
use openh264::formats::YUVSource;

// ---------------------------------------------------------------------------------------------
// Fixtures

fn encode(img: image::DynamicImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// An RGB picture from a function of the pixel centre.
fn picture(w: u32, h: u32, f: impl Fn(f64, f64) -> [f64; 3]) -> image::DynamicImage {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let c = f(x as f64 + 0.5, y as f64 + 0.5);
        image::Rgb(c.map(|v| v.round().clamp(0.0, 255.0) as u8))
    });
    image::DynamicImage::ImageRgb8(img)
}

fn png(img: image::DynamicImage) -> Asset {
    Asset::new(encode(img, image::ImageFormat::Png))
}

fn gaussian(x: f64, y: f64, cx: f64, cy: f64, sigma: f64) -> f64 {
    (-((x - cx).powi(2) + (y - cy).powi(2)) / (2.0 * sigma * sigma)).exp()
}

/// The measuring image, 768×432: bright Gaussian dots on a dark ground, one at the centre and a
/// grid of four at ±25 % of each side around it. Shown at 384×216, so image px = 2 × frame px.
const IW: u32 = 768;
const IH: u32 = 432;
const OUT: Size = Size::new(384, 216);

fn dots() -> Vec<(f64, f64)> {
    let (w, h) = (OUT.width as f64, OUT.height as f64);
    vec![
        (0.5 * w, 0.5 * h),
        (0.25 * w, 0.25 * h),
        (0.75 * w, 0.25 * h),
        (0.25 * w, 0.75 * h),
        (0.75 * w, 0.75 * h),
    ]
}

fn dot_image() -> Asset {
    png(picture(IW, IH, |x, y| {
        let g: f64 = dots()
            .iter()
            .map(|&(cx, cy)| gaussian(x, y, 2.0 * cx, 2.0 * cy, 6.0))
            .sum();
        let v = 20.0 + 235.0 * g.min(1.0);
        [v, v, v]
    }))
}

fn i2v(image: Option<Asset>, seconds: u32) -> RenderSpec {
    RenderSpec {
        first_frame: image,
        duration_s: Some(seconds),
        ..RenderSpec::new(RenderKind::Image2Video, "a dotted test chart")
    }
}

fn simple(axis: Axis, value: f64) -> Option<CameraControl> {
    Some(CameraControl::Simple { axis, value })
}

fn frames(spec: &RenderSpec, size: Option<Size>) -> Vec<I420Frame> {
    image2video_frames(spec, size, 2).unwrap()
}

/// Luma-weighted centroid above `floor` in a window of radius `r` around (cx, cy).
fn centroid(p: &Plane, (cx, cy): (f64, f64), r: f64, floor: f64) -> (f64, f64) {
    let (mut sw, mut sx, mut sy) = (0.0, 0.0, 0.0);
    let (x0, x1) = ((cx - r).max(0.0) as usize, ((cx + r) as usize).min(p.width));
    let (y0, y1) = (
        (cy - r).max(0.0) as usize,
        ((cy + r) as usize).min(p.height),
    );
    for y in y0..y1 {
        for x in x0..x1 {
            let v = (p.get(x, y) as f64 - floor).max(0.0);
            sw += v;
            sx += v * (x as f64 + 0.5);
            sy += v * (y as f64 + 0.5);
        }
    }
    assert!(sw > 0.0, "nothing bright near ({cx}, {cy})");
    (sx / sw, sy / sw)
}

/// Re-finds each dot: starting at `guess`, two rounds of windowed centroids.
fn measure(p: &Plane, guesses: &[(f64, f64)]) -> Vec<(f64, f64)> {
    guesses
        .iter()
        .map(|&g| {
            let c = centroid(p, g, 16.0, 60.0);
            centroid(p, c, 12.0, 60.0)
        })
        .collect()
}

fn dist(a: (f64, f64), b: (f64, f64)) -> f64 {
    (a.0 - b.0).hypot(a.1 - b.1)
}

/// Mean spacing of the four grid dots from the centre dot.
fn spread(points: &[(f64, f64)]) -> f64 {
    points[1..].iter().map(|&p| dist(p, points[0])).sum::<f64>() / 4.0
}

fn prepared(asset: &Asset, size: Size) -> I420Frame {
    let pool = EnginePool::new(2).unwrap();
    let pic = decode_picture(asset.bytes(), "image").unwrap();
    StillCanvas::from_picture(&pic, size, &pool)
        .unwrap()
        .prepared_picture()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Camera

#[test]
fn frame_zero_is_the_prepared_picture_and_every_axis_moves_as_documented() {
    let image = dot_image();
    let rest = prepared(&image, OUT);
    let start = measure(&rest.y, &dots());
    for (p, d) in start.iter().zip(dots()) {
        assert!(dist(*p, d) < 0.1, "dot at {p:?}, drawn at {d:?}");
    }
    let (w, h) = (OUT.width as f64, OUT.height as f64);
    let centre = (w / 2.0, h / 2.0);
    let focal = 0.9 * w.max(h);
    for value in [10.0, -10.0] {
        let s = value / 10.0;
        for axis in Axis::ALL {
            let spec = RenderSpec {
                camera: simple(axis, value),
                ..i2v(Some(image.clone()), 1)
            };
            let all = frames(&spec, Some(OUT));
            assert_eq!(all.len(), 24);
            assert_eq!(all[0], rest, "{axis:?} {value}: frame 0");
            let guess: Vec<(f64, f64)> = match axis {
                Axis::Horizontal => dots().iter().map(|&(x, y)| (x - s * 0.25 * w, y)).collect(),
                Axis::Vertical => dots().iter().map(|&(x, y)| (x, y + s * 0.25 * h)).collect(),
                // Roughly: the turn shifts the middle of the view by f·tan(8°).
                Axis::Pan => dots()
                    .iter()
                    .map(|&(x, y)| (x - s * focal * 8f64.to_radians().tan(), y))
                    .collect(),
                Axis::Tilt => dots()
                    .iter()
                    .map(|&(x, y)| (x, y + s * focal * 8f64.to_radians().tan()))
                    .collect(),
                Axis::Roll | Axis::Zoom => {
                    let k = if axis == Axis::Zoom {
                        1.5f64.powf(-s)
                    } else {
                        1.0
                    };
                    let a = if axis == Axis::Roll {
                        s * 15f64.to_radians()
                    } else {
                        0.0
                    };
                    dots()
                        .iter()
                        .map(|&(x, y)| {
                            let (dx, dy) = ((x - centre.0) * k, (y - centre.1) * k);
                            // Counter-clockwise on screen (y down) for positive roll.
                            let (c, sn) = (a.cos(), a.sin());
                            (centre.0 + c * dx + sn * dy, centre.1 - sn * dx + c * dy)
                        })
                        .collect()
                }
            };
            let what = format!("{axis:?} {value}");
            if matches!(axis, Axis::Horizontal | Axis::Vertical) {
                // A full-scale shift pushes some dots off the frame: check the others.
                let kept: Vec<(f64, f64)> = guess
                    .iter()
                    .copied()
                    .filter(|&(x, y)| x > 12.0 && x < w - 12.0 && y > 12.0 && y < h - 12.0)
                    .collect();
                assert!(kept.len() >= 3, "{what}");
                for (e, g) in measure(&all[23].y, &kept).iter().zip(&kept) {
                    assert!(dist(*e, *g) < 0.3, "{what}: {e:?} vs {g:?}");
                }
                continue;
            }
            let end = measure(&all[23].y, &guess);
            match axis {
                Axis::Horizontal | Axis::Vertical => unreachable!(),
                Axis::Zoom => {
                    let ratio = spread(&end) / spread(&start);
                    let want = 1.5f64.powf(-s);
                    assert!((ratio / want - 1.0).abs() < 0.005, "{what}: scale {ratio}");
                    assert!(dist(end[0], centre) < 0.1, "{what}: centre moved");
                }
                Axis::Roll => {
                    let angle = |p: &[(f64, f64)]| {
                        // Right-hand dots minus left-hand dots, y up.
                        let dx = p[2].0 + p[4].0 - p[1].0 - p[3].0;
                        let dy = -(p[2].1 + p[4].1 - p[1].1 - p[3].1);
                        dy.atan2(dx).to_degrees()
                    };
                    let turned = angle(&end) - angle(&start);
                    assert!((turned - 15.0 * s).abs() < 0.1, "{what}: {turned}°");
                }
                Axis::Pan => {
                    let deg = ((centre.0 - end[0].0) / focal).atan().to_degrees();
                    assert!((deg - 8.0 * s).abs() < 0.1, "{what}: {deg}°");
                    assert!((end[0].1 - centre.1).abs() < 0.1, "{what}: vertical drift");
                }
                Axis::Tilt => {
                    let deg = ((end[0].1 - centre.1) / focal).atan().to_degrees();
                    assert!((deg - 8.0 * s).abs() < 0.1, "{what}: {deg}°");
                    assert!((end[0].0 - centre.0).abs() < 0.1, "{what}: sideways drift");
                }
            }
        }
    }
}

#[test]
fn presets_move_in_their_directions_and_phases() {
    let image = dot_image();
    let start = measure(&prepared(&image, OUT).y, &dots());
    let centre = start[0];
    let run = |c: CameraControl| {
        let spec = RenderSpec {
            camera: Some(c),
            ..i2v(Some(image.clone()), 1)
        };
        frames(&spec, Some(OUT))
    };
    // Frame 11 of 24 lies just before half time: a turn preset has (almost) finished turning
    // and not started pushing in.
    let track = |f: &I420Frame, last: &[(f64, f64)]| measure(&f.y, last);
    let follow = |all: &[I420Frame]| {
        let mut p = start.clone();
        let mut out = Vec::new();
        for f in all {
            p = track(f, &p);
            out.push(p.clone());
        }
        out
    };
    let grow = 1.5f64.powf(0.6);

    let down_back = follow(&run(CameraControl::DownBack));
    let end = &down_back[23];
    assert!(end[0].1 < centre.1 - 10.0, "down_back: content slides up");
    assert!((spread(end) / spread(&start) - 1.0 / grow).abs() < 0.01);

    let forward_up = follow(&run(CameraControl::ForwardUp));
    let end = &forward_up[23];
    assert!(end[0].1 > centre.1 + 5.0, "forward_up: content slides down");
    assert!((spread(end) / spread(&start) / grow - 1.0).abs() < 0.03);

    for (control, sign) in [
        (CameraControl::RightTurnForward, -1.0),
        (CameraControl::LeftTurnForward, 1.0),
    ] {
        let track = follow(&run(control));
        let mid = &track[11];
        assert!(
            sign * (mid[0].0 - centre.0) > 20.0,
            "{control:?}: turned by half time"
        );
        assert!(
            (spread(mid) / spread(&start) - 1.0).abs() < 0.02,
            "{control:?}: no push before half time"
        );
        let end = &track[23];
        assert!((end[0].0 - mid[0].0).abs() < 0.5 * (mid[0].0 - centre.0).abs());
        assert!(
            spread(end) / spread(mid) > 1.2,
            "{control:?}: pushes in during the second half"
        );
    }
}

#[test]
fn no_camera_control_runs_the_seeded_default_move() {
    let image = dot_image();
    let base = i2v(Some(image.clone()), 1);
    let seed = scene_seed(&base.model_name, &base.prompt, &base.negative_prompt);
    let chosen = RenderSpec {
        camera: Some(default_move(seed)),
        ..base.clone()
    };
    let all = frames(&base, Some(OUT));
    assert_eq!(all, frames(&chosen, Some(OUT)));
    assert_eq!(all[0], prepared(&image, OUT));
    assert_ne!(all[23], all[0], "an unspecified camera still moves");
}

// ---------------------------------------------------------------------------------------------
// First and last frames

fn warm_image(w: u32, h: u32) -> Asset {
    png(picture(w, h, |x, y| {
        [
            40.0 + 200.0 * x / w as f64,
            60.0 + 100.0 * (y * 0.05).sin().abs(),
            200.0 - 150.0 * y / h as f64,
        ]
    }))
}

fn cool_jpeg(w: u32, h: u32) -> Asset {
    let img = picture(w, h, |x, y| {
        let r = ((x - w as f64 / 2.0).powi(2) + (y - h as f64 / 2.0).powi(2)).sqrt();
        [30.0, 90.0 + 80.0 * (r * 0.08).cos(), 180.0]
    });
    Asset::new(encode(
        image::DynamicImage::ImageRgb8(img.to_rgb8()),
        image::ImageFormat::Jpeg,
    ))
}

fn psnr(a: &[u8], b: &[u8]) -> f64 {
    let mse = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    10.0 * (255.0 * 255.0 / mse.max(1e-12)).log10()
}

#[test]
fn first_and_last_frames_are_the_images() {
    let head = warm_image(480, 270);
    // A 4:3 tail is cover-fitted to the head's 16:9 shape.
    let tail = cool_jpeg(400, 300);
    let spec = RenderSpec {
        last_frame: Some(tail.clone()),
        ..i2v(Some(head.clone()), 2)
    };
    let small = Size::new(192, 108);
    let all = frames(&spec, Some(small));
    assert_eq!(all.len(), 48);
    assert_eq!(all[0], prepared(&head, small));
    assert_eq!(all[47], prepared(&tail, small));
    let changes = all.windows(2).filter(|w| w[0] != w[1]).count();
    assert_eq!(changes, 47, "the dissolve moves on every frame");

    // The real render: the decoded ends match within 35 dB.
    let out = render(&spec, 2);
    assert_eq!((out.meta.width, out.meta.height), (1280, 720));
    let full = frames(&spec, None);
    let decoded = decode_all(&out.mp4);
    assert_eq!(decoded.len(), 48);
    for (i, want) in [(0, &full[0]), (47, &full[47])] {
        for (got, want, plane) in [
            (&decoded[i].y, &want.y, "Y"),
            (&decoded[i].u, &want.u, "U"),
            (&decoded[i].v, &want.v, "V"),
        ] {
            let db = psnr(&got.data, &want.data);
            assert!(db >= 35.0, "frame {i} {plane}: {db:.1} dB");
        }
    }
    assert_eq!(full[0], prepared(&head, Size::new(1280, 720)));
}

#[test]
fn tail_alone_starts_on_the_scene_and_takes_the_tail_shape() {
    let tail = cool_jpeg(300, 400);
    let spec = RenderSpec {
        last_frame: Some(tail.clone()),
        ..i2v(None, 1)
    };
    let small = Size::new(108, 144);
    let all = frames(&spec, Some(small));
    assert_eq!(all[23], prepared(&tail, small));
    assert!(
        psnr(&all[0].y.data, &all[23].y.data) < 20.0,
        "starts elsewhere"
    );
    let pic = decode_picture(tail.bytes(), "image_tail").unwrap();
    assert_eq!(
        output_size(Mode::Std, pic.width, pic.height, "image_tail").unwrap(),
        Size::new(720, 960)
    );
}

#[test]
fn combinations_kling_forbids_are_client_errors() {
    let image = dot_image();
    let cases = [
        RenderSpec {
            last_frame: Some(image.clone()),
            camera: simple(Axis::Zoom, 3.0),
            ..i2v(Some(image.clone()), 1)
        },
        RenderSpec {
            static_mask: Some(image.clone()),
            camera: simple(Axis::Zoom, 3.0),
            ..i2v(Some(image.clone()), 1)
        },
        RenderSpec {
            static_mask: Some(image.clone()),
            ..i2v(None, 1)
        },
        i2v(None, 1),
        RenderSpec {
            first_frame: Some(Asset::new(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec())),
            ..i2v(None, 1)
        },
    ];
    for spec in cases {
        let err = image2video_frames(&spec, Some(OUT), 1).unwrap_err();
        assert!(err.is_client_error(), "{err}");
    }
}

// ---------------------------------------------------------------------------------------------
// Motion brush

const SQUARE: (u32, u32, u32, u32) = (60, 80, 100, 120); // image px: x0, y0, x1, y1
const STATIC: (u32, u32, u32, u32) = (260, 40, 340, 90);
const BW: u32 = 384;
const BH: u32 = 216;

#[test]
fn omni_references_over_a_first_frame_fade_in_as_cards() {
    let plain = RenderSpec {
        kind: RenderKind::Omni,
        ..i2v(Some(dot_image()), 5)
    };
    let card = png(picture(400, 400, |x, y| {
        let k = ((x / 50.0) as u32 + (y / 50.0) as u32) % 2;
        [230.0, 60.0 + 120.0 * f64::from(k), 40.0]
    }));
    let with_cards = RenderSpec {
        references: vec![card],
        ..plain.clone()
    };
    let a = image2video_frames(&plain, Some(OUT), 2).unwrap();
    let b = image2video_frames(&with_cards, Some(OUT), 2).unwrap();
    // Frame 0 is still the picture exactly; a second in, the card is fully there.
    assert_eq!(a[0], b[0]);
    let changed = |i: usize| {
        a[i].y
            .data
            .iter()
            .zip(&b[i].y.data)
            .filter(|(p, q)| p.abs_diff(**q) > 8)
            .count()
    };
    let card_area = (0.28 * 216.0f64).powi(2) as usize;
    assert!(
        changed(6) > 0 && changed(6) < changed(30),
        "{} {}",
        changed(6),
        changed(30)
    );
    assert!(
        changed(30) > card_area / 2,
        "{} of {card_area}",
        changed(30)
    );
}

fn inside(r: (u32, u32, u32, u32), x: f64, y: f64) -> bool {
    x >= r.0 as f64 && x < r.2 as f64 && y >= r.1 as f64 && y < r.3 as f64
}

fn brush_image() -> Asset {
    png(picture(BW, BH, |x, y| {
        if inside(SQUARE, x, y) {
            [255.0; 3]
        } else if inside(STATIC, x, y) {
            let v = 90.0 + ((x * 7.0 + y * 13.0) % 60.0);
            [v, v * 0.8, v * 0.6]
        } else {
            let v = 60.0 + 40.0 * (x * 0.11).sin() * (y * 0.07).cos();
            [v * 0.8, v, v * 1.1]
        }
    }))
}

/// A luma mask (opaque, white where painted).
fn luma_mask(w: u32, h: u32, r: (u32, u32, u32, u32)) -> Asset {
    let s = w as f64 / BW as f64;
    png(picture(w, h, |x, y| {
        let v = if inside(r, x / s, y / s) { 255.0 } else { 0.0 };
        [v; 3]
    }))
}

/// An alpha mask: black everywhere, opaque where painted.
fn alpha_mask(w: u32, h: u32, r: (u32, u32, u32, u32)) -> Asset {
    let img = image::RgbaImage::from_fn(w, h, |x, y| {
        let a = if inside(r, x as f64 + 0.5, y as f64 + 0.5) {
            255
        } else {
            0
        };
        image::Rgba([0, 0, 0, a])
    });
    png(image::DynamicImage::ImageRgba8(img))
}

fn brush_spec() -> RenderSpec {
    RenderSpec {
        static_mask: Some(alpha_mask(BW, BH, STATIC)),
        dynamic_masks: vec![DynamicMask {
            mask: luma_mask(BW, BH, SQUARE),
            // The square's centre (80, 100) is (80, 116) from the bottom-left; right by 120,
            // then up by 60.
            trajectory: vec![(80.0, 116.0), (200.0, 116.0), (200.0, 176.0)],
        }],
        ..i2v(Some(brush_image()), 2)
    }
}

#[test]
fn motion_brush_freezes_the_static_region_and_moves_the_dynamic_one() {
    let spec = brush_spec();
    let small = Size::new(192, 108);
    let all = frames(&spec, Some(small));
    assert_eq!(all.len(), 48);
    assert_eq!(all[0], prepared(spec.first_frame.as_ref().unwrap(), small));

    // Frame path: (40, 50) → (100, 50) → (100, 20), Λ = 90 px, at constant speed.
    let expected = |i: usize| {
        let s = 90.0 * i as f64 / 47.0;
        if s <= 60.0 {
            (40.0 + s, 50.0)
        } else {
            (100.0, 50.0 - (s - 60.0))
        }
    };
    let mut worst = 0.0f64;
    for (i, f) in all.iter().enumerate() {
        let (cx, cy) = centroid(&f.y, (96.0, 54.0), 200.0, 170.0);
        let (ex, ey) = expected(i);
        let err = (cx - ex).abs().max((cy - ey).abs());
        worst = worst.max(err);
        assert!(
            err < 0.5,
            "frame {i}: ({cx:.2}, {cy:.2}) vs ({ex:.2}, {ey:.2})"
        );
    }
    println!("motion brush: worst centroid error {worst:.3} px");

    let mask = decode_mask(spec.static_mask.as_ref().unwrap().bytes(), "static_mask").unwrap();
    let alpha = feather(&prepare_mask(&mask, (BW, BH), small, "static_mask").unwrap());
    let mut full = 0;
    for y in 0..small.height as usize {
        for x in 0..small.width as usize {
            if alpha.get(x, y) == 255 {
                full += 1;
                let v = all[0].y.get(x, y);
                assert!(all.iter().all(|f| f.y.get(x, y) == v), "({x}, {y})");
            }
        }
    }
    assert!(full > 500, "{full} fully static pixels");
    // The background shimmers: away from every mask, rows move from frame to frame.
    let rows = |f: &I420Frame| {
        (75..108)
            .flat_map(|y| f.y.row(y).to_vec())
            .collect::<Vec<u8>>()
    };
    assert_ne!(rows(&all[0]), rows(&all[30]));
    // Thread count never shows.
    assert_eq!(all, image2video_frames(&spec, Some(small), 1).unwrap());
}

#[test]
fn masks_must_match_the_image_shape_and_each_other() {
    let mut spec = brush_spec();
    spec.static_mask = Some(alpha_mask(300, 216, STATIC));
    let err = image2video_frames(&spec, Some(OUT), 1).unwrap_err();
    assert!(
        matches!(&err, RenderError::Client(m) if m.starts_with("static_mask")),
        "{err}"
    );
    let mut spec = brush_spec();
    spec.dynamic_masks[0].mask = luma_mask(BW / 2, BH / 2, SQUARE);
    let err = image2video_frames(&spec, Some(OUT), 1).unwrap_err();
    assert!(
        matches!(&err, RenderError::Client(m) if m.contains("same resolution")),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Shapes and orientation

/// Inserts an EXIF APP1 segment carrying only the orientation tag after the SOI marker.
fn with_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = b"II*\0".to_vec();
    tiff.extend(8u32.to_le_bytes());
    tiff.extend(1u16.to_le_bytes());
    tiff.extend(0x0112u16.to_le_bytes());
    tiff.extend(3u16.to_le_bytes());
    tiff.extend(1u32.to_le_bytes());
    tiff.extend(orientation.to_le_bytes());
    tiff.extend([0, 0]);
    tiff.extend(0u32.to_le_bytes());
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend(tiff);
    let mut out = jpeg[..2].to_vec();
    out.extend([0xff, 0xe1]);
    out.extend(((app1.len() + 2) as u16).to_be_bytes());
    out.extend(app1);
    out.extend(&jpeg[2..]);
    out
}

#[test]
fn exif_orientation_is_honoured() {
    // Stored landscape with a red top-left corner; orientation 6 shows it turned 90° clockwise,
    // so the display is portrait with the red corner at the top right.
    let stored = picture(320, 180, |x, y| {
        if x < 60.0 && y < 60.0 {
            [230.0, 20.0, 20.0]
        } else {
            [40.0, 90.0, 160.0]
        }
    });
    let jpeg = with_orientation(&encode(stored, image::ImageFormat::Jpeg), 6);
    let pic = decode_picture(&jpeg, "image").unwrap();
    assert_eq!((pic.width, pic.height), (180, 320));
    assert_eq!(
        output_size(Mode::Std, pic.width, pic.height, "image").unwrap(),
        Size::new(720, 1280)
    );
    let spec = i2v(Some(Asset::new(jpeg)), 1);
    let f = &frames(&spec, Some(Size::new(90, 160)))[0];
    let red = |x: usize, y: usize| f.v.get(x / 2, y / 2);
    assert!(red(80, 8) > 180, "top right is red: V = {}", red(80, 8));
    assert!(red(8, 8) < 128, "top left is not: V = {}", red(8, 8));
}

#[test]
fn output_sizes_contain_fit_the_image() {
    let cases = [
        ((4032, 3024), (960, 720)),
        ((1000, 1000), (720, 720)),
        ((1080, 1920), (720, 1280)),
        ((2500, 1000), (1280, 512)),
        ((3000, 4000), (720, 960)),
    ];
    for ((w, h), (ow, oh)) in cases {
        assert_eq!(
            output_size(Mode::Std, w, h, "image").unwrap(),
            Size::new(ow, oh),
            "{w}x{h}"
        );
    }
    assert!(output_size(Mode::Std, 10_000, 1, "image")
        .unwrap_err()
        .is_client_error());
}

// ---------------------------------------------------------------------------------------------
// Real renders

fn render(spec: &RenderSpec, threads: usize) -> RenderOutput {
    let pool = EnginePool::new(threads).unwrap();
    kinora_render::render(spec, &pool, &CancelFlag::new()).unwrap()
}

/// Every video sample as Annex B, parameter sets in front of the first.
fn annex_b_samples(mp4: &[u8]) -> Vec<Vec<u8>> {
    let trak = child(child(mp4, b"moov"), b"trak");
    let stbl = child(child(child(trak, b"mdia"), b"minf"), b"stbl");
    let avc1 = child(&child(stbl, b"stsd")[8..], b"avc1");
    let avcc = child(&avc1[78..], b"avcC");
    let sps_len = usize::from(u16::from_be_bytes([avcc[6], avcc[7]]));
    let sps = &avcc[8..8 + sps_len];
    let at = 8 + sps_len;
    let pps_len = usize::from(u16::from_be_bytes([avcc[at + 1], avcc[at + 2]]));
    let pps = &avcc[at + 3..at + 3 + pps_len];
    let stsz = child(stbl, b"stsz");
    let count = be32(&stsz[8..]) as usize;
    let stco = child(stbl, b"stco");
    let mut at = be32(&stco[8..]) as usize;
    let mut out = Vec::new();
    for i in 0..count {
        let end = at + be32(&stsz[12 + 4 * i..]) as usize;
        let mut sample = Vec::new();
        if i == 0 {
            for ps in [sps, pps] {
                sample.extend([0, 0, 0, 1]);
                sample.extend(ps);
            }
        }
        while at < end {
            let len = be32(&mp4[at..]) as usize;
            sample.extend([0, 0, 0, 1]);
            sample.extend(&mp4[at + 4..at + 4 + len]);
            at += 4 + len;
        }
        out.push(sample);
    }
    out
}

fn decode_all(mp4: &[u8]) -> Vec<I420Frame> {
    let mut decoder = openh264::decoder::Decoder::new().unwrap();
    let mut frames = Vec::new();
    let mut take = |yuv: &dyn YUVSource| {
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
        frames.push(I420Frame {
            y: plane(yuv.y(), sy, w, h),
            u: plane(yuv.u(), su, w / 2, h / 2),
            v: plane(yuv.v(), sv, w / 2, h / 2),
        });
    };
    for sample in annex_b_samples(mp4) {
        if let Some(yuv) = decoder.decode(&sample).unwrap() {
            take(&yuv);
        }
    }
    for yuv in decoder.flush_remaining().unwrap() {
        take(&yuv);
    }
    frames
}

fn probe(mp4: &[u8]) -> kinora_media::video::VideoInfo {
    futures::executor::block_on(probe_video("video", &bytes::Bytes::copy_from_slice(mp4))).unwrap()
}

#[test]
fn full_renders_follow_the_image_shape_in_every_mode() {
    let image = cool_jpeg(400, 300);
    for (mode, seconds, (w, h)) in [
        (Mode::Std, None, (960, 720)),
        (Mode::Pro, Some(2), (1440, 1080)),
    ] {
        let spec = RenderSpec {
            mode,
            duration_s: seconds,
            camera: simple(Axis::Zoom, -5.0),
            ..i2v(Some(image.clone()), 0)
        };
        let out = render(&spec, 2);
        let n = 24 * seconds.unwrap_or(5);
        let info = probe(&out.mp4);
        assert_eq!(info.video_codec, "avc1");
        assert_eq!(info.fps, 24.0);
        assert_eq!(info.frame_count, u64::from(n));
        assert_eq!(info.duration_ms, u64::from(n) * 1000 / 24);
        assert_eq!((info.width, info.height), (w, h), "{mode}");
        assert!(!info.has_audio);
        assert_eq!(
            (out.meta.width, out.meta.height, out.meta.frame_count),
            (w, h, n)
        );
        let cover =
            image::load_from_memory_with_format(&out.cover_jpeg, image::ImageFormat::Jpeg).unwrap();
        assert_eq!((cover.width(), cover.height()), (w, h));
    }
}

#[test]
fn renders_are_deterministic_for_any_pool_size() {
    let spec = RenderSpec {
        sound: true,
        camera: Some(CameraControl::Combined(AxisValues {
            zoom: -4.0,
            roll: 3.0,
            pan: 5.0,
            tilt: -2.0,
            ..AxisValues::default()
        })),
        ..i2v(Some(warm_image(640, 360)), 2)
    };
    let a = render(&spec, 2);
    let b = render(&spec, 2);
    let c = render(&spec, 1);
    assert_eq!(a, b);
    assert_eq!(a, c);
    assert!(a.meta.has_audio);
    assert!(probe(&a.mp4).has_audio);
    let other = render(
        &RenderSpec {
            camera: simple(Axis::Roll, 3.0),
            ..spec.clone()
        },
        2,
    );
    assert_ne!(other.mp4, a.mp4);
    assert_eq!(
        other.cover_jpeg, a.cover_jpeg,
        "frame 0 is the picture either way"
    );
}
