//! The local render engine (engine revision r2): turns a validated render request and the
//! bytes of its inputs into a real, playable H.264 MP4, a JPEG cover and optionally a
//! watermarked copy. It is a deterministic renderer for development, tests and demos, not a
//! generative model: controllable parameters are honoured exactly, and what a prompt
//! describes becomes a procedural scene chosen by a hash of the prompt.
//!
//! The engine never touches the network, the clock, the database or the environment.

pub mod audio;
pub mod camera;
pub mod cover;
pub mod encode;
pub mod engine;
pub mod frame;
pub mod grade;
pub mod kinds;
pub mod mux;
pub mod overlay;
pub mod plan;
pub mod portrait;
pub mod references;
pub mod scene;
pub mod seed;
pub mod shots;
pub mod source;
pub mod spec;
pub mod still;
pub mod text;
pub mod warp;

pub use engine::{CancelFlag, EnginePool, RenderError, RenderMeta, RenderOutput};
pub use kinds::render;
pub use spec::{Asset, RenderKind, RenderSpec};
