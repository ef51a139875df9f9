//! Camera control: the typed request value, its validation, and the per-frame matrix.
//!
//! A matrix from [`camera_transform`] maps output positions (continuous coordinates, pixel
//! centres at +½) to *view* positions: the picture at rest occupies [0, W) × [0, H) of view
//! space. [`CanvasLayout::view_to_canvas`] then maps view space onto the oversampled canvas
//! with margins, so the warp samples the canvas with `layout.view_to_canvas() * camera`.
//!
//! Matrices are built once per frame in plain IEEE double precision; sine, cosine and power
//! come from `libm`, so the same request gives the same matrix on every platform.

use crate::seed::{sub_seed, SplitMix64};
use crate::warp::Transform;

/// The six `config` axes, in the wire order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Axis {
    Horizontal,
    Vertical,
    Pan,
    Tilt,
    Roll,
    Zoom,
}

impl Axis {
    pub const ALL: [Axis; 6] = [
        Axis::Horizontal,
        Axis::Vertical,
        Axis::Pan,
        Axis::Tilt,
        Axis::Roll,
        Axis::Zoom,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Axis::Horizontal => "horizontal",
            Axis::Vertical => "vertical",
            Axis::Pan => "pan",
            Axis::Tilt => "tilt",
            Axis::Roll => "roll",
            Axis::Zoom => "zoom",
        }
    }

    pub fn from_name(name: &str) -> Option<Axis> {
        Axis::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// Largest magnitude of an axis value.
pub const AXIS_LIMIT: f64 = 10.0;
/// Full-scale effects at |v| = 10.
pub const HORIZONTAL_FULL_SCALE: f64 = 0.25; // of the frame width
pub const VERTICAL_FULL_SCALE: f64 = 0.25; // of the frame height
pub const PAN_FULL_SCALE_DEG: f64 = 8.0;
pub const TILT_FULL_SCALE_DEG: f64 = 8.0;
pub const ROLL_FULL_SCALE_DEG: f64 = 15.0;
pub const ZOOM_FULL_SCALE_FACTOR: f64 = 1.5;
/// Focal length of the pan/tilt homography, as a multiple of max(W, H).
pub const FOCAL_FACTOR: f64 = 0.9;

// Sign conventions. Third-party docs disagree with Kling's official wording on some of these,
// so each one is a single constant that flips its axis everywhere. With +1:
/// + horizontal: the camera moves right, the content slides left.
pub const HORIZONTAL_SIGN: f64 = 1.0;
/// + vertical: the camera moves up, the content slides down.
pub const VERTICAL_SIGN: f64 = 1.0;
/// + pan: the camera turns right, the content slides left.
pub const PAN_SIGN: f64 = 1.0;
/// + tilt: the camera tilts up, the content slides down.
pub const TILT_SIGN: f64 = 1.0;
/// + roll: the camera rolls clockwise, the content turns counter-clockwise on screen.
pub const ROLL_SIGN: f64 = 1.0;
/// + zoom: wider field of view (pull back), the content shrinks.
pub const ZOOM_SIGN: f64 = 1.0;

/// Axis values in request units ([-10, 10] each). A missing config key is 0.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AxisValues {
    pub horizontal: f64,
    pub vertical: f64,
    pub pan: f64,
    pub tilt: f64,
    pub roll: f64,
    pub zoom: f64,
}

impl AxisValues {
    pub fn get(&self, axis: Axis) -> f64 {
        match axis {
            Axis::Horizontal => self.horizontal,
            Axis::Vertical => self.vertical,
            Axis::Pan => self.pan,
            Axis::Tilt => self.tilt,
            Axis::Roll => self.roll,
            Axis::Zoom => self.zoom,
        }
    }

    pub fn set(&mut self, axis: Axis, value: f64) {
        let slot = match axis {
            Axis::Horizontal => &mut self.horizontal,
            Axis::Vertical => &mut self.vertical,
            Axis::Pan => &mut self.pan,
            Axis::Tilt => &mut self.tilt,
            Axis::Roll => &mut self.roll,
            Axis::Zoom => &mut self.zoom,
        };
        *slot = value;
    }

    pub fn single(axis: Axis, value: f64) -> Self {
        let mut v = Self::default();
        v.set(axis, value);
        v
    }

