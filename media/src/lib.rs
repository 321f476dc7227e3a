//! The media core: one buffer per stream that keeps the current GOP, and
//! outputs that each own a small GStreamer pipeline fed from that buffer.
//!
//! A frame travels: capture (appsink) → [`stream::Stream::publish`] →
//! per-output bounded channel → [`output`] task → its own `appsrc` → mux →
//! protocol sink. Every hop moves a reference-counted `gst::Buffer`; frame
//! data is never copied.

pub mod abr;
pub mod backoff;
pub mod error;
pub mod frame;
pub mod netwatch;
pub mod output;
pub mod pipeline_util;
pub mod record;
pub mod rtmp;
pub mod srt;
pub mod srt_ffi;
pub mod srt_sock;
pub mod stream;
pub mod tls;
pub mod whip;

pub use error::Error;

/// Wall-clock time as unix seconds, the form state and events carry.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
pub use frame::{EncodedFrame, Track};
pub use stream::{Stream, StreamStats, Subscription};
