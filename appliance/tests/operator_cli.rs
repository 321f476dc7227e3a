//! The operator CLI (`fieldcast`) against a real mosquitto and fieldcastd:
//! the fleet and state views, the push lifecycle seen in the daemon's
//! state, a live watch, raw commands, and every way a run can fail with
//! its message and exit status (1 refused, 2 anything else).

mod support;

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use support::*;
use tokio::io::{AsyncBufReadExt, BufReader};

const DEV: &str = "cli-op";

/// Events a device publishes when an operator starts a push.
const STARTED: [&str; 3] = ["push_started", "push_start", "push_state"];

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// The CLI, pointed at the broker on `port`, with nothing from the
/// environment of the test run.
fn cli(port: u16) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_fieldcast"));
    c.env("FIELDCAST_BROKER", format!("mqtt://127.0.0.1:{port}"))
        .env_remove("FIELDCAST_PREFIX")
        .env_remove("FIELDCAST_USERNAME")
        .env_remove("FIELDCAST_PASSWORD")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    c
}

async fn run(port: u16, args: &[&str]) -> Run {
    let out = cli(port).args(args).output().await.unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A run that must succeed.
async fn ok(port: u16, args: &[&str]) -> Run {
    let r = run(port, args).await;
    assert_eq!(r.code, 0, "fieldcast {args:?}: {r}");
    r
}

fn listener_config() -> String {
    format!(
        "[[outputs]]\nid = \"program\"\nstream = \"main\"\ntarget = \"srt://:{}?mode=listener\"\n",
        free_port()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_and_state_views() {
    let _g = serial().await;
    let rig = Rig::start(DEV, &listener_config()).await;
    let port = rig.broker.port;
    // The input runs and the listener waits for a caller (a push also
    // waits while its stream is not live yet).
    let topic = rig.topic("state");
    rig.mqtt
        .wait_for("the input to run", Duration::from_secs(30), |m| {
            m.last(&topic).is_some_and(|s| {
                s["inputs"][0]["state"] == "running" && s["outputs"][0]["state"] == "waiting"
            })
        })
        .await;

    let r = ok(port, &["devices"]).await;
    let mut lines = r.stdout.lines();
    assert!(lines.next().unwrap().starts_with("DEVICE"), "{r}");
    let row: Vec<&str> = lines
        .find(|l| l.starts_with(DEV))
        .unwrap_or_else(|| panic!("{r}"))
        .split_whitespace()
        .collect();
    // device, status, board, inputs live, pushes live, healthy
    assert_eq!(row[1], "online", "{r}");
    assert_eq!(row[3], "1/1", "{r}");
    assert_eq!(row[4], "0/1", "{r}");

    let r = ok(port, &["devices", "--json"]).await;
    let docs: Vec<Value> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let me = docs.iter().find(|d| d["device"] == DEV).expect("listed");
    assert_eq!(me["status"], "online", "{r}");
    assert_eq!(me["state"]["device"], DEV, "{r}");
    assert_eq!(me["state"]["outputs"][0]["id"], "program", "{r}");

    let r = ok(port, &["state", DEV]).await;
    assert!(r.stdout.starts_with(&format!("{DEV}  online")), "{r}");
    let program = r
        .stdout
        .lines()
        .find(|l| l.starts_with("program"))
        .unwrap_or_else(|| panic!("{r}"));
    assert!(
        program.contains("waiting") && program.contains("srt://0.0.0.0:"),
        "{r}"
    );
    assert!(r.stdout.contains("main   running"), "{r}");

    // --json prints the retained document itself.
    let r = ok(port, &["state", DEV, "--json"]).await;
    let state: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    let retained = rig.mqtt.last(&rig.topic("state")).unwrap();
    assert_eq!(state["device"], DEV, "{r}");
    assert_eq!(state["outputs"][0]["id"], "program", "{r}");
    assert_eq!(state["board"], retained["board"], "{r}");

    // Any command, raw: the result as JSON, or the whole reply with --json.
    let r = ok(port, &["cmd", DEV, "state.get"]).await;
    let result: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(result["device"], DEV, "{r}");
    let r = ok(port, &["--json", "cmd", DEV, "push.list", "{}"]).await;
    let reply: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(reply["ok"], true, "{r}");
    assert_eq!(reply["command"], "push.list", "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_lifecycle_shows_in_the_daemon_state() {
    let _g = serial().await;
    let rig = Rig::start(DEV, "").await;
    let port = rig.broker.port;
    let target = format!(
        "srt://:{}?mode=listener&passphrase=cli-secret-passphrase",
        free_port()
    );

    let r = ok(
        port,
        &[
            "push", "add", DEV, "--id", "b", "--stream", "main", "--target", &target,
        ],
    )
    .await;
    assert!(r.stdout.starts_with("b: added"), "{r}");
    assert!(r.stdout.contains("passphrase=***"), "{r}");
    rig.wait_push("b", "waiting").await;

    let r = ok(port, &["push", "stop", DEV, "--id", "b"]).await;
    assert!(r.stdout.starts_with("b: stopped"), "{r}");
    rig.wait_push("b", "stopped").await;
    let r = ok(port, &["push", "stop", DEV, "--id", "b"]).await;
    assert!(r.stdout.starts_with("b: already stopped"), "{r}");

    let r = ok(port, &["push", "start", DEV, "--id", "b"]).await;
    assert!(r.stdout.starts_with("b: started"), "{r}");
    rig.wait_push("b", "waiting").await;

    let r = ok(port, &["push", "list", DEV]).await;
    let row = r
        .stdout
        .lines()
        .find(|l| l.starts_with("b "))
        .unwrap_or_else(|| panic!("{r}"));
    assert!(row.contains("waiting") && row.contains("mqtt"), "{r}");

    let r = ok(port, &["push", "list", DEV, "--json"]).await;
    let reply: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(reply["result"][0]["id"], "b", "{r}");

    let r = ok(port, &["state", DEV]).await;
    assert!(r.stdout.lines().any(|l| l.starts_with("b ")), "{r}");

    let r = ok(port, &["push", "remove", DEV, "--id", "b"]).await;
    assert_eq!(r.stdout.trim(), "b: removed", "{r}");
    let topic = rig.topic("state");
    rig.mqtt
        .wait_for("b to leave the state", Duration::from_secs(10), |m| {
            m.last(&topic)
                .is_some_and(|s| s["outputs"].as_array().is_some_and(|o| o.is_empty()))
        })
        .await;
    let r = ok(port, &["push", "list", DEV]).await;
    assert_eq!(r.stdout.trim(), "no pushes", "{r}");

    // The passphrase never reached a terminal.
    for args in [["push", "list", DEV], ["state", DEV, "--json"]] {
        let r = ok(port, &args).await;
        assert!(!r.to_string().contains("cli-secret-passphrase"), "{r}");
    }
}

/// Reads `child`'s lines until one satisfies `want`, for at most `within`.
async fn line_matching(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    within: Duration,
    seen: &mut Vec<String>,
    want: impl Fn(&str) -> bool,
) -> String {
    let end = tokio::time::Instant::now() + within;
    loop {
        let line = tokio::time::timeout_at(end, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no matching line within {within:?}; saw:\n{seen:#?}"))
            .unwrap()
            .unwrap_or_else(|| panic!("watch ended; saw:\n{seen:#?}"));
        seen.push(line.clone());
        if want(&line) {
            return line;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_the_events_of_a_push_start() {
    let _g = serial().await;
    let mut rig = Rig::start(DEV, "").await;
    let port = rig.broker.port;
    let target = format!("srt://:{}?mode=listener", free_port());
    rig.ok(
        "push.add",
        &format!(r#"{{"id":"w","stream":"main","target":"{target}","enabled":false}}"#),
    )
    .await;

    let mut human = cli(port)
        .args(["watch", DEV])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut json = cli(port)
        .args(["watch", "+", "--events", "--state", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut h = BufReader::new(human.stdout.take().unwrap()).lines();
    let mut j = BufReader::new(json.stdout.take().unwrap()).lines();
    let (mut hs, mut js) = (Vec::new(), Vec::new());
    // Each watch prints the retained state first: it is subscribed.
    let first = line_matching(&mut h, Duration::from_secs(10), &mut hs, |l| {
        l.contains(" state ")
    })
    .await;
    assert!(
        first.contains(DEV) && first.contains("w=stopped"),
        "{first}"
    );
    line_matching(&mut j, Duration::from_secs(10), &mut js, |l| {
        l.contains(r#""inputs""#)
    })
    .await;

    ok(port, &["push", "start", DEV, "--id", "w"]).await;

    // `2026-01-01 12:00:00.000  event      cli-op  push_started id=w`: the
    // event of the start (`push_state` with a state other than stopped, or
    // `push_start` on devices that announce a push about to connect).
    let event = line_matching(&mut h, Duration::from_secs(10), &mut hs, |l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        w.len() > 5
            && w[2..4] == ["event", DEV]
            && STARTED.contains(&w[4])
            && w.contains(&"id=w")
            && !w.contains(&"state=stopped")
    })
    .await;
    let words: Vec<&str> = event.split_whitespace().collect();
    assert!(words[0].len() == 10 && words[1].len() == 12, "{event}");
    let later = line_matching(&mut h, Duration::from_secs(10), &mut hs, |l| {
        l.contains(" state ") && l.contains("w=waiting")
    })
    .await;
    assert!(later.contains(DEV), "{later}");

    let event = line_matching(&mut j, Duration::from_secs(10), &mut js, |l| {
        serde_json::from_str::<Value>(l).is_ok_and(|d| {
            d["id"] == "w" && d["state"] != "stopped" && STARTED.iter().any(|e| d["event"] == *e)
        })
    })
    .await;
    let doc: Value = serde_json::from_str(&event).unwrap();
    assert_eq!(doc["device"], DEV, "{event}");
    assert!(doc["ts"].is_number(), "{event}");

    human.kill().await.unwrap();
    json.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_named_and_exit_1_or_2() {
    let _g = serial().await;
    let mut rig = Rig::start(DEV, &listener_config()).await;
    let port = rig.broker.port;

    // Refused by the device: exit 1, the code and the field.
    let r = run(port, &["push", "start", DEV, "--id", "nope"]).await;
    assert_eq!(r.code, 1, "{r}");
    let line = r.stderr.trim();
    assert!(line.starts_with("error: not_found: "), "{r}");
    assert!(
        line.starts_with("error: not_found: id: ") || line.ends_with("(field id)"),
        "{r}"
    );
    let r = run(
        port,
        &[
            "push",
            "add",
            DEV,
            "--json-args",
            r#"{"id":"x","stream":"main","target":"srt://127.0.0.1:9","colour":"red"}"#,
        ],
    )
    .await;
    assert_eq!(r.code, 1, "{r}");
    let line = r.stderr.trim();
    assert!(line.starts_with("error: invalid_argument: "), "{r}");
    assert!(
        line.contains("colour:") || line.ends_with("(field colour)"),
        "{r}"
    );
    // --json: the reply as it came, and still exit 1.
    let r = run(port, &["--json", "push", "stop", DEV, "--id", "nope"]).await;
    assert_eq!(r.code, 1, "{r}");
    let reply: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(reply["error"]["code"], "not_found", "{r}");
    assert_eq!(reply["error"]["field"], "id", "{r}");
    // A command the device does not have, and a payload it cannot read.
    let r = run(port, &["cmd", DEV, "reboot.now"]).await;
    assert_eq!(r.code, 1, "{r}");
    assert!(
        r.stderr.starts_with("error: unknown_command: ") && r.stderr.contains("'reboot.now'"),
        "{r}"
    );
    let r = run(port, &["cmd", DEV, "push.add", "{not json"]).await;
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.starts_with("error: bad_json: "), "{r}");

    // Usage: exit 2 before any connection.
    let r = run(port, &["push", "add", DEV, "--id", "x"]).await;
    assert_eq!(r.code, 2, "{r}");
    let r = run(port, &["push", "add", DEV, "--json-args", "[1]"]).await;
    assert_eq!(r.code, 2, "{r}");
    assert_eq!(
        r.stderr.trim(),
        "fieldcast: --json-args: must be a JSON object"
    );

    // No such device, no such group: exit 2, and the password (given on
    // the command line here; the broker does not check it) is never shown.
    let secret = "hunter2-operator-secret";
    let r = run(
        port,
        &[
            "push",
            "list",
            "enc-07",
            "--username",
            "op",
            "--password",
            secret,
        ],
    )
    .await;
    assert_eq!(r.code, 2, "{r}");
    assert_eq!(
        r.stderr.trim(),
        "fieldcast: no device enc-07 under prefix fieldcast"
    );
    let r = run(port, &["push", "list", "--group", "nobody"]).await;
    assert_eq!(r.code, 2, "{r}");
    assert!(
        r.stderr.contains("no device of group nobody is listening"),
        "{r}"
    );

    // The device stops: its retained status says offline, and nothing is
    // sent to it.
    assert!(rig.stop("TERM"));
    rig.wait_status("offline").await;
    let r = run(port, &["push", "list", DEV]).await;
    assert_eq!(r.code, 2, "{r}");
    assert_eq!(
        r.stderr.trim(),
        format!("fieldcast: device {DEV} is offline (its retained status)")
    );
    let r = ok(port, &["devices"]).await;
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with(DEV) && l.contains("offline")),
        "{r}"
    );

    // The broker stops.
    rig.broker.kill();
    let r = run(port, &["devices", "--password", secret, "--username", "op"]).await;
    assert_eq!(r.code, 2, "{r}");
    assert_eq!(
        r.stderr.trim(),
        format!("fieldcast: cannot reach broker 127.0.0.1:{port}: connection refused")
    );
    assert!(!r.to_string().contains(secret), "{r}");
}

/// Stands in for the devices of `group` (the daemon does not take group
/// commands yet): every request gets a reply from `van-01` (twice, as QoS 1
/// may deliver it) and a refusal from `van-02`, each naming itself.
async fn fake_group(port: u16, group: &str) -> tokio::task::JoinHandle<()> {
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};

    let o = MqttOptions::new(format!("fake-group-{}", free_port()), "127.0.0.1", port);
    let (client, mut el) = AsyncClient::new(o, 16);
    client
        .subscribe(format!("fieldcast/groups/{group}/cmd/+"), QoS::AtLeastOnce)
        .await
        .unwrap();
    loop {
        if let Event::Incoming(Packet::SubAck(_)) = el.poll().await.unwrap() {
            break;
        }
    }
    tokio::spawn(async move {
        while let Ok(event) = el.poll().await {
            let Event::Incoming(Packet::Publish(p)) = event else {
                continue;
            };
            let topic = String::from_utf8_lossy(&p.topic).into_owned();
            let command = topic.rsplit('/').next().unwrap().to_string();
            let props = p.properties.unwrap_or_default();
            let id = serde_json::from_slice::<Value>(&p.payload).unwrap()["id"].clone();
            let ok = serde_json::json!({"ok": true, "device": "van-01", "command": command,
                "result": {"changed": true, "push": {"id": id, "state": "stopped"}}});
            let refused = serde_json::json!({"ok": false, "device": "van-02", "command": command,
                "error": {"code": "not_found", "field": "id", "message": format!("id: {id} is not a push")}});
            for body in [&refused, &ok, &ok] {
                let reply_props = PublishProperties {
                    correlation_data: props.correlation_data.clone(),
                    ..Default::default()
                };
                client
                    .publish_with_properties(
                        props.response_topic.clone().unwrap(),
                        QoS::AtLeastOnce,
                        false,
                        body.to_string(),
                        reply_props,
                    )
                    .await
                    .unwrap();
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_replies_are_shown_per_device() {
    let _g = serial().await;
    let broker = Broker::start();
    let port = broker.port;
    let responder = fake_group(port, "vans").await;

    let args = [
        "push",
        "stop",
        "--group",
        "vans",
        "--id",
        "b",
        "--timeout",
        "1",
    ];
    let r = run(port, &args).await;
    // Sorted by device, each once, and exit 1: one device refused.
    assert_eq!(r.code, 1, "{r}");
    assert_eq!(
        r.stdout, "van-01: b: stopped\nvan-02: error: not_found: id: \"b\" is not a push\n",
        "{r}"
    );
    assert_eq!(
        r.stderr.trim(),
        "1 of 2 devices of group vans refused push.stop"
    );

    let r = run(port, &[&["--json"], &args[..]].concat()).await;
    assert_eq!(r.code, 1, "{r}");
    let devices: Vec<String> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["device"].to_string())
        .collect();
    assert_eq!(devices, [r#""van-01""#, r#""van-02""#], "{r}");
    responder.abort();
}
