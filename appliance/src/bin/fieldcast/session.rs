//! One MQTT 5 connection for one run of the CLI (rumqttc). The event loop
//! runs in its own task and hands what arrives over a channel, so every
//! wait here is a plain, cancellable channel receive with a deadline.
//!
//! A run does not reconnect: a broker that goes away is reported, and the
//! operator runs the command again. Reconnecting silently would also lose
//! replies (the response topic subscription dies with a clean session).

use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{
    ConnectReturnCode, Filter, Packet, PubAckReason, PublishProperties, SubAck, SubscribeReasonCode,
};
use rumqttc::v5::{AsyncClient, ConnectionError, Event, MqttOptions, StateError};
use rumqttc::{TlsConfiguration, Transport};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::broker::Broker;
use crate::cli::Connection;
use crate::error::CliError;

/// State documents of a busy device and exported configs are far above
/// rumqttc's small default.
const MAX_PACKET: u32 = 4 << 20;

/// A PUBLISH that arrived.
#[derive(Clone, Debug)]
pub struct Message {
    pub topic: String,
    pub payload: Bytes,
    pub correlation: Option<Bytes>,
}

/// What a wait can return.
#[derive(Debug)]
pub enum Arrival {
    Message(Message),
    /// The broker's PUBACK to our request. MQTT 5 brokers say in it when
    /// nobody was subscribed (section 3.4.2.1, reason 0x10) or when the
    /// publish was not authorized (0x87).
    PubAck(PubAckReason),
}

enum Incoming {
    ConnAck(ConnectReturnCode),
    SubAck(SubAck),
    Arrival(Arrival),
}

pub struct Session {
    client: AsyncClient,
    rx: mpsc::UnboundedReceiver<Result<Incoming, ConnectionError>>,
    broker: String,
    /// `--timeout`: how long one wait (connection, SUBACK, reply) lasts.
    pub timeout: Duration,
}

/// A random token: the client id and the response topic of this run.
pub fn token() -> String {
    format!("{:016x}", rand::random::<u64>())
}

fn options(b: &Broker, c: &Connection) -> Result<MqttOptions, CliError> {
    let mut o = MqttOptions::new(format!("fieldcast-cli-{}", token()), &b.host, b.port);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_clean_start(true);
    o.set_max_packet_size(Some(MAX_PACKET));
    o.set_connection_timeout(c.timeout.as_secs().max(1));
    if let Some(user) = &c.username {
        o.set_credentials(user.clone(), c.password.clone().unwrap_or_default());
    } else if c.password.is_some() {
        return Err(CliError::usage("a password needs --username as well"));
    }
    if b.tls {
        let tls = match &c.ca_file {
            Some(path) => TlsConfiguration::Simple {
                ca: std::fs::read(path).map_err(|e| {
                    CliError::usage(format!("--ca-file: reading {}: {e}", path.display()))
                })?,
                alpn: None,
                client_auth: None,
            },
            None => TlsConfiguration::default(),
        };
        o.set_transport(Transport::tls_with_config(tls));
    } else if c.ca_file.is_some() {
        return Err(CliError::usage(
            "--ca-file is set but --broker is not mqtts://",
        ));
    }
    Ok(o)
}

/// Why a connection failed, in words; rumqttc's errors never carry the
/// credentials, but its wording is for programmers.
fn reason(e: &ConnectionError) -> String {
    fn io(e: &std::io::Error) -> String {
        use std::io::ErrorKind::*;
        match e.kind() {
            ConnectionRefused => "connection refused".into(),
            ConnectionReset => "connection reset".into(),
            TimedOut => "timed out".into(),
            UnexpectedEof => "the broker closed the connection".into(),
            HostUnreachable => "host unreachable".into(),
            NetworkUnreachable => "network unreachable".into(),
            _ => e.to_string(),
        }
    }
    match e {
        ConnectionError::Io(e) => io(e),
        ConnectionError::MqttState(StateError::Io(e)) => io(e),
        ConnectionError::MqttState(StateError::ConnectionAborted) => {
            "the broker closed the connection".into()
        }
        ConnectionError::MqttState(StateError::ServerDisconnect {
            reason_code,
            reason_string,
        }) => match reason_string {
            Some(s) => format!("the broker disconnected us ({reason_code:?}: {s})"),
            None => format!("the broker disconnected us ({reason_code:?})"),
        },
        ConnectionError::Timeout(_) => "no answer in time".into(),
        ConnectionError::Tls(e) => format!("TLS: {e}"),
        other => other.to_string(),
    }
}

fn refusal(code: ConnectReturnCode) -> String {
    match code {
        ConnectReturnCode::BadUserNamePassword => "bad user name or password".into(),
        ConnectReturnCode::NotAuthorized => "not authorized".into(),
        ConnectReturnCode::Banned => "banned".into(),
        ConnectReturnCode::ServerUnavailable | ConnectReturnCode::ServiceUnavailable => {
            "unavailable".into()
        }
        ConnectReturnCode::ServerBusy => "busy".into(),
        other => format!("{other:?}"),
    }
}

