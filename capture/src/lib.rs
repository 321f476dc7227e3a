//! Capture: one GStreamer pipeline per input, from source to the board's
//! encoder to `appsink`, publishing encoded access units into a media-core
//! [`fieldcast_media::Stream`].
//!
//! - [`board`]: the board profile (encoder elements and how their
//!   properties map), one TOML file per board in `board-configs/`.
//! - [`settings`]: what an input is (source, audio, encode settings).
//! - [`describe`]: builds the pipeline description; pure, tested as text.
//! - [`input`]: runs the pipeline, retries it with backoff, reports status.

pub mod board;
pub mod describe;
pub mod error;
pub mod input;
pub mod settings;

pub use board::BoardProfile;
pub use error::Error;
pub use input::{InputHandle, InputState, InputStatus};
pub use settings::InputSpec;
