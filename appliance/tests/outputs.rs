//! Four outputs of different kinds from one encode at once: SRT to
//! srt-live-transmit, RTMP to nginx, WHIP to an aiortc receiver, and a
//! recording. Each receiver gets a decodable stream of the right codecs,
//! size and length, and telemetry carries each protocol's own figures.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

const DEV: &str = "outputs-test";

fn push(id: &str, target: &str) -> String {
    format!(r#"{{"id":"{id}","stream":"main","target":"{target}"}}"#)
}

fn clean(file: &std::path::Path) {
    let errors = decode_errors(file);
    assert!(
        errors.trim().is_empty(),
        "{file:?}: decode errors:\n{errors}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_kinds_of_output_from_one_encode() {
    let _g = serial().await;
    let mut rig = Rig::start(DEV, "").await;
    let srt_port = free_port();
    let srt_file = rig.path("srt.ts");
    let mut srt = srt_receiver(srt_port, None, &srt_file);
    let nginx = Nginx::start(rig.tmp.path(), "");
    let mut whip = WhipPeer::start(rig.tmp.path(), &[]);
    let rec_dir = rig.path("data/recordings/main");

    rig.ok(
        "push.add",
        &push("srt", &format!("srt://127.0.0.1:{srt_port}?mode=caller")),
    )
    .await;
    rig.ok("push.add", &push("rtmp", &nginx.url("four"))).await;
    rig.ok("push.add", &push("whip", &whip.url("four"))).await;
    rig.ok(
        "push.add",
        &push(
            "rec",
            &format!("{}/$datetime.ts?segment=600", rec_dir.display()),
        ),
    )
    .await;
    for id in ["srt", "rtmp", "whip", "rec"] {
        rig.wait_push(id, "live").await;
    }
    let all_live = Instant::now();
    tokio::time::sleep(Duration::from_secs(6)).await;

    let t = rig.mqtt.last(&rig.topic("telemetry")).unwrap();
    let out = &t["outputs"];
    for id in ["srt", "rtmp", "whip", "rec"] {
        assert_eq!(out[id]["state"], "live", "{id}: {t}");
        assert!(out[id]["bitrate_kbps"].as_f64() > Some(300.0), "{id}: {t}");
        assert_eq!(out[id]["frames_dropped"], 0, "{id}: {t}");
    }
    assert!(out["srt"]["srt"]["acks_received"].as_u64() > Some(0), "{t}");
    assert!(out["rtmp"]["rtmp"]["bytes_acked"].as_u64() > Some(0), "{t}");
    assert!(
        out["whip"]["whip"]["packets_sent"].as_u64() > Some(0),
        "{t}"
    );
    assert!(
        out["rec"]["recording"]["file_bytes"].as_u64() > Some(0),
        "{t}"
    );
    // One encode: one input, one stream, four subscribers.
    let stream: &Value = &t["streams"]["main"];
    assert_eq!(stream["subscribers"], 4, "{t}");

    for id in ["srt", "rtmp", "whip", "rec"] {
        rig.ok("push.stop", &format!(r#"{{"id":"{id}"}}"#)).await;
    }
    let streamed = all_live.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(800)).await;
    srt.signal("INT");
    srt.wait_exit(Duration::from_secs(5));
    whip.finish();
    wait_until(
        "nginx to close its recording",
        Duration::from_secs(10),
        || nginx.error_log().contains("deleteStream"),
    );
    let rec_file = std::fs::read_dir(&rec_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "ts"))
        .expect("a recording");

    for (file, audio) in [
        (srt_file.clone(), "aac"),
        (nginx.recording("four"), "aac"),
        (whip.out.clone(), "opus"),
        (rec_file.clone(), "aac"),
    ] {
        let p = ffprobe(&file);
        assert_eq!(p.video_codec.as_deref(), Some("h264"), "{file:?}: {p:?}");
        assert_eq!(p.audio_codec.as_deref(), Some(audio), "{file:?}: {p:?}");
        assert_eq!((p.width, p.height), (Some(640), Some(360)), "{file:?}");
        assert!(
            p.duration >= streamed - 1.5 && p.duration <= streamed + 5.0,
            "{file:?}: {:.1} s of {streamed:.1} s",
            p.duration
        );
        clean(&file);
    }
}
