//! RTMP and RTMPS targets, statistics and liveness: the wire-level facts of
//! an RTMP output, with no I/O. The connection itself is GStreamer's
//! `rtmp2sink` behind `flvmux`.
//!
//! Targets are written as every ingest service prints them:
//! `rtmp://host[:port]/app/key` or `rtmps://host[:port]/app/key`. The last
//! path segment (with any query after it) is the stream key; everything
//! between the host and the key is the application, which may hold several
//! segments (`app/instance`, as Wowza uses). The stream key and a password
//! in the user part are secrets: they go to `rtmp2sink` through properties
//! and are shown as `***` everywhere else.

use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::Error;
use crate::output::liveness::Verdict;

/// RTMP's registered port (RTMP specification 1.0, section 4).
const RTMP_PORT: u16 = 1935;
/// RTMPS is RTMP inside TLS; services listen on the HTTPS port.
const RTMPS_PORT: u16 = 443;
/// Longer keys or applications are a paste gone wrong, not a target.
const MAX_PART: usize = 1024;

#[derive(Clone, PartialEq, Eq)]
pub struct RtmpTarget {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// The application (`app`, or `app/instance`).
    pub app: String,
    key: String,
    pub username: Option<String>,
    password: Option<String>,
}

impl RtmpTarget {
    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    pub fn scheme(&self) -> &'static str {
        if self.tls { "rtmps" } else { "rtmp" }
    }

    /// `host:port`, as errors name the server.
    pub fn server(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The target as it may be shown anywhere: the key and any password
    /// replaced by `***`.
    pub fn redacted(&self) -> String {
        let user = match (&self.username, &self.password) {
            (Some(u), Some(_)) => format!("{u}:***@"),
            (Some(u), None) => format!("{u}@"),
            _ => String::new(),
        };
        format!(
            "{}://{user}{}/{}/***",
            self.scheme(),
            self.server(),
            self.app
        )
    }

    /// Replaces the secrets wherever they appear in `text` (a message from
    /// GStreamer may quote the location it was given).
    pub fn scrub(&self, text: &str) -> String {
        let mut s = text.to_string();
        // The key with its query first, then the key alone (a server may
        // quote either).
        let bare = self.key.split('?').next();
        for secret in [Some(self.key.as_str()), bare, self.password.as_deref()]
            .into_iter()
            .flatten()
        {
            if secret.len() >= 3 {
                s = s.replace(secret, "***");
            }
        }
        s
    }
}

impl fmt::Debug for RtmpTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for RtmpTarget {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

fn bad(what: &str) -> Error {
    Error::Target(what.to_string())
}

fn printable(part: &str, name: &str) -> Result<(), Error> {
    if part.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(bad(&format!(
            "the {name} contains spaces or control characters"
        )));
    }
    if part.len() > MAX_PART {
        return Err(bad(&format!(
            "the {name} is longer than {MAX_PART} characters"
        )));
    }
    Ok(())
}

impl TryFrom<&str> for RtmpTarget {
    type Error = Error;

