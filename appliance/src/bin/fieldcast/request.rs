//! A command and its replies: MQTT 5 request/response (section 4.10). The
//! request names a response topic unique to this run and carries
//! correlation data; the device publishes its reply there with the same
//! correlation data. We subscribe to the response topic (and wait for the
//! SUBACK) before publishing, or a fast device's reply would be lost.

use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::PubAckReason;
use serde_json::Value;
use tokio::time::{Duration, Instant};

use crate::error::CliError;
use crate::reply::Reply;
use crate::session::{self, Arrival, Message, Session};
use crate::topics::{Addressee, Topics};

/// How long to wait for a retained status that did not come with the
/// subscription: brokers send it at once, but the spec does not order it
/// against the SUBACK of a later subscription.
const STATUS_GRACE: Duration = Duration::from_millis(500);

pub struct Request {
    pub command: String,
    /// The arguments, for showing the result (`push.remove` replies
    /// without the push, so its line takes the id from here).
    pub args: Value,
    /// What is sent: `args` as JSON, or for `cmd` the text as given.
    pub payload: Vec<u8>,
}

impl Request {
    pub fn new(command: &str, args: Value) -> Request {
        Request {
            command: command.to_string(),
            payload: serde_json::to_vec(&args).expect("JSON values serialize"),
            args,
        }
    }

    /// A request sent as given, unchecked: the device judges it (`cmd`).
    pub fn raw(command: &str, text: &str) -> Request {
        Request {
            command: command.to_string(),
            args: serde_json::from_str(text).unwrap_or(Value::Null),
            payload: text.as_bytes().to_vec(),
        }
    }
}

/// The last retained-or-live payload of `topic` among `seen`.
fn last_on<'a>(seen: &'a [Message], topic: &str) -> Option<&'a Message> {
    seen.iter().rev().find(|m| m.topic == topic)
}

/// Sends `req` to one device and returns its reply. Refuses to send when
/// the device's retained status says it is offline, or when there is no
/// status at all (no such device under this prefix).
pub async fn to_device(
    s: &mut Session,
    topics: &Topics,
    device: &str,
    req: &Request,
) -> Result<Reply, CliError> {
    let status_topic = topics.device(device, "status");
    let reply_topic = topics.reply(&session::token());
    let mut seen = Vec::new();
    // The status in a SUBSCRIBE of its own: its retained message is sent
    // while the broker handles that packet, so it is here by the SUBACK of
    // the next one (mosquitto does so; STATUS_GRACE covers brokers that
    // do not).
    s.subscribe(std::slice::from_ref(&status_topic), &mut seen)
        .await?;
    s.subscribe(std::slice::from_ref(&reply_topic), &mut seen)
        .await?;
    let mut status = last_on(&seen, &status_topic).map(|m| m.payload.clone());
    if status.is_none() {
        let until = Instant::now() + STATUS_GRACE.min(s.timeout);
        while let Some(m) = s.next_message(until).await? {
            if m.topic == status_topic {
                status = Some(m.payload);
                break;
            }
        }
    }
    match status.as_deref() {
        None => {
            return Err(CliError::NoDevice {
                device: device.to_string(),
                prefix: topics.prefix().to_string(),
            });
        }
        Some(b"offline") => {
            return Err(CliError::Offline {
                device: device.to_string(),
            });
        }
        Some(_) => {}
    }

    let to = Addressee::Device(device.to_string());
    let (topic, correlation) = publish(s, topics, &to, req, &reply_topic).await?;
    let deadline = Instant::now() + s.timeout;
    loop {
        match s.next(deadline).await? {
            None => {
                return Err(CliError::NoReply {
                    device: device.to_string(),
                    command: req.command.clone(),
                    timeout: s.timeout,
                });
            }
            Some(Arrival::PubAck(reason)) => check_puback(s, &topic, reason, || {
                format!("is device {device} running and subscribed to its commands?")
            })?,
            Some(Arrival::Message(m)) if m.topic == status_topic => {
                if &m.payload[..] == b"offline" {
                    return Err(CliError::WentOffline {
                        device: device.to_string(),
                        command: req.command.clone(),
                    });
                }
            }
            Some(Arrival::Message(m))
                if m.topic == reply_topic && m.correlation.as_ref() == Some(&correlation) =>
            {
                return Reply::parse(&m.payload).map_err(|reason| CliError::BadReply {
                    device: device.to_string(),
                    command: req.command.clone(),
                    reason,
                });
            }
            Some(Arrival::Message(_)) => {}
        }
    }
}

/// Sends `req` to a group's fleet topic and collects the replies until the
/// timeout: the CLI cannot know how many devices a group has, so it always
/// waits the whole timeout. Replies come sorted by device.
pub async fn to_group(
    s: &mut Session,
    topics: &Topics,
    group: &str,
    req: &Request,
) -> Result<Vec<Reply>, CliError> {
    let reply_topic = topics.reply(&session::token());
    s.subscribe(std::slice::from_ref(&reply_topic), &mut Vec::new())
        .await?;
    let to = Addressee::Group(group.to_string());
    let (topic, correlation) = publish(s, topics, &to, req, &reply_topic).await?;
    let deadline = Instant::now() + s.timeout;
    let mut replies: Vec<Reply> = Vec::new();
    while let Some(a) = s.next(deadline).await? {
        match a {
            Arrival::PubAck(reason) => check_puback(s, &topic, reason, || {
                format!("no device of group {group} is listening")
            })?,
            Arrival::Message(m)
                if m.topic == reply_topic && m.correlation.as_ref() == Some(&correlation) =>
            {
                let reply = Reply::parse(&m.payload).map_err(|reason| CliError::BadReply {
                    device: format!("a device of group {group}"),
                    command: req.command.clone(),
                    reason,
                })?;
                // QoS 1 may deliver twice; a device answers once.
                let duplicate =
                    reply.device.is_some() && replies.iter().any(|r| r.device == reply.device);
                if !duplicate {
                    replies.push(reply);
                }
            }
            Arrival::Message(_) => {}
        }
    }
    if replies.is_empty() {
        return Err(CliError::NoGroupReply {
            group: group.to_string(),
            command: req.command.clone(),
            timeout: s.timeout,
        });
    }
    replies.sort_by(|a, b| a.sender().cmp(b.sender()));
    Ok(replies)
}

/// Publishes `req` to its command topic with our reply topic and a new
/// correlation id (MQTT 5 request/response); returns both to match with.
async fn publish(
    s: &mut Session,
    topics: &Topics,
    to: &Addressee,
    req: &Request,
    reply_topic: &str,
) -> Result<(String, Bytes), CliError> {
    let topic = topics.command(to, &req.command);
    let correlation = Bytes::from(session::token());
    s.request(
        topic.clone(),
        req.payload.clone(),
        reply_topic.to_string(),
        correlation.clone(),
    )
    .await?;
    Ok((topic, correlation))
}

fn check_puback(
    s: &Session,
    topic: &str,
    reason: PubAckReason,
    hint: impl FnOnce() -> String,
) -> Result<(), CliError> {
    match reason {
        PubAckReason::Success => Ok(()),
        PubAckReason::NoMatchingSubscribers => Err(CliError::NobodyListening {
            topic: topic.to_string(),
            hint: hint(),
        }),
        other => Err(CliError::Publish {
            broker: s.broker().to_string(),
            topic: topic.to_string(),
            reason: format!("{other:?}"),
        }),
    }
}
