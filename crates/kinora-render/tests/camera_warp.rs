//! Camera moves and warp kernels measured on real pixel data.

use kinora_render::camera::{
    axis_values_at, camera_transform, dissolve_at, ease, progress, Axis, CameraControl,
    CanvasLayout, FOCAL_FACTOR,
};
use kinora_render::frame::{I420Frame, Plane};
use kinora_render::warp::{
    blend_frames, warp_frame, warp_plane, Edge, PlaneEdge, Transform, WarpError, BLEND_ONE,
};

const W: usize = 320;
const H: usize = 180;
const N: usize = 48;
const BG: (u8, u8, u8) = (16, 128, 128);

/// Small deterministic generator so the tests need no dependency.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn random_plane(w: usize, h: usize, seed: u64) -> Plane {
    let mut rng = SplitMix(seed);
    let mut p = Plane::new(w, h, 0);
    p.data.iter_mut().for_each(|v| *v = rng.next() as u8);
    p
}

/// A canvas for `layout` whose content is given as a function of *view* coordinates, sampled at
/// every canvas sample centre (luma) and chroma sample centre.
fn canvas_from_view(layout: &CanvasLayout, f: impl Fn(f64, f64) -> (f64, f64, f64)) -> I420Frame {
    let (cw, ch) = (layout.canvas_width, layout.canvas_height);
    let mut frame = I420Frame::filled(cw, ch, BG);
    let k = 1.5;
    let m = layout.margin as f64;
    let to_view = |x: f64, y: f64| (x / k - m, y / k - m);
    for y in 0..ch {
        for x in 0..cw {
            let (vx, vy) = to_view(x as f64 + 0.5, y as f64 + 0.5);
            frame.y.data[y * cw + x] = f(vx, vy).0.round().clamp(0.0, 255.0) as u8;
        }
    }
    for y in 0..ch / 2 {
        for x in 0..cw / 2 {
            let (vx, vy) = to_view(2.0 * x as f64 + 1.0, 2.0 * y as f64 + 1.0);
            let (_, u, v) = f(vx, vy);
            frame.u.data[y * (cw / 2) + x] = u.round().clamp(0.0, 255.0) as u8;
            frame.v.data[y * (cw / 2) + x] = v.round().clamp(0.0, 255.0) as u8;
        }
    }
    frame
}

fn gaussian(x: f64, y: f64, cx: f64, cy: f64, sigma: f64) -> f64 {
    let d2 = (x - cx).powi(2) + (y - cy).powi(2);
    (-d2 / (2.0 * sigma * sigma)).exp()
}

/// Coloured Gaussian blobs on a dark background, positions in view coordinates.
fn blobs(points: &[(f64, f64)]) -> impl Fn(f64, f64) -> (f64, f64, f64) + '_ {
    move |x, y| {
        let g: f64 = points
            .iter()
            .map(|&(px, py)| gaussian(x, y, px, py, 4.0))
            .sum();
        (16.0 + 219.0 * g, 128.0 + 100.0 * g, 128.0 - 80.0 * g)
    }
}

/// Weighted centroid of `plane - bg` over the window [x0, x1) × [0, h).
fn centroid(p: &Plane, bg: u8, x0: usize, x1: usize) -> (f64, f64) {
    let (mut sw, mut sx, mut sy) = (0.0, 0.0, 0.0);
    for y in 0..p.height {
        for x in x0..x1 {
            let v = (p.get(x, y) as f64 - bg as f64).abs();
            sw += v;
            sx += v * (x as f64 + 0.5);
            sy += v * (y as f64 + 0.5);
        }
    }
    assert!(sw > 0.0, "no marker in window");
    (sx / sw, sy / sw)
}

fn render(
    layout: &CanvasLayout,
    canvas: &I420Frame,
    control: &CameraControl,
    i: usize,
) -> I420Frame {
    let mut out = I420Frame::filled(W, H, (0, 0, 0));
    let t = layout.camera(control, i, N);
    warp_frame(canvas, &t, Edge::Clamp, &mut out).expect("warp");
    out
}

fn simple(axis: Axis, value: f64) -> CameraControl {
    CameraControl::Simple { axis, value }
}

