//! The one error of this crate: which field of the schedule is wrong and why.

use thiserror::Error;

/// A schedule that cannot be compiled. `field` is the path of the offending
/// key as written in config or MQTT (`schedule.timezone`,
/// `schedule.windows[1].rrule`, `schedule.ics`); `message` quotes the bad
/// value and, for a calendar, names its line.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("{field}: {message}")]
pub struct ScheduleError {
    pub field: String,
    pub message: String,
}

impl ScheduleError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ScheduleError {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_field_then_message() {
        let e = ScheduleError::new("schedule.timezone", "unknown time zone \"Mars/Olympus\"");
        assert_eq!(
            e.to_string(),
            "schedule.timezone: unknown time zone \"Mars/Olympus\""
        );
    }
}
