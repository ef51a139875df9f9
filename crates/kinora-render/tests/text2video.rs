//! Real text2video renders, read back: the project's MP4 probe, a box walker, the OpenH264
//! decoder, and (when installed) ffprobe and ffmpeg.

use std::io::Write;
use std::process::Command;

use kinora_media::video::{probe_video, Container};
use kinora_render::engine::{encode_video, CancelFlag, EnginePool, RenderError, RenderOutput};
use kinora_render::frame::I420Frame;
use kinora_render::plan::{preset_size, Aspect, Mode, StreamPlan};
use kinora_render::scene::Scene;
use kinora_render::RenderSpec;
use openh264::formats::YUVSource;

fn render(spec: &RenderSpec, threads: usize) -> RenderOutput {
    let pool = EnginePool::new(threads).unwrap();
    kinora_render::render(spec, &pool, &CancelFlag::new()).unwrap()
}

fn spec(mode: Mode, aspect: Aspect, prompt: &str) -> RenderSpec {
    RenderSpec {
        mode,
        aspect,
        ..RenderSpec::text2video(prompt)
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// (type, body) of each box in `data`, which must be tiled by boxes exactly.
fn boxes(data: &[u8]) -> Vec<([u8; 4], &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let size = be32(&data[at..]) as usize;
        assert!(
            size >= 8 && at + size <= data.len(),
            "bad box size {size} at {at}"
        );
        let kind = [data[at + 4], data[at + 5], data[at + 6], data[at + 7]];
        out.push((kind, &data[at + 8..at + size]));
        at += size;
    }
    out
}

fn child<'a>(data: &'a [u8], kind: &[u8; 4]) -> &'a [u8] {
    boxes(data)
        .into_iter()
        .find(|(k, _)| k == kind)
        .map(|(_, body)| body)
        .unwrap_or_else(|| panic!("no {} box", String::from_utf8_lossy(kind)))
}

fn video_stbl(mp4: &[u8]) -> &[u8] {
    let moov = child(mp4, b"moov");
    let trak = child(moov, b"trak");
    child(child(child(trak, b"mdia"), b"minf"), b"stbl")
}

fn sync_samples(mp4: &[u8]) -> Vec<u32> {
    let stss = child(video_stbl(mp4), b"stss");
    let n = be32(&stss[4..]) as usize;
    (0..n).map(|i| be32(&stss[8 + 4 * i..])).collect()
}

/// SPS and PPS from `avcC`, checking it holds exactly one of each.
fn parameter_sets(mp4: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let stsd = child(video_stbl(mp4), b"stsd");
    let avc1 = child(&stsd[8..], b"avc1");
    // Visual sample entry fields take 78 bytes before the child boxes.
    let avcc = child(&avc1[78..], b"avcC");
    assert_eq!(avcc[4], 0xff, "4-byte NAL lengths");
    assert_eq!(avcc[5], 0xe1, "one SPS");
    let sps_len = usize::from(u16::from_be_bytes([avcc[6], avcc[7]]));
    let sps = avcc[8..8 + sps_len].to_vec();
    let at = 8 + sps_len;
    assert_eq!(avcc[at], 1, "one PPS");
    let pps_len = usize::from(u16::from_be_bytes([avcc[at + 1], avcc[at + 2]]));
    let pps = avcc[at + 3..at + 3 + pps_len].to_vec();
    (sps, pps)
}

/// Reads Exp-Golomb and plain bits from a NAL unit's payload, emulation prevention removed.
struct Bits {
    data: Vec<u8>,
    pos: usize,
}

impl Bits {
    fn new(nal: &[u8]) -> Self {
        let mut data = Vec::new();
        let mut zeros = 0;
        for &b in &nal[1..] {
            if zeros >= 2 && b == 3 {
                zeros = 0;
                continue;
            }
            zeros = if b == 0 { zeros + 1 } else { 0 };
            data.push(b);
        }
        Self { data, pos: 0 }
    }

