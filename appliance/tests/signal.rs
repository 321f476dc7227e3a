//! An input lost and back, with a push live throughout: the capture device
//! (here an ALSA card, like a USB audio interface unplugged) is missing at
//! start, the slate goes out in its place, and when the device appears the
//! capture takes over at its first keyframe without the push reconnecting.
//! (HDMI/SDI signal loss through vivid's controls is tested where a vivid
//! device exists: `capture/tests/discover.rs`, and under QEMU.)

#[path = "../../capture/tests/support/alsa_card.rs"]
mod alsa_card;
mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use alsa_card::VirtualCard;
use serde_json::Value;
use support::*;

const DEV: &str = "signal-test";

fn events(rig: &Rig, name: &str) -> Vec<Value> {
    rig.mqtt
        .events(&rig.topic("events"))
        .into_iter()
        .filter(|e| e["event"] == name)
        .collect()
}

/// The average luma of each video frame of `file`, in order.
fn luma(file: &Path) -> Vec<f64> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-f", "lavfi", "-i"])
        .arg(format!("movie={},signalstats", file.display()))
        .args([
            "-show_entries",
            "frame_tags=lavfi.signalstats.YAVG",
            "-of",
            "csv=p=0",
        ])
        .output()
        .expect("ffprobe is installed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_input_sends_the_slate_and_comes_back_without_a_reconnect() {
    let _g = serial().await;
    let broker = Broker::start();
    let tmp = tempfile::tempdir().unwrap();
    // The daemon reads its ALSA configuration from `alsa/`, where the
    // card is not defined yet.
    let alsa_dir = tmp.path().join("alsa");
    std::fs::create_dir_all(&alsa_dir).unwrap();
    std::fs::write(alsa_dir.join("asound.conf"), "# no cards yet\n").unwrap();
    let card = VirtualCard::new(&tmp.path().join("card"), 2, 0.0, Some(1));
    let extra = format!(
        "[inputs.video]\nsource = \"test-pattern\"\nclock_overlay = false\n\
         [inputs.audio]\nsource = \"alsa\"\ndevice = \"{}\"\nchannels = 2\n",
        alsa_card::DEVICE
    );
    let cfg = config(DEV, broker.port, &tmp.path().join("data"), &extra);
    let alsa_path = alsa_card::config_path(&alsa_dir);
    let daemon = Daemon::start_in_env(tmp.path(), &cfg, &[("ALSA_CONFIG_PATH", &alsa_path)]);
    let mqtt = Mqtt::device(broker.port, DEV).await;
    let mut rig = Rig {
        dev: DEV,
        mqtt,
        daemon,
        broker,
        tmp,
    };

    // Lost: the input is in error with the device's reason, on the slate.
    rig.mqtt
        .wait_for("the slate", Duration::from_secs(20), |m| {
            m.last(&rig.topic("state"))
                .is_some_and(|s| s["inputs"][0]["slate"] == true)
        })
        .await;
    let i = rig.input("main");
    assert_eq!(i["state"], "error", "{i}");
    let why = i["reason"].as_str().unwrap_or("");
    assert!(
        why.contains(&format!("device '{}'", alsa_card::DEVICE)),
        "{i}"
    );
    assert_eq!(events(&rig, "input_lost").len(), 1);

    // A push of the stream goes live on the slate.
    let port = free_port();
    let out = rig.path("signal.ts");
    let mut receiver = srt_receiver(port, None, &out);
    rig.ok(
        "push.add",
        &format!(
            r#"{{"id":"feed","stream":"main","target":"srt://127.0.0.1:{port}?mode=caller"}}"#
        ),
    )
    .await;
    rig.wait_push("feed", "live").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    // Retried in the meantime, the same loss is announced once.
    assert_eq!(events(&rig, "input_lost").len(), 1);

    // The device appears: the capture takes over.
    std::fs::copy(
        card.dir.join("asound.conf"),
        alsa_dir.join("asound.conf.new"),
    )
    .unwrap();
    std::fs::rename(
        alsa_dir.join("asound.conf.new"),
        alsa_dir.join("asound.conf"),
    )
    .unwrap();
    rig.mqtt
        .wait_for("input_live", Duration::from_secs(40), |m| {
            m.last(&rig.topic("state"))
                .is_some_and(|s| s["inputs"][0]["state"] == "running")
        })
        .await;
    let i = rig.input("main");
    assert_eq!(i["slate"], false, "{i}");
    rig.mqtt
        .wait_for("input_restored", Duration::from_secs(10), |m| {
            m.events(&rig.topic("events"))
                .iter()
                .any(|e| e["event"] == "input_restored")
        })
        .await;
    tokio::time::sleep(Duration::from_secs(4)).await;

    // The push never noticed.
    let p = rig.listed("feed").await;
    assert_eq!(p["state"], "live", "{p}");
    assert_eq!(p["reconnects"], 0, "{p}");
    assert!(events(&rig, "output_disconnected").is_empty());
    rig.ok("push.stop", r#"{"id":"feed"}"#).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    receiver.signal("TERM");
    receiver.wait_exit(Duration::from_secs(5));

    // The receiver got black, then the picture, in one clean stream.
    let probe = ffprobe(&out);
    assert_eq!(probe.video_codec.as_deref(), Some("h264"));
    assert_eq!(probe.audio_codec.as_deref(), Some("aac"));
    assert_eq!((probe.width, probe.height), (Some(640), Some(360)));
    assert_eq!(decode_errors(&out), "");
    let y = luma(&out);
    assert!(y.len() > 150, "{} frames", y.len());
    assert!(
        y[..30].iter().all(|v| *v < 25.0),
        "slate frames: {:?}",
        &y[..30]
    );
    let tail = &y[y.len() - 30..];
    assert!(tail.iter().all(|v| *v > 60.0), "picture frames: {tail:?}");
    drop(card);
}
