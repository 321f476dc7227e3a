//! SRT end to end against libsrt's own tools and ffmpeg: what a real
//! receiver gets from the daemon.

mod support;

use std::time::{Duration, Instant};

use support::*;

const DEV: &str = "srt-test";

fn caller_push(id: &str, port: u16, extra: &str) -> String {
    format!(
        r#"{{"id":"{id}","stream":"main","target":"srt://127.0.0.1:{port}?mode=caller&latency=120{extra}"}}"#
    )
}

/// Our caller to `srt-live-transmit` listening: H.264 + AAC at the
/// configured size, the right duration, no continuity errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caller_push_reaches_srt_live_transmit() {
    let _g = serial().await;
    let broker = Broker::start();
    let tmp = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_in(
        tmp.path(),
        &config(DEV, broker.port, &tmp.path().join("data"), ""),
    );
    let mut mqtt = Mqtt::device(broker.port, DEV).await;
    mqtt.wait_for("device online", Duration::from_secs(20), |m| {
        m.last(&format!("fieldcast/{DEV}/status")) == Some(serde_json::json!("online"))
    })
    .await;

    let port = free_port();
    let out = tmp.path().join("caller.ts");
    let mut receiver = srt_receiver(port, None, &out);
    let r = mqtt
        .request(
            &format!("fieldcast/{DEV}/cmd/push.add"),
            &caller_push("ingest", port, ""),
        )
        .await;
    assert_eq!(r["ok"], true, "{r}");
    mqtt.wait_push_state(DEV, "ingest", "live", Duration::from_secs(20))
        .await;
    let live_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let r = mqtt
        .request(
            &format!("fieldcast/{DEV}/cmd/push.stop"),
            r#"{"id":"ingest"}"#,
        )
        .await;
    assert_eq!(r["ok"], true, "{r}");
    let streamed = live_at.elapsed().as_secs_f64();
    // Let the receiver flush what libsrt still holds (its latency), then end it.
    tokio::time::sleep(Duration::from_millis(800)).await;
    receiver.signal("INT");
    receiver.wait_exit(Duration::from_secs(5));

    let p = ffprobe(&out);
    assert_eq!(p.video_codec.as_deref(), Some("h264"), "{p:?}");
    assert_eq!(p.audio_codec.as_deref(), Some("aac"), "{p:?}");
    assert_eq!((p.width, p.height), (Some(640), Some(360)), "{p:?}");
    assert_eq!(p.first_video_keyframe, Some(true), "{p:?}");
    // The push started on the cached GOP (up to 1 s before it went live) and
    // went live within a stats tick (1 s): allow both on top of 10 %.
    assert!(
        (p.duration - streamed).abs() <= streamed * 0.1 + 1.0,
        "received {:.2} s for {streamed:.2} s streamed",
        p.duration
    );
    let errors = decode_errors(&out);
    assert!(errors.trim().is_empty(), "decode errors:\n{errors}");

    // The stats came from libsrt and show acknowledged traffic.
    let list = mqtt
        .request(&format!("fieldcast/{DEV}/cmd/push.list"), "{}")
        .await;
    assert_eq!(list["ok"], true);
    drop(daemon);
}