    /// Every axis multiplied by `k`.
    pub fn scaled(&self, k: f64) -> Self {
        let mut out = *self;
        for axis in Axis::ALL {
            out.set(axis, self.get(axis) * k);
        }
        out
    }

    pub fn non_zero_axes(&self) -> impl Iterator<Item = Axis> + '_ {
        Axis::ALL.into_iter().filter(|&a| self.get(a) != 0.0)
    }

    /// Every value finite and within [-10, 10].
    pub fn check_range(&self) -> Result<(), CameraError> {
        for axis in Axis::ALL {
            let value = self.get(axis);
            if !value.is_finite() || value.abs() > AXIS_LIMIT {
                return Err(CameraError::OutOfRange { axis, value });
            }
        }
        Ok(())
    }
}

/// A validated camera control.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CameraControl {
    /// `type: "simple"` with exactly one non-zero axis.
    Simple { axis: Axis, value: f64 },
    /// Several axes at once, which only lenient validation lets through; combined in the fixed
    /// order translation, pan/tilt, roll, zoom.
    Combined(AxisValues),
    /// Vertical −5 and zoom +6, together, eased over the whole clip.
    DownBack,
    /// Zoom −6 and tilt +4, together.
    ForwardUp,
    /// Pan +6 over the first half (then held), zoom −6 over the second half.
    RightTurnForward,
    /// As `RightTurnForward` with pan −6.
    LeftTurnForward,
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum CameraError {
    #[error("camera_control.type `{0}` is not one of simple, down_back, forward_up, right_turn_forward, left_turn_forward")]
    UnknownType(String),
    #[error("camera_control.config is required when type is simple")]
    ConfigRequired,
    #[error("camera_control.config is only allowed when type is simple")]
    ConfigNotAllowed,
    #[error("camera_control.config.{} = {value} is outside [-10, 10]", axis.name())]
    OutOfRange { axis: Axis, value: f64 },
    #[error("camera_control.config needs exactly one non-zero axis, found none")]
    NoAxis,
    #[error("camera_control.config needs exactly one non-zero axis, found several")]
    SeveralAxes,
}

impl CameraControl {
    pub const TYPES: [&'static str; 5] = [
        "simple",
        "down_back",
        "forward_up",
        "right_turn_forward",
        "left_turn_forward",
    ];

    /// Builds a control from the wire fields. `Ok(None)` is the `{}` case (treated as absent);
    /// a missing type with a config means `simple`. In strict mode a simple config needs
    /// exactly one non-zero axis; lenient mode accepts several (combined) and treats all-zero
    /// as no camera.
    pub fn from_wire(
        kind: Option<&str>,
        config: Option<AxisValues>,
        strict: bool,
    ) -> Result<Option<CameraControl>, CameraError> {
        let kind = match (kind, config) {
            (None, None) => return Ok(None),
            (None, Some(_)) => "simple",
            (Some(k), _) => k,
        };
        let preset = match kind {
            "simple" => None,
            "down_back" => Some(CameraControl::DownBack),
            "forward_up" => Some(CameraControl::ForwardUp),
            "right_turn_forward" => Some(CameraControl::RightTurnForward),
            "left_turn_forward" => Some(CameraControl::LeftTurnForward),
            other => return Err(CameraError::UnknownType(other.to_owned())),
        };
        if let Some(preset) = preset {
            return match config {
                Some(_) => Err(CameraError::ConfigNotAllowed),
                None => Ok(Some(preset)),
            };
        }
        let config = config.ok_or(CameraError::ConfigRequired)?;
        Self::from_config(config, strict)
    }

    /// Validates a `simple` config; see [`CameraControl::from_wire`].
    pub fn from_config(
        config: AxisValues,
        strict: bool,
    ) -> Result<Option<CameraControl>, CameraError> {
        config.check_range()?;
        let mut axes = config.non_zero_axes();
        let first = axes.next();
        let several = axes.next().is_some();
        match (first, several) {
            (None, _) if strict => Err(CameraError::NoAxis),
            (None, _) => Ok(None),
            (Some(_), true) if strict => Err(CameraError::SeveralAxes),
            (Some(_), true) => Ok(Some(CameraControl::Combined(config))),
            (Some(axis), false) => Ok(Some(CameraControl::Simple {
                axis,
                value: config.get(axis),
            })),
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            CameraControl::Simple { .. } | CameraControl::Combined(_) => "simple",
            CameraControl::DownBack => "down_back",
            CameraControl::ForwardUp => "forward_up",
            CameraControl::RightTurnForward => "right_turn_forward",
            CameraControl::LeftTurnForward => "left_turn_forward",
        }
    }

