//! Input videos read back: demux, H.264 decode, rotation, sample-and-hold timing, the motion
//! estimator, source audio copy and transcode, and hostile files. Inputs are made here, with
//! the engine's own encoder and muxer, or with ffmpeg when it is installed (tests that need
//! it print a skip line without it).

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use kinora_render::audio::{soundtrack, SAMPLE_RATE};
use kinora_render::engine::{encode_video, mux_chunks, CancelFlag, EnginePool, RenderError};
use kinora_render::frame::{I420Frame, Plane};
use kinora_render::mux::{write_mp4, AudioTrack, VideoSample, VideoTrack};
use kinora_render::plan::{Mode, Size, StreamPlan};
use kinora_render::source::{
    estimate_motion, estimate_motion_from_thumbnails, pair_motion, thumbnail_size, SourceVideo,
};

const W: u32 = 192;
const H: u32 = 108;

/// A textured, moving test picture: each frame differs, and its content is smooth enough
/// for the encoder to keep it well.
fn test_frame(i: u32, w: u32, h: u32) -> I420Frame {
    let mut f = I420Frame::filled(w as usize, h as usize, (16, 128, 128));
    for y in 0..h as usize {
        for x in 0..w as usize {
            let v = 60.0
                + 50.0 * libm::sin((x as f64 + 3.0 * f64::from(i)) / 9.0)
                + 40.0 * libm::cos((y as f64 - 2.0 * f64::from(i)) / 7.0)
                + 20.0 * libm::sin((x + y) as f64 / 13.0);
            f.y.data[y * w as usize + x] = v.clamp(16.0, 235.0) as u8;
        }
    }
    for y in 0..h as usize / 2 {
        for x in 0..w as usize / 2 {
            let cw = w as usize / 2;
            f.u.data[y * cw + x] =
                (128.0 + 30.0 * libm::sin((x as f64 + f64::from(i)) / 11.0)) as u8;
            f.v.data[y * cw + x] = (128.0 + 30.0 * libm::cos(y as f64 / 6.0)) as u8;
        }
    }
    f
}

fn plan(frames: u32, w: u32, h: u32) -> StreamPlan {
    StreamPlan::new(Mode::Std, Size::new(w, h), frames, &[])
}

/// Our own MP4 of `frames` frames drawn by `draw`, optionally with audio.
fn own_mp4<D>(frames: u32, w: u32, h: u32, draw: D, audio: Option<&AudioTrack>) -> Vec<u8>
where
    D: Fn(u32, &mut I420Frame) + Sync,
{
    let pool = EnginePool::new(2).unwrap();
    let plan = plan(frames, w, h);
    let chunks = encode_video(&plan, &pool, &CancelFlag::new(), &draw).unwrap();
    mux_chunks(&plan, &chunks, audio, "test").unwrap()
}

fn psnr(a: &Plane, b: &Plane) -> f64 {
    assert_eq!((a.width, a.height), (b.width, b.height));
    let mut se = 0f64;
    for y in 0..a.height {
        for (p, q) in a.row(y).iter().zip(b.row(y)) {
            let d = f64::from(*p) - f64::from(*q);
            se += d * d;
        }
    }
    let mse = se / (a.width * a.height) as f64;
    if mse == 0.0 {
        99.0
    } else {
        10.0 * (255.0 * 255.0 / mse).log10()
    }
}

fn open(bytes: &[u8]) -> Result<SourceVideo, RenderError> {
    SourceVideo::open(Arc::from(bytes.to_vec().into_boxed_slice()))
}

fn frames_of(video: &SourceVideo, out: Size, range: std::ops::Range<u32>) -> Vec<I420Frame> {
    let mut got = Vec::new();
    video
        .for_each_frame_24(out, range.clone(), &CancelFlag::new(), |i, f| {
            assert_eq!(i, range.start + got.len() as u32, "frames in order");
            got.push(f.clone());
            Ok(())
        })
        .unwrap();
    got
}

