//! The procedural soundtrack (design §3.8) and its Opus encoding (§2.5).
//!
//! Everything here is deterministic: randomness comes from an in-house SplitMix64 seeded by
//! SHA-256 of the render seed and a label, transcendental functions come from `libm`, and the
//! Opus encoder is the pure-Rust `opus-rs` built without `std`, which pins its SIMD choice at
//! compile time instead of probing the CPU at run time (an AVX/FMA path would round
//! differently and make packets depend on the machine).
//!
//! Output contract: 48 kHz stereo, 20 ms packets (960 samples per channel), 128 kbit/s, pre-skip
//! 312, a 50 ms fade-in and a 100 ms fade-out, peak-normalised to −3 dBFS.

use opus_rs::{Application, OpusEncoder};
use sha2::{Digest, Sha256};

/// Output sample rate in Hz.
pub const SAMPLE_RATE: u32 = 48_000;
/// Output channel count (interleaved left, right).
pub const CHANNELS: u8 = 2;
/// Samples per channel in one 20 ms Opus packet.
pub const FRAME_SAMPLES: u32 = 960;
/// The encoder's lookahead at 48 kHz (6.5 ms), which decoders drop from the start.
pub const PRE_SKIP: u16 = 312;
/// Target Opus bitrate.
pub const BITRATE_BPS: i32 = 128_000;
/// Video frame rate the soundtrack length is derived from.
pub const VIDEO_FPS: u64 = 24;
/// Audio samples per channel in one video frame (48 000 / 24, an exact integer).
pub const SAMPLES_PER_VIDEO_FRAME: u64 = SAMPLE_RATE as u64 / VIDEO_FPS;
/// Longest soundtrack rendered (five minutes). Real soundtracks last 3–15 s (extend adds 5 s);
/// the cap keeps a corrupt frame count from turning into a multi-gigabyte allocation (synthesis
/// holds about 32 bytes per sample frame).
pub const MAX_FRAMES: u64 = 300 * VIDEO_FPS;

const RATE: f64 = SAMPLE_RATE as f64;
const FADE_IN_SAMPLES: usize = 2_400;
const FADE_OUT_SAMPLES: usize = 4_800;
/// −3 dBFS as a linear peak.
const PEAK_TARGET: f64 = 0.707_945_784_384_137_9;
/// Largest packet RFC 6716 allows; the encoder never needs more.
const MAX_PACKET_BYTES: usize = 1_276;
const TAU: f64 = core::f64::consts::TAU;
const ENCODER_STACK_BYTES: usize = 32 << 20;

/// Errors from building or encoding a soundtrack.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AudioError {
    /// Interleaved stereo needs an even number of samples.
    #[error("interleaved stereo PCM must have an even sample count, got {0}")]
    OddSampleCount(usize),
    /// An audio track is either absent or non-empty; never a zero-length track.
    #[error("cannot encode an empty soundtrack")]
    Empty,
    /// The requested length exceeds [`MAX_FRAMES`].
    #[error("soundtrack of {frames} frames exceeds the limit of {max} frames")]
    TooLong { frames: u64, max: u64 },
    /// The Opus encoder refused its settings or a frame.
    #[error("opus encoder: {0}")]
    Encoder(&'static str),
    /// The encoder's thread could not be started or did not finish.
    #[error("opus encoder thread: {0}")]
    Thread(String),
}

/// An encoded Opus track, ready for the muxer's `Opus` sample entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpusTrack {
    /// One Opus packet per 20 ms, each decoding to [`FRAME_SAMPLES`] samples per channel.
    pub packets: Vec<Vec<u8>>,
    /// Samples per channel to drop from the start of the decoded stream.
    pub pre_skip: u16,
    pub sample_rate: u32,
    pub channels: u8,
    pub frame_samples: u32,
}

impl OpusTrack {
    /// Duration in samples per channel as the container sees it (packets × 960).
    pub fn duration_samples(&self) -> u64 {
        self.packets.len() as u64 * u64::from(self.frame_samples)
    }
}