const CX: f64 = W as f64 / 2.0;
const CY: f64 = H as f64 / 2.0;

#[test]
fn translation_axes_move_content_in_documented_direction() {
    let layout = CanvasLayout::new(W, H);
    let points = [(CX, CY)];
    let canvas = canvas_from_view(&layout, blobs(&points));
    let start = centroid(
        &render(&layout, &canvas, &simple(Axis::Horizontal, 10.0), 0).y,
        16,
        0,
        W,
    );
    assert!(
        (start.0 - CX).abs() < 0.05 && (start.1 - CY).abs() < 0.05,
        "{start:?}"
    );
    for (axis, value, expect) in [
        // + horizontal: camera right, content left by 25 % of W.
        (Axis::Horizontal, 10.0, (-80.0, 0.0)),
        (Axis::Horizontal, -10.0, (80.0, 0.0)),
        // + vertical: camera up, content down by 25 % of H.
        (Axis::Vertical, 10.0, (0.0, 45.0)),
        (Axis::Vertical, -10.0, (0.0, -45.0)),
        (Axis::Horizontal, 4.0, (-32.0, 0.0)),
    ] {
        let c = simple(axis, value);
        let mut last = 0.0f64;
        for i in 0..N {
            let (x, y) = centroid(&render(&layout, &canvas, &c, i).y, 16, 0, W);
            let moved = (x - start.0, y - start.1);
            let along = moved.0.abs() + moved.1.abs();
            // Eased: the displacement never shrinks, and it matches the easing curve.
            assert!(
                along + 1e-6 >= last,
                "{axis:?} {value} frame {i} not monotonic"
            );
            last = along;
            let e = ease(progress(i, N));
            assert!(
                (moved.0 - expect.0 * e).abs() < 0.1,
                "{axis:?} {value} frame {i}: {moved:?}"
            );
            assert!(
                (moved.1 - expect.1 * e).abs() < 0.1,
                "{axis:?} {value} frame {i}: {moved:?}"
            );
        }
    }
}

#[test]
fn zoom_scales_content_geometrically() {
    let layout = CanvasLayout::new(W, H);
    let points = [(CX - 50.0, CY), (CX + 50.0, CY)];
    let canvas = canvas_from_view(&layout, blobs(&points));
    let spacing = |f: &I420Frame| {
        let a = centroid(&f.y, 16, 0, W / 2);
        let b = centroid(&f.y, 16, W / 2, W);
        b.0 - a.0
    };
    let base = spacing(&render(&layout, &canvas, &simple(Axis::Zoom, 10.0), 0));
    assert!((base - 100.0).abs() < 0.05);
    for (value, end_ratio) in [(10.0, 1.0 / 1.5), (-10.0, 1.5), (5.0, 1.0 / 1.5f64.sqrt())] {
        let c = simple(Axis::Zoom, value);
        let mut previous = base;
        for i in 1..N {
            let s = spacing(&render(&layout, &canvas, &c, i));
            let expected = 1.5f64.powf(-(value / 10.0) * ease(progress(i, N))) * base;
            assert!(
                (s - expected).abs() < 0.1,
                "zoom {value} frame {i}: {s} vs {expected}"
            );
            // + widens the view (content shrinks), − pushes in (content grows), monotonically.
            assert!(if value > 0.0 {
                s <= previous + 1e-6
            } else {
                s >= previous - 1e-6
            });
            previous = s;
        }
        assert!(
            (previous / base - end_ratio).abs() < 1e-3,
            "zoom {value}: {}",
            previous / base
        );
    }
}

#[test]
fn roll_turns_content_counter_clockwise_for_positive_values() {
    let layout = CanvasLayout::new(W, H);
    let points = [(CX + 60.0, CY)];
    let canvas = canvas_from_view(&layout, blobs(&points));
    for value in [10.0, -10.0, 6.0] {
        let c = simple(Axis::Roll, value);
        let mut last = 0.0f64;
        for i in 0..N {
            let (x, y) = centroid(&render(&layout, &canvas, &c, i).y, 16, 0, W);
            // Screen angle with y pointing up, so counter-clockwise is positive.
            let angle = (-(y - CY)).atan2(x - CX).to_degrees();
            let expected = 15.0 * value / 10.0 * ease(progress(i, N));
            assert!(
                (angle - expected).abs() < 0.1,
                "roll {value} frame {i}: {angle} vs {expected}"
            );
            assert!(angle.abs() + 1e-9 >= last);
            last = angle.abs();
        }
    }
}