#[test]
fn own_mp4_decodes_to_the_original_frames() {
    let frames = 70; // two chunks: IDRs at 0 and 35
    let mp4 = own_mp4(frames, W, H, |i, f| *f = test_frame(i, W, H), None);
    let video = open(&mp4).unwrap();
    assert_eq!(video.coded_size(), (W, H));
    assert_eq!(video.display_size(), (W, H));
    assert_eq!(video.duration_s(), 70.0 / 24.0);
    assert_eq!(video.frames_at_24fps(), 70);
    assert!(video.audio().is_none());
    assert!(!video.reorders());
    let samples = video.samples();
    assert_eq!(samples.len(), 70);
    let sync: Vec<u32> = samples
        .iter()
        .filter(|s| s.is_sync)
        .map(|s| s.index)
        .collect();
    assert_eq!(sync, vec![0, 35]);
    assert!(samples
        .iter()
        .enumerate()
        .all(|(i, s)| s.pts == i as i64 * 3750));
    let (sps, pps) = video.sps_pps();
    assert_eq!(sps[0] & 0x1f, 7);
    assert_eq!(pps[0] & 0x1f, 8);
    assert_eq!(video.nal_length_size(), 4);
    let nals = video.sample_nals(&samples[0]).unwrap();
    assert!(
        nals.iter().any(|n| n[0] & 0x1f == 5),
        "first sample holds an IDR slice"
    );
    assert_eq!(
        video.sample_data(&samples[1]).len() as u32,
        samples[1].size,
        "sample data spans the sample"
    );

    let size = Size::new(W, H);
    let all = frames_of(&video, size, 0..frames);
    assert_eq!(all.len(), 70);
    for (i, f) in all.iter().enumerate() {
        let want = test_frame(i as u32, W, H);
        assert!(psnr(&f.y, &want.y) > 33.0, "frame {i} luma");
        assert!(psnr(&f.u, &want.u) > 33.0, "frame {i} chroma");
    }
    // A range that starts mid-GOP and in the second chunk decodes to the same pictures.
    let part = frames_of(&video, size, 40..44);
    assert_eq!(&part[..], &all[40..44]);
    let mid = frames_of(&video, size, 20..22);
    assert_eq!(&mid[..], &all[20..22]);
    // Past the end, the last frame holds.
    let tail = frames_of(&video, size, 69..72);
    assert_eq!(tail[1], all[69]);
    assert_eq!(tail[2], all[69]);
    assert_eq!(video.last_frame(size).unwrap(), all[69]);

    // Scaled to another shape: cover-fit, smaller, still close to a scaled original.
    let small = frames_of(&video, Size::new(96, 96), 0..1);
    assert_eq!((small[0].width(), small[0].height()), (96, 96));
    assert_eq!((small[0].u.width, small[0].u.height), (48, 48));

    // Cancelling stops decoding.
    let cancel = CancelFlag::new();
    cancel.cancel();
    let r = video.for_each_frame_24(size, 0..10, &cancel, |_, _| Ok(()));
    assert!(matches!(r, Err(RenderError::Cancelled)));
}

/// Rewrites the video track's `tkhd` matrix of one of our files (its first `tkhd`).
fn set_rotation(mp4: &mut [u8], matrix: [i32; 4]) {
    let at = mp4.windows(4).position(|w| w == b"tkhd").unwrap();
    // tkhd v0: 4 version/flags, 20 of times, id and duration, 16 more, then the matrix.
    let m = at + 4 + 4 + 20 + 16;
    for (k, v) in [
        (0, matrix[0]),
        (1, matrix[1]),
        (3, matrix[2]),
        (4, matrix[3]),
    ] {
        mp4[m + 4 * k..m + 4 * k + 4].copy_from_slice(&v.to_be_bytes());
    }
}

fn rotate_cw(p: &Plane) -> Plane {
    let mut out = Plane::new(p.height, p.width, 0);
    for y in 0..p.height {
        for x in 0..p.width {
            out.data[x * p.height + (p.height - 1 - y)] = p.get(x, y);
        }
    }
    out
}

