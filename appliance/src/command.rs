//! Command payloads and replies: pure, bytes in and bytes out.
//!
//! A command is the last topic level (`…/cmd/push.add`) and a JSON object
//! of arguments. Unknown fields are refused, so a typo is an error instead
//! of a silently ignored setting.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use fieldcast_schedule::ScheduleDef;

use fieldcast_capture::settings::EncodeChange;

use crate::error::{ApiError, Code};
use crate::push::PushDef;
use crate::store::Layer;
use crate::triggers::{HandlerDef, Trigger};
use crate::vars::VarDef;

#[derive(Debug, PartialEq)]
pub enum Command {
    PushAdd(PushDef),
    PushUpdate(PushDef),
    PushRemove {
        id: String,
    },
    PushStart {
        id: String,
    },
    PushStop {
        id: String,
    },
    PushList,
    PushHistory {
        id: Option<String>,
        limit: usize,
    },
    StateGet,
    DevicesDiscover,
    VarList,
    VarSet(VarDef),
    VarRemove {
        name: String,
    },
    TriggerList,
    TriggerSet {
        on: Trigger,
        handlers: Vec<HandlerDef>,
    },
    SchedulePreview {
        id: Option<String>,
        schedule: Option<ScheduleDef>,
        count: usize,
    },
    StreamStart {
        name: String,
    },
    StreamStop {
        name: String,
    },
    StreamList,
    ConfigExport,
    ConfigImport(Box<Layer>),
    EncoderSet {
        input: String,
        change: EncodeChange,
    },
    EncoderReset {
        input: String,
    },
    EncoderKeyframe {
        input: String,
    },
}