/// The daemon as listener, ffmpeg as caller; at the same time a second
/// output (a caller) from the same encode. Both decode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_and_caller_from_one_encode_both_decode() {
    let _g = serial().await;
    let broker = Broker::start();
    let tmp = tempfile::tempdir().unwrap();
    let lport = free_port();
    let extra = format!(
        "[[outputs]]\nid = \"program\"\nstream = \"main\"\ntarget = \"srt://:{lport}?mode=listener\"\n"
    );
    let _daemon = Daemon::start_in(
        tmp.path(),
        &config(DEV, broker.port, &tmp.path().join("data"), &extra),
    );
    let mut mqtt = Mqtt::device(broker.port, DEV).await;
    mqtt.wait_push_state(DEV, "program", "waiting", Duration::from_secs(20))
        .await;

    let cport = free_port();
    let cout = tmp.path().join("second.ts");
    let mut receiver = srt_receiver(cport, None, &cout);
    let r = mqtt
        .request(
            &format!("fieldcast/{DEV}/cmd/push.add"),
            &caller_push("second", cport, ""),
        )
        .await;
    assert_eq!(r["ok"], true, "{r}");
    mqtt.wait_push_state(DEV, "second", "live", Duration::from_secs(20))
        .await;

    let lout = tmp.path().join("listener.ts");
    let mut ffmpeg = ffmpeg_caller(lport, 6, &lout);
    mqtt.wait_push_state(DEV, "program", "live", Duration::from_secs(20))
        .await;
    assert!(
        ffmpeg.wait_exit(Duration::from_secs(30)).is_some(),
        "ffmpeg did not finish"
    );
    // The next viewer of the listener starts on a keyframe too.
    let again = tmp.path().join("listener-again.ts");
    let mut ffmpeg2 = ffmpeg_caller(lport, 3, &again);
    assert!(
        ffmpeg2.wait_exit(Duration::from_secs(30)).is_some(),
        "second ffmpeg did not finish"
    );
    let a = ffprobe(&again);
    assert_eq!(a.video_codec.as_deref(), Some("h264"), "{a:?}");
    assert_eq!(a.first_video_keyframe, Some(true), "second caller: {a:?}");

    let r = mqtt
        .request(
            &format!("fieldcast/{DEV}/cmd/push.stop"),
            r#"{"id":"second"}"#,
        )
        .await;
    assert_eq!(r["ok"], true);
    tokio::time::sleep(Duration::from_millis(800)).await;
    receiver.signal("INT");
    receiver.wait_exit(Duration::from_secs(5));

    let l = ffprobe(&lout);
    assert_eq!(l.video_codec.as_deref(), Some("h264"), "{l:?}");
    assert_eq!(l.audio_codec.as_deref(), Some("aac"), "{l:?}");
    assert_eq!((l.width, l.height), (Some(640), Some(360)));
    assert_eq!(
        l.first_video_keyframe,
        Some(true),
        "listener caller must start on a keyframe"
    );
    assert!(
        (l.duration - 6.0).abs() <= 0.6,
        "listener recording {:.2} s",
        l.duration
    );
    let e = decode_errors(&lout);
    assert!(e.trim().is_empty(), "listener decode errors:\n{e}");

    let c = ffprobe(&cout);
    assert_eq!(c.video_codec.as_deref(), Some("h264"), "{c:?}");
    assert_eq!(c.audio_codec.as_deref(), Some("aac"), "{c:?}");
    let e = decode_errors(&cout);
    assert!(e.trim().is_empty(), "caller decode errors:\n{e}");
}

/// A receiver that wants another passphrase refuses us: an output error in
/// state, not a crash; the encoder and other outputs carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passphrase_is_an_output_error() {
    let _g = serial().await;
    let broker = Broker::start();
    let tmp = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start_in(
        tmp.path(),
        &config(DEV, broker.port, &tmp.path().join("data"), ""),
    );
    let mut mqtt = Mqtt::device(broker.port, DEV).await;
    mqtt.wait_for("the input to run", Duration::from_secs(20), |m| {
        m.last(&format!("fieldcast/{DEV}/state"))
            .is_some_and(|s| s["inputs"][0]["state"] == "running")
    })
    .await;
    let port = free_port();
    let _receiver = srt_receiver(port, Some("the-right-passphrase"), &tmp.path().join("x.ts"));
    let r = mqtt
        .request(
            &format!("fieldcast/{DEV}/cmd/push.add"),
            &caller_push("enc", port, "&passphrase=a-wrong-passphrase&pbkeylen=32"),
        )
        .await;
    assert_eq!(r["ok"], true, "{r}");
    mqtt.wait_for("the push to fail", Duration::from_secs(20), |m| {
        m.push_state(DEV, "enc")
            .is_some_and(|p| p["state"] == "backoff" && p["last_error"].as_str().is_some())
    })
    .await;
    let p = mqtt.push_state(DEV, "enc").unwrap();
    let err = p["last_error"].as_str().unwrap();
    assert!(err.contains("refused"), "{err}");
    let events = mqtt.events(&format!("fieldcast/{DEV}/events"));
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "output_disconnected" && e["id"] == "enc"),
        "{events:?}"
    );
    // Still serving: the daemon answers and the input runs.
    assert!(daemon.proc.alive());
    let s = mqtt
        .request(&format!("fieldcast/{DEV}/cmd/state.get"), "")
        .await;
    assert_eq!(s["result"]["inputs"][0]["state"], "running", "{s}");
    // The secret went nowhere.
    // (Our own request on cmd/ carries it, of course: skip that topic.)
    let all: String = mqtt
        .all_payloads()
        .lines()
        .filter(|l| !l.contains("/cmd/"))
        .collect();
    assert!(!all.contains("a-wrong-passphrase") && !all.contains("the-right-passphrase"));
    assert!(!daemon.log_text().contains("a-wrong-passphrase"));
}

