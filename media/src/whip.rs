//! WHIP (WebRTC-HTTP Ingestion Protocol, RFC 9725): targets, the HTTP
//! exchange's pure parts (ICE servers from `Link` headers, the resource
//! URL, what an answer accepted), errors worded for operators, and the
//! liveness decision. No I/O; the session is `output/whip.rs`.
//!
//! Targets: `https://host/path?auth=TOKEN` (or `whip+https://…`, `http://`
//! for a local endpoint). `auth` is the bearer token (RFC 9725 §4.5, and
//! MistServer's way of writing it); `stun=` and `turn=` (repeatable) add
//! ICE servers (`stun://host:port`, `turn://user:pass@host:port`). Those
//! options are taken out of the URL; anything else in the query stays part
//! of the endpoint.

use std::fmt;
use std::time::{Duration, Instant};

use serde::Serialize;
use url::Url;

use crate::error::Error;
use crate::output::liveness::Verdict;

#[derive(Clone, PartialEq, Eq)]
pub struct WhipTarget {
    /// The endpoint URL, without our options.
    pub endpoint: Url,
    token: Option<String>,
    /// STUN servers, as webrtcbin takes them (`stun://host:port`).
    pub stun: Vec<String>,
    /// TURN servers with their credentials (`turn://user:pass@host:port`).
    turn: Vec<String>,
}

impl WhipTarget {
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub fn turn(&self) -> &[String] {
        &self.turn
    }

    /// The target as shown: the host and the first path segment; the rest
    /// of the path (services put the stream key there), the query and the
    /// token are `***`.
    pub fn redacted(&self) -> String {
        let e = &self.endpoint;
        let mut s = format!("{}://{}", e.scheme(), e.host_str().unwrap_or(""));
        if let Some(p) = e.port() {
            s.push_str(&format!(":{p}"));
        }
        let mut segs = e
            .path_segments()
            .into_iter()
            .flatten()
            .filter(|p| !p.is_empty());
        if let Some(first) = segs.next() {
            s.push('/');
            s.push_str(first);
        }
        if segs.next().is_some() || e.query().is_some() {
            s.push_str("/***");
        }
        let mut opts = Vec::new();
        if self.token.is_some() {
            opts.push("auth=***".to_string());
        }
        opts.extend(self.stun.iter().map(|u| format!("stun={u}")));
        opts.extend(self.turn.iter().map(|_| "turn=***".to_string()));
        if !opts.is_empty() {
            s.push('?');
            s.push_str(&opts.join("&"));
        }
        s
    }

    /// Replaces the secrets wherever they appear in `text`.
    pub fn scrub(&self, text: &str) -> String {
        let mut s = text.replace(self.endpoint.as_str(), &self.redacted());
        if let Some(t) = &self.token
            && t.len() >= 3
        {
            s = s.replace(t.as_str(), "***");
        }
        // Path segments after the first may be a stream key, and may show
        // up in another URL (a redirect, the resource).
        for seg in self
            .endpoint
            .path_segments()
            .into_iter()
            .flatten()
            .skip(1)
            .filter(|p| p.len() >= 6)
        {
            s = s.replace(seg, "***");
        }
        for t in &self.turn {
            s = s.replace(t.as_str(), "turn=***");
        }
        s
    }
}

impl fmt::Debug for WhipTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for WhipTarget {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

/// `stun://host:port` or `turn(s)://user:pass@host:port`, checked.
fn ice_url(value: &str, turn: bool) -> Result<String, Error> {
    let what = if turn { "turn" } else { "stun" };
    let u = Url::parse(value).map_err(|_| {
        Error::Target(if turn {
            "a turn server is not a URL (write turn://user:password@host:port)".into()
        } else {
            format!("stun server '{value}' is not a URL (write stun://host:port)")
        })
    })?;
    let ok_scheme = if turn {
        matches!(u.scheme(), "turn" | "turns")
    } else {
        u.scheme() == "stun"
    };
    if !ok_scheme || u.host_str().is_none_or(str::is_empty) {
        return Err(Error::Target(if turn {
            "a turn server must be turn://user:password@host:port or turns://…".into()
        } else {
            format!("stun server '{value}' must be stun://host:port")
        }));
    }
    if turn && (u.username().is_empty() || u.password().is_none()) {
        return Err(Error::Target(format!(
            "a {what} server needs a user name and password (turn://user:password@host:port)"
        )));
    }
    Ok(value.to_string())
}

impl TryFrom<&str> for WhipTarget {
    type Error = Error;

