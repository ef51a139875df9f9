//! Render identity, seeds and the engine's own random generator. Everything here is fixed
//! forever for a revision: changing a byte of it changes every output.

use sha2::{Digest, Sha256};

/// The engine revision. Bumped whenever output bytes change.
pub const REVISION: &str = "r2";

/// The engine's name, as the API and the file metadata show it.
pub const ENGINE: &str = "kinora-local";

/// SHA-256 over length-prefixed fields, so no two field lists hash alike by concatenation.
fn hash_fields(fields: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for field in fields {
        // Fields are request strings far below 4 GiB; the API caps prompts at a few KiB.
        h.update((field.len() as u32).to_le_bytes());
        h.update(field);
    }
    h.finalize().into()
}

/// The digest behind the seed: SHA-256 over the length-prefixed ("kinora-local/seed/v1",
/// model, prompt, negative_prompt). Prompts are raw UTF-8, never normalised.
pub fn seed_digest(model: &str, prompt: &str, negative_prompt: &str) -> [u8; 32] {
    hash_fields(&[
        b"kinora-local/seed/v1",
        model.as_bytes(),
        prompt.as_bytes(),
        negative_prompt.as_bytes(),
    ])
}

/// seed = the first 8 bytes of [`seed_digest`], little-endian.
pub fn scene_seed(model: &str, prompt: &str, negative_prompt: &str) -> u64 {
    first_u64(&seed_digest(model, prompt, negative_prompt))
}

/// A sub-seed for a labelled, indexed part of a render (a shot, a layer).
pub fn sub_seed(seed: u64, label: &str, index: u32) -> u64 {
    first_u64(&hash_fields(&[
        &seed.to_le_bytes(),
        label.as_bytes(),
        &index.to_le_bytes(),
    ]))
}

fn first_u64(digest: &[u8; 32]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(b)
}

/// identity = SHA-256("kinora-local/identity" ‖ revision ‖ canonical spec ‖ asset hashes).
pub fn identity(canonical_spec: &str, asset_hashes: &[[u8; 32]]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"kinora-local/identity");
    h.update(REVISION.as_bytes());
    h.update(canonical_spec.as_bytes());
    for asset in asset_hashes {
        h.update(asset);
    }
    h.finalize().into()
}

pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// A JSON string literal, for the canonical spec.
pub fn json_string(text: &str) -> String {
    let mut s = String::with_capacity(text.len() + 2);
    s.push('"');
    for c in text.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if u32::from(c) < 0x20 => s.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// SplitMix64: tiny, fast and with a sequence that never changes, unlike library generators.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1) with 53 bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform integer in [lo, hi] (inclusive).
    pub fn int(&mut self, lo: u32, hi: u32) -> u32 {
        let span = u64::from(hi.saturating_sub(lo)) + 1;
        lo + (self.next_u64() % span) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_sequence_is_fixed() {
        // Reference values of SplitMix64 from seed 0, as published with the algorithm.
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(r.next_u64(), 0x06c4_5d18_8009_454f);
    }

    #[test]
    fn seeds_separate_fields() {
        let a = scene_seed("m", "ab", "");
        let b = scene_seed("m", "a", "b");
        assert_ne!(a, b);
        assert_eq!(a, scene_seed("m", "ab", ""));
        assert_ne!(sub_seed(a, "shot", 0), sub_seed(a, "shot", 1));
    }

    #[test]
    fn helpers() {
        assert_eq!(to_hex(&[0, 0xab, 0x10]), "00ab10");
        assert_eq!(json_string("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\u0001é\"");
    }
}
