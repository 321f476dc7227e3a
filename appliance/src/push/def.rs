//! What a push is, as configured (`[[outputs]]`) or sent over MQTT: its
//! kind, stream, target template, and for scheduled pushes the rule that
//! lets it run. Validated once, here, with errors naming the field.

use std::collections::BTreeSet;

use fieldcast_capture::settings::check_name;
use fieldcast_media::output::Target;
use fieldcast_schedule::{Schedule, ScheduleDef};
use serde::{Deserialize, Serialize};

use super::rules::{Rule, check_pattern};
use crate::error::{ConfigError, field_at};

/// How a push decides when to run (after MistServer's push kinds).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PushKind {
    /// Runs once: ends when the destination or the stream ends, or when
    /// it fails; not retried. Started again only by `push.start`.
    Push,
    /// Kept running whenever its stream is live; reconnects with backoff.
    #[default]
    Auto,
    /// Like auto, but only while its schedule and rules hold.
    Scheduled,
}

/// A push as configured or added over MQTT. `target` may hold variables
/// (`$stream`, `${key}`) and secrets (passphrases, stream keys): it is
/// stored, never shown; what is shown is [`PushDef::shown_target`].
#[derive(Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PushDef {
    pub id: String,
    /// A stream name, or `name+` for every wildcard stream of `name`.
    pub stream: String,
    pub target: String,
    #[serde(default)]
    pub kind: PushKind,
    /// `false` keeps the push defined but off.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Time windows (scheduled pushes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleDef>,
    /// Comparisons on variables that must all hold (scheduled pushes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
    /// Stream patterns: while any matching stream is live, this push is
    /// held back (a backup path that yields to the main one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inhibit: Vec<String>,
    /// Backup destinations (targets like `target`), for failover or for
    /// sending to all at once; see `redundancy`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backups: Vec<String>,
    /// How the backups are used (default: active-backup).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redundancy: Option<RedundancyDef>,
}

fn yes() -> bool {
    true
}

#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum RedundancyMode {
    /// One destination at a time; the next after repeated failures.
    #[default]
    ActiveBackup,
    /// Every destination at once.
    ActiveActive,
}

/// How an output's backup destinations are used.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RedundancyDef {
    #[serde(default)]
    pub mode: RedundancyMode,
    /// Failed attempts in a row (a stall is one) before moving on.
    #[serde(default = "three")]
    pub after_failures: u32,
    /// Go back to the primary once it works again (checked without
    /// interrupting the backup).
    #[serde(default = "yes")]
    pub return_to_primary: bool,
    /// How often to try the primary while on a backup, in seconds.
    #[serde(default = "thirty")]
    pub primary_retry_s: u64,
}

fn three() -> u32 {
    3
}

fn thirty() -> u64 {
    30
}

impl Default for RedundancyDef {
    fn default() -> Self {
        RedundancyDef {
            mode: RedundancyMode::ActiveBackup,
            after_failures: three(),
            return_to_primary: true,
            primary_retry_s: thirty(),
        }
    }
}

impl RedundancyDef {
    pub fn to_media(&self) -> fieldcast_media::output::Redundancy {
        match self.mode {
            RedundancyMode::ActiveActive => fieldcast_media::output::Redundancy::ActiveActive,
            RedundancyMode::ActiveBackup => fieldcast_media::output::Redundancy::ActiveBackup {
                after_failures: self.after_failures,
                return_to_primary: self.return_to_primary,
                primary_retry: std::time::Duration::from_secs(self.primary_retry_s),
            },
        }
    }
}

/// At most this many backups per output.
const MAX_BACKUPS: usize = 4;

/// Checks a target (or template) as far as it can be before it is filled
/// in; errors name `field`.
fn check_target(target: &str, field: &str) -> Result<(), ConfigError> {
    let checked = if fieldcast_media::record::RecordTarget::is_recording(target) {
        // A recording's path keeps its variables until each segment;
        // any value will do to check the rest.
        crate::vars::substitute(target, &|_| Some("x".to_string()))
            .unwrap_or_else(|_| target.to_string())
    } else if target.contains('$') {
        let scheme = target.split("://").next().unwrap_or("");
        format!("{scheme}://placeholder:1")
    } else {
        target.to_string()
    };
    Target::parse(&checked)
        .map(|_| ())
        .map_err(|e| ConfigError::new(field, e.to_string().replace("target: ", "")))
}

impl std::fmt::Debug for PushDef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushDef")
            .field("id", &self.id)
            .field("stream", &self.stream)
            .field("target", &self.shown_target())
            .field("kind", &self.kind)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

/// A validated push: the definition and what was compiled from it.
#[derive(Clone, Debug)]
pub struct ValidPush {
    pub def: PushDef,
    pub schedule: Option<Schedule>,
}