#[test]
fn rotation_metadata_turns_the_frames() {
    let mut mp4 = own_mp4(24, W, H, |i, f| *f = test_frame(i, W, H), None);
    let plain = open(&mp4).unwrap();
    let reference = frames_of(&plain, Size::new(W, H), 0..3);
    set_rotation(&mut mp4, [0, 0x1_0000, -0x1_0000, 0]);
    let video = open(&mp4).unwrap();
    assert_eq!(video.coded_size(), (W, H));
    assert_eq!(video.display_size(), (H, W));
    assert_eq!(video.rotation().degrees(), 90);
    let turned = frames_of(&video, Size::new(H, W), 0..3);
    for (a, b) in turned.iter().zip(&reference) {
        assert_eq!(a.y, rotate_cw(&b.y), "exact transpose at the same size");
        assert_eq!(a.u, rotate_cw(&b.u));
    }
    set_rotation(&mut mp4, [-0x1_0000, 0, 0, -0x1_0000]);
    let upside = open(&mp4).unwrap();
    assert_eq!(upside.display_size(), (W, H));
    let flipped = frames_of(&upside, Size::new(W, H), 0..1);
    assert_eq!(flipped[0].y, rotate_cw(&rotate_cw(&reference[0].y)));
    set_rotation(&mut mp4, [0, -0x1_0000, 0x1_0000, 0]);
    assert_eq!(open(&mp4).unwrap().rotation().degrees(), 270);
}

#[test]
fn own_audio_tracks_round_trip() {
    // Opus: the procedural soundtrack's packets come back unchanged.
    let opus = AudioTrack::try_from(soundtrack(&[7; 32], 48, &[]).unwrap()).unwrap();
    let mp4 = own_mp4(48, W, H, |i, f| *f = test_frame(i, W, H), Some(&opus));
    let video = open(&mp4).unwrap();
    let audio = video.audio().unwrap();
    assert!(audio.is_opus());
    assert_eq!(audio.codec_name(), "Opus");
    assert_eq!(audio.to_track(48).unwrap(), opus);
    assert_eq!(audio.to_opus(48).unwrap(), opus);
    // Cut to a shorter video: whole 20 ms packets that end by 1 s (24 frames).
    match audio.to_track(24).unwrap() {
        AudioTrack::Opus { packets, .. } => assert_eq!(packets.len(), 50),
        other => panic!("expected Opus, got {other:?}"),
    }

    // AAC: access units, config and priming survive our muxer and demuxer.
    let aac = AudioTrack::Aac {
        config: vec![0x11, 0x90], // AAC-LC, 48 kHz, stereo
        packets: (0..60u8).map(|k| vec![k; 5 + k as usize]).collect(),
        sample_rate: 48_000,
        channels: 2,
        frame_samples: 1024,
        priming: 1024,
    };
    let mp4 = own_mp4(48, W, H, |i, f| *f = test_frame(i, W, H), Some(&aac));
    let video = open(&mp4).unwrap();
    let audio = video.audio().unwrap();
    assert!(audio.is_aac());
    assert_eq!(audio.duration_s(), 59.0 * 1024.0 / 48_000.0);
    let copied = audio.to_track(48).unwrap();
    // 2 s of video: (k·1024 − 1024) ≤ 96 000 keeps k ≤ 94, so all 60 units stay.
    assert_eq!(copied, aac);
    match audio.to_track(24).unwrap() {
        // (k − 1)·1024 ≤ 48 000 ⇔ k ≤ 47.
        AudioTrack::Aac { packets, .. } => assert_eq!(packets.len(), 47),
        other => panic!("expected AAC, got {other:?}"),
    }
}

