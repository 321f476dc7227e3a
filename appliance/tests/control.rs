//! The MQTT contract against a real mosquitto: replies, errors that change
//! nothing, persistence across restarts and power cuts, status and will.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::*;

const DEV: &str = "ctl-test";

fn topic(cmd: &str) -> String {
    format!("fieldcast/{DEV}/cmd/{cmd}")
}

async fn online(mqtt: &Mqtt) {
    mqtt.wait_for("device online", Duration::from_secs(20), |m| {
        m.last(&format!("fieldcast/{DEV}/status")) == Some(json!("online"))
    })
    .await;
}

/// A listener output that nobody calls: no receiver needed.
fn listener(id: &str) -> String {
    format!(
        r#"{{"id":"{id}","stream":"main","target":"srt://:{}?mode=listener&passphrase=listener-secret-1"}}"#,
        free_port()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_commands_get_errors_and_change_nothing() {
    let _g = serial().await;
    let broker = Broker::start();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cfg = format!(
        "{}[[outputs]]\nid = \"program\"\nstream = \"main\"\ntarget = \"srt://:{}?mode=listener\"\n",
        config(DEV, broker.port, &data, ""),
        free_port()
    );
    let daemon = Daemon::start_in(tmp.path(), &cfg);
    let mut mqtt = Mqtt::device(broker.port, DEV).await;
    online(&mqtt).await;
    let ok = mqtt.request(&topic("push.add"), &listener("keep")).await;
    assert_eq!(ok["ok"], true, "{ok}");
    let before = mqtt.request(&topic("push.list"), "").await["result"].clone();
    let store_before = std::fs::read(data.join("pushes.json")).unwrap();

    let cases: &[(&str, &str, &str, Option<&str>)] = &[
        ("push.add", "{not json", "bad_json", None),
        ("push.add", "[1,2]", "bad_json", None),
        ("reboot.now", "{}", "unknown_command", None),
        (
            "push.add",
            r#"{"id":"x","stream":"main"}"#,
            "invalid_argument",
            Some("target"),
        ),
        (
            "push.add",
            r#"{"id":"x","stream":"main","target":"srt://h:1","colour":"red"}"#,
            "invalid_argument",
            Some("colour"),
        ),
        (
            "push.add",
            r#"{"id":"x","stream":"nope","target":"srt://h:1"}"#,
            "invalid_argument",
            Some("stream"),
        ),
        (
            "push.add",
            r#"{"id":"x y","stream":"main","target":"srt://h:1"}"#,
            "invalid_argument",
            Some("id"),
        ),
        (
            "push.add",
            r#"{"id":"x","stream":"main","target":"srt://h:1?passphrase=tiny"}"#,
            "invalid_argument",
            Some("target"),
        ),
        (
            "push.add",
            r#"{"id":"x","stream":"main","target":"srt://h:1?pbkeylen=20&passphrase=long-enough-secret"}"#,
            "invalid_argument",
            Some("target"),
        ),
        (
            "push.add",
            r#"{"id":"x","stream":"main","target":"rtsp://h/x"}"#,
            "invalid_argument",
            Some("target"),
        ),
        (
            "push.add",
            r#"{"id":"keep","stream":"main","target":"srt://h:2"}"#,
            "conflict",
            Some("id"),
        ),
        (
            "push.add",
            r#"{"id":"program","stream":"main","target":"srt://h:2"}"#,
            "read_only",
            Some("id"),
        ),
        (
            "push.remove",
            r#"{"id":"program"}"#,
            "read_only",
            Some("id"),
        ),
        ("push.remove", r#"{"id":"ghost"}"#, "not_found", Some("id")),
        ("push.start", r#"{"id":"ghost"}"#, "not_found", Some("id")),
        ("push.stop", r#"{}"#, "invalid_argument", Some("id")),
        (
            "push.list",
            r#"{"all":true}"#,
            "invalid_argument",
            Some("all"),
        ),
    ];
    for (cmd, payload, code, field) in cases {
        let r = mqtt.request(&topic(cmd), payload).await;
        assert_eq!(r["ok"], false, "{cmd} {payload}: {r}");
        assert_eq!(r["command"], *cmd);
        assert_eq!(r["error"]["code"], *code, "{cmd} {payload}: {r}");
        if let Some(f) = field {
            assert_eq!(r["error"]["field"], *f, "{cmd} {payload}: {r}");
        }
        let msg = r["error"]["message"].as_str().unwrap();
        assert!(!msg.is_empty());
        assert!(
            !msg.contains("tiny") && !msg.contains("long-enough-secret"),
            "{msg}"
        );
    }
    // The message names the bad value.
    let r = mqtt
        .request(
            &topic("push.add"),
            r#"{"id":"x","stream":"nope","target":"srt://h:1"}"#,
        )
        .await;
    assert!(
        r["error"]["message"].as_str().unwrap().contains("'nope'"),
        "{r}"
    );

    let after = mqtt.request(&topic("push.list"), "").await["result"].clone();
    let strip = |v: &Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|p| (p["id"].clone(), p["target"].clone(), p["running"].clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&before), strip(&after));
    assert_eq!(
        std::fs::read(data.join("pushes.json")).unwrap(),
        store_before
    );
    assert!(daemon.log_text().contains("command refused"));
    assert!(!daemon.log_text().contains("listener-secret-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_survive_restart_and_power_cut() {
    let _g = serial().await;
    let broker = Broker::start();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cfg = config(DEV, broker.port, &data, "");
    let daemon = Daemon::start_in(tmp.path(), &cfg);
    let mut mqtt = Mqtt::device(broker.port, DEV).await;
    online(&mqtt).await;
    let a = listener("alpha");
    let r = mqtt.request(&topic("push.add"), &a).await;
    assert_eq!(r["ok"], true, "{r}");
    // The same add again: idempotent.
    let r = mqtt.request(&topic("push.add"), &a).await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["result"]["changed"], false, "{r}");
    let r = mqtt.request(&topic("push.add"), &listener("beta")).await;
    assert_eq!(r["ok"], true, "{r}");
    let r = mqtt.request(&topic("push.stop"), r#"{"id":"beta"}"#).await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["result"]["push"]["state"], "stopped", "{r}");

    // A clean restart: the device says offline, then online again.
    assert!(daemon.stop().is_some(), "daemon did not stop on SIGTERM");
    mqtt.wait_for("offline status", Duration::from_secs(10), |m| {
        m.last(&format!("fieldcast/{DEV}/status")) == Some(json!("offline"))
    })
    .await;
    let daemon = Daemon::start_in(tmp.path(), &cfg);
    online(&mqtt).await;
    mqtt.wait_push_state(DEV, "alpha", "waiting", Duration::from_secs(20))
        .await;
    let list = mqtt.request(&topic("push.list"), "").await;
    let ids: Vec<_> = list["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_string(),
                p["running"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(ids, vec![("alpha".into(), true), ("beta".into(), false)]);

    // A power cut: SIGKILL, no chance to flush. The will says offline and
    // the confirmed pushes are all there on the next boot.
    let r = mqtt.request(&topic("push.add"), &listener("gamma")).await;
    assert_eq!(r["ok"], true);
    let mut d = daemon;
    d.proc.signal("KILL");
    d.proc.wait_exit(Duration::from_secs(5));
    mqtt.wait_for("the last will", Duration::from_secs(15), |m| {
        m.last(&format!("fieldcast/{DEV}/status")) == Some(json!("offline"))
    })
    .await;
    drop(d);
    let _daemon = Daemon::start_in(tmp.path(), &cfg);
    online(&mqtt).await;
    mqtt.wait_push_state(DEV, "gamma", "waiting", Duration::from_secs(20))
        .await;
    let list = mqtt.request(&topic("push.list"), "").await;
    assert_eq!(list["result"].as_array().unwrap().len(), 3, "{list}");
    // Removal is saved too.
    let r = mqtt
        .request(&topic("push.remove"), r#"{"id":"alpha"}"#)
        .await;
    assert_eq!(r["ok"], true);
    let saved: Value =
        serde_json::from_slice(&std::fs::read(data.join("pushes.json")).unwrap()).unwrap();
    let ids: Vec<_> = saved["pushes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].clone())
        .collect();
    assert_eq!(ids, vec![json!("beta"), json!("gamma")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_events_and_telemetry_are_published_without_secrets() {
    let _g = serial().await;
    let broker = Broker::start();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let port = free_port();
    let cfg = config(DEV, broker.port, &data, "");
    let daemon = Daemon::start_in(tmp.path(), &cfg);
    let mut mqtt = Mqtt::device(broker.port, DEV).await;
    online(&mqtt).await;
    let out = tmp.path().join("r.ts");
    let _rx = srt_receiver(port, Some("telemetry-secret-9"), &out);
    let r = mqtt
        .request(
            &topic("push.add"),
            &format!(r#"{{"id":"tele","stream":"main","target":"srt://127.0.0.1:{port}?streamid=key-abc-123&passphrase=telemetry-secret-9&pbkeylen=24"}}"#),
        )
        .await;
    assert_eq!(r["ok"], true, "{r}");
    mqtt.wait_push_state(DEV, "tele", "live", Duration::from_secs(20))
        .await;
    mqtt.wait_for("telemetry with SRT stats", Duration::from_secs(10), |m| {
        m.last(&format!("fieldcast/{DEV}/telemetry"))
            .is_some_and(|t| {
                t["outputs"]["tele"]["srt"]["acks_received"]
                    .as_u64()
                    .unwrap_or(0)
                    > 0
                    && t["outputs"]["tele"]["srt"]["packets_sent"]
                        .as_u64()
                        .unwrap_or(0)
                        > 0
                    && t["streams"]["main"]["frames"].as_u64().unwrap_or(0) > 0
            })
    })
    .await;
    let t = mqtt.last(&format!("fieldcast/{DEV}/telemetry")).unwrap();
    for field in [
        "rtt_ms",
        "send_rate_mbps",
        "packets_retransmitted",
        "packets_lost",
        "bytes_sent",
    ] {
        assert!(
            t["outputs"]["tele"]["srt"].get(field).is_some(),
            "{field} missing: {t}"
        );
    }
    assert!(t["outputs"]["tele"].get("reconnects").is_some());
    let state = mqtt.last(&format!("fieldcast/{DEV}/state")).unwrap();
    assert_eq!(state["inputs"][0]["encoder"], "x264enc");
    assert_eq!(state["healthy"], true, "{state}");
    let events = mqtt.events(&format!("fieldcast/{DEV}/events"));
    for e in ["input_live", "push_added", "output_live"] {
        assert!(
            events.iter().any(|v| v["event"] == e),
            "no {e} in {events:?}"
        );
    }
    // Retained: a newcomer sees status and state at once.
    let late = Mqtt::device(broker.port, DEV).await;
    late.wait_for("retained state", Duration::from_secs(5), |m| {
        m.last(&format!("fieldcast/{DEV}/state")).is_some()
            && m.last(&format!("fieldcast/{DEV}/status")) == Some(json!("online"))
    })
    .await;
    let shown: String = mqtt
        .all_payloads()
        .lines()
        .filter(|l| !l.contains("/cmd/"))
        .collect();
    assert!(!shown.contains("telemetry-secret-9"), "passphrase leaked");
    assert!(!shown.contains("key-abc-123"), "streamid leaked");
    let log = daemon.log_text();
    assert!(!log.contains("telemetry-secret-9") && !log.contains("key-abc-123"));
}

/// A missing capture device is an input error with the device and reason,
/// retried with backoff; the daemon keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_device_is_an_input_error_not_a_crash() {
    let _g = serial().await;
    let broker = Broker::start();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(DEV, broker.port, &tmp.path().join("data"), "").replace(
        "[inputs.encode]",
        "[inputs.video]\nsource = \"v4l2\"\ndevice = \"/dev/video-missing-42\"\n[inputs.audio]\nsource = \"none\"\n[inputs.encode]",
    );
    let mut daemon = Daemon::start_in(tmp.path(), &cfg);
    let mut mqtt = Mqtt::device(broker.port, DEV).await;
    online(&mqtt).await;
    mqtt.wait_for("the input to be retried", Duration::from_secs(30), |m| {
        m.last(&format!("fieldcast/{DEV}/state"))
            .is_some_and(|s| s["inputs"][0]["restarts"].as_u64().unwrap_or(0) >= 2)
    })
    .await;
    let s = mqtt.request(&topic("state.get"), "").await;
    let input = &s["result"]["inputs"][0];
    let err = input["last_error"].as_str().unwrap();
    assert!(err.contains("/dev/video-missing-42"), "{err}");
    assert_eq!(s["result"]["healthy"], false);
    let events = mqtt.events(&format!("fieldcast/{DEV}/events"));
    assert!(
        events.iter().any(|e| e["event"] == "input_lost"),
        "{events:?}"
    );
    assert!(daemon.proc.alive());
}

/// A saved push whose stream the new config no longer has is kept (the
/// stream may come back) but not started, and can be replaced or removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saved_push_for_a_stream_that_is_gone() {
    let _g = serial().await;
    let broker = Broker::start();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cfg = config(DEV, broker.port, &data, "");
    let daemon = Daemon::start_in(tmp.path(), &cfg);
    let mut mqtt = Mqtt::device(broker.port, DEV).await;
    let r = mqtt.request(&topic("push.add"), &listener("orphan")).await;
    assert_eq!(r["ok"], true, "{r}");
    assert!(daemon.stop().is_some());

    // The input is renamed: the saved push's stream is gone.
    let renamed = cfg.replace("name = \"main\"", "name = \"cam\"");
    let daemon = Daemon::start_in(tmp.path(), &renamed);
    online(&mqtt).await;
    mqtt.wait_for(
        "a state from the new daemon",
        Duration::from_secs(20),
        |m| {
            m.last(&format!("fieldcast/{DEV}/state"))
                .is_some_and(|s| s["inputs"][0]["name"] == "cam")
        },
    )
    .await;
    let list = mqtt.request(&topic("push.list"), "").await;
    assert_eq!(list["result"], json!([]), "{list}");
    assert!(daemon.log_text().contains("not valid with this config"));
    let saved = std::fs::read_to_string(data.join("pushes.json")).unwrap();
    assert!(saved.contains("orphan"), "the saved push was lost: {saved}");

    // Re-adding the id for the new stream replaces the stale entry.
    let r = mqtt
        .request(
            &topic("push.add"),
            &listener("orphan").replace("\"stream\":\"main\"", "\"stream\":\"cam\""),
        )
        .await;
    assert_eq!(r["ok"], true, "{r}");
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("pushes.json")).unwrap()).unwrap();
    assert_eq!(saved["pushes"].as_array().unwrap().len(), 1, "{saved}");
    assert_eq!(saved["pushes"][0]["stream"], "cam");
    let r = mqtt
        .request(&topic("push.remove"), r#"{"id":"orphan"}"#)
        .await;
    assert_eq!(r["ok"], true, "{r}");
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(data.join("pushes.json")).unwrap()).unwrap();
    assert_eq!(saved["pushes"], json!([]));
}
