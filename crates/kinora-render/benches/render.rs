//! Render benchmarks for the §6.1 cases the engine supports so far:
//!
//! * T1/T2: text2video at 720p 5 s and 1080p 10 s;
//! * B1: image2video 720p 16:9 5 s, zoom (affine warp path);
//! * B2: image2video 720p 5 s, combined zoom+roll+pan+tilt (homography path);
//! * B3: image2video 1080p 10 s, combined camera;
//! * B2f/B3f: B2 and B3 on the flat picture (see [`Fixture`]), the worst case for the ratio.
//!
//! Each is also run encoder-only (E*) over the same frames pre-rendered in memory, with the same
//! chunk plan, which gives the pipeline efficiency (encoder wall / pipeline wall); the pipeline
//! and encoder-only runs take turns, so a drift in the machine's speed weighs on both. The
//! image2video pictures are synthetic 3840×2160 images, JPEG-encoded at quality 90 in memory
//! before any clock starts; the timed runs include their decoding. The output bitrate column
//! shows how hard each clip is to encode (the targets are 5 Mbit/s at 720p, 10 at 1080p).
//!
//! Release builds only: `cargo bench -p kinora-render`. KINORA_BENCH_THREADS sets the pool
//! size (default 2, the reference machine's core count); KINORA_BENCH_ONLY=B2 (a case name
//! prefix) runs one case alone, without the concurrency and memory cases.
//!
//! Peak memory is measured in a child process (this same binary, started with
//! `--peak-rss-case <case>`), so the parent's pre-rendered frames do not count.

use std::io::Write;
use std::time::{Duration, Instant};

use kinora_render::camera::{Axis, AxisValues, CameraControl};
use kinora_render::encode::ENCODER_HAS_ASSEMBLY;
use kinora_render::engine::{encode_video, CancelFlag, EnginePool};
use kinora_render::frame::I420Frame;
use kinora_render::kinds::image2video::image2video_frames;
use kinora_render::kinds::procedural::text2video_frames;
use kinora_render::plan::{Mode, StreamPlan};
use kinora_render::seed::SplitMix64;
use kinora_render::{Asset, RenderKind, RenderSpec};

const RUNS: usize = 7;
const PROMPT: &str = "a lighthouse on a cliff at sunset";

fn time<T>(mut f: impl FnMut() -> T) -> (Duration, Duration) {
    let _ = f(); // warm-up
    let mut times: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            let _ = std::hint::black_box(f());
            start.elapsed()
        })
        .collect();
    times.sort();
    (times[RUNS / 2], times[0])
}

/// Median and minimum of `RUNS` timed runs each of `a` and `b`, taken in turns (a, b, a, b, …)
/// after one warm-up of each: the machine's speed drifts, and a drift between two blocks of
/// runs would bias their ratio; in turns it weighs on both alike.
fn time_interleaved<A, B>(
    mut a: impl FnMut() -> A,
    mut b: impl FnMut() -> B,
) -> ((Duration, Duration), (Duration, Duration)) {
    let _ = (a(), b());
    let (mut ta, mut tb) = (Vec::with_capacity(RUNS), Vec::with_capacity(RUNS));
    for _ in 0..RUNS {
        let start = Instant::now();
        let _ = std::hint::black_box(a());
        ta.push(start.elapsed());
        let start = Instant::now();
        let _ = std::hint::black_box(b());
        tb.push(start.elapsed());
    }
    let summary = |mut t: Vec<Duration>| {
        t.sort();
        (t[RUNS / 2], t[0])
    };
    (summary(ta), summary(tb))
}

const PEAK_RSS_ARG: &str = "--peak-rss-case";

/// The process's peak resident set size in kB, as Linux reports it.
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The image2video picture.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fixture {
    /// Photo-like: the flat scene with texture at every scale on top (strong on the land,
    /// faint in the sky), as a photograph has. Its clips need about 90 % of the mode's bitrate
    /// target (4.6 of 5 Mbit/s at 720p, 8.8 of 10 at 1080p), as real photographs do: the
    /// encoder works as hard as it would on users' pictures. The reference cases use it.
    Photo,
    /// The scene alone: smooth gradients and hard edges, nothing finer. Its clips need only
    /// about a third of the bitrate target, so the encoder has little to do and every other
    /// cost weighs about twice as much in the efficiency. Kept as the worst case.
    Flat,
}

