//! Errors of the capture crate.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("board profile '{name}': {reason}")]
    Board { name: String, reason: String },
    #[error("unknown board '{0}' (built in: {1})")]
    UnknownBoard(String, String),
    #[error("reading board file {path}: {reason}")]
    BoardFile { path: String, reason: String },
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
}