#[test]
fn pan_and_tilt_turn_by_their_angles() {
    let layout = CanvasLayout::new(W, H);
    let canvas = canvas_from_view(&layout, blobs(&[(CX, CY)]));
    let focal = FOCAL_FACTOR * W.max(H) as f64;
    for (axis, value) in [
        (Axis::Pan, 10.0),
        (Axis::Pan, -10.0),
        (Axis::Tilt, 10.0),
        (Axis::Tilt, -5.0),
    ] {
        let c = simple(axis, value);
        for i in [0, N / 3, N / 2, N - 1] {
            let (x, y) = centroid(&render(&layout, &canvas, &c, i).y, 16, 0, W);
            let expected = 8.0 * value / 10.0 * ease(progress(i, N));
            // + pan turns right, so the centre of the picture slides left; + tilt turns up, so
            // it slides down.
            let angle = match axis {
                Axis::Pan => ((CX - x) / focal).atan().to_degrees(),
                _ => ((y - CY) / focal).atan().to_degrees(),
            };
            assert!(
                (angle - expected).abs() < 0.1,
                "{axis:?} {value} frame {i}: {angle} vs {expected}"
            );
        }
    }
}

#[test]
fn presets_do_their_documented_combinations() {
    let layout = CanvasLayout::new(W, H);
    let points = [(CX - 50.0, CY), (CX, CY), (CX + 50.0, CY)];
    let canvas = canvas_from_view(&layout, blobs(&points));
    let measure = |c: &CameraControl, i: usize| {
        let f = render(&layout, &canvas, c, i);
        // Find the three blobs as the peaks of the column profile, then measure each one in a
        // window around its peak.
        let profile: Vec<f64> = (0..W)
            .map(|x| (0..H).map(|y| f.y.get(x, y) as f64 - 16.0).sum())
            .collect();
        let peaks: Vec<usize> = (1..W - 1)
            .filter(|&x| {
                profile[x] > 50.0 && profile[x] >= profile[x - 1] && profile[x] > profile[x + 1]
            })
            .collect();
        assert_eq!(peaks.len(), 3, "{c:?} frame {i}: peaks {peaks:?}");
        let at = |p: usize| centroid(&f.y, 16, p.saturating_sub(20), (p + 20).min(W));
        let (left, centre, right) = (at(peaks[0]), at(peaks[1]), at(peaks[2]));
        (centre, (right.0 - left.0) / 100.0)
    };
    let values = |c: &CameraControl| axis_values_at(c, N - 1, N);

    // down_back: vertical −5 (content slides up) and a pull back (content shrinks).
    let c = CameraControl::DownBack;
    let v = values(&c);
    assert_eq!((v.vertical, v.zoom), (-5.0, 6.0));
    let (centre, scale) = measure(&c, N - 1);
    assert!(centre.1 < CY - 10.0, "{centre:?}");
    assert!((scale - 1.5f64.powf(-0.6)).abs() < 0.01, "{scale}");

    // forward_up: push in (content grows) and tilt up (content slides down).
    let c = CameraControl::ForwardUp;
    let (centre, scale) = measure(&c, N - 1);
    assert!(centre.1 > CY + 10.0, "{centre:?}");
    assert!(scale > 1.2, "{scale}");

    // Turn presets: first half is a pure pan, second half a pure push in.
    for (c, side) in [
        (CameraControl::RightTurnForward, -1.0),
        (CameraControl::LeftTurnForward, 1.0),
    ] {
        let mid = (N - 1) / 2;
        let (c_mid, s_mid) = measure(&c, mid);
        assert!((c_mid.0 - CX) * side > 15.0, "{c:?} mid {c_mid:?}");
        assert!((s_mid - 1.0).abs() < 0.03, "{c:?} mid scale {s_mid}");
        let (c_end, s_end) = measure(&c, N - 1);
        assert!(
            (s_end - 1.5f64.powf(0.6)).abs() < 0.03,
            "{c:?} end scale {s_end}"
        );
        // The push in happens about the frame centre, so the turned content moves further out.
        assert!((c_end.0 - CX) * side > (c_mid.0 - CX) * side, "{c:?}");
        let quarter = measure(&c, N / 4).1;
        assert!(
            (quarter - 1.0).abs() < 0.03,
            "{c:?} zoom started early: {quarter}"
        );
    }
}