/// One placeholder voice line (§3.8): an honest babble, not speech.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoiceLine {
    /// N of the `<<<voice_N>>>` tag (1-based). Odd N sits left of centre, even N right.
    pub slot: u32,
    /// The `voice_id` from `voice_list`; it picks the pitch.
    pub voice_id: String,
    /// The quoted text after the tag, if there was one; it sets the syllable count.
    pub quote: Option<String>,
}

impl VoiceLine {
    /// Number of babble syllables: vowel groups in the quote (each CJK, kana or Hangul character
    /// counts as one, since those scripts write a syllable per character), or 8 without a quote
    /// or when the quote has nothing countable.
    pub fn syllables(&self) -> usize {
        match self.quote.as_deref().map(count_syllables) {
            Some(n) if n > 0 => n,
            _ => 8,
        }
    }
}

/// Scene facts that shape the soundtrack beyond the seed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SoundtrackScene {
    /// Video frames at which a new shot starts (multi-shot cuts). Frame 0, duplicates and frames
    /// past the end are ignored.
    pub cuts: Vec<u64>,
    /// Camera speed per video frame: 0.0 still, 1.0 the fastest preset move. Frames past the end
    /// of the list count as still; values are clamped to 0..=1.
    pub camera_speed: Vec<f32>,
}

/// Number of 20 ms packets for `video_frames` at 24 fps: ⌈frames / 24 × 50⌉, exactly 50 per second
/// for whole seconds.
pub fn packet_count_for_frames(video_frames: u64) -> u64 {
    video_frames
        .saturating_mul(SAMPLES_PER_VIDEO_FRAME)
        .div_ceil(u64::from(FRAME_SAMPLES))
}

/// Extracts the voice lines of a prompt: each `<<<voice_N>>>` whose N names an entry of
/// `voice_ids` (N is 1-based), in prompt order, with the first quoted text before the next tag.
pub fn voice_lines_from_prompt(prompt: &str, voice_ids: &[String]) -> Vec<VoiceLine> {
    const OPEN: &str = "<<<voice_";
    const CLOSE: &str = ">>>";
    let mut lines = Vec::new();
    let mut rest = prompt;
    while let Some(at) = rest.find(OPEN) {
        let after_open = &rest[at + OPEN.len()..];
        let Some(close) = after_open.find(CLOSE) else {
            break;
        };
        let number = &after_open[..close];
        let body_start = &after_open[close + CLOSE.len()..];
        let body = match body_start.find("<<<") {
            Some(next) => &body_start[..next],
            None => body_start,
        };
        let slot = if number.bytes().all(|b| b.is_ascii_digit()) {
            number.parse::<u32>().ok()
        } else {
            None
        };
        if let Some(slot) = slot {
            let voice = usize::try_from(slot)
                .ok()
                .and_then(|n| n.checked_sub(1))
                .and_then(|i| voice_ids.get(i));
            if let Some(voice_id) = voice {
                lines.push(VoiceLine {
                    slot,
                    voice_id: voice_id.clone(),
                    quote: first_quote(body).map(str::to_owned),
                });
            }
        }
        rest = body_start;
    }
    lines
}

fn first_quote(text: &str) -> Option<&str> {
    const PAIRS: [(char, &[char]); 5] = [
        ('"', &['"', '\u{201D}']),
        ('\u{201C}', &['\u{201D}', '"']),
        ('\u{300C}', &['\u{300D}']),
        ('\u{300E}', &['\u{300F}']),
        ('\u{FF02}', &['\u{FF02}']),
    ];
    let (start, open, closers) = text.char_indices().find_map(|(i, c)| {
        PAIRS
            .iter()
            .find(|(o, _)| *o == c)
            .map(|(o, closers)| (i, *o, *closers))
    })?;
    let inner = &text[start + open.len_utf8()..];
    let end = inner
        .find(|c: char| closers.contains(&c))
        .unwrap_or(inner.len());
    Some(&inner[..end])
}

fn count_syllables(text: &str) -> usize {
    let mut count = 0;
    let mut in_vowel = false;
    for c in text.chars() {
        if is_syllabic_char(c) {
            count += 1;
            in_vowel = false;
        } else if is_vowel(c) {
            if !in_vowel {
                count += 1;
            }
            in_vowel = true;
        } else {
            in_vowel = false;
        }
    }
    count
}

