//! Triggers: named events of the device, and the handlers (a program or an
//! HTTP URL) an operator attaches to them. Every trigger is also published
//! as an MQTT event; handlers are for what MQTT cannot do, like a token
//! server that turns a stream name into a secret stream key.
//!
//! A handler gets the event as JSON (on its standard input, or as the body
//! of a POST). A *blocking* handler's answer (standard output, or the body
//! of a 2xx reply) decides, as in MistServer's `PUSH_OUT_START`:
//!
//! - `push_rewrite`: a non-empty answer is the target to use instead; an
//!   empty answer refuses the push.
//! - `push_start`: `false` or `0` refuses the push; anything else lets it go.
//!
//! When a blocking handler fails (cannot run, non-zero exit, HTTP error,
//! timeout) its `default` answer is used; without one, the push goes ahead
//! unchanged. Set `default = "false"` (start) or `default = ""` (rewrite) to
//! fail closed.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::warn;

use crate::error::{ConfigError, field_at};
use crate::push::rules::stream_matches;
use crate::vars::{self, check_http_url, shown_url};

#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// A push is about to connect (blocking: may refuse).
    PushStart,
    /// A push is about to connect (blocking: may rewrite the target).
    PushRewrite,
    /// A push ended: why, its counters, and its last log lines.
    PushEnd,
    StreamLive,
    StreamOffline,
    InputLost,
    InputRestored,
    /// Pushes, variables or handlers were changed (over MQTT or at start).
    ConfigChanged,
    /// A command or URL variable failed to refresh; it keeps its last value.
    VariableFailed,
    /// A recording closed a segment file (MistServer's RECORDING_END).
    RecordingSegment,
    SystemStart,
    SystemStop,
}

pub const ALL: &[Trigger] = &[
    Trigger::PushStart,
    Trigger::PushRewrite,
    Trigger::PushEnd,
    Trigger::StreamLive,
    Trigger::StreamOffline,
    Trigger::InputLost,
    Trigger::InputRestored,
    Trigger::ConfigChanged,
    Trigger::VariableFailed,
    Trigger::RecordingSegment,
    Trigger::SystemStart,
    Trigger::SystemStop,
];

impl Trigger {
    pub fn name(self) -> &'static str {
        match self {
            Trigger::PushStart => "push_start",
            Trigger::PushRewrite => "push_rewrite",
            Trigger::PushEnd => "push_end",
            Trigger::StreamLive => "stream_live",
            Trigger::StreamOffline => "stream_offline",
            Trigger::InputLost => "input_lost",
            Trigger::InputRestored => "input_restored",
            Trigger::ConfigChanged => "config_changed",
            Trigger::VariableFailed => "variable_failed",
            Trigger::RecordingSegment => "recording_segment",
            Trigger::SystemStart => "system_start",
            Trigger::SystemStop => "system_stop",
        }
    }

    /// Whether a handler's answer can change what happens.
    pub fn can_block(self) -> bool {
        matches!(self, Trigger::PushStart | Trigger::PushRewrite)
    }
}

/// A handler attached to a trigger.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HandlerDef {
    pub on: Trigger,
    /// A program and its arguments, run without a shell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<Vec<String>>,
    /// An http(s) URL that receives the event as a JSON POST.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Wait for the answer and use it (push_start, push_rewrite only).
    #[serde(default)]
    pub blocking: bool,
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// The answer to use when the handler fails or times out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// Only for these streams (patterns as in `inhibit`); empty: all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub streams: Vec<String>,
    /// From the config file (or allowed by `[control]
    /// allow_push_handlers`): a blocking handler that is trusted gets push
    /// targets in full. Not part of the definition.
    #[serde(skip)]
    pub trusted: bool,
}

fn default_timeout() -> u64 {
    5000
}

