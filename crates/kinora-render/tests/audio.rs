//! Soundtrack synthesis and Opus encoding: determinism, lengths, fades, decode round trip, the
//! `dOps` payload, voice lines, and an ffprobe check of the packets in an Ogg Opus file.

use kinora_render::audio::{
    dops_box_payload, encode_opus, packet_count_for_frames, soundtrack, soundtrack_pcm,
    soundtrack_pcm_scene, soundtrack_scene, voice_lines_from_prompt, AudioError, OpusTrack,
    SoundtrackScene, VoiceLine, FRAME_SAMPLES, MAX_FRAMES, PRE_SKIP, SAMPLE_RATE,
};
use opus_rs::OpusDecoder;

const SEED_A: [u8; 32] = [7; 32];

fn seed_b() -> [u8; 32] {
    let mut s = SEED_A;
    s[31] ^= 1;
    s
}

fn voice(slot: u32, id: &str, quote: Option<&str>) -> VoiceLine {
    VoiceLine {
        slot,
        voice_id: id.to_owned(),
        quote: quote.map(str::to_owned),
    }
}

/// RMS of one channel (0 = left, 1 = right) over samples `[from, to)` per channel.
fn rms(pcm: &[i16], ch: usize, from: usize, to: usize) -> f64 {
    let n = (to - from) as f64;
    let sum: f64 = (from..to)
        .map(|i| {
            let x = f64::from(pcm[2 * i + ch]);
            x * x
        })
        .sum();
    (sum / n).sqrt()
}

fn rms_both(pcm: &[i16], from: usize, to: usize) -> f64 {
    (rms(pcm, 0, from, to) + rms(pcm, 1, from, to)) / 2.0
}

/// Decodes every packet and drops the pre-skip: interleaved f32 in [-1, 1]. Runs on a thread
/// with a large stack because the decoder keeps its ~180 KB state inline.
fn decode(track: &OpusTrack) -> Vec<f32> {
    let track = track.clone();
    std::thread::Builder::new()
        .stack_size(32 << 20)
        .spawn(move || decode_here(&track))
        .expect("spawn")
        .join()
        .expect("decoder thread")
}

fn decode_here(track: &OpusTrack) -> Vec<f32> {
    let mut dec = OpusDecoder::new(48_000, 2).expect("decoder");
    let mut out = vec![0f32; FRAME_SAMPLES as usize * 2];
    let mut all = Vec::new();
    for p in &track.packets {
        let n = dec
            .decode(p, FRAME_SAMPLES as usize, &mut out)
            .expect("decode");
        assert_eq!(n, FRAME_SAMPLES as usize, "every packet is 20 ms");
        all.extend_from_slice(&out[..n * 2]);
    }
    all.drain(..usize::from(track.pre_skip) * 2);
    all
}

#[test]
fn same_seed_gives_identical_pcm_and_packets() {
    let voices = [voice(1, "narrator", Some("hello world"))];
    let a = soundtrack_pcm(&SEED_A, 120, &voices);
    let b = soundtrack_pcm(&SEED_A, 120, &voices);
    assert_eq!(a, b);
    let ta = soundtrack(&SEED_A, 120, &voices).expect("encode");
    let tb = soundtrack(&SEED_A, 120, &voices).expect("encode");
    assert_eq!(ta, tb);
    // Encoding on another thread (a fresh encoder, its own stack) changes nothing either.
    let tc = std::thread::spawn(move || soundtrack(&SEED_A, 120, &voices).expect("encode"))
        .join()
        .expect("thread");
    assert_eq!(ta, tc);
}

#[test]
fn different_seed_gives_different_audio() {
    let a = soundtrack_pcm(&SEED_A, 120, &[]);
    let b = soundtrack_pcm(&seed_b(), 120, &[]);
    assert_ne!(a, b);
    let ta = encode_opus(&a).expect("encode");
    let tb = encode_opus(&b).expect("encode");
    assert_ne!(ta.packets, tb.packets);
}

#[test]
fn packet_counts_match_video_length() {
    for (frames, packets) in [(120u64, 250usize), (240, 500)] {
        let pcm = soundtrack_pcm(&SEED_A, frames, &[]);
        assert_eq!(
            pcm.len() as u64,
            frames * 2_000 * 2,
            "PCM is exactly the video"
        );
        let track = encode_opus(&pcm).expect("encode");
        assert_eq!(track.packets.len(), packets);
        assert_eq!(
            track.duration_samples(),
            frames * 2_000,
            "container duration equals the video"
        );
        assert!(track
            .packets
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 1_276));
    }
    for n in 1..=360u64 {
        let expected = (n * 50).div_ceil(24);
        assert_eq!(packet_count_for_frames(n), expected, "frames {n}");
    }
}

