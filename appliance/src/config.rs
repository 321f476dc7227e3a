//! The daemon's TOML configuration: parsed with unknown keys refused, then
//! validated into typed values before anything else sees it. Every error
//! names the field (`outputs[1].target`) and the bad value, never a secret.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use fieldcast_capture::settings::check_name;
use fieldcast_capture::{BoardProfile, InputSpec};
use serde::Deserialize;

use crate::error::ConfigError;
use crate::push::{PushDef, ValidPush};
use crate::triggers::HandlerDef;
use crate::vars::VarDef;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub device: DeviceConfig,
    #[serde(default)]
    pub mqtt: MqttConfig,
    #[serde(default)]
    pub inputs: Vec<InputSpec>,
    #[serde(default)]
    pub outputs: Vec<PushDef>,
    #[serde(default)]
    pub variables: Vec<VarDef>,
    #[serde(default)]
    pub triggers: Vec<HandlerDef>,
    #[serde(default)]
    pub pushes: PushesConfig,
    #[serde(default)]
    pub control: ControlConfig,
    #[serde(default)]
    pub tls: TlsConfig,
}

/// TLS trust of outputs (RTMPS and WHIP over HTTPS).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of extra CAs to trust besides the system's, for ingest
    /// servers with certificates from a private CA.
    pub ca_file: Option<PathBuf>,
}

/// How the scheduler runs pushes.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushesConfig {
    /// At most this many pushes start in any one second.
    #[serde(default = "default_starts")]
    pub max_starts_per_s: u32,
    /// Entries of the push history kept (`push.history`).
    #[serde(default = "default_history")]
    pub history: usize,
    /// Reconnect caller pushes at once when an interface, address or route
    /// changes (a WAN switch), instead of waiting for the link to stall.
    #[serde(default = "yes")]
    pub reconnect_on_network_change: bool,
    /// Where calendar files of pushes added over MQTT must be (default
    /// `<data_dir>/calendars`); the config's own pushes may name any file.
    pub calendar_dir: Option<PathBuf>,
    /// Where recordings added over MQTT must be written (default
    /// `<data_dir>/recordings`); config-file recordings may go anywhere.
    #[serde(default)]
    pub recording_dir: Option<PathBuf>,
    /// Wildcard streams that may run at once (each is a capture and an
    /// encode of its own).
    #[serde(default = "default_wildcards")]
    pub max_wildcard_streams: usize,
}

fn default_wildcards() -> usize {
    8
}

fn default_starts() -> u32 {
    5
}
fn default_history() -> usize {
    500
}
fn yes() -> bool {
    true
}

impl Default for PushesConfig {
    fn default() -> Self {
        Self {
            max_starts_per_s: default_starts(),
            history: default_history(),
            reconnect_on_network_change: true,
            calendar_dir: None,
            recording_dir: None,
            max_wildcard_streams: default_wildcards(),
        }
    }
}

/// What MQTT may change. Whoever can publish to a device's command topics
/// controls its pushes; running programs on it is a step further, off by
/// default.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// `var.set` may define command variables and `trigger.set` exec
    /// handlers (programs the daemon runs).
    #[serde(default)]
    pub allow_exec: bool,
    /// `config.export` may include targets in full (passphrases, keys),
    /// so that an export can be imported on another device.
    #[serde(default)]
    pub export_secrets: bool,
    /// `trigger.set` may attach handlers to `push_start` and
    /// `push_rewrite`: they decide where pushes go and see targets in full.
    #[serde(default)]
    pub allow_push_handlers: bool,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// Unique per device: it names the device's MQTT topics. Left out, the
    /// host name (a firmware image sets it per device).
    #[serde(default)]
    pub id: String,
    /// A built-in board profile (see `board-configs/`).
    #[serde(default = "default_board")]
    pub board: String,
    /// A board profile file, used instead of the built-in one.
    pub board_file: Option<PathBuf>,
    /// Where the daemon keeps what it must remember (pushes added over MQTT).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// The IANA time zone of the date and time variables.
    #[serde(default = "default_tz")]
    pub timezone: String,
    /// Fleet groups: the device also takes commands sent to
    /// `<prefix>/groups/<group>/cmd/<command>`.
    #[serde(default)]
    pub groups: Vec<String>,
}

/// The machine's host name: a device's id when the config gives none.
fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

fn default_tz() -> String {
    "UTC".into()
}