    fn bit(&mut self) -> u32 {
        let b = (self.data[self.pos / 8] >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        u32::from(b)
    }

    fn ue(&mut self) -> u32 {
        let mut zeros = 0;
        while self.bit() == 0 {
            zeros += 1;
        }
        let mut v = 1u32;
        for _ in 0..zeros {
            v = (v << 1) | self.bit();
        }
        v - 1
    }
}

/// Every sample as Annex B, the parameter sets in front of the first.
fn annex_b_samples(mp4: &[u8]) -> Vec<Vec<u8>> {
    let (sps, pps) = parameter_sets(mp4);
    let stbl = video_stbl(mp4);
    let stsz = child(stbl, b"stsz");
    let count = be32(&stsz[8..]) as usize;
    let sizes: Vec<usize> = (0..count)
        .map(|i| be32(&stsz[12 + 4 * i..]) as usize)
        .collect();
    let stco = child(stbl, b"stco");
    assert_eq!(be32(&stco[4..]), 1, "one chunk");
    let mut at = be32(&stco[8..]) as usize;
    let mut out = Vec::new();
    for (i, size) in sizes.into_iter().enumerate() {
        let mut sample = Vec::new();
        if i == 0 {
            for ps in [&sps, &pps] {
                sample.extend_from_slice(&[0, 0, 0, 1]);
                sample.extend_from_slice(ps);
            }
        }
        let end = at + size;
        while at < end {
            let len = be32(&mp4[at..]) as usize;
            sample.extend_from_slice(&[0, 0, 0, 1]);
            sample.extend_from_slice(&mp4[at + 4..at + 4 + len]);
            at += 4 + len;
        }
        assert_eq!(at, end, "NAL lengths tile the sample");
        out.push(sample);
    }
    out
}

/// Decodes every frame; returns (frame count, consecutive identical frames).
fn decode_all(mp4: &[u8], width: usize, height: usize) -> (usize, usize) {
    let mut decoder = openh264::decoder::Decoder::new().unwrap();
    let mut frames = 0;
    let mut repeats = 0;
    let mut previous: Option<Vec<u8>> = None;
    let mut take = |yuv: &dyn YUVSource| {
        assert_eq!(yuv.dimensions(), (width, height));
        let stride = yuv.strides().0;
        let luma: Vec<u8> = yuv
            .y()
            .chunks(stride)
            .take(height)
            .flat_map(|r| &r[..width])
            .copied()
            .collect();
        if previous.as_ref() == Some(&luma) {
            repeats += 1;
        }
        previous = Some(luma);
        frames += 1;
    };
    for sample in annex_b_samples(mp4) {
        if let Some(yuv) = decoder.decode(&sample).unwrap() {
            take(&yuv);
        }
    }
    for yuv in decoder.flush_remaining().unwrap() {
        take(&yuv);
    }
    (frames, repeats)
}

fn check_output(out: &RenderOutput, mode: Mode, aspect: Aspect) {
    let size = preset_size(mode, aspect);
    let (w, h) = (size.width as usize, size.height as usize);
    let mp4 = &out.mp4;

    let top: Vec<[u8; 4]> = boxes(mp4).into_iter().map(|(k, _)| k).collect();
    assert_eq!(top, [*b"ftyp", *b"moov", *b"mdat"], "fast-start order");

    let info =
        futures::executor::block_on(probe_video("video", &bytes::Bytes::copy_from_slice(mp4)))
            .unwrap();
    assert_eq!(info.container, Container::Mp4);
    assert_eq!(info.video_codec, "avc1");
    assert_eq!((info.width, info.height), (size.width, size.height));
    assert_eq!(info.fps, 24.0);
    assert_eq!(info.frame_count, 120);
    assert_eq!(info.duration_ms, 5000);
    assert!(!info.has_audio);

    assert_eq!(out.meta.width, size.width);
    assert_eq!(out.meta.height, size.height);
    assert_eq!(out.meta.frame_count, 120);
    assert_eq!(out.meta.duration, "5");
    assert!(!out.meta.has_audio);
    assert_eq!((out.meta.engine, out.meta.revision), ("kinora-local", "r2"));
    assert_eq!(out.meta.identity.len(), 64);

    assert_eq!(
        sync_samples(mp4),
        vec![1, 61],
        "IDR exactly at the chunk starts"
    );

    let (sps, pps) = parameter_sets(mp4);
    assert_eq!(sps[0] & 0x1f, 7);
    assert_eq!(sps[1], 100, "High profile");
    // constraint_set4/5 (frame_mbs_only, no B slices): codecs string avc1.640Cxx.
    assert_eq!(sps[2], 0x0c, "constraint flags");
    assert_eq!(sps[3], mode.level_idc(), "level");
    let mut bits = Bits::new(&pps);
    let _pps_id = bits.ue();
    let _sps_id = bits.ue();
    assert_eq!(bits.bit(), 1, "CABAC (entropy_coding_mode_flag)");

    let (frames, repeats) = decode_all(mp4, w, h);
    assert_eq!(frames, 120);
    assert_eq!(repeats, 0, "consecutive frames differ");

    let cover =
        image::load_from_memory_with_format(&out.cover_jpeg, image::ImageFormat::Jpeg).unwrap();
    assert_eq!((cover.width(), cover.height()), (size.width, size.height));
    assert!(!out.cover_jpeg.windows(4).any(|w| w == b"Exif"));
}

macro_rules! matrix_case {
    ($name:ident, $mode:expr, $aspect:expr) => {
        #[test]
        fn $name() {
            let out = render(
                &spec($mode, $aspect, "a lighthouse on a cliff at sunset"),
                2,
            );
            check_output(&out, $mode, $aspect);
        }
    };
}

matrix_case!(std_16x9, Mode::Std, Aspect::Landscape16x9);
matrix_case!(std_9x16, Mode::Std, Aspect::Portrait9x16);
matrix_case!(std_1x1, Mode::Std, Aspect::Square1x1);
matrix_case!(pro_16x9, Mode::Pro, Aspect::Landscape16x9);
matrix_case!(pro_9x16, Mode::Pro, Aspect::Portrait9x16);
matrix_case!(pro_1x1, Mode::Pro, Aspect::Square1x1);
matrix_case!(k4_9x16, Mode::K4, Aspect::Portrait9x16);
matrix_case!(k4_1x1, Mode::K4, Aspect::Square1x1);

/// 4k 16:9: the largest frame the encoder takes (32 400 macroblocks) at level 5.1.
#[test]
fn k4_16x9() {
    let out = render(
        &spec(Mode::K4, Aspect::Landscape16x9, "snow on a mountain"),
        2,
    );
    check_output(&out, Mode::K4, Aspect::Landscape16x9);
}

#[test]
fn same_spec_gives_same_bytes_for_any_pool_size() {
    let s = RenderSpec {
        duration_s: Some(3),
        ..spec(Mode::Std, Aspect::Square1x1, "neon city at night, rain")
    };
    let a = render(&s, 1);
    let b = render(&s, 2);
    let c = render(&s, 2);
    assert_eq!(a, b);
    assert_eq!(b, c);
    assert_eq!(a.meta.keyframes, vec![0, 36]);

    let other = render(
        &RenderSpec {
            prompt: "neon city at night, rain!".into(),
            ..s.clone()
        },
        2,
    );
    assert_ne!(other.mp4, a.mp4);
    assert_ne!(other.cover_jpeg, a.cover_jpeg);
    assert_ne!(other.meta.identity, a.meta.identity);

    // cfg_scale changes the identity (and so the title) but not a pixel.
    let cfg = render(
        &RenderSpec {
            cfg_scale: Some(0.9),
            ..s.clone()
        },
        2,
    );
    assert_ne!(cfg.meta.identity, a.meta.identity);
    assert_ne!(cfg.mp4, a.mp4);
    assert_eq!(cfg.cover_jpeg, a.cover_jpeg);
}

#[test]
fn sound_on_adds_one_opus_track_of_the_video_length() {
    let s = RenderSpec {
        sound: true,
        voice_ids: vec!["narrator".into()],
        ..spec(
            Mode::Std,
            Aspect::Square1x1,
            "<<<voice_1>>> \"hello there\" by the sea",
        )
    };
    let out = render(&s, 2);
    assert!(out.meta.has_audio);
    let top: Vec<[u8; 4]> = boxes(&out.mp4).into_iter().map(|(k, _)| k).collect();
    assert_eq!(top, [*b"ftyp", *b"moov", *b"mdat"]);
    let info = futures::executor::block_on(probe_video(
        "video",
        &bytes::Bytes::copy_from_slice(&out.mp4),
    ))
    .unwrap();
    assert!(info.has_audio);
    assert_eq!(info.audio_codec.as_deref(), Some("Opus"));
    assert_eq!(info.frame_count, 120);
    assert_eq!(info.duration_ms, 5000);
    let traks = boxes(child(&out.mp4, b"moov"))
        .into_iter()
        .filter(|(k, _)| k == b"trak")
        .count();
    assert_eq!(traks, 2);
    // Sound changes the identity, so the video bytes' title differs; the pixels do not.
    let silent = render(
        &RenderSpec {
            sound: false,
            voice_ids: vec![],
            ..s.clone()
        },
        2,
    );
    assert!(!silent.meta.has_audio);
    assert_eq!(silent.cover_jpeg, out.cover_jpeg);
    assert_eq!(render(&s, 1), out);
    if have("ffprobe") && have("ffmpeg") {
        let path =
            std::env::temp_dir().join(format!("kinora-render-sound-{}.mp4", std::process::id()));
        std::fs::write(&path, &out.mp4).unwrap();
        let file = path.to_str().unwrap();
        let o = Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-select_streams",
                "a",
                "-show_entries",
                "stream=codec_name,sample_rate,channels,duration",
                "-of",
                "csv=p=0",
                file,
            ])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            "opus,48000,2,5.000000"
        );
        let o = Command::new("ffmpeg")
            .args(["-v", "error", "-xerror", "-i", file, "-f", "null", "-"])
            .output()
            .unwrap();
        assert!(o.status.success());
        assert_eq!(String::from_utf8_lossy(&o.stderr).trim(), "");
        let _ = std::fs::remove_file(&path);
    }
}