#[test]
fn identity_and_integer_translation_are_exact_copies() {
    let src = random_plane(W, H, 1);
    let mut out = Plane::new(W, H, 0);
    warp_plane(&src, &Transform::IDENTITY, PlaneEdge::Fill(7), &mut out).expect("warp");
    assert_eq!(out, src);

    let (tx, ty) = (7i64, -5i64);
    warp_plane(
        &src,
        &Transform::translation(tx as f64, ty as f64),
        PlaneEdge::Fill(3),
        &mut out,
    )
    .expect("warp");
    for y in 0..H {
        for x in 0..W {
            let (sx, sy) = (x as i64 + tx, y as i64 + ty);
            let inside = (0..W as i64).contains(&sx) && (0..H as i64).contains(&sy);
            let expected = if inside {
                src.get(sx as usize, sy as usize)
            } else {
                3
            };
            assert_eq!(out.get(x, y), expected, "({x}, {y})");
        }
    }

    // The copy must be what the bilinear kernel gives at whole-pixel positions: scaling the
    // matrix by 2 keeps the mapping but takes the general affine path.
    for edge in [PlaneEdge::Fill(3), PlaneEdge::Clamp] {
        for (tx, ty) in [(7.0, -5.0), (-400.0, 3.0), (0.0, 0.0), (-3.0, 178.0)] {
            let t = Transform::translation(tx, ty);
            let mut doubled = t;
            doubled.m.iter_mut().flatten().for_each(|v| *v *= 2.0);
            let mut fast = Plane::new(W, H, 0);
            let mut general = Plane::new(W, H, 1);
            warp_plane(&src, &t, edge, &mut fast).expect("warp");
            warp_plane(&src, &doubled, edge, &mut general).expect("warp");
            assert_eq!(fast, general, "{edge:?} ({tx}, {ty})");
        }
    }
}

/// Bilinear sampling at an exact f64 position with the kernels' edge rule.
fn sample_exact(p: &Plane, u: f64, v: f64, edge: PlaneEdge) -> f64 {
    let (w, h) = (p.width as f64, p.height as f64);
    if let PlaneEdge::Fill(value) = edge {
        if u < 0.0 || v < 0.0 || u >= w || v >= h {
            return value as f64;
        }
    }
    let (s, t) = (u - 0.5, v - 0.5);
    let (x0, y0) = (s.floor(), t.floor());
    let (fx, fy) = (s - x0, t - y0);
    let px = |x: f64, y: f64| {
        let x = x.clamp(0.0, w - 1.0) as usize;
        let y = y.clamp(0.0, h - 1.0) as usize;
        p.get(x, y) as f64
    };
    let top = px(x0, y0) * (1.0 - fx) + px(x0 + 1.0, y0) * fx;
    let bottom = px(x0, y0 + 1.0) * (1.0 - fx) + px(x0 + 1.0, y0 + 1.0) * fx;
    top * (1.0 - fy) + bottom * fy
}

fn reference_warp(src: &Plane, t: &Transform, edge: PlaneEdge, w: usize, h: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(w * h);
    for y in 0..h {
        for x in 0..w {
            let (u, v) = t
                .apply(x as f64 + 0.5, y as f64 + 0.5)
                .unwrap_or((-1e9, -1e9));
            out.push(sample_exact(src, u, v, edge).round());
        }
    }
    out
}

