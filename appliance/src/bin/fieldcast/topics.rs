//! The topic tree of the contract (`docs/mqtt.md`), seen from a client:
//!
//! ```text
//! <prefix>/<device>/status|state|events|telemetry   what devices publish
//! <prefix>/<device>/cmd/<command>                   a request to one device
//! <prefix>/groups/<group>/cmd/<command>             a request to a group
//! <prefix>/_cli/<token>/reply                       this run's replies
//! ```
//!
//! Pure: names in, topics out. Every name is checked once, here, so no
//! wildcard or level separator slips into a topic.

use crate::error::CliError;

/// Who a command goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Addressee {
    Device(String),
    Group(String),
}

#[derive(Clone, Debug)]
pub struct Topics {
    prefix: String,
}

/// A topic level given on the command line: not empty, no `/`, and no
/// wildcard (MQTT 5.0 section 4.7: `+` and `#` are not allowed in topic
/// names, and a name holding one would be a filter when subscribed to).
pub fn check_level(what: &str, name: &str) -> Result<(), CliError> {
    if name.is_empty() || name.contains(['/', '+', '#', '\0']) {
        return Err(CliError::usage(format!(
            "{what} '{name}' must be one topic level: not empty, without '/', '+' or '#'"
        )));
    }
    Ok(())
}

impl Topics {
    pub fn new(prefix: &str) -> Result<Topics, CliError> {
        if prefix.is_empty()
            || prefix.contains(['+', '#', '\0'])
            || prefix.starts_with('/')
            || prefix.ends_with('/')
            || prefix.contains("//")
        {
            return Err(CliError::usage(format!(
                "--prefix '{prefix}' must be topic levels without wildcards or empty levels"
            )));
        }
        Ok(Topics {
            prefix: prefix.to_string(),
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix>/<device>/<leaf>`; `device` may be `+` for a subscription.
    pub fn device(&self, device: &str, leaf: &str) -> String {
        format!("{}/{device}/{leaf}", self.prefix)
    }

    /// Where a request for `command` goes.
    pub fn command(&self, to: &Addressee, command: &str) -> String {
        match to {
            Addressee::Device(d) => format!("{}/{d}/cmd/{command}", self.prefix),
            Addressee::Group(g) => format!("{}/groups/{g}/cmd/{command}", self.prefix),
        }
    }

    /// The response topic of one run: unique, so that two operators (or
    /// two runs in a script) never read each other's replies.
    pub fn reply(&self, token: &str) -> String {
        format!("{}/_cli/{token}/reply", self.prefix)
    }

    /// `(device, leaf)` of a device topic under the prefix.
    pub fn split<'a>(&self, topic: &'a str) -> Option<(&'a str, &'a str)> {
        let rest = topic
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix('/')?;
        let (device, leaf) = rest.split_once('/')?;
        (!device.is_empty() && !leaf.contains('/')).then_some((device, leaf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree() {
        let t = Topics::new("site/fieldcast").unwrap();
        assert_eq!(t.device("enc-01", "status"), "site/fieldcast/enc-01/status");
        assert_eq!(t.device("+", "state"), "site/fieldcast/+/state");
        assert_eq!(
            t.command(&Addressee::Device("enc-01".into()), "push.add"),
            "site/fieldcast/enc-01/cmd/push.add"
        );
        assert_eq!(
            t.command(&Addressee::Group("studio".into()), "push.list"),
            "site/fieldcast/groups/studio/cmd/push.list"
        );
        assert_eq!(t.reply("ab12"), "site/fieldcast/_cli/ab12/reply");
        assert_eq!(
            t.split("site/fieldcast/enc-01/status"),
            Some(("enc-01", "status"))
        );
        assert_eq!(t.split("site/fieldcast/enc-01/cmd/push.add"), None);
        assert_eq!(t.split("site/fieldcastx/enc-01/status"), None);
        assert_eq!(t.split("other/enc-01/status"), None);
    }

    #[test]
    fn names_are_single_levels() {
        assert!(check_level("device", "enc-01").is_ok());
        for bad in ["", "a/b", "+", "enc#", "a+b"] {
            let e = check_level("device", bad).unwrap_err().to_string();
            assert!(e.starts_with("device '"), "{e}");
        }
        assert!(Topics::new("").is_err());
        assert!(Topics::new("fieldcast/").is_err());
        assert!(Topics::new("a/#").is_err());
    }
}
