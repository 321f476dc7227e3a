//! Errors of the media core.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("target: {0}")]
    Target(String),
    #[error("GStreamer element '{element}' is missing (install the plugin that provides it)")]
    MissingElement { element: String },
    #[error("building the {output} pipeline: {reason}")]
    Pipeline { output: String, reason: String },
}