    fn try_from(text: &str) -> Result<Self, Error> {
        let plain = text.strip_prefix("whip+").unwrap_or(text);
        let mut url = Url::parse(plain)
            .map_err(|e| Error::Target(format!("the WHIP endpoint is not a URL ({e})")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::Target(
                "a WHIP endpoint is an http:// or https:// URL".into(),
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(Error::Target("the WHIP endpoint has no host".into()));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Error::Target(
                "give the WHIP token as ?auth=TOKEN, not in the URL's user part".into(),
            ));
        }
        let mut token = None;
        let mut stun = Vec::new();
        let mut turn = Vec::new();
        let mut rest = Vec::new();
        for (k, v) in url.query_pairs() {
            match k.as_ref() {
                "auth" => {
                    if v.is_empty() {
                        return Err(Error::Target("auth (the bearer token) is empty".into()));
                    }
                    token = Some(v.into_owned());
                }
                "stun" => stun.push(ice_url(&v, false)?),
                "turn" => turn.push(ice_url(&v, true)?),
                _ => rest.push((k.into_owned(), v.into_owned())),
            }
        }
        if rest.is_empty() {
            url.set_query(None);
        } else {
            url.query_pairs_mut().clear().extend_pairs(rest);
        }
        url.set_fragment(None);
        Ok(WhipTarget {
            endpoint: url,
            token,
            stun,
            turn,
        })
    }
}

/// An ICE server a WHIP endpoint offered in a `Link` header (RFC 9725
/// §4.6): `<stun:stun.example.net>; rel="ice-server"` or
/// `<turn:turn.example.net?transport=udp>; rel="ice-server";
/// username="u"; credential="p"; credential-type="password"`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IceServer {
    pub url: String,
    pub username: Option<String>,
    pub credential: Option<String>,
}

impl IceServer {
    /// The server as webrtcbin takes it (`stun://host:port`,
    /// `turn://user:pass@host:port`), or `None` for what it cannot use.
    pub fn for_webrtcbin(&self) -> Option<String> {
        let (scheme, rest) = self.url.split_once(':')?;
        let hostport = rest.trim_start_matches("//");
        let hostport = hostport.split('?').next().unwrap_or(hostport);
        match scheme {
            "stun" => Some(format!("stun://{hostport}")),
            "turn" | "turns" => {
                let enc = |s: &str| {
                    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
                        .to_string()
                };
                let (u, p) = (self.username.as_deref()?, self.credential.as_deref()?);
                Some(format!("{scheme}://{}:{}@{hostport}", enc(u), enc(p)))
            }
            _ => None,
        }
    }
}

/// Splits a header value on commas that are not inside `<…>` or quotes.
fn split_links(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut angle, mut quote) = (0, false, false);
    for (i, c) in value.char_indices() {
        match c {
            '<' if !quote => angle = true,
            '>' if !quote => angle = false,
            '"' if !angle => quote = !quote,
            ',' if !angle && !quote => {
                out.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&value[start..]);
    out
}

/// The ICE servers in `Link` header values (RFC 8288 syntax); other links
/// are ignored.
pub fn ice_servers(link_headers: &[&str]) -> Vec<IceServer> {
    let mut out = Vec::new();
    for value in link_headers {
        for link in split_links(value) {
            let link = link.trim();
            let Some(rest) = link.strip_prefix('<') else {
                continue;
            };
            let Some((url, params)) = rest.split_once('>') else {
                continue;
            };
            let mut rel = None;
            let mut username = None;
            let mut credential = None;
            for p in params.split(';').map(str::trim).filter(|p| !p.is_empty()) {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                let v = v.trim().trim_matches('"').to_string();
                match k.trim().to_ascii_lowercase().as_str() {
                    "rel" => rel = Some(v),
                    "username" => username = Some(v),
                    "credential" => credential = Some(v),
                    _ => {}
                }
            }
            if rel.as_deref() == Some("ice-server") {
                out.push(IceServer {
                    url: url.to_string(),
                    username,
                    credential,
                });
            }
        }
    }
    out
}

/// What the answer accepted: a media section with port 0 was refused
/// (RFC 3264 §6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    pub video: bool,
    pub audio: bool,
}

pub fn accepted(answer: &str) -> Accepted {
    let mut a = Accepted {
        video: false,
        audio: false,
    };
    for line in answer.lines() {
        if let Some(m) = line.strip_prefix("m=") {
            let mut f = m.split_whitespace();
            let (kind, port) = (f.next(), f.next());
            let on = port.is_some_and(|p| p != "0");
            match kind {
                Some("video") => a.video |= on,
                Some("audio") => a.audio |= on,
                _ => {}
            }
        }
    }
    a
}

/// An endpoint's refusal as an operator can act on it.
pub fn explain_status(status: u16, body: &str, target: &WhipTarget) -> String {
    let shown = target.redacted();
    let first = target.scrub(body.lines().next().unwrap_or("").trim());
    let first: String = first.chars().take(200).collect();
    let tail = if first.is_empty() {
        String::new()
    } else {
        format!(": {first}")
    };
    match status {
        401 | 403 => format!("the WHIP endpoint {shown} refused the token (HTTP {status}){tail}"),
        404 => format!("no WHIP endpoint at {shown} (HTTP 404)"),
        415 | 422 | 400 | 406 => {
            format!("the WHIP endpoint {shown} refused our offer (HTTP {status}){tail}")
        }
        503 => format!("the WHIP endpoint {shown} is busy (HTTP 503){tail}"),
        _ => format!("the WHIP endpoint {shown} answered HTTP {status}{tail}"),
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct WhipLivenessConfig {
    /// ICE and DTLS must connect within this.
    pub connect_timeout: Duration,
    /// Receiver reports must keep coming while we send.
    pub stall_timeout: Duration,
}

impl Default for WhipLivenessConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(15),
            stall_timeout: Duration::from_secs(6),
        }
    }
}