fn default_board() -> String {
    "generic-x86-64".into()
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/fieldcast")
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// `mqtt://host:port` or `mqtts://host:port` (TLS).
    #[serde(default = "default_broker")]
    pub url: String,
    /// Topic prefix; the device's topics are `<prefix>/<device-id>/…`.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    pub client_id: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// CA certificate (PEM) to verify the broker; without it, the system's
    /// trust store.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for brokers that authenticate
    /// devices by certificate.
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    #[serde(default = "default_keep_alive")]
    pub keep_alive_s: u64,
    #[serde(default = "default_telemetry")]
    pub telemetry_interval_s: u64,
}

fn default_broker() -> String {
    "mqtt://127.0.0.1:1883".into()
}
fn default_prefix() -> String {
    "fieldcast".into()
}
fn default_keep_alive() -> u64 {
    15
}
fn default_telemetry() -> u64 {
    5
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            url: default_broker(),
            prefix: default_prefix(),
            client_id: None,
            username: None,
            password: None,
            ca_file: None,
            client_cert_file: None,
            client_key_file: None,
            keep_alive_s: default_keep_alive(),
            telemetry_interval_s: default_telemetry(),
        }
    }
}

impl std::fmt::Debug for MqttConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttConfig")
            .field("url", &self.url)
            .field("prefix", &self.prefix)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

/// A validated configuration: what the daemon runs.
#[derive(Debug)]
pub struct Settings {
    pub device: DeviceConfig,
    pub mqtt: MqttConfig,
    pub broker: Broker,
    pub board: BoardProfile,
    pub inputs: Vec<InputSpec>,
    pub outputs: Vec<ValidPush>,
    pub variables: Vec<VarDef>,
    pub triggers: Vec<HandlerDef>,
    pub pushes: PushesConfig,
    pub control: ControlConfig,
    pub tls: TlsConfig,
    pub timezone: jiff::tz::TimeZone,
}

impl Settings {
    pub fn stream_names(&self) -> BTreeSet<String> {
        self.inputs.iter().map(|i| i.name.clone()).collect()
    }
}

pub use crate::broker_url::Broker;

/// `[mqtt] url`, parsed as the CLI parses `--broker`.
fn parse_broker(text: &str) -> Result<Broker, ConfigError> {
    Broker::parse(text).map_err(|e| {
        ConfigError::new(
            "mqtt.url",
            e.replace(
                "give the user name and password apart",
                "put them in mqtt.username and mqtt.password",
            ),
        )
    })
}

