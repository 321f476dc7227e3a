//! The `--broker` URL: `mqtt://host[:port]` or `mqtts://host[:port]`.
//! Pure parsing, no I/O.

use crate::error::CliError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broker {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl Broker {
    /// `host:port`, as error messages name the broker.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl TryFrom<&str> for Broker {
    type Error = CliError;

    fn try_from(text: &str) -> Result<Self, CliError> {
        // A URL with user information may carry a password, and this
        // message is printed: refuse it without quoting it.
        if text
            .split_once("://")
            .is_some_and(|(_, rest)| rest.split('/').next().unwrap_or("").contains('@'))
        {
            return Err(CliError::usage(
                "--broker: the URL carries credentials; give --username and FIELDCAST_PASSWORD instead",
            ));
        }
        let bad = |why: &str| CliError::usage(format!("--broker: '{text}' {why}"));
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

    fn parse(s: &str) -> Result<Broker, String> {
        Broker::try_from(s).map_err(|e| e.to_string())
    }

    #[test]
    fn urls() {
        assert_eq!(
            parse("mqtt://127.0.0.1:1883").unwrap(),
            Broker {
                host: "127.0.0.1".into(),
                port: 1883,
                tls: false
            }
        );
        let b = parse("mqtts://broker.example").unwrap();
        assert_eq!((b.port, b.tls), (8883, true));
        assert_eq!(parse("mqtt://[::1]:2000").unwrap().address(), "[::1]:2000");
        assert_eq!(parse("mqtt://h").unwrap().address(), "h:1883");
    }

    #[test]
    fn refusals_name_the_option_and_never_a_password() {
        let e = parse("http://h:1").unwrap_err();
        assert!(e.contains("--broker") && e.contains("mqtt://"), "{e}");
        let e = parse("mqtt://op:hunter2-secret@h:1883").unwrap_err();
        assert!(e.contains("credentials") && !e.contains("hunter2"), "{e}");
        assert!(parse("mqtt://h:1883/x").is_err());
        assert!(parse("127.0.0.1:1883").is_err());
    }
}