/// Whether a WHIP session delivers.
///
/// "Connected" (ICE and DTLS) does not mean anything arrives: webrtcbin
/// (1.22) has no ICE consent freshness (RFC 7675), so a receiver that went
/// away leaves the connection "connected" for ever. The proof is RTCP: the
/// receiver's reports (RFC 3550 §6.4.2) carry the highest sequence number
/// it received, which grows while media arrives. Live once it has grown;
/// failed when we keep sending and it stops growing for the stall timeout.
pub struct WhipLiveness {
    cfg: WhipLivenessConfig,
    started: Instant,
    received: u64,
    sent: u64,
    last_progress: Instant,
    reported: bool,
}

impl WhipLiveness {
    pub fn new(cfg: WhipLivenessConfig, now: Instant) -> Self {
        Self {
            cfg,
            started: now,
            received: 0,
            sent: 0,
            last_progress: now,
            reported: false,
        }
    }

    pub fn acked(&self) -> bool {
        self.reported
    }

    /// `connected`: ICE and DTLS are up; `received`: the sum of the
    /// highest sequence numbers the receiver reported; `sent`: packets
    /// sent.
    pub fn observe(&mut self, now: Instant, connected: bool, received: u64, sent: u64) -> Verdict {
        let grew = received > self.received;
        let sending = sent > self.sent;
        self.received = self.received.max(received);
        self.sent = sent;
        if grew || !sending {
            self.last_progress = now;
        }
        if grew {
            self.reported = true;
        }
        if !self.reported {
            if now - self.started >= self.cfg.connect_timeout {
                return Verdict::Failed(if connected {
                    format!(
                        "connected, but the receiver sent no reports within {} s",
                        self.cfg.connect_timeout.as_secs()
                    )
                } else {
                    format!(
                        "ICE/DTLS did not connect within {} s",
                        self.cfg.connect_timeout.as_secs()
                    )
                });
            }
            return Verdict::Connecting;
        }
        if now - self.last_progress >= self.cfg.stall_timeout {
            return Verdict::Failed(format!(
                "stalled: the receiver stopped reporting what it got for {} s",
                (now - self.last_progress).as_secs()
            ));
        }
        Verdict::Live
    }
}

