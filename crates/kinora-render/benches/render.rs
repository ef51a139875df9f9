//! Render benchmarks for the §6.1 cases the engine supports so far: text2video at 720p 5 s
//! and 1080p 10 s, each also as an encoder-only run over the same frames pre-rendered in
//! memory, which gives the pipeline efficiency (encoder wall / pipeline wall).
//!
//! Release builds only: `cargo bench -p kinora-render`. KINORA_BENCH_THREADS sets the pool
//! size (default 2, the reference machine's core count).
//!
//! Peak memory of the 1080p 10 s render is measured in a child process (this same binary,
//! started with `--peak-rss-case`), so the parent's pre-rendered frames do not count.

use std::io::Write;
use std::time::{Duration, Instant};

use kinora_render::encode::ENCODER_HAS_ASSEMBLY;
use kinora_render::engine::{encode_video, CancelFlag, EnginePool};
use kinora_render::frame::I420Frame;
use kinora_render::plan::{frames_for_seconds, preset_size, Aspect, Mode, StreamPlan};
use kinora_render::scene::Scene;
use kinora_render::seed::scene_seed;
use kinora_render::RenderSpec;

const RUNS: usize = 5;

struct Case {
    name: &'static str,
    mode: Mode,
    seconds: u32,
}

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

const PEAK_RSS_ARG: &str = "--peak-rss-case";

/// The process's peak resident set size in kB, as Linux reports it.
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Child side: one 1080p 10 s render, then its peak RSS on stdout.
fn run_peak_rss_case(threads: usize) -> std::process::ExitCode {
    let Ok(pool) = EnginePool::new(threads) else {
        return std::process::ExitCode::FAILURE;
    };
    let spec = RenderSpec {
        mode: Mode::Pro,
        duration_s: Some(10),
        ..RenderSpec::text2video("a lighthouse on a cliff at sunset")
    };
    if kinora_render::render(&spec, &pool, &CancelFlag::new()).is_err() {
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
fn measure_peak_rss(threads: usize) -> Option<u64> {
    let exe = std::env::current_exe().ok()?;
    let output = std::process::Command::new(exe)
        .arg(PEAK_RSS_ARG)
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
    if std::env::args().any(|a| a == PEAK_RSS_ARG) {
        return run_peak_rss_case(threads);
    }
    let Ok(pool) = EnginePool::new(threads) else {
        let _ = writeln!(err, "cannot start the engine pool");
        std::process::exit(1);
    };
    let cases = [
        Case {
            name: "T1 text2video 720p 5 s",
            mode: Mode::Std,
            seconds: 5,
        },
        Case {
            name: "T2 text2video 1080p 10 s",
            mode: Mode::Pro,
            seconds: 10,
        },
    ];
    let mut out = std::io::stdout();
    let _ = writeln!(out, "pool threads: {threads}, encoder assembly: {ENCODER_HAS_ASSEMBLY}, runs: {RUNS} (+1 warm-up)");
    let _ = writeln!(
        out,
        "{:<28} {:>9} {:>9} {:>13} {:>13} {:>14} {:>7} {:>6}",
        "case", "median s", "min s", "enc-only med", "enc-only min", "draw 1-thr med", "MB", "eff"
    );
    let prompt = "a lighthouse on a cliff at sunset";
    for case in cases {
        let spec = RenderSpec {
            mode: case.mode,
            duration_s: Some(case.seconds),
            ..RenderSpec::text2video(prompt)
        };
        let cancel = CancelFlag::new();
        let mut size_mb = 0.0;
        let (med, min) = time(|| {
            let out = kinora_render::render(&spec, &pool, &cancel);
            if let Ok(o) = &out {
                size_mb = o.mp4.len() as f64 / 1e6;
            }
            out.is_ok()
        });

        // The same frames, drawn before the clock starts.
        let size = preset_size(case.mode, Aspect::Landscape16x9);
        let plan = StreamPlan::new(case.mode, size, frames_for_seconds(case.seconds), &[]);
        let scene = Scene::new(
            scene_seed(&spec.model_name, prompt, ""),
            prompt,
            size.width as usize,
            size.height as usize,
        );
        let frames: Vec<I420Frame> = (0..plan.frames)
            .map(|i| {
                let mut f = scene.blank_frame();
                scene.draw(i, &mut f);
                f
            })
            .collect();
        let copy = |i: u32, buf: &mut I420Frame| {
            if let Some(f) = frames.get(i as usize) {
                buf.clone_from(f);
            }
        };
        let (enc_med, enc_min) = time(|| encode_video(&plan, &pool, &cancel, &copy).is_ok());
        // Drawing alone, on one thread: the per-frame work the pipeline adds to the encoder.
        let mut buf = scene.blank_frame();
        let (draw_med, _) = time(|| {
            for i in 0..plan.frames {
                scene.draw(i, &mut buf);
            }
        });
        let _ = writeln!(
            out,
            "{:<28} {:>9.3} {:>9.3} {:>13.3} {:>13.3} {:>14.3} {:>7.2} {:>6.2}",
            case.name,
            med.as_secs_f64(),
            min.as_secs_f64(),
            enc_med.as_secs_f64(),
            enc_min.as_secs_f64(),
            draw_med.as_secs_f64(),
            size_mb,
            enc_med.as_secs_f64() / med.as_secs_f64()
        );
    }
    match measure_peak_rss(threads) {
        Some(kb) => {
            let _ = writeln!(
                out,
                "peak RSS, text2video 1080p 10 s in its own process: {:.1} MB (target <= 400 MB)",
                kb as f64 / 1024.0
            );
        }
        None => {
            let _ = writeln!(out, "peak RSS: could not be measured (needs Linux /proc)");
        }
    }
    std::process::ExitCode::SUCCESS
}