fn is_vowel(c: char) -> bool {
    c.to_lowercase().any(|l| {
        matches!(
            l,
            'a' | 'e'
                | 'i'
                | 'o'
                | 'u'
                | 'y'
                | 'à'..='å'
                | 'æ'
                | 'è'..='ï'
                | 'ò'..='ö'
                | 'ø'..='ü'
                | 'ý'
                | 'ÿ'
        )
    })
}

/// Scripts that write one syllable per character: kana, CJK ideographs, Hangul syllables.
fn is_syllabic_char(c: char) -> bool {
    matches!(
        c,
        '\u{3041}'..='\u{30FF}' | '\u{3400}'..='\u{4DBF}' | '\u{4E00}'..='\u{9FFF}' | '\u{AC00}'..='\u{D7A3}'
    )
}

/// The procedural soundtrack as interleaved stereo 48 kHz PCM, exactly `duration_frames / 24`
/// seconds long, for a clip with a single shot and a still camera.
pub fn soundtrack_pcm(seed: &[u8; 32], duration_frames: u64, voices: &[VoiceLine]) -> Vec<i16> {
    soundtrack_pcm_scene(seed, duration_frames, voices, &SoundtrackScene::default())
}

/// [`soundtrack_pcm`] with cuts and camera speed. Lengths above [`MAX_FRAMES`] are cut to it;
/// [`soundtrack_scene`] refuses them instead.
pub fn soundtrack_pcm_scene(
    seed: &[u8; 32],
    duration_frames: u64,
    voices: &[VoiceLine],
    scene: &SoundtrackScene,
) -> Vec<i16> {
    let frames = duration_frames.min(MAX_FRAMES);
    // Bounded by MAX_FRAMES, so this fits usize on every supported target.
    let len = (frames * SAMPLES_PER_VIDEO_FRAME) as usize;
    let mut mix = Stereo::new(len);
    let shots = shot_bounds(frames, &scene.cuts);

    add_pad(&mut mix, seed, &shots);
    add_texture(&mut mix, seed, &scene.camera_speed);
    add_cut_hits(&mut mix, seed, &shots);
    add_voices(&mut mix, seed, voices);
    normalise(&mut mix);
    apply_fades(&mut mix);
    mix.to_i16()
}

/// Encodes interleaved stereo 48 kHz PCM as 20 ms Opus packets at 128 kbit/s.
///
/// The packet count is ⌈samples / 960⌉, which for a soundtrack of N video frames is
/// ⌈N / 24 × 50⌉. The PCM is fed from its first sample, so decoded sample k after the 312-sample
/// pre-skip is source sample k (no A/V offset); the last packet is padded with silence. With a
/// whole number of packets (whole seconds) the final 312 source samples are still in the
/// encoder's lookahead when the stream ends: they lie inside the 100 ms fade-out, under 7 % of
/// full gain, and the container duration (packets × 960) still equals the video exactly.
pub fn encode_opus(pcm: &[i16]) -> Result<OpusTrack, AudioError> {
    if pcm.len() & 1 != 0 {
        return Err(AudioError::OddSampleCount(pcm.len()));
    }
    if pcm.is_empty() {
        return Err(AudioError::Empty);
    }
    // opus-rs without `std` keeps its ~300 KB state inline and moves it by value, and builds
    // without optimisation add more stack copies on top. The encoder therefore runs on its own
    // thread with a stack big enough for any profile instead of relying on the caller's (a rayon
    // worker has 2 MB). Only address space is reserved; untouched pages cost nothing.
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("kinora-opus".to_owned())
            .stack_size(ENCODER_STACK_BYTES)
            .spawn_scoped(scope, || encode_frames(pcm))
            .map_err(|e| AudioError::Thread(e.to_string()))?
            .join()
            .map_err(|_| AudioError::Thread("the encoder thread panicked".to_owned()))?
    })
}