fn psnr(a: &Plane, reference: &[f64]) -> f64 {
    let mut se = 0.0;
    let mut n = 0.0;
    for y in 0..a.height {
        for (x, &v) in a.row(y).iter().enumerate() {
            se += (v as f64 - reference[y * a.width + x]).powi(2);
            n += 1.0;
        }
    }
    if se == 0.0 {
        return f64::INFINITY;
    }
    10.0 * (255.0f64 * 255.0 / (se / n)).log10()
}

#[test]
fn affine_zoom_of_checkerboard_matches_exact_reference() {
    let (sw, sh) = (480, 270);
    let mut src = Plane::new(sw, sh, 0);
    for y in 0..sh {
        for x in 0..sw {
            src.data[y * sw + x] = if (x / 8 + y / 8) & 1 == 0 { 235 } else { 16 };
        }
    }
    let cases = [
        Transform::scale_about(1.0 / 1.37, 240.0, 135.0) * Transform::translation(80.0, 45.0),
        Transform::scale_about(1.43, 240.0, 135.0) * Transform::translation(80.0, 45.0),
        // Zoom plus roll: positions move along both axes within a row.
        camera_transform(
            &CameraControl::Combined(kinora_render::camera::AxisValues {
                zoom: -7.0,
                roll: 9.0,
                horizontal: 3.0,
                ..Default::default()
            }),
            30,
            N,
            W,
            H,
        ) * Transform::translation(0.0, 0.0),
    ];
    for t in cases {
        assert!(t.is_affine());
        for edge in [PlaneEdge::Fill(128), PlaneEdge::Clamp] {
            let mut out = Plane::new(W, H, 0);
            warp_plane(&src, &t, edge, &mut out).expect("warp");
            let p = psnr(&out, &reference_warp(&src, &t, edge, W, H));
            println!("affine {edge:?}: {p:.1} dB");
            assert!(p >= 40.0, "affine PSNR {p:.1} dB");
        }
    }
}

/// Smooth photo-like texture plus some fine detail.
fn texture(w: usize, h: usize) -> I420Frame {
    let mut f = I420Frame::filled(w, h, BG);
    let mut rng = SplitMix(99);
    let noise: Vec<f64> = (0..64)
        .map(|_| (rng.next() % 1000) as f64 / 1000.0)
        .collect();
    for y in 0..h {
        for x in 0..w {
            let (xf, yf) = (x as f64, y as f64);
            let v = 120.0
                + 50.0 * (xf * 0.031 + noise[x % 64]).sin() * (yf * 0.023).cos()
                + 30.0 * (xf * 0.17 + yf * 0.11).sin()
                + 20.0 * ((xf - yf) * 0.07).cos();
            f.y.data[y * w + x] = v.clamp(16.0, 235.0) as u8;
        }
    }
    for y in 0..h / 2 {
        for x in 0..w / 2 {
            let (xf, yf) = (x as f64, y as f64);
            f.u.data[y * (w / 2) + x] = (128.0 + 40.0 * (xf * 0.05).sin()) as u8;
            f.v.data[y * (w / 2) + x] = (128.0 + 40.0 * (yf * 0.07).cos()) as u8;
        }
    }
    f
}

#[test]
fn interpolated_homography_matches_exact_homography() {
    let layout = CanvasLayout::new(W, H);
    let canvas = texture(layout.canvas_width, layout.canvas_height);
    let combined = CameraControl::Combined(kinora_render::camera::AxisValues {
        pan: 10.0,
        tilt: -10.0,
        roll: 6.0,
        zoom: -4.0,
        ..Default::default()
    });
    let mut worst = f64::INFINITY;
    for control in [
        combined,
        simple(Axis::Pan, -10.0),
        simple(Axis::Tilt, 10.0),
        CameraControl::ForwardUp,
    ] {
        let t = layout.camera(&control, N - 1, N);
        assert!(!t.is_affine());
        let mut out = I420Frame::filled(W, H, (0, 0, 0));
        warp_frame(&canvas, &t, Edge::Clamp, &mut out).expect("warp");
        let py = psnr(
            &out.y,
            &reference_warp(&canvas.y, &t, PlaneEdge::Clamp, W, H),
        );
        let pu = psnr(
            &out.u,
            &reference_warp(&canvas.u, &t.chroma(), PlaneEdge::Clamp, W / 2, H / 2),
        );
        println!("homography {control:?}: Y {py:.1} dB, U {pu:.1} dB");
        worst = worst.min(py).min(pu);
    }
    assert!(worst >= 45.0, "homography PSNR {worst:.1} dB");
}