impl Session {
    /// Connects, and returns once the broker accepted us (CONNACK).
    pub async fn connect(b: &Broker, c: &Connection) -> Result<Session, CliError> {
        let opts = options(b, c)?;
        let (client, mut events) = AsyncClient::new(opts, 32);
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let item = match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(a))) => Ok(Incoming::ConnAck(a.code)),
                    Ok(Event::Incoming(Packet::SubAck(a))) => Ok(Incoming::SubAck(a)),
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        Ok(Incoming::Arrival(Arrival::Message(Message {
                            topic: String::from_utf8_lossy(&p.topic).into_owned(),
                            correlation: p.properties.and_then(|pp| pp.correlation_data),
                            payload: p.payload,
                        })))
                    }
                    Ok(Event::Incoming(Packet::PubAck(a))) => {
                        Ok(Incoming::Arrival(Arrival::PubAck(a.reason)))
                    }
                    Ok(_) => continue,
                    Err(e) => Err(e),
                };
                let failed = item.is_err();
                // The receiver gone means the run is over.
                if tx.send(item).is_err() || failed {
                    return;
                }
            }
        });
        let mut s = Session {
            client,
            rx,
            broker: b.address(),
            timeout: c.timeout,
        };
        let deadline = Instant::now() + c.timeout;
        match tokio::time::timeout_at(deadline, s.rx.recv()).await {
            Err(_) => Err(CliError::Unreachable {
                broker: s.broker.clone(),
                reason: format!("no answer within {}", crate::error::secs(c.timeout)),
            }),
            Ok(None) => Err(s.lost("the connection ended")),
            Ok(Some(Err(ConnectionError::ConnectionRefused(code)))) => Err(CliError::Refused {
                broker: s.broker.clone(),
                reason: refusal(code),
            }),
            Ok(Some(Err(e))) => Err(CliError::Unreachable {
                broker: s.broker.clone(),
                reason: reason(&e),
            }),
            Ok(Some(Ok(Incoming::ConnAck(ConnectReturnCode::Success)))) => Ok(s),
            Ok(Some(Ok(Incoming::ConnAck(code)))) => Err(CliError::Refused {
                broker: s.broker.clone(),
                reason: refusal(code),
            }),
            Ok(Some(Ok(_))) => Err(s.lost("the broker spoke before accepting us")),
        }
    }

    /// `host:port`, as messages name it.
    pub fn broker(&self) -> &str {
        &self.broker
    }

    fn lost(&self, reason: impl Into<String>) -> CliError {
        CliError::Lost {
            broker: self.broker.clone(),
            reason: reason.into(),
        }
    }

    /// The next message or PUBACK, or `None` at `deadline`.
    pub async fn next(&mut self, deadline: Instant) -> Result<Option<Arrival>, CliError> {
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Err(_) => return Ok(None),
                Ok(None) => return Err(self.lost("the connection ended")),
                Ok(Some(Err(e))) => return Err(self.lost(reason(&e))),
                Ok(Some(Ok(Incoming::Arrival(a)))) => return Ok(Some(a)),
                // Acknowledgements nobody waits for (`subscribe` waits for
                // its own).
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// The next message, or `None` at `deadline`.
    pub async fn next_message(&mut self, deadline: Instant) -> Result<Option<Message>, CliError> {
        loop {
            match self.next(deadline).await? {
                None => return Ok(None),
                Some(Arrival::Message(m)) => return Ok(Some(m)),
                Some(Arrival::PubAck(_)) => {}
            }
        }
    }

    /// Subscribes to `filters` in one SUBSCRIBE and waits for its SUBACK.
    /// Messages arriving meanwhile (retained ones of an earlier
    /// subscription) are appended to `early`.
    pub async fn subscribe(
        &mut self,
        filters: &[String],
        early: &mut Vec<Message>,
    ) -> Result<(), CliError> {
        let list: Vec<Filter> = filters
            .iter()
            .map(|f| Filter::new(f.clone(), QoS::AtLeastOnce))
            .collect();
        self.client
            .subscribe_many(list)
            .await
            .map_err(|e| self.lost(e.to_string()))?;
        let deadline = Instant::now() + self.timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Err(_) => {
                    return Err(self.lost(format!(
                        "no SUBACK within {}",
                        crate::error::secs(self.timeout)
                    )));
                }
                Ok(None) => return Err(self.lost("the connection ended")),
                Ok(Some(Err(e))) => return Err(self.lost(reason(&e))),
                Ok(Some(Ok(Incoming::Arrival(Arrival::Message(m))))) => early.push(m),
                Ok(Some(Ok(Incoming::SubAck(ack)))) => {
                    // MQTT 5.0 section 3.9.3: one reason code per filter, in
                    // order; 0x80 and above is a failure.
                    for (filter, code) in filters.iter().zip(&ack.return_codes) {
                        if !matches!(code, SubscribeReasonCode::Success(_)) {
                            return Err(CliError::Subscription {
                                broker: self.broker.clone(),
                                filter: filter.clone(),
                                reason: format!("{code:?}"),
                            });
                        }
                    }
                    return Ok(());
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// Publishes a request (QoS 1) with its response topic and correlation
    /// data (MQTT 5.0 section 4.10).
    pub async fn request(
        &mut self,
        topic: String,
        payload: Vec<u8>,
        response_topic: String,
        correlation: Bytes,
    ) -> Result<(), CliError> {
        let props = PublishProperties {
            response_topic: Some(response_topic),
            correlation_data: Some(correlation),
            content_type: Some("application/json".into()),
            ..PublishProperties::default()
        };
        self.client
            .publish_with_properties(topic, QoS::AtLeastOnce, false, payload, props)
            .await
            .map_err(|e| self.lost(e.to_string()))
    }

    /// Says goodbye (DISCONNECT) so the broker does not wait for our
    /// keep-alive, and gives the event loop a moment to send it.
    pub async fn close(mut self) {
        if self.client.disconnect().await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_millis(300), async {
                while let Some(Ok(_)) = self.rx.recv().await {}
            })
            .await;
        }
    }
}