fn encode_frames(pcm: &[i16]) -> Result<OpusTrack, AudioError> {
    let frame_len = FRAME_SAMPLES as usize * usize::from(CHANNELS);
    let mut encoder = OpusEncoder::new(
        SAMPLE_RATE as i32,
        usize::from(CHANNELS),
        Application::Audio,
    )
    .map_err(AudioError::Encoder)?;
    // Every knob is set explicitly so a changed crate default cannot silently change bytes.
    encoder.bitrate_bps = BITRATE_BPS;
    encoder.complexity = 10;
    encoder.use_cbr = false;
    encoder.use_inband_fec = false;
    encoder.packet_loss_perc = 0;

    let mut packets = Vec::with_capacity(pcm.len().div_ceil(frame_len));
    let mut frame = vec![0i16; frame_len];
    let mut out = [0u8; MAX_PACKET_BYTES];
    for chunk in pcm.chunks(frame_len) {
        frame[..chunk.len()].copy_from_slice(chunk);
        frame[chunk.len()..].fill(0);
        let n = encoder
            .encode_i16(&frame, FRAME_SAMPLES as usize, &mut out)
            .map_err(AudioError::Encoder)?;
        packets.push(out[..n].to_vec());
    }
    Ok(OpusTrack {
        packets,
        pre_skip: PRE_SKIP,
        sample_rate: SAMPLE_RATE,
        channels: CHANNELS,
        frame_samples: FRAME_SAMPLES,
    })
}

/// The encoded soundtrack for a single-shot clip with a still camera.
pub fn soundtrack(
    seed: &[u8; 32],
    frame_count: u64,
    voices: &[VoiceLine],
) -> Result<OpusTrack, AudioError> {
    soundtrack_scene(seed, frame_count, voices, &SoundtrackScene::default())
}

/// The encoded soundtrack with cuts and camera speed.
pub fn soundtrack_scene(
    seed: &[u8; 32],
    frame_count: u64,
    voices: &[VoiceLine],
    scene: &SoundtrackScene,
) -> Result<OpusTrack, AudioError> {
    if frame_count > MAX_FRAMES {
        return Err(AudioError::TooLong {
            frames: frame_count,
            max: MAX_FRAMES,
        });
    }
    encode_opus(&soundtrack_pcm_scene(seed, frame_count, voices, scene))
}

/// The payload of the `dOps` box (OpusSpecificBox, "Encapsulation of Opus in ISO Base Media
/// File Format" §4.3.2), without the box header: 11 bytes, big-endian.
pub fn dops_box_payload(track: &OpusTrack) -> Vec<u8> {
    let mut p = Vec::with_capacity(11);
    p.push(0); // Version
    p.push(track.channels); // OutputChannelCount
    p.extend_from_slice(&track.pre_skip.to_be_bytes());
    p.extend_from_slice(&track.sample_rate.to_be_bytes()); // InputSampleRate
    p.extend_from_slice(&0i16.to_be_bytes()); // OutputGain
    p.push(0); // ChannelMappingFamily: mono/stereo, no mapping table follows
    p
}

// ---------------------------------------------------------------------------------------------
// Synthesis
// ---------------------------------------------------------------------------------------------

struct Stereo {
    l: Vec<f64>,
    r: Vec<f64>,
}

impl Stereo {
    fn new(len: usize) -> Self {
        Self {
            l: vec![0.0; len],
            r: vec![0.0; len],
        }
    }

    fn len(&self) -> usize {
        self.l.len()
    }

    fn to_i16(&self) -> Vec<i16> {
        let mut out = Vec::with_capacity(self.len() * 2);
        for (l, r) in self.l.iter().zip(&self.r) {
            out.push(to_i16(*l));
            out.push(to_i16(*r));
        }
        out
    }
}

fn to_i16(x: f64) -> i16 {
    // Float-to-int casts saturate in Rust; the clamp only states the intended range.
    (x * 32_767.0).round().clamp(-32_768.0, 32_767.0) as i16
}