    /// Re-checks a value built in code rather than through [`CameraControl::from_wire`].
    pub fn validate(&self) -> Result<(), CameraError> {
        match self {
            CameraControl::Simple { axis, value } => {
                AxisValues::single(*axis, *value).check_range()
            }
            CameraControl::Combined(values) => values.check_range(),
            _ => Ok(()),
        }
    }
}

/// Progress t = i / (N−1), clamped to [0, 1]; a one-frame clip stays at 0.
pub fn progress(frame_index: usize, frame_count: usize) -> f64 {
    if frame_count < 2 {
        return 0.0;
    }
    (frame_index.min(frame_count - 1) as f64) / ((frame_count - 1) as f64)
}

/// The standard easing, smoothstep t²(3 − 2t), on t clamped to [0, 1].
pub fn ease(t: f64) -> f64 {
    let t = t.clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// The applied axis values at frame i (request units, easing and phases already applied).
pub fn axis_values_at(
    control: &CameraControl,
    frame_index: usize,
    frame_count: usize,
) -> AxisValues {
    let t = progress(frame_index, frame_count);
    let e = ease(t);
    match control {
        CameraControl::Simple { axis, value } => AxisValues::single(*axis, value * e),
        CameraControl::Combined(values) => values.scaled(e),
        CameraControl::DownBack => AxisValues {
            vertical: -5.0 * e,
            zoom: 6.0 * e,
            ..AxisValues::default()
        },
        CameraControl::ForwardUp => AxisValues {
            zoom: -6.0 * e,
            tilt: 4.0 * e,
            ..AxisValues::default()
        },
        CameraControl::RightTurnForward | CameraControl::LeftTurnForward => {
            let pan = if matches!(control, CameraControl::RightTurnForward) {
                6.0
            } else {
                -6.0
            };
            // Each phase eases on its own half of the clip, so the turn comes to rest before
            // the push starts.
            AxisValues {
                pan: pan * ease(2.0 * t),
                zoom: -6.0 * ease(2.0 * t - 1.0),
                ..AxisValues::default()
            }
        }
    }
}

/// The output→view matrix at frame i for a W×H output.
pub fn camera_transform(
    control: &CameraControl,
    frame_index: usize,
    frame_count: usize,
    width: usize,
    height: usize,
) -> Transform {
    transform_for_values(
        &axis_values_at(control, frame_index, frame_count),
        width,
        height,
    )
}

/// The output→view matrix for instantaneous axis values. All zero gives exactly the identity.
///
/// The camera is first translated, then turned (pan, then tilt), rolled and zoomed, all about
/// the frame centre; an output position therefore goes back through zoom first:
/// M = T · P · R · Z.
pub fn transform_for_values(values: &AxisValues, width: usize, height: usize) -> Transform {
    let (w, h) = (width as f64, height as f64);
    let (cx, cy) = (w / 2.0, h / 2.0);
    let unit = |v: f64| v / AXIS_LIMIT;

    let mut m = Transform::IDENTITY;
    if values.horizontal != 0.0 || values.vertical != 0.0 {
        let tx = HORIZONTAL_SIGN * unit(values.horizontal) * HORIZONTAL_FULL_SCALE * w;
        // Up is −y on screen: a camera moving up sees content that was above the frame.
        let ty = -VERTICAL_SIGN * unit(values.vertical) * VERTICAL_FULL_SCALE * h;
        m = Transform::translation(tx, ty);
    }
    if values.pan != 0.0 || values.tilt != 0.0 {
        let yaw = PAN_SIGN * unit(values.pan) * PAN_FULL_SCALE_DEG.to_radians();
        let pitch = TILT_SIGN * unit(values.tilt) * TILT_FULL_SCALE_DEG.to_radians();
        let focal = FOCAL_FACTOR * w.max(h);
        m = m * turn(yaw, pitch, focal, cx, cy);
    }
    if values.roll != 0.0 {
        let angle = ROLL_SIGN * unit(values.roll) * ROLL_FULL_SCALE_DEG.to_radians();
        m = m * rotation_about(angle, cx, cy);
    }
    if values.zoom != 0.0 {
        let s = libm::pow(ZOOM_FULL_SCALE_FACTOR, ZOOM_SIGN * unit(values.zoom));
        m = m * Transform::scale_about(s, cx, cy);
    }
    m
}

/// Output→source rotation by `angle` about (cx, cy). In y-down coordinates a positive angle
/// samples clockwise of each output position, which turns the content counter-clockwise.
fn rotation_about(angle: f64, cx: f64, cy: f64) -> Transform {
    let (s, c) = (libm::sin(angle), libm::cos(angle));
    let r = Transform::from_rows([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]);
    Transform::translation(cx, cy) * r * Transform::translation(-cx, -cy)
}

/// K·R·K⁻¹ for a camera turned by `yaw` (positive: the optical axis swings towards +x, i.e.
/// right) and then `pitch` (positive: towards −y, i.e. up), with the principal point at
/// (cx, cy). Written with K = diag(f, f, 1) around a centring translation so that zero angles
/// give the identity exactly.
fn turn(yaw: f64, pitch: f64, focal: f64, cx: f64, cy: f64) -> Transform {
    let (sy, cyw) = (libm::sin(yaw), libm::cos(yaw));
    let (sp, cp) = (libm::sin(pitch), libm::cos(pitch));
    let ry = [[cyw, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cyw]];
    let rx = [[1.0, 0.0, 0.0], [0.0, cp, -sp], [0.0, sp, cp]];
    let r = (Transform::from_rows(ry) * Transform::from_rows(rx)).m;
    let k = [focal, focal, 1.0];
    let mut m = [[0.0; 3]; 3];
    for (i, row) in m.iter_mut().enumerate() {
        for (j, cell) in row.iter_mut().enumerate() {
            *cell = k[i] * r[i][j] / k[j];
        }
    }
    Transform::translation(cx, cy) * Transform::from_rows(m) * Transform::translation(-cx, -cy)
}

/// Geometry of a still source's canvas: the picture at view size W×H, a margin of ⌈L/4⌉
/// (L = max(W, H)) on every side, everything stored at 1.5× so that zooming in stays sharp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CanvasLayout {
    pub view_width: usize,
    pub view_height: usize,
    pub margin: usize,
    /// Canvas size in samples: 1.5 × (view + 2·margin), rounded up to even for I420.
    pub canvas_width: usize,
    pub canvas_height: usize,
}