#[test]
fn motion_estimator_recovers_synthetic_motion() {
    let (tw, th) = thumbnail_size(1920, 1080);
    assert_eq!((tw, th), (160, 90));
    // A smooth texture evaluated at continuous positions, so any similarity can be applied.
    let texture = |x: f64, y: f64| -> f64 {
        128.0
            + 45.0 * libm::sin(x / 5.3 + libm::cos(y / 11.0))
            + 35.0 * libm::cos(y / 4.1 - x / 17.0)
            + 25.0 * libm::sin((x + y) / 7.7)
    };
    // Thumbnail whose content is the texture moved by (s, θ, t) about the centre.
    let render = |s: f64, theta: f64, tx: f64, ty: f64| -> Plane {
        let mut p = Plane::new(tw as usize, th as usize, 0);
        let (cx, cy) = (f64::from(tw) / 2.0, f64::from(th) / 2.0);
        let (c, sn) = (libm::cos(theta), libm::sin(theta));
        for y in 0..th as usize {
            for x in 0..tw as usize {
                // Invert p = s·R·q + t.
                let (px, py) = (x as f64 + 0.5 - cx - tx, y as f64 + 0.5 - cy - ty);
                let qx = (c * px + sn * py) / s;
                let qy = (-sn * px + c * py) / s;
                p.data[y * tw as usize + x] = texture(qx, qy).clamp(0.0, 255.0) as u8;
            }
        }
        p
    };
    let still = render(1.0, 0.0, 0.0, 0.0);

    let shifted = render(1.0, 0.0, 3.0, -2.0);
    let m = pair_motion(&still, &shifted);
    assert!((m.global.dx - 3.0).abs() < 0.05, "{m:?}");
    assert!((m.global.dy + 2.0).abs() < 0.05, "{m:?}");
    assert!(m.global.log_scale.abs() < 0.002 && m.global.rotation.abs() < 0.002);
    assert!(m.activity < 3.0, "compensated difference is small: {m:?}");

    let zoomed = render(1.05, 0.0, 0.0, 0.0);
    let m = pair_motion(&still, &zoomed);
    assert!(
        (m.global.log_scale - libm::log(1.05)).abs() < 0.006,
        "{m:?}"
    );
    assert!(m.global.dx.abs() < 0.3 && m.global.dy.abs() < 0.3, "{m:?}");

    let turned = render(1.0, 2f64.to_radians(), 0.0, 0.0);
    let m = pair_motion(&still, &turned);
    assert!(
        (m.global.rotation - 2f64.to_radians()).abs() < 0.25f64.to_radians(),
        "{m:?}"
    );
    assert!(m.global.log_scale.abs() < 0.006, "{m:?}");

    // A bright blob moving on a still background: no global motion, activity where it is.
    let blob = |cx: f64| -> Plane {
        let mut p = still.clone();
        for y in 0..th as usize {
            for x in 0..tw as usize {
                let d = (x as f64 + 0.5 - cx).hypot(y as f64 + 0.5 - 45.0);
                if d < 9.0 {
                    p.data[y * tw as usize + x] = 240;
                }
            }
        }
        p
    };
    let track = estimate_motion_from_thumbnails(&[blob(110.0), blob(114.0), blob(118.0)]);
    assert_eq!(track.global.len(), 2);
    for (g, (a, c)) in track
        .global
        .iter()
        .zip(track.activity.iter().zip(&track.centroid))
    {
        assert!(
            g.dx.abs() < 0.2 && g.dy.abs() < 0.2,
            "background wins: {g:?}"
        );
        assert!(*a > 0.5, "the blob is activity: {a}");
        assert!(
            (c * 160.0 - 114.0).abs() < 6.0,
            "centroid at the blob: {}",
            c * 160.0
        );
    }
    let calm = estimate_motion_from_thumbnails(&[still.clone(), still.clone()]);
    assert_eq!(calm.activity, vec![0.0]);
    assert_eq!(calm.centroid, vec![0.5]);
}

#[test]
fn motion_estimator_reads_a_panning_video() {
    // 320×180 content sliding right by 2 px per frame: 1 px per frame in 160 px thumbnails.
    let (w, h) = (320u32, 180u32);
    let pan = |i: u32, f: &mut I420Frame| {
        *f = I420Frame::filled(w as usize, h as usize, (16, 128, 128));
        for y in 0..h as usize {
            for x in 0..w as usize {
                let sx = x as f64 - 2.0 * f64::from(i);
                let v = 120.0
                    + 50.0 * libm::sin(sx / 6.0 + libm::cos(y as f64 / 9.0))
                    + 40.0 * libm::cos(y as f64 / 5.0 - sx / 23.0);
                f.y.data[y * w as usize + x] = v.clamp(16.0, 235.0) as u8;
            }
        }
    };
    let mp4 = own_mp4(12, w, h, pan, None);
    let video = open(&mp4).unwrap();
    let track = estimate_motion(&video, 12, &CancelFlag::new()).unwrap();
    assert_eq!((track.thumb_width, track.thumb_height), (160, 90));
    assert_eq!(track.global.len(), 11);
    for g in &track.global {
        assert!((g.dx - 1.0).abs() < 0.15, "{g:?}");
        assert!(g.dy.abs() < 0.15, "{g:?}");
    }
}

