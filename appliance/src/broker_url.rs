//! A broker URL, `mqtt://host[:port]` or `mqtts://host[:port]`: parsed the
//! same way by the daemon (`[mqtt] url`) and the operator CLI (`--broker`).
//! Pure, no I/O. Messages quote the URL, so one with user information
//! (where a password would be) is refused without being quoted.

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broker {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl Broker {
    /// `host:port`, as messages name the broker.
    #[allow(dead_code)] // the CLI's; the daemon logs host and port apart
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The URL parsed; the error is a message without the option's name
    /// (each caller names its own: `mqtt.url`, `--broker`).
    pub fn parse(text: &str) -> Result<Broker, String> {
        if text
            .split_once("://")
            .is_some_and(|(_, rest)| rest.split('/').next().unwrap_or("").contains('@'))
        {
            return Err(
                "the URL carries credentials; give the user name and password apart".into(),
            );
        }
        let bad = |why: &str| format!("'{text}' {why}");
        let url = url::Url::parse(text).map_err(|e| bad(&format!("is not a URL ({e})")))?;
        let tls = match url.scheme() {
            "mqtt" | "tcp" => false,
            "mqtts" | "ssl" => true,
            _ => return Err(bad("must start with mqtt:// or mqtts://")),
        };
        if !matches!(url.path(), "" | "/") || url.query().is_some() {
            return Err(bad("has a path or query; only host and port are used"));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = url.port().unwrap_or(if tls { 8883 } else { 1883 });
        Ok(Broker { host, port, tls })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            Broker::parse("mqtt://127.0.0.1:1883").unwrap(),
            Broker {
                host: "127.0.0.1".into(),
                port: 1883,
                tls: false
            }
        );
        let b = Broker::parse("mqtts://broker.example").unwrap();
        assert_eq!((b.port, b.tls), (8883, true));
        assert_eq!(
            Broker::parse("mqtt://[::1]:2000").unwrap().address(),
            "[::1]:2000"
        );
        assert_eq!(Broker::parse("mqtt://h").unwrap().address(), "h:1883");
    }

    #[test]
    fn refusals_never_quote_a_password() {
        let e = Broker::parse("http://h:1").unwrap_err();
        assert!(e.contains("mqtt://"), "{e}");
        let e = Broker::parse("mqtt://op:hunter2-secret@h:1883").unwrap_err();
        assert!(e.contains("credentials") && !e.contains("hunter2"), "{e}");
        assert!(Broker::parse("mqtt://h:1883/x").is_err());
        assert!(Broker::parse("127.0.0.1:1883").is_err());
    }
}