/// The engine's fixed-forever generator (SplitMix64).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 bits.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [-1, 1).
    fn bipolar(&mut self) -> f64 {
        self.unit() * 2.0 - 1.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

fn sub_seed(seed: &[u8; 32], label: &str, index: u64) -> u64 {
    let mut h = Sha256::new();
    h.update(b"kinora-local/audio/v1");
    h.update((label.len() as u32).to_le_bytes());
    h.update(label.as_bytes());
    h.update(index.to_le_bytes());
    h.update(seed);
    first_u64(&h.finalize())
}

fn first_u64(digest: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(b)
}

fn rng(seed: &[u8; 32], label: &str, index: u64) -> SplitMix64 {
    SplitMix64(sub_seed(seed, label, index))
}

/// Shot boundaries in samples: `[start, end)` per shot.
fn shot_bounds(frames: u64, cuts: &[u64]) -> Vec<(usize, usize)> {
    let mut starts: Vec<u64> = cuts
        .iter()
        .copied()
        .filter(|&c| c > 0 && c < frames)
        .collect();
    starts.sort_unstable();
    starts.dedup();
    starts.insert(0, 0);
    let to_sample = |f: u64| (f * SAMPLES_PER_VIDEO_FRAME) as usize;
    let end = to_sample(frames);
    starts
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            let next = starts.get(i + 1).map_or(end, |&n| to_sample(n));
            (to_sample(s), next)
        })
        .filter(|(s, e)| e > s)
        .collect()
}

fn midi_hz(note: f64) -> f64 {
    440.0 * libm::pow(2.0, (note - 69.0) / 12.0)
}

/// Adds `gain * sin(phase0 + w·n)` to every `buf[n]`.
/// A rotation recurrence is cheap per sample; re-anchoring with libm every block keeps rounding
/// drift negligible and the result identical everywhere.
fn add_sine(buf: &mut [f64], freq: f64, phase0: f64, gain: f64) {
    const BLOCK: usize = 1_024;
    let w = TAU * freq / RATE;
    let (sw, cw) = libm::sincos(w);
    for (b, block) in buf.chunks_mut(BLOCK).enumerate() {
        let base = b * BLOCK;
        let (mut s, mut c) = libm::sincos(phase0 + w * base as f64);
        for x in block.iter_mut() {
            *x += gain * s;
            let ns = s * cw + c * sw;
            c = c * cw - s * sw;
            s = ns;
        }
    }
}

/// A chord of three notes with three partials each under a slow tremolo; a new chord per shot.
fn add_pad(mix: &mut Stereo, seed: &[u8; 32], shots: &[(usize, usize)]) {
    const QUALITIES: [[f64; 3]; 3] = [[0.0, 4.0, 7.0], [0.0, 3.0, 7.0], [0.0, 5.0, 7.0]];
    const PARTIALS: [(f64, f64); 3] = [(1.0, 1.0), (2.0, 0.35), (3.0, 0.15)];
    const PANS: [f64; 3] = [-0.35, 0.0, 0.35];
    // Short ramps at internal shot boundaries so the chord change never clicks.
    const EDGE: usize = 480;
    let mut note_buf = Vec::new();
    for (k, &(start, end)) in shots.iter().enumerate() {
        let mut r = rng(seed, "pad", k as u64);
        let root = 45.0 + r.below(8) as f64; // A2..E3
        let quality = QUALITIES[r.below(3) as usize];
        let trem_hz = 0.15 + 0.35 * r.unit();
        let trem_phase = TAU * r.unit();
        let len = end - start;
        let first = k == 0;
        let last = k + 1 == shots.len();
        let edge = move |i: usize| {
            let up = if first {
                1.0
            } else {
                (i as f64 / EDGE as f64).min(1.0)
            };
            let down = if last {
                1.0
            } else {
                ((len - i) as f64 / EDGE as f64).min(1.0)
            };
            up * down
        };
        let trem: Vec<f64> = (0..len)
            .map(|i| {
                let t = (start + i) as f64 / RATE;
                (1.0 - 0.25 * (0.5 + 0.5 * libm::sin(TAU * trem_hz * t + trem_phase))) * edge(i)
            })
            .collect();
        for (n, semis) in quality.iter().enumerate() {
            note_buf.clear();
            note_buf.resize(len, 0.0);
            let f0 = midi_hz(root + semis);
            for &(mult, amp) in &PARTIALS {
                let phase = TAU * r.unit();
                // A few cents of detune per partial keeps the chord from sounding static.
                let detune = 1.0 + 0.0015 * r.bipolar();
                add_sine(&mut note_buf, f0 * mult * detune, phase, amp / 3.0);
            }
            let (gl, gr) = pan_gains(PANS[n]);
            for (i, (v, t)) in note_buf.iter().zip(&trem).enumerate() {
                let g = v * t;
                mix.l[start + i] += g * gl;
                mix.r[start + i] += g * gr;
            }
        }
    }
}