#[test]
fn a_set_cancel_flag_stops_the_render() {
    let pool = EnginePool::new(2).unwrap();
    let cancel = CancelFlag::new();
    cancel.cancel();
    let err = kinora_render::render(&RenderSpec::text2video("x"), &pool, &cancel).unwrap_err();
    assert!(matches!(err, RenderError::Cancelled), "{err}");
    assert!(!err.is_client_error());
}

#[test]
fn cancelling_mid_render_stops_within_a_frame() {
    let pool = EnginePool::new(2).unwrap();
    let size = preset_size(Mode::Std, Aspect::Square1x1);
    let plan = StreamPlan::new(Mode::Std, size, 120, &[]);
    let scene = Scene::new(1, "x", size.width as usize, size.height as usize);
    let cancel = CancelFlag::new();
    let drawn = std::sync::atomic::AtomicU32::new(0);
    let draw = |i: u32, buf: &mut I420Frame| {
        drawn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if i == 10 {
            cancel.cancel();
        }
        scene.draw(i, buf);
    };
    let err = encode_video(&plan, &pool, &cancel, &draw).unwrap_err();
    assert!(matches!(err, RenderError::Cancelled), "{err}");
    assert!(drawn.into_inner() < 120);
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn ffprobe_cross_check() {
    if !have("ffprobe") || !have("ffmpeg") {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED ffprobe cross-check: ffprobe not installed"
        );
        return;
    }
    let out = render(
        &spec(
            Mode::Std,
            Aspect::Landscape16x9,
            "a forest stream in autumn",
        ),
        2,
    );
    let dir = std::env::temp_dir().join(format!("kinora-render-ffprobe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("out.mp4");
    std::fs::write(&path, &out.mp4).unwrap();
    let cover_path = dir.join("cover.jpg");
    std::fs::write(&cover_path, &out.cover_jpeg).unwrap();

    let run = |args: &[&str]| {
        let o = Command::new(args[0]).args(&args[1..]).output().unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        (
            String::from_utf8(o.stdout).unwrap(),
            String::from_utf8(o.stderr).unwrap(),
        )
    };
    let file = path.to_str().unwrap();
    let (stream, _) = run(&[
        "ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames", "-show_entries",
        "stream=codec_name,profile,codec_tag_string,level,pix_fmt,width,height,r_frame_rate,nb_frames,nb_read_frames,duration,color_range,color_space,color_primaries,color_transfer",
        "-of", "json", file,
    ]);
    // Shown with --nocapture, for the record.
    let _ = writeln!(std::io::stderr(), "ffprobe video stream: {stream}");
    let json: serde_json::Value = serde_json::from_str(&stream).unwrap();
    let s = &json["streams"][0];
    let expect = [
        ("codec_name", "h264"),
        ("profile", "High"),
        ("codec_tag_string", "avc1"),
        ("pix_fmt", "yuv420p"),
        ("r_frame_rate", "24/1"),
        ("nb_frames", "120"),
        ("nb_read_frames", "120"),
        ("duration", "5.000000"),
        ("color_range", "tv"),
        ("color_space", "bt709"),
        ("color_primaries", "bt709"),
        ("color_transfer", "bt709"),
    ];
    for (key, value) in expect {
        assert_eq!(s[key].as_str(), Some(value), "{key} in {stream}");
    }
    assert_eq!(s["level"].as_i64(), Some(31));
    assert_eq!(
        (s["width"].as_i64(), s["height"].as_i64()),
        (Some(1280), Some(720))
    );

    let (format, _) = run(&[
        "ffprobe",
        "-v",
        "error",
        "-show_entries",
        "format=duration:format_tags=title",
        "-of",
        "json",
        file,
    ]);
    let json: serde_json::Value = serde_json::from_str(&format).unwrap();
    assert_eq!(json["format"]["duration"].as_str(), Some("5.000000"));
    let title = json["format"]["tags"]["title"].as_str().unwrap_or_default();
    assert!(title.starts_with("kinora-local r2"), "{format}");

    let (packets, _) = run(&[
        "ffprobe",
        "-v",
        "error",
        "-select_streams",
        "v:0",
        "-show_entries",
        "packet=pts_time,flags",
        "-of",
        "csv=p=0",
        file,
    ]);
    let keys: Vec<&str> = packets.lines().filter(|l| l.contains('K')).collect();
    assert_eq!(keys.len(), 2, "{packets}");
    assert!(
        keys[0].starts_with("0.000000,K") && keys[1].starts_with("2.500000,K"),
        "{keys:?}"
    );

    let (audio, _) = run(&[
        "ffprobe",
        "-v",
        "error",
        "-select_streams",
        "a",
        "-show_entries",
        "stream=codec_name",
        "-of",
        "csv=p=0",
        file,
    ]);
    assert_eq!(audio.trim(), "", "no audio stream");

    let (stdout, stderr) = run(&[
        "ffmpeg", "-v", "error", "-xerror", "-i", file, "-f", "null", "-",
    ]);
    assert_eq!(
        (stdout.trim(), stderr.trim()),
        ("", ""),
        "full decode is clean"
    );

    let (cover, _) = run(&[
        "ffprobe",
        "-v",
        "error",
        "-show_entries",
        "stream=codec_name,width,height",
        "-of",
        "csv=p=0",
        cover_path.to_str().unwrap(),
    ]);
    assert_eq!(cover.trim(), "mjpeg,1280,720");
    let _ = std::fs::remove_dir_all(&dir);
}
