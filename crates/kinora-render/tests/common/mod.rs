//! Helpers shared by the integration tests: reading rendered MP4s back, building requests.
//! Each test file uses some of them.
#![allow(dead_code)]

use std::sync::Arc;

use kinora_render::engine::CancelFlag;
use kinora_render::plan::Size;
use kinora_render::source::SourceVideo;
use kinora_render::spec::{MultiShot, Shot};

/// Decodes every frame of an output at its own size and returns the luma planes.
pub fn decoded_luma(mp4: &[u8]) -> Vec<Vec<u8>> {
    let video = SourceVideo::open(Arc::from(mp4)).unwrap();
    let (w, h) = video.display_size();
    let mut out = Vec::new();
    video
        .for_each_frame_24(
            Size::new(w, h),
            0..video.frames_at_24fps(),
            &CancelFlag::new(),
            |_, f| {
                out.push(f.y.data.clone());
                Ok(())
            },
        )
        .unwrap();
    out
}

/// Mean absolute difference of two equally long sample buffers.
pub fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    let sum: u64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    sum as f64 / a.len() as f64
}

/// A big-endian u32 at the start of `b`.
pub fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// The payload of the first `kind` box among the boxes in `data`.
pub fn child<'a>(data: &'a [u8], kind: &[u8; 4]) -> &'a [u8] {
    let mut at = 0;
    while at + 8 <= data.len() {
        let size = be32(&data[at..]) as usize;
        assert!(size >= 8 && at + size <= data.len(), "bad box at {at}");
        if &data[at + 4..at + 8] == kind {
            return &data[at + 8..at + size];
        }
        at += size;
    }
    panic!("no {} box", String::from_utf8_lossy(kind))
}

/// A customised multi-shot request: one shot per duration, prompted "shot k of {scene}".
pub fn customized_shots(durations: &[u32], scene: &str) -> MultiShot {
    MultiShot::Customize(
        durations
            .iter()
            .enumerate()
            .map(|(k, &d)| Shot {
                index: k as u32 + 1,
                prompt: format!("shot {} of {scene}", k + 1),
                duration_s: d,
            })
            .collect(),
    )
}