/// Canvas oversampling as a ratio.
pub const OVERSAMPLE_NUM: usize = 3;
pub const OVERSAMPLE_DEN: usize = 2;

impl CanvasLayout {
    pub fn new(view_width: usize, view_height: usize) -> Self {
        let margin = view_width.max(view_height).div_ceil(4);
        let side = |v: usize| {
            let s = (v + 2 * margin) * OVERSAMPLE_NUM;
            s.div_ceil(OVERSAMPLE_DEN).next_multiple_of(2)
        };
        Self {
            view_width,
            view_height,
            margin,
            canvas_width: side(view_width),
            canvas_height: side(view_height),
        }
    }

    /// Canvas sample at which the view's origin lies: ⌊1.5·margin⌋. Rounding it down to a
    /// whole sample (for odd margins) puts every picture sample exactly on the canvas grid, so
    /// a still is resampled once, not twice; the margins differ by half a sample.
    pub fn origin(&self) -> usize {
        self.margin * OVERSAMPLE_NUM / OVERSAMPLE_DEN
    }

    /// View position p ↦ canvas position 1.5·p + [`CanvasLayout::origin`].
    pub fn view_to_canvas(&self) -> Transform {
        let k = OVERSAMPLE_NUM as f64 / OVERSAMPLE_DEN as f64;
        let off = self.origin() as f64;
        Transform::from_rows([[k, 0.0, off], [0.0, k, off], [0.0, 0.0, 1.0]])
    }

    /// The canvas area holding the picture itself: (x, y, width, height) in canvas samples,
    /// rounded outwards.
    pub fn picture_rect(&self) -> (usize, usize, usize, usize) {
        let scale = |v: usize| (v * OVERSAMPLE_NUM).div_ceil(OVERSAMPLE_DEN);
        let x = self.origin();
        (x, x, scale(self.view_width), scale(self.view_height))
    }

