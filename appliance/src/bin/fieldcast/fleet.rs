//! What the retained topics say: every device under the prefix
//! (`devices`), or one device's status and state (`state`). Nothing is
//! sent to a device; this works for devices that are offline too.

use std::collections::BTreeMap;

use serde_json::Value;
use tokio::time::{Duration, Instant};

use crate::error::CliError;
use crate::render::Device;
use crate::session::{Message, Session};
use crate::topics::Topics;

/// Retained messages come in one burst after the SUBACK: this long
/// without one means all have come.
const QUIET: Duration = Duration::from_millis(500);

/// Collects messages until `done` says so, `QUIET` passes without one, or
/// the timeout.
async fn gather(
    s: &mut Session,
    seen: &mut Vec<Message>,
    done: impl Fn(&[Message]) -> bool,
) -> Result<(), CliError> {
    let deadline = Instant::now() + s.timeout;
    while !done(seen) {
        let until = (Instant::now() + QUIET).min(deadline);
        match s.next_message(until).await? {
            Some(m) => seen.push(m),
            None => break,
        }
    }
    Ok(())
}

/// Every device with a retained status or state, sorted by id; the last
/// message of each topic wins.
pub fn collect(topics: &Topics, seen: &[Message]) -> Vec<Device> {
    let mut devices: BTreeMap<String, Device> = BTreeMap::new();
    for m in seen {
        let Some((id, leaf)) = topics.split(&m.topic) else {
            continue;
        };
        // An empty retained payload deletes the retained message (MQTT 5.0
        // section 3.3.1.3); it is never a device's word.
        if m.payload.is_empty() || !matches!(leaf, "status" | "state") {
            continue;
        }
        let d = devices.entry(id.to_string()).or_insert_with(|| Device {
            id: id.to_string(),
            ..Device::default()
        });
        if leaf == "status" {
            d.status = Some(String::from_utf8_lossy(&m.payload).trim().to_string());
        } else {
            d.state = serde_json::from_slice::<Value>(&m.payload).ok();
        }
    }
    devices.into_values().collect()
}

pub async fn devices(s: &mut Session, topics: &Topics) -> Result<Vec<Device>, CliError> {
    let mut seen = Vec::new();
    s.subscribe(
        &[topics.device("+", "status"), topics.device("+", "state")],
        &mut seen,
    )
    .await?;
    gather(s, &mut seen, |_| false).await?;
    Ok(collect(topics, &seen))
}

/// One device's retained status and state (the state's payload as it came).
pub async fn device(
    s: &mut Session,
    topics: &Topics,
    id: &str,
) -> Result<(Option<String>, String), CliError> {
    let status_topic = topics.device(id, "status");
    let state_topic = topics.device(id, "state");
    let mut seen = Vec::new();
    s.subscribe(&[status_topic.clone(), state_topic.clone()], &mut seen)
        .await?;
    let has = |seen: &[Message], t: &str| seen.iter().any(|m| m.topic == t);
    gather(s, &mut seen, |seen| {
        has(seen, &status_topic) && has(seen, &state_topic)
    })
    .await?;
    let last = |t: &str| {
        seen.iter()
            .rev()
            .find(|m| m.topic == t && !m.payload.is_empty())
            .map(|m| String::from_utf8_lossy(&m.payload).trim().to_string())
    };
    match (last(&status_topic), last(&state_topic)) {
        (None, None) => Err(CliError::NoDevice {
            device: id.to_string(),
            prefix: topics.prefix().to_string(),
        }),
        (_, None) => Err(CliError::NoState {
            device: id.to_string(),
        }),
        (status, Some(state)) => Ok((status, state)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(topic: &str, payload: &str) -> Message {
        Message {
            topic: topic.into(),
            payload: bytes::Bytes::copy_from_slice(payload.as_bytes()),
            correlation: None,
        }
    }

    #[test]
    fn collects_the_last_word_of_each_device() {
        let t = Topics::new("fieldcast").unwrap();
        let list = collect(
            &t,
            &[
                msg("fieldcast/b/status", "online"),
                msg("fieldcast/a/state", r#"{"board":"x"}"#),
                msg("fieldcast/a/status", "online"),
                msg("fieldcast/a/status", "offline"),
                msg("fieldcast/c/status", ""),
                msg("fieldcast/_cli/x/reply", "{}"),
                msg("other/d/status", "online"),
            ],
        );
        assert_eq!(list.len(), 2, "{list:?}");
        assert_eq!(list[0].id, "a");
        assert_eq!(list[0].status.as_deref(), Some("offline"));
        assert_eq!(list[0].state.as_ref().unwrap()["board"], "x");
        assert_eq!(list[1].id, "b");
        assert!(list[1].state.is_none());
    }
}
