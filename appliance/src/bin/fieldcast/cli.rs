//! The command line (clap derive): global options and subcommands.
//! Parsing only; what each subcommand does is in `ops`, `fleet` and
//! `watch`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::error::CliError;
use crate::topics::{Addressee, check_level};

const AFTER_HELP: &str = "\
Exit status: 0 done; 1 the device refused the command (for a group: any
device did); 2 usage, connection, timeout, or an offline or unknown device.

The password is best given in FIELDCAST_PASSWORD: on the command line every
user of the machine can read it.";

#[derive(Parser)]
#[command(
    name = "fieldcast",
    version,
    about = "Operate Fieldcast encoders over MQTT 5",
    after_help = AFTER_HELP
)]
pub struct Cli {
    #[command(flatten)]
    pub connection: Connection,
    /// Print the JSON documents as received (replies, state), one per line.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// Where the broker is and how to log in. No `Debug`: it holds the password.
#[derive(Args)]
pub struct Connection {
    /// mqtt://host:port or mqtts://host:port
    #[arg(
        long,
        env = "FIELDCAST_BROKER",
        default_value = "mqtt://127.0.0.1:1883",
        value_name = "URL",
        global = true
    )]
    pub broker: String,
    /// The topic prefix of the devices (`[mqtt] prefix` on the devices).
    #[arg(
        long,
        env = "FIELDCAST_PREFIX",
        default_value = "fieldcast",
        global = true
    )]
    pub prefix: String,
    #[arg(long, env = "FIELDCAST_USERNAME", global = true)]
    pub username: Option<String>,
    /// Better given in FIELDCAST_PASSWORD.
    #[arg(
        long,
        env = "FIELDCAST_PASSWORD",
        hide_env_values = true,
        global = true
    )]
    pub password: Option<String>,
    /// The CA certificate (PEM) that signed the broker's, for mqtts://;
    /// without it the system's roots are used.
    #[arg(long, value_name = "PEM", global = true)]
    pub ca_file: Option<PathBuf>,
    /// How long to wait for the broker, then for replies.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value = "5",
        value_parser = seconds,
        global = true
    )]
    pub timeout: Duration,
}

fn seconds(text: &str) -> Result<Duration, String> {
    let s: f64 = text
        .parse()
        .map_err(|_| format!("'{text}' is not a number of seconds"))?;
    if !(s > 0.0 && s <= 86_400.0) {
        return Err(format!("'{text}' must be above 0 and at most 86400"));
    }
    Ok(Duration::from_secs_f64(s))
}

#[derive(Subcommand)]
pub enum Command {
    /// Every device under the prefix: status, board, inputs and pushes live.
    Devices,
    /// A device's retained state: inputs, pushes with their state and target.
    State { device: String },
    /// List, add, change, start, stop and remove pushes.
    #[command(subcommand)]
    Push(PushCmd),
    /// The next windows of a scheduled push (schedule.preview).
    Schedule {
        device: String,
        /// The push's id.
        push: String,
        /// How many windows.
        #[arg(short = 'n', long = "count", value_name = "N")]
        count: Option<u32>,
    },
    /// The device's variables (var.list).
    Vars(To),
    /// Set or remove a variable.
    #[command(subcommand)]
    Var(VarCmd),
    /// The device's streams, wildcard streams included (stream.list).
    Streams(To),
    /// Start or stop a wildcard stream (name+suffix).
    #[command(subcommand)]
    Stream(StreamCmd),
    /// The device's triggers (trigger.list).
    Triggers(To),
    /// Define a trigger.
    #[command(subcommand)]
    Trigger(TriggerCmd),
    /// Export or import a device's configuration.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Follow events, telemetry and state as they come, until Ctrl-C.
    Watch(Watch),
    /// Any command, raw: `cmd DEVICE NAME [JSON]`.
    #[command(
        override_usage = "fieldcast cmd [OPTIONS] <DEVICE> <NAME> [JSON]\n       \
                                fieldcast cmd [OPTIONS] --group <G> <NAME> [JSON]"
    )]
    Cmd(Words),
}

/// The device a command goes to, or with `--group` the group.
#[derive(Args)]
pub struct To {
    /// The device's id.
    #[arg(required_unless_present = "group", conflicts_with = "group")]
    pub device: Option<String>,
    /// Send to the fleet topic of group G instead: every device in it
    /// answers for itself.
    #[arg(long, value_name = "G")]
    pub group: Option<String>,
}

