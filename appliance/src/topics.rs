//! The device's MQTT topic tree (documented in `docs/mqtt.md`):
//!
//! ```text
//! <prefix>/<device>/status            retained  "online" / "offline" (last will)
//! <prefix>/<device>/state             retained  JSON: inputs, streams, outputs, health
//! <prefix>/<device>/events                      JSON, one per event
//! <prefix>/<device>/telemetry                   JSON, every telemetry_interval_s
//! <prefix>/<device>/cmd/<command>               JSON request (MQTT 5 request/response)
//! <prefix>/<device>/reply/<command>             replies for clients without a response topic
//! <prefix>/groups/<group>/cmd/<command>         fleet commands: every member answers for itself
//! ```

#[derive(Clone, Debug)]
pub struct Topics {
    root: String,
    device: String,
    groups: Vec<String>,
}

impl Topics {
    pub fn new(prefix: &str, device: &str) -> Self {
        Self {
            root: format!("{prefix}/{device}"),
            device: device.to_string(),
            groups: Vec::new(),
        }
    }

    /// The device also takes commands sent to these groups.
    pub fn with_groups(mut self, prefix: &str, groups: &[String]) -> Self {
        self.groups = groups
            .iter()
            .map(|g| format!("{prefix}/groups/{g}"))
            .collect();
        self
    }

    pub fn root(&self) -> &str {
        &self.root
    }

    pub fn device(&self) -> &str {
        &self.device
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

    /// The subscriptions that receive every command: the device's own and
    /// its groups'.
    pub fn commands(&self) -> Vec<String> {
        std::iter::once(&self.root)
            .chain(&self.groups)
            .map(|r| format!("{r}/cmd/+"))
            .collect()
    }

    /// Where a reply goes when the request named no response topic.
    pub fn reply(&self, command: &str) -> String {
        format!("{}/reply/{command}", self.root)
    }

    /// The command name of a topic under `cmd/`, if it is one.
    pub fn command_of<'a>(&self, topic: &'a str) -> Option<&'a str> {
        std::iter::once(&self.root)
            .chain(&self.groups)
            .find_map(|root| {
                let name = topic.strip_prefix(root.as_str())?.strip_prefix("/cmd/")?;
                (!name.is_empty() && !name.contains('/')).then_some(name)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree() {
        let t = Topics::new("fieldcast", "enc-01").with_groups("fieldcast", &["vans".into()]);
        assert_eq!(t.status(), "fieldcast/enc-01/status");
        assert_eq!(
            t.commands(),
            vec!["fieldcast/enc-01/cmd/+", "fieldcast/groups/vans/cmd/+"]
        );
        assert_eq!(
            t.command_of("fieldcast/groups/vans/cmd/push.list"),
            Some("push.list")
        );
        assert_eq!(t.command_of("fieldcast/groups/cars/cmd/push.list"), None);
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
