//! SRT targets: the wire-level facts of an SRT output, with no I/O. The
//! socket itself is libsrt's, driven by `srt_sock`; its statistics are
//! `srt_sock::SrtSocketStats`.
//!
//! Targets are written as operators know them from ingest servers and from
//! MistServer: `srt://host:port?mode=caller&streamid=…&passphrase=…&latency=…`.
//! Options follow libsrt's URI conventions (`mode`, `streamid`, `passphrase`,
//! `pbkeylen`, `latency` in milliseconds); anything else is refused by name
//! rather than silently ignored.

use std::fmt;

use serde::Serialize;
use url::Url;

use crate::error::Error;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SrtMode {
    Caller,
    Listener,
    Rendezvous,
}

impl SrtMode {
    /// The nick of GStreamer's `GstSRTConnectionMode` enum.
    pub fn gst_nick(self) -> &'static str {
        match self {
            SrtMode::Caller => "caller",
            SrtMode::Listener => "listener",
            SrtMode::Rendezvous => "rendezvous",
        }
    }
}

/// A validated SRT destination. The passphrase never leaves this type except
/// into `srtsink`; `Display` and `Serialize` show the target redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct SrtTarget {
    pub host: String,
    pub port: u16,
    pub mode: SrtMode,
    pub streamid: Option<String>,
    passphrase: Option<String>,
    /// Key length in bytes (16, 24 or 32); with a passphrase and no explicit
    /// length libsrt uses 16 (AES-128).
    pub pbkeylen: Option<u8>,
    /// SRT latency in milliseconds (the TSBPD delay; libsrt's default is 120).
    pub latency_ms: Option<u32>,
    /// Local address to send from (`adapter`, as in libsrt's tools): picks
    /// the interface on a multi-homed box; for rendezvous, the address the
    /// peer calls back.
    pub adapter: Option<std::net::IpAddr>,
}

/// libsrt accepts passphrases of 10 to 79 characters (SRTO_PASSPHRASE).
const PASSPHRASE_LEN: std::ops::RangeInclusive<usize> = 10..=79;
/// A latency beyond a minute is a typo, not a link.
const MAX_LATENCY_MS: u32 = 60_000;
/// libsrt limits SRTO_STREAMID to 512 bytes.
const MAX_STREAMID: usize = 512;

impl SrtTarget {
    pub fn passphrase(&self) -> Option<&str> {
        self.passphrase.as_deref()
    }

    /// The URI given to `srtsink`: address only, never the secrets (those go
    /// through write-only properties, so GStreamer logs cannot show them).
    pub fn sink_uri(&self) -> String {
        let host = if self.host.is_empty() {
            // A listener on every address.
            "0.0.0.0".to_string()
        } else if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("srt://{host}:{}", self.port)
    }

    /// The target as it may be shown anywhere: secrets replaced by `***`.
    /// The stream id is redacted too: ingest services use it as the stream
    /// key (see the token scheme in `docs/mqtt.md`).
    pub fn redacted(&self) -> String {
        let mut s = format!("{}?mode={}", self.sink_uri(), self.mode.gst_nick());
        if self.streamid.is_some() {
            s.push_str("&streamid=***");
        }
        if self.passphrase.is_some() {
            s.push_str("&passphrase=***");
        }
        if let Some(k) = self.pbkeylen {
            s.push_str(&format!("&pbkeylen={k}"));
        }
        if let Some(l) = self.latency_ms {
            s.push_str(&format!("&latency={l}"));
        }
        if let Some(a) = self.adapter {
            s.push_str(&format!("&adapter={a}"));
        }
        s
    }
}

impl fmt::Debug for SrtTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Display for SrtTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for SrtTarget {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

impl TryFrom<&str> for SrtTarget {
    type Error = Error;

    fn try_from(text: &str) -> Result<Self, Error> {
        // Error messages quote the target only up to the query, where the
        // secrets live.
        let (base, query) = match text.split_once('?') {
            Some((b, q)) => (b, q),
            None => (text, ""),
        };
        let shown = base;
        // `srt://:9000` (a listener on every address) is how operators and
        // libsrt's own tools write it; the URL parser wants a host there.
        let any_host = base.starts_with("srt://:");
        let parsed = if any_host {
            Url::parse(&base.replacen("srt://:", "srt://0.0.0.0:", 1))
        } else {
            Url::parse(base)
        };
        let url =
            parsed.map_err(|e| Error::Target(format!("'{shown}' is not a valid URL ({e})")))?;
        if url.scheme() != "srt" {
            return Err(Error::Target(format!(
                "'{shown}' has scheme '{}', expected 'srt'",
                url.scheme()
            )));
        }
        // Anything else in front of the query would be silently ignored by
        // libsrt: refuse it instead. (Never quote it: it may be a
        // credential.)
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Error::Target(
                "has user information before the host; SRT has none (use streamid and passphrase)"
                    .into(),
            ));
        }
        if !matches!(url.path(), "" | "/") || url.fragment().is_some() {
            return Err(Error::Target(format!(
                "'{}://{}:…' has a path; an SRT target is srt://host:port?options",
                url.scheme(),
                url.host_str().unwrap_or("")
            )));
        }
        let port = url
            .port()
            .ok_or_else(|| Error::Target(format!("'{shown}' has no port")))?;
        if port == 0 {
            return Err(Error::Target(format!("'{shown}' has port 0")));
        }
        let host = if any_host {
            String::new()
        } else {
            url.host_str()
                .unwrap_or("")
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string()
        };

