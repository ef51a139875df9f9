//! Multi-shot layout (§3.6 of the engine contract): which frames each shot covers, where the
//! hard cuts fall, each shot's seed, and how a later shot of an image2video frames the image.

use sha2::{Digest, Sha256};

use crate::engine::RenderError;
use crate::plan::{frames_for_seconds, FPS};
use crate::seed::{scene_seed, SplitMix64};
use crate::spec::{MultiShot, RenderSpec};
use crate::warp::Transform;

/// Most shots Kling accepts in `multi_prompt`, and most the intelligent split produces.
pub const MAX_SHOTS: usize = 6;
/// Zoom range of the crop window that frames a later image2video shot.
pub const CROP_ZOOM: (f64, f64) = (1.2, 1.6);

/// One shot, placed on the clip's timeline.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedShot {
    /// `multi_prompt` index (1-based position for intelligent shots).
    pub index: u32,
    pub prompt: String,
    /// First frame of the shot in the clip.
    pub start: u32,
    pub frames: u32,
    pub seed: u64,
}

impl PlannedShot {
    pub fn range(&self) -> std::ops::Range<u32> {
        self.start..self.start + self.frames
    }
}

/// Every shot of a multi-shot clip, in order, covering the clip without gaps.
#[derive(Clone, Debug, PartialEq)]
pub struct ShotLayout {
    /// Seed of the whole clip. In multi-shot mode it comes from an empty prompt, because Kling
    /// ignores `prompt` there.
    pub base_seed: u64,
    pub shots: Vec<PlannedShot>,
    /// Whether the spec asked for multi-shot (a one-item `multi_prompt` is still multi-shot:
    /// its seed and palette follow §3.6).
    pub multi: bool,
}

impl ShotLayout {
    /// The layout every kind draws from: the multi-shot layout, or one shot spanning the clip
    /// with the spec's own prompt and seed.
    pub fn for_spec(spec: &RenderSpec) -> Result<Self, RenderError> {
        if let Some(layout) = Self::of(spec)? {
            return Ok(layout);
        }
        let base_seed = scene_seed(&spec.model_name, &spec.prompt, &spec.negative_prompt);
        Ok(Self {
            base_seed,
            shots: vec![PlannedShot {
                index: 1,
                prompt: spec.prompt.clone(),
                start: 0,
                frames: frames_for_seconds(spec.duration_or_default()),
                seed: base_seed,
            }],
            multi: false,
        })
    }

    /// The text the soundtrack reads voice tags from: the prompt, or in multi-shot mode the
    /// shot prompts in order.
    pub fn voice_text(&self) -> String {
        let prompts: Vec<&str> = self.shots.iter().map(|s| s.prompt.as_str()).collect();
        prompts.join("\n")
    }

    /// The layout of a multi-shot spec, or `None` for a single-shot one.
    pub fn of(spec: &RenderSpec) -> Result<Option<Self>, RenderError> {
        let Some(multi) = &spec.multi_shot else {
            return Ok(None);
        };
        let base_seed = scene_seed(&spec.model_name, "", &spec.negative_prompt);
        let shots: Vec<(u32, String, u32)> = match multi {
            MultiShot::Customize(list) => {
                if list.is_empty() || list.len() > MAX_SHOTS {
                    return Err(RenderError::Client(format!(
                        "multi_prompt needs 1-{MAX_SHOTS} shots, got {}",
                        list.len()
                    )));
                }
                let mut sorted = list.clone();
                sorted.sort_by_key(|s| s.index);
                if sorted.windows(2).any(|w| w[0].index == w[1].index) {
                    return Err(RenderError::Client(
                        "multi_prompt indices must be distinct".to_owned(),
                    ));
                }
                if let Some(s) = sorted.iter().find(|s| s.duration_s == 0) {
                    return Err(RenderError::Client(format!(
                        "multi_prompt shot {} has duration 0; each shot lasts at least 1 s",
                        s.index
                    )));
                }
                let total: u32 = sorted.iter().map(|s| s.duration_s).sum();
                if let Some(duration) = spec.duration_s {
                    if total != duration {
                        return Err(RenderError::Client(format!(
                            "multi_prompt durations add up to {total} s but duration is {duration} s"
                        )));
                    }
                }
                sorted
                    .into_iter()
                    .map(|s| (s.index, s.prompt, s.duration_s))
                    .collect()
            }
            MultiShot::Intelligence => {
                let duration = spec.duration_or_default();
                let count = (duration / 3).clamp(1, MAX_SHOTS as u32);
                let (each, extra) = (duration / count, duration % count);
                (0..count)
                    .map(|k| {
                        let seconds = each + u32::from(k < extra);
                        (k + 1, spec.prompt.clone(), seconds)
                    })
                    .collect()
            }
        };
        let mut start = 0;
        let shots = shots
            .into_iter()
            .map(|(index, prompt, seconds)| {
                let frames = seconds * FPS;
                let shot = PlannedShot {
                    index,
                    seed: shot_seed(base_seed, index, &prompt),
                    prompt,
                    start,
                    frames,
                };
                start += frames;
                shot
            })
            .collect();
        Ok(Some(Self {
            base_seed,
            shots,
            multi: true,
        }))
    }

    pub fn total_frames(&self) -> u32 {
        self.shots.iter().map(|s| s.frames).sum()
    }

    /// First frames of every shot but the first: where the hard cuts fall.
    pub fn cuts(&self) -> Vec<u32> {
        self.shots.iter().skip(1).map(|s| s.start).collect()
    }