/// Equal-power pan, -1 left .. 1 right.
fn pan_gains(pan: f64) -> (f64, f64) {
    let angle = (pan.clamp(-1.0, 1.0) + 1.0) * core::f64::consts::FRAC_PI_4;
    (libm::cos(angle), libm::sin(angle))
}

/// Low-pass-filtered noise whose level and brightness follow the camera speed.
fn add_texture(mix: &mut Stereo, seed: &[u8; 32], camera_speed: &[f32]) {
    let speed_at = |f: usize| -> f64 {
        camera_speed.get(f).map_or(0.0, |&s| {
            if s.is_finite() {
                f64::from(s).clamp(0.0, 1.0)
            } else {
                0.0
            }
        })
    };
    let per_frame = SAMPLES_PER_VIDEO_FRAME as usize;
    let mut noise_l = rng(seed, "texture", 0);
    let mut noise_r = rng(seed, "texture", 1);
    let (mut yl, mut yr) = (0.0f64, 0.0f64);
    let frames = mix.len().div_ceil(per_frame);
    let smoothing = |speed: f64| 1.0 - libm::exp(-TAU * (300.0 + 2_700.0 * speed) / RATE);
    for f in 0..frames {
        let s0 = speed_at(f);
        let s1 = speed_at(f + 1);
        let (a0, a1) = (smoothing(s0), smoothing(s1));
        for j in 0..per_frame {
            let i = f * per_frame + j;
            if i >= mix.len() {
                break;
            }
            // Interpolated within the frame so level changes never step audibly.
            let frac = j as f64 / per_frame as f64;
            let speed = s0 + (s1 - s0) * frac;
            let a = a0 + (a1 - a0) * frac;
            let level = 0.08 + 0.5 * speed;
            yl += a * (noise_l.bipolar() - yl);
            yr += a * (noise_r.bipolar() - yr);
            mix.l[i] += yl * level;
            mix.r[i] += yr * level;
        }
    }
}

/// An 80 ms decaying noise hit at every cut.
fn add_cut_hits(mix: &mut Stereo, seed: &[u8; 32], shots: &[(usize, usize)]) {
    const HIT: usize = 3_840;
    for (k, &(start, _)) in shots.iter().enumerate().skip(1) {
        let mut r = rng(seed, "cut", k as u64);
        for i in 0..HIT.min(mix.len() - start) {
            // Decays by about 40 dB over the 80 ms.
            let env = 1.5 * libm::exp(-(i as f64) / (HIT as f64 / 4.6));
            mix.l[start + i] += env * r.bipolar();
            mix.r[start + i] += env * r.bipolar();
        }
    }
}

/// (F1, F2) in Hz for a, e, i, o, u.
const VOWELS: [(f64, f64); 5] = [
    (730.0, 1_090.0),
    (530.0, 1_840.0),
    (270.0, 2_290.0),
    (570.0, 840.0),
    (300.0, 870.0),
];
const SYLLABLE: usize = 6_720; // 140 ms
const SYLLABLE_GAP: usize = 1_920; // 40 ms
const VOICE_START: usize = 24_000; // 0.5 s

/// A resonant band-pass biquad (constant 0 dB peak gain), direct form I.
#[derive(Default)]
struct BandPass {
    b0: f64,
    b2: f64,
    a1: f64,
    a2: f64,
    x1: f64,
    x2: f64,
    y1: f64,
    y2: f64,
}

impl BandPass {
    fn tune(&mut self, freq: f64, q: f64) {
        let (s, c) = libm::sincos(TAU * freq / RATE);
        let alpha = s / (2.0 * q);
        let a0 = 1.0 + alpha;
        self.b0 = alpha / a0;
        self.b2 = -alpha / a0;
        self.a1 = -2.0 * c / a0;
        self.a2 = (1.0 - alpha) / a0;
    }

    fn run(&mut self, x: f64) -> f64 {
        let y = self.b0 * x + self.b2 * self.x2 - self.a1 * self.y1 - self.a2 * self.y2;
        self.x2 = self.x1;
        self.x1 = x;
        self.y2 = self.y1;
        self.y1 = y;
        y
    }
}

