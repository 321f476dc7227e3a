//! The push model end to end, against a real broker and real SRT receivers:
//! kinds (one-shot, auto, scheduled), schedules at their window edges,
//! variables that flip rules, blocking triggers that rewrite or refuse,
//! changes that restart one push only, the start rate limit, history, and
//! fleet group commands.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;
use serde_json::Value;
use support::*;

const DEV: &str = "push-test";

/// An executable shell script in the test's directory (the daemon runs it
/// without a shell of its own; the script brings its interpreter).
fn script(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p.display().to_string()
}

fn history(v: &Value) -> Vec<(String, String, String)> {
    v["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["push"].as_str().unwrap().to_string(),
                e["what"].as_str().unwrap().to_string(),
                e["detail"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn utc(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// An SRT listener built on GStreamer's `srtsrc`, which tells us the stream
/// id each caller asks for (its `caller-connecting` signal), and records
/// what it receives.
struct StreamIdReceiver {
    pipeline: gst::Element,
    ids: Arc<Mutex<Vec<String>>>,
}

impl StreamIdReceiver {
    fn start(port: u16, out: &Path) -> Self {
        gst::init().unwrap();
        let pipeline = gst::parse::launch(&format!(
            "srtsrc name=src authentication=true uri=srt://:{port}?mode=listener wait-for-connection=true ! filesink location={}",
            out.display()
        ))
        .unwrap();
        let bin = pipeline.clone().downcast::<gst::Bin>().unwrap();
        let src = bin.by_name("src").unwrap();
        let ids = Arc::new(Mutex::new(Vec::new()));
        let seen = ids.clone();
        src.connect("caller-connecting", false, move |args| {
            let id = args[2]
                .get::<Option<String>>()
                .ok()
                .flatten()
                .unwrap_or_default();
            seen.lock().unwrap().push(id);
            Some(true.to_value())
        });
        pipeline.set_state(gst::State::Playing).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        Self { pipeline, ids }
    }

    fn ids(&self) -> Vec<String> {
        self.ids.lock().unwrap().clone()
    }
}

impl Drop for StreamIdReceiver {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// A scheduled push with a window of a few seconds starts at the window's
/// opening and stops at its close, no earlier; what the receiver got lasts
/// as long as the window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_push_follows_its_window_edges() {
    let _g = serial().await;
    let mut rig = Rig::start(DEV, "").await;
    rig.wait_stream_live("main").await;
    let port = free_port();
    let out = rig.path("window.ts");
    let mut rx = srt_receiver(port, None, &out);
    // Whole seconds: the window edges are exact instants.
    let now = jiff::Timestamp::now();
    let open = jiff::Timestamp::from_second(now.as_second() + 6).unwrap();
    let close = jiff::Timestamp::from_second(now.as_second() + 12).unwrap();
    let def = format!(
        r#"{{"id":"window","stream":"main","kind":"scheduled","target":"srt://127.0.0.1:{port}","schedule":{{"windows":[{{"start":"{}","stop":"{}"}}]}}}}"#,
        utc(open),
        utc(close)
    );
    let r = rig.ok("push.add", &def).await;
    let p = &r["result"]["push"];
    assert_eq!(p["state"], "waiting", "{r}");
    assert!(
        p["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("next window opens at {}", utc(open))),
        "{r}"
    );

    let preview = rig
        .ok("schedule.preview", r#"{"id":"window","count":3}"#)
        .await;
    let w = &preview["result"]["windows"];
    assert_eq!(w.as_array().unwrap().len(), 1, "{preview}");
    assert_eq!(w[0]["start_unix"], open.as_second(), "{preview}");
    assert_eq!(w[0]["end_unix"], close.as_second(), "{preview}");

    rig.wait_push("window", "connecting").await;
    let started = jiff::Timestamp::now();
    assert!(
        started >= open,
        "started at {started}, window opens at {open}"
    );
    assert!(
        started.as_second() - open.as_second() <= 2,
        "started at {started}, window opened at {open}"
    );
    rig.wait_push("window", "live").await;
    rig.mqtt
        .wait_for("the window to close", Duration::from_secs(20), |m| {
            m.push_state(DEV, "window")
                .is_some_and(|p| p["state"] == "waiting")
        })
        .await;
    let stopped = jiff::Timestamp::now();
    assert!(
        stopped >= close,
        "stopped at {stopped}, window closes at {close}"
    );
    assert!(
        stopped.as_second() - close.as_second() <= 2,
        "stopped at {stopped}"
    );
    let p = rig.push("window").unwrap();
    assert!(
        p["reason"].as_str().unwrap().contains("no window ahead"),
        "{p}"
    );

    tokio::time::sleep(Duration::from_millis(800)).await;
    rx.signal("INT");
    rx.wait_exit(Duration::from_secs(5));
    let probe = ffprobe(&out);
    assert_eq!(probe.video_codec.as_deref(), Some("h264"), "{probe:?}");
    assert_eq!((probe.width, probe.height), (Some(640), Some(360)));
    assert!(
        (4.0..=7.0).contains(&probe.duration),
        "a 6 s window gave {} s",
        probe.duration
    );
    let h = history(&rig.ok("push.history", r#"{"id":"window"}"#).await);
    let whats: Vec<&str> = h.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(whats, ["added", "start", "live", "stop"], "{h:?}");
    assert!(h[3].2.contains("outside its schedule"), "{h:?}");
    let events = rig.mqtt.events(&rig.topic("events"));
    let ends: Vec<&Value> = events.iter().filter(|e| e["event"] == "push_end").collect();
    assert_eq!(ends.len(), 1, "{events:?}");
    assert!(
        ends[0]["stats"]["bytes_sent"].as_u64().unwrap() > 100_000,
        "{:?}",
        ends[0]
    );
    assert!(!ends[0]["log"].as_array().unwrap().is_empty());
}

/// A command variable drives a rule: the push runs while the command says
/// "yes", stops when it says "no", and a failing command keeps the last
/// value (and says so).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_variable_flips_a_rule_and_the_push_follows() {
    let _g = serial().await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("onair");
    std::fs::write(&flag, "no\n").unwrap();
    let extra = format!(
        r#"
[[variables]]
name = "onair"
command = ["/bin/cat", "{flag}"]
interval_s = 1
timeout_ms = 2000

[[outputs]]
id = "gated"
stream = "main"
kind = "scheduled"
target = "srt://127.0.0.1:{port}"
rules = [{{ var = "onair", op = "eq", value = "yes" }}]
"#,
        flag = flag.display()
    );
    let mut rig = Rig::start(DEV, &extra).await;
    let _rx = srt_receiver(port, None, &rig.path("gated.ts"));
    rig.mqtt
        .wait_for("the rule to hold the push", Duration::from_secs(20), |m| {
            m.push_state(DEV, "gated").is_some_and(|p| {
                p["state"] == "waiting" && p["reason"] == "rule $onair eq \"yes\" does not hold"
            })
        })
        .await;
    let vars = rig.ok("var.list", "").await;
    assert_eq!(
        vars["result"]["variables"]["onair"]["value"], "no",
        "{vars}"
    );
    assert_eq!(vars["result"]["variables"]["onair"]["source"], "command");
    assert_eq!(vars["result"]["builtin"]["device"], DEV);

    std::fs::write(&flag, "yes\n").unwrap();
    let t = rig.wait_push("gated", "live").await;
    println!(
        "live {:.1} s after the variable turned yes",
        t.as_secs_f64()
    );

    // The source fails: the value stays "yes", the push keeps running, and
    // an event says what happened.
    std::fs::remove_file(&flag).unwrap();
    rig.mqtt
        .wait_for("variable_failed", Duration::from_secs(10), |m| {
            m.events(&format!("fieldcast/{DEV}/events"))
                .iter()
                .any(|e| {
                    e["event"] == "variable_failed"
                        && e["name"] == "onair"
                        && e["kept_last"] == true
                })
        })
        .await;
    let vars = rig.ok("var.list", "").await;
    let onair = &vars["result"]["variables"]["onair"];
    assert_eq!(onair["value"], "yes", "{vars}");
    assert!(
        onair["error"].as_str().unwrap().contains("/bin/cat"),
        "{vars}"
    );
    assert_eq!(rig.push("gated").unwrap()["state"], "live");

    std::fs::write(&flag, "no\n").unwrap();
    rig.mqtt
        .wait_for("the push to stop", Duration::from_secs(10), |m| {
            m.push_state(DEV, "gated")
                .is_some_and(|p| p["state"] == "waiting")
        })
        .await;

    // A static variable set over MQTT can drive a rule too, and a command
    // variable cannot be set over MQTT on a device that does not allow it.
    let r = rig
        .cmd(
            "var.set",
            r#"{"name":"evil","command":["/bin/rm","-rf","/"]}"#,
        )
        .await;
    assert_eq!(r["error"]["code"], "forbidden", "{r}");
    let r = rig
        .cmd("var.set", r#"{"name":"onair","value":"yes"}"#)
        .await;
    assert_eq!(r["error"]["code"], "read_only", "{r}");
    rig.ok("var.set", r#"{"name":"mode","value":"on-air"}"#)
        .await;
    let vars = rig.ok("var.list", "").await;
    assert_eq!(vars["result"]["variables"]["mode"]["value"], "on-air");
    assert_eq!(vars["result"]["variables"]["mode"]["origin"], "mqtt");
    let saved = rig.saved();
    assert_eq!(saved["variables"][0]["name"], "mode", "{saved}");
}

/// A blocking push_rewrite handler turns the stream name into a secret
/// stream id; the receiver sees the rewritten id, while state and events
/// show it redacted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_trigger_rewrites_the_streamid() {
    let _g = serial().await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.jsonl");
    let token = script(
        dir.path(),
        "token",
        &format!(
            r#"event=$(cat)
printf '%s\n' "$event" >> {log}
stream=$(printf '%s' "$event" | sed -n 's/.*"stream":"\([^"]*\)".*/\1/p')
echo "srt://127.0.0.1:{port}?streamid=#!::r=live/$stream-key-5f3a,m=publish""#,
            log = log.display()
        ),
    );
    let ended = script(
        dir.path(),
        "ended",
        &format!("cat >> {}.end", log.display()),
    );
    let extra = format!(
        r#"
[[triggers]]
on = "push_rewrite"
exec = ["{token}"]
blocking = true
timeout_ms = 3000

[[triggers]]
on = "push_end"
exec = ["{ended}"]
"#
    );
    let mut rig = Rig::start(DEV, &extra).await;
    let out = rig.path("rewritten.ts");
    let rx = StreamIdReceiver::start(port, &out);
    rig.ok(
        "push.add",
        &format!(r#"{{"id":"tokened","stream":"main","target":"srt://127.0.0.1:{port}?streamid=$stream"}}"#),
    )
    .await;
    rig.wait_push("tokened", "live").await;
    assert_eq!(rx.ids(), vec!["#!::r=live/main-key-5f3a,m=publish"]);
    let p = rig.push("tokened").unwrap();
    assert_eq!(p["rewritten"], true, "{p}");
    assert!(
        p["target"].as_str().unwrap().contains("streamid=***"),
        "{p}"
    );
    assert!(
        !rig.mqtt.published().contains("5f3a"),
        "the rewritten key leaked over MQTT"
    );
    let events = rig.mqtt.events(&rig.topic("events"));
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "push_rewrite" && e["id"] == "tokened")
    );
    // The handler got the event with the push, the stream and the target.
    let got = std::fs::read_to_string(&log).unwrap();
    let first: Value = serde_json::from_str(got.lines().next().unwrap()).unwrap();
    assert_eq!(first["trigger"], "push_rewrite");
    assert_eq!(first["id"], "tokened");
    assert_eq!(
        first["target"],
        format!("srt://127.0.0.1:{port}?streamid=main")
    );

    rig.ok("push.stop", r#"{"id":"tokened"}"#).await;
    wait_until("the push_end handler", Duration::from_secs(10), || {
        std::fs::read_to_string(format!("{}.end", log.display()))
            .is_ok_and(|t| t.contains("push_end"))
    });
    let end: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{}.end", log.display())).unwrap())
            .unwrap();
    assert_eq!(end["reason"], "stopped by the operator", "{end}");
    assert!(end["stats"]["frames_sent"].as_u64().unwrap() > 0, "{end}");
    assert!(
        end["log"].as_array().unwrap().iter().any(|l| l == "live"),
        "{end}"
    );
    drop(rx);
    let probe = ffprobe(&out);
    assert_eq!(probe.video_codec.as_deref(), Some("h264"), "{probe:?}");
}

/// A push_start handler that answers "false" keeps the push from ever
/// connecting; it is held back with a reason and retried with backoff.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_push_never_connects() {
    let _g = serial().await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let count = dir.path().join("asked");
    let refuse = script(
        dir.path(),
        "refuse",
        &format!("cat > /dev/null; echo x >> {}; echo false", count.display()),
    );
    let extra = format!(
        r#"
[[triggers]]
on = "push_start"
exec = ["{refuse}"]
blocking = true
"#
    );
    let mut rig = Rig::start(DEV, &extra).await;
    let out = rig.path("refused.ts");
    let rx = StreamIdReceiver::start(port, &out);
    rig.ok(
        "push.add",
        &format!(r#"{{"id":"nope","stream":"main","target":"srt://127.0.0.1:{port}"}}"#),
    )
    .await;
    rig.wait_push("nope", "backoff").await;
    let p = rig.push("nope").unwrap();
    assert!(
        p["reason"]
            .as_str()
            .unwrap()
            .contains("refused by the push_start handler"),
        "{p}"
    );
    assert!(p["retry_at"].as_f64().is_some(), "{p}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        rx.ids().is_empty(),
        "the receiver was called: {:?}",
        rx.ids()
    );
    assert_eq!(std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0), 0);
    let asked = std::fs::read_to_string(&count).unwrap().lines().count();
    // Retried with a growing backoff: a few times in 4 s, not 16.
    assert!((2..=6).contains(&asked), "asked {asked} times");
    let h = history(&rig.ok("push.history", r#"{"id":"nope","limit":3}"#).await);
    assert!(h.iter().all(|e| e.1 == "refused"), "{h:?}");
    let events = rig.mqtt.events(&rig.topic("events"));
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "push_refused" && e["id"] == "nope")
    );
}

/// Changing one push restarts that push only: the other push's connection
/// and the encoder are untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_one_push_restarts_only_that_push() {
    let _g = serial().await;
    let mut rig = Rig::start(DEV, "").await;
    let (pa, pb) = (free_port(), free_port());
    let _ra = srt_receiver(pa, None, &rig.path("a.ts"));
    let out_b = rig.path("b.ts");
    let mut rb = srt_receiver(pb, None, &out_b);
    let a = |latency: u32| {
        format!(r#"{{"id":"a","stream":"main","target":"srt://127.0.0.1:{pa}?latency={latency}"}}"#)
    };
    let b = format!(r#"{{"id":"b","stream":"main","target":"srt://127.0.0.1:{pb}"}}"#);
    rig.ok("push.add", &a(120)).await;
    rig.ok("push.add", &b).await;
    rig.wait_push("a", "live").await;
    rig.wait_push("b", "live").await;
    let state_before = rig.ok("state.get", "").await["result"].clone();
    let b_before = rig.push("b").unwrap();
    let list = rig.ok("push.list", "").await;
    let sent_before = list["result"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "b")
        .unwrap()["srt"]["packets_sent"]
        .as_u64()
        .unwrap();

    let r = rig.ok("push.update", &a(300)).await;
    assert_eq!(r["result"]["changed"], true, "{r}");
    rig.wait_history("a", "live", 2).await;
    // Updating with the same definition is a no-op.
    let r = rig.ok("push.update", &a(300)).await;
    assert_eq!(r["result"]["changed"], false, "{r}");
    // And through config.import: `a` changes, `b` is unchanged.
    let layer = format!(r#"{{"config":{{"pushes":[{},{}]}}}}"#, a(200), b);
    let r = rig.ok("config.import", &layer).await;
    assert_eq!(r["result"]["updated"], serde_json::json!(["a"]), "{r}");
    assert_eq!(r["result"]["unchanged"], serde_json::json!(["b"]), "{r}");
    rig.wait_history("a", "live", 3).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let b_after = rig.push("b").unwrap();
    assert_eq!(b_after["reconnects"], 0, "{b_after}");
    assert_eq!(
        b_after["since"], b_before["since"],
        "b changed state: {b_after}"
    );
    let state_after = rig.ok("state.get", "").await["result"].clone();
    assert_eq!(
        state_after["inputs"][0]["since"], state_before["inputs"][0]["since"],
        "the encoder restarted"
    );
    let list = rig.ok("push.list", "").await;
    let b_now = list["result"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "b")
        .unwrap()
        .clone();
    assert!(
        b_now["srt"]["packets_sent"].as_u64().unwrap() > sent_before,
        "{b_now}"
    );
    let h = history(&rig.ok("push.history", r#"{"id":"b"}"#).await);
    assert_eq!(
        h.iter().map(|e| e.1.as_str()).collect::<Vec<_>>(),
        ["added", "start", "live"],
        "b: {h:?}"
    );
    let h = history(&rig.ok("push.history", r#"{"id":"a"}"#).await);
    assert!(h.iter().filter(|e| e.1 == "start").count() == 3, "a: {h:?}");
    rig.ok("push.stop", r#"{"id":"b"}"#).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    rb.signal("INT");
    rb.wait_exit(Duration::from_secs(5));
    // One connection, never cut: the receiver's recording is clean.
    let errors = decode_errors(&out_b);
    assert!(errors.trim().is_empty(), "b: {errors}");
}

/// A one-shot push runs once: when its receiver goes away it fails and is
/// not retried; push.start runs it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_shot_push_ends_and_is_not_retried() {
    let _g = serial().await;
    let mut rig = Rig::start(DEV, "").await;
    let port = free_port();
    let mut rx = srt_receiver(port, None, &rig.path("once.ts"));
    rig.ok(
        "push.add",
        &format!(
            r#"{{"id":"once","stream":"main","kind":"push","target":"srt://127.0.0.1:{port}"}}"#
        ),
    )
    .await;
    rig.wait_push("once", "live").await;
    rx.signal("KILL");
    rx.wait_exit(Duration::from_secs(5));
    rig.wait_push("once", "failed").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let p = rig.push("once").unwrap();
    assert_eq!(p["state"], "failed", "{p}");
    assert_eq!(p["running"], false, "{p}");
    // It stays ended across a restart of the daemon.
    assert_eq!(rig.saved()["running"]["once"], false);
    let cfg = rig.config_text();
    rig.restart("TERM", &cfg);
    rig.wait_status("online").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let p = rig.push("once").unwrap();
    assert_eq!(p["state"], "stopped", "{p}");
    let _rx = srt_receiver(port, None, &rig.path("again.ts"));
    rig.ok("push.start", r#"{"id":"once"}"#).await;
    rig.wait_push("once", "live").await;
}

/// At most `max_starts_per_s` pushes start in any second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_are_rate_limited() {
    let _g = serial().await;
    let mut extra = String::from("[pushes]\nmax_starts_per_s = 2\n");
    for i in 0..6 {
        extra.push_str(&format!(
            "[[outputs]]\nid = \"l{i}\"\nstream = \"main\"\ntarget = \"srt://:{}?mode=listener\"\n",
            free_port()
        ));
    }
    let mut rig = Rig::start(DEV, &extra).await;
    for i in 0..6 {
        rig.wait_history(&format!("l{i}"), "start", 1).await;
    }
    let h = rig.ok("push.history", r#"{"limit":100}"#).await;
    let mut starts: Vec<f64> = h["result"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["what"] == "start")
        .map(|e| e["ts"].as_f64().unwrap())
        .collect();
    starts.sort_by(f64::total_cmp);
    assert_eq!(starts.len(), 6, "{h}");
    for w in starts.windows(3) {
        assert!(
            w[2] - w[0] >= 0.9,
            "three starts within a second: {starts:?}"
        );
    }
    assert!(starts[5] - starts[0] <= 4.0, "{starts:?}");
}

/// Group commands reach every device of the group, each replying for
/// itself; config export hides secrets unless allowed, and an import that
/// is wrong anywhere changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commands_and_config_export_import() {
    let _g = serial().await;
    let mut rig = Rig::start(DEV, "").await;
    let cfg = rig
        .config_text()
        .replace("[device]\n", "[device]\ngroups = [\"vans\"]\n");
    rig.restart("TERM", &cfg);
    rig.wait_status("online").await;
    // A second device in the group, on the same broker.
    let other_dir = tempfile::tempdir().unwrap();
    let other_cfg = config("van-2", rig.broker.port, &other_dir.path().join("data"), "")
        .replace("[device]\n", "[device]\ngroups = [\"vans\", \"north\"]\n");
    let other = Daemon::start_in(other_dir.path(), &other_cfg);
    let _m = Mqtt::device(rig.broker.port, "van-2").await;

    let add = r#"{"id":"fleet","stream":"main","enabled":false,"target":"srt://ingest.example:9000?streamid=van&passphrase=fleet-secret-123"}"#;
    let replies = rig
        .mqtt
        .request_all(
            "fieldcast/groups/vans/cmd/push.add",
            add,
            Duration::from_secs(3),
        )
        .await;
    let mut devices: Vec<&str> = replies
        .iter()
        .map(|r| r["device"].as_str().unwrap())
        .collect();
    devices.sort();
    assert_eq!(devices, [DEV, "van-2"], "{replies:?}");
    assert!(replies.iter().all(|r| r["ok"] == true), "{replies:?}");
    let replies = rig
        .mqtt
        .request_all(
            "fieldcast/groups/north/cmd/push.list",
            "",
            Duration::from_secs(2),
        )
        .await;
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(replies[0]["device"], "van-2");

    rig.ok(
        "push.add",
        r#"{"id":"plain","stream":"main","enabled":false,"target":"srt://h:1"}"#,
    )
    .await;
    let export = rig.ok("config.export", "").await;
    // A target without a secret is exported as it was given.
    assert!(
        export.to_string().contains(r#""target":"srt://h:1""#),
        "{export}"
    );
    let pushes = &export["result"]["config"]["pushes"];
    assert_eq!(export["result"]["secrets"], false);
    assert!(!export.to_string().contains("fleet-secret-123"), "{export}");
    // The export without secrets cannot be imported as it is.
    let again = format!(r#"{{"config":{}}}"#, export["result"]["config"]);
    let r = rig.cmd("config.import", &again).await;
    assert_eq!(r["error"]["field"], "config.pushes[0].target", "{r}");
    assert_eq!(pushes.as_array().unwrap().len(), 2);

    // Wrong in its second push: nothing of it is applied.
    let bad = r#"{"config":{"pushes":[
        {"id":"new","stream":"main","enabled":false,"target":"srt://h:1"},
        {"id":"bad","stream":"nope","target":"srt://h:1"}]}}"#;
    let r = rig.cmd("config.import", bad).await;
    assert_eq!(r["error"]["field"], "config.pushes[1].stream", "{r}");
    let list = rig.ok("push.list", "").await;
    assert_eq!(list["result"].as_array().unwrap().len(), 2, "{list}");

    let good = r#"{"config":{"pushes":[
        {"id":"new","stream":"main","enabled":false,"target":"srt://h:1"}],
        "variables":[{"name":"site","value":"north"}]}}"#;
    let r = rig.ok("config.import", good).await;
    assert_eq!(r["result"]["added"], serde_json::json!(["new"]), "{r}");
    assert_eq!(
        r["result"]["removed"],
        serde_json::json!(["fleet", "plain"]),
        "{r}"
    );
    let saved = rig.saved();
    assert_eq!(saved["pushes"].as_array().unwrap().len(), 1, "{saved}");
    assert_eq!(saved["variables"][0]["value"], "north");
    let events = rig.mqtt.events(&rig.topic("events"));
    assert!(events.iter().any(|e| e["event"] == "config_changed"));
    other.stop();
}

/// The daemon learns of a new interface, address or route at once and its
/// caller pushes dial again (a WAN switch), without waiting for a stall.
/// Everything runs in a network namespace of its own, so the host's network
/// is not touched.
#[test]
fn a_network_change_reconnects_caller_pushes_at_once() {
    let handle = std::thread::spawn(|| {
        // SAFETY: unshare affects this thread only; nothing else runs on it.
        if unsafe { libc_unshare_net() } != 0 {
            println!("SKIPPED: cannot create a network namespace (not root?)");
            return;
        }
        let ok = std::process::Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip link set lo up");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(network_change_body());
    });
    handle.join().unwrap();
}

unsafe extern "C" {
    fn unshare(flags: i32) -> i32;
}

unsafe fn libc_unshare_net() -> i32 {
    const CLONE_NEWNET: i32 = 0x4000_0000;
    unsafe { unshare(CLONE_NEWNET) }
}

async fn network_change_body() {
    let _g = serial().await;
    let mut rig = Rig::start(DEV, "").await;
    let port = free_port();
    let _rx = srt_receiver(port, None, &rig.path("net.ts"));
    let listen = free_port();
    rig.ok(
        "push.add",
        &format!(r#"{{"id":"wan","stream":"main","target":"srt://127.0.0.1:{port}"}}"#),
    )
    .await;
    rig.ok(
        "push.add",
        &format!(r#"{{"id":"local","stream":"main","target":"srt://:{listen}?mode=listener"}}"#),
    )
    .await;
    rig.wait_push("wan", "live").await;
    rig.wait_history("local", "start", 1).await;
    let t0 = Instant::now();
    // A new link: dummy where the kernel has it, else ifb or a veth pair
    // (all behave the same here: an interface that comes up).
    let added = [
        vec!["link", "add", "wan1", "type", "dummy"],
        vec!["link", "add", "wan1", "type", "ifb"],
        vec![
            "link", "add", "wan1", "type", "veth", "peer", "name", "wan1p",
        ],
    ]
    .iter()
    .any(|args| {
        std::process::Command::new("ip")
            .args(args)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    assert!(
        added,
        "no virtual link type (dummy, ifb, veth) in this kernel"
    );
    for args in [
        vec!["link", "set", "wan1", "up"],
        vec!["addr", "add", "10.77.0.2/24", "dev", "wan1"],
    ] {
        let st = std::process::Command::new("ip")
            .args(&args)
            .status()
            .unwrap();
        assert!(st.success(), "ip {args:?}");
    }
    rig.mqtt
        .wait_for("network_changed", Duration::from_secs(10), |m| {
            m.events(&format!("fieldcast/{DEV}/events"))
                .iter()
                .any(|e| e["event"] == "network_changed")
        })
        .await;
    println!(
        "network change seen after {:.2} s",
        t0.elapsed().as_secs_f64()
    );
    let events = rig.mqtt.events(&rig.topic("events"));
    let change = events
        .iter()
        .find(|e| e["event"] == "network_changed")
        .unwrap();
    assert_eq!(
        change["reconnected"],
        serde_json::json!(["wan"]),
        "{change}"
    );
    assert!(
        change["change"].as_str().unwrap().contains("wan1"),
        "{change}"
    );
    rig.mqtt
        .wait_for("the push to reconnect", Duration::from_secs(20), |m| {
            m.push_state(DEV, "wan")
                .is_some_and(|p| p["reconnects"] == 1 && p["state"] == "live")
        })
        .await;
    let h = history(&rig.ok("push.history", r#"{"id":"wan"}"#).await);
    assert!(
        h.iter()
            .any(|e| e.1 == "reconnect" && e.2.contains("network changed")),
        "{h:?}"
    );
    assert_eq!(rig.push("local").unwrap()["reconnects"], 0);
}

/// Handlers that are URLs: a blocking push_rewrite answered by a web
/// service, a push_end webhook with the event, and a handler that does not
/// answer in time, whose default answer ("false") refuses the push.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_handlers_rewrite_notify_and_fail_closed() {
    let _g = serial().await;
    let port = free_port();
    let hook = HttpHook::start(move |_, path, _| match path {
        "/rewrite" => (
            200,
            format!("srt://127.0.0.1:{port}?streamid=from-the-web"),
            Duration::ZERO,
        ),
        "/slow" => (200, "true".into(), Duration::from_secs(5)),
        _ => (204, String::new(), Duration::ZERO),
    })
    .await;
    let extra = format!(
        r#"
[[triggers]]
on = "push_rewrite"
url = "{rewrite}"
blocking = true
streams = ["main"]

[[triggers]]
on = "push_start"
url = "{slow}"
blocking = true
timeout_ms = 500
default = "false"
streams = ["other"]

[[triggers]]
on = "push_end"
url = "{end}"
"#,
        rewrite = hook.url("/rewrite"),
        slow = hook.url("/slow"),
        end = hook.url("/end?token=hook-secret")
    );
    let mut rig = Rig::start_with(DEV, |cfg| {
        format!("{cfg}{extra}\n[[inputs]]\nname = \"other\"\n[inputs.encode]\nwidth = 320\nheight = 180\nframerate = 15\nbitrate_kbps = 300\ngop_frames = 15\nprofile = \"high\"\naudio_bitrate_kbps = 64\n[inputs.audio]\nsource = \"none\"\n")
    })
    .await;
    let out = rig.path("web.ts");
    let rx = StreamIdReceiver::start(port, &out);
    rig.ok(
        "push.add",
        &format!(r#"{{"id":"web","stream":"main","target":"srt://127.0.0.1:{port}"}}"#),
    )
    .await;
    rig.wait_push("web", "live").await;
    assert_eq!(rx.ids(), vec!["from-the-web"]);
    let reqs = hook.requests();
    let (method, _, body) = reqs.iter().find(|r| r.1 == "/rewrite").unwrap();
    assert_eq!(method, "POST");
    let event: Value = serde_json::from_str(body).unwrap();
    assert_eq!(event["trigger"], "push_rewrite");
    assert_eq!(event["stream"], "main");

    // A push of the other stream: its push_start handler times out, and the
    // default answer refuses it.
    rig.ok(
        "push.add",
        &format!(
            r#"{{"id":"slow","stream":"other","target":"srt://127.0.0.1:{}"}}"#,
            free_port()
        ),
    )
    .await;
    rig.wait_push("slow", "backoff").await;
    let p = rig.push("slow").unwrap();
    assert!(p["reason"].as_str().unwrap().contains("push_start"), "{p}");

    rig.ok("push.stop", r#"{"id":"web"}"#).await;
    let hook_ref = &hook;
    rig.mqtt
        .wait_for("the push_end webhook", Duration::from_secs(10), |_| {
            hook_ref.requests().iter().any(|r| r.1.starts_with("/end"))
        })
        .await;
    let reqs = hook.requests();
    let end = reqs.iter().find(|r| r.1.starts_with("/end")).unwrap();
    let event: Value = serde_json::from_str(&end.2).unwrap();
    assert_eq!(event["event"], "push_end");
    assert_eq!(event["id"], "web");
    assert_eq!(event["reason"], "stopped by the operator");
    // The handler's URL token is not shown by trigger.list.
    let list = rig.ok("trigger.list", "").await;
    assert!(!list.to_string().contains("hook-secret"), "{list}");
    drop(rx);
}

/// A URL variable drives a rule, and a scheduled push takes its windows
/// from an .ics calendar on a web server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_variable_and_an_ics_calendar_drive_pushes() {
    let _g = serial().await;
    let now = jiff::Timestamp::now().as_second();
    let ical = |t: i64| {
        jiff::Timestamp::from_second(t)
            .unwrap()
            .strftime("%Y%m%dT%H%M%SZ")
            .to_string()
    };
    let calendar = format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:ob-1\r\nDTSTAMP:{s}\r\nDTSTART:{s}\r\nDTEND:{e}\r\nSUMMARY:Outside broadcast\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
        s = ical(now + 6),
        e = ical(now + 11)
    );
    let answer = Arc::new(Mutex::new("off".to_string()));
    let a = answer.clone();
    // One web service: the slot variable and the calendar.
    let hook = HttpHook::start(move |_, path, _| {
        if path.starts_with("/calendar.ics") {
            (200, calendar.clone(), Duration::ZERO)
        } else {
            (200, format!("{}\n", a.lock().unwrap()), Duration::ZERO)
        }
    })
    .await;
    let (p1, p2) = (free_port(), free_port());
    let extra = format!(
        r#"
[[variables]]
name = "slot"
url = "{url}"
interval_s = 1

[[outputs]]
id = "by-url"
stream = "main"
kind = "scheduled"
target = "srt://127.0.0.1:{p1}"
rules = [{{ var = "slot", op = "eq", value = "on" }}]

[[outputs]]
id = "by-calendar"
stream = "main"
kind = "scheduled"
target = "srt://127.0.0.1:{p2}"
schedule = {{ ics = "{ics}", ics_refresh_s = 10 }}
"#,
        url = hook.url("/slot?key=var-secret"),
        ics = hook.url("/calendar.ics?feed=ob")
    );
    let mut rig = Rig::start(DEV, &extra).await;
    let _r1 = srt_receiver(p1, None, &rig.path("url.ts"));
    let _r2 = srt_receiver(p2, None, &rig.path("cal.ts"));
    rig.wait_stream_live("main").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(rig.push("by-url").unwrap()["state"], "waiting");
    *answer.lock().unwrap() = "on".into();
    rig.wait_push("by-url", "live").await;
    let vars = rig.ok("var.list", "").await;
    assert_eq!(vars["result"]["variables"]["slot"]["value"], "on", "{vars}");
    assert_eq!(vars["result"]["variables"]["slot"]["source"], "url");

    let preview = rig.ok("schedule.preview", r#"{"id":"by-calendar"}"#).await;
    assert_eq!(
        preview["result"]["windows"][0]["start_unix"],
        now + 6,
        "{preview}"
    );
    rig.wait_push("by-calendar", "live").await;
    assert!(jiff::Timestamp::now().as_second() >= now + 6);
    rig.mqtt
        .wait_for("the calendar event to end", Duration::from_secs(20), |m| {
            m.push_state(DEV, "by-calendar")
                .is_some_and(|p| p["state"] == "waiting")
        })
        .await;
    assert!(jiff::Timestamp::now().as_second() >= now + 11);
    *answer.lock().unwrap() = "off".into();
    rig.mqtt
        .wait_for(
            "the variable to stop the push",
            Duration::from_secs(10),
            |m| {
                m.push_state(DEV, "by-url")
                    .is_some_and(|p| p["state"] == "waiting")
            },
        )
        .await;
    let published = rig.mqtt.published();
    assert!(!published.contains("var-secret"), "{published}");
}

/// Wildcard streams: `cam+ball` and `cam+smpte` started over MQTT share
/// the settings of the template input `cam` (with `$wildcard` filled in),
/// each with its own state; a push for `cam+` runs once per stream, with
/// `$stream` in its target; a stopped stream takes its push instance with
/// it, and started streams come back after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_streams_share_their_base_configuration() {
    let _g = serial().await;
    let port = free_port();
    let extra = format!(
        r#"{CAM_TEMPLATE}
[[outputs]]
id = "each"
stream = "cam+"
target = "srt://127.0.0.1:{port}?streamid=$stream"
"#
    );
    let mut rig = Rig::start(DEV, &extra).await;
    let rx = StreamIdReceiver::start(port, &rig.path("wild.ts"));
    let r = rig.cmd("stream.start", r#"{"name":"cam"}"#).await;
    assert_eq!(r["error"]["field"], "name", "{r}");
    let r = rig.cmd("stream.start", r#"{"name":"nope+1"}"#).await;
    assert_eq!(r["error"]["code"], "not_found", "{r}");
    rig.ok("stream.start", r#"{"name":"cam+ball"}"#).await;
    rig.ok("stream.start", r#"{"name":"cam+smpte"}"#).await;
    let again = rig.ok("stream.start", r#"{"name":"cam+ball"}"#).await;
    assert_eq!(again["result"]["changed"], false);
    rig.wait_push("each@cam+ball", "live").await;
    rig.wait_push("each@cam+smpte", "live").await;
    let mut ids = rx.ids();
    ids.sort();
    assert_eq!(ids, ["cam+ball", "cam+smpte"]);
    let parent = rig.push("each").unwrap();
    assert_eq!(parent["state"], "waiting", "{parent}");
    assert!(
        parent["reason"].as_str().unwrap().contains("2 now"),
        "{parent}"
    );
    let state = rig.ok("state.get", "").await["result"].clone();
    let inputs: Vec<&str> = state["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        inputs,
        ["cam+ball", "cam+smpte", "main"],
        "the template itself does not run"
    );
    let list = rig.ok("stream.list", "").await;
    let ball = list["result"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "cam+ball")
        .unwrap()
        .clone();
    assert_eq!(ball["base"], "cam");
    assert_eq!(ball["wildcard"], "ball");
    assert_eq!(ball["live"], true);
    let r = rig.cmd("push.remove", r#"{"id":"each@cam+ball"}"#).await;
    assert_eq!(r["error"]["code"], "read_only", "{r}");

    rig.ok("stream.stop", r#"{"name":"cam+smpte"}"#).await;
    rig.mqtt
        .wait_for("the instance to go", Duration::from_secs(10), |m| {
            m.push_state(DEV, "each@cam+smpte").is_none()
        })
        .await;
    assert_eq!(rig.push("each@cam+ball").unwrap()["state"], "live");

    // After a restart the started stream (and its push) come back. (A
    // fresh receiver: srtsrc does not take callers again once all left.)
    let cfg = rig.config_text();
    rig.restart("TERM", &cfg);
    drop(rx);
    let rx = StreamIdReceiver::start(port, &rig.path("wild-again.ts"));
    rig.wait_status("online").await;
    rig.wait_history("each@cam+ball", "live", 1).await;
    assert_eq!(rx.ids(), ["cam+ball"]);
    assert!(rig.push("each@cam+smpte").is_none());
    assert_eq!(rig.saved()["streams"], serde_json::json!(["cam+ball"]));
}

/// SIGHUP (`systemctl reload`) reads the config file again: a changed
/// output restarts, the others keep their connection, a removed one stops,
/// and a config that does not validate changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_reload_restarts_only_the_changed_output() {
    let _g = serial().await;
    let (pa, pb) = (free_port(), free_port());
    let outputs = |latency: u32, with_b: bool| {
        let mut t = format!(
            "[[outputs]]\nid = \"a\"\nstream = \"main\"\ntarget = \"srt://127.0.0.1:{pa}?latency={latency}\"\n"
        );
        if with_b {
            t.push_str(&format!(
                "[[outputs]]\nid = \"b\"\nstream = \"main\"\ntarget = \"srt://127.0.0.1:{pb}\"\n"
            ));
        }
        t
    };
    let mut rig = Rig::start(DEV, &outputs(120, true)).await;
    let _ra = srt_receiver(pa, None, &rig.path("a.ts"));
    let _rb = srt_receiver(pb, None, &rig.path("b.ts"));
    rig.wait_history("a", "live", 1).await;
    rig.wait_history("b", "live", 1).await;
    let cfg = rig.config_text();

    // Broken: nothing changes, and the event says where.
    std::fs::write(
        &rig.daemon.config,
        cfg.replace("latency=120", "latency=120&bogus=1"),
    )
    .unwrap();
    rig.daemon.proc.signal("HUP");
    rig.mqtt
        .wait_for("config_reload_failed", Duration::from_secs(10), |m| {
            m.events(&format!("fieldcast/{DEV}/events"))
                .iter()
                .any(|e| e["event"] == "config_reload_failed" && e["field"] == "outputs[0].target")
        })
        .await;

    std::fs::write(
        &rig.daemon.config,
        cfg.replace("latency=120", "latency=300"),
    )
    .unwrap();
    rig.daemon.proc.signal("HUP");
    rig.wait_history("a", "live", 2).await;
    let b = rig.history("b").await;
    assert_eq!(
        b.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
        ["start", "live"],
        "b was touched: {b:?}"
    );
    let events = rig.mqtt.events(&rig.topic("events"));
    let reload = events
        .iter()
        .find(|e| e["event"] == "config_changed" && e["change"] == "reload")
        .unwrap();
    assert_eq!(
        reload["ids"]["updated"],
        serde_json::json!(["a"]),
        "{reload}"
    );

    // b removed from the file: it stops and is gone.
    let without_b = cfg.replace(&outputs(120, true), &outputs(300, false));
    assert_ne!(without_b, cfg);
    std::fs::write(&rig.daemon.config, without_b).unwrap();
    rig.daemon.proc.signal("HUP");
    rig.mqtt
        .wait_for("b to go", Duration::from_secs(10), |m| {
            m.push_state(DEV, "b").is_none()
        })
        .await;
    assert_eq!(
        rig.history("a")
            .await
            .iter()
            .filter(|e| e.0 == "start")
            .count(),
        2
    );
}

/// What MQTT may not do on a device with the default `[control]`: read a
/// file as a calendar outside the calendar directory, attach handlers that
/// decide where pushes go, run programs; and secrets it may not read back:
/// a secret variable's value, URL tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_cannot_read_files_redirect_pushes_or_read_secrets() {
    let _g = serial().await;
    let mut rig = Rig::start(DEV, "").await;
    let r = rig
        .cmd(
            "push.add",
            r#"{"id":"c","stream":"main","kind":"scheduled","target":"srt://h:1","schedule":{"ics":"/etc/passwd"}}"#,
        )
        .await;
    assert_eq!(r["error"]["code"], "forbidden", "{r}");
    assert_eq!(r["error"]["field"], "schedule.ics", "{r}");
    let r = rig
        .cmd(
            "push.add",
            &format!(
                r#"{{"id":"c","stream":"main","kind":"scheduled","target":"srt://h:1","schedule":{{"ics":"{}/calendars/../pushes.json"}}}}"#,
                rig.path("data").display()
            ),
        )
        .await;
    assert_eq!(r["error"]["code"], "forbidden", "{r}");
    // Inside the calendar directory: fine, and read.
    let cal_dir = rig.path("data/calendars");
    std::fs::create_dir_all(&cal_dir).unwrap();
    std::fs::write(
        cal_dir.join("ob.ics"),
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:1\r\nDTSTART;TZID=Europe/Amsterdam:20270105T180000\r\nDTEND;TZID=Europe/Amsterdam:20270105T200000\r\nRRULE:FREQ=WEEKLY;COUNT=3\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
    )
    .unwrap();
    rig.ok(
        "push.add",
        &format!(
            r#"{{"id":"c","stream":"main","kind":"scheduled","enabled":false,"target":"srt://h:1","schedule":{{"timezone":"Europe/Amsterdam","ics":"{}/ob.ics"}}}}"#,
            cal_dir.display()
        ),
    )
    .await;
    let mut preview = Value::Null;
    for _ in 0..50 {
        preview = rig.cmd("schedule.preview", r#"{"id":"c","count":5}"#).await;
        if preview["ok"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let w = preview["result"]["windows"].as_array().unwrap();
    assert_eq!(w.len(), 3, "{preview}");
    assert_eq!(w[0]["start"], "2027-01-05T18:00:00+01:00", "{preview}");
    let r = rig
        .cmd(
            "trigger.set",
            r#"{"on":"push_rewrite","handlers":[{"url":"http://127.0.0.1:9/steal","blocking":true}]}"#,
        )
        .await;
    assert_eq!(r["error"]["code"], "forbidden", "{r}");
    let r = rig
        .cmd(
            "trigger.set",
            r#"{"on":"push_start","handlers":[{"url":"http://127.0.0.1:9/x"}]}"#,
        )
        .await;
    assert_eq!(r["error"]["code"], "forbidden", "{r}");
    let r = rig
        .cmd(
            "trigger.set",
            r#"{"on":"push_end","handlers":[{"exec":["/bin/true"]}]}"#,
        )
        .await;
    assert_eq!(r["error"]["code"], "forbidden", "{r}");

    rig.ok(
        "var.set",
        r#"{"name":"key","value":"k3y-very-secret","secret":true}"#,
    )
    .await;
    rig.ok(
        "var.set",
        r#"{"name":"slot","url":"http://127.0.0.1:9/slot?token=url-secret","interval_s":3600}"#,
    )
    .await;
    let vars = rig.ok("var.list", "").await;
    assert_eq!(vars["result"]["variables"]["key"]["value"], "***", "{vars}");
    let export = rig.ok("config.export", "").await;
    let text = export.to_string();
    assert!(
        !text.contains("k3y-very-secret") && !text.contains("url-secret"),
        "{text}"
    );
    let r = rig
        .cmd(
            "config.import",
            &format!(r#"{{"config":{}}}"#, export["result"]["config"]),
        )
        .await;
    assert_eq!(r["error"]["code"], "invalid_argument", "{r}");
    assert!(
        r["error"]["field"]
            .as_str()
            .unwrap()
            .starts_with("config.variables["),
        "{r}"
    );
    // Nothing the device published shows it (our own requests aside).
    let published = rig.mqtt.published();
    assert!(!published.contains("k3y-very-secret"), "{published}");
    // A hostile stream pattern is refused by name, not run.
    let r = rig
        .cmd(
            "push.add",
            &format!(
                r#"{{"id":"i","stream":"main","target":"srt://h:1","inhibit":["{}x"]}}"#,
                "*".repeat(200)
            ),
        )
        .await;
    assert_eq!(r["error"]["field"], "inhibit[0]", "{r}");
    let r = rig.cmd("stream.start", r#"{"name":"main+a b"}"#).await;
    assert_eq!(r["error"]["field"], "name", "{r}");
}

/// A push with `inhibit` yields while a stream it names is live: a
/// fallback path that gives way when the main camera comes up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inhibit_holds_a_push_back_while_another_stream_is_live() {
    let _g = serial().await;
    let port = free_port();
    let extra = format!(
        r#"{CAM_TEMPLATE}
[[outputs]]
id = "fallback"
stream = "main"
target = "srt://127.0.0.1:{port}"
inhibit = ["cam+"]
"#
    );
    let mut rig = Rig::start(DEV, &extra).await;
    let _rx = srt_receiver(port, None, &rig.path("fallback.ts"));
    rig.wait_push("fallback", "live").await;
    rig.ok("stream.start", r#"{"name":"cam+ball"}"#).await;
    rig.mqtt
        .wait_for("the fallback to yield", Duration::from_secs(20), |m| {
            m.push_state(DEV, "fallback").is_some_and(|p| {
                p["state"] == "waiting" && p["reason"] == "inhibited while stream cam+ball is live"
            })
        })
        .await;
    rig.ok("stream.stop", r#"{"name":"cam+ball"}"#).await;
    rig.wait_history("fallback", "live", 2).await;
    let h = rig.history("fallback").await;
    assert!(
        h.iter()
            .any(|e| e.0 == "stop" && e.1 == "inhibited while stream cam+ball is live"),
        "{h:?}"
    );
}