#[test]
fn chroma_tracks_luma_at_half_scale() {
    let layout = CanvasLayout::new(W, H);
    let canvas = canvas_from_view(&layout, blobs(&[(CX + 40.0, CY - 20.0)]));
    let controls = [
        simple(Axis::Roll, 10.0),
        simple(Axis::Pan, -7.0),
        CameraControl::ForwardUp,
        simple(Axis::Horizontal, 3.3),
    ];
    for c in controls {
        for i in [0, N / 2, N - 1] {
            let f = render(&layout, &canvas, &c, i);
            let (ly, lx) = {
                let (x, y) = centroid(&f.y, 16, 0, W);
                (y, x)
            };
            let (ux, uy) = centroid(&f.u, 128, 0, W / 2);
            let (vx, vy) = centroid(&f.v, 128, 0, W / 2);
            for (cx, cy) in [(ux, uy), (vx, vy)] {
                assert!(
                    (2.0 * cx - lx).abs() < 0.5 && (2.0 * cy - ly).abs() < 0.5,
                    "{c:?} frame {i}: luma ({lx:.2}, {ly:.2}) chroma×2 ({:.2}, {:.2})",
                    2.0 * cx,
                    2.0 * cy
                );
            }
        }
    }
}

#[test]
fn fill_and_clamp_edges() {
    let src = I420Frame::filled(64, 36, (200, 90, 60));
    let mut out = I420Frame::filled(64, 36, (0, 0, 0));
    // Shrink to a quarter: a border of the output has no source.
    let t = Transform::scale_about(4.0, 32.0, 18.0);
    warp_frame(&src, &t, Edge::Fill(16, 128, 128), &mut out).expect("warp");
    assert_eq!(out.y.get(0, 0), 16);
    assert_eq!(out.u.get(0, 0), 128);
    assert_eq!(out.y.get(32, 18), 200);
    assert_eq!(out.v.get(16, 9), 60);
    warp_frame(&src, &t, Edge::Clamp, &mut out).expect("warp");
    assert!(out.y.data.iter().all(|&v| v == 200));
    assert!(out.u.data.iter().all(|&v| v == 90));
}

#[test]
fn malformed_input_is_an_error() {
    let src = Plane {
        width: 10,
        height: 10,
        stride: 10,
        data: vec![0; 50],
    };
    let mut out = Plane::new(4, 4, 0);
    assert!(matches!(
        warp_plane(&src, &Transform::IDENTITY, PlaneEdge::Clamp, &mut out),
        Err(WarpError::BadPlane { .. })
    ));
    let ok = Plane::new(10, 10, 0);
    let nan = Transform::translation(f64::NAN, 0.0);
    assert_eq!(
        warp_plane(&ok, &nan, PlaneEdge::Clamp, &mut out),
        Err(WarpError::TransformOutOfRange)
    );
    let huge = Transform::scale(1e9, 1.0);
    assert_eq!(
        warp_plane(&ok, &huge, PlaneEdge::Clamp, &mut out),
        Err(WarpError::TransformOutOfRange)
    );
}

#[test]
fn same_inputs_give_identical_bytes() {
    let layout = CanvasLayout::new(W, H);
    let canvas = texture(layout.canvas_width, layout.canvas_height);
    let control = CameraControl::RightTurnForward;
    let run = |garbage: u8| {
        let mut frames = Vec::new();
        let mut out = I420Frame::filled(W, H, (garbage, garbage, garbage));
        for i in 0..N {
            let t = layout.camera(&control, i, N);
            warp_frame(&canvas, &t, Edge::Fill(16, 128, 128), &mut out).expect("warp");
            frames.push(out.clone());
        }
        frames
    };
    // Different leftovers in the output buffer must not leak into the result.
    assert_eq!(run(0), run(255));
}

