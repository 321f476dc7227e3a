//! The MQTT contract against a real mosquitto: replies, errors that change
//! nothing, persistence across restarts and power cuts, status and will.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::*;

const DEV: &str = "ctl-test";

/// A listener output that nobody calls: no receiver needed.
fn listener(id: &str) -> String {
    format!(
        r#"{{"id":"{id}","stream":"main","target":"srt://:{}?mode=listener&passphrase=listener-secret-1"}}"#,
        free_port()
    )
}

fn ids(list: &Value) -> Vec<(String, bool)> {
    list["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_string(),
                p["running"].as_bool().unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_commands_get_errors_and_change_nothing() {
    let _g = serial().await;
    let extra = format!(
        "[[outputs]]\nid = \"program\"\nstream = \"main\"\ntarget = \"srt://:{}?mode=listener\"\n",
        free_port()
    );
    let mut rig = Rig::start(DEV, &extra).await;
    rig.ok("push.add", &listener("keep")).await;
    rig.wait_history("keep", "start", 1).await;
    rig.wait_history("program", "start", 1).await;
    let before = rig.ok("push.list", "").await["result"].clone();
    let store_before = std::fs::read(rig.path("data/pushes.json")).unwrap();

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
        let r = rig.cmd(cmd, payload).await;
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
    let r = rig
        .cmd(
            "push.add",
            r#"{"id":"x","stream":"nope","target":"srt://h:1"}"#,
        )
        .await;
    assert!(
        r["error"]["message"].as_str().unwrap().contains("'nope'"),
        "{r}"
    );

    let after = rig.ok("push.list", "").await["result"].clone();
    let strip = |v: &Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|p| (p["id"].clone(), p["target"].clone(), p["running"].clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&before), strip(&after));
    assert_eq!(
        std::fs::read(rig.path("data/pushes.json")).unwrap(),
        store_before
    );
    assert!(rig.daemon.log_text().contains("command refused"));
    assert!(!rig.daemon.log_text().contains("listener-secret-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_survive_restart_and_power_cut() {
    let _g = serial().await;
    let mut rig = Rig::start(DEV, "").await;
    let cfg = rig.config_text();
    let a = listener("alpha");
    rig.ok("push.add", &a).await;
    // The same add again: idempotent.
    let r = rig.ok("push.add", &a).await;
    assert_eq!(r["result"]["changed"], false, "{r}");
    rig.ok("push.add", &listener("beta")).await;
    let r = rig.ok("push.stop", r#"{"id":"beta"}"#).await;
    assert_eq!(r["result"]["push"]["state"], "stopped", "{r}");

    // A clean restart: the device says offline, then online again.
    assert!(rig.stop("TERM"), "daemon did not stop on SIGTERM");
    rig.wait_status("offline").await;
    rig.start_again(&cfg);
    rig.wait_status("online").await;
    rig.wait_history("alpha", "start", 1).await;
    let list = rig.ok("push.list", "").await;
    assert_eq!(
        ids(&list),
        vec![("alpha".into(), true), ("beta".into(), false)]
    );

    // A power cut: SIGKILL, no chance to flush. The will says offline and
    // the confirmed pushes are all there on the next boot.
    rig.ok("push.add", &listener("gamma")).await;
    rig.stop("KILL");
    rig.wait_status("offline").await;
    rig.start_again(&cfg);
    rig.wait_status("online").await;
    rig.wait_history("gamma", "start", 1).await;
    let list = rig.ok("push.list", "").await;
    assert_eq!(list["result"].as_array().unwrap().len(), 3, "{list}");
    // Removal is saved too.
    rig.ok("push.remove", r#"{"id":"alpha"}"#).await;
    let saved = rig.saved();
    let saved_ids: Vec<_> = saved["pushes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].clone())
        .collect();
    assert_eq!(saved_ids, vec![json!("beta"), json!("gamma")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_events_and_telemetry_are_published_without_secrets() {
    let _g = serial().await;
    let mut rig = Rig::start(DEV, "").await;
    let port = free_port();
    let _rx = srt_receiver(port, Some("telemetry-secret-9"), &rig.path("r.ts"));
    rig.ok(
        "push.add",
        &format!(r#"{{"id":"tele","stream":"main","target":"srt://127.0.0.1:{port}?streamid=key-abc-123&passphrase=telemetry-secret-9&pbkeylen=24"}}"#),
    )
    .await;
    rig.wait_push("tele", "live").await;
    let telemetry = rig.topic("telemetry");
    rig.mqtt
        .wait_for("telemetry with SRT stats", Duration::from_secs(10), |m| {
            m.last(&telemetry).is_some_and(|t| {
                let srt = &t["outputs"]["tele"]["srt"];
                srt["acks_received"].as_u64().unwrap_or(0) > 0
                    && srt["packets_sent"].as_u64().unwrap_or(0) > 0
                    && t["streams"]["main"]["frames"].as_u64().unwrap_or(0) > 0
            })
        })
        .await;
    let t = rig.mqtt.last(&telemetry).unwrap();
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
    let state = rig.mqtt.last(&rig.topic("state")).unwrap();
    assert_eq!(state["inputs"][0]["encoder"], "x264enc");
    assert_eq!(state["healthy"], true, "{state}");
    let events = rig.mqtt.events(&rig.topic("events"));
    for e in ["input_live", "push_added", "output_live"] {
        assert!(
            events.iter().any(|v| v["event"] == e),
            "no {e} in {events:?}"
        );
    }
    // Retained: a newcomer sees status and state at once.
    let late = Mqtt::device(rig.broker.port, DEV).await;
    let state_topic = rig.topic("state");
    late.wait_for("retained state", Duration::from_secs(5), |m| {
        m.last(&state_topic).is_some()
    })
    .await;
    let shown = rig.mqtt.published();
    assert!(!shown.contains("telemetry-secret-9"), "passphrase leaked");
    assert!(!shown.contains("key-abc-123"), "streamid leaked");
    let log = rig.daemon.log_text();
    assert!(!log.contains("telemetry-secret-9") && !log.contains("key-abc-123"));
}

/// A missing capture device is an input error with the device and reason,
/// retried with backoff; the daemon keeps serving, and its outputs get the
/// slate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_device_is_an_input_error_not_a_crash() {
    let _g = serial().await;
    let mut rig = Rig::start_with(DEV, |cfg| {
        cfg.replace(
            "[inputs.encode]",
            "[inputs.video]\nsource = \"v4l2\"\ndevice = \"/dev/video-missing-42\"\n[inputs.audio]\nsource = \"none\"\n[inputs.encode]",
        )
    })
    .await;
    let state = rig.topic("state");
    rig.mqtt
        .wait_for("the input to be retried", Duration::from_secs(30), |m| {
            m.last(&state)
                .is_some_and(|s| s["inputs"][0]["restarts"].as_u64().unwrap_or(0) >= 2)
        })
        .await;
    let s = rig.ok("state.get", "").await;
    let err = s["result"]["inputs"][0]["last_error"].as_str().unwrap();
    assert!(err.contains("/dev/video-missing-42"), "{err}");
    assert_eq!(s["result"]["healthy"], false);
    let events = rig.mqtt.events(&rig.topic("events"));
    assert!(
        events.iter().any(|e| e["event"] == "input_lost"),
        "{events:?}"
    );
    assert!(rig.daemon.proc.alive());

    // The slate goes out instead: a push of the lost input connects and
    // its receiver gets the configured size, black, while the state says
    // why.
    assert_eq!(s["result"]["inputs"][0]["slate"], true, "{s}");
    let port = free_port();
    let out = rig.path("slate.ts");
    let mut receiver = srt_receiver(port, None, &out);
    rig.ok(
        "push.add",
        &format!(
            r#"{{"id":"slate","stream":"main","target":"srt://127.0.0.1:{port}?mode=caller"}}"#
        ),
    )
    .await;
    rig.wait_push("slate", "live").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let p = rig.listed("slate").await;
    assert_eq!(p["state"], "live", "{p}");
    assert_eq!(p["reconnects"], 0, "{p}");
    let s = rig.ok("state.get", "").await;
    assert_eq!(s["result"]["inputs"][0]["state"], "error", "{s}");
    assert_eq!(s["result"]["inputs"][0]["slate"], true, "{s}");
    rig.ok("push.stop", r#"{"id":"slate"}"#).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    receiver.signal("TERM");
    receiver.wait_exit(Duration::from_secs(5));
    let probe = ffprobe(&out);
    assert_eq!(probe.video_codec.as_deref(), Some("h264"));
    assert_eq!((probe.width, probe.height), (Some(640), Some(360)));
    assert!(probe.duration > 3.0, "{}", probe.duration);
    assert_eq!(decode_errors(&out), "");
}

/// A saved push whose stream the new config no longer has is kept (the
/// stream may come back) but not started, and can be replaced or removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saved_push_for_a_stream_that_is_gone() {
    let _g = serial().await;
    let mut rig = Rig::start(DEV, "").await;
    rig.ok("push.add", &listener("orphan")).await;

    // The input is renamed: the saved push's stream is gone.
    let renamed = rig
        .config_text()
        .replace("name = \"main\"", "name = \"cam\"");
    assert!(rig.restart("TERM", &renamed));
    rig.wait_status("online").await;
    let state = rig.topic("state");
    rig.mqtt
        .wait_for(
            "a state from the new daemon",
            Duration::from_secs(20),
            |m| {
                m.last(&state)
                    .is_some_and(|s| s["inputs"][0]["name"] == "cam")
            },
        )
        .await;
    let list = rig.ok("push.list", "").await;
    assert_eq!(list["result"], json!([]), "{list}");
    assert!(rig.daemon.log_text().contains("not valid with this config"));
    assert!(
        rig.saved().to_string().contains("orphan"),
        "the saved push was lost"
    );

    // Re-adding the id for the new stream replaces the stale entry.
    rig.ok(
        "push.add",
        &listener("orphan").replace("\"stream\":\"main\"", "\"stream\":\"cam\""),
    )
    .await;
    let saved = rig.saved();
    assert_eq!(saved["pushes"].as_array().unwrap().len(), 1, "{saved}");
    assert_eq!(saved["pushes"][0]["stream"], "cam");
    rig.ok("push.remove", r#"{"id":"orphan"}"#).await;
    assert_eq!(rig.saved()["pushes"], json!([]));
}

/// Capture devices are listed in the retained state at start and on
/// request. This machine has no V4L2 node and no DeckLink driver: the
/// report says so rather than leaving it out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_devices_are_reported_in_state_and_on_request() {
    let _g = serial().await;
    let mut rig = Rig::start(DEV, "").await;
    let state = rig.topic("state");
    rig.mqtt
        .wait_for("devices in state", Duration::from_secs(15), |m| {
            m.last(&state)
                .is_some_and(|s| s["devices"]["v4l2"].is_array())
        })
        .await;
    let s = rig.mqtt.last(&state).unwrap();
    let nodes = std::fs::read_dir("/dev")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("video"))
        .count();
    assert_eq!(
        s["devices"]["v4l2"].as_array().unwrap().len(),
        nodes,
        "{}",
        s["devices"]
    );
    assert!(s["devices"]["errors"].is_array(), "{}", s["devices"]);
    let r = rig.ok("devices.discover", "{}").await;
    let report = &r["result"];
    assert!(report["took_ms"].as_u64().unwrap() < 5000, "{report}");
    assert!(report["devices"].is_array() && report["hints"].is_array());
    if !std::path::Path::new("/usr/lib/libDeckLinkAPI.so").exists() {
        assert!(
            report["decklink"]["note"]
                .as_str()
                .unwrap_or("")
                .contains("driver library not installed"),
            "{report}"
        );
    }
}

/// Under systemd (`Type=notify`, `WatchdogSec=`): the daemon says it is
/// ready, pings the watchdog from its control loop at half the timeout,
/// and says it is stopping on SIGTERM, over the datagram socket systemd
/// names in `NOTIFY_SOCKET`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_hears_ready_watchdog_and_stopping() {
    let _g = serial().await;
    let broker = Broker::start();
    let tmp = tempfile::tempdir().unwrap();
    let sock_path = tmp.path().join("notify");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let cfg = config(DEV, broker.port, &tmp.path().join("data"), "");
    let daemon = Daemon::start_in_env(
        tmp.path(),
        &cfg,
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "1000000"),
        ],
    );
    let mut got = Vec::new();
    let start = std::time::Instant::now();
    while got.iter().filter(|m| *m == "WATCHDOG=1").count() < 3 {
        let mut buf = [0u8; 256];
        let n = sock.recv(&mut buf).expect("a notification within 10 s");
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let took = start.elapsed();
    assert_eq!(got[0], "READY=1", "{got:?}");
    // Three pings at half of a 1 s timeout: about 1 s after READY.
    assert!(took < Duration::from_secs(8), "{took:?} {got:?}");
    let status = daemon.stop();
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let mut rest = Vec::new();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 256];
    while let Ok(n) = sock.recv(&mut buf) {
        rest.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(rest.iter().any(|m| m == "STOPPING=1"), "{rest:?}");
}