    /// Parses `rtmp[s]://[user[:password]@]host[:port]/app[/…]/key[?…]`.
    /// Messages never quote the key or the password.
    fn try_from(text: &str) -> Result<Self, Error> {
        let (tls, rest) = if let Some(r) = text.strip_prefix("rtmps://") {
            (true, r)
        } else if let Some(r) = text.strip_prefix("rtmp://") {
            (false, r)
        } else {
            return Err(bad("an RTMP target starts with rtmp:// or rtmps://"));
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("the IPv6 address has no closing ']'"))?;
            (h, after.strip_prefix(':'))
        } else {
            match hostport.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(bad("the RTMP target has no host"));
        }
        printable(host, "host")?;
        let port = match port {
            None => {
                if tls {
                    RTMPS_PORT
                } else {
                    RTMP_PORT
                }
            }
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => p,
                // With a user part, what looks like a port may be the tail
                // of a password holding a '/': do not quote it.
                _ if userinfo.is_some() || rest.contains('@') => {
                    return Err(bad(
                        "the port is not a port number (a '/', '?' or '#' in the password must be percent-encoded)",
                    ));
                }
                _ => return Err(bad(&format!("port '{p}' is not a port number (1-65535)"))),
            },
        };
        // The key is the last segment; a query belongs to it (services
        // such as Wowza read options from the stream name).
        let (before_query, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        let Some((app, key)) = before_query.trim_end_matches('/').rsplit_once('/') else {
            return Err(bad(
                "an RTMP target needs an application and a stream key (rtmp://host/app/key)",
            ));
        };
        let app = app.trim_matches('/');
        if app.is_empty() {
            return Err(bad(
                "the RTMP target has no application (rtmp://host/app/key)",
            ));
        }
        if key.is_empty() {
            return Err(bad(
                "the RTMP target has no stream key (rtmp://host/app/key)",
            ));
        }
        printable(app, "application")?;
        let key = match query {
            Some(q) => format!("{key}?{q}"),
            None => key.to_string(),
        };
        printable(&key, "stream key")?;
        let (username, password) = match userinfo {
            None => (None, None),
            Some(u) => {
                let (name, pass) = match u.split_once(':') {
                    Some((n, p)) => (n, Some(p)),
                    None => (u, None),
                };
                let decode = |s: &str, what: &str| {
                    percent_encoding::percent_decode_str(s)
                        .decode_utf8()
                        .map(|c| c.into_owned())
                        .map_err(|_| bad(&format!("the {what} is not UTF-8")))
                };
                if name.is_empty() {
                    return Err(bad("the user name before '@' is empty"));
                }
                (
                    Some(decode(name, "user name")?),
                    pass.map(|p| decode(p, "password")).transpose()?,
                )
            }
        };
        Ok(RtmpTarget {
            tls,
            host: host.to_string(),
            port,
            app: app.to_string(),
            key,
            username,
            password,
        })
    }
}

/// Turns `rtmp2sink`'s failure into what an operator can act on, never
/// quoting the key. `rtmp2sink` (1.22) reports a refused TCP connection at
/// once, an application or key the server refuses as "'connect'/'publish'
/// cmd failed", and a silent or hung server as "Socket I/O timed out".
pub fn explain_failure(raw: &str, target: &RtmpTarget) -> String {
    let raw = target.scrub(raw);
    let server = target.server();
    if raw.contains("'publish' cmd failed") || raw.contains("'releaseStream' cmd failed") {
        format!(
            "{server} refused to publish on application '{}' (check the stream key): {raw}",
            target.app
        )
    } else if raw.contains("'connect' cmd failed") {
        format!(
            "{server} refused the application '{}' (check the application name and credentials): {raw}",
            target.app
        )
    } else if raw.contains("Connection refused") {
        format!("{server} refused the connection (is the RTMP server up?): {raw}")
    } else if raw.contains("TLS certificate") {
        format!(
            "{server}'s TLS certificate was not accepted (a private CA can be added with [tls] ca_file): {raw}"
        )
    } else if raw.contains("timed out") {
        format!("no answer from {server} (timed out; is the server up and reachable?): {raw}")
    } else {
        raw
    }
}

/// What `rtmp2sink` says about one connection, read from its `stats`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RtmpStats {
    /// Bytes written to the connection, RTMP framing included.
    pub bytes_sent: u64,
    /// The server's last acknowledgement (RTMP 1.0, section 5.4.3): how
    /// many bytes it says it has received. Servers count in 32 bits and
    /// may restart the count.
    pub bytes_acked: u64,
    /// Bytes sent since the last acknowledgement moved.
    pub unacked_bytes: u64,
    /// The window after which the server acknowledges (section 5.4.4).
    pub ack_window: u64,
    pub chunk_size: u64,
}

fn count(s: &gst::StructureRef, field: &str) -> u64 {
    s.get::<u64>(field)
        .or_else(|_| s.get::<u32>(field).map(u64::from))
        .or_else(|_| s.get::<i64>(field).map(|v| v.max(0) as u64))
        .unwrap_or(0)
}

