//! A schedule as written in TOML config or MQTT JSON: the serde types, with
//! unknown keys rejected. [`crate::Schedule::compile`] turns one into the
//! checked form.

use serde::{Deserialize, Serialize};

use crate::error::ScheduleError;

/// When a scheduled push may run: the union of its windows and of the
/// events of an imported calendar.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ScheduleDef {
    /// IANA zone name ("Europe/Amsterdam") in which local times are read;
    /// "UTC" when absent.
    #[serde(default = "utc")]
    pub timezone: String,
    #[serde(default)]
    pub windows: Vec<WindowDef>,
    /// An .ics calendar to import: a local path or an http(s) URL. The
    /// daemon reads it and hands the text to [`crate::Schedule::compile`];
    /// this crate only checks the form ([`ScheduleDef::ics_source`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ics: Option<String>,
    /// How often the daemon reads `ics` again, seconds (10..=86400).
    #[serde(default = "default_ics_refresh_s")]
    pub ics_refresh_s: u64,
}

/// One window, or a recurring series of them.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct WindowDef {
    /// `2026-11-25T18:00` or `2026-11-25T18:00:00`: wall-clock time in the
    /// schedule's zone. With `Z` or an offset (`2026-11-25T17:00:00Z`,
    /// `…+01:00`): that instant. With `rrule` this is DTSTART, the first
    /// occurrence; a local start keeps its time of day across DST changes,
    /// an absolute one keeps its UTC offset.
    pub start: String,
    /// The end: a date-time in the forms of `start`, or `HH:MM[:SS]`, the
    /// first time the wall clock shows that time after each start (so
    /// `start = "…T22:00"`, `stop = "06:00"` crosses midnight, and ends at
    /// 06:00 local even on a night the clocks change). A date-time stop sets
    /// one exact length for every occurrence (RFC 5545 3.8.5.3) and must be
    /// after `start`. Exactly one of `stop` and `duration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<String>,
    /// `2h`, `90m`, `1h30m`, `45s`, or a number of seconds: an exact length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// An RFC 5545 RRULE value, e.g. `FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR`
    /// (with or without a leading `RRULE:`). `start` must be an occurrence
    /// of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rrule: Option<String>,
    /// Occurrences to skip (RFC 5545 EXDATE): a start in the forms of
    /// `start`, or a date `2026-12-25` that skips every occurrence starting
    /// on that day (on the wall clock the window recurs by: the schedule's
    /// zone, or the UTC offset of an absolute `start`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exdates: Vec<String>,
}

fn utc() -> String {
    "UTC".into()
}

/// Five minutes: a changed calendar shows up soon without polling a
/// server hard.
fn default_ics_refresh_s() -> u64 {
    300
}

pub const ICS_REFRESH_RANGE: std::ops::RangeInclusive<u64> = 10..=86_400;

impl Default for ScheduleDef {
    fn default() -> Self {
        ScheduleDef {
            timezone: utc(),
            windows: vec![],
            ics: None,
            ics_refresh_s: default_ics_refresh_s(),
        }
    }
}

/// Where the calendar of [`ScheduleDef::ics`] is, once its form is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IcsSource {
    /// An `http://` or `https://` URL.
    Url(String),
    /// A path on the device.
    Path(String),
}