    /// Output→canvas matrix for frame i of a camera move.
    pub fn camera(
        &self,
        control: &CameraControl,
        frame_index: usize,
        frame_count: usize,
    ) -> Transform {
        self.view_to_canvas()
            * camera_transform(
                control,
                frame_index,
                frame_count,
                self.view_width,
                self.view_height,
            )
    }
}

/// The seeded default move (§3.3) used when a clip has no `camera_control`: push in (zoom −3),
/// pull back (zoom +2), a horizontal drift of ±2 or a vertical drift of ±1.5, each equally
/// likely, the drift's direction a coin toss.
pub fn default_move(seed: u64) -> CameraControl {
    let mut rng = SplitMix64::new(sub_seed(seed, "camera/default-move", 0));
    let kind = rng.int(0, 3);
    let sign = if rng.next_u64() & 1 == 0 { 1.0 } else { -1.0 };
    let (axis, value) = match kind {
        0 => (Axis::Zoom, -3.0),
        1 => (Axis::Zoom, 2.0),
        2 => (Axis::Horizontal, 2.0 * sign),
        _ => (Axis::Vertical, 1.5 * sign),
    };
    CameraControl::Simple { axis, value }
}

/// Mean displacement, in view pixels, of five probe points (the centre and four points half
/// way to the corners) between frames i and i+1 of a camera curve.
fn curve_motion(
    at: &dyn Fn(usize) -> Transform,
    frame_count: usize,
    width: usize,
    height: usize,
) -> Vec<f64> {
    let (w, h) = (width as f64, height as f64);
    let probes = [
        (0.5, 0.5),
        (0.25, 0.25),
        (0.75, 0.25),
        (0.25, 0.75),
        (0.75, 0.75),
    ];
    let place = |t: &Transform| probes.map(|(px, py)| t.apply(px * w, py * h));
    let mut previous = place(&at(0));
    (0..frame_count)
        .map(|i| {
            let next = place(&at((i + 1).min(frame_count.saturating_sub(1))));
            let mut sum = 0.0;
            for (a, b) in previous.iter().zip(&next) {
                if let (Some(a), Some(b)) = (a, b) {
                    sum += libm::hypot(b.0 - a.0, b.1 - a.1);
                }
            }
            previous = next;
            sum / probes.len() as f64
        })
        .collect()
}

/// Camera speed per frame for the soundtrack's texture (§3.8): 0 still, 1 the peak speed of the
/// fastest preset over a clip of the same length and size. `at(i)` is the output→view matrix.
pub fn camera_speed(
    at: &dyn Fn(usize) -> Transform,
    frame_count: usize,
    width: usize,
    height: usize,
) -> Vec<f32> {
    let presets = [
        CameraControl::DownBack,
        CameraControl::ForwardUp,
        CameraControl::RightTurnForward,
        CameraControl::LeftTurnForward,
    ];
    let reference = presets
        .iter()
        .flat_map(|p| {
            let f = |i: usize| camera_transform(p, i, frame_count, width, height);
            curve_motion(&f, frame_count, width, height)
        })
        .fold(0.0f64, f64::max);
    curve_motion(at, frame_count, width, height)
        .into_iter()
        .map(|m| {
            if reference > 0.0 {
                (m / reference).clamp(0.0, 1.0) as f32
            } else {
                0.0
            }
        })
        .collect()
}

/// Counter-zoom of the first/last-frame dissolve: the head grows to this scale as it fades out,
/// the tail shrinks from it as it fades in.
pub const DISSOLVE_ZOOM: f64 = 1.05;

/// One frame of the head→tail cross-dissolve.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DissolveFrame {
    /// Output→view matrix for the head picture.
    pub head: Transform,
    /// Output→view matrix for the tail picture.
    pub tail: Transform,
    /// Weight of the tail for `warp::blend_frames`, in [0, `warp::BLEND_ONE`].
    pub tail_weight: u32,
}