impl RtmpStats {
    /// Reads `rtmp2sink`'s `stats` (all zero before it connects).
    pub fn from_structure(s: &gst::StructureRef) -> Self {
        RtmpStats {
            bytes_sent: count(s, "out-bytes-total"),
            bytes_acked: count(s, "out-bytes-acked"),
            unacked_bytes: 0,
            ack_window: count(s, "in-window-ack-size"),
            chunk_size: count(s, "out-chunk-size"),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct RtmpLivenessConfig {
    /// How long connecting may take before the first media goes out.
    pub connect_timeout: Duration,
    /// How long the server may stay behind by more than two windows.
    pub stall_timeout: Duration,
    /// How long nothing may leave while frames are waiting to go.
    pub blocked_timeout: Duration,
}

impl Default for RtmpLivenessConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(3),
            blocked_timeout: Duration::from_secs(5),
        }
    }
}

/// Bytes the connection exchange takes (handshake 3073 bytes, then the
/// connect, releaseStream, FCPublish, createStream and publish commands);
/// past this, media is flowing, which `rtmp2sink` only sends once the
/// server has answered `publish` with NetStream.Publish.Start.
const CONNECT_BYTES: u64 = 16 * 1024;
/// Slack over two windows before the server counts as behind: an
/// acknowledgement is sent after a window is received and takes a round
/// trip to come back.
const ACK_SLACK: u64 = 64 * 1024;
/// A server that never announced a window: the common default (nginx-rtmp
/// announces 5,000,000, Adobe's servers 2,500,000).
const DEFAULT_WINDOW: u64 = 2_500_000;

/// Whether an RTMP connection is delivering, from its byte counters.
///
/// RTMP runs over TCP, so "sent" only means "handed to the kernel". The
/// proof of delivery is the server's Acknowledgement message, which it sends
/// each time it has received another window of bytes (RTMP 1.0, section
/// 5.4.3). A server that stopped reading (hung, or a dead path after a WAN
/// switch) stops acknowledging while we keep writing into socket buffers,
/// so: more than two windows sent past the last acknowledgement, for longer
/// than the stall timeout, is a stall. Because a window can be megabytes,
/// a second rule catches a socket that takes nothing at all: frames waiting
/// and no byte leaving for the blocked timeout.
pub struct RtmpLiveness {
    cfg: RtmpLivenessConfig,
    started: Instant,
    last_total: u64,
    last_move: Instant,
    last_acked: u64,
    /// Bytes sent when the acknowledgement last moved, and when.
    total_at_ack: u64,
    last_ack: Instant,
    ever_acked: bool,
    flowing: bool,
}

impl RtmpLiveness {
    pub fn new(cfg: RtmpLivenessConfig, now: Instant) -> Self {
        Self {
            cfg,
            started: now,
            last_total: 0,
            last_move: now,
            last_acked: 0,
            total_at_ack: 0,
            last_ack: now,
            ever_acked: false,
            flowing: false,
        }
    }

    pub fn acked(&self) -> bool {
        self.ever_acked
    }