impl Config {
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new("config", format!("reading {}: {e}", path.display())))?;
        Self::parse(&text)?.validate()
    }

    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| {
            // toml's own rendering quotes the offending line, which may be
            // a password or a target with a passphrase: give the message
            // and the position only.
            let at = e
                .span()
                .map(|sp| {
                    let line = text[..sp.start.min(text.len())].matches('\n').count() + 1;
                    format!("line {line}: ")
                })
                .unwrap_or_default();
            ConfigError::new("config", format!("{at}{}", e.message()))
        })
    }

    pub fn validate(mut self) -> Result<Settings, ConfigError> {
        if self.device.id.is_empty() {
            self.device.id = host_name().ok_or_else(|| {
                ConfigError::new(
                    "device.id",
                    "is not set and the host name cannot be read (/proc/sys/kernel/hostname)",
                )
            })?;
        }
        check_name("device.id", &self.device.id).map_err(ConfigError::from_capture)?;
        // `groups` is the fleet topic tree beside the devices' own.
        if self.device.id == "groups" {
            return Err(ConfigError::new(
                "device.id",
                "'groups' is reserved (fleet group topics live under <prefix>/groups/)",
            ));
        }
        let timezone = jiff::tz::TimeZone::get(&self.device.timezone).map_err(|_| {
            ConfigError::new(
                "device.timezone",
                format!("'{}' is not an IANA time zone", self.device.timezone),
            )
        })?;
        for (i, g) in self.device.groups.iter().enumerate() {
            check_name(&format!("device.groups[{i}]"), g).map_err(ConfigError::from_capture)?;
        }
        let board = match &self.device.board_file {
            Some(path) => BoardProfile::from_file(path),
            None => BoardProfile::builtin(&self.device.board),
        }
        .map_err(|e| ConfigError::new("device.board", e.to_string()))?;

        let m = &self.mqtt;
        let broker = parse_broker(&m.url)?;
        if m.prefix.is_empty()
            || m.prefix.starts_with('/')
            || m.prefix.ends_with('/')
            || m.prefix.contains(['+', '#', '\0'])
        {
            return Err(ConfigError::new(
                "mqtt.prefix",
                format!(
                    "'{}' must be a topic without wildcards or leading/trailing '/'",
                    m.prefix
                ),
            ));
        }
        if !(5..=300).contains(&m.keep_alive_s) {
            return Err(ConfigError::new(
                "mqtt.keep_alive_s",
                format!("{} is outside 5..=300", m.keep_alive_s),
            ));
        }
        if !(1..=3600).contains(&m.telemetry_interval_s) {
            return Err(ConfigError::new(
                "mqtt.telemetry_interval_s",
                format!("{} is outside 1..=3600", m.telemetry_interval_s),
            ));
        }
        if m.client_cert_file.is_some() != m.client_key_file.is_some() {
            return Err(ConfigError::new(
                "mqtt.client_cert_file",
                "client_cert_file and client_key_file go together",
            ));
        }
        if m.password.is_some() && m.username.is_none() {
            return Err(ConfigError::new(
                "mqtt.password",
                "is set without mqtt.username",
            ));
        }
        if (m.ca_file.is_some() || m.client_cert_file.is_some()) && !broker.tls {
            return Err(ConfigError::new(
                "mqtt.ca_file",
                format!("TLS files are set but mqtt.url '{}' is not mqtts://", m.url),
            ));
        }

        if self.inputs.is_empty() {
            return Err(ConfigError::new("inputs", "at least one input is needed"));
        }
        let mut names = BTreeSet::new();
        for (i, input) in self.inputs.iter().enumerate() {
            let at = format!("inputs[{i}]");
            if input.name.contains('+') {
                return Err(ConfigError::new(
                    format!("{at}.name"),
                    format!(
                        "'{}' has a '+': that marks wildcard streams (name+suffix), started over MQTT",
                        input.name
                    ),
                ));
            }
            input
                .validate(&at, &board)
                .map_err(ConfigError::from_capture)?;
            if !names.insert(input.name.clone()) {
                return Err(ConfigError::new(
                    format!("{at}.name"),
                    format!("'{}' is used by another input", input.name),
                ));
            }
        }
        let mut ids = BTreeSet::new();
        let mut outputs = Vec::new();
        for (i, def) in self.outputs.iter().enumerate() {
            let at = format!("outputs[{i}]");
            let valid = def.validate(&at, &names)?;
            if !ids.insert(def.id.clone()) {
                return Err(ConfigError::new(
                    format!("{at}.id"),
                    format!("'{}' is used by another output", def.id),
                ));
            }
            outputs.push(valid);
        }
        let mut var_names = BTreeSet::new();
        for (i, v) in self.variables.iter().enumerate() {
            let at = format!("variables[{i}]");
            v.validate(&at)?;
            if !var_names.insert(v.name.clone()) {
                return Err(ConfigError::new(
                    format!("{at}.name"),
                    format!("'{}' is defined twice", v.name),
                ));
            }
        }
        let mut triggers = self.triggers;
        for (i, h) in triggers.iter_mut().enumerate() {
            h.validate(&format!("triggers[{i}]"))?;
            h.trusted = true;
        }
        if !(1..=1000).contains(&self.pushes.max_starts_per_s) {
            return Err(ConfigError::new(
                "pushes.max_starts_per_s",
                format!("{} is outside 1..=1000", self.pushes.max_starts_per_s),
            ));
        }
        if !(10..=100_000).contains(&self.pushes.history) {
            return Err(ConfigError::new(
                "pushes.history",
                format!("{} is outside 10..=100000", self.pushes.history),
            ));
        }
        if let Some(ca) = &self.tls.ca_file {
            fieldcast_media::tls::check_ca_file(ca)
                .map_err(|e| ConfigError::new("tls.ca_file", e))?;
        }
        Ok(Settings {
            device: self.device,
            mqtt: self.mqtt,
            broker,
            board,
            inputs: self.inputs,
            outputs,
            variables: self.variables,
            triggers,
            pushes: self.pushes,
            control: self.control,
            tls: self.tls,
            timezone,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "[device]\nid = \"enc-01\"\n[[inputs]]\nname = \"main\"\n";

    fn err(text: &str) -> String {
        match Config::parse(text).and_then(Config::validate) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let s = Config::parse(MINIMAL).unwrap().validate().unwrap();
        assert_eq!(s.board.board.name, "generic-x86-64");
        assert_eq!(s.mqtt.prefix, "fieldcast");
        assert_eq!(
            s.broker,
            Broker {
                host: "127.0.0.1".into(),
                port: 1883,
                tls: false
            }
        );
    }

    #[test]
    fn examples_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                Config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                n += 1;
            }
        }
        assert!(n >= 1, "no example configs in {}", dir.display());
    }

    #[test]
    fn unknown_keys_are_named() {
        assert!(err(&format!("{MINIMAL}[mqtt]\nurll = \"x\"")).contains("urll"));
        assert!(err(&format!("{MINIMAL}[device.extra]\n")).contains("extra"));
        assert!(err(&format!(
            "{MINIMAL}[[outputs]]\nid = \"a\"\nstream = \"main\"\ntarget = \"srt://h:1\"\nstart = true"
        ))
        .contains("start"));
    }

    #[test]
    fn the_device_id_defaults_to_the_host_name() {
        let s = Config::parse("[device]\n[[inputs]]\nname = \"main\"\n")
            .and_then(Config::validate)
            .unwrap();
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(s.device.id, host.trim());
    }

    #[test]
    fn the_image_default_config_is_valid() {
        let text = include_str!("../../image/rootfs/etc/fieldcast/fieldcast.toml");
        let s = Config::parse(text).and_then(Config::validate).unwrap();
        assert_eq!(s.board.board.name, "qemux86-64");
        assert_eq!(s.device.data_dir, std::path::Path::new("/data/fieldcast"));
    }

    #[test]
    fn bad_values_name_field_and_value() {
        let e = err(&format!(
            "{MINIMAL}[[outputs]]\nid = \"a\"\nstream = \"nope\"\ntarget = \"srt://h:1\""
        ));
        assert!(
            e.contains("outputs[0].stream") && e.contains("'nope'"),
            "{e}"
        );
        let e = err(&format!(
            "{MINIMAL}[[outputs]]\nid = \"a\"\nstream = \"main\"\ntarget = \"srt://h:1?passphrase=tooshort\""
        ));
        assert!(
            e.contains("outputs[0].target") && !e.contains("tooshort"),
            "{e}"
        );
        let e = err(&format!(
            "{MINIMAL}[[outputs]]\nid = \"a\"\nstream = \"main\"\ntarget = \"rtmpx://h/a\""
        ));
        assert!(
            e.contains("outputs[0].target") && e.contains("'rtmpx'"),
            "{e}"
        );
        let e = err(&MINIMAL.replace("enc-01", "enc 01"));
        assert!(e.contains("device.id") && e.contains("'enc 01'"), "{e}");
        let e = err(&format!("{MINIMAL}[mqtt]\nurl = \"http://x\""));
        assert!(e.contains("mqtt.url") && e.contains("http://x"), "{e}");
        let e = err(&format!("{MINIMAL}[mqtt]\nprefix = \"a/#\""));
        assert!(e.contains("mqtt.prefix"), "{e}");
        let e = err(&MINIMAL.replace("[[inputs]]", "board = \"cray-1\"\n[[inputs]]"));
        assert!(e.contains("device.board") && e.contains("cray-1"), "{e}");
        let e = err(&format!("{MINIMAL}[[inputs]]\nname = \"main\""));
        assert!(e.contains("inputs[1].name"), "{e}");
        let e = err(&format!("{MINIMAL}[mqtt]\nurl = \"mqtt://u:secretpw@h\""));
        assert!(e.contains("mqtt.url") && !e.contains("secretpw"), "{e}");
        let e = err(&format!(
            "{MINIMAL}[mqtt]\nurl = \"http://u:secretpw@h:99999\""
        ));
        assert!(e.contains("mqtt.url") && !e.contains("secretpw"), "{e}");
        // A syntax error on a secret's line names the line, not its text.
        let e = err(&format!("{MINIMAL}[mqtt]\npassword = \"hunter2-secret\" x"));
        assert!(e.contains("line 6") && !e.contains("hunter2-secret"), "{e}");
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let text = format!(
            "{MINIMAL}[mqtt]\nusername = \"u\"\npassword = \"brokerpw\"\n[[outputs]]\nid = \"a\"\nstream = \"main\"\ntarget = \"srt://h:1?passphrase=0123456789secret\""
        );
        let s = Config::parse(&text).unwrap().validate().unwrap();
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("brokerpw") && !shown.contains("0123456789secret"),
            "{shown}"
        );
    }
}