#[test]
fn fractional_length_ends_within_one_packet() {
    let frames = 181u64; // 7.541 666 s
    let track = soundtrack(&SEED_A, frames, &[]).expect("encode");
    assert_eq!(track.packets.len() as u64, packet_count_for_frames(frames));
    assert_eq!(track.packets.len(), 378);
    let video_samples = frames * 2_000;
    let decoded = track.duration_samples() - u64::from(PRE_SKIP);
    assert!(decoded.abs_diff(video_samples) < u64::from(FRAME_SAMPLES));
    assert!(track.duration_samples().abs_diff(video_samples) < u64::from(FRAME_SAMPLES));
}

#[test]
fn fades_and_body() {
    let pcm = soundtrack_pcm(&SEED_A, 120, &[]);
    let len = pcm.len() / 2;
    let ms = |m: usize| m * 48;
    let body = rms_both(&pcm, ms(1_000), ms(4_000));
    assert!(body > 1_500.0, "body is audible: rms {body}");
    let peak = pcm.iter().map(|&x| i32::from(x).abs()).max().unwrap_or(0);
    assert!((23_150..=23_250).contains(&peak), "peak at -3 dBFS: {peak}");

    assert_eq!(&pcm[..2], &[0, 0], "starts from silence");
    assert_eq!(&pcm[pcm.len() - 2..], &[0, 0], "ends in silence");

    // Fade-in: near silence at first, louder through the 50 ms, full after it. The music itself
    // wobbles from window to window, so only coarse comparisons are robust.
    assert!(rms_both(&pcm, 0, ms(1)) < 0.05 * body);
    assert!(rms_both(&pcm, 0, ms(10)) < 0.2 * body);
    assert!(rms_both(&pcm, 0, ms(25)) * 1.5 < rms_both(&pcm, ms(25), ms(50)));
    assert!(rms_both(&pcm, 0, ms(25)) * 2.5 < rms_both(&pcm, ms(60), ms(110)));

    // Fade-out: the second half of the last 100 ms is much quieter than the first half, and the
    // last 10 ms are near silence.
    let tail = |a: usize, b: usize| rms_both(&pcm, len - ms(a), len - ms(b));
    assert!(tail(100, 50) > 1.5 * tail(50, 0));
    assert!(tail(150, 100) > 2.5 * tail(50, 0));
    assert!(tail(10, 0) < 0.1 * body);
    assert!(tail(1, 0) < 0.02 * body);
}

#[test]
fn decode_round_trip_matches_source() {
    let voices = [voice(1, "v-one", Some("la la la"))];
    for frames in [120u64, 181] {
        let pcm = soundtrack_pcm(&SEED_A, frames, &voices);
        let track = encode_opus(&pcm).expect("encode");
        let decoded = decode(&track);
        let src_len = pcm.len() / 2;
        let dec_len = decoded.len() / 2;
        assert!(
            dec_len.abs_diff(src_len) < FRAME_SAMPLES as usize,
            "decoded {dec_len} vs source {src_len}"
        );
        let n = src_len.min(dec_len);
        for ch in 0..2 {
            let (mut sxy, mut sxx, mut syy, mut err) = (0f64, 0f64, 0f64, 0f64);
            for i in 0..n {
                let x = f64::from(pcm[2 * i + ch]) / 32_768.0;
                let y = f64::from(decoded[2 * i + ch]);
                sxy += x * y;
                sxx += x * x;
                syy += y * y;
                err += (x - y) * (x - y);
            }
            let corr = sxy / (sxx * syy).sqrt();
            let snr_db = 10.0 * (sxx / err).log10();
            assert!(corr > 0.99, "frames {frames} ch {ch}: correlation {corr}");
            assert!(snr_db > 18.0, "frames {frames} ch {ch}: SNR {snr_db} dB");
        }
    }
}

#[test]
fn dops_payload_layout() {
    let track = soundtrack(&SEED_A, 24, &[]).expect("encode");
    assert_eq!(track.pre_skip, 312);
    assert_eq!(track.sample_rate, SAMPLE_RATE);
    assert_eq!(track.channels, 2);
    assert_eq!(track.frame_samples, 960);
    assert_eq!(
        dops_box_payload(&track),
        vec![0, 2, 0x01, 0x38, 0x00, 0x00, 0xBB, 0x80, 0, 0, 0]
    );
}

