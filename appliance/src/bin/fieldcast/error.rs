//! What can stop a run of the CLI before a device has answered, each with
//! the context an operator needs. A device's refusal is not here: that is
//! an answer, printed as the device gave it (`reply`).

use std::time::Duration;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum CliError {
    /// A bad option or argument the command line parser could not catch
    /// (an argument object that is not JSON, a file that cannot be read).
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach broker {broker}: {reason}")]
    Unreachable { broker: String, reason: String },
    #[error("broker {broker} refused the connection: {reason}")]
    Refused { broker: String, reason: String },
    #[error("lost the connection to broker {broker}: {reason}")]
    Lost { broker: String, reason: String },
    #[error("broker {broker} refused the subscription to {filter}: {reason}")]
    Subscription {
        broker: String,
        filter: String,
        reason: String,
    },
    #[error("broker {broker} refused our publish to {topic}: {reason}")]
    Publish {
        broker: String,
        topic: String,
        reason: String,
    },
    #[error("nothing is subscribed to {topic} (the broker says so): {hint}")]
    NobodyListening { topic: String, hint: String },
    #[error("no device {device} under prefix {prefix}")]
    NoDevice { device: String, prefix: String },
    #[error("device {device} is offline (its retained status)")]
    Offline { device: String },
    #[error("device {device} went offline before replying to {command}")]
    WentOffline { device: String, command: String },
    #[error("no reply from {device} to {command} within {}", secs(*.timeout))]
    NoReply {
        device: String,
        command: String,
        timeout: Duration,
    },
    #[error("no device of group {group} replied to {command} within {}", secs(*.timeout))]
    NoGroupReply {
        group: String,
        command: String,
        timeout: Duration,
    },
    #[error("{device} answered {command} with something that is not a reply: {reason}")]
    BadReply {
        device: String,
        command: String,
        reason: String,
    },
    #[error("device {device} has published no state")]
    NoState { device: String },
}

/// `5 s`, `0.5 s`: how the timeout was given, not `5.000s`.
pub fn secs(d: Duration) -> String {
    format!("{} s", d.as_secs_f64())
}

impl CliError {
    pub fn usage(message: impl Into<String>) -> Self {
        CliError::Usage(message.into())
    }
}