    /// Takes the connection's counters and the bytes waiting in front of
    /// the sink, fills in `stats.unacked_bytes`, and says what the output
    /// is.
    pub fn observe(&mut self, now: Instant, stats: &mut RtmpStats, queued: u64) -> Verdict {
        let total = stats.bytes_sent;
        if total != self.last_total {
            self.last_total = total;
            self.last_move = now;
        }
        // "Changed", not "grew": a server may restart its 32-bit count
        // (nginx-rtmp does at 0xf0000000).
        if stats.bytes_acked != self.last_acked {
            self.last_acked = stats.bytes_acked;
            self.total_at_ack = total;
            self.last_ack = now;
            self.ever_acked = true;
        }
        if total >= CONNECT_BYTES {
            self.flowing = true;
        }
        let since_ack = total.saturating_sub(if self.ever_acked {
            self.total_at_ack
        } else {
            0
        });
        stats.unacked_bytes = since_ack;

        if !self.flowing && !self.ever_acked {
            if now - self.started >= self.cfg.connect_timeout {
                return Verdict::Failed(format!(
                    "the server accepted no media within {} s",
                    self.cfg.connect_timeout.as_secs()
                ));
            }
            return Verdict::Connecting;
        }
        let window = if stats.ack_window > 0 {
            stats.ack_window
        } else {
            DEFAULT_WINDOW
        };
        if since_ack > 2 * window + ACK_SLACK && now - self.last_ack >= self.cfg.stall_timeout {
            return Verdict::Failed(format!(
                "stalled: the server has not acknowledged the last {} KiB for {} s (it acknowledges every {} KiB)",
                since_ack / 1024,
                (now - self.last_ack).as_secs(),
                window / 1024
            ));
        }
        if queued > 0 && now - self.last_move >= self.cfg.blocked_timeout {
            return Verdict::Failed(format!(
                "stalled: the connection took no data for {} s",
                (now - self.last_move).as_secs()
            ));
        }
        Verdict::Live
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> RtmpTarget {
        RtmpTarget::try_from(s).unwrap()
    }

    fn err(s: &str) -> String {
        RtmpTarget::try_from(s).unwrap_err().to_string()
    }

    #[test]
    fn parses_what_services_print() {
        let a = t("rtmp://a.rtmp.youtube.com/live2/abcd-efgh-ijkl");
        assert_eq!(
            (a.tls, a.host.as_str(), a.port, a.app.as_str(), a.key()),
            (false, "a.rtmp.youtube.com", 1935, "live2", "abcd-efgh-ijkl")
        );
        assert_eq!(a.redacted(), "rtmp://a.rtmp.youtube.com:1935/live2/***");

        let b = t("rtmps://live-api-s.facebook.com:443/rtmp/FB-123?s_bl=1&a=x");
        assert!(b.tls);
        assert_eq!(b.port, 443);
        assert_eq!(b.key(), "FB-123?s_bl=1&a=x");
        assert!(!b.redacted().contains("FB-123"));

        let c = t("rtmps://ingest.example/app/instance/key");
        assert_eq!(
            (c.port, c.app.as_str(), c.key()),
            (443, "app/instance", "key")
        );

        let d = t("rtmp://user:p%40ss@[::1]:1936/live/k/");
        assert_eq!(d.host, "::1");
        assert_eq!(d.port, 1936);
        assert_eq!(d.key(), "k");
        assert_eq!(d.password(), Some("p@ss"));
        assert_eq!(d.redacted(), "rtmp://user:***@[::1]:1936/live/***");
    }

    #[test]
    fn refusals_name_the_part_and_never_the_key() {
        assert!(err("http://x/app/key").contains("rtmp://"));
        assert!(err("rtmp:///app/key").contains("no host"));
        assert!(err("rtmp://host:0/app/key").contains("port '0'"));
        assert!(err("rtmp://host:99999/app/key").contains("port '99999'"));
        assert!(err("rtmp://host/onlyapp").contains("application and a stream key"));
        assert!(err("rtmp://host//key").contains("no application"));
        let e = err("rtmp://host/app/sec ret");
        assert!(e.contains("stream key contains spaces"), "{e}");
        assert!(!e.contains("sec"), "{e}");
        assert!(err("rtmp://:pw@host/app/key").contains("user name"));
        let e = err("rtmp://user:s3c/ret@host/app/key");
        assert!(!e.contains("s3c"), "{e}");
    }

    #[test]
    fn failures_are_explained_without_the_key() {
        let tgt = t("rtmp://127.0.0.1:1999/live/s3cret");
        let e = explain_failure(
            "Failed to connect: 'publish' cmd failed: connection closed remotely (rtmp://127.0.0.1:1999/live/s3cret)",
            &tgt,
        );
        assert!(
            e.contains("refused to publish on application 'live'"),
            "{e}"
        );
        assert!(!e.contains("s3cret"), "{e}");
        let e = explain_failure("Could not connect to 127.0.0.1: Connection refused", &tgt);
        assert!(
            e.starts_with("127.0.0.1:1999 refused the connection"),
            "{e}"
        );
        let e = explain_failure("Failed to connect: Socket I/O timed out", &tgt);
        assert!(e.starts_with("no answer from 127.0.0.1:1999"), "{e}");
        let e = explain_failure("Failed to connect: Unacceptable TLS certificate", &tgt);
        assert!(e.contains("[tls] ca_file"), "{e}");
    }

    fn stats(sent: u64, acked: u64, window: u64) -> RtmpStats {
        RtmpStats {
            bytes_sent: sent,
            bytes_acked: acked,
            ack_window: window,
            ..Default::default()
        }
    }

    fn at(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    #[test]
    fn live_once_media_flows_even_before_the_first_ack() {
        let t0 = Instant::now();
        let mut l = RtmpLiveness::new(RtmpLivenessConfig::default(), t0);
        assert_eq!(
            l.observe(at(t0, 1), &mut stats(3500, 0, 0), 0),
            Verdict::Connecting
        );
        // A 5 MB window at 800 kbit/s: no ack for 50 s, yet live.
        for s in 2..40 {
            let v = l.observe(at(t0, s), &mut stats(s * 100_000, 0, 5_000_000), 10);
            assert_eq!(v, Verdict::Live, "at {s} s");
        }
    }

    #[test]
    fn no_media_within_the_connect_timeout_fails() {
        let t0 = Instant::now();
        let mut l = RtmpLiveness::new(RtmpLivenessConfig::default(), t0);
        assert_eq!(
            l.observe(at(t0, 9), &mut stats(3500, 0, 0), 10),
            Verdict::Connecting
        );
        assert!(matches!(
            l.observe(at(t0, 10), &mut stats(3500, 0, 0), 10),
            Verdict::Failed(r) if r.contains("within 10 s")
        ));
    }

    #[test]
    fn a_server_that_stops_acknowledging_is_a_stall() {
        let t0 = Instant::now();
        let mut l = RtmpLiveness::new(RtmpLivenessConfig::default(), t0);
        let w = 65_536;
        assert_eq!(
            l.observe(at(t0, 1), &mut stats(200_000, 131_072, w), 0),
            Verdict::Live
        );
        // Acks stop; we keep writing into socket buffers.
        assert_eq!(
            l.observe(at(t0, 2), &mut stats(300_000, 131_072, w), 0),
            Verdict::Live
        );
        let mut s = stats(400_000, 131_072, w);
        assert_eq!(l.observe(at(t0, 3), &mut s, 0), Verdict::Live);
        assert_eq!(s.unacked_bytes, 200_000);
        assert!(matches!(
            l.observe(at(t0, 4), &mut stats(500_000, 131_072, w), 0),
            Verdict::Failed(r) if r.contains("not acknowledged the last 292 KiB for 3 s")
        ));
    }

    #[test]
    fn a_restarted_ack_count_is_progress() {
        let t0 = Instant::now();
        let mut l = RtmpLiveness::new(RtmpLivenessConfig::default(), t0);
        let w = 65_536;
        assert_eq!(
            l.observe(at(t0, 1), &mut stats(0xf000_1000, 0xf000_0000, w), 0),
            Verdict::Live
        );
        for s in 2..10 {
            let v = l.observe(
                at(t0, s),
                &mut stats(0xf000_1000 + s * 100_000, s * 100_000, w),
                0,
            );
            assert_eq!(v, Verdict::Live);
        }
    }

    #[test]
    fn our_own_pause_is_not_a_stall_but_a_blocked_socket_is() {
        let t0 = Instant::now();
        let mut l = RtmpLiveness::new(RtmpLivenessConfig::default(), t0);
        let w = 5_000_000;
        assert_eq!(
            l.observe(at(t0, 1), &mut stats(100_000, 0, w), 0),
            Verdict::Live
        );
        // Input lost: nothing queued, nothing sent, for a long time.
        for s in 2..30 {
            assert_eq!(
                l.observe(at(t0, s), &mut stats(100_000, 0, w), 0),
                Verdict::Live
            );
        }
        // Frames waiting but the socket takes nothing.
        assert_eq!(
            l.observe(at(t0, 31), &mut stats(100_001, 0, w), 5000),
            Verdict::Live
        );
        assert_eq!(
            l.observe(at(t0, 35), &mut stats(100_001, 0, w), 9000),
            Verdict::Live
        );
        assert!(matches!(
            l.observe(at(t0, 36), &mut stats(100_001, 0, w), 9000),
            Verdict::Failed(r) if r.contains("took no data for 5 s")
        ));
    }
}