#[test]
fn hostile_files_fail_cleanly() {
    let opus = AudioTrack::try_from(soundtrack(&[3; 32], 24, &[]).unwrap()).unwrap();
    let mp4 = own_mp4(24, W, H, |i, f| *f = test_frame(i, W, H), Some(&opus));
    let size = Size::new(W, H);
    let moov_end = {
        let ftyp = u32::from_be_bytes(mp4[0..4].try_into().unwrap()) as usize;
        ftyp + u32::from_be_bytes(mp4[ftyp..ftyp + 4].try_into().unwrap()) as usize
    };
    // Truncations anywhere: a client error, never a panic or an internal error.
    let mut cuts: Vec<usize> = (0..moov_end + 64).step_by(7).collect();
    cuts.extend((moov_end..mp4.len()).step_by(mp4.len() / 40 + 1));
    cuts.push(mp4.len() - 1);
    for cut in cuts {
        match open(&mp4[..cut]) {
            Err(RenderError::Client(msg)) => assert!(msg.starts_with("video file: "), "{msg}"),
            Err(other) => panic!("cut at {cut}: not a client error: {other:?}"),
            Ok(v) => {
                // Some cuts only lose trailing audio; the video must then still decode.
                let r = v.for_each_frame_24(size, 0..2, &CancelFlag::new(), |_, _| Ok(()));
                assert!(
                    r.is_ok() || matches!(r, Err(RenderError::Client(_))),
                    "cut at {cut}"
                );
            }
        }
    }
    // Corrupted index bytes: every single-byte change inside `moov` is read without panics.
    let mut rng = 0x1234_5678_u64;
    for _ in 0..400 {
        rng = rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let at = 8 + (rng >> 33) as usize % (moov_end - 8);
        let mut bad = mp4.clone();
        bad[at] ^= (rng >> 20) as u8 | 1;
        if let Ok(v) = open(&bad) {
            let _ = v.frames_at_24fps();
            let _ = v.audio().map(|a| a.to_track(24));
        }
    }
    // Not MP4 at all.
    assert!(matches!(
        open(b"GIF89a not a video"),
        Err(RenderError::Client(_))
    ));
    assert!(matches!(open(&[]), Err(RenderError::Client(_))));
    // Another codec: the message names the limit.
    let mut hevc = mp4.clone();
    let stsd = hevc.windows(4).position(|w| w == b"stsd").unwrap();
    let at = stsd + hevc[stsd..].windows(4).position(|w| w == b"avc1").unwrap();
    hevc[at..at + 4].copy_from_slice(b"hvc1");
    match open(&hevc) {
        Err(RenderError::Client(msg)) => assert!(msg.contains("only H.264"), "{msg}"),
        other => panic!("{other:?}"),
    }
    // A video track whose samples are garbage: a client error at decode time.
    let video = open(&mp4).unwrap();
    let first = video.samples()[0];
    let mut garbage = mp4.clone();
    for s in video.samples() {
        let (a, n) = (s.offset as usize, s.size as usize);
        // Keep the length prefixes consistent so the demuxer accepts the samples.
        garbage[a..a + 4].copy_from_slice(&(n as u32 - 4).to_be_bytes());
        garbage[a + 4] = 0x65;
        for b in &mut garbage[a + 5..a + n] {
            *b = 0xff;
        }
    }
    assert!(first.size > 8);
    let broken = open(&garbage).unwrap();
    match broken.for_each_frame_24(size, 0..3, &CancelFlag::new(), |_, _| Ok(())) {
        Err(RenderError::Client(msg)) => assert!(msg.contains("could not be decoded"), "{msg}"),
        Ok(()) => {}
        Err(other) => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// ffmpeg-made inputs

fn have_ffmpeg(encoders: &[&str]) -> bool {
    let Ok(out) = Command::new("ffmpeg")
        .args(["-hide_banner", "-encoders"])
        .output()
    else {
        return false;
    };
    let list = String::from_utf8_lossy(&out.stdout);
    encoders
        .iter()
        .all(|e| list.lines().any(|l| l.split_whitespace().nth(1) == Some(e)))
}

fn skip(test: &str, what: &str) {
    println!("SKIP {test}: ffmpeg with {what} is not installed");
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("kinora-sources-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn path(&self, file: &str) -> String {
        self.0.join(file).to_str().unwrap().to_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ffprobe(file: &str, entries: &str) -> String {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            entries,
            "-of",
            "default=nw=1",
            file,
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn field(probe: &str, key: &str) -> String {
    probe
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key} in {probe}"))
        .to_owned()
}

/// Raw 192×108 I420 frames whose left half shows k / 16 and right half k % 16 as flat grey
/// levels 16 apart, so the frame index survives lossy coding.
fn index_frames(count: u32) -> Vec<u8> {
    let mut raw = Vec::new();
    for k in 0..count {
        let (hi, lo) = ((k / 16) as u8, (k % 16) as u8);
        for _y in 0..H {
            for x in 0..W {
                raw.push(if x < W / 2 {
                    24 + 12 * hi
                } else {
                    24 + 12 * lo
                });
            }
        }
        raw.extend(std::iter::repeat_n(128u8, (W * H / 2) as usize));
    }
    raw
}

fn read_index(f: &I420Frame) -> u32 {
    let mean = |x0: usize, x1: usize| -> f64 {
        let mut s = 0u64;
        for y in 10..H as usize - 10 {
            for x in x0..x1 {
                s += u64::from(f.y.get(x, y));
            }
        }
        s as f64 / ((H as usize - 20) * (x1 - x0)) as f64
    };
    let level = |m: f64| libm::round((m - 24.0) / 12.0) as u32;
    16 * level(mean(10, W as usize / 2 - 10)) + level(mean(W as usize / 2 + 10, W as usize - 10))
}

/// Encodes index frames at `fps` with libx264 (with B-frames) into `file`.
fn index_video(dir: &TempDir, fps: u32, frames: u32, extra: &[&str], file: &str) -> String {
    let raw = dir.path(&format!("index-{fps}.yuv"));
    std::fs::write(&raw, index_frames(frames)).unwrap();
    let out = dir.path(file);
    let rate = fps.to_string();
    let size = format!("{W}x{H}");
    let mut args = vec![
        "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", &size, "-r", &rate, "-i", &raw, "-c:v",
        "libx264", "-preset", "fast", "-bf", "3", "-g", "12", "-pix_fmt", "yuv420p",
    ];
    args.extend_from_slice(extra);
    args.push(&out);
    ffmpeg(&args);
    out
}

#[test]
fn sample_and_hold_for_30_and_60_fps_sources() {
    if !have_ffmpeg(&["libx264"]) {
        return skip("sample_and_hold_for_30_and_60_fps_sources", "libx264");
    }
    let dir = TempDir::new("hold");
    for fps in [30u32, 60] {
        let file = index_video(&dir, fps, 2 * fps, &[], &format!("hold-{fps}.mp4"));
        let video = open(&std::fs::read(&file).unwrap()).unwrap();
        assert!(video.reorders(), "libx264 with -bf 3 writes B-frames");
        assert_eq!(video.duration_s(), 2.0, "{fps} fps");
        assert_eq!(video.frames_at_24fps(), 48);
        let frames = frames_of(&video, Size::new(W, H), 0..48);
        let shown: Vec<u32> = frames.iter().map(read_index).collect();
        let want: Vec<u32> = (0..48).map(|i| i * fps / 24).collect();
        assert_eq!(
            shown, want,
            "{fps} fps: latest source frame with pts <= i/24"
        );
        // A range decoded on its own matches (seeks to a sync sample, through B-frames).
        let part: Vec<u32> = frames_of(&video, Size::new(W, H), 29..33)
            .iter()
            .map(read_index)
            .collect();
        assert_eq!(part, want[29..33]);
    }
}

#[test]
fn fragmented_and_mov_inputs_read_like_plain_mp4() {
    if !have_ffmpeg(&["libx264"]) {
        return skip("fragmented_and_mov_inputs_read_like_plain_mp4", "libx264");
    }
    let dir = TempDir::new("frag");
    let plain = index_video(&dir, 25, 50, &[], "plain.mp4");
    let want: Vec<u32> = frames_of(
        &open(&std::fs::read(&plain).unwrap()).unwrap(),
        Size::new(W, H),
        0..48,
    )
    .iter()
    .map(read_index)
    .collect();
    assert_eq!(want, (0..48).map(|i| i * 25 / 24).collect::<Vec<_>>());
    let frag = dir.path("frag.mp4");
    ffmpeg(&[
        "-i",
        &plain,
        "-c",
        "copy",
        "-movflags",
        "frag_keyframe+empty_moov+default_base_moof",
        &frag,
    ]);
    let mov = dir.path("plain.mov");
    ffmpeg(&["-i", &plain, "-c", "copy", &mov]);
    for file in [frag, mov] {
        let video = open(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(video.frames_at_24fps(), 48, "{file}");
        let got: Vec<u32> = frames_of(&video, Size::new(W, H), 0..48)
            .iter()
            .map(read_index)
            .collect();
        assert_eq!(got, want, "{file}");
    }
    // Unsupported profiles are client errors that name the limit.
    let ten = index_video(&dir, 25, 10, &["-pix_fmt", "yuv420p10le"], "ten.mp4");
    match open(&std::fs::read(&ten).unwrap()) {
        Err(RenderError::Client(msg)) => assert!(msg.contains("10-bit"), "{msg}"),
        other => panic!("10-bit: {other:?}"),
    }
}

/// A 192×108 H.264 clip of `seconds` with a 440 Hz tone encoded by `codec`.
fn clip_with_audio(dir: &TempDir, codec: &[&str], seconds: &str, file: &str) -> Vec<u8> {
    let out = dir.path(file);
    let mut args = vec![
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=192x108:rate=30",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=44100",
        "-t",
        seconds,
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
    ];
    args.extend_from_slice(codec);
    args.push(&out);
    ffmpeg(&args);
    std::fs::read(&out).unwrap()
}

/// Muxes `audio` beside `frames` frames of our own video and probes the result.
fn mux_and_probe(dir: &TempDir, frames: u32, audio: &AudioTrack, file: &str) -> (String, String) {
    let mp4 = own_mp4(frames, W, H, |i, f| *f = test_frame(i, W, H), Some(audio));
    let path = dir.path(file);
    std::fs::write(&path, &mp4).unwrap();
    let a = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "a:0",
            "-show_entries",
            "stream=codec_name,duration,sample_rate",
            "-of",
            "default=nw=1",
            &path,
        ])
        .output()
        .unwrap();
    let decode = Command::new("ffmpeg")
        .args(["-v", "error", "-i", &path, "-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        decode.status.success() && decode.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&decode.stderr)
    );
    (
        String::from_utf8_lossy(&a.stdout).into_owned(),
        ffprobe(&path, "format=duration"),
    )
}

#[test]
fn aac_is_copied_and_cut_at_an_access_unit() {
    if !have_ffmpeg(&["libx264", "aac"]) {
        return skip("aac_is_copied_and_cut_at_an_access_unit", "libx264 and aac");
    }
    let dir = TempDir::new("aac");
    let src = clip_with_audio(&dir, &["-c:a", "aac", "-b:a", "96k"], "3", "aac.mp4");
    let video = open(&src).unwrap();
    let audio = video.audio().unwrap();
    assert!(audio.is_aac(), "{}", audio.codec_name());
    // 61 frames = 2.5417 s: a fractional length, as motion control produces.
    let frames = 61;
    let track = audio.to_track(frames).unwrap();
    let AudioTrack::Aac {
        sample_rate,
        frame_samples,
        priming,
        ..
    } = &track
    else {
        panic!("AAC must be copied, got {track:?}");
    };
    assert_eq!((*sample_rate, *frame_samples), (44_100, 1024));
    assert_eq!(*priming, 1024, "ffmpeg's AAC priming is kept hidden");
    let (probe, format) = mux_and_probe(&dir, frames, &track, "aac-out.mp4");
    assert_eq!(field(&probe, "codec_name"), "aac");
    let video_s = f64::from(frames) / 24.0;
    let audio_s: f64 = field(&probe, "duration").parse().unwrap();
    assert!(
        audio_s <= video_s + 1e-6,
        "audio {audio_s} ends by the video {video_s}"
    );
    assert!(
        audio_s > video_s - 1024.0 / 44_100.0,
        "within one AAC frame: {audio_s}"
    );
    let total: f64 = field(&format, "duration").parse().unwrap();
    assert!(
        (total - video_s).abs() < 1e-3,
        "container lasts the video: {total}"
    );
}

#[test]
fn other_audio_codecs_are_transcoded_to_opus() {
    if !have_ffmpeg(&["libx264", "pcm_s16le", "libmp3lame"]) {
        return skip(
            "other_audio_codecs_are_transcoded_to_opus",
            "libx264, pcm_s16le and libmp3lame",
        );
    }
    let dir = TempDir::new("pcm");
    let cases = [
        (&["-c:a", "pcm_s16le"][..], "pcm.mov", "PCM"),
        (
            &["-c:a", "libmp3lame", "-b:a", "128k"][..],
            "mp3.mp4",
            "MPEG audio (MP3)",
        ),
        (&["-c:a", "pcm_s16le", "-ac", "1"][..], "mono.mov", "PCM"),
    ];
    for (codec, file, name) in cases {
        let src = clip_with_audio(&dir, codec, "2", file);
        let video = open(&src).unwrap();
        let audio = video.audio().unwrap();
        assert_eq!(audio.codec_name(), name);
        let frames = 45; // 1.875 s
        let track = audio.to_track(frames).unwrap();
        let AudioTrack::Opus {
            packets,
            channels,
            pre_skip,
        } = &track
        else {
            panic!("{file}: expected Opus, got {track:?}");
        };
        assert_eq!((*channels, *pre_skip), (2, 312));
        // 1.875 s = 90 000 samples: 93 whole packets (89 280) end within 20 ms before it.
        assert_eq!(packets.len(), 93, "{file}");
        let pcm = audio.decode_stereo_48k().unwrap();
        // The 440 Hz tone is there: count zero crossings over one second after priming.
        let left: Vec<f32> = pcm
            .iter()
            .step_by(2)
            .copied()
            .skip(4_800)
            .take(SAMPLE_RATE as usize)
            .collect();
        let crossings = left
            .windows(2)
            .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
            .count();
        assert!(
            (870..=890).contains(&crossings),
            "{file}: {crossings} crossings"
        );
        let (probe, format) = mux_and_probe(&dir, frames, &track, &format!("{file}-out.mp4"));
        assert_eq!(field(&probe, "codec_name"), "opus");
        let total: f64 = field(&format, "duration").parse().unwrap();
        assert!((total - 1.875).abs() < 1e-3, "{file}: {total}");
    }
}

#[test]
fn copied_samples_rebuild_the_same_file() {
    // Extend's copy path: samples and parameter sets taken from a file rebuild it exactly.
    let mp4 = own_mp4(24, W, H, |i, f| *f = test_frame(i, W, H), None);
    let video = open(&mp4).unwrap();
    let (sps, pps) = video.sps_pps();
    let nals: Vec<Vec<Vec<u8>>> = video
        .samples()
        .iter()
        .map(|s| {
            video
                .sample_nals(s)
                .unwrap()
                .into_iter()
                .map(<[u8]>::to_vec)
                .collect()
        })
        .collect();
    let track = VideoTrack {
        width: W,
        height: H,
        sps: &sps,
        pps: &pps,
        samples: video
            .samples()
            .iter()
            .zip(&nals)
            .map(|(s, n)| VideoSample {
                nals: n,
                sync: s.is_sync,
            })
            .collect(),
    };
    // Copying the samples back out gives the same file.
    assert_eq!(write_mp4(&track, None, "test").unwrap(), mp4);
}
