//! Each subcommand as a plan (pure: arguments checked and the request
//! built before any connection), then the run of that plan against the
//! broker and what is printed.

use std::path::Path;

use jiff::tz::TimeZone;
use serde_json::{Map, Value, json};

use crate::broker::Broker;
use crate::cli::{Cli, Command, ConfigCmd, PushCmd, Raw, StreamCmd, TriggerCmd, VarCmd};
use crate::error::CliError;
use crate::fleet;
use crate::render;
use crate::reply::Reply;
use crate::request::{self, Request};
use crate::session::Session;
use crate::topics::{Addressee, Topics, check_level};
use crate::watch::{self, Streams};

/// How a run ended, when it reached a device.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// The device (or a device of the group) refused the command.
    Refused,
}

/// How a successful result is shown to people.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Show {
    /// Read for its command: tables, lines.
    Result,
    /// The whole result as indented JSON: `cmd`.
    Json,
}

enum Plan {
    Devices,
    State(String),
    Watch(String, Streams),
    Request(Addressee, Request, Show),
}

/// A JSON object from `--json-args` or `--file` (`-`: standard input).
fn object_from(raw: &Raw) -> Result<Option<Map<String, Value>>, CliError> {
    let (what, text) = match (&raw.json_args, &raw.file) {
        (Some(text), _) => ("--json-args".to_string(), text.clone()),
        (None, Some(path)) => (format!("--file {}", path.display()), read(path)?),
        (None, None) => return Ok(None),
    };
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(o)) => Ok(Some(o)),
        Ok(_) => Err(CliError::usage(format!("{what}: must be a JSON object"))),
        Err(e) => Err(CliError::usage(format!("{what}: not JSON: {e}"))),
    }
}

fn read(path: &Path) -> Result<String, CliError> {
    let r = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(path)
    };
    r.map_err(|e| CliError::usage(format!("reading {}: {e}", path.display())))
}

/// Push arguments: the object of `--json-args`/`--file` (or an empty one)
/// with the options given on top.
fn push_args(
    raw: &Raw,
    fields: [(&str, Option<&String>); 3],
    kind: Option<crate::cli::Kind>,
    disabled: bool,
) -> Result<Value, CliError> {
    let mut o = object_from(raw)?.unwrap_or_default();
    for (key, value) in fields {
        if let Some(v) = value {
            o.insert(key.into(), json!(v));
        }
    }
    if let Some(k) = kind {
        o.insert("kind".into(), json!(k.name()));
    }
    if disabled {
        o.insert("enabled".into(), json!(false));
    }
    Ok(Value::Object(o))
}

/// The configuration in a file for `config import`: what `config export`
/// prints, or a whole `config.export` result (`{"config": …, "secrets":
/// …}`, as saved from `cmd` or another client), unwrapped.
fn importable(file: Value) -> Value {
    match file {
        Value::Object(mut o)
            if o.contains_key("config") && o.keys().all(|k| k == "config" || k == "secrets") =>
        {
            o.remove("config").unwrap_or_default()
        }
        other => other,
    }
}

fn device(id: &str) -> Result<Addressee, CliError> {
    check_level("device", id)?;
    Ok(Addressee::Device(id.to_string()))
}