#[test]
fn dissolve_starts_on_head_and_ends_on_tail() {
    let head = texture(W, H);
    let mut tail = I420Frame::filled(W, H, (180, 100, 150));
    tail.y.data[W * 90 + 160] = 20;
    let mut a = I420Frame::filled(W, H, (0, 0, 0));
    let mut b = a.clone();
    let mut out = a.clone();
    let mut previous_weight = 0;
    for i in 0..N {
        let d = dissolve_at(i, N, W, H);
        assert!(d.tail_weight >= previous_weight);
        previous_weight = d.tail_weight;
        warp_frame(&head, &d.head, Edge::Clamp, &mut a).expect("warp");
        warp_frame(&tail, &d.tail, Edge::Clamp, &mut b).expect("warp");
        blend_frames(&a, &b, d.tail_weight, &mut out).expect("blend");
        if i == 0 {
            assert_eq!(out, head);
        }
        if i == N - 1 {
            assert_eq!(out, tail);
        }
    }
    assert_eq!(previous_weight, BLEND_ONE);
    // The head grows as it fades: at the midpoint it is sampled at 1/1.025 about the centre.
    let mid = dissolve_at(N / 2, N, W, H);
    let s = 1.0 + 0.05 * ease(progress(N / 2, N));
    assert!((mid.head.m[0][0] - 1.0 / s).abs() < 1e-12);
}

#[test]
fn warp_throughput_720p() {
    let (w, h) = (1280, 720);
    let layout = CanvasLayout::new(w, h);
    let canvas = texture(layout.canvas_width, layout.canvas_height);
    let mut out = I420Frame::filled(w, h, (0, 0, 0));
    let frames = if cfg!(debug_assertions) { 4 } else { 60 };
    let n = 120;
    let combined = CameraControl::Combined(kinora_render::camera::AxisValues {
        zoom: -5.0,
        roll: 4.0,
        pan: 5.0,
        tilt: 3.0,
        ..Default::default()
    });
    for (name, control) in [
        ("affine (zoom)", simple(Axis::Zoom, -8.0)),
        ("homography (combined)", combined),
    ] {
        let start = std::time::Instant::now();
        for k in 0..frames {
            // Skip frame 0 (identity copy) so every frame runs the kernel.
            let i = 1 + k * (n - 1) / frames;
            let t = layout.camera(&control, i, n);
            warp_frame(&canvas, &t, Edge::Clamp, &mut out).expect("warp");
        }
        let secs = start.elapsed().as_secs_f64();
        println!("warp {name} 1280x720 I420: {:.1} fps", frames as f64 / secs);
    }
}

mod motion_brush {
    use super::*;
    use kinora_render::warp::brush::{feather, mask_layers, MotionBrush, Trajectory};

    const FRAMES: usize = 120;
    const SQUARE: (usize, usize, usize, usize) = (60, 100, 100, 140); // x0, y0, x1, y1
    const STATIC: (usize, usize, usize, usize) = (230, 60, 300, 110);

    fn rect_mask(r: (usize, usize, usize, usize)) -> Plane {
        let mut m = Plane::new(W, H, 0);
        for y in r.1..r.3 {
            m.row_mut(y)[r.0..r.2].fill(255);
        }
        m
    }

    fn scene() -> I420Frame {
        let mut f = I420Frame::filled(W, H, (60, 120, 140));
        for y in 0..H {
            for x in 0..W {
                let v = 60.0 + 30.0 * (x as f64 * 0.11).sin() * (y as f64 * 0.07).cos();
                f.y.data[y * W + x] = v as u8;
            }
        }
        for y in SQUARE.1..SQUARE.3 {
            f.y.row_mut(y)[SQUARE.0..SQUARE.2].fill(235);
        }
        for y in STATIC.1..STATIC.3 {
            for x in STATIC.0..STATIC.2 {
                f.y.data[y * W + x] = (90 + (x * 7 + y * 13) % 60) as u8;
            }
        }
        f
    }

