//! Capture: one GStreamer pipeline per input, from source to the board's
//! encoder to `appsink`, publishing encoded access units into a media-core
//! [`fieldcast_media::Stream`].
//!
//! - [`board`]: the board profile (encoder elements and how their
//!   properties map), one TOML file per board in `board-configs/`.
//! - [`settings`]: what an input is (source, audio, encode settings).
//! - [`audio`]: an input's audio: its settings, channel selection, the
//!   level meter and silence detection.
//! - [`describe`]: builds the pipeline description; pure, tested as text.
//! - [`input`]: runs the pipeline, retries it with backoff, reports status.
//! - [`discover`]: what capture devices this box has, and a watch on an
//!   input's signal; [`v4l2`] is the kernel interface beneath it.

pub mod audio;
pub mod board;
pub mod describe;
pub mod discover;
pub mod error;
pub mod input;
pub mod settings;
pub mod v4l2;

pub use board::BoardProfile;
pub use error::Error;
pub use input::{InputHandle, InputState, InputStatus};
pub use settings::InputSpec;