fn plan(command: &Command) -> Result<Plan, CliError> {
    let req = |to: Addressee, name: &str, args: Value| {
        Ok(Plan::Request(to, Request::new(name, args), Show::Result))
    };
    match command {
        Command::Devices => Ok(Plan::Devices),
        Command::State { device: d } => {
            check_level("device", d)?;
            Ok(Plan::State(d.clone()))
        }
        Command::Push(p) => match p {
            PushCmd::List(to) => req(to.addressee()?, "push.list", json!({})),
            PushCmd::Add(a) => {
                let args = push_args(
                    &a.raw,
                    [
                        ("id", a.id.as_ref()),
                        ("stream", a.stream.as_ref()),
                        ("target", a.target.as_ref()),
                    ],
                    a.kind,
                    a.disabled,
                )?;
                req(a.to.addressee()?, "push.add", args)
            }
            PushCmd::Update(u) => {
                let args = push_args(
                    &u.raw,
                    [
                        ("id", u.id.as_ref()),
                        ("stream", u.stream.as_ref()),
                        ("target", u.target.as_ref()),
                    ],
                    u.kind,
                    u.disabled,
                )?;
                req(u.to.addressee()?, "push.update", args)
            }
            PushCmd::Start(p) => req(p.to.addressee()?, "push.start", json!({"id": p.id})),
            PushCmd::Stop(p) => req(p.to.addressee()?, "push.stop", json!({"id": p.id})),
            PushCmd::Remove(p) => req(p.to.addressee()?, "push.remove", json!({"id": p.id})),
            PushCmd::History(h) => {
                let mut args = Map::new();
                if let Some(id) = &h.id {
                    args.insert("id".into(), json!(id));
                }
                if let Some(n) = h.limit {
                    args.insert("limit".into(), json!(n));
                }
                req(h.to.addressee()?, "push.history", Value::Object(args))
            }
        },
        Command::Schedule {
            device: d,
            push,
            count,
        } => {
            let mut args = json!({"id": push});
            if let Some(n) = count {
                args["count"] = json!(n);
            }
            req(device(d)?, "schedule.preview", args)
        }
        Command::Vars(to) => req(to.addressee()?, "var.list", json!({})),
        Command::Var(VarCmd::Set(w)) => {
            let (to, words) = w.split(&["NAME", "VALUE"], 2)?;
            req(to, "var.set", json!({"name": words[0], "value": words[1]}))
        }
        Command::Var(VarCmd::Remove(w)) => {
            let (to, words) = w.split(&["NAME"], 1)?;
            req(to, "var.remove", json!({"name": words[0]}))
        }
        Command::Streams(to) => req(to.addressee()?, "stream.list", json!({})),
        Command::Stream(StreamCmd::Start(w)) => {
            let (to, words) = w.split(&["NAME"], 1)?;
            req(to, "stream.start", json!({"name": words[0]}))
        }
        Command::Stream(StreamCmd::Stop(w)) => {
            let (to, words) = w.split(&["NAME"], 1)?;
            req(to, "stream.stop", json!({"name": words[0]}))
        }
        Command::Triggers(to) => req(to.addressee()?, "trigger.list", json!({})),
        Command::Trigger(TriggerCmd::Set(t)) => {
            let args = object_from(&t.raw)?.ok_or_else(|| {
                CliError::usage("trigger set needs the trigger in --json-args or --file")
            })?;
            req(t.to.addressee()?, "trigger.set", Value::Object(args))
        }
        Command::Config(ConfigCmd::Export { device: d }) => {
            req(device(d)?, "config.export", json!({}))
        }
        Command::Config(ConfigCmd::Import { device: d, file }) => {
            let text = read(file)?;
            let config: Value = serde_json::from_str(&text)
                .map_err(|e| CliError::usage(format!("{}: not JSON: {e}", file.display())))?;
            req(
                device(d)?,
                "config.import",
                json!({ "config": importable(config) }),
            )
        }
        Command::Watch(w) => {
            if w.device != "+" {
                check_level("device", &w.device)?;
            }
            Ok(Plan::Watch(
                w.device.clone(),
                Streams {
                    events: w.events,
                    telemetry: w.telemetry,
                    state: w.state,
                },
            ))
        }
        Command::Cmd(w) => {
            let (to, words) = w.split(&["NAME", "JSON"], 1)?;
            check_level("command", &words[0])?;
            // Sent as given: the device is the judge of its payloads, and
            // this is how to see what it says to a bad one.
            let text = words.get(1).map_or("{}", String::as_str);
            Ok(Plan::Request(to, Request::raw(&words[0], text), Show::Json))
        }
    }
}

/// A successful result, for people.
fn human(req: &Request, show: Show, result: &Value, tz: &TimeZone) -> String {
    // `config export` (not `cmd … config.export`, which prints the whole
    // result, `secrets` included).
    if show == Show::Result
        && req.command == "config.export"
        && let Some(config) = result.get("config")
    {
        // What `config import` takes, so `export > f; import f` works.
        if result["secrets"] == false && config.to_string().contains("***") {
            eprintln!(
                "note: this device exports targets redacted (***); an import of them is refused"
            );
        }
        return serde_json::to_string_pretty(config).unwrap_or_default();
    }
    if show == Show::Json {
        return match result {
            Value::Null => "ok".into(),
            v => serde_json::to_string_pretty(v).unwrap_or_default(),
        };
    }
    match req.command.as_str() {
        "push.list" => render::pushes(result, tz),
        "push.add" | "push.update" | "push.start" | "push.stop" | "push.remove" => {
            render::push_change(&req.command, &req.args, result)
        }
        "push.history" => render::history(result, tz),
        "schedule.preview" => render::windows(result, tz),
        "var.list" => render::vars(result, tz),
        "var.set" | "var.remove" => render::var_change(&req.command, &req.args, result),
        "stream.list" => render::streams(result),
        "stream.start" | "stream.stop" => render::stream_change(&req.command, result),
        "state.get" => render::state(result, None, tz),
        _ => render::generic(result, tz),
    }
}

