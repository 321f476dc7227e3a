//! The `--broker` URL: `mqtt://host[:port]` or `mqtts://host[:port]`.
//! Pure parsing, no I/O.

use crate::error::CliError;

// One parser for the daemon's `[mqtt] url` and this `--broker`.
#[path = "../../broker_url.rs"]
mod broker_url;
pub use broker_url::Broker;

impl TryFrom<&str> for Broker {
    type Error = CliError;

    fn try_from(text: &str) -> Result<Self, CliError> {
        Broker::parse(text).map_err(|e| {
            CliError::usage(format!(
                "--broker: {}",
                e.replace(
                    "give the user name and password apart",
                    "give --username and FIELDCAST_PASSWORD instead"
                )
            ))
        })
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
