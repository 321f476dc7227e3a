//! The MQTT 5 session (rumqttc): connects with a last will, keeps the
//! connection with a short keep-alive, reconnects with backoff, and on every
//! ConnAck announces the device online and subscribes to its commands again
//! (a broker that lost the session has forgotten both).
//!
//! The event loop runs in its own task and hands commands to the controller
//! over a bounded channel; the controller publishes through the cloneable
//! [`AsyncClient`]. Neither side ever waits on the other: the event loop
//! hands a command over with `try_send` (a full queue is answered `busy`),
//! and the controller publishes with `try_publish` (a full request queue
//! drops telemetry, and state is sent again on the next tick). Awaiting in
//! both directions would deadlock once both queues were full, and would
//! leave the controller deaf to signals during a broker outage.

use std::time::Duration;

use bytes::Bytes;
use fieldcast_media::backoff::Backoff;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{LastWill, Packet, PublishProperties};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use rumqttc::{TlsConfiguration, Transport};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::command;
use crate::config::Settings;
use crate::error::{ApiError, Code};
use crate::topics::Topics;

/// Largest packet we accept or send: state documents of a busy device are
/// far above rumqttc's small default.
const MAX_PACKET: u32 = 1 << 20;
/// A connection that lasted this long was a good one.
const STABLE: Duration = Duration::from_secs(10);

pub enum Incoming {
    Command {
        name: String,
        payload: Bytes,
        response_topic: Option<String>,
        correlation: Option<Bytes>,
    },
}

fn read(path: &std::path::Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| anyhow::anyhow!("mqtt.{what}: reading {}: {e}", path.display()))
}

pub fn options(s: &Settings, topics: &Topics) -> anyhow::Result<MqttOptions> {
    let m = &s.mqtt;
    let client_id = m
        .client_id
        .clone()
        .unwrap_or_else(|| format!("fieldcast-{}", s.device.id));
    let mut o = MqttOptions::new(client_id, s.broker.host.clone(), s.broker.port);
    o.set_keep_alive(Duration::from_secs(m.keep_alive_s));
    o.set_clean_start(true);
    o.set_max_packet_size(Some(MAX_PACKET));
    o.set_last_will(LastWill::new(
        topics.status(),
        "offline",
        QoS::AtLeastOnce,
        true,
        None,
    ));
    if let Some(user) = &m.username {
        o.set_credentials(user.clone(), m.password.clone().unwrap_or_default());
    }
    if s.broker.tls {
        let client_auth = match (&m.client_cert_file, &m.client_key_file) {
            (Some(c), Some(k)) => Some((read(c, "client_cert_file")?, read(k, "client_key_file")?)),
            _ => None,
        };
        let tls = match &m.ca_file {
            Some(ca) => TlsConfiguration::Simple {
                ca: read(ca, "ca_file")?,
                alpn: None,
                client_auth,
            },
            None if client_auth.is_none() => TlsConfiguration::default(),
            None => {
                anyhow::bail!("mqtt.ca_file: a client certificate needs the broker's CA as well")
            }
        };
        o.set_transport(Transport::tls_with_config(tls));
    }
    Ok(o)
}

/// Starts the session. Returns the client to publish with, the stream of
/// commands, and whether the session is up (it turns true on every ConnAck,
/// when the controller republishes its retained state).
pub fn start(
    s: &Settings,
    topics: Topics,
) -> anyhow::Result<(AsyncClient, mpsc::Receiver<Incoming>, watch::Receiver<bool>)> {
    let opts = options(s, &topics)?;
    let client_id = opts.client_id();
    let (client, mut eventloop) = AsyncClient::new(opts, 256);
    let (tx, rx) = mpsc::channel(64);
    let (up_tx, up_rx) = watch::channel(false);
    let c = client.clone();
    let broker = format!("{}:{}", s.broker.host, s.broker.port);
    tokio::spawn(async move {
        let backoff = Backoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            factor: 2.0,
        };
        let mut failures = 0u32;
        let mut connected_at: Option<tokio::time::Instant> = None;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    connected_at = Some(tokio::time::Instant::now());
                    info!(%broker, "connected to MQTT broker");
                    // The broker forgot our subscription (clean start).
                    // Subscribe and say online from another task: they wait
                    // for room in the request queue, which only this loop
                    // empties. The subscription goes first, so whoever sees
                    // "online" can send commands at once.
                    let (c, topics) = (c.clone(), topics.clone());
                    tokio::spawn(async move {
                        for t in topics.commands() {
                            if let Err(e) = c.subscribe(t, QoS::AtLeastOnce).await {
                                warn!(error = %e, "subscribing to commands");
                            }
                        }
                        if let Err(e) = c
                            .publish(topics.status(), QoS::AtLeastOnce, true, "online")
                            .await
                        {
                            warn!(error = %e, "publishing status");
                        }
                    });
                    up_tx.send_replace(true);
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let topic = String::from_utf8_lossy(&p.topic).into_owned();
                    let Some(name) = topics.command_of(&topic) else {
                        continue;
                    };
                    let (response_topic, correlation) = match p.properties {
                        Some(PublishProperties {
                            response_topic,
                            correlation_data,
                            ..
                        }) => (response_topic, correlation_data),
                        None => (None, None),
                    };
                    let cmd = Incoming::Command {
                        name: name.to_string(),
                        payload: p.payload,
                        response_topic,
                        correlation,
                    };
                    match tx.try_send(cmd) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(Incoming::Command {
                            name,
                            response_topic,
                            correlation,
                            ..
                        })) => {
                            let err = ApiError::new(
                                Code::Busy,
                                "too many commands are waiting; nothing was done, try again",
                            );
                            let body = command::reply(topics.device(), &name, &Err(err));
                            reply(&c, &topics, &name, response_topic, correlation, body);
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => return,
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    up_tx.send_replace(false);
                    // Only a connection that held for a while resets the
                    // backoff: a broker that accepts and then drops us at
                    // once must not be hammered twice a second.
                    let held = connected_at.take().map(|t| t.elapsed());
                    if held.is_some_and(|h| h >= STABLE) {
                        failures = 0;
                    }
                    failures += 1;
                    if held.is_some_and(|h| h < STABLE) && failures >= 3 {
                        // What this usually is, in the field.
                        warn!(%broker, %client_id, "the broker keeps closing the connection right after accepting it; is another client using the same client id (same device id)?");
                    }
                    let delay = backoff.delay_random(failures);
                    // rumqttc's errors carry no credentials; the broker
                    // address is fine to log.
                    warn!(%broker, error = %e, retry_in = ?delay, "MQTT connection failed");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    });
    Ok((client, rx, up_rx))
}

/// Publishes a reply: to the request's response topic with its correlation
/// data (MQTT 5, section 4.10 "Request / Response"), or to the device's
/// `reply/<command>` topic for clients that gave none. Never waits: a
/// request queue that is full means the broker is gone, and so is the
/// requester's session.
pub fn reply(
    client: &AsyncClient,
    topics: &Topics,
    command: &str,
    response_topic: Option<String>,
    correlation: Option<Bytes>,
    body: Vec<u8>,
) {
    let topic = response_topic.unwrap_or_else(|| topics.reply(command));
    let props = PublishProperties {
        correlation_data: correlation,
        content_type: Some("application/json".into()),
        ..PublishProperties::default()
    };
    if let Err(e) = client.try_publish_with_properties(topic, QoS::AtLeastOnce, false, body, props)
    {
        warn!(error = %e, command, "reply not sent");
    }
}