/// One device's reply under its name, for a group: on the same line when
/// it is one line, else indented below.
fn section(name: &str, text: &str) -> String {
    if text.contains('\n') {
        let body: Vec<String> = text.lines().map(|l| format!("  {l}")).collect();
        format!("{name}:\n{}", body.join("\n"))
    } else {
        format!("{name}: {text}")
    }
}

fn outcome(ok: bool) -> Outcome {
    if ok { Outcome::Done } else { Outcome::Refused }
}

pub async fn run(cli: Cli) -> Result<Outcome, CliError> {
    let broker = Broker::try_from(cli.connection.broker.as_str())?;
    let topics = Topics::new(&cli.connection.prefix)?;
    let plan = plan(&cli.command)?;
    let tz = TimeZone::system();
    let json = cli.json;
    let mut s = Session::connect(&broker, &cli.connection).await?;
    let result = execute(&mut s, &topics, plan, json, &tz).await;
    s.close().await;
    result
}

async fn execute(
    s: &mut Session,
    topics: &Topics,
    plan: Plan,
    json: bool,
    tz: &TimeZone,
) -> Result<Outcome, CliError> {
    match plan {
        Plan::Devices => {
            let list = fleet::devices(s, topics).await?;
            if json {
                for d in &list {
                    crate::say(
                        &json!({"device": d.id, "status": d.status, "state": d.state}).to_string(),
                    );
                }
            } else {
                crate::say(&render::devices(&list));
            }
            Ok(Outcome::Done)
        }
        Plan::State(id) => {
            let (status, state) = fleet::device(s, topics, &id).await?;
            if json {
                crate::say(&state);
            } else {
                let doc: Value = serde_json::from_str(&state).unwrap_or(Value::Null);
                crate::say(&render::state(&doc, status.as_deref(), tz));
            }
            Ok(Outcome::Done)
        }
        Plan::Watch(device, streams) => {
            watch::run(s, topics, &device, streams, json, tz).await?;
            Ok(Outcome::Done)
        }
        Plan::Request(Addressee::Device(d), req, show) => {
            let reply = request::to_device(s, topics, &d, &req).await?;
            if json {
                crate::say(&reply.raw);
            } else if reply.ok {
                crate::say(&human(&req, show, &reply.result, tz));
            } else if let Some(line) = reply.error_line() {
                eprintln!("{line}");
            }
            Ok(outcome(reply.ok))
        }
        Plan::Request(Addressee::Group(g), req, show) => {
            let replies = request::to_group(s, topics, &g, &req).await?;
            let refused = replies.iter().filter(|r| !r.ok).count();
            for r in &replies {
                if json {
                    crate::say(&r.raw);
                } else {
                    crate::say(&section(r.sender(), &group_text(&req, show, r, tz)));
                }
            }
            if refused > 0 && !json {
                eprintln!(
                    "{refused} of {} devices of group {g} refused {}",
                    replies.len(),
                    req.command
                );
            }
            Ok(outcome(refused == 0))
        }
    }
}