        let mut mode = None;
        let mut streamid = None;
        let mut passphrase = None;
        let mut pbkeylen = None;
        let mut latency_ms = None;
        let mut adapter = None;
        for (key, value) in query_options(query)? {
            match key {
                "mode" => {
                    mode = Some(match value.as_str() {
                        "caller" | "client" => SrtMode::Caller,
                        "listener" | "server" => SrtMode::Listener,
                        "rendezvous" => SrtMode::Rendezvous,
                        other => {
                            return Err(Error::Target(format!(
                                "mode '{other}' is not one of caller, listener, rendezvous"
                            )));
                        }
                    })
                }
                "streamid" => {
                    if value.len() > MAX_STREAMID {
                        return Err(Error::Target(format!(
                            "streamid is {} bytes, libsrt allows at most {MAX_STREAMID}",
                            value.len()
                        )));
                    }
                    streamid = Some(value);
                }
                "passphrase" => {
                    // The value is a secret: report only its length, in
                    // bytes, which is what libsrt counts.
                    if !PASSPHRASE_LEN.contains(&value.len()) {
                        return Err(Error::Target(format!(
                            "passphrase has {} bytes, SRT needs 10 to 79",
                            value.len()
                        )));
                    }
                    passphrase = Some(value);
                }
                "pbkeylen" => {
                    pbkeylen = Some(match value.as_str() {
                        "16" => 16,
                        "24" => 24,
                        "32" => 32,
                        other => {
                            return Err(Error::Target(format!(
                                "pbkeylen '{other}' is not one of 16, 24, 32"
                            )));
                        }
                    })
                }
                "latency" => {
                    let v: u32 = value.parse().map_err(|_| {
                        Error::Target(format!("latency '{value}' is not a number of milliseconds"))
                    })?;
                    if v > MAX_LATENCY_MS {
                        return Err(Error::Target(format!(
                            "latency '{v}' ms is above the maximum of {MAX_LATENCY_MS}"
                        )));
                    }
                    latency_ms = Some(v);
                }
                "adapter" => {
                    adapter = Some(value.parse().map_err(|_| {
                        Error::Target(format!("adapter '{value}' is not an IP address"))
                    })?);
                }
                other => {
                    // A key that is not a plain word is most likely the tail
                    // of a secret with a raw '&' in it: do not echo it.
                    let named = if !other.is_empty()
                        && other.len() <= 32
                        && other
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                    {
                        format!("unknown SRT option '{other}'")
                    } else {
                        "an unknown SRT option (an '&' inside a value must be written %26)".into()
                    };
                    return Err(Error::Target(format!(
                        "{named} (known: mode, streamid, passphrase, pbkeylen, latency, adapter)"
                    )));
                }
            }
        }
        let mode = mode.unwrap_or(if host.is_empty() {
            SrtMode::Listener
        } else {
            SrtMode::Caller
        });
        if mode != SrtMode::Listener && host.is_empty() {
            return Err(Error::Target(format!(
                "'{shown}' has no host; a {} needs the address of its peer",
                mode.gst_nick()
            )));
        }
        if pbkeylen.is_some() && passphrase.is_none() {
            return Err(Error::Target(
                "pbkeylen is set but there is no passphrase to derive the key from".into(),
            ));
        }
        Ok(SrtTarget {
            host,
            port,
            mode,
            streamid,
            passphrase,
            pbkeylen,
            latency_ms,
            adapter,
        })
    }
}