/// Kill the receiver and start it again: the push comes back by itself
/// within a few seconds, and the new recording starts on a keyframe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_restart_resumes_on_a_keyframe() {
    let _g = serial().await;
    let broker = Broker::start();
    let tmp = tempfile::tempdir().unwrap();
    let _daemon = Daemon::start_in(
        tmp.path(),
        &config(DEV, broker.port, &tmp.path().join("data"), ""),
    );
    let mut mqtt = Mqtt::device(broker.port, DEV).await;
    let port = free_port();
    let mut first = srt_receiver(port, None, &tmp.path().join("first.ts"));
    let r = mqtt
        .request(
            &format!("fieldcast/{DEV}/cmd/push.add"),
            &caller_push("ingest", port, ""),
        )
        .await;
    assert_eq!(r["ok"], true, "{r}");
    mqtt.wait_push_state(DEV, "ingest", "live", Duration::from_secs(20))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    first.signal("KILL");
    first.wait_exit(Duration::from_secs(5));
    mqtt.wait_for("the push to notice", Duration::from_secs(20), |m| {
        m.push_state(DEV, "ingest")
            .is_some_and(|p| p["state"] != "live")
    })
    .await;
    let second_out = tmp.path().join("second.ts");
    let mut second = srt_receiver(port, None, &second_out);
    let back = mqtt
        .wait_push_state(DEV, "ingest", "live", Duration::from_secs(30))
        .await;
    println!(
        "push live again {:.1} s after the receiver returned",
        back.as_secs_f64()
    );
    assert!(back < Duration::from_secs(12), "took {back:?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let st = mqtt.push_state(DEV, "ingest").unwrap();
    assert!(st["reconnects"].as_u64().unwrap_or(0) >= 1, "{st}");
    let r = mqtt
        .request(
            &format!("fieldcast/{DEV}/cmd/push.stop"),
            r#"{"id":"ingest"}"#,
        )
        .await;
    assert_eq!(r["ok"], true);
    tokio::time::sleep(Duration::from_millis(800)).await;
    second.signal("INT");
    second.wait_exit(Duration::from_secs(5));
    let p = ffprobe(&second_out);
    assert_eq!(p.video_codec.as_deref(), Some("h264"), "{p:?}");
    assert_eq!(p.first_video_keyframe, Some(true), "{p:?}");
    let e = decode_errors(&second_out);
    assert!(e.trim().is_empty(), "decode errors after reconnect:\n{e}");
}