/// The dissolve at frame i. Frame 0 is the head exactly (weight 0, identity) and frame N−1 the
/// tail exactly (full weight, identity).
pub fn dissolve_at(
    frame_index: usize,
    frame_count: usize,
    width: usize,
    height: usize,
) -> DissolveFrame {
    let e = ease(progress(frame_index, frame_count));
    let (cx, cy) = (width as f64 / 2.0, height as f64 / 2.0);
    let grow = DISSOLVE_ZOOM - 1.0;
    // The content scale is the inverse of the sampling scale.
    let head_scale = 1.0 + grow * e;
    let tail_scale = 1.0 + grow * (1.0 - e);
    let at_rest = |s: f64| {
        if s == 1.0 {
            Transform::IDENTITY
        } else {
            Transform::scale_about(1.0 / s, cx, cy)
        }
    };
    let weight = libm::round(e * crate::warp::BLEND_ONE as f64) as u32;
    DissolveFrame {
        head: at_rest(head_scale),
        tail: at_rest(tail_scale),
        tail_weight: weight.min(crate::warp::BLEND_ONE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_rules() {
        let one = AxisValues::single(Axis::Zoom, 5.0);
        assert_eq!(CameraControl::from_wire(None, None, true), Ok(None));
        assert_eq!(
            CameraControl::from_wire(None, Some(one), true),
            Ok(Some(CameraControl::Simple {
                axis: Axis::Zoom,
                value: 5.0
            }))
        );
        assert_eq!(
            CameraControl::from_wire(Some("simple"), None, true),
            Err(CameraError::ConfigRequired)
        );
        assert_eq!(
            CameraControl::from_wire(Some("down_back"), Some(one), true),
            Err(CameraError::ConfigNotAllowed)
        );
        assert_eq!(
            CameraControl::from_wire(Some("forward_up"), None, true),
            Ok(Some(CameraControl::ForwardUp))
        );
        assert!(matches!(
            CameraControl::from_wire(Some("orbit"), None, true),
            Err(CameraError::UnknownType(_))
        ));
        let two = AxisValues {
            pan: 1.0,
            roll: -2.0,
            ..AxisValues::default()
        };
        assert_eq!(
            CameraControl::from_config(two, true),
            Err(CameraError::SeveralAxes)
        );
        assert_eq!(
            CameraControl::from_config(two, false),
            Ok(Some(CameraControl::Combined(two)))
        );
        assert_eq!(
            CameraControl::from_config(AxisValues::default(), true),
            Err(CameraError::NoAxis)
        );
        assert_eq!(
            CameraControl::from_config(AxisValues::default(), false),
            Ok(None)
        );
        let big = AxisValues::single(Axis::Tilt, 10.5);
        assert!(matches!(
            CameraControl::from_config(big, false),
            Err(CameraError::OutOfRange {
                axis: Axis::Tilt,
                ..
            })
        ));
        let nan = AxisValues::single(Axis::Roll, f64::NAN);
        assert!(CameraControl::from_config(nan, false).is_err());
        for name in CameraControl::TYPES {
            let cfg = (name == "simple").then_some(one);
            let c = CameraControl::from_wire(Some(name), cfg, true);
            assert_eq!(c.map(|c| c.map(|c| c.type_name())), Ok(Some(name)));
        }
    }

    #[test]
    fn easing_endpoints_and_monotonic() {
        assert_eq!(ease(0.0), 0.0);
        assert_eq!(ease(1.0), 1.0);
        assert_eq!(ease(0.5), 0.5);
        let mut last = 0.0;
        for i in 0..=100 {
            let e = ease(progress(i, 101));
            assert!(e >= last);
            last = e;
        }
        assert_eq!(progress(0, 1), 0.0);
    }

    #[test]
    fn frame_zero_is_identity_for_every_control() {
        let controls = [
            CameraControl::Simple {
                axis: Axis::Pan,
                value: 7.0,
            },
            CameraControl::Combined(AxisValues {
                zoom: 3.0,
                roll: 2.0,
                tilt: -1.0,
                ..Default::default()
            }),
            CameraControl::DownBack,
            CameraControl::ForwardUp,
            CameraControl::RightTurnForward,
            CameraControl::LeftTurnForward,
        ];
        for c in controls {
            assert_eq!(
                camera_transform(&c, 0, 48, 320, 180),
                Transform::IDENTITY,
                "{c:?}"
            );
        }
    }

    #[test]
    fn full_scale_values() {
        let (w, h) = (320, 180);
        let at_end =
            |axis, v| camera_transform(&CameraControl::Simple { axis, value: v }, 47, 48, w, h);
        let t = at_end(Axis::Horizontal, 10.0);
        assert!((t.m[0][2] - 80.0).abs() < 1e-9);
        let t = at_end(Axis::Vertical, 10.0);
        assert!((t.m[1][2] + 45.0).abs() < 1e-9);
        let t = at_end(Axis::Zoom, 10.0);
        assert!((t.m[0][0] - 1.5).abs() < 1e-12);
        let t = at_end(Axis::Zoom, -10.0);
        assert!((t.m[0][0] - 1.0 / 1.5).abs() < 1e-12);
        let t = at_end(Axis::Roll, 10.0);
        assert!((libm::atan2(t.m[1][0], t.m[0][0]).to_degrees() - 15.0).abs() < 1e-9);
        let t = at_end(Axis::Pan, 10.0);
        let (u, _) = t.apply(160.0, 90.0).unwrap_or_default();
        let f = 0.9 * 320.0;
        assert!((libm::atan((u - 160.0) / f).to_degrees() - 8.0).abs() < 1e-9);
    }

    #[test]
    fn turn_phases() {
        let n = 49;
        let mid = axis_values_at(&CameraControl::LeftTurnForward, 24, n);
        assert_eq!((mid.pan, mid.zoom), (-6.0, 0.0));
        let end = axis_values_at(&CameraControl::RightTurnForward, 48, n);
        assert_eq!((end.pan, end.zoom), (6.0, -6.0));
    }

    #[test]
    fn canvas_layout() {
        let l = CanvasLayout::new(1280, 720);
        assert_eq!(l.margin, 320);
        assert_eq!((l.canvas_width, l.canvas_height), (2880, 2040));
        assert_eq!(l.picture_rect(), (480, 480, 1920, 1080));
        let (x, y) = l.view_to_canvas().apply(0.0, 0.0).unwrap_or_default();
        assert_eq!((x, y), (480.0, 480.0));
    }

    #[test]
    fn odd_margins_keep_the_picture_on_the_sample_grid() {
        let l = CanvasLayout::new(1276, 718);
        assert_eq!(l.margin, 319);
        assert_eq!(l.origin(), 478);
        let (x, y) = l.view_to_canvas().apply(0.0, 0.0).unwrap_or_default();
        assert_eq!((x, y), (478.0, 478.0));
        let (x0, _, pw, _) = l.picture_rect();
        assert!(l.canvas_width - (x0 + pw) >= 3 * l.margin / 2);
    }

    #[test]
    fn default_moves_are_the_four_documented_ones() {
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..64u64 {
            let c = default_move(seed);
            assert_eq!(c, default_move(seed));
            let CameraControl::Simple { axis, value } = c else {
                panic!("{c:?}");
            };
            assert!(
                matches!(
                    (axis, value),
                    (Axis::Zoom, -3.0)
                        | (Axis::Zoom, 2.0)
                        | (Axis::Horizontal, 2.0)
                        | (Axis::Horizontal, -2.0)
                        | (Axis::Vertical, 1.5)
                        | (Axis::Vertical, -1.5)
                ),
                "{c:?}"
            );
            seen.insert(format!("{axis:?}{value}"));
        }
        assert_eq!(seen.len(), 6);
    }

    #[test]
    fn camera_speed_is_zero_at_rest_and_peaks_mid_move() {
        let n = 48;
        let c = CameraControl::Simple {
            axis: Axis::Horizontal,
            value: 4.0,
        };
        let s = camera_speed(&|i| camera_transform(&c, i, n, 320, 180), n, 320, 180);
        assert_eq!(s.len(), n);
        assert_eq!(s[n - 1], 0.0);
        assert!(s[0] < s[n / 2] && s[n / 2] <= 1.0 && s[n / 2] > 0.1);
        let still = camera_speed(&|_| Transform::IDENTITY, n, 320, 180);
        assert!(still.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn dissolve_ends_exact() {
        let first = dissolve_at(0, 48, 320, 180);
        assert_eq!((first.head, first.tail_weight), (Transform::IDENTITY, 0));
        let last = dissolve_at(47, 48, 320, 180);
        assert_eq!(
            (last.tail, last.tail_weight),
            (Transform::IDENTITY, crate::warp::BLEND_ONE)
        );
    }
}