fn group_text(req: &Request, show: Show, r: &Reply, tz: &TimeZone) -> String {
    match r.error_line() {
        Some(e) => e,
        None => human(req, show, &r.result, tz),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn planned(args: &[&str]) -> Result<Plan, CliError> {
        let cli =
            Cli::try_parse_from(std::iter::once("fieldcast").chain(args.iter().copied())).unwrap();
        plan(&cli.command)
    }

    fn request(args: &[&str]) -> (Addressee, String, Value) {
        match planned(args).unwrap() {
            Plan::Request(to, r, _) => {
                let sent: Value = serde_json::from_slice(&r.payload).unwrap_or(Value::Null);
                (to, r.command, sent)
            }
            _ => panic!("not a request"),
        }
    }

    fn dev(d: &str) -> Addressee {
        Addressee::Device(d.into())
    }

    #[test]
    fn push_requests() {
        assert_eq!(
            request(&[
                "push",
                "add",
                "e",
                "--id",
                "b",
                "--stream",
                "main",
                "--target",
                "srt://:9001",
                "--kind",
                "auto",
                "--disabled"
            ]),
            (
                dev("e"),
                "push.add".into(),
                json!({"id": "b", "stream": "main", "target": "srt://:9001", "kind": "auto", "enabled": false})
            )
        );
        // Options override the object they come with.
        assert_eq!(
            request(&[
                "push",
                "update",
                "--group",
                "g",
                "--json-args",
                r#"{"id":"a","stream":"s","target":"t"}"#,
                "--id",
                "b"
            ])
            .2,
            json!({"id": "b", "stream": "s", "target": "t"})
        );
        assert_eq!(
            request(&["push", "stop", "e", "--id", "b"]),
            (dev("e"), "push.stop".into(), json!({"id": "b"}))
        );
        assert_eq!(
            request(&["push", "history", "e", "--limit", "3"]).2,
            json!({"limit": 3})
        );
        assert_eq!(
            request(&["schedule", "e", "night", "-n", "4"]),
            (
                dev("e"),
                "schedule.preview".into(),
                json!({"id": "night", "count": 4})
            )
        );
        let e = planned(&["push", "add", "e", "--json-args", "[1]"])
            .err()
            .unwrap();
        assert_eq!(e.to_string(), "--json-args: must be a JSON object");
        let e = planned(&["push", "add", "e", "--json-args", "{nope"])
            .err()
            .unwrap();
        assert!(e.to_string().starts_with("--json-args: not JSON"), "{e}");
    }

    #[test]
    fn other_requests() {
        assert_eq!(
            request(&["var", "set", "e", "mode", "live two"]),
            (
                dev("e"),
                "var.set".into(),
                json!({"name": "mode", "value": "live two"})
            )
        );
        assert_eq!(request(&["vars", "--group", "g"]).1, "var.list");
        assert_eq!(
            request(&["var", "remove", "--group", "g", "mode"]),
            (
                Addressee::Group("g".into()),
                "var.remove".into(),
                json!({"name": "mode"})
            )
        );
        assert!(planned(&["trigger", "set", "e"]).is_err());
        assert_eq!(
            request(&["trigger", "set", "e", "--json-args", r#"{"id":"t"}"#]).1,
            "trigger.set"
        );
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.json");
        std::fs::write(&f, r#"{"pushes": []}"#).unwrap();
        assert_eq!(
            request(&["config", "import", "e", f.to_str().unwrap()]).2,
            json!({"config": {"pushes": []}})
        );
        let e = planned(&["config", "import", "e", "/nonexistent/c.json"])
            .err()
            .unwrap();
        assert!(e.to_string().contains("/nonexistent/c.json"), "{e}");
    }

    #[test]
    fn raw_commands_are_sent_as_given() {
        match planned(&["cmd", "e", "push.add", "{not json"]).unwrap() {
            Plan::Request(to, r, Show::Json) => {
                assert_eq!(to, dev("e"));
                assert_eq!(r.payload, b"{not json");
            }
            _ => panic!(),
        }
        match planned(&["cmd", "--group", "g", "state.get"]).unwrap() {
            Plan::Request(Addressee::Group(g), r, _) => {
                assert_eq!(g, "g");
                assert_eq!(r.payload, b"{}");
            }
            _ => panic!(),
        }
        assert!(planned(&["cmd", "e", "a/b"]).is_err());
    }

    #[test]
    fn exports_print_what_imports_take() {
        let result = json!({"secrets": false, "config": {"pushes": [], "running": {}}});
        let tz = TimeZone::UTC;
        // `config export`: the part `config import` takes.
        let Plan::Request(_, req, show) = planned(&["config", "export", "e"]).unwrap() else {
            panic!()
        };
        let shown: Value = serde_json::from_str(&human(&req, show, &result, &tz)).unwrap();
        assert_eq!(shown, result["config"]);
        // `cmd`: the whole result, as for any command.
        let Plan::Request(_, req, show) = planned(&["cmd", "e", "config.export"]).unwrap() else {
            panic!()
        };
        let shown: Value = serde_json::from_str(&human(&req, show, &result, &tz)).unwrap();
        assert_eq!(shown, result);
        // Both import.
        assert_eq!(importable(shown), result["config"]);
    }

    #[test]
    fn group_sections() {
        assert_eq!(section("enc-01", "b: started"), "enc-01: b: started");
        assert_eq!(section("enc-01", "A  B\n1  2"), "enc-01:\n  A  B\n  1  2");
    }
}