/// PolyBLEP correction that removes most of the aliasing of a naive sawtooth's jump.
fn poly_blep(t: f64, dt: f64) -> f64 {
    if t < dt {
        let x = t / dt;
        x + x - x * x - 1.0
    } else if t > 1.0 - dt {
        let x = (t - 1.0) / dt;
        x * x + x + x + 1.0
    } else {
        0.0
    }
}

fn voice_pitch(voice_id: &str) -> f64 {
    let mut h = Sha256::new();
    h.update(b"kinora-local/audio/voice-pitch");
    h.update(voice_id.as_bytes());
    100.0 + (first_u64(&h.finalize()) % 141) as f64
}

/// Babble lines from 0.5 s, one after another, each syllable a formant-filtered sawtooth.
fn add_voices(mix: &mut Stereo, seed: &[u8; 32], voices: &[VoiceLine]) {
    let mut cursor = VOICE_START;
    for (line_index, line) in voices.iter().enumerate() {
        if cursor >= mix.len() {
            break;
        }
        let mut r = rng(seed, "voice", line_index as u64);
        let base = voice_pitch(&line.voice_id);
        let pan = if line.slot % 2 == 1 { -0.45 } else { 0.45 };
        let (gl, gr) = pan_gains(pan);
        let mut f1 = BandPass::default();
        let mut f2 = BandPass::default();
        let mut phase = 0.0f64;
        for _ in 0..line.syllables() {
            let (v1, v2) = VOWELS[r.below(VOWELS.len() as u64) as usize];
            f1.tune(v1, 6.0);
            f2.tune(v2, 9.0);
            // Speech-like inflection: each syllable sits up to ±6 % off the voice's pitch.
            let pitch = base * (1.0 + 0.06 * r.bipolar());
            let dt = pitch / RATE;
            for i in 0..SYLLABLE + SYLLABLE_GAP {
                let at = cursor + i;
                if at >= mix.len() {
                    break;
                }
                let source = if i < SYLLABLE {
                    let saw = 2.0 * phase - 1.0 - poly_blep(phase, dt);
                    phase += dt;
                    if phase >= 1.0 {
                        phase -= 1.0;
                    }
                    saw * syllable_envelope(i)
                } else {
                    0.0
                };
                // The filters keep ringing briefly into the gap, like a real vocal tract.
                let v = 5.0 * f1.run(source) + 3.5 * f2.run(source);
                mix.l[at] += v * gl;
                mix.r[at] += v * gr;
            }
            cursor += SYLLABLE + SYLLABLE_GAP;
        }
    }
}

/// 10 ms raised-cosine attack and 25 ms release inside a 140 ms syllable.
fn syllable_envelope(i: usize) -> f64 {
    const ATTACK: usize = 480;
    const RELEASE: usize = 1_200;
    if i < ATTACK {
        0.5 - 0.5 * libm::cos(core::f64::consts::PI * i as f64 / ATTACK as f64)
    } else if i + RELEASE > SYLLABLE {
        let k = SYLLABLE - i;
        0.5 - 0.5 * libm::cos(core::f64::consts::PI * k as f64 / RELEASE as f64)
    } else {
        1.0
    }
}

fn normalise(mix: &mut Stereo) {
    let peak = mix
        .l
        .iter()
        .chain(&mix.r)
        .fold(0.0f64, |m, &x| m.max(x.abs()));
    if peak > 0.0 {
        let g = PEAK_TARGET / peak;
        for x in mix.l.iter_mut().chain(mix.r.iter_mut()) {
            *x *= g;
        }
    }
}

/// Linear ramps: up from silence over the first 50 ms, down to silence over the last 100 ms,
/// so the first sample and the last one are exactly zero.
fn apply_fades(mix: &mut Stereo) {
    let len = mix.len();
    for i in 0..FADE_IN_SAMPLES.min(len) {
        let g = i as f64 / FADE_IN_SAMPLES as f64;
        mix.l[i] *= g;
        mix.r[i] *= g;
    }
    for k in 0..FADE_OUT_SAMPLES.min(len) {
        let i = len - 1 - k;
        let g = k as f64 / FADE_OUT_SAMPLES as f64;
        mix.l[i] *= g;
        mix.r[i] *= g;
    }
}