/// A receiver that hangs (SIGSTOP: socket open, nothing acknowledged) is a
/// failed push, not a live one; the encoder and a healthy output beside it
/// are not disturbed; when it wakes up the push recovers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_receiver_is_not_live() {
    let _g = serial().await;
    let broker = Broker::start();
    let tmp = tempfile::tempdir().unwrap();
    let _daemon = Daemon::start_in(
        tmp.path(),
        &config(DEV, broker.port, &tmp.path().join("data"), ""),
    );
    let mut mqtt = Mqtt::device(broker.port, DEV).await;
    let port = free_port();
    let rx = srt_receiver(port, None, &tmp.path().join("hung.ts"));
    let r = mqtt
        .request(
            &format!("fieldcast/{DEV}/cmd/push.add"),
            &caller_push("ingest", port, ""),
        )
        .await;
    assert_eq!(r["ok"], true, "{r}");
    mqtt.wait_push_state(DEV, "ingest", "live", Duration::from_secs(20))
        .await;
    // A healthy output beside it, from the same encode.
    let port2 = free_port();
    let healthy_out = tmp.path().join("healthy.ts");
    let mut healthy = srt_receiver(port2, None, &healthy_out);
    let r = mqtt
        .request(
            &format!("fieldcast/{DEV}/cmd/push.add"),
            &caller_push("healthy", port2, ""),
        )
        .await;
    assert_eq!(r["ok"], true, "{r}");
    mqtt.wait_push_state(DEV, "healthy", "live", Duration::from_secs(20))
        .await;
    let telemetry = |m: &Mqtt, path: &[&str]| {
        let mut v = m
            .last(&format!("fieldcast/{DEV}/telemetry"))
            .unwrap_or_default();
        for p in path {
            v = v[*p].clone();
        }
        v.as_u64().unwrap_or(0)
    };
    let frames_before = telemetry(&mqtt, &["streams", "main", "frames"]);
    let bytes_before = telemetry(&mqtt, &["outputs", "healthy", "bytes_sent"]);

    rx.signal("STOP");
    let took = mqtt
        .wait_for("the push to leave live", Duration::from_secs(15), |m| {
            m.push_state(DEV, "ingest")
                .is_some_and(|p| p["state"] != "live")
        })
        .await;
    println!("hung receiver detected after {:.1} s", took.as_secs_f64());
    mqtt.wait_for("the stall to be reported", Duration::from_secs(10), |m| {
        m.push_state(DEV, "ingest").is_some_and(|p| {
            p["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("stalled"))
        })
    })
    .await;
    // Meanwhile the encoder and the other output went on undisturbed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let frames_after = telemetry(&mqtt, &["streams", "main", "frames"]);
    let bytes_after = telemetry(&mqtt, &["outputs", "healthy", "bytes_sent"]);
    assert!(
        frames_after > frames_before + 100,
        "encoder: {frames_before} -> {frames_after}"
    );
    assert!(
        bytes_after > bytes_before + 100_000,
        "healthy output: {bytes_before} -> {bytes_after}"
    );
    let h = mqtt.push_state(DEV, "healthy").unwrap();
    assert_eq!(h["state"], "live", "{h}");
    assert_eq!(h["reconnects"], 0, "{h}");

    rx.signal("CONT");
    mqtt.wait_push_state(DEV, "ingest", "live", Duration::from_secs(40))
        .await;
    let r = mqtt
        .request(
            &format!("fieldcast/{DEV}/cmd/push.stop"),
            r#"{"id":"healthy"}"#,
        )
        .await;
    assert_eq!(r["ok"], true);
    tokio::time::sleep(Duration::from_millis(800)).await;
    healthy.signal("INT");
    healthy.wait_exit(Duration::from_secs(5));
    let e = decode_errors(&healthy_out);
    assert!(
        e.trim().is_empty(),
        "the healthy output's stream has errors:\n{e}"
    );
}

/// Rendezvous: both ends call each other on the same port (here from two
/// loopback addresses, as two hosts would).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendezvous_push() {
    let _g = serial().await;
    let broker = Broker::start();
    let tmp = tempfile::tempdir().unwrap();
    let _daemon = Daemon::start_in(
        tmp.path(),
        &config(DEV, broker.port, &tmp.path().join("data"), ""),
    );
    let mut mqtt = Mqtt::device(broker.port, DEV).await;
    let port = free_port();
    let out = tmp.path().join("rv.ts");
    let child = std::process::Command::new("srt-live-transmit")
        .args([
            "-q",
            &format!("srt://127.0.0.1:{port}?mode=rendezvous&adapter=127.0.0.2"),
            "file://con",
        ])
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut peer = Proc {
        child,
        name: "srt-live-transmit".into(),
    };
    let r = mqtt
        .request(
            &format!("fieldcast/{DEV}/cmd/push.add"),
            &format!(
                r#"{{"id":"rv","stream":"main","target":"srt://127.0.0.2:{port}?mode=rendezvous&adapter=127.0.0.1"}}"#
            ),
        )
        .await;
    assert_eq!(r["ok"], true, "{r}");
    mqtt.wait_push_state(DEV, "rv", "live", Duration::from_secs(20))
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let r = mqtt
        .request(&format!("fieldcast/{DEV}/cmd/push.stop"), r#"{"id":"rv"}"#)
        .await;
    assert_eq!(r["ok"], true);
    tokio::time::sleep(Duration::from_millis(800)).await;
    peer.signal("INT");
    peer.wait_exit(Duration::from_secs(5));
    let p = ffprobe(&out);
    assert_eq!(p.video_codec.as_deref(), Some("h264"), "{p:?}");
    assert_eq!(p.audio_codec.as_deref(), Some("aac"), "{p:?}");
    assert_eq!(p.first_video_keyframe, Some(true), "{p:?}");
}