/// The options of a target's query, split on `&` and percent-decoded as
/// libsrt's URI parser does it: `+` is a plus sign (base64 passphrases and
/// stream ids keep theirs) and `#` is an ordinary character (the stream id
/// access-control syntax `#!::r=live,m=publish` of the SRT access control
/// guidelines starts with one).
fn query_options(query: &str) -> Result<Vec<(&str, String)>, Error> {
    let mut out = Vec::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        let Some((key, raw)) = part.split_once('=') else {
            // Only an option's own name is quoted: anything else may be
            // the tail of a passphrase cut at an unescaped '&'.
            const NAMES: [&str; 6] = [
                "mode",
                "streamid",
                "passphrase",
                "pbkeylen",
                "latency",
                "adapter",
            ];
            let named = if NAMES.contains(&part) {
                format!("option '{part}' has no value")
            } else {
                "an option has no value (an '&' inside a value must be written %26)".into()
            };
            return Err(Error::Target(named));
        };
        let value = percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| Error::Target(format!("the value of '{key}' is not UTF-8")))?
            .into_owned();
        out.push((key, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_with_all_options() {
        let t = SrtTarget::try_from(
            "srt://ingest.example:9000?mode=caller&streamid=live/abc&passphrase=0123456789ab&pbkeylen=32&latency=250",
        )
        .unwrap();
        assert_eq!(t.host, "ingest.example");
        assert_eq!(t.port, 9000);
        assert_eq!(t.mode, SrtMode::Caller);
        assert_eq!(t.streamid.as_deref(), Some("live/abc"));
        assert_eq!(t.passphrase(), Some("0123456789ab"));
        assert_eq!(t.pbkeylen, Some(32));
        assert_eq!(t.latency_ms, Some(250));
        assert_eq!(t.sink_uri(), "srt://ingest.example:9000");
        let r =
            SrtTarget::try_from("srt://10.1.1.2:7000?mode=rendezvous&adapter=10.1.1.1").unwrap();
        assert_eq!(r.mode, SrtMode::Rendezvous);
        assert_eq!(r.adapter, Some("10.1.1.1".parse().unwrap()));
        assert!(r.redacted().ends_with("&adapter=10.1.1.1"));
        let e = SrtTarget::try_from("srt://h:1?adapter=eth0")
            .unwrap_err()
            .to_string();
        assert!(e.contains("adapter 'eth0'"), "{e}");
    }

    #[test]
    fn values_are_taken_as_libsrt_takes_them() {
        let t = SrtTarget::try_from(
            "srt://h:1?streamid=#!::r=live/cam1,m=publish&passphrase=abc+def/ghi==%26x",
        )
        .unwrap();
        assert_eq!(t.streamid.as_deref(), Some("#!::r=live/cam1,m=publish"));
        assert_eq!(t.passphrase(), Some("abc+def/ghi==&x"));
        // A raw '&' inside a secret: refused without echoing its tail.
        let e = SrtTarget::try_from("srt://h:1?passphrase=0123456789&se cret-tail")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("tail") && e.contains("%26"), "{e}");
        // Even a short word after it may be the rest of the secret.
        let e = SrtTarget::try_from("srt://h:1?passphrase=0123456789&tail")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("tail") && e.contains("%26"), "{e}");
        let e = SrtTarget::try_from("srt://h:1?latency")
            .unwrap_err()
            .to_string();
        assert!(e.contains("'latency' has no value"), "{e}");
        // Nothing libsrt would ignore is accepted.
        let e = SrtTarget::try_from("srt://user:pw@h:1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("user information") && !e.contains("pw"), "{e}");
        let e = SrtTarget::try_from("srt://h:1/live/key")
            .unwrap_err()
            .to_string();
        assert!(e.contains("has a path") && !e.contains("key"), "{e}");
        // libsrt counts passphrase bytes, not characters: 40 × 'é' is 80.
        let long = "é".repeat(40);
        let e = SrtTarget::try_from(format!("srt://h:1?passphrase={long}").as_str())
            .unwrap_err()
            .to_string();
        assert!(e.contains("passphrase has 80 bytes"), "{e}");
    }

    #[test]
    fn listener_defaults_without_host() {
        let t = SrtTarget::try_from("srt://:9000").unwrap();
        assert_eq!(t.mode, SrtMode::Listener);
        let t = SrtTarget::try_from("srt://0.0.0.0:9001?mode=listener").unwrap();
        assert_eq!(t.mode, SrtMode::Listener);
        assert_eq!(t.host, "0.0.0.0");
    }

    #[test]
    fn redaction_hides_secrets_everywhere() {
        let t =
            SrtTarget::try_from("srt://h:1?streamid=key123&passphrase=supersecretpass&latency=100")
                .unwrap();
        for shown in [t.redacted(), format!("{t}"), format!("{t:?}")] {
            assert!(!shown.contains("supersecretpass"), "{shown}");
            assert!(!shown.contains("key123"), "{shown}");
            assert!(shown.contains("latency=100"));
        }
    }

    #[test]
    fn bad_inputs_name_the_field_and_keep_secrets() {
        let cases = [
            ("http://h:1", "scheme 'http'"),
            ("srt://h", "no port"),
            ("srt://h:1?mode=push", "mode 'push'"),
            (
                "srt://h:1?pbkeylen=20&passphrase=0123456789",
                "pbkeylen '20'",
            ),
            ("srt://h:1?pbkeylen=16", "no passphrase"),
            ("srt://h:1?latency=fast", "latency 'fast'"),
            ("srt://h:1?latency=999999", "latency '999999'"),
            ("srt://h:1?bogus=1", "unknown SRT option 'bogus'"),
            ("srt://:1?mode=caller", "no host"),
        ];
        for (text, want) in cases {
            let err = SrtTarget::try_from(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
        let err = SrtTarget::try_from("srt://h:1?passphrase=short1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("passphrase has 6 bytes"), "{err}");
        assert!(!err.contains("short1"));
    }
}