/// Every command of the contract, for `unknown_command` replies and docs.
pub const COMMANDS: &[&str] = &[
    "push.add",
    "push.update",
    "push.remove",
    "push.start",
    "push.stop",
    "push.list",
    "push.history",
    "state.get",
    "devices.discover",
    "var.list",
    "var.set",
    "var.remove",
    "trigger.list",
    "trigger.set",
    "schedule.preview",
    "stream.start",
    "stream.stop",
    "stream.list",
    "config.export",
    "config.import",
    "encoder.set",
    "encoder.reset",
    "encoder.keyframe",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryArgs {
    id: Option<String>,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    50
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameArgs {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TriggerSetArgs {
    on: Trigger,
    handlers: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PreviewArgs {
    id: Option<String>,
    schedule: Option<ScheduleDef>,
    #[serde(default = "default_count")]
    count: usize,
}

fn default_count() -> usize {
    5
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportArgs {
    config: Layer,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdArgs {
    id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputArgs {
    input: String,
}

fn args<T: for<'de> Deserialize<'de>>(payload: &[u8]) -> Result<T, ApiError> {
    // An empty payload is an empty object: `mosquitto_rr -m ''` for commands
    // without arguments.
    let text = if payload.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        payload
    };
    let value: Value = serde_json::from_slice(text)
        .map_err(|e| ApiError::new(Code::BadJson, format!("payload is not JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::new(
            Code::BadJson,
            "payload must be a JSON object",
        ));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        // The path to the value at fault (`schedule.windows[0].rrule`); for
        // an unknown or missing field serde names it in backquotes.
        let path = e.path().to_string();
        let msg = e.inner().to_string();
        let named = ["unknown field `", "missing field `"]
            .iter()
            .find_map(|p| msg.strip_prefix(p))
            .and_then(|r| r.split('`').next())
            .map(str::to_string);
        // An unknown field is the last step of the path already; a missing
        // one is not (the path ends at its parent).
        let field = match (path.as_str(), named) {
            (".", Some(n)) => Some(n),
            (".", None) => None,
            (p, Some(n)) if p == n || p.ends_with(&format!(".{n}")) => Some(p.to_string()),
            (p, Some(n)) => Some(format!("{p}.{n}")),
            (p, None) => Some(p.to_string()),
        };
        ApiError {
            code: Code::InvalidArgument,
            message: match &field {
                Some(f) => format!("{f}: {msg}"),
                None => msg,
            },
            field,
        }
    })
}

pub fn parse(name: &str, payload: &[u8]) -> Result<Command, ApiError> {
    match name {
        "push.add" => args::<PushDef>(payload).map(Command::PushAdd),
        "push.update" => args::<PushDef>(payload).map(Command::PushUpdate),
        "push.remove" => args::<IdArgs>(payload).map(|a| Command::PushRemove { id: a.id }),
        "push.start" => args::<IdArgs>(payload).map(|a| Command::PushStart { id: a.id }),
        "push.stop" => args::<IdArgs>(payload).map(|a| Command::PushStop { id: a.id }),
        "push.list" => args::<NoArgs>(payload).map(|_| Command::PushList),
        "encoder.set" => {
            // `input` names the input; every other field is a setting.
            let mut v: serde_json::Map<String, Value> = args(payload)?;
            let input = match v.remove("input") {
                Some(Value::String(s)) => s,
                Some(_) => {
                    return Err(ApiError::field(
                        Code::InvalidArgument,
                        "input",
                        "must be a string",
                    ));
                }
                None => {
                    return Err(ApiError::field(
                        Code::InvalidArgument,
                        "input",
                        "input: missing field `input`",
                    ));
                }
            };
            let change: EncodeChange = args(&serde_json::to_vec(&v).expect("a map serializes"))?;
            if change.is_empty() {
                return Err(ApiError::new(
                    Code::InvalidArgument,
                    "give at least one of width, height, framerate, bitrate_kbps, gop_frames, profile, audio_bitrate_kbps",
                ));
            }
            Ok(Command::EncoderSet { input, change })
        }
        "encoder.reset" => {
            args::<InputArgs>(payload).map(|a| Command::EncoderReset { input: a.input })
        }
        "encoder.keyframe" => {
            args::<InputArgs>(payload).map(|a| Command::EncoderKeyframe { input: a.input })
        }
        "push.history" => {
            let a = args::<HistoryArgs>(payload)?;
            if !(1..=1000).contains(&a.limit) {
                return Err(ApiError::field(
                    Code::InvalidArgument,
                    "limit",
                    format!("{} is outside 1..=1000", a.limit),
                ));
            }
            Ok(Command::PushHistory {
                id: a.id,
                limit: a.limit,
            })
        }
        "state.get" => args::<NoArgs>(payload).map(|_| Command::StateGet),
        "devices.discover" => args::<NoArgs>(payload).map(|_| Command::DevicesDiscover),
        "var.list" => args::<NoArgs>(payload).map(|_| Command::VarList),
        "var.set" => args::<VarDef>(payload).map(Command::VarSet),
        "var.remove" => args::<NameArgs>(payload).map(|a| Command::VarRemove { name: a.name }),
        "trigger.list" => args::<NoArgs>(payload).map(|_| Command::TriggerList),
        "trigger.set" => {
            let a = args::<TriggerSetArgs>(payload)?;
            let mut handlers = Vec::new();
            for (i, mut h) in a.handlers.into_iter().enumerate() {
                let field = format!("handlers[{i}]");
                let Some(obj) = h.as_object_mut() else {
                    return Err(ApiError::field(
                        Code::InvalidArgument,
                        field,
                        "must be an object",
                    ));
                };
                match obj.get("on") {
                    None => {
                        obj.insert("on".into(), serde_json::to_value(a.on).expect("names"));
                    }
                    Some(v) if *v == serde_json::to_value(a.on).expect("names") => {}
                    Some(_) => {
                        return Err(ApiError::field(
                            Code::InvalidArgument,
                            format!("{field}.on"),
                            format!("differs from the command's on ({})", a.on.name()),
                        ));
                    }
                }
                let def: HandlerDef = serde_json::from_value(h).map_err(|e| {
                    ApiError::field(Code::InvalidArgument, field.clone(), e.to_string())
                })?;
                def.validate(&field)?;
                handlers.push(def);
            }
            Ok(Command::TriggerSet { on: a.on, handlers })
        }
        "schedule.preview" => {
            let a = args::<PreviewArgs>(payload)?;
            if a.id.is_some() == a.schedule.is_some() {
                return Err(ApiError::field(
                    Code::InvalidArgument,
                    "id",
                    "give either id (a push) or schedule (a schedule to try)",
                ));
            }
            if !(1..=100).contains(&a.count) {
                return Err(ApiError::field(
                    Code::InvalidArgument,
                    "count",
                    format!("{} is outside 1..=100", a.count),
                ));
            }
            Ok(Command::SchedulePreview {
                id: a.id,
                schedule: a.schedule,
                count: a.count,
            })
        }
        "stream.start" => args::<NameArgs>(payload).map(|a| Command::StreamStart { name: a.name }),
        "stream.stop" => args::<NameArgs>(payload).map(|a| Command::StreamStop { name: a.name }),
        "stream.list" => args::<NoArgs>(payload).map(|_| Command::StreamList),
        "config.export" => args::<NoArgs>(payload).map(|_| Command::ConfigExport),
        "config.import" => {
            args::<ImportArgs>(payload).map(|a| Command::ConfigImport(Box::new(a.config)))
        }
        other => Err(ApiError::new(
            Code::UnknownCommand,
            format!(
                "command '{}' is unknown (known: {})",
                other.chars().take(64).collect::<String>(),
                COMMANDS.join(", ")
            ),
        )),
    }
}

#[derive(Serialize)]
struct Reply<'a> {
    ok: bool,
    /// Who answers: a group command gets one reply per device.
    device: &'a str,
    command: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a ApiError>,
}

pub fn reply(device: &str, command: &str, outcome: &Result<Value, ApiError>) -> Vec<u8> {
    let r = match outcome {
        Ok(v) => Reply {
            ok: true,
            device,
            command,
            result: Some(v.clone()),
            error: None,
        },
        Err(e) => Reply {
            ok: false,
            device,
            command,
            result: None,
            error: Some(e),
        },
    };
    serde_json::to_vec(&r).expect("replies serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands() {
        let c = parse(
            "push.add",
            br#"{"id":"b","stream":"main","target":"srt://h:1"}"#,
        )
        .unwrap();
        assert!(matches!(c, Command::PushAdd(d) if d.id == "b" && d.enabled));
        assert_eq!(
            parse("push.stop", br#"{"id":"b"}"#).unwrap(),
            Command::PushStop { id: "b".into() }
        );
        assert_eq!(parse("state.get", b"").unwrap(), Command::StateGet);
        assert_eq!(parse("push.list", b"{}").unwrap(), Command::PushList);
    }

    #[test]
    fn errors_are_coded_and_name_the_field() {
        let e = parse("push.add", b"{nope").unwrap_err();
        assert_eq!(e.code, Code::BadJson);
        let e = parse("push.add", b"[1]").unwrap_err();
        assert_eq!(e.code, Code::BadJson);
        let e = parse("push.stop", br#"{"id":"b","force":true}"#).unwrap_err();
        assert_eq!(e.code, Code::InvalidArgument);
        assert_eq!(e.field.as_deref(), Some("force"));
        let e = parse("push.add", br#"{"id":"b","stream":"main"}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("target"));
        let e = parse("push.stop", br#"{"id":7}"#).unwrap_err();
        assert_eq!(e.code, Code::InvalidArgument);
        assert_eq!(e.field.as_deref(), Some("id"), "{e:?}");
        let e = parse(
            "push.add",
            br#"{"id":"a","stream":"main","target":"srt://h:1","kind":"scheduled","schedule":{"windows":[{"start":"x","rrule":5}]}}"#,
        )
        .unwrap_err();
        assert_eq!(
            e.field.as_deref(),
            Some("schedule.windows[0].rrule"),
            "{e:?}"
        );
        let e = parse(
            "push.add",
            br#"{"id":"a","stream":"main","target":"srt://h:1","rules":[{"var":"x","op":"set","colour":1}]}"#,
        )
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("rules[0].colour"), "{e:?}");
        let e = parse("reboot", b"{}").unwrap_err();
        assert_eq!(e.code, Code::UnknownCommand);
        assert!(e.message.contains("'reboot'"));
    }

    #[test]
    fn replies() {
        let ok: Value =
            serde_json::from_slice(&reply("enc-01", "push.list", &Ok(serde_json::json!([]))))
                .unwrap();
        assert_eq!(
            ok,
            serde_json::json!({"ok": true, "device": "enc-01", "command": "push.list", "result": []})
        );
        let err = ApiError::field(Code::NotFound, "id", "'x' is not a push");
        let e: Value = serde_json::from_slice(&reply("enc-01", "push.stop", &Err(err))).unwrap();
        assert_eq!(e["ok"], false);
        assert_eq!(e["error"]["code"], "not_found");
        assert_eq!(e["error"]["field"], "id");
        assert_eq!(e["error"]["message"], "id: 'x' is not a push");
    }
}