impl HandlerDef {
    pub fn validate(&self, at: &str) -> Result<(), ConfigError> {
        let field = |f: &str| field_at(at, f);
        match (&self.exec, &self.url) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(ConfigError::new(
                    field("exec"),
                    "a handler needs exactly one of exec, url",
                ));
            }
            (Some(argv), None) if argv.first().is_none_or(|p| p.is_empty()) => {
                return Err(ConfigError::new(
                    field("exec"),
                    "must name a program: [\"/path/to/program\", \"arg\", …]",
                ));
            }
            (None, Some(u)) => {
                check_http_url(&field("url"), u)?;
            }
            _ => {}
        }
        if self.blocking && !self.on.can_block() {
            return Err(ConfigError::new(
                field("blocking"),
                format!(
                    "trigger {} cannot block (only push_start and push_rewrite can)",
                    self.on.name()
                ),
            ));
        }
        for (i, p) in self.streams.iter().enumerate() {
            crate::push::rules::check_pattern(&field(&format!("streams[{i}]")), p)?;
        }
        if self.streams.len() > 32 {
            return Err(ConfigError::new(field("streams"), "at most 32 patterns"));
        }
        if !(100..=60_000).contains(&self.timeout_ms) {
            return Err(ConfigError::new(
                field("timeout_ms"),
                format!("{} is outside 100..=60000", self.timeout_ms),
            ));
        }
        Ok(())
    }

    pub fn applies_to(&self, stream: Option<&str>) -> bool {
        match stream {
            Some(s) if !self.streams.is_empty() => {
                self.streams.iter().any(|p| stream_matches(p, s))
            }
            _ => true,
        }
    }

    /// The handler as `trigger.list` shows it: a URL without user
    /// information or query (either may hold a token).
    pub fn shown(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let (Some(u), Some(obj)) = (&self.url, v.as_object_mut()) {
            obj.insert("url".into(), Value::String(shown_url(u)));
        }
        v
    }

    fn what(&self) -> String {
        match (&self.exec, &self.url) {
            (Some(argv), _) => argv[0].clone(),
            (_, Some(u)) => shown_url(u),
            _ => "?".into(),
        }
    }

    /// Runs the handler with `event` as its input; its answer, or why it
    /// failed.
    pub async fn run(&self, event: &Value, http: &reqwest::Client) -> Result<String, String> {
        let body = serde_json::to_vec(event).expect("events serialize");
        let timeout = Duration::from_millis(self.timeout_ms);
        match (&self.exec, &self.url) {
            (Some(argv), _) => vars::run_command(argv, Some(&body), timeout).await,
            (_, Some(u)) => {
                let shown = shown_url(u);
                let resp = http
                    .post(u)
                    .timeout(timeout)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| format!("{shown}: {}", vars::reqwest_reason(&e)))?;
                let status = resp.status();
                if !status.is_success() {
                    return Err(format!("{shown}: HTTP {status}"));
                }
                let body = vars::read_capped(resp, vars::MAX_VALUE, &shown).await?;
                let text =
                    String::from_utf8(body).map_err(|_| format!("{shown}: answer is not UTF-8"))?;
                Ok(text.trim_end_matches(['\n', '\r']).to_string())
            }
            _ => Err("handler has nothing to run".into()),
        }
    }
}

/// What the blocking handlers of a push start decided.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// Go ahead with this target (`rewritten` if a handler changed it).
    Go {
        target: String,
        rewritten: bool,
    },
    Refuse(String),
}

/// Runs the handlers of a push that is about to connect: `push_rewrite`
/// ones first (each may replace the target the next one sees), then
/// `push_start` ones (each may refuse). Non-blocking handlers of both are
/// started and not waited for. `event` is the push's event; its `target`
/// field is set to the current target for each handler.
pub async fn before_push(
    handlers: &[HandlerDef],
    stream: &str,
    mut target: String,
    mut event: Value,
    http: &reqwest::Client,
) -> Verdict {
    let mut rewritten = false;
    for trigger in [Trigger::PushRewrite, Trigger::PushStart] {
        for h in handlers
            .iter()
            .filter(|h| h.on == trigger && h.applies_to(Some(stream)))
        {
            event["trigger"] = Value::from(trigger.name());
            // Secrets only to a trusted handler whose answer decides; any
            // other sees the target as MQTT does.
            event["target"] = if h.blocking && h.trusted {
                Value::from(target.clone())
            } else {
                Value::from(crate::push::def::shown(&target))
            };
            if !h.blocking {
                fire(h.clone(), event.clone(), http.clone());
                continue;
            }
            let answer = match h.run(&event, http).await {
                Ok(a) => a,
                Err(e) => {
                    warn!(trigger = trigger.name(), handler = %h.what(), error = %e, "trigger handler failed");
                    match &h.default {
                        Some(d) => d.clone(),
                        // No default: the push goes ahead as it is.
                        None => continue,
                    }
                }
            };
            match trigger {
                Trigger::PushRewrite => {
                    let answer = answer.trim();
                    if answer.is_empty() {
                        return Verdict::Refuse(format!(
                            "refused by the push_rewrite handler {}",
                            h.what()
                        ));
                    }
                    if answer != target {
                        target = answer.to_string();
                        rewritten = true;
                    }
                }
                _ => {
                    let a = answer.trim();
                    if a.eq_ignore_ascii_case("false") || a == "0" {
                        return Verdict::Refuse(format!(
                            "refused by the push_start handler {}",
                            h.what()
                        ));
                    }
                }
            }
        }
    }
    Verdict::Go { target, rewritten }
}