/// What a WHIP output reports, in state and telemetry.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct WhipStats {
    pub ice_state: String,
    pub connection_state: String,
    pub packets_sent: u64,
    pub bytes_sent: u64,
    /// Lost as the receiver reports it (cumulative).
    pub packets_lost: i64,
    pub rtt_ms: Option<f64>,
    pub nacks_received: u64,
    pub plis_received: u64,
    pub firs_received: u64,
    /// Highest sequence numbers the receiver reported, summed over tracks.
    #[serde(skip)]
    pub received_seq: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> WhipTarget {
        WhipTarget::try_from(s).unwrap()
    }

    #[test]
    fn targets_take_the_token_and_ice_servers_out_of_the_url() {
        let w = t(
            "https://ingest.example/whip/endpoint/s3cretkey?auth=t0ken&stun=stun://stun.example:3478&turn=turn://u:p@turn.example:3478&region=eu",
        );
        assert_eq!(w.token(), Some("t0ken"));
        assert_eq!(w.stun, vec!["stun://stun.example:3478"]);
        assert_eq!(w.turn(), ["turn://u:p@turn.example:3478"]);
        assert_eq!(
            w.endpoint.as_str(),
            "https://ingest.example/whip/endpoint/s3cretkey?region=eu"
        );
        let shown = w.redacted();
        assert_eq!(
            shown,
            "https://ingest.example/whip/***?auth=***&stun=stun://stun.example:3478&turn=***"
        );
        assert!(!format!("{w:?}").contains("t0ken"));
        let l = t("whip+http://127.0.0.1:8080/whip/cam");
        assert_eq!(l.endpoint.as_str(), "http://127.0.0.1:8080/whip/cam");
        assert_eq!(l.redacted(), "http://127.0.0.1:8080/whip/***");
    }

    #[test]
    fn bad_targets_are_named() {
        let e = |s: &str| WhipTarget::try_from(s).unwrap_err().to_string();
        assert!(e("https://").contains("not a URL") || e("https://").contains("no host"));
        assert!(e("https://u:pw@host/whip").contains("?auth=TOKEN"));
        assert!(e("https://host/whip?auth=").contains("empty"));
        assert!(e("https://host/whip?stun=host:1").contains("stun://host:port"));
        let te = e("https://host/whip?turn=turn://host:1");
        assert!(te.contains("user name and password"), "{te}");
    }

    #[test]
    fn link_headers_give_ice_servers() {
        let h = [
            r#"<stun:stun.example.net>; rel="ice-server""#,
            r#"<turn:turn.example.net?transport=udp>; rel="ice-server"; username="user"; credential="my,Pass"; credential-type="password", </resource/1/layer>; rel="urn:ietf:params:whip:ext:example""#,
        ];
        let s = ice_servers(&h);
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!(
            s[0].for_webrtcbin().as_deref(),
            Some("stun://stun.example.net")
        );
        assert_eq!(s[1].credential.as_deref(), Some("my,Pass"));
        assert_eq!(
            s[1].for_webrtcbin().as_deref(),
            Some("turn://user:my%2CPass@turn.example.net")
        );
    }

    #[test]
    fn an_answer_tells_what_it_accepted() {
        let a = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\nm=audio 0 UDP/TLS/RTP/SAVPF 111\r\n";
        assert_eq!(
            accepted(a),
            Accepted {
                video: true,
                audio: false
            }
        );
    }

    #[test]
    fn refusals_are_explained_without_secrets() {
        let w = t("https://ingest.example/whip/key123?auth=tok123");
        let e = explain_status(401, "bad token tok123\nmore", &w);
        assert_eq!(
            e,
            "the WHIP endpoint https://ingest.example/whip/***?auth=*** refused the token (HTTP 401): bad token ***"
        );
        assert!(explain_status(404, "", &w).starts_with("no WHIP endpoint"));
    }

    fn at(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    #[test]
    fn live_on_reports_and_stalled_when_they_stop() {
        let t0 = Instant::now();
        let mut l = WhipLiveness::new(WhipLivenessConfig::default(), t0);
        assert_eq!(l.observe(at(t0, 1), false, 0, 0), Verdict::Connecting);
        assert_eq!(l.observe(at(t0, 2), true, 0, 50), Verdict::Connecting);
        assert_eq!(l.observe(at(t0, 3), true, 40, 100), Verdict::Live);
        assert_eq!(l.observe(at(t0, 5), true, 40, 200), Verdict::Live);
        assert_eq!(l.observe(at(t0, 8), true, 40, 300), Verdict::Live);
        assert!(matches!(
            l.observe(at(t0, 9), true, 40, 400),
            Verdict::Failed(r) if r.starts_with("stalled")
        ));
    }

    #[test]
    fn never_connecting_times_out() {
        let t0 = Instant::now();
        let mut l = WhipLiveness::new(WhipLivenessConfig::default(), t0);
        assert!(matches!(
            l.observe(at(t0, 15), false, 0, 0),
            Verdict::Failed(r) if r.contains("did not connect")
        ));
    }
}