/// A hash of a lattice point of one noise octave, uniform in [−1, 1].
fn lattice(ix: i64, iy: i64, octave: u64) -> f64 {
    let mut z = (ix as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ (iy as u64).wrapping_mul(0xc2b2_ae3d_27d4_eb4f)
        ^ octave.wrapping_mul(0x1656_67b1_9e37_79f9);
    z = (z ^ (z >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z ^= z >> 29;
    (z >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
}

/// Value noise summed over eight octaves (periods 512 down to 4 pixels) of equal amplitude:
/// equal energy per octave is the 1/f amplitude spectrum of natural images. About ±1.
fn texture(x: u32, y: u32) -> f64 {
    let smooth = |t: f64| t * t * (3.0 - 2.0 * t);
    let mut sum = 0.0;
    for octave in 0..8u32 {
        let period = f64::from(512u32 >> octave);
        let (fx, fy) = (f64::from(x) / period, f64::from(y) / period);
        let (ix, iy) = (fx.floor() as i64, fy.floor() as i64);
        let (sx, sy) = (smooth(fx - ix as f64), smooth(fy - iy as f64));
        let at = |dx: i64, dy: i64| lattice(ix + dx, iy + dy, u64::from(octave));
        let top = at(0, 0) * (1.0 - sx) + at(1, 0) * sx;
        let bottom = at(0, 1) * (1.0 - sx) + at(1, 1) * sx;
        sum += top * (1.0 - sy) + bottom * sy;
    }
    sum / 8f64.sqrt()
}

/// Texture amplitude in 8-bit levels on the land; the sky gets a third of it.
const TEXTURE_LEVELS: f64 = 24.0;

/// A synthetic picture: a sky gradient, layered hills, a sun, soft clouds and a fine
/// low-contrast grain, plus for [`Fixture::Photo`] texture at every scale.
fn photo_jpeg(width: u32, height: u32, fixture: Fixture) -> Vec<u8> {
    let mut rng = SplitMix64::new(0x9e37_79b9);
    let grain: Vec<i32> = (0..4096).map(|_| (rng.next_u64() % 9) as i32 - 4).collect();
    let (w, h) = (f64::from(width), f64::from(height));
    let img = image::RgbImage::from_fn(width, height, |x, y| {
        let (u, v) = (f64::from(x) / w, f64::from(y) / h);
        let mut c = [60.0 + 120.0 * v, 110.0 + 80.0 * v, 200.0 - 40.0 * v];
        let sun = ((u - 0.7).powi(2) + (v - 0.3).powi(2)).sqrt();
        if sun < 0.08 {
            c = [250.0, 220.0, 150.0];
        } else {
            let glow = (0.25 - sun).max(0.0) * 3.0;
            c = [c[0] + 120.0 * glow, c[1] + 80.0 * glow, c[2] + 20.0 * glow];
        }
        let cloud = (u * 9.0 + (v * 17.0).sin()).sin() * (v * 23.0).cos();
        if v < 0.45 && cloud > 0.6 {
            let k = (cloud - 0.6) * 1.5;
            c = c.map(|ch| ch + (235.0 - ch) * k);
        }
        for (k, (base, col)) in [
            (0.55, [70.0, 110.0, 60.0]),
            (0.68, [50.0, 90.0, 45.0]),
            (0.8, [35.0, 60.0, 30.0]),
        ]
        .into_iter()
        .enumerate()
        {
            let kf = k as f64 + 1.0;
            let top = base + 0.05 * (u * 6.0 * kf + kf).sin() + 0.02 * (u * 31.0 * kf).sin();
            if v > top {
                let shade = 1.0 - 0.3 * (v - top);
                c = col.map(|ch| ch * shade);
            }
        }
        let g = grain[((x * 31 + y * 17) % 4096) as usize];
        let t = match fixture {
            Fixture::Photo => TEXTURE_LEVELS * texture(x, y) * if v > 0.55 { 1.0 } else { 0.35 },
            Fixture::Flat => 0.0,
        };
        image::Rgb(c.map(|ch| ((ch + t).round() as i32 + g).clamp(0, 255) as u8))
    });
    let mut out = Vec::new();
    let mut encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90);
    if encoder.encode_image(&img).is_err() {
        return Vec::new();
    }
    out
}

#[derive(Clone, Copy)]
enum Kind {
    Text,
    /// image2video with this camera over this picture.
    Image(CameraControl, Fixture),
}

struct Case {
    name: &'static str,
    /// Name of the encoder-only twin.
    baseline: &'static str,
    mode: Mode,
    seconds: u32,
    kind: Kind,
}

fn combined() -> CameraControl {
    CameraControl::Combined(AxisValues {
        zoom: -5.0,
        roll: 4.0,
        pan: 5.0,
        tilt: 3.0,
        ..AxisValues::default()
    })
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "T1 text2video 720p 5 s",
            baseline: "",
            mode: Mode::Std,
            seconds: 5,
            kind: Kind::Text,
        },
        Case {
            name: "T2 text2video 1080p 10 s",
            baseline: "",
            mode: Mode::Pro,
            seconds: 10,
            kind: Kind::Text,
        },
        Case {
            name: "B1 i2v 720p 5 s zoom",
            baseline: "",
            mode: Mode::Std,
            seconds: 5,
            kind: Kind::Image(
                CameraControl::Simple {
                    axis: Axis::Zoom,
                    value: -5.0,
                },
                Fixture::Photo,
            ),
        },
        Case {
            name: "B2 i2v 720p 5 s combined",
            baseline: "E1",
            mode: Mode::Std,
            seconds: 5,
            kind: Kind::Image(combined(), Fixture::Photo),
        },
        Case {
            name: "B3 i2v 1080p 10 s combined",
            baseline: "E2",
            mode: Mode::Pro,
            seconds: 10,
            kind: Kind::Image(combined(), Fixture::Photo),
        },
        Case {
            name: "B2f B2 on the flat picture",
            baseline: "E1f",
            mode: Mode::Std,
            seconds: 5,
            kind: Kind::Image(combined(), Fixture::Flat),
        },
        Case {
            name: "B3f B3 on the flat picture",
            baseline: "E2f",
            mode: Mode::Pro,
            seconds: 10,
            kind: Kind::Image(combined(), Fixture::Flat),
        },
    ]
}

fn spec_for(case: &Case, photo: &Asset) -> RenderSpec {
    match case.kind {
        Kind::Text => RenderSpec {
            mode: case.mode,
            duration_s: Some(case.seconds),
            ..RenderSpec::text2video(PROMPT)
        },
        Kind::Image(control, _) => RenderSpec {
            mode: case.mode,
            duration_s: Some(case.seconds),
            camera: Some(control),
            first_frame: Some(photo.clone()),
            ..RenderSpec::new(RenderKind::Image2Video, PROMPT)
        },
    }
}

/// The frames the pipeline encodes, rendered up front.
fn prerender(case: &Case, spec: &RenderSpec, threads: usize) -> Option<Vec<I420Frame>> {
    match case.kind {
        Kind::Image(..) => image2video_frames(spec, None, threads).ok(),
        Kind::Text => text2video_frames(spec, threads).ok(),
    }
}

/// Child side: one render of the named case, then its peak RSS on stdout.
fn run_peak_rss_case(threads: usize, name: &str) -> std::process::ExitCode {
    let Ok(pool) = EnginePool::new(threads) else {
        return std::process::ExitCode::FAILURE;
    };
    let Some(case) = cases().into_iter().find(|c| c.name.starts_with(name)) else {
        return std::process::ExitCode::FAILURE;
    };
    let fixture = match case.kind {
        Kind::Image(_, fixture) => fixture,
        Kind::Text => Fixture::Photo,
    };
    let photo = Asset::new(photo_jpeg(3840, 2160, fixture));
    if kinora_render::render(&spec_for(&case, &photo), &pool, &CancelFlag::new()).is_err() {
        return std::process::ExitCode::FAILURE;
    }
    match peak_rss_kb() {
        Some(kb) => {
            println!("{kb}");
            std::process::ExitCode::SUCCESS
        }
        None => std::process::ExitCode::FAILURE,
    }
}

/// Parent side: runs the child and reads its answer.
fn measure_peak_rss(threads: usize, case: &str) -> Option<u64> {
    let exe = std::env::current_exe().ok()?;
    let output = std::process::Command::new(exe)
        .args([PEAK_RSS_ARG, case])
        .env("KINORA_BENCH_THREADS", threads.to_string())
        .output()
        .ok()?;
    String::from_utf8_lossy(&output.stdout).trim().parse().ok()
}

fn main() -> std::process::ExitCode {
    let mut err = std::io::stderr();
    if cfg!(debug_assertions) {
        let _ = writeln!(
            err,
            "refusing to benchmark a debug build: run `cargo bench -p kinora-render`"
        );
        std::process::exit(2);
    }
    if !ENCODER_HAS_ASSEMBLY {
        let _ = writeln!(
            err,
            "WARNING: the H.264 encoder was built without nasm; figures are about 2.7x too slow"
        );
    }
    let threads = std::env::var("KINORA_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == PEAK_RSS_ARG) {
        let name = args.get(at + 1).map(String::as_str).unwrap_or("T2");
        return run_peak_rss_case(threads, name);
    }
    let Ok(pool) = EnginePool::new(threads) else {
        let _ = writeln!(err, "cannot start the engine pool");
        std::process::exit(1);
    };
    let photo = Asset::new(photo_jpeg(3840, 2160, Fixture::Photo));
    let flat = Asset::new(photo_jpeg(3840, 2160, Fixture::Flat));
    if photo.bytes().is_empty() || flat.bytes().is_empty() {
        let _ = writeln!(err, "cannot encode the fixture");
        std::process::exit(1);
    }
    let picture = |case: &Case| match case.kind {
        Kind::Image(_, Fixture::Flat) => &flat,
        Kind::Image(_, Fixture::Photo) | Kind::Text => &photo,
    };
    let mut out = std::io::stdout();
    let _ = writeln!(out, "pool threads: {threads}, encoder assembly: {ENCODER_HAS_ASSEMBLY}, runs: {RUNS} (+1 warm-up)");
    let _ = writeln!(
        out,
        "pictures: synthetic 3840x2160, JPEG q90: photo-like {:.2} MB, flat {:.2} MB",
        photo.bytes().len() as f64 / 1e6,
        flat.bytes().len() as f64 / 1e6
    );
    let _ = writeln!(
        out,
        "{:<36} {:>9} {:>9} {:>13} {:>13} {:>14} {:>7} {:>6}",
        "case",
        "median s",
        "min s",
        "enc-only med",
        "enc-only min",
        "draw 1-thr med",
        "Mbit/s",
        "eff"
    );
    let cancel = CancelFlag::new();
    let mut b2_median = None;
    let only = std::env::var("KINORA_BENCH_ONLY").ok();
    for case in cases() {
        if only
            .as_ref()
            .is_some_and(|o| !case.name.starts_with(o.as_str()))
        {
            continue;
        }
        let spec = spec_for(&case, picture(&case));
        // The same frames the pipeline encodes, drawn before any clock starts.
        let Some(frames) = prerender(&case, &spec, threads) else {
            let _ = writeln!(err, "{}: cannot pre-render the frames", case.name);
            continue;
        };
        let (w, h) = (frames[0].width() as u32, frames[0].height() as u32);
        let plan = StreamPlan::new(
            case.mode,
            kinora_render::plan::Size::new(w, h),
            frames.len() as u32,
            &[],
        );
        let copy = |i: u32, buf: &mut I420Frame| {
            if let Some(f) = frames.get(i as usize) {
                buf.clone_from(f);
            }
        };
        let mut bytes = 0usize;
        let ((med, min), (enc_med, enc_min)) = time_interleaved(
            || {
                let out = kinora_render::render(&spec, &pool, &cancel);
                if let Ok(o) = &out {
                    bytes = o.mp4.len();
                }
                out.is_ok()
            },
            || encode_video(&plan, &pool, &cancel, &copy).is_ok(),
        );
        if case.baseline == "E1" {
            b2_median = Some(med);
        }
        drop(frames);
        // Preparing and drawing alone, on one thread: the work the pipeline adds to the
        // encoder (plus allocating every frame, which the pipeline does not).
        let (draw_med, _) = time(|| prerender(&case, &spec, 1).is_some());
        let label = if case.baseline.is_empty() {
            case.name.to_owned()
        } else {
            format!("{} / {}", case.name, case.baseline)
        };
        let _ = writeln!(
            out,
            "{:<36} {:>9.3} {:>9.3} {:>13.3} {:>13.3} {:>14.3} {:>7.2} {:>6.2}",
            label,
            med.as_secs_f64(),
            min.as_secs_f64(),
            enc_med.as_secs_f64(),
            enc_min.as_secs_f64(),
            draw_med.as_secs_f64(),
            bytes as f64 * 8.0 / 1e6 / f64::from(case.seconds),
            enc_med.as_secs_f64() / med.as_secs_f64()
        );
    }

    if only.is_some() {
        return std::process::ExitCode::SUCCESS;
    }
    // Four B2 renders at once on the same pool must not cost more than 4.4 single renders.
    if let Some(single) = b2_median {
        let spec = spec_for(&cases()[3], &photo);
        let (four, _) = time(|| {
            std::thread::scope(|s| {
                let jobs: Vec<_> = (0..4)
                    .map(|_| s.spawn(|| kinora_render::render(&spec, &pool, &cancel).is_ok()))
                    .collect();
                jobs.into_iter().all(|j| j.join().unwrap_or(false))
            })
        });
        let ratio = four.as_secs_f64() / single.as_secs_f64();
        let _ = writeln!(
            out,
            "4 concurrent B2 renders on {threads} threads: {:.3} s median = {ratio:.2}x one B2 (target <= 4.4x): {}",
            four.as_secs_f64(),
            if ratio <= 4.4 { "ok" } else { "OVER" }
        );
    }

    for (case, label) in [
        ("T2", "text2video 1080p 10 s"),
        ("B3", "B3 image2video 1080p 10 s"),
    ] {
        match measure_peak_rss(threads, case) {
            Some(kb) => {
                let _ = writeln!(
                    out,
                    "peak RSS, {label} in its own process: {:.1} MB (target <= 400 MB)",
                    kb as f64 / 1024.0
                );
            }
            None => {
                let _ = writeln!(out, "peak RSS of {label}: could not be measured");
            }
        }
    }
    std::process::ExitCode::SUCCESS
}