impl To {
    pub fn addressee(&self) -> Result<Addressee, CliError> {
        match (&self.device, &self.group) {
            (_, Some(g)) => {
                check_level("group", g)?;
                Ok(Addressee::Group(g.clone()))
            }
            (Some(d), None) => {
                check_level("device", d)?;
                Ok(Addressee::Device(d.clone()))
            }
            (None, None) => Err(CliError::usage("give a DEVICE or --group G")),
        }
    }
}

/// A device (or `--group G`) followed by further positional arguments.
/// clap cannot have an optional positional before required ones, so these
/// are split here: without `--group` the first word is the device.
#[derive(Args)]
pub struct Words {
    /// Send to the fleet topic of group G instead of one device.
    #[arg(long, value_name = "G")]
    pub group: Option<String>,
    #[arg(value_name = "ARGS", required = true)]
    pub words: Vec<String>,
}

impl Words {
    /// The addressee and exactly `required` words plus up to `optional`
    /// more; `names` name them all, for the usage message.
    pub fn split(
        &self,
        names: &[&str],
        required: usize,
    ) -> Result<(Addressee, Vec<String>), CliError> {
        let mut words = self.words.clone();
        let to = match &self.group {
            Some(g) => {
                check_level("group", g)?;
                Addressee::Group(g.clone())
            }
            None => {
                let d = words.remove(0);
                check_level("device", &d)?;
                Addressee::Device(d)
            }
        };
        if words.len() < required || words.len() > names.len() {
            let mut usage = if self.group.is_some() {
                "--group G".to_string()
            } else {
                "DEVICE".to_string()
            };
            for (i, n) in names.iter().enumerate() {
                usage.push(' ');
                usage.push_str(&if i < required {
                    n.to_string()
                } else {
                    format!("[{n}]")
                });
            }
            return Err(CliError::usage(format!("expected {usage}")));
        }
        Ok((to, words))
    }
}

/// A whole argument object, instead of (or under) the options.
#[derive(Args)]
pub struct Raw {
    /// The arguments as a JSON object; options given as well override its
    /// fields.
    #[arg(long, value_name = "JSON", conflicts_with = "file")]
    pub json_args: Option<String>,
    /// The arguments as a JSON object in a file (`-` for standard input).
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Kind {
    Push,
    Auto,
    Scheduled,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Push => "push",
            Kind::Auto => "auto",
            Kind::Scheduled => "scheduled",
        }
    }
}

#[derive(Subcommand)]
pub enum PushCmd {
    /// The pushes with their state and counters (push.list).
    List(To),
    /// Add a push, started unless --disabled (push.add).
    Add(PushAdd),
    /// Replace a push's definition (push.update): the same options as add.
    Update(PushAdd),
    /// Start a push (push.start).
    Start(PushId),
    /// Stop a push (push.stop).
    Stop(PushId),
    /// Stop and forget a push (push.remove).
    Remove(PushId),
    /// What happened to pushes lately (push.history).
    History(PushHistory),
}

#[derive(Args)]
pub struct PushId {
    #[command(flatten)]
    pub to: To,
    /// The push's id.
    #[arg(long)]
    pub id: String,
}

/// A push's definition, for push.add and push.update (which replaces the
/// whole definition, so both need all of it).
#[derive(Args)]
pub struct PushAdd {
    #[command(flatten)]
    pub to: To,
    /// The push's id.
    #[arg(long, required_unless_present_any = ["json_args", "file"])]
    pub id: Option<String>,
    /// The input stream to send (an input's name).
    #[arg(long, required_unless_present_any = ["json_args", "file"])]
    pub stream: Option<String>,
    /// Where to: srt://host:port?mode=caller&... (see docs/mqtt.md).
    #[arg(long, required_unless_present_any = ["json_args", "file"])]
    pub target: Option<String>,
    /// push: runs while enabled; auto and scheduled: started by the
    /// device's rules and schedule.
    #[arg(long, value_enum)]
    pub kind: Option<Kind>,
    /// Define it without starting it.
    #[arg(long)]
    pub disabled: bool,
    #[command(flatten)]
    pub raw: Raw,
}

#[derive(Args)]
pub struct PushHistory {
    #[command(flatten)]
    pub to: To,
    /// Only this push.
    #[arg(long)]
    pub id: Option<String>,
    /// At most N entries.
    #[arg(long, value_name = "N")]
    pub limit: Option<u32>,
}

#[derive(Subcommand)]
pub enum VarCmd {
    /// Set a variable (var.set): `var set DEVICE NAME VALUE`.
    #[command(
        override_usage = "fieldcast var set [OPTIONS] <DEVICE> <NAME> <VALUE>\n       \
                                fieldcast var set [OPTIONS] --group <G> <NAME> <VALUE>"
    )]
    Set(Words),
    /// Remove a variable (var.remove): `var remove DEVICE NAME`.
    #[command(
        override_usage = "fieldcast var remove [OPTIONS] <DEVICE> <NAME>\n       \
                                fieldcast var remove [OPTIONS] --group <G> <NAME>"
    )]
    Remove(Words),
}