    /// The path in request form: image 640×360, origin bottom-left. The square's centre
    /// (80, 120) in the frame is (160, 240) top-left in the image, i.e. (160, 120).
    fn trajectory() -> Trajectory {
        Trajectory::from_image_points(&[(160, 120), (400, 120), (400, 300)], (640, 360), (W, H))
            .expect("valid trajectory")
    }

    fn render_all() -> Vec<I420Frame> {
        let base = scene();
        let dynamic = rect_mask(SQUARE);
        let fixed = rect_mask(STATIC);
        let brush = MotionBrush::new(
            &base,
            Some(&fixed),
            vec![(&dynamic, trajectory())],
            FRAMES,
            24,
        )
        .expect("brush");
        let mut scratch = brush.scratch();
        let mut out = I420Frame::filled(W, H, (0, 0, 0));
        (0..FRAMES)
            .map(|i| {
                brush.render(i, &mut scratch, &mut out).expect("render");
                out.clone()
            })
            .collect()
    }

    #[test]
    fn static_region_frozen_and_dynamic_region_follows_its_path() {
        let frames = render_all();
        // Expected path in frame coordinates: (80,120) → (200,120) → (200,30), Λ = 210.
        let expected = |i: usize| {
            let s = 210.0 * i as f64 / (FRAMES - 1) as f64;
            if s <= 120.0 {
                (80.0 + s, 120.0)
            } else {
                (200.0, 120.0 - (s - 120.0))
            }
        };
        let layers = mask_layers(&[trajectory()], FRAMES);
        let mut worst = 0.0f64;
        for (i, f) in frames.iter().enumerate() {
            let (ex, ey) = expected(i);
            assert!(
                (layers[i][0].0 - (ex - 80.0)).abs() < 1e-9
                    && (layers[i][0].1 - (ey - 120.0)).abs() < 1e-9
            );
            // Centroid of the bright square: everything else stays below 170.
            let (mut sw, mut sx, mut sy) = (0.0, 0.0, 0.0);
            for y in 0..H {
                for x in 0..W {
                    let v = (f.y.get(x, y) as f64 - 170.0).max(0.0);
                    sw += v;
                    sx += v * (x as f64 + 0.5);
                    sy += v * (y as f64 + 0.5);
                }
            }
            let (cx, cy) = (sx / sw, sy / sw);
            let err = (cx - ex).abs().max((cy - ey).abs());
            worst = worst.max(err);
            assert!(err < 0.5, "frame {i}: ({cx:.2}, {cy:.2}) vs ({ex}, {ey})");
        }
        println!("motion brush: worst centroid error {worst:.2} px");

        let alpha = feather(&rect_mask(STATIC));
        let mut full = 0;
        for y in 0..H {
            for x in 0..W {
                if alpha.get(x, y) == 255 {
                    full += 1;
                    let v = frames[0].y.get(x, y);
                    assert!(
                        frames.iter().all(|f| f.y.get(x, y) == v),
                        "static luma ({x}, {y}) changed"
                    );
                }
            }
        }
        assert!(full > 2000, "{full}");
        for y in 0..H / 2 {
            for x in 0..W / 2 {
                let all = [(0, 0), (1, 0), (0, 1), (1, 1)]
                    .iter()
                    .all(|&(dx, dy)| alpha.get(2 * x + dx, 2 * y + dy) == 255);
                if all {
                    let (u, v) = (frames[0].u.get(x, y), frames[0].v.get(x, y));
                    assert!(frames
                        .iter()
                        .all(|f| f.u.get(x, y) == u && f.v.get(x, y) == v));
                }
            }
        }

        // The vacated place is filled from its surroundings: no trace of the square is left.
        let last = &frames[FRAMES - 1];
        for y in SQUARE.1..SQUARE.3 {
            for x in SQUARE.0..SQUARE.2 {
                assert!(
                    last.y.get(x, y) < 150,
                    "hole ({x}, {y}) = {}",
                    last.y.get(x, y)
                );
            }
        }
        // The background is alive: away from every mask, frames differ over time.
        assert_ne!(frames[0].y.row(10), frames[30].y.row(10));
    }

    #[test]
    fn motion_brush_is_deterministic() {
        assert_eq!(render_all(), render_all());
    }
}
