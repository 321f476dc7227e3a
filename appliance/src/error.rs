//! Errors of the daemon, and the one place they become MQTT error replies.

use serde::Serialize;
use thiserror::Error;

/// The path of field `f` of an entry at `at` (`outputs[0]` → `outputs[0].f`;
/// an MQTT command's own fields have no prefix).
pub fn field_at(at: &str, f: &str) -> String {
    if at.is_empty() {
        f.to_string()
    } else {
        format!("{at}.{f}")
    }
}

/// A configuration value the daemon refuses: the field and why.
#[derive(Clone, Debug, Error, PartialEq)]
#[error("{field}: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn from_capture(e: fieldcast_capture::Error) -> Self {
        match e {
            fieldcast_capture::Error::Invalid { field, reason } => Self::new(field, reason),
            other => Self::new("config", other.to_string()),
        }
    }
}

/// Stable, machine-readable error codes of the MQTT contract
/// (`docs/mqtt.md`). Renaming one breaks operators' scripts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    /// The payload is not JSON, or not an object.
    BadJson,
    /// No such command.
    UnknownCommand,
    /// A field is missing, unknown or has a bad value.
    InvalidArgument,
    /// The push (or other object) named does not exist.
    NotFound,
    /// The id exists with a different definition.
    Conflict,
    /// The object comes from the config file and cannot be changed over MQTT.
    ReadOnly,
    /// The change could not be saved; nothing was changed.
    StorageFailed,
    /// Too many commands are queued; nothing was done, try again.
    Busy,
    /// This device's config does not allow it over MQTT (running programs).
    Forbidden,
    /// As many as the device takes exist already (pushes, variables,
    /// handlers, wildcard streams); nothing was done.
    LimitReached,
}

/// An error reply: code, the field at fault (if one is), and a message that
/// names the bad value but never a secret.
#[derive(Clone, Debug, Error, PartialEq, Serialize)]
#[error("{code:?}: {message}")]
pub struct ApiError {
    pub code: Code,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            field: None,
            message: message.into(),
        }
    }

    pub fn field(code: Code, field: impl Into<String>, message: impl Into<String>) -> Self {
        let field = field.into();
        let message = message.into();
        Self {
            code,
            message: format!("{field}: {message}"),
            field: Some(field),
        }
    }
}

impl From<ConfigError> for ApiError {
    fn from(e: ConfigError) -> Self {
        ApiError::field(Code::InvalidArgument, e.field, e.message)
    }
}