impl PushDef {
    /// The target as state, events and logs may show it: parsed and
    /// redacted; a template that cannot be parsed yet shows only its
    /// scheme, host and path.
    pub fn shown_target(&self) -> String {
        shown(&self.target)
    }

    /// The backups as they may be shown.
    pub fn shown_backups(&self) -> Vec<String> {
        self.backups.iter().map(|b| shown(b)).collect()
    }

    /// Checks the push against the streams that exist; `at` is its field
    /// path (`outputs[0]`, or empty for an MQTT command).
    pub fn validate(&self, at: &str, streams: &BTreeSet<String>) -> Result<ValidPush, ConfigError> {
        let field = |f: &str| field_at(at, f);
        check_name(&field("id"), &self.id).map_err(ConfigError::from_capture)?;
        let base = self.stream.split('+').next().unwrap_or_default();
        let suffix_ok = self
            .stream
            .split_once('+')
            .is_none_or(|(_, s)| s.is_empty() || check_name("", s).is_ok());
        if !streams.contains(base) || !suffix_ok {
            return Err(ConfigError::new(
                field("stream"),
                format!(
                    "'{}' is not a configured stream or a wildcard of one (streams: {})",
                    self.stream,
                    streams.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        // A template is checked in full when it starts (after substitution);
        // its scheme can be checked now.
        check_target(&self.target, &field("target"))?;
        if self.backups.len() > MAX_BACKUPS {
            return Err(ConfigError::new(
                field("backups"),
                format!("at most {MAX_BACKUPS} backup destinations"),
            ));
        }
        for (i, b) in self.backups.iter().enumerate() {
            let f = field(&format!("backups[{i}]"));
            check_target(b, &f)?;
            if fieldcast_media::record::RecordTarget::is_recording(b) {
                return Err(ConfigError::new(
                    f,
                    "a recording cannot be a backup destination (add it as a push of its own)",
                ));
            }
        }
        if !self.backups.is_empty() {
            if fieldcast_media::record::RecordTarget::is_recording(&self.target) {
                return Err(ConfigError::new(
                    field("backups"),
                    "a recording has no backup destinations",
                ));
            }
            if self.kind == PushKind::Push {
                return Err(ConfigError::new(
                    field("backups"),
                    "backups need kind \"auto\" or \"scheduled\" (a one-shot push ends at its first failure)",
                ));
            }
        }
        if let Some(r) = &self.redundancy {
            if self.backups.is_empty() {
                return Err(ConfigError::new(
                    field("redundancy"),
                    "needs at least one destination in backups",
                ));
            }
            if !(1..=100).contains(&r.after_failures) {
                return Err(ConfigError::new(
                    field("redundancy.after_failures"),
                    format!("{} is outside 1..=100", r.after_failures),
                ));
            }
            if !(5..=3600).contains(&r.primary_retry_s) {
                return Err(ConfigError::new(
                    field("redundancy.primary_retry_s"),
                    format!("{} is outside 5..=3600", r.primary_retry_s),
                ));
            }
        }
        let scheduled = self.kind == PushKind::Scheduled;
        if !scheduled && self.schedule.is_some() {
            return Err(ConfigError::new(
                field("schedule"),
                format!(
                    "needs kind \"scheduled\" (this push is \"{}\")",
                    self.kind_name()
                ),
            ));
        }
        if !scheduled && !self.rules.is_empty() {
            return Err(ConfigError::new(
                field("rules"),
                format!(
                    "need kind \"scheduled\" (this push is \"{}\")",
                    self.kind_name()
                ),
            ));
        }
        if scheduled && self.schedule.is_none() && self.rules.is_empty() {
            return Err(ConfigError::new(
                field("schedule"),
                "a scheduled push needs a schedule, rules, or both",
            ));
        }
        for (i, r) in self.rules.iter().enumerate() {
            r.validate(&field(&format!("rules[{i}]")))?;
        }
        for (i, p) in self.inhibit.iter().enumerate() {
            check_pattern(&field(&format!("inhibit[{i}]")), p)?;
        }
        if self.inhibit.len() > 32 {
            return Err(ConfigError::new(field("inhibit"), "at most 32 patterns"));
        }
        if self.rules.len() > 32 {
            return Err(ConfigError::new(field("rules"), "at most 32 rules"));
        }
        let schedule = match &self.schedule {
            Some(s) => Some(
                Schedule::compile(s, None)
                    .map_err(|e| ConfigError::new(field(&e.field), e.message))?,
            ),
            None => None,
        };
        Ok(ValidPush {
            def: self.clone(),
            schedule,
        })
    }

    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            PushKind::Push => "push",
            PushKind::Auto => "auto",
            PushKind::Scheduled => "scheduled",
        }
    }
}

/// Whether a target (or template) carries a secret that showing it would
/// reveal: what redaction would change.
pub fn holds_secret(target: &str) -> bool {
    match Target::parse(target) {
        Ok(t) => t.redacted().contains("***"),
        Err(_) => target
            .split(['?', '&'])
            .any(|kv| kv.starts_with("passphrase=") || kv.starts_with("streamid=")),
    }
}

/// A target as it may be shown; see [`PushDef::shown_target`].
pub fn shown(target: &str) -> String {
    match Target::parse(target) {
        Ok(t) => t.redacted(),
        Err(_) => {
            let head = target.split(['?', '#']).next().unwrap_or_default();
            if head.len() < target.len() {
                format!("{head}?…")
            } else {
                head.to_string()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn streams() -> BTreeSet<String> {
        ["main".to_string(), "cam".to_string()].into()
    }

    fn parse(json: &str) -> PushDef {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn defaults_keep_old_pushes_working() {
        let d = parse(r#"{"id":"a","stream":"main","target":"srt://h:1"}"#);
        assert_eq!(d.kind, PushKind::Auto);
        assert!(d.enabled);
        let v = d.validate("", &streams()).unwrap();
        assert!(v.schedule.is_none());
        // What is stored round-trips without the empty optional fields.
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            r#"{"id":"a","stream":"main","target":"srt://h:1","kind":"auto","enabled":true}"#
        );
    }

    #[test]
    fn templates_are_checked_at_start_but_the_scheme_now() {
        let d = parse(r#"{"id":"a","stream":"main","target":"srt://$host:9000?streamid=$stream"}"#);
        assert!(d.validate("", &streams()).is_ok());
        assert_eq!(
            d.shown_target(),
            "srt://$host:9000?mode=caller&streamid=***"
        );
        let d = parse(r#"{"id":"a","stream":"main","target":"rtsp://$host/x"}"#);
        let e = d.validate("outputs[3]", &streams()).unwrap_err();
        assert_eq!(e.field, "outputs[3].target");
        assert!(e.message.contains("'rtsp'"), "{e}");
    }

    #[test]
    fn kinds_and_their_fields() {
        let e = parse(
            r#"{"id":"a","stream":"main","target":"srt://h:1","rules":[{"var":"x","op":"set"}]}"#,
        )
        .validate("", &streams())
        .unwrap_err();
        assert_eq!(e.field, "rules");
        let e = parse(r#"{"id":"a","stream":"main","target":"srt://h:1","kind":"scheduled"}"#)
            .validate("", &streams())
            .unwrap_err();
        assert_eq!(e.field, "schedule");
        let e = parse(
            r#"{"id":"a","stream":"main","target":"srt://h:1","kind":"scheduled","rules":[{"var":"x","op":"eq"}]}"#,
        )
        .validate("outputs[0]", &streams())
        .unwrap_err();
        assert_eq!(e.field, "outputs[0].rules[0].value");
        let e = parse(
            r#"{"id":"a","stream":"main","target":"srt://h:1","kind":"scheduled","schedule":{"timezone":"Mars/Olympus","windows":[]}}"#,
        )
        .validate("outputs[0]", &streams())
        .unwrap_err();
        assert!(e.field.starts_with("outputs[0].schedule"), "{e}");
        assert!(e.message.contains("Mars/Olympus"), "{e}");
        assert!(
            serde_json::from_str::<PushDef>(
                r#"{"id":"a","stream":"main","target":"srt://h:1","kind":"sometimes"}"#
            )
            .is_err()
        );
    }

    #[test]
    fn streams_and_wildcards() {
        let ok = |s: &str| {
            parse(&format!(
                r#"{{"id":"a","stream":"{s}","target":"srt://h:1"}}"#
            ))
            .validate("", &streams())
            .is_ok()
        };
        assert!(ok("main") && ok("cam+") && ok("cam+north"));
        assert!(!ok("nope") && !ok("nope+x") && !ok("cam+a b"));
    }

    #[test]
    fn which_targets_hold_secrets() {
        assert!(!holds_secret("srt://h:1?latency=200"));
        assert!(holds_secret("srt://h:1?passphrase=0123456789abc"));
        assert!(holds_secret("srt://h:1?streamid=key"));
        assert!(holds_secret("srt://$h:1?streamid=$stream"));
        assert!(!holds_secret("srt://$h:$port"));
    }

    #[test]
    fn secrets_stay_hidden() {
        let d = parse(
            r#"{"id":"a","stream":"main","target":"srt://h:1?passphrase=0123456789secret&streamid=k3yval"}"#,
        );
        let shown = format!("{d:?} {}", d.shown_target());
        assert!(
            !shown.contains("0123456789secret") && !shown.contains("k3yval"),
            "{shown}"
        );
        let d = parse(r#"{"id":"a","stream":"main","target":"srt://$h:1?passphrase=$pw"}"#);
        assert!(!d.shown_target().contains("$pw"));
    }
}