#[test]
fn voice_lines_from_prompt_and_syllables() {
    let ids = vec!["alice".to_owned(), "bob".to_owned()];
    let prompt = "A quiet street. <<<voice_1>>> says: \"Hello there\" and then \
                  <<<voice_2>>> shrugs. <<<voice_3>>> \"ignored\" <<<voice_2>>>「你好世界」";
    let lines = voice_lines_from_prompt(prompt, &ids);
    assert_eq!(
        lines,
        vec![
            voice(1, "alice", Some("Hello there")),
            voice(2, "bob", None),
            voice(2, "bob", Some("你好世界")),
        ]
    );
    let counts: Vec<usize> = lines.iter().map(VoiceLine::syllables).collect();
    assert_eq!(counts, vec![4, 8, 4]);
    assert_eq!(voice(1, "x", Some("queue")).syllables(), 1);
    assert_eq!(voice(1, "x", Some("...")).syllables(), 8);
    assert!(voice_lines_from_prompt("<<<voice_0>>> <<<voice_x>>>", &ids).is_empty());
}

#[test]
fn voices_are_placed_and_panned() {
    let plain = soundtrack_pcm(&SEED_A, 120, &[]);
    let left = soundtrack_pcm(&SEED_A, 120, &[voice(1, "alice", None)]);
    let right = soundtrack_pcm(&SEED_A, 120, &[voice(2, "alice", None)]);
    // Before 0.5 s nothing differs except through peak normalisation.
    let early = |p: &[i16]| rms_both(p, 4_800, 19_200);
    assert!(early(&left) <= early(&plain) + 1.0);
    // Eight syllables of 180 ms from 0.5 s: the line covers 0.5 s .. 1.94 s.
    let (from, to) = (24_000, 24_000 + 8 * 8_640);
    let balance = |p: &[i16]| rms(p, 0, from, to) / rms(p, 1, from, to);
    let (bp, bl, br) = (balance(&plain), balance(&left), balance(&right));
    assert!(bl > 1.2 * bp, "voice_1 sits left: {bl} vs {bp}");
    assert!(br < bp / 1.2, "voice_2 sits right: {br} vs {bp}");
    // The voice is clearly audible over the music.
    let loud = |p: &[i16]| rms_both(p, from, to) / rms_both(p, 192_000, 216_000);
    assert!(
        loud(&left) > 1.3 * loud(&plain),
        "{} vs {}",
        loud(&left),
        loud(&plain)
    );
    let pitch_a = soundtrack_pcm(&SEED_A, 120, &[voice(1, "alice", None)]);
    let pitch_b = soundtrack_pcm(&SEED_A, 120, &[voice(1, "bob", None)]);
    assert_ne!(pitch_a, pitch_b, "the voice id picks the pitch");
}

#[test]
fn cuts_and_camera_speed_shape_the_sound() {
    let plain = soundtrack_pcm(&SEED_A, 120, &[]);
    let cut = soundtrack_pcm_scene(
        &SEED_A,
        120,
        &[],
        &SoundtrackScene {
            cuts: vec![60, 0, 500],
            camera_speed: Vec::new(),
        },
    );
    assert_ne!(plain, cut);
    // The 80 ms after the cut at 2.5 s carry a noise hit, loud against the rest of the clip.
    let hit = |p: &[i16]| rms_both(p, 120_000, 123_840) / rms_both(p, 48_000, 110_000);
    assert!(
        hit(&cut) > 1.5 * hit(&plain),
        "{} vs {}",
        hit(&cut),
        hit(&plain)
    );
    let fast = soundtrack_pcm_scene(
        &SEED_A,
        120,
        &[],
        &SoundtrackScene {
            cuts: Vec::new(),
            camera_speed: vec![1.0; 120],
        },
    );
    // Hiss is high-frequency energy: compare first differences.
    let hiss = |p: &[i16]| {
        let d: f64 = (48_000..192_000)
            .map(|i| {
                let x = f64::from(p[2 * i]) - f64::from(p[2 * i - 2]);
                x * x
            })
            .sum();
        d.sqrt()
    };
    assert!(hiss(&fast) > 2.0 * hiss(&plain), "fast camera whooshes");
    let track = soundtrack_scene(&SEED_A, 72, &[], &SoundtrackScene::default()).expect("encode");
    assert_eq!(track.packets.len(), 150);
}