    /// The shot holding frame `i` of the clip, and `i`'s index inside it.
    pub fn locate(&self, i: u32) -> Option<(usize, u32)> {
        self.shots
            .iter()
            .position(|s| s.range().contains(&i))
            .map(|k| (k, i - self.shots[k].start))
    }
}

/// seed of shot k = H(base seed, index, shot prompt).
pub fn shot_seed(base_seed: u64, index: u32, prompt: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(b"kinora-local/shot/v1");
    h.update(base_seed.to_le_bytes());
    h.update(index.to_le_bytes());
    h.update((prompt.len() as u64).to_le_bytes());
    h.update(prompt.as_bytes());
    let digest = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(b)
}

/// View→view matrix of a later image2video shot: a window 1/zoom of the picture, zoom in
/// [`CROP_ZOOM`], centred on a seeded point and kept inside the picture. Composed before the
/// shot's camera, it frames the same image anew.
pub fn crop_window(seed: u64, width: usize, height: usize) -> Transform {
    let mut rng = SplitMix64::new(seed ^ 0x6b69_6e6f_7261_6372);
    let zoom = rng.range(CROP_ZOOM.0, CROP_ZOOM.1);
    let (w, h) = (width as f64, height as f64);
    let (half_w, half_h) = (w / (2.0 * zoom), h / (2.0 * zoom));
    let cx = rng.range(half_w, w - half_w);
    let cy = rng.range(half_h, h - half_h);
    // Output pixel p shows picture point centre + (p - frame centre) / zoom.
    Transform::translation(cx, cy)
        * Transform::scale(1.0 / zoom, 1.0 / zoom)
        * Transform::translation(-w / 2.0, -h / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{RenderKind, Shot};

    fn customize(durations: &[(u32, u32)]) -> RenderSpec {
        let mut spec = RenderSpec::text2video("ignored in multi-shot");
        spec.multi_shot = Some(MultiShot::Customize(
            durations
                .iter()
                .map(|&(index, d)| Shot {
                    index,
                    prompt: format!("shot {index}"),
                    duration_s: d,
                })
                .collect(),
        ));
        spec
    }

    #[test]
    fn shots_are_sorted_by_index_and_cut_at_their_boundaries() {
        let mut spec = customize(&[(2, 3), (1, 2), (3, 5)]);
        spec.duration_s = Some(10);
        let layout = ShotLayout::of(&spec).unwrap().unwrap();
        let starts: Vec<_> = layout.shots.iter().map(|s| (s.index, s.start)).collect();
        assert_eq!(starts, [(1, 0), (2, 48), (3, 120)]);
        assert_eq!(layout.cuts(), [48, 120]);
        assert_eq!(layout.total_frames(), 240);
        assert_eq!(layout.locate(47), Some((0, 47)));
        assert_eq!(layout.locate(48), Some((1, 0)));
        assert_eq!(layout.locate(240), None);
    }

    #[test]
    fn the_main_prompt_does_not_change_shot_seeds() {
        let a = customize(&[(1, 2), (2, 3)]);
        let mut b = a.clone();
        b.prompt = "something else".into();
        assert_eq!(ShotLayout::of(&a).unwrap(), ShotLayout::of(&b).unwrap());
        let seeds: Vec<_> = ShotLayout::of(&a)
            .unwrap()
            .unwrap()
            .shots
            .iter()
            .map(|s| s.seed)
            .collect();
        assert_ne!(seeds[0], seeds[1]);
    }

    #[test]
    fn durations_must_add_up() {
        let mut spec = customize(&[(1, 2), (2, 2)]);
        spec.duration_s = Some(5);
        let err = ShotLayout::of(&spec).unwrap_err();
        assert!(
            err.to_string()
                .contains("add up to 4 s but duration is 5 s"),
            "{err}"
        );
        let spec = customize(&[(1, 0)]);
        assert!(ShotLayout::of(&spec).is_err());
        let spec = customize(&[(1, 1); 7]);
        assert!(ShotLayout::of(&spec).is_err());
    }

    #[test]
    fn intelligent_shots_split_the_duration_evenly() {
        let mut spec = RenderSpec::new(RenderKind::Text2Video, "p");
        spec.multi_shot = Some(MultiShot::Intelligence);
        for (duration, want) in [
            (2, vec![2]),
            (5, vec![5]),
            (7, vec![4, 3]),
            (10, vec![4, 3, 3]),
            (15, vec![3, 3, 3, 3, 3]),
        ] {
            spec.duration_s = Some(duration);
            let layout = ShotLayout::of(&spec).unwrap().unwrap();
            let got: Vec<_> = layout.shots.iter().map(|s| s.frames / 24).collect();
            assert_eq!(got, want, "duration {duration}");
            assert!(layout.shots.iter().all(|s| s.prompt == "p"));
        }
    }

    #[test]
    fn crop_windows_stay_inside_the_picture() {
        for seed in 0..200u64 {
            let t = crop_window(seed, 1280, 720);
            for (x, y) in [(0.0, 0.0), (1280.0, 0.0), (0.0, 720.0), (1280.0, 720.0)] {
                let (px, py) = t.apply(x, y).unwrap();
                assert!((-1e-9..=1280.0 + 1e-9).contains(&px), "seed {seed}: x {px}");
                assert!((-1e-9..=720.0 + 1e-9).contains(&py), "seed {seed}: y {py}");
            }
            let (ax, _) = t.apply(0.0, 0.0).unwrap();
            let (bx, _) = t.apply(1280.0, 0.0).unwrap();
            let zoom = 1280.0 / (bx - ax);
            assert!((CROP_ZOOM.0..=CROP_ZOOM.1).contains(&zoom), "zoom {zoom}");
        }
    }
}
