//! The device's MQTT topic tree (documented in `docs/mqtt.md`):
//!
//! ```text
//! <prefix>/<device>/status            retained  "online" / "offline" (last will)
//! <prefix>/<device>/state             retained  JSON: inputs, streams, outputs, health
//! <prefix>/<device>/events                      JSON, one per event
//! <prefix>/<device>/telemetry                   JSON, every telemetry_interval_s
//! <prefix>/<device>/cmd/<command>               JSON request (MQTT 5 request/response)
//! <prefix>/<device>/reply/<command>             replies for clients without a response topic
//! ```

#[derive(Clone, Debug)]
pub struct Topics {
    root: String,
}

impl Topics {
    pub fn new(prefix: &str, device: &str) -> Self {
        Self {
            root: format!("{prefix}/{device}"),
        }
    }

    pub fn root(&self) -> &str {
        &self.root
    }

    pub fn status(&self) -> String {
        format!("{}/status", self.root)
    }

    pub fn state(&self) -> String {
        format!("{}/state", self.root)
    }

    pub fn events(&self) -> String {
        format!("{}/events", self.root)
    }

    pub fn telemetry(&self) -> String {
        format!("{}/telemetry", self.root)
    }

    /// The subscription that receives every command.
    pub fn commands(&self) -> String {
        format!("{}/cmd/+", self.root)
    }

    /// Where a reply goes when the request named no response topic.
    pub fn reply(&self, command: &str) -> String {
        format!("{}/reply/{command}", self.root)
    }

    /// The command name of a topic under `cmd/`, if it is one.
    pub fn command_of<'a>(&self, topic: &'a str) -> Option<&'a str> {
        let rest = topic.strip_prefix(self.root.as_str())?;
        let name = rest.strip_prefix("/cmd/")?;
        (!name.is_empty() && !name.contains('/')).then_some(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree() {
        let t = Topics::new("fieldcast", "enc-01");
        assert_eq!(t.status(), "fieldcast/enc-01/status");
        assert_eq!(t.commands(), "fieldcast/enc-01/cmd/+");
        assert_eq!(
            t.command_of("fieldcast/enc-01/cmd/push.add"),
            Some("push.add")
        );
        assert_eq!(t.command_of("fieldcast/enc-01/cmd/"), None);
        assert_eq!(t.command_of("fieldcast/enc-02/cmd/push.add"), None);
        assert_eq!(t.command_of("fieldcast/enc-01/cmd/a/b"), None);
        assert_eq!(t.reply("push.add"), "fieldcast/enc-01/reply/push.add");
    }
}