#[test]
fn errors() {
    assert_eq!(encode_opus(&[1, 2, 3]), Err(AudioError::OddSampleCount(3)));
    assert_eq!(encode_opus(&[]), Err(AudioError::Empty));
    assert_eq!(soundtrack(&SEED_A, 0, &[]), Err(AudioError::Empty));
    assert!(matches!(
        soundtrack(&SEED_A, MAX_FRAMES + 1, &[]),
        Err(AudioError::TooLong { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// ffprobe: the packets in a minimal Ogg Opus file (RFC 7845)
// ---------------------------------------------------------------------------------------------

fn ogg_crc(data: &[u8]) -> u32 {
    let mut crc = 0u32;
    for &b in data {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
        }
    }
    crc
}

fn ogg_page(out: &mut Vec<u8>, flags: u8, granule: u64, seq: u32, packet: &[u8]) {
    let mut lacing = vec![255u8; packet.len() / 255];
    lacing.push((packet.len() % 255) as u8);
    assert!(lacing.len() <= 255, "one packet per page in this writer");
    let start = out.len();
    out.extend_from_slice(b"OggS");
    out.push(0);
    out.push(flags);
    out.extend_from_slice(&granule.to_le_bytes());
    out.extend_from_slice(&0x4B49_4E4Fu32.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.push(lacing.len() as u8);
    out.extend_from_slice(&lacing);
    out.extend_from_slice(packet);
    let crc = ogg_crc(&out[start..]);
    out[start + 22..start + 26].copy_from_slice(&crc.to_le_bytes());
}

fn ogg_opus(track: &OpusTrack, source_samples: u64) -> Vec<u8> {
    let mut head = b"OpusHead".to_vec();
    head.push(1);
    head.push(track.channels);
    head.extend_from_slice(&track.pre_skip.to_le_bytes());
    head.extend_from_slice(&track.sample_rate.to_le_bytes());
    head.extend_from_slice(&0i16.to_le_bytes());
    head.push(0);
    let mut tags = b"OpusTags".to_vec();
    let vendor = b"kinora test";
    tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
    tags.extend_from_slice(vendor);
    tags.extend_from_slice(&0u32.to_le_bytes());

    let mut out = Vec::new();
    ogg_page(&mut out, 0x02, 0, 0, &head);
    ogg_page(&mut out, 0, 0, 1, &tags);
    let last = track.packets.len() - 1;
    for (i, p) in track.packets.iter().enumerate() {
        let mut granule = (i as u64 + 1) * u64::from(track.frame_samples);
        let flags = if i == last {
            // End trimming may only shorten the stream, never lengthen it.
            granule = granule.min(u64::from(track.pre_skip) + source_samples);
            0x04
        } else {
            0
        };
        ogg_page(&mut out, flags, granule, i as u32 + 2, p);
    }
    out
}

#[test]
fn ffprobe_reads_the_packets_as_opus() {
    use std::io::Write;
    let probe = std::process::Command::new("ffprobe")
        .arg("-version")
        .output();
    if !probe.is_ok_and(|o| o.status.success()) {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED ffprobe audio check: ffprobe not installed"
        );
        return;
    }
    let track = soundtrack(&SEED_A, 120, &[voice(1, "alice", None)]).expect("encode");
    let dir = std::env::temp_dir().join(format!("kinora-audio-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("soundtrack.opus");
    std::fs::write(&path, ogg_opus(&track, 120 * 2_000)).expect("write");

    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,sample_rate,channels:format=duration",
            "-of",
            "default=noprint_wrappers=1",
        ])
        .arg(&path)
        .output()
        .expect("run ffprobe");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "ffprobe failed: {text}");
    assert!(text.contains("codec_name=opus"), "{text}");
    assert!(text.contains("sample_rate=48000"), "{text}");
    assert!(text.contains("channels=2"), "{text}");
    let duration: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("duration="))
        .and_then(|d| d.trim().parse().ok())
        .expect("duration");
    assert!((duration - 5.0).abs() < 0.021, "duration {duration}");

    // ffmpeg decodes the whole file without complaint and yields about 5 s of samples.
    let decoded = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&path)
        .args(["-f", "s16le", "-ac", "2", "-ar", "48000", "-"])
        .output()
        .expect("run ffmpeg");
    assert!(
        decoded.status.success() && decoded.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&decoded.stderr)
    );
    let samples = decoded.stdout.len() / 4;
    assert!(
        samples.abs_diff(240_000) < FRAME_SAMPLES as usize,
        "ffmpeg decoded {samples} samples"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Packet bytes are part of the engine revision: a new `opus-rs`, a feature change that lets it
/// pick SIMD paths by probing the CPU, or a synthesis change must show up here (and bump the
/// revision). Pinned on x86_64 only; other architectures are informational per the design.
#[test]
fn golden_packet_hash() {
    use sha2::{Digest, Sha256};
    let voices = [
        voice(1, "alice", Some("hello there")),
        voice(2, "bob", None),
    ];
    let scene = SoundtrackScene {
        cuts: vec![72],
        camera_speed: (0..120).map(|f| f as f32 / 120.0).collect(),
    };
    let track = soundtrack_scene(&SEED_A, 120, &voices, &scene).expect("encode");
    let mut h = Sha256::new();
    for p in &track.packets {
        h.update((p.len() as u32).to_le_bytes());
        h.update(p);
    }
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    eprintln!("audio golden packet hash: {hex}");
    if cfg!(target_arch = "x86_64") {
        assert_eq!(hex, GOLDEN_X86_64);
    }
}

const GOLDEN_X86_64: &str = "c4c2fffebec335dd4d29761a099a54d3100bbc6d90ac8531ec9228a896dd56c7";
