//! The operator CLI (`fieldcast`) against a real mosquitto and fieldcastd:
//! the fleet and state views, the push lifecycle seen in the daemon's
//! state, schedules, variables, triggers, configuration export and import,
//! group commands to two daemons, a live watch, raw commands, and every way
//! a run can fail with its message and exit status (1 refused, 2 anything
//! else).

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

/// Stands in for the devices of `group`, to give what real devices seldom
/// do: every request gets a reply from `van-01` (twice, as QoS 1 may
/// deliver it) and a refusal from `van-02`, each naming itself.
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

/// The JSON documents a `--json` run printed, one per line.
fn json_lines(r: &Run) -> Vec<Value> {
    r.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}\n{r}")))
        .collect()
}

/// The one reply a `--json` run to one device printed.
fn json_reply(r: &Run) -> Value {
    let mut docs = json_lines(r);
    assert_eq!(docs.len(), 1, "{r}");
    docs.remove(0)
}

/// The words of the table row whose first cell is `first`.
fn row<'a>(r: &'a Run, first: &str) -> Vec<&'a str> {
    r.stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|w| w.first() == Some(&first))
        .unwrap_or_else(|| panic!("no row {first}: {r}"))
}

/// A device config with `[device] groups = [groups]`.
fn in_groups(config: String, groups: &str) -> String {
    assert!(config.contains("[device]\n"), "{config}");
    config.replacen("[device]\n", &format!("[device]\ngroups = [{groups}]\n"), 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_push_and_its_windows_in_local_time() {
    let _g = serial().await;
    let rig = Rig::start(DEV, "").await;
    let port = rig.broker.port;
    // Mondays 18:00-20:00 in Amsterdam, every 17 weeks: three windows span
    // 34 weeks, more than summer or winter time lasts, so they show both
    // offsets whenever the test runs.
    let args = serde_json::json!({
        "id": "evening", "stream": "main", "kind": "scheduled",
        "target": format!("srt://127.0.0.1:{}?mode=caller", free_port()),
        "schedule": {"timezone": "Europe/Amsterdam", "windows": [
            {"start": "2026-01-05T18:00", "duration": "2h",
             "rrule": "FREQ=WEEKLY;INTERVAL=17;BYDAY=MO"}]}
    })
    .to_string();
    let r = ok(port, &["push", "add", DEV, "--json-args", &args]).await;
    assert!(r.stdout.starts_with("evening: added"), "{r}");
    rig.mqtt
        .wait_for("evening in the state", Duration::from_secs(10), |m| {
            m.push_state(DEV, "evening")
                .is_some_and(|p| p["kind"] == "scheduled")
        })
        .await;

    let r = ok(port, &["schedule", DEV, "evening", "-n", "3"]).await;
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{r}");
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["START", "END", "DURATION"],
        "{r}"
    );
    assert!(lines[4].starts_with("now: "), "{r}");
    let mut offsets = Vec::new();
    let mut shown = Vec::new();
    for line in &lines[1..4] {
        // 2026-03-09 18:00:00 +01:00  2026-03-09 20:00:00 +01:00  2h
        let w: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(w.len(), 7, "{r}");
        assert_eq!((w[1], w[4], w[6]), ("18:00:00", "20:00:00", "2h"), "{r}");
        assert_eq!((w[0], w[2]), (w[3], w[5]), "{r}");
        assert!(["+01:00", "+02:00"].contains(&w[2]), "{r}");
        offsets.push(w[2]);
        shown.push(format!("{} {} {}", w[0], w[1], w[2]));
    }
    assert!(
        offsets.contains(&"+01:00") && offsets.contains(&"+02:00"),
        "{r}"
    );

    // --json: the device's reply, whose windows the table showed.
    let r = ok(port, &["--json", "schedule", DEV, "evening", "-n", "3"]).await;
    let reply = json_reply(&r);
    assert_eq!(reply["command"], "schedule.preview", "{r}");
    assert_eq!(reply["result"]["id"], "evening", "{r}");
    let windows = reply["result"]["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 3, "{r}");
    let amsterdam = jiff::tz::TimeZone::get("Europe/Amsterdam").unwrap();
    for (w, shown) in windows.iter().zip(&shown) {
        let start = jiff::Timestamp::from_second(w["start_unix"].as_i64().unwrap())
            .unwrap()
            .to_zoned(amsterdam.clone());
        assert_eq!(
            start.strftime("%Y-%m-%d %H:%M:%S %:z").to_string(),
            *shown,
            "{r}"
        );
        assert_eq!(start.weekday(), jiff::civil::Weekday::Monday, "{r}");
        assert_eq!(
            w["start"].as_str().unwrap(),
            start.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
            "{r}"
        );
        assert_eq!(w["duration_s"], 7200, "{r}");
    }
    let active = reply["result"]["active"].as_bool().unwrap();
    let r = ok(port, &["schedule", DEV, "evening", "-n", "3"]).await;
    let now = if active {
        "now: inside a window"
    } else {
        "now: outside every window"
    };
    assert_eq!(r.stdout.lines().last(), Some(now), "{r}");
    if !active {
        // The daemon holds it back until the first window shown.
        let opens = windows[0]["start_unix"].as_i64().unwrap();
        let utc = jiff::Timestamp::from_second(opens).unwrap().to_string();
        rig.mqtt
            .wait_for(
                "evening to wait for its window",
                Duration::from_secs(10),
                |m| {
                    m.push_state(DEV, "evening").is_some_and(|p| {
                        p["state"] == "waiting"
                            && p["reason"]
                                .as_str()
                                .is_some_and(|r| r.contains("schedule") && r.contains(&utc))
                    })
                },
            )
            .await;
    }

    // A push that is not there.
    let r = run(port, &["schedule", DEV, "nope"]).await;
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.starts_with("error: not_found: "), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_update_and_history() {
    let _g = serial().await;
    let mut rig = Rig::start(DEV, "").await;
    let port = rig.broker.port;
    let (first, second) = (free_port(), free_port());
    let target = |p: u16| format!("srt://:{p}?mode=listener");

    ok(
        port,
        &[
            "push",
            "add",
            DEV,
            "--id",
            "b",
            "--stream",
            "main",
            "--target",
            &target(first),
        ],
    )
    .await;
    rig.wait_listening("b").await;

    let r = ok(
        port,
        &[
            "push",
            "update",
            DEV,
            "--id",
            "b",
            "--stream",
            "main",
            "--target",
            &target(second),
        ],
    )
    .await;
    assert!(r.stdout.starts_with("b: updated"), "{r}");
    assert!(
        r.stdout.contains(&format!(":{second}?mode=listener")),
        "{r}"
    );
    // The daemon listens on the new port now.
    rig.mqtt
        .wait_for("b on its new target", Duration::from_secs(30), |m| {
            m.push_state(DEV, "b").is_some_and(|p| {
                p["target"] == format!("srt://0.0.0.0:{second}?mode=listener")
                    && p["state"] == "waiting"
                    && p["reason"] == "for a caller"
            })
        })
        .await;
    let r = ok(port, &["state", DEV]).await;
    let b = row(&r, "b");
    assert!(
        b.contains(&format!("srt://0.0.0.0:{second}?mode=listener").as_str()),
        "{r}"
    );
    // The same definition again changes nothing.
    let r = ok(
        port,
        &[
            "push",
            "update",
            DEV,
            "--json-args",
            &format!(
                r#"{{"id":"b","stream":"main","target":"{}"}}"#,
                target(second)
            ),
        ],
    )
    .await;
    assert!(r.stdout.starts_with("b: unchanged"), "{r}");
    // An update of a push that is not there is refused.
    let r = run(
        port,
        &[
            "push",
            "update",
            DEV,
            "--id",
            "nope",
            "--stream",
            "main",
            "--target",
            &target(first),
        ],
    )
    .await;
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.starts_with("error: not_found: "), "{r}");

    ok(port, &["push", "stop", DEV, "--id", "b"]).await;
    rig.wait_history("b", "stop", 2).await;

    // TIME (date and time)  PUSH  WHAT  DETAIL
    let r = ok(port, &["push", "history", DEV, "--id", "b"]).await;
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["TIME", "PUSH", "WHAT", "DETAIL"],
        "{r}"
    );
    let rows: Vec<Vec<&str>> = lines[1..]
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(rows.iter().all(|w| w.len() >= 4 && w[2] == "b"), "{r}");
    let whats: Vec<&str> = rows.iter().map(|w| w[3]).collect();
    // What the daemon recorded, in order.
    let daemon = rig.history("b").await;
    assert_eq!(
        whats,
        daemon.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
        "{r}"
    );
    let at = |what: &str, from: usize| {
        whats[from..]
            .iter()
            .position(|w| *w == what)
            .map(|i| i + from)
            .unwrap_or_else(|| panic!("no {what} after entry {from}: {r}"))
    };
    let added = at("added", 0);
    let started = at("start", added);
    let updated = at("updated", started);
    let restarted = at("start", updated);
    at("stop", restarted);
    let shown = |p: u16| format!("srt://0.0.0.0:{p}?mode=listener");
    assert_eq!(rows[started][4], shown(first), "{r}");
    assert_eq!(rows[updated][4], shown(second), "{r}");
    assert_eq!(rows[restarted][4], shown(second), "{r}");

    let r = ok(
        port,
        &[
            "--json", "push", "history", DEV, "--id", "b", "--limit", "2",
        ],
    )
    .await;
    let reply = json_reply(&r);
    let entries = reply["result"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{r}");
    assert!(entries.iter().all(|e| e["push"] == "b"), "{r}");
    assert_eq!(entries[1]["what"], "stop", "{r}");
    assert!(
        entries[0]["seq"].as_u64() < entries[1]["seq"].as_u64(),
        "{r}"
    );

    let r = run(port, &["push", "history", DEV, "--id", "nope"]).await;
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.starts_with("error: not_found: "), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variables_set_listed_and_removed() {
    let _g = serial().await;
    let rig = Rig::start(DEV, "").await;
    let port = rig.broker.port;
    rig.wait_stream_live("main").await;

    let r = ok(port, &["var", "set", DEV, "mode", "on-air"]).await;
    assert_eq!(r.stdout.trim(), "mode: set to on-air", "{r}");
    let r = ok(port, &["var", "set", DEV, "mode", "on-air"]).await;
    assert_eq!(r.stdout.trim(), "mode: unchanged", "{r}");
    // The daemon saved it.
    let saved = rig.saved();
    let vars = saved["variables"].as_array().unwrap();
    assert!(
        vars.iter()
            .any(|v| v["name"] == "mode" && v["value"] == "on-air"),
        "{saved}"
    );

    let r = ok(port, &["vars", DEV]).await;
    assert_eq!(row(&r, "VARIABLE")[..2], ["VARIABLE", "VALUE"], "{r}");
    assert_eq!(row(&r, "mode"), ["mode", "on-air", "static", "mqtt"], "{r}");
    assert_eq!(row(&r, "main"), ["main", "running", "yes"], "{r}");
    assert_eq!(row(&r, "device"), ["device", DEV], "{r}");
    assert_eq!(row(&r, "BUILT-IN"), ["BUILT-IN", "VALUE"], "{r}");
    assert!(row(&r, "board").len() == 2, "{r}");

    let r = ok(port, &["--json", "vars", DEV]).await;
    let reply = json_reply(&r);
    let result = &reply["result"];
    assert_eq!(result["variables"]["mode"]["value"], "on-air", "{r}");
    assert_eq!(result["variables"]["mode"]["origin"], "mqtt", "{r}");
    assert_eq!(result["builtin"]["device"], DEV, "{r}");
    assert_eq!(result["streams"]["main"]["live"], true, "{r}");

    let r = ok(port, &["var", "remove", DEV, "mode"]).await;
    assert_eq!(r.stdout.trim(), "mode: removed", "{r}");
    let saved = rig.saved();
    assert_eq!(saved["variables"], serde_json::json!([]), "{saved}");
    let r = ok(port, &["vars", DEV]).await;
    assert!(r.stdout.starts_with("no variables\n"), "{r}");
    assert!(!r.stdout.contains("on-air"), "{r}");
    let r = run(port, &["var", "remove", DEV, "mode"]).await;
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.starts_with("error: not_found: "), "{r}");
    // A name the device refuses, and a usage error.
    let r = run(port, &["var", "set", DEV, "bad name", "x"]).await;
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.starts_with("error: invalid_argument: "), "{r}");
    let r = run(port, &["var", "set", DEV, "mode"]).await;
    assert_eq!(r.code, 2, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triggers_set_listed_and_exec_refused() {
    let _g = serial().await;
    let rig = Rig::start(DEV, "").await;
    let port = rig.broker.port;
    let url = "http://127.0.0.1:9/x";

    let r = ok(
        port,
        &[
            "trigger",
            "set",
            DEV,
            "--json-args",
            &format!(r#"{{"on":"push_end","handlers":[{{"url":"{url}"}}]}}"#),
        ],
    )
    .await;
    assert!(r.stdout.contains(url), "{r}");
    let saved = rig.saved();
    assert_eq!(saved["triggers"][0]["on"], "push_end", "{saved}");
    assert_eq!(saved["triggers"][0]["url"], url, "{saved}");

    let r = ok(port, &["triggers", DEV]).await;
    let push_end = r
        .stdout
        .lines()
        .find(|l| l.starts_with("push_end "))
        .unwrap_or_else(|| panic!("{r}"));
    assert!(push_end.contains(url) && push_end.contains("mqtt"), "{r}");
    // Every trigger is listed, those without handlers too.
    assert!(
        r.stdout.lines().any(|l| l.starts_with("input_lost ")),
        "{r}"
    );
    let r = ok(port, &["--json", "triggers", DEV]).await;
    let reply = json_reply(&r);
    let list = reply["result"].as_array().unwrap();
    let t = list
        .iter()
        .find(|t| t["trigger"] == "push_end")
        .unwrap_or_else(|| panic!("{r}"));
    assert_eq!(t["handlers"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(t["handlers"][0]["url"], url, "{r}");
    assert_eq!(t["handlers"][0]["origin"], "mqtt", "{r}");

    // An exec handler: this device's config does not allow it.
    let exec = r#"{"on":"push_end","handlers":[{"exec":["/bin/true"]}]}"#;
    let r = run(port, &["trigger", "set", DEV, "--json-args", exec]).await;
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.starts_with("error: forbidden: "), "{r}");
    assert!(r.stdout.is_empty(), "{r}");
    let r = run(
        port,
        &["--json", "trigger", "set", DEV, "--json-args", exec],
    )
    .await;
    assert_eq!(r.code, 1, "{r}");
    let reply = json_reply(&r);
    assert_eq!(reply["error"]["code"], "forbidden", "{r}");
    // Refused, so nothing changed: the url handler stays, alone.
    let saved = rig.saved();
    assert_eq!(saved["triggers"].as_array().unwrap().len(), 1, "{saved}");
    assert_eq!(saved["triggers"][0]["url"], url, "{saved}");
    let r = ok(port, &["triggers", DEV]).await;
    assert!(!r.stdout.contains("/bin/true"), "{r}");

    // An empty list from a file removes the handlers.
    let file = rig.path("no-handlers.json");
    std::fs::write(&file, r#"{"on": "push_end", "handlers": []}"#).unwrap();
    ok(
        port,
        &["trigger", "set", DEV, "--file", file.to_str().unwrap()],
    )
    .await;
    assert_eq!(rig.saved()["triggers"], serde_json::json!([]));
    let r = ok(port, &["triggers", DEV]).await;
    assert!(!r.stdout.contains(url), "{r}");
    // A trigger set needs its arguments.
    let r = run(port, &["trigger", "set", DEV]).await;
    assert_eq!(r.code, 2, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_export_then_import_round_trips() {
    let _g = serial().await;
    let rig = Rig::start(DEV, "").await;
    let port = rig.broker.port;
    let plain = format!("srt://127.0.0.1:{}?mode=caller&latency=300", free_port());
    ok(
        port,
        &[
            "push",
            "add",
            DEV,
            "--id",
            "plain",
            "--stream",
            "main",
            "--target",
            &plain,
            "--disabled",
        ],
    )
    .await;
    ok(port, &["var", "set", DEV, "site", "north"]).await;

    let r = ok(port, &["config", "export", DEV]).await;
    // No secret anywhere, so nothing redacted, and no note about it.
    assert!(r.stderr.is_empty(), "{r}");
    let exported: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(exported["pushes"][0]["id"], "plain", "{r}");
    assert_eq!(exported["pushes"][0]["target"], plain, "{r}");
    assert_eq!(exported["variables"][0]["name"], "site", "{r}");
    let file = rig.path("export.json");
    std::fs::write(&file, &r.stdout).unwrap();
    let file = file.to_str().unwrap();

    // Imported back as it is: nothing to do.
    let r = ok(port, &["--json", "config", "import", DEV, file]).await;
    let reply = json_reply(&r);
    assert_eq!(reply["result"]["changed"], false, "{r}");

    // Changes made since the export are undone by importing it; the push
    // that was exported is kept as it is.
    ok(
        port,
        &[
            "push",
            "add",
            DEV,
            "--id",
            "extra",
            "--stream",
            "main",
            "--target",
            &plain,
            "--disabled",
        ],
    )
    .await;
    ok(port, &["var", "set", DEV, "site", "south"]).await;
    let r = ok(port, &["config", "import", DEV, file]).await;
    assert_eq!(row(&r, "changed"), ["changed", "true"], "{r}");
    assert_eq!(row(&r, "unchanged"), ["unchanged", "plain"], "{r}");
    assert_eq!(row(&r, "removed"), ["removed", "extra"], "{r}");
    assert_eq!(row(&r, "added"), ["added", "-"], "{r}");
    let topic = rig.topic("state");
    rig.mqtt
        .wait_for("extra to be removed", Duration::from_secs(10), |m| {
            m.last(&topic).is_some_and(|s| {
                let ids: Vec<&Value> = s["outputs"]
                    .as_array()
                    .map(|o| o.iter().map(|p| &p["id"]).collect())
                    .unwrap_or_default();
                ids == ["plain"]
            })
        })
        .await;
    assert_eq!(rig.push("plain").unwrap()["target"], plain);
    let saved = rig.saved();
    assert_eq!(saved["variables"][0]["value"], "north", "{saved}");
    let r = ok(port, &["config", "export", DEV]).await;
    let again: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(again, exported, "{r}");

    // A whole config.export result (saved from `cmd`) imports as well.
    let r = ok(port, &["cmd", DEV, "config.export"]).await;
    let result: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(result["secrets"], false, "{r}");
    assert_eq!(result["config"], exported, "{r}");
    let whole = rig.path("whole.json");
    std::fs::write(&whole, &r.stdout).unwrap();
    let r = ok(
        port,
        &["--json", "config", "import", DEV, whole.to_str().unwrap()],
    )
    .await;
    assert_eq!(json_reply(&r)["result"]["changed"], false, "{r}");

    // A push with a secret is exported redacted (the CLI says so), and
    // such an export is refused on import, naming the target.
    let secret = "export-secret-passphrase";
    ok(
        port,
        &[
            "push",
            "add",
            DEV,
            "--id",
            "secret",
            "--stream",
            "main",
            "--disabled",
            "--target",
            &format!("srt://127.0.0.1:9?passphrase={secret}"),
        ],
    )
    .await;
    let r = ok(port, &["config", "export", DEV]).await;
    assert!(!r.to_string().contains(secret), "{r}");
    assert!(r.stdout.contains("passphrase=***"), "{r}");
    assert!(r.stderr.contains("redacted"), "{r}");
    std::fs::write(rig.path("export.json"), &r.stdout).unwrap();
    let r = run(port, &["config", "import", DEV, file]).await;
    assert_eq!(r.code, 1, "{r}");
    assert!(
        r.stderr.starts_with("error: invalid_argument: ")
            && r.stderr.contains("config.pushes[1].target"),
        "{r}"
    );
    assert!(rig.push("secret").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commands_reach_every_real_device() {
    const VAN: &str = "cli-van-2";
    let _g = serial().await;
    let rig = Rig::start_with(DEV, |c| in_groups(c, r#""vans""#)).await;
    let port = rig.broker.port;
    let dir = tempfile::tempdir().unwrap();
    let van_config = in_groups(
        config(VAN, port, &dir.path().join("data"), ""),
        r#""vans", "north""#,
    );
    let _van = Daemon::start_in(dir.path(), &van_config);
    let van = Mqtt::device(port, VAN).await;

    // Both answer, each for itself, sorted by device.
    let group = ["--group", "vans", "--timeout", "2"];
    let list = [&["push", "list"], &group[..]].concat();
    let r = ok(port, &list).await;
    assert_eq!(
        r.stdout,
        format!("{DEV}: no pushes\n{VAN}: no pushes\n"),
        "{r}"
    );

    let target = format!("srt://127.0.0.1:{}?mode=caller", free_port());
    let add = [
        &[
            "push",
            "add",
            "--id",
            "fleet",
            "--stream",
            "main",
            "--target",
            &target,
            "--disabled",
        ],
        &group[..],
    ]
    .concat();
    let r = ok(port, &add).await;
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{r}");
    assert!(lines[0].starts_with(&format!("{DEV}: fleet: added")), "{r}");
    assert!(lines[1].starts_with(&format!("{VAN}: fleet: added")), "{r}");
    // Each daemon has it.
    rig.wait_push("fleet", "stopped").await;
    van.wait_push_state(VAN, "fleet", "stopped", Duration::from_secs(10))
        .await;
    assert_eq!(rig.push("fleet").unwrap()["target"], target);
    assert_eq!(van.push_state(VAN, "fleet").unwrap()["target"], target);
    // The same add again is harmless.
    let r = ok(port, &add).await;
    assert!(
        r.stdout.lines().all(|l| l.contains("fleet: already there")),
        "{r}"
    );

    // Now a table per device, under its name.
    let r = ok(port, &list).await;
    for device in [DEV, VAN] {
        let at = r
            .stdout
            .find(&format!("{device}:\n  PUSH"))
            .unwrap_or_else(|| panic!("no table of {device}: {r}"));
        let fleet = r.stdout[at..]
            .lines()
            .find(|l| l.starts_with("  fleet "))
            .unwrap_or_else(|| panic!("{r}"));
        assert!(fleet.contains("stopped") && fleet.contains("mqtt"), "{r}");
    }
    let r = ok(port, &[&["--json"], &list[..]].concat()).await;
    let replies = json_lines(&r);
    let devices: Vec<&str> = replies
        .iter()
        .map(|d| d["device"].as_str().unwrap())
        .collect();
    assert_eq!(devices, [DEV, VAN], "{r}");
    assert!(
        replies.iter().all(|d| d["result"][0]["id"] == "fleet"),
        "{r}"
    );

    // Only VAN is in group north.
    let r = ok(
        port,
        &["push", "list", "--group", "north", "--timeout", "2"],
    )
    .await;
    assert!(r.stdout.starts_with(&format!("{VAN}:\n")), "{r}");
    assert!(!r.stdout.contains(DEV), "{r}");

    // Refusals are exit 1, counted.
    let r = run(
        port,
        &[&["push", "stop", "--id", "nope"], &group[..]].concat(),
    )
    .await;
    assert_eq!(r.code, 1, "{r}");
    assert_eq!(
        r.stderr.trim(),
        "2 of 2 devices of group vans refused push.stop",
        "{r}"
    );
}

/// `streams`, `stream start` and `stream stop`: a wildcard stream of a
/// template input started from the CLI runs on the device and is listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_streams_from_the_cli() {
    let _g = serial().await;
    let rig = Rig::start(DEV, CAM_TEMPLATE).await;
    let port = rig.broker.port;
    let r = ok(port, &["stream", "start", DEV, "cam+ball"]).await;
    assert_eq!(r.stdout.trim(), "cam+ball: started", "{r}");
    let r = ok(port, &["stream", "start", DEV, "cam+ball"]).await;
    assert_eq!(r.stdout.trim(), "cam+ball: unchanged", "{r}");
    rig.wait_stream_live("cam+ball").await;
    let r = ok(port, &["streams", DEV]).await;
    assert_eq!(
        row(&r, "cam+ball"),
        ["cam+ball", "wildcard", "of", "cam", "yes", "yes"],
        "{r}"
    );
    assert_eq!(row(&r, "cam"), ["cam", "template", "no", "no"], "{r}");
    let r = run(port, &["stream", "start", DEV, "cam"]).await;
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains("invalid_argument"), "{r}");
    let r = ok(port, &["stream", "stop", DEV, "cam+ball"]).await;
    assert_eq!(r.stdout.trim(), "cam+ball: stopped", "{r}");
    assert_eq!(rig.saved()["streams"], serde_json::json!([]));
}