impl ScheduleDef {
    /// `ics` checked and classified; `None` when absent. The daemon fetches
    /// it; this does no I/O.
    pub fn ics_source(&self) -> Result<Option<IcsSource>, ScheduleError> {
        let Some(s) = &self.ics else {
            return Ok(None);
        };
        let bad = |why: &str| ScheduleError::new("schedule.ics", format!("\"{s}\" {why}"));
        if s.trim().is_empty() {
            return Err(bad("is empty: expected a path or an http(s) URL"));
        }
        if s.chars().any(char::is_control) {
            return Err(bad("has control characters"));
        }
        let lower = s.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            let url = url::Url::parse(s).map_err(|e| bad(&format!("is not a URL: {e}")))?;
            if url.host_str().is_none_or(str::is_empty) {
                return Err(bad("has no host"));
            }
            return Ok(Some(IcsSource::Url(s.clone())));
        }
        if let Some((scheme, _)) = s.split_once("://") {
            let hint = if scheme.eq_ignore_ascii_case("webcal") {
                " (write webcal:// subscriptions as https://)"
            } else {
                ""
            };
            return Err(bad(&format!(
                "has scheme \"{scheme}\": expected a path or an http(s) URL{hint}"
            )));
        }
        Ok(Some(IcsSource::Path(s.clone())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_round_trip_through_json() {
        let d: ScheduleDef =
            serde_json::from_str(r#"{"windows":[{"start":"2026-11-25T18:00","duration":"2h"}]}"#)
                .unwrap();
        assert_eq!(d.timezone, "UTC");
        assert_eq!(d.ics_refresh_s, 300);
        assert_eq!(d.ics, None);
        assert_eq!(d.windows[0].stop, None);
        assert!(d.windows[0].exdates.is_empty());
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(
            json,
            r#"{"timezone":"UTC","windows":[{"start":"2026-11-25T18:00","duration":"2h"}],"ics_refresh_s":300}"#
        );
        assert_eq!(serde_json::from_str::<ScheduleDef>(&json).unwrap(), d);
        assert_eq!(ScheduleDef::default(), serde_json::from_str("{}").unwrap());
    }

    #[test]
    fn reads_toml() {
        let d: ScheduleDef = toml::from_str(
            r#"
            timezone = "Europe/Amsterdam"
            ics = "https://calendar.example.org/team.ics"
            ics_refresh_s = 600

            [[windows]]
            start = "2026-01-05T18:00"
            stop = "20:00"
            rrule = "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR"
            exdates = ["2026-12-25", "2026-12-31T18:00"]
            "#,
        )
        .unwrap();
        assert_eq!(d.timezone, "Europe/Amsterdam");
        assert_eq!(d.windows[0].stop.as_deref(), Some("20:00"));
        assert_eq!(d.windows[0].exdates.len(), 2);
        assert_eq!(
            d.ics_source().unwrap(),
            Some(IcsSource::Url(
                "https://calendar.example.org/team.ics".into()
            ))
        );
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let e =
            serde_json::from_str::<ScheduleDef>(r#"{"timezone":"UTC","tz":"UTC"}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `tz`"), "{e}");
        let e = serde_json::from_str::<ScheduleDef>(
            r#"{"windows":[{"start":"2026-11-25T18:00","end":"20:00"}]}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field `end`"), "{e}");
    }

    #[test]
    fn ics_forms() {
        let with = |s: &str| ScheduleDef {
            ics: Some(s.into()),
            ..ScheduleDef::default()
        };
        assert_eq!(
            with("/etc/fieldcast/events.ics").ics_source().unwrap(),
            Some(IcsSource::Path("/etc/fieldcast/events.ics".into()))
        );
        assert_eq!(
            with("http://10.0.0.2/cal.ics").ics_source().unwrap(),
            Some(IcsSource::Url("http://10.0.0.2/cal.ics".into()))
        );
        for (s, needle) in [
            ("", "is empty"),
            (
                "webcal://example.org/x.ics",
                "write webcal:// subscriptions as https://",
            ),
            ("ftp://example.org/x.ics", "scheme \"ftp\""),
            ("https://", "is not a URL"),
            ("/tmp/a\nb.ics", "control characters"),
        ] {
            let e = with(s).ics_source().unwrap_err();
            assert_eq!(e.field, "schedule.ics");
            assert!(e.message.contains(needle), "{s}: {e}");
            assert!(e.message.contains(&format!("\"{s}\"")), "{e}");
        }
        assert_eq!(ScheduleDef::default().ics_source().unwrap(), None);
    }
}