#[derive(Subcommand)]
pub enum StreamCmd {
    /// Start a wildcard stream (stream.start): `stream start DEVICE cam+2`.
    #[command(
        override_usage = "fieldcast stream start [OPTIONS] <DEVICE> <NAME>\n       \
                                fieldcast stream start [OPTIONS] --group <G> <NAME>"
    )]
    Start(Words),
    /// Stop a wildcard stream (stream.stop).
    #[command(
        override_usage = "fieldcast stream stop [OPTIONS] <DEVICE> <NAME>\n       \
                                fieldcast stream stop [OPTIONS] --group <G> <NAME>"
    )]
    Stop(Words),
}

#[derive(Subcommand)]
pub enum TriggerCmd {
    /// Define a trigger (trigger.set) from --json-args or --file.
    Set(TriggerSet),
}

#[derive(Args)]
pub struct TriggerSet {
    #[command(flatten)]
    pub to: To,
    #[command(flatten)]
    pub raw: Raw,
}

#[derive(Subcommand)]
pub enum ConfigCmd {
    /// Print the device's configuration (config.export), ready to import.
    Export { device: String },
    /// Replace the device's configuration with FILE (config.import).
    Import { device: String, file: PathBuf },
}

#[derive(Args)]
pub struct Watch {
    /// The device's id, or `+` for every device.
    pub device: String,
    /// Events (all three kinds when none is chosen).
    #[arg(long)]
    pub events: bool,
    /// Telemetry.
    #[arg(long)]
    pub telemetry: bool,
    /// State changes, and online/offline.
    #[arg(long)]
    pub state: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("fieldcast").chain(args.iter().copied()))
    }

    #[test]
    fn definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn group_or_device() {
        let Command::Push(PushCmd::Start(p)) = parse(&["push", "start", "enc-01", "--id", "b"])
            .unwrap()
            .command
        else {
            panic!()
        };
        assert_eq!(
            p.to.addressee().unwrap(),
            Addressee::Device("enc-01".into())
        );
        let Command::Push(PushCmd::List(to)) = parse(&["push", "list", "--group", "studio"])
            .unwrap()
            .command
        else {
            panic!()
        };
        assert_eq!(to.addressee().unwrap(), Addressee::Group("studio".into()));
        assert!(parse(&["push", "list"]).is_err());
        assert!(parse(&["push", "list", "enc-01", "--group", "g"]).is_err());
        // add needs id, stream and target unless given a whole object.
        assert!(parse(&["push", "add", "d", "--id", "x"]).is_err());
        assert!(parse(&["push", "add", "d", "--json-args", "{}"]).is_ok());
    }

    #[test]
    fn words_split() {
        let Command::Var(VarCmd::Set(w)) = parse(&["var", "set", "enc-01", "mode", "live"])
            .unwrap()
            .command
        else {
            panic!()
        };
        let (to, rest) = w.split(&["NAME", "VALUE"], 2).unwrap();
        assert_eq!(to, Addressee::Device("enc-01".into()));
        assert_eq!(rest, ["mode", "live"]);

        let Command::Var(VarCmd::Set(w)) =
            parse(&["var", "set", "--group", "studio", "mode", "live"])
                .unwrap()
                .command
        else {
            panic!()
        };
        let (to, rest) = w.split(&["NAME", "VALUE"], 2).unwrap();
        assert_eq!(to, Addressee::Group("studio".into()));
        assert_eq!(rest, ["mode", "live"]);

        let Command::Cmd(w) = parse(&["cmd", "enc-01"]).unwrap().command else {
            panic!()
        };
        let e = w.split(&["NAME", "JSON"], 1).unwrap_err().to_string();
        assert_eq!(e, "expected DEVICE NAME [JSON]");
        let Command::Cmd(w) = parse(&["cmd", "a/b", "x"]).unwrap().command else {
            panic!()
        };
        assert!(w.split(&["NAME", "JSON"], 1).is_err());
    }

    #[test]
    fn timeout_and_globals() {
        let c = parse(&["devices", "--timeout", "0.5", "--json"]).unwrap();
        assert_eq!(c.connection.timeout, Duration::from_millis(500));
        assert!(c.json);
        assert!(parse(&["devices", "--timeout", "0"]).is_err());
        assert!(parse(&["devices", "--timeout", "soon"]).is_err());
    }
}
