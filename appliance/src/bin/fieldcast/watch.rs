//! `watch`: a device's (or every device's) events, telemetry and state as
//! they come, one line each, until Ctrl-C.

use jiff::tz::TimeZone;
use serde_json::Value;
use tokio::time::{Duration, Instant};

use crate::error::CliError;
use crate::render::{self, PRECISE};
use crate::session::{Message, Session};
use crate::topics::Topics;

/// What to follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Streams {
    pub events: bool,
    pub telemetry: bool,
    pub state: bool,
}

impl Streams {
    /// The leaves to subscribe to; state comes with the online/offline
    /// status, which is a change of state too.
    pub fn leaves(self) -> Vec<&'static str> {
        let all = !(self.events || self.telemetry || self.state);
        let mut l = Vec::new();
        if all || self.events {
            l.push("events");
        }
        if all || self.telemetry {
            l.push("telemetry");
        }
        if all || self.state {
            l.extend(["state", "status"]);
        }
        l
    }
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A value in a `key=value` pair: quoted when it has blanks.
fn word(v: &Value) -> String {
    match v {
        Value::String(s) if !s.is_empty() && !s.contains(char::is_whitespace) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// One human line: local time, kind, device, and what it says.
pub fn line(device: &str, leaf: &str, payload: &[u8], tz: &TimeZone, now: f64) -> String {
    let doc: Value = serde_json::from_slice(payload).unwrap_or(Value::Null);
    let ts = doc["ts"].as_f64().unwrap_or(now);
    let what = match leaf {
        "events" if doc.is_object() => {
            let mut parts = vec![word(&doc["event"])];
            for (k, v) in doc.as_object().into_iter().flatten() {
                if !matches!(k.as_str(), "event" | "device" | "ts") {
                    parts.push(format!("{k}={}", word(v)));
                }
            }
            parts.join(" ")
        }
        "telemetry" if doc.is_object() => {
            let mut parts = Vec::new();
            if let Some(up) = doc["uptime_s"].as_f64() {
                parts.push(format!("up {}", render::span(up)));
            }
            for (name, st) in doc["streams"].as_object().into_iter().flatten() {
                parts.push(format!("{name} {}", render::kbps(&st["bitrate_kbps"])));
            }
            for (id, o) in doc["outputs"].as_object().into_iter().flatten() {
                parts.push(format!(
                    "{id} {} {}",
                    word(&o["state"]),
                    render::kbps(&o["bitrate_kbps"])
                ));
            }
            parts.join("  ")
        }
        "state" if doc.is_object() => {
            let mut parts = Vec::new();
            match doc["healthy"].as_bool() {
                Some(true) => parts.push("healthy".to_string()),
                Some(false) => parts.push("unhealthy".to_string()),
                None => {}
            }
            let list = |key: &str, name: &str| -> Vec<String> {
                doc[key]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|x| format!("{}={}", word(&x[name]), word(&x["state"])))
                    .collect()
            };
            let inputs = list("inputs", "name");
            if !inputs.is_empty() {
                parts.push(format!("inputs {}", inputs.join(" ")));
            }
            let pushes = list("outputs", "id");
            parts.push(if pushes.is_empty() {
                "no pushes".into()
            } else {
                format!("pushes {}", pushes.join(" "))
            });
            parts.join("  ")
        }
        _ => String::from_utf8_lossy(payload).trim().to_string(),
    };
    let kind = match leaf {
        "events" => "event",
        other => other,
    };
    format!(
        "{}  {kind:<9}  {device}  {what}",
        render::time(ts, tz, PRECISE)
    )
}

/// One JSON document on one line, for `--json`: the payload as it came
/// when it is one line already; the status (plain text) as
/// `{"device": …, "status": …}`.
pub fn json_line(device: &str, leaf: &str, payload: &[u8]) -> String {
    if leaf == "status" {
        let status = String::from_utf8_lossy(payload).trim().to_string();
        return serde_json::json!({"device": device, "status": status}).to_string();
    }
    let text = String::from_utf8_lossy(payload);
    let text = text.trim();
    if !text.contains('\n') {
        return text.to_string();
    }
    serde_json::from_str::<Value>(text).map_or_else(|_| text.replace('\n', " "), |v| v.to_string())
}

fn show(topics: &Topics, m: &Message, json: bool, tz: &TimeZone) -> Option<String> {
    let (device, leaf) = topics.split(&m.topic)?;
    if m.payload.is_empty() {
        return None;
    }
    Some(if json {
        json_line(device, leaf, &m.payload)
    } else {
        line(device, leaf, &m.payload, tz, now())
    })
}

pub async fn run(
    s: &mut Session,
    topics: &Topics,
    device: &str,
    streams: Streams,
    json: bool,
    tz: &TimeZone,
) -> Result<(), CliError> {
    let filters: Vec<String> = streams
        .leaves()
        .into_iter()
        .map(|leaf| topics.device(device, leaf))
        .collect();
    let mut early = Vec::new();
    s.subscribe(&filters, &mut early).await?;
    for m in &early {
        if let Some(l) = show(topics, m, json, tz) {
            crate::say(&l);
        }
    }
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            // Ctrl-C is how a watch ends: not an error.
            _ = &mut ctrl_c => return Ok(()),
            m = s.next_message(Instant::now() + Duration::from_secs(3600)) => {
                if let Some(m) = m? && let Some(l) = show(topics, &m, json, tz) {
                    crate::say(&l);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tz() -> TimeZone {
        TimeZone::UTC
    }

    #[test]
    fn streams_default_to_all() {
        let none = Streams {
            events: false,
            telemetry: false,
            state: false,
        };
        assert_eq!(none.leaves(), ["events", "telemetry", "state", "status"]);
        let ev = Streams {
            events: true,
            ..none
        };
        assert_eq!(ev.leaves(), ["events"]);
    }

    #[test]
    fn lines() {
        let ts = 1_767_225_600.5;
        let l = line(
            "enc-07",
            "events",
            br#"{"event":"output_disconnected","id":"backup","reason":"stalled: no acks","retry_in_s":0.7,"device":"enc-07","ts":1767225600.5}"#,
            &tz(),
            0.0,
        );
        assert_eq!(
            l,
            "2026-01-01 00:00:00.500  event      enc-07  output_disconnected id=backup reason=\"stalled: no acks\" retry_in_s=0.7"
        );
        let l = line(
            "enc-07",
            "telemetry",
            br#"{"ts":1767225600.5,"uptime_s":85,"streams":{"main":{"bitrate_kbps":3120.4}},"outputs":{"backup":{"state":"live","bitrate_kbps":3150}}}"#,
            &tz(),
            0.0,
        );
        assert!(
            l.ends_with("telemetry  enc-07  up 1m25s  main 3120 kbps  backup live 3150 kbps"),
            "{l}"
        );
        let l = line(
            "enc-07",
            "state",
            br#"{"healthy":true,"inputs":[{"name":"main","state":"running"}],"outputs":[{"id":"p","state":"waiting"}]}"#,
            &tz(),
            ts,
        );
        assert_eq!(
            l,
            "2026-01-01 00:00:00.500  state      enc-07  healthy  inputs main=running  pushes p=waiting"
        );
        let l = line("enc-07", "status", b"offline", &tz(), ts);
        assert!(l.ends_with("status     enc-07  offline"), "{l}");
    }

    #[test]
    fn json_lines() {
        assert_eq!(
            json_line("enc-07", "status", b"online"),
            r#"{"device":"enc-07","status":"online"}"#
        );
        assert_eq!(json_line("d", "events", b"{\"a\": 1}\n"), "{\"a\": 1}");
        assert_eq!(json_line("d", "state", b"{\n \"a\": 1\n}"), r#"{"a":1}"#);
    }
}
