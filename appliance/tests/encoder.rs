//! Live encoder control over MQTT: bitrate changed on the running encoder,
//! size and frame rate by rebuilding the capture while SRT and RTMP outputs
//! stay connected, keyframes on request, settings kept across a restart,
//! and bad requests refused by name with nothing changed.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::*;

const DEV: &str = "enc-test";

/// The stream's bitrate averaged over the telemetry of `secs` seconds.
async fn stream_kbps(rig: &Rig, secs: u64) -> f64 {
    let topic = rig.topic("telemetry");
    let start = rig.mqtt.events(&topic).len();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let seen: Vec<f64> = rig.mqtt.events(&topic)[start..]
        .iter()
        .filter_map(|t| t["streams"]["main"]["bitrate_kbps"].as_f64())
        .collect();
    assert!(!seen.is_empty(), "no telemetry");
    seen.iter().sum::<f64>() / seen.len() as f64
}

/// Frame widths in a recording, in order, with consecutive repeats merged.
fn widths(file: &std::path::Path) -> Vec<u64> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "frame=width",
            "-of",
            "csv=p=0",
        ])
        .arg(file)
        .output()
        .unwrap();
    let mut v: Vec<u64> = Vec::new();
    for w in String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
    {
        if v.last() != Some(&w) {
            v.push(w);
        }
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoder_changes_live_and_outputs_stay_connected() {
    let _g = serial().await;
    let mut rig = Rig::start(DEV, "").await;
    let port = free_port();
    let out = rig.path("srt.ts");
    let mut receiver = srt_receiver(port, None, &out);
    let nginx = Nginx::start(rig.tmp.path(), "");
    rig.ok(
        "push.add",
        &format!(r#"{{"id":"wan","stream":"main","target":"srt://127.0.0.1:{port}?mode=caller"}}"#),
    )
    .await;
    rig.ok(
        "push.add",
        &format!(
            r#"{{"id":"social","stream":"main","target":"{}"}}"#,
            nginx.url("enc")
        ),
    )
    .await;
    rig.wait_push("wan", "live").await;
    rig.wait_push("social", "live").await;
    let before = stream_kbps(&rig, 3).await;

    // Bitrate: on the running encoder.
    let r = rig
        .ok("encoder.set", r#"{"input":"main","bitrate_kbps":250}"#)
        .await;
    assert_eq!(r["result"]["applied"]["how"], "live", "{r}");
    assert_eq!(r["result"]["applied"]["changed"][0], "bitrate_kbps", "{r}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = stream_kbps(&rig, 3).await;
    assert!(
        after < before * 0.6,
        "stream went from {before:.0} to {after:.0} kbit/s"
    );
    assert_eq!(rig.input("main")["bitrate_kbps"], 250);

    // A new size and rate: the capture is rebuilt, the outputs stay.
    let r = rig
        .ok(
            "encoder.set",
            r#"{"input":"main","width":480,"height":270,"framerate":25}"#,
        )
        .await;
    assert_eq!(r["result"]["applied"]["how"], "restarted", "{r}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let inp = rig.input("main");
    assert_eq!(
        (inp["width"].clone(), inp["height"].clone()),
        (480.into(), 270.into())
    );
    assert_eq!(inp["framerate"], "25/1");
    for id in ["wan", "social"] {
        let p = rig.push(id).unwrap();
        assert_eq!(p["state"], "live", "{p}");
        assert_eq!(p["reconnects"], 0, "{id} reconnected: {p}");
    }
    let events = rig.mqtt.events(&rig.topic("events"));
    assert!(
        !events.iter().any(|e| e["event"] == "output_disconnected"),
        "{events:?}"
    );
    assert!(events.iter().any(|e| e["event"] == "encoder_changed"));

    // A long GOP, then keyframes on request well before the next one.
    let r = rig
        .ok("encoder.set", r#"{"input":"main","gop_frames":250}"#)
        .await;
    assert_eq!(r["result"]["applied"]["how"], "restarted", "{r}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let keyframes = |rig: &Rig| {
        rig.mqtt.last(&rig.topic("telemetry")).unwrap()["streams"]["main"]["keyframes"]
            .as_u64()
            .unwrap()
    };
    let k0 = keyframes(&rig);
    let asked = Instant::now();
    for _ in 0..3 {
        let r = rig.ok("encoder.keyframe", r#"{"input":"main"}"#).await;
        assert_eq!(r["result"]["requested"], true, "{r}");
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    rig.mqtt
        .wait_for("three keyframes", Duration::from_secs(3), |m| {
            m.last(&rig.topic("telemetry")).unwrap()["streams"]["main"]["keyframes"]
                .as_u64()
                .unwrap()
                >= k0 + 3
        })
        .await;
    assert!(asked.elapsed() < Duration::from_secs(8));

    // What the SRT receiver got decodes across the change of size.
    rig.ok("push.stop", r#"{"id":"wan"}"#).await;
    rig.ok("push.stop", r#"{"id":"social"}"#).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    receiver.signal("INT");
    receiver.wait_exit(Duration::from_secs(5));
    assert_eq!(widths(&out), vec![640, 480], "frame widths over time");
    let errors = decode_errors(&out);
    assert!(errors.trim().is_empty(), "decode errors:\n{errors}");
    wait_until(
        "nginx to close its recording",
        Duration::from_secs(10),
        || nginx.error_log().contains("deleteStream"),
    );
    let flv = nginx.recording("enc");
    assert_eq!(widths(&flv), vec![640, 480], "RTMP frame widths over time");

    // Kept across a restart; a reset goes back to the config.
    let cfg = rig.config_text();
    assert!(rig.restart("TERM", &cfg));
    rig.wait_status("online").await;
    rig.wait_stream_live("main").await;
    let inp = rig.input("main");
    assert_eq!(inp["width"], 480, "{inp}");
    assert_eq!(inp["bitrate_kbps"], 250, "{inp}");
    let r = rig.ok("encoder.reset", r#"{"input":"main"}"#).await;
    assert_eq!(r["result"]["encode"]["width"], 640, "{r}");
    assert_eq!(r["result"]["encode"]["bitrate_kbps"], 800, "{r}");
    assert!(rig.saved().get("encoders").is_none(), "{}", rig.saved());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_encoder_requests_name_the_field_and_change_nothing() {
    let _g = serial().await;
    let mut rig = Rig::start(DEV, "").await;
    rig.wait_stream_live("main").await;
    let saved = std::fs::read(rig.path("data/pushes.json")).ok();
    for (payload, code, field) in [
        (
            r#"{"input":"main","width":99999}"#,
            "invalid_argument",
            "width",
        ),
        (
            r#"{"input":"main","width":641}"#,
            "invalid_argument",
            "width",
        ),
        (
            r#"{"input":"main","framerate":"0"}"#,
            "invalid_argument",
            "framerate",
        ),
        (
            r#"{"input":"main","bitrate_kbps":5}"#,
            "invalid_argument",
            "bitrate_kbps",
        ),
        (
            r#"{"input":"main","profile":"extreme"}"#,
            "invalid_argument",
            "profile",
        ),
        (r#"{"input":"main","bogus":1}"#, "invalid_argument", "bogus"),
        (
            r#"{"input":"nope","bitrate_kbps":1000}"#,
            "not_found",
            "input",
        ),
    ] {
        let r = rig.cmd("encoder.set", payload).await;
        assert_eq!(r["ok"], false, "{payload}: {r}");
        assert_eq!(r["error"]["code"], code, "{payload}: {r}");
        assert_eq!(r["error"]["field"], field, "{payload}: {r}");
    }
    let r = rig.cmd("encoder.set", r#"{"input":"main"}"#).await;
    assert_eq!(r["error"]["code"], "invalid_argument", "{r}");
    let r = rig.cmd("encoder.keyframe", r#"{"input":"nope"}"#).await;
    assert_eq!(r["error"]["code"], "not_found", "{r}");
    let inp = rig.input("main");
    assert_eq!(
        (inp["width"].clone(), inp["bitrate_kbps"].clone()),
        (640.into(), 800.into())
    );
    assert_eq!(std::fs::read(rig.path("data/pushes.json")).ok(), saved);
}