/// Starts a non-blocking handler and forgets it; a failure is logged.
pub fn fire(h: HandlerDef, event: Value, http: reqwest::Client) {
    tokio::spawn(async move {
        if let Err(e) = h.run(&event, &http).await {
            warn!(trigger = h.on.name(), handler = %h.what(), error = %e, "trigger handler failed");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn h(json: &str) -> HandlerDef {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn validation_names_the_field() {
        assert!(
            h(r#"{"on":"push_end","exec":["/bin/true"]}"#)
                .validate("triggers[0]")
                .is_ok()
        );
        let e = h(r#"{"on":"push_end","exec":["/bin/true"],"blocking":true}"#)
            .validate("triggers[0]")
            .unwrap_err();
        assert_eq!(e.field, "triggers[0].blocking");
        let e = h(r#"{"on":"push_end"}"#).validate("").unwrap_err();
        assert_eq!(e.field, "exec");
        let e = h(r#"{"on":"push_end","url":"http://u:pw@h/x?token=s3cret"}"#);
        assert!(e.validate("").is_ok());
        let shown = e.shown().to_string();
        assert!(
            !shown.contains("s3cret") && !shown.contains("pw"),
            "{shown}"
        );
        assert!(
            serde_json::from_str::<HandlerDef>(r#"{"on":"push_ended","exec":["/x"]}"#).is_err()
        );
    }

    fn script(dir: &tempfile::TempDir, name: &str, body: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.path().join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p.display().to_string()
    }

    #[tokio::test]
    async fn blocking_handlers_rewrite_and_refuse() {
        let dir = tempfile::tempdir().unwrap();
        let http = reqwest::Client::new();
        // A token server: reads the event, answers a target with a key.
        let token = script(
            &dir,
            "token",
            r#"stream=$(sed -n 's/.*"stream":"\([^"]*\)".*/\1/p'); echo "srt://h:1?streamid=key-$stream""#,
        );
        let refuse = script(&dir, "refuse", "cat >/dev/null; echo false");
        let broken = script(&dir, "broken", "exit 1");
        let event = json!({"id": "a", "stream": "main"});
        let handlers = vec![h(&format!(
            r#"{{"on":"push_rewrite","exec":["{token}"],"blocking":true}}"#
        ))];
        let v = before_push(&handlers, "main", "srt://h:1".into(), event.clone(), &http).await;
        assert_eq!(
            v,
            Verdict::Go {
                target: "srt://h:1?streamid=key-main".into(),
                rewritten: true
            }
        );
        // Stream filter: not for this stream, nothing happens.
        let mut only_cam = handlers.clone();
        only_cam[0].streams = vec!["cam".into()];
        let v = before_push(&only_cam, "main", "srt://h:1".into(), event.clone(), &http).await;
        assert_eq!(
            v,
            Verdict::Go {
                target: "srt://h:1".into(),
                rewritten: false
            }
        );
        let handlers = vec![h(&format!(
            r#"{{"on":"push_start","exec":["{refuse}"],"blocking":true}}"#
        ))];
        let v = before_push(&handlers, "main", "srt://h:1".into(), event.clone(), &http).await;
        assert!(
            matches!(v, Verdict::Refuse(w) if w.contains("push_start") && w.contains("refuse"))
        );
        // A failing handler: its default decides; without one, go ahead.
        let mut failing = vec![h(&format!(
            r#"{{"on":"push_start","exec":["{broken}"],"blocking":true}}"#
        ))];
        let v = before_push(&failing, "main", "srt://h:1".into(), event.clone(), &http).await;
        assert!(matches!(v, Verdict::Go { .. }));
        failing[0].default = Some("false".into());
        let v = before_push(&failing, "main", "srt://h:1".into(), event.clone(), &http).await;
        assert!(matches!(v, Verdict::Refuse(_)));
        // Rewrite with an empty answer refuses.
        let empty = script(&dir, "empty", "cat >/dev/null");
        let handlers = vec![h(&format!(
            r#"{{"on":"push_rewrite","exec":["{empty}"],"blocking":true}}"#
        ))];
        let v = before_push(&handlers, "main", "srt://h:1".into(), event, &http).await;
        assert!(matches!(v, Verdict::Refuse(_)));
    }
}
